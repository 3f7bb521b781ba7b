"""The emulated network's nodes: every satellite and ground station is a Linux router in its own namespace.

Nodes are Mininet hosts (so that ``cmd()``, ``popen()`` and Mininet's CLI work as Mininet users expect) of the
subclass :class:`Router`, which turns IP forwarding on, turns reverse-path filtering off (asymmetric paths are
normal when routes follow the orbit) and puts the node's loopback /32 on ``lo``. Links are not Mininet links:
a link backend (:mod:`lasernet.emulation.links`) creates their interfaces, and :class:`Router` only records them
as Mininet ``Intf`` objects so that ``dump``, ``intfs`` and ``IP()`` show them.

Naming follows the scenario: satellites ``sat-P-S`` (shell-plane-slot), ground stations by their site name;
node i's loopback is :func:`lasernet.emulation.addressing.loopback_ip(i)`.
"""

from __future__ import annotations

from mininet.link import Intf
from mininet.node import Host

from .addressing import loopback_ip

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

    def __init__(self, name: str, index: int = 0, role: str = "satellite", **params):
        self.index = index
        self.role = role
        self.loopback = loopback_ip(index)
        super().__init__(name, inNamespace=True, **params)

    def config(self, **params):
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


class Server(Host):
    """A server attached to a router over a local /24 LAN (an orbital rack, a ground data centre).

    It has the LAN's .2 (``loopback`` is the same address, so that code treating every node alike works) and a
    default route via its router's .1; the router announces the LAN by having the others route it like its own
    loopback.
    """

    def __init__(self, name: str, index: int = 0, attach: int = 0, lan: str = "", **params):
        import ipaddress

        self.index, self.attach, self.lan, self.role = index, attach, lan, "server"
        net = ipaddress.IPv4Network(lan)
        self.gateway, self.loopback = str(net.network_address + 1), str(net.network_address + 2)
        super().__init__(name, inNamespace=True, **params)

    def IP(self, intf=None):  # noqa: N802 (Mininet's name)
        return self.loopback if intf is None else super().IP(intf)

    def config(self, **params):
        result = super().config(**params)
        self.cmd("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")
        return result

    def record_intf(self, name: str, ip: str, prefix_len: int, mac: str = None) -> Intf:
        intf = Intf(name, node=self, moveIntfFn=lambda *_: None, up=None)
        intf.ip, intf.prefixLen, intf.mac = ip, prefix_len, mac
        return intf
