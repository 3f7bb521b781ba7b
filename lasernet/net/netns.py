"""Network namespaces: name one, open it, run code inside it, write its ``net.*`` sysctls.

A network namespace is a separate copy of the kernel's network stack (interfaces, addresses, routes, sysctls);
every emulated node lives in one. The kernel exposes each as a file: ``/run/netns/NAME`` for those ``ip netns``
made, ``/proc/PID/ns/net`` for the one a process lives in (how Mininet nodes are reached). Opening that file
holds the namespace alive; ``setns(2)`` on the fd moves the *calling thread* into it. Sockets and TAP devices
stay in the namespace they were created in, whichever thread later uses them, so "doing something in a
namespace" means creating the object while a thread is inside.

Two ways to be inside, for two needs:

* :meth:`Netns.run` calls a function in a throwaway thread that joined the namespace, so none of the caller's
  threads ever change namespace (safe next to threads that expect to stay home);
* :func:`entered` moves the calling thread in for the body of a ``with`` block and always moves it back: no
  thread start (tens of microseconds saved per call when thousands of TAPs are made).

Sysctls: ``/proc/sys/net`` shows the network namespace of the *thread* that looks the file up, so a file opened
after ``setns`` in that thread reads and writes the target namespace (checked by the integration tests, which
read the values back with ``ip netns exec``). Other sysctl trees are not per network namespace and are refused.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Callable, Mapping, TypeVar

from . import libc
from .names import check_netns_name, is_kernel_name

T = TypeVar("T")
OWN = "/proc/thread-self/ns/net"


def netns_path(spec: "str | int | os.PathLike") -> tuple[str, str]:
    """(display name, file) of a namespace given by ``ip netns`` name, process id or path."""
    if isinstance(spec, int):
        return f"pid:{spec}", f"/proc/{spec}/ns/net"
    if isinstance(spec, os.PathLike) or "/" in str(spec):
        return str(spec), str(spec)
    return spec, f"/run/netns/{check_netns_name(spec)}"


def open_netns(spec: "str | int | os.PathLike") -> int:
    """Open a namespace's file read-only and return the fd; FileNotFoundError names the namespace."""
    name, path = netns_path(spec)
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FileNotFoundError(f"network namespace {name!r} does not exist ({path} missing)") from None


@contextlib.contextmanager
def entered(spec: "str | int | os.PathLike"):
    """Run the body with the calling thread inside namespace ``spec``; always return to the original one."""
    home = os.open(OWN, os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = open_netns(spec)
        try:
            libc.setns(target, f"namespace {spec!r}")
            try:
                yield
            finally:
                libc.setns(home, "the original namespace")
        finally:
            os.close(target)
    finally:
        os.close(home)


class Netns:
    """A handle on one network namespace (see the module docstring); keeps the namespace file open until closed.

    ``spec`` is an ``ip netns`` name, a process id, a path, or None for the caller's own namespace.
    """

    def __init__(self, spec: "str | int | os.PathLike | None" = None):
        self.own = spec is None  # the caller's namespace: run() needs no setns (nor privileges)
        if spec is None:
            self.name, self.path = "(own)", OWN
            self.fd = os.open(OWN, os.O_RDONLY | os.O_CLOEXEC)
        else:
            self.name, self.path = netns_path(spec)
            self.fd = open_netns(spec)

    def run(self, fn: Callable[[], T]) -> T:
        """Call ``fn()`` in a new thread that has joined this namespace; return its result or raise its error."""
        box: dict = {}

        def target():
            try:
                if not self.own:
                    libc.setns(self.fd, self.path)
                box["value"] = fn()
            except BaseException as exc:  # handed to the caller's thread below
                box["error"] = exc

        thread = threading.Thread(target=target, name=f"netns-{self.name}")
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["value"]

    def enter(self) -> None:
        """Move the calling thread into this namespace (for loops over many namespaces in one thread)."""
        libc.setns(self.fd, self.path)

    # -------------------------------------------------------------------------------------------------------
    def write_sysctls(self, values: Mapping[str, object]) -> None:
        """Write ``{"net.ipv4.ip_forward": 1, ...}`` in this namespace (``net.*`` keys only)."""
        paths = sysctl_paths(values)
        self.run(lambda: write_files(paths))

    def read_sysctl(self, key: str) -> str:
        path = sysctl_path(key)
        return self.run(lambda: Path(path).read_text().strip())

    def enable_routing(self) -> None:
        """Forward IPv4 and turn reverse-path filtering off on all, default and every existing interface.

        The kernel uses the larger of ``all`` and the interface's own ``rp_filter``, so both must be 0; an
        interface created later takes ``default``. Paths over emulated links are asymmetric whenever the two
        directions' shortest paths differ, which a strict filter would drop.
        """

        def write():
            Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
            for conf in sorted(Path("/proc/sys/net/ipv4/conf").iterdir()):
                (conf / "rp_filter").write_text("0")

        self.run(write)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "Netns":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Netns({self.name!r})"


def sysctl_path(key: str) -> str:
    """``/proc/sys/...`` of a ``net.*`` sysctl key; ValueError for any other key."""
    parts = key.split(".")
    if parts[0] != "net" or len(parts) < 3 or not all(is_kernel_name(p) for p in parts):
        raise ValueError(f"sysctl {key!r}: only net.* keys are per network namespace")
    return "/proc/sys/" + "/".join(parts)


def sysctl_paths(values: Mapping[str, object]) -> dict[str, str]:
    """``{path: text}`` for ``{key: value}`` sysctls, every key checked first (nothing is written on a bad one)."""
    return {sysctl_path(key): str(value) for key, value in values.items()}


def write_files(paths: Mapping[str, str]) -> None:
    """Write each text to its file, as seen by the calling thread (so: in the namespace it is in)."""
    for path, text in paths.items():
        with open(path, "w") as f:
            f.write(text)


def new_private_netns() -> Netns:
    """A new, unnamed network namespace held only by the returned handle (made in a throwaway thread).

    Nothing names it (no ``/run/netns`` entry), so it vanishes with the last fd or socket in it, even when the
    process that made it is killed: nothing to clean up.
    """
    box: dict = {}

    def make():
        try:
            libc.unshare_net()
            box["fd"] = os.open(OWN, os.O_RDONLY | os.O_CLOEXEC)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=make, name="lasernet-private-netns")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    fd = box["fd"]
    try:
        return Netns(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def mtu_of_address(address: str) -> int:
    """The MTU of the interface of this namespace that holds IPv4 ``address`` (ValueError if none does)."""
    import fcntl
    import socket
    import struct

    siocgifaddr, siocgifmtu = 0x8915, 0x8921
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _index, name in socket.if_nameindex():
            request = struct.pack("16s16x", name.encode())
            try:
                addr = socket.inet_ntoa(fcntl.ioctl(sock.fileno(), siocgifaddr, request)[20:24])
            except OSError:  # no IPv4 address
                continue
            if addr == address:
                return struct.unpack_from("=i", fcntl.ioctl(sock.fileno(), siocgifmtu, request), 16)[0]
    raise ValueError(f"no interface here holds {address}")
