"""TAP interfaces: a network device in a node's namespace whose frames a user-space process reads and writes.

A TAP is the kernel's Ethernet device backed by a file descriptor: what the namespace sends out of the
interface is read from the fd, what is written to the fd arrives on the interface. The delay line joins two of
them (one per end of an emulated link) through its relay. Here they are made persistent, addressed and brought
up through ioctls and :mod:`lasernet.net.rtnl` (no ``ip`` subprocess per interface). A node's namespace is
given as for :mod:`lasernet.net.netns`: by ``ip netns`` name or by the PID of a process living in it.

Two ways to make a node's TAP, because the kernel forces a trade-off:

``mode="inside"`` (default, the fast one)
    ``setns`` into the node's namespace, open ``/dev/net/tun`` and create the TAP there, set its MAC, bring it
    up, mark it persistent. But a tun fd keeps a reference on the namespace it was *opened* in: while the relay
    holds the fd, ``ip netns del`` (or Mininet killing the node's shell) only removes the name; the namespace and
    its TAPs live on, working, until the relay lets go of the fd (``Relay.remove_link`` or ``Relay.stop``), and
    then the kernel removes the namespace with all its TAPs in one batch. The driver removes a node's links
    before deleting the node.

``mode="move"`` (tens of times slower: moving a device between namespaces waits for an RCU grace period)
    open ``/dev/net/tun`` in *our* namespace, create the TAP under a temporary name, move it into the node's
    namespace renaming it in the same netlink request, then configure it there. The fd pins only our own
    namespace, so deleting the node's namespace really unregisters its TAPs at once, and the relay sees
    EPOLLERR/EBADFD on their fds and drops those links. Use it when nodes come and go under the relay.

Either way ``setns`` is entered only for a moment by the calling thread and always undone.
If anything fails before the TAP is complete, its fd is closed while it is not yet persistent, which makes the
kernel delete it: a failed :func:`create_tap` leaves nothing behind.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import socket
import struct
from dataclasses import dataclass

from .names import check_ifname
from .netns import Netns, entered
from .rtnl import Netlink, NetlinkError, route_socket

TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNGETIFF = 0x800454D2
TUNSETCARRIER = 0x400454E2  # _IOW('T', 226, int)
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


def mac_for(slot: int, end: int) -> bytes:
    """A locally administered MAC derived from the link slot and end (0 or 1): ``02:6c:SS:SS:SS:0E``."""
    if not 0 <= slot < 1 << 24:
        raise ValueError(f"slot {slot} out of range for a MAC (0..16777215)")
    return bytes([0x02, 0x6C, (slot >> 16) & 0xFF, (slot >> 8) & 0xFF, slot & 0xFF, end])


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def set_carrier(fd: int, on: bool) -> None:
    """Switch the carrier of the TAP behind ``fd`` (NO-CARRIER when off), via TUNSETCARRIER."""
    fcntl.ioctl(fd, TUNSETCARRIER, struct.pack("=i", 1 if on else 0))


@dataclass(frozen=True)
class Tap:
    """A TAP interface that exists in namespace ``ns`` as ``ifname``; ``fd`` is its open queue (non-blocking)."""
    ns: str | int
    ifname: str
    fd: int
    mac: bytes


def _open_tap_here(name: str) -> int:
    """Open /dev/net/tun and create TAP ``name`` in the calling thread's current namespace."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        ifr = struct.pack("=16sH22x", name.encode(), IFF_TAP | IFF_NO_PI)
        fcntl.ioctl(fd, TUNSETIFF, ifr)
    except BaseException:
        os.close(fd)
        raise
    return fd


TAP_MODES = ("inside", "move")


def create_tap(ns: str | int, ifname: str, mac: bytes, mtu: int = 1500, mode: str = "inside") -> Tap:
    """Create persistent TAP ``ifname`` inside namespace ``ns``, up, with ``mac``; return it with an open fd.

    ``mode`` is ``"inside"`` or ``"move"`` (see the module docstring). Raises OSError/FileNotFoundError naming the
    namespace and interface; on failure nothing is left behind.
    """
    check_ifname(ifname)
    if mode not in TAP_MODES:
        raise ValueError(f"TAP mode {mode!r} is not one of {TAP_MODES}")
    sock = None
    if mode == "inside":
        with entered(ns):
            fd = _open_tap_here(ifname)
            try:
                sock = route_socket()  # opened in the node's namespace, like the TAP
            except BaseException:
                os.close(fd)
                raise
    else:
        fd = _open_tap_here("lnd" + secrets.token_hex(6))
    try:
        if mode == "move":
            _move_into(fd, ns, ifname)
        with Netlink(ns, sock=sock) as inside:
            sock = None  # the Netlink closes it
            inside.configure_link(ifname, mac=mac, mtu=mtu, up=True)
            inside.commit()
        fcntl.ioctl(fd, TUNSETPERSIST, 1)
    except FileNotFoundError:  # the namespace is missing; the message names it
        os.close(fd)
        raise
    except (OSError, NetlinkError) as exc:
        os.close(fd)
        err = exc.errno or errno.EIO
        raise OSError(err, f"creating TAP {ifname!r} in namespace {ns!r}: {getattr(exc, 'strerror', None) or exc}") \
            from exc
    except BaseException:
        os.close(fd)
        raise
    finally:
        if sock is not None:
            sock.close()
    return Tap(ns=ns, ifname=ifname, fd=fd, mac=mac)


def _tap_name(fd: int) -> str:
    ifr = fcntl.ioctl(fd, TUNGETIFF, bytes(40))
    return ifr[:16].split(b"\0", 1)[0].decode()


def _move_into(fd: int, ns: str | int, ifname: str) -> None:
    temp_name = _tap_name(fd)
    with Netns(ns) as target, Netlink() as here:
        here.move_link(socket.if_nametoindex(temp_name), target, new_name=ifname)
        here.commit()


def delete_tap(ns: str | int, ifname: str) -> bool:
    """Delete ``ifname`` in ``ns``; return False if the namespace or interface is already gone."""
    try:
        with Netlink(ns) as inside:
            inside.delete_link(ifname)
            inside.commit()
    except (FileNotFoundError, KeyError):
        return False
    except NetlinkError as exc:
        if exc.errno in (errno.ENODEV, errno.ENOENT):
            return False
        raise
    return True
