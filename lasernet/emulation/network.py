"""The emulated network's nodes: every satellite and ground station is a Linux router in its own namespace.

Nodes are Mininet hosts (so that ``cmd()``, ``popen()`` and Mininet's CLI work as Mininet users expect) of the
subclass :class:`Router`, which turns IP forwarding on, turns reverse-path filtering off (asymmetric paths are
normal when routes follow the orbit) and puts the node's loopback /32 on ``lo``. Links are not Mininet links:
a link backend (:mod:`lasernet.emulation.links`) creates their interfaces, and :class:`Router` only records them
as Mininet ``Intf`` objects so that ``dump``, ``intfs`` and ``IP()`` show them.

Naming follows the scenario: satellites ``sat-P-S`` (shell-plane-slot), ground stations by their site name;
node i's loopback is :func:`lasernet.addressing.loopback_ip(i)`.
"""

from __future__ import annotations

import os
import pty
import select
import shlex
import time

from mininet.link import Intf
from mininet.node import Host

from ..addressing import loopback_ip

PROMPT = chr(127)  # Mininet's shell prompt sentinel
SHELL_SETUP = "unset HISTFILE; stty -echo; set +m\n"  # what Mininet's startShell runs first

SYSCTLS = (
    "net.ipv4.ip_forward=1",
    "net.ipv4.conf.all.rp_filter=0",
    "net.ipv4.conf.default.rp_filter=0",
    "net.ipv4.icmp_ratelimit=0",
    "net.ipv6.conf.all.disable_ipv6=1",
    "net.ipv6.conf.default.disable_ipv6=1",
)


class Router(Host):
    """A satellite or ground station: a Linux router in its own network namespace.

    ``index`` is the node's position in the scenario's node list (satellites first, then ground stations),
    ``role`` is ``satellite`` or ``ground-station`` (or the site's kind), and ``loopback`` its /32 identity.
    """

    def __init__(self, name: str, index: int = 0, role: str = "satellite", bulk: bool = False, **params):
        self.index = index
        self.role = role
        self.loopback = loopback_ip(index)
        self.bulk = bulk
        super().__init__(name, inNamespace=True, **params)

    def startShell(self, mnopts=None):  # noqa: N802 (Mininet's name)
        """Start the shell; with ``bulk`` only spawn it, and :func:`finish_shells` waits for many at once.

        Mininet spawns ``mnexec -cdn`` with every descriptor inherited and lets mnexec close them one by one (up
        to RLIMIT_NOFILE, milliseconds per node when the limit is raised for a large run), then waits for the
        prompt and runs a first command before the next node starts. A bulk start closes descriptors in the spawn itself (``close_range``), types Mininet's first
        command ahead and leaves the waiting to :func:`finish_shells`, so that shells start while others spawn.
        """
        if not self.bulk:
            return super().startShell(mnopts)
        cmd = ["mnexec", "-dn", "env", "PS1=" + PROMPT, "bash", "--norc", "--noediting", "-is", "mininet:" + self.name]
        self.master, self.slave = pty.openpty()
        self.shell = self._popen(cmd, stdin=self.slave, stdout=self.slave, stderr=self.slave, close_fds=True)
        self.stdin = os.fdopen(self.master, "r")
        self.stdout = self.stdin
        self.pid = self.shell.pid
        self.pollOut = select.poll()
        self.pollOut.register(self.stdout)
        self.outToNode[self.stdout.fileno()] = self
        self.inToNode[self.stdin.fileno()] = self
        self.execed, self.lastCmd, self.lastPid, self.readbuf = False, None, None, ""
        self.waiting = True
        self.write(SHELL_SETUP)  # typed ahead: read by bash after its first prompt

    def config(self, **params):
        """With ``bulk`` nothing runs in the shell: the driver sets sysctls, ``lo`` and the loopback by netlink."""
        if self.bulk:
            return {}
        result = super().config(**params)
        self.cmd(f"sysctl -qw {' '.join(SYSCTLS)}; ip addr add {self.loopback}/32 dev lo")
        return result

    def IP(self, intf=None):  # noqa: N802 (Mininet's name)
        """The node's identity address: its loopback (Mininet would report the first interface's)."""
        return self.loopback if intf is None else super().IP(intf)

    @property
    def netns(self) -> str:
        """Path of the node's network namespace (valid while its shell runs)."""
        return f"/proc/{self.pid}/ns/net"

    def record_intf(self, name: str, ip: str, prefix_len: int, mac: str) -> Intf:
        """Register an interface a link backend created in our namespace (no commands are run)."""
        intf = Intf(name, node=self, moveIntfFn=lambda *_: None, up=None)
        intf.ip, intf.prefixLen, intf.mac = ip, prefix_len, mac
        return intf

    def identity(self) -> dict:
        return {"name": self.name, "index": self.index, "role": self.role, "loopback": self.loopback,
                "pid": self.pid}


def finish_shells(nodes, timeout_s: float = 120.0) -> None:
    """Wait until every bulk-started node's shell has run its first command (two prompts: startup, command)."""
    pending = {node.stdout.fileno(): node for node in nodes if node.bulk and node.waiting}
    seen = {fd: 0 for fd in pending}
    poller = select.poll()
    for fd in pending:
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout_s
    while pending:
        if time.monotonic() > deadline:
            names = ", ".join(node.name for node in list(pending.values())[:5])
            raise TimeoutError(f"{len(pending)} node shells did not start within {timeout_s} s: {names}...")
        for fd, _ev in poller.poll(1000):
            node = pending.get(fd)
            if node is None:
                continue
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            if not data:
                raise RuntimeError(f"the shell of node {node.name} exited while starting")
            seen[fd] += data.count(PROMPT.encode())
            if seen[fd] >= 2:
                node.waiting, node.readbuf = False, ""
                poller.unregister(fd)
                del pending[fd]


def terminate_all(nodes) -> None:
    """Terminate many nodes at once: SIGHUP every shell's process group first, then reap them all."""
    import signal

    for node in nodes:
        if node.shell is not None and node.shell.poll() is None:
            try:
                os.killpg(node.shell.pid, signal.SIGHUP)
            except ProcessLookupError:
                pass
    for node in nodes:
        node.terminate()  # already signalled: closes the pty and waits for the shell


class Server(Host):
    """A server attached to a router over a local /24 LAN (an orbital rack, a ground data centre).

    It has the LAN's .2 (``loopback`` is the same address, so that code treating every node alike works) and a
    default route via its router's .1; the router announces the LAN by having the others route it like its own
    loopback. Its shell, and so all it runs, is in a cgroup of its own when the host made one (``cgroup_procs``).
    """

    def __init__(self, name: str, index: int = 0, attach: int = 0, lan: str = "", **params):
        import ipaddress

        self.index, self.attach, self.lan, self.role = index, attach, lan, "server"
        self.cgroup_procs: list[str] = []  # cgroup.procs files of its cgroup (lasernet.net.cgroups), if it has one
        net = ipaddress.IPv4Network(lan)
        self.gateway, self.loopback = str(net.network_address + 1), str(net.network_address + 2)
        super().__init__(name, inNamespace=True, **params)

    def IP(self, intf=None):  # noqa: N802 (Mininet's name)
        return self.loopback if intf is None else super().IP(intf)

    def popen(self, *args, **kwargs):
        """Mininet's ``popen`` (a child of the driver, not of the shell), joining the server's cgroup first
        (``cgroup_procs``, set by the host) so that its limits and power state hold for it too."""
        if self.cgroup_procs and "mncmd" not in kwargs:
            join = " ".join(f"echo $$ > {shlex.quote(path)};" for path in self.cgroup_procs)
            # joined before mnexec: inside the node, mnexec's fresh /sys has no cgroup file systems
            kwargs["mncmd"] = ["sh", "-c", join + ' exec "$@"', "sh", "mnexec", "-da", str(self.pid)]
        return super().popen(*args, **kwargs)

    def config(self, **params):
        result = super().config(**params)
        self.cmd("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")
        return result

    def record_intf(self, name: str, ip: str, prefix_len: int, mac: str = None) -> Intf:
        intf = Intf(name, node=self, moveIntfFn=lambda *_: None, up=None)
        intf.ip, intf.prefixLen, intf.mac = ip, prefix_len, mac
        return intf
