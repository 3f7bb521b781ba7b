"""Kernel state inside the nodes' namespaces: link addresses, permanent neighbours and routes, applied in batches.

The driver queues what each node needs (the /31 on a new link's interface, a permanent neighbour entry for the
peer so that no ARP exchange crosses a delayed link, routes to other nodes' loopbacks) and calls ``commit()``
once per tick; each namespace with pending work gets one batched rtnetlink exchange
(:class:`lasernet.net.rtnl.Netlink`). Routes carry the node's loopback as preferred source, so that
traffic a node originates can be answered from anywhere. Failures raise naming the node and the operation.

Routes go through nexthop objects (``ip nexthop``) that the coordinator decides
(:mod:`lasernet.emulation.nexthops`): :meth:`Kernel.nexthops` sets a node's objects, each over one link slot,
and :meth:`Kernel.nh_routes` / :meth:`Kernel.nh_prefixes` point routes at them. The kernel refuses an object
on an interface without carrier and deletes every object of an interface that loses carrier, with each route
that uses it (plain routes stay). So the Kernel keeps them alive: it knows which link every object sends over
and which links are up (:meth:`Kernel.links_changed`, from the host's ``apply``); before a link goes down its
objects become black holes (:meth:`Kernel.park`: their routes stay and drop what they get, as a route over a
link without carrier does), and once it is up again they get their gateway back (:meth:`Kernel.restore`). An
object set over a link that is down starts as a black hole.
"""

from __future__ import annotations

import socket
import struct

import numpy as np

from ..addressing import LOOPBACK_POOL, LinkAddress, loopback_ip
from ..net.netns import Netns
from ..net.rtnl import Netlink, open_in_each

LOOPBACK_BASE = int(LOOPBACK_POOL.network_address)


def _ipv4_text(address: int) -> str:
    return socket.inet_ntoa(struct.pack("!I", address))


class Kernel:
    """Batched configuration of the nodes' namespaces (see the module docstring)."""

    FEW_ROUTES = 16

    def __init__(self, nodes: dict, node_names: tuple[str, ...]):
        self.nodes = nodes
        self.node_names = node_names
        self._socks: dict[int, Netlink] = {}
        self._dirty: set[int] = set()
        self._routed: dict[int, set[int]] = {}  # node -> destinations it has a route to
        self._unreachable: dict[int, set[int]] = {}  # node -> destinations with a /32 unreachable route
        self._prefixes: dict[int, set[tuple[int, int]]] = {}  # node -> aggregated (address, length) it holds
        self._direct: dict[int, set[int]] = {}  # node -> destinations routed one by one (routes(): LANs behind)
        self.lans: dict[int, list[str]] = {}  # router -> LAN prefixes of the servers attached to it
        self._objects: dict[int, dict[int, tuple[int, int, str]]] = {}  # node -> nexthop id -> (slot, via, dev)
        self._on_slot: dict[int, set[tuple[int, int]]] = {}  # slot -> (node, nexthop id) sending over it
        self._up = np.zeros(0, bool)  # by slot: up in both directions, as last applied (a new link starts down)
        self._unsettled: dict[int, object] = {}  # slot come up -> the link backend's mark of that apply
        self.wait_carrier = None  # the link backend's settle(mark): returns once that carrier shows in the kernel
        self.nexthop_writes = 0  # black holes and restores written for links going down and up

    def holds(self, node: int) -> bool:
        """Whether router ``node`` is on this machine (with one machine, every router is)."""
        return self.node_names[node] in self.nodes

    def _nl(self, node: int) -> Netlink:
        nl = self._socks.get(node)
        if nl is None:
            nl = self._socks[node] = Netlink(self.nodes[self.node_names[node]].pid)
        self._dirty.add(node)
        return nl

    def link_ends(self, link: LinkAddress, mac_a: str, mac_b: str) -> None:
        """Address both ends of a new link and pin each end's neighbour entry for the other (only the ends on
        this machine: a link that crosses machines has one here)."""
        for node, dev, ip, peer_ip, peer_mac in ((link.a, link.ifname_a, link.ip_a, link.ip_b, mac_b),
                                                 (link.b, link.ifname_b, link.ip_b, link.ip_a, mac_a)):
            if not self.holds(node):
                continue
            nl = self._nl(node)
            if nl.pending:  # the new interface's index comes from a fresh link dump, after what is queued
                nl.commit()
            nl.add_address(dev, ip, 31)
            nl.replace_neighbour(dev, peer_ip, peer_mac)

    def configure_routers(self, indices, sysctls) -> None:
        """What a bulk-started Router's shell would have done: ``net.*`` sysctls, ``lo`` up, the loopback /32.

        ``sysctls`` are ``"key=value"`` strings; written through ``/proc/sys`` from a thread inside each namespace.
        """
        values = dict(item.split("=", 1) for item in sysctls)
        indices = [node for node in indices if node not in self._socks]
        spaces = [Netns(self.nodes[self.node_names[node]].pid) for node in indices]
        try:
            socks = open_in_each(spaces, values)
        finally:
            for ns in spaces:
                ns.close()
        for node, sock in zip(indices, socks):
            nl = self._socks[node] = Netlink(self.nodes[self.node_names[node]].pid, sock=sock)
            self._dirty.add(node)
            nl.set_link("lo", up=True)
            nl.add_address("lo", loopback_ip(node), 32)

    def link_ends_bulk(self, ends) -> None:
        """:meth:`link_ends` for many new links at once: ``ends`` of (link, mac_a, mac_b); one link dump per node.

        Everything is queued; the caller commits.
        """
        per_node: dict[int, list] = {}
        for link, mac_a, mac_b in ends:
            if self.holds(link.a):
                per_node.setdefault(link.a, []).append((link.ifname_a, link.ip_a, link.ip_b, mac_b))
            if self.holds(link.b):
                per_node.setdefault(link.b, []).append((link.ifname_b, link.ip_b, link.ip_a, mac_a))
        for node, items in per_node.items():
            nl = self._nl(node)
            if nl.pending:
                nl.commit()
            nl.links(refresh=True)
            for dev, ip, peer_ip, peer_mac in items:
                nl.add_address(dev, ip, 31)
                nl.replace_neighbour(dev, peer_ip, peer_mac)

    def routes_bulk(self, node: int, dst, via, dev) -> None:
        """Add or replace many routes of ``node`` at once (packed by numpy): to the loopbacks of nodes ``dst``
        (int array) via ``via`` (uint32 addresses, host order) out of interfaces named ``dev`` (sequence of names).

        Destinations with servers behind them (LANs) or withdrawals go through :meth:`routes`.
        """
        nl = self._nl(node)
        dst = np.asarray(dst)
        if len(dst) == 0:
            return
        links = _links_naming(nl, dev)
        if len(dst) <= self.FEW_ROUTES:  # a handful (the usual per-tick change): struct beats numpy set-up
            src = _ipv4_text(LOOPBACK_BASE + 1 + node)
            for d, v, name in zip(dst.tolist(), np.asarray(via).tolist(), dev):
                nl.replace_route(_ipv4_text(LOOPBACK_BASE + 1 + d), 32, gateway=_ipv4_text(v),
                                 dev=links[name].index, onlink=True, source=src)
            self._routed.setdefault(node, set()).update(dst.tolist())
            return
        oif = np.fromiter((links[name].index for name in dev), np.int32, len(dev))
        dst_ip = (LOOPBACK_BASE + 1 + dst).astype(np.uint32)
        nl.replace_routes(dst_ip, np.asarray(via, np.uint32), oif, onlink=True,
                          source=np.full(len(dst), LOOPBACK_BASE + 1 + node, np.uint32))
        self._routed.setdefault(node, set()).update(dst.tolist())

    def prefixes_bulk(self, node: int, first, host_bits, via, dev) -> None:
        """Add or replace aggregated loopback routes of ``node``: prefixes starting at loopback-pool offset
        ``first`` (int array) of ``32 - host_bits`` bits, via ``via`` (uint32) out of interfaces named ``dev``."""
        nl = self._nl(node)
        first = np.asarray(first)
        if len(first) == 0:
            return
        links = _links_naming(nl, dev)
        oif = np.fromiter((links[name].index for name in dev), np.int32, len(dev))
        src = np.full(len(first), LOOPBACK_BASE + 1 + node, np.uint32)
        lengths = (32 - np.asarray(host_bits)).astype(np.uint8)  # one prefix length per message
        nl.replace_routes((LOOPBACK_BASE + first).astype(np.uint32), np.asarray(via, np.uint32), oif, onlink=True,
                          source=src, prefix_len=lengths)

    def nexthops(self, node: int, ids, slots, via, dev) -> None:
        """Set nexthop objects ``ids`` (kernel ids >= 1) of ``node`` to send over link ``slots``: via ``via``
        (uint32 addresses, host order) out of interfaces named ``dev``; over a link that is down, a black hole
        until it comes up (see the module docstring). Routes that use an object follow it."""
        nl = self._nl(node)
        held = self._objects.setdefault(node, {})
        self._settle(slots)
        live = []
        for i, slot, v, d in zip(np.asarray(ids).tolist(), np.asarray(slots).tolist(), np.asarray(via).tolist(),
                                 dev):
            old = held.get(i)
            if old is not None:
                self._on_slot[old[0]].discard((node, i))
            held[i] = (slot, v, d)
            self._on_slot.setdefault(slot, set()).add((node, i))
            if self.is_up(slot):
                live.append((i, v, d))
            else:
                nl.replace_nexthop(i, blackhole=True)
        if live:
            links = _links_naming(nl, [d for _, _, d in live])
            nl.replace_nexthops(np.array([i for i, _, _ in live], np.uint32), np.array([v for _, v, _ in live],
                                                                                      np.uint32),
                                np.array([links[d].index for _, _, d in live], np.int32), onlink=True)

    def nh_routes(self, node: int, dst, ids) -> None:
        """Add or replace ``node``'s /32 routes to the loopbacks of nodes ``dst`` (int array) through its nexthop
        objects ``ids``."""
        dst = np.asarray(dst, np.int64)
        if len(dst) == 0:
            return
        nl = self._nl(node)
        if len(dst) <= self.FEW_ROUTES:  # a handful (the usual per-tick change): struct beats numpy set-up
            src = _ipv4_text(LOOPBACK_BASE + 1 + node)
            for d, i in zip(dst.tolist(), np.asarray(ids).tolist()):
                nl.replace_route(_ipv4_text(LOOPBACK_BASE + 1 + d), 32, nhid=i, source=src)
        else:
            nl.replace_routes_nh((LOOPBACK_BASE + 1 + dst).astype(np.uint32), np.asarray(ids, np.uint32),
                                 source=LOOPBACK_BASE + 1 + node)
        self._routed.setdefault(node, set()).update(dst.tolist())
        self._unreachable.get(node, set()).difference_update(dst.tolist())

    def nh_prefixes(self, node: int, first, host_bits, ids) -> None:
        """Add or replace ``node``'s aggregated loopback routes (as :meth:`prefixes_bulk`) through nexthop objects
        ``ids``."""
        first = np.asarray(first, np.int64)
        if len(first) == 0:
            return
        lengths = (32 - np.asarray(host_bits)).astype(np.uint8)
        self._nl(node).replace_routes_nh((LOOPBACK_BASE + first).astype(np.uint32), np.asarray(ids, np.uint32),
                                         prefix_len=lengths, source=LOOPBACK_BASE + 1 + node)
        self._prefixes.setdefault(node, set()).update(zip((LOOPBACK_BASE + first).tolist(), lengths.tolist()))

    def nh_row(self, node: int, first, host_bits, ids) -> None:
        """Replace all of ``node``'s loopback routes (but those to destinations with LANs) by aggregated
        prefixes: through nexthop objects ``ids``, or unreachable where an id is 0. The new prefixes go in
        first, then every /32 and prefix the node held that is not among them is deleted, in one batch."""
        nl = self._nl(node)
        first = np.asarray(first, np.int64)
        lengths = (32 - np.asarray(host_bits)).astype(np.uint8)
        ids = np.asarray(ids, np.int64)
        address = (LOOPBACK_BASE + first).astype(np.uint32)
        via = ids > 0
        nl.replace_routes_nh(address[via], ids[via].astype(np.uint32), prefix_len=lengths[via],
                             source=LOOPBACK_BASE + 1 + node)
        for a, length in zip(address[~via].tolist(), lengths[~via].tolist()):
            nl.replace_unreachable(_ipv4_text(a), length)
        new = set(zip(address.tolist(), lengths.tolist()))
        routed, unreachable = self._routed.setdefault(node, set()), self._unreachable.pop(node, set())
        direct = self._direct.get(node, set())
        singles = {LOOPBACK_BASE + 1 + d for d in (routed | unreachable) - direct}
        stale = ({(a, 32) for a in singles} | self._prefixes.get(node, set())) - new
        for a, length in sorted(stale):
            nl.delete_route(_ipv4_text(a), length)
        self._routed[node] = routed & direct
        self._prefixes[node] = new

    def is_up(self, slot: int) -> bool:
        """Whether link ``slot`` is up in both directions, as last applied."""
        return slot < len(self._up) and bool(self._up[slot])

    def links_changed(self, slots, both_up) -> tuple[list[int], list[int]]:
        """Record the links' state as applied (``both_up[k]``: slot ``slots[k]`` is up in both directions; the
        last of a slot given twice wins); answer (the slots gone down that have nexthop objects over them, the
        slots come up)."""
        slots = np.asarray(slots, np.int64)
        if not len(slots):
            return [], []
        both_up = np.asarray(both_up, bool)
        if slots.max() >= len(self._up):
            self._up = np.concatenate([self._up, np.zeros(max(int(slots.max()) + 1, 2 * len(self._up))
                                                          - len(self._up), bool)])
        last = len(slots) - 1 - np.unique(slots[::-1], return_index=True)[1]
        slots, both_up = slots[last], both_up[last]
        flipped = self._up[slots] != both_up
        self._up[slots] = both_up
        up = slots[flipped & both_up].tolist()
        down = [slot for slot in slots[flipped & ~both_up].tolist() if self._on_slot.get(slot)]
        return down, up

    def carrier_pending(self, slots, mark) -> None:
        """Links ``slots`` came up in the link backend's apply ``mark``: an object over one of them waits for
        that mark (:meth:`_settle`) before it is given a gateway."""
        for slot in slots:
            self._unsettled[int(slot)] = mark

    def _settle(self, slots) -> None:
        """Wait (only if need be) for the carrier of the links among ``slots`` that came up lately."""
        if not self._unsettled:
            return
        marks = [self._unsettled.pop(int(x)) for x in slots if int(x) in self._unsettled]
        marks = [m for m in marks if m is not None]
        if marks and self.wait_carrier is not None:
            self.wait_carrier(max(marks, key=lambda m: (len(m), m)))  # a later apply's mark covers the earlier

    def park(self, slots) -> int:
        """Black holes for the nexthop objects over ``slots`` (before those links lose carrier); queued."""
        count = 0
        for slot in slots:
            for node, i in self._on_slot.get(slot, ()):
                self._nl(node).replace_nexthop(i, blackhole=True)
                count += 1
        self.nexthop_writes += count
        return count

    def restore(self, slots) -> int:
        """The gateways of the nexthop objects over ``slots`` back (those links have carrier again); queued."""
        count = 0
        self._settle([slot for slot in slots if self._on_slot.get(slot)])
        for slot in slots:
            for node, i in self._on_slot.get(slot, ()):
                nl = self._nl(node)
                _slot, via, dev = self._objects[node][i]
                nl.replace_nexthop(i, gateway=_ipv4_text(via), dev=dev, onlink=True)
                count += 1
        self.nexthop_writes += count
        return count

    def unreachable(self, node: int, dsts) -> None:
        """Make other nodes' loopbacks unreachable from ``node`` (a /32 over any aggregate that covers them)."""
        nl = self._nl(node)
        for dst in dsts:
            nl.replace_unreachable(loopback_ip(int(dst)), 32)
            self._routed.get(node, set()).discard(int(dst))
        self._unreachable.setdefault(node, set()).update(int(d) for d in dsts)

    def routes(self, node: int, entries) -> None:
        """Set node's routes to other nodes' loopbacks: entries of (dst node, (via ip, dev, nb) or None)."""
        nl = self._nl(node)
        routed = self._routed.setdefault(node, set())
        src = loopback_ip(node)
        for dst, hop in entries:
            prefixes = [(loopback_ip(dst), 32)] + [(lan.split("/")[0], 24) for lan in self.lans.get(dst, ())]
            if hop is None:
                if dst in routed:
                    for prefix, length in prefixes:
                        nl.delete_route(prefix, length)
                    routed.discard(dst)
                    self._direct.get(node, set()).discard(dst)
                continue
            via, dev, _ = hop
            for prefix, length in prefixes:
                nl.replace_route(prefix, length, gateway=via, dev=dev, onlink=True, source=src)
            routed.add(dst)
            self._direct.setdefault(node, set()).add(dst)

    def residency_rules(self, node: int, sources, destinations, table: int, priority: int) -> None:
        """Policy-routing rules of ``node`` for a residency rule: packets from its members' addresses (``sources``,
        ``(address, prefix length)``: loopbacks and LANs), and those ``node`` originates to its members
        (``destinations``, the same form; a member's own traffic, whose source address is chosen after the
        lookup), look ``table`` (the rule's routes) up before the main one."""
        nl = self._nl(node)
        for address, length in sources:
            nl.add_rule(table, priority, source=address, source_len=length)
        for address, length in destinations:
            nl.add_rule(table, priority, dst=address, dst_len=length, iif="lo")

    def table_routes(self, node: int, entries, table: int) -> None:
        """Set ``node``'s routes in ``table`` to other nodes' loopbacks and LANs: entries of ``(dst node, (via ip,
        dev, nb) or None)``; None makes them unreachable there (a residency rule's pair with no allowed path is
        dropped, never handed on to the main table's route)."""
        nl = self._nl(node)
        src = loopback_ip(node)
        for dst, hop in entries:
            prefixes = [(loopback_ip(dst), 32)] + [(lan.split("/")[0], 24) for lan in self.lans.get(dst, ())]
            for prefix, length in prefixes:
                if hop is None:
                    nl.replace_unreachable(prefix, length, table=table)
                else:
                    nl.replace_route(prefix, length, gateway=hop[0], dev=hop[1], onlink=True, source=src,
                                     table=table)

    def attach_server(self, router: int, server, ifname_router: str, ifname_server: str) -> None:
        """Join ``server`` to ``router`` by a veth pair carrying the server's /24 LAN; default route via the router."""
        self.lans.setdefault(router, []).append(server.lan)
        nl = self._nl(router)
        if nl.pending:
            nl.commit()
        peer = Netns(server.pid)
        try:
            nl.add_veth(ifname_router, ifname_server, peer)
            nl.commit()
        finally:
            peer.close()
        nl.add_address(ifname_router, server.gateway, 24)
        nl.set_link(ifname_router, up=True)
        nl.commit()
        with Netlink(server.pid) as snl:
            snl.add_address(ifname_server, server.loopback, 24)
            snl.set_link(ifname_server, up=True)
            snl.set_link("lo", up=True)
            snl.commit()
            snl.replace_route("0.0.0.0", 0, gateway=server.gateway, dev=ifname_server)
            snl.commit()

    def commit(self) -> int:
        """Apply everything queued, one batch per namespace; return the number of operations."""
        count = 0
        dirty, self._dirty = self._dirty, set()
        for node in dirty:
            count += self._socks[node].commit()
        return count

    def close(self) -> None:
        """Close the per-namespace sockets (an open netlink socket keeps its namespace alive)."""
        for nl in self._socks.values():
            nl.close()
        self._socks.clear()


def _links_naming(nl: Netlink, names) -> dict:
    """The namespace's interfaces by name, re-dumped once if any of ``names`` is not in the cache yet."""
    links = nl.links()
    if any(name not in links for name in set(names)):
        links = nl.links(refresh=True)
    return links
