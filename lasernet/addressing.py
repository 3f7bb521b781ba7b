"""The addressing and naming plan of an emulated network: which address and interface name everything gets.

Every node (satellite or ground station) has a loopback /32, its identity for routing and for applications:
node i gets ``10.255.0.0 + i + 1`` (on ``lo``; this kernel has no dummy interfaces). Every point-to-point link
gets a /31 from ``10.128.0.0/10``: link slot s is ``10.128.0.0 + 2s`` on its ``a`` end and ``+ 2s + 1`` on its
``b`` end. Ground LANs (servers attached to a node) are /24s from ``10.64.0.0/10``. The pools do not overlap, so an
address says what it is. All of it lives inside the emulation's own namespaces and never leaves the machine.

A link's interface in a node's namespace is named after the node at the other end (``sat-0-2`` on ``sat-0-1``),
so that ``ip link`` inside a node reads as a neighbour list. A name longer than Linux's 15 characters falls back
to ``ln<slot>``.

This is a rule of the design, not kernel state: the emulation (which configures the addresses) and the routing
(which reads them back from FIBs and daemon configurations) both derive them from here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

LOOPBACK_POOL = ipaddress.IPv4Network("10.255.0.0/16")
LINK_POOL = ipaddress.IPv4Network("10.128.0.0/10")
LAN_POOL = ipaddress.IPv4Network("10.64.0.0/10")
IFNAMSIZ = 15


def loopback_ip(node_index: int) -> str:
    """The /32 loopback address of node ``node_index`` (0-based)."""
    if not 0 <= node_index < LOOPBACK_POOL.num_addresses - 2:
        raise ValueError(f"node index {node_index} outside the loopback pool {LOOPBACK_POOL}")
    return str(LOOPBACK_POOL.network_address + node_index + 1)


def link_ips(slot: int) -> tuple[str, str]:
    """The two /31 addresses (a end, b end) of link ``slot``."""
    if not 0 <= slot < LINK_POOL.num_addresses // 2:
        raise ValueError(f"link slot {slot} outside the link pool {LINK_POOL}")
    base = LINK_POOL.network_address + 2 * slot
    return str(base), str(base + 1)


def lan_network(index: int) -> str:
    """The /24 of ground LAN ``index``."""
    return str(ipaddress.IPv4Network((int(LAN_POOL.network_address) + (index << 8), 24)))


def ifname_for(peer_name: str, slot: int) -> str:
    """Interface name for a link end: the peer's node name if it fits, else ``ln<slot>``."""
    return peer_name if len(peer_name) <= IFNAMSIZ else f"ln{slot}"


@dataclass(frozen=True)
class LinkAddress:
    """Everything about one emulated link that a backend and the routing need: ends, names and addresses."""

    slot: int
    a: int  # node index
    b: int
    ifname_a: str  # interface in a's namespace (named after b)
    ifname_b: str
    ip_a: str
    ip_b: str

    @classmethod
    def plan(cls, slot: int, a: int, b: int, node_names: tuple[str, ...]) -> "LinkAddress":
        ip_a, ip_b = link_ips(slot)
        return cls(slot, a, b, ifname_for(node_names[b], slot), ifname_for(node_names[a], slot), ip_a, ip_b)
