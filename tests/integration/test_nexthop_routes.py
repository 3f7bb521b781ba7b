"""Routes through nexthop objects forward exactly as the oracle's table says, after handovers and link failures.

``mini`` runs live at 30x (its three stations hand over every few emulated minutes, its satellites' cross-plane
links come and go at the polar cut-off), in tick mode and with the oracle in the background process. After each
stretch of ticks every router's kernel table is read with iproute2 (``ip -j route`` inside the router's
namespace: the independent reference, not lasernet's own netlink parser), each destination's loopback looked up
by longest prefix (the background mode's first table is aggregated prefixes), and the gateway found mapped to
the node at the other end of its link: it must be the table's next hop for every (router, destination) pair,
and a pair the table cannot reach must have no route or an unreachable one. Then the link that carries the
most routes fails for a while: in the second and a half after it goes down (the kernel's link watcher deletes
every nexthop object of an interface that lost carrier, with the routes through it, within a second) and
after it comes back, routes the table still sends over it are black holes, and every other pair forwards as
the table says; then a station's only ground link fails and returns (every route of the station withdrawn,
then back: in background mode its row is rewritten whole as aggregated prefixes, unreachable ones included).
The scheme must have done its job on the way: whole rows moved in one write (retargets), objects over links
that went down were kept as black holes and given their gateways back.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import subprocess
import time

import numpy as np
import pytest

import lasernet
from lasernet.addressing import LINK_POOL, LOOPBACK_POOL

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")]

SPEED = 30.0
ROUNDS, ROUND_S = 3, 4.0
BLACKHOLE, NO_ROUTE = -2, -1
LINKWATCH_S = 1.5  # the kernel's link watcher handles a carrier loss within a second
STATION, FAR = "ashburn", "frankfurt"


def kernel_next_hops(emu) -> np.ndarray:
    """(N, N): the node each router's kernel forwards each loopback to (NO_ROUTE: none or unreachable;
    BLACKHOLE: a black hole), from ``ip -j route`` in the router's namespace."""
    names, links = emu.node_names, emu.applied.links
    n = len(names)
    base, link_base = int(LOOPBACK_POOL.network_address), int(LINK_POOL.network_address)
    out = np.full((n, n), NO_ROUTE, np.int64)
    for s, name in enumerate(names):
        text = subprocess.run(["nsenter", "-t", str(emu.nodes[name].pid), "-n", "ip", "-j", "route", "show",
                               "table", "main"], capture_output=True, text=True, check=True).stdout
        table = []
        for route in json.loads(text):
            net = ipaddress.ip_network("0.0.0.0/0" if route["dst"] == "default" else route["dst"])
            table.append((net.prefixlen, int(net.network_address), int(net.netmask), route.get("type", "unicast"),
                          route.get("gateway")))
        table.sort(reverse=True)  # longest prefix first
        for d in range(n):
            address = base + 1 + d
            for _length, network, mask, kind, gateway in table:
                if address & mask != network:
                    continue
                if kind == "blackhole":
                    out[s, d] = BLACKHOLE
                elif kind == "unicast" and gateway:
                    end = int(ipaddress.ip_address(gateway)) - link_base
                    link = links[end // 2]
                    out[s, d] = link.a if end % 2 == 0 else link.b
                break
    return out


def mismatches(emu) -> list[str]:
    """Pairs whose kernel next hop is not the table's (a table entry over a link that is down now may be a
    black hole: such a link drops what it gets either way)."""
    kernel, table = kernel_next_hops(emu), emu.routes.next_hop
    n = len(table)
    bad = []
    for s, d in zip(*np.nonzero((kernel != table) & ~np.eye(n, dtype=bool))):
        if table[s, d] < 0 and kernel[s, d] == NO_ROUTE:
            continue
        if kernel[s, d] == BLACKHOLE and not link_up(emu, int(s), int(table[s, d])):
            continue
        bad.append(f"{emu.node_names[s]} -> {emu.node_names[d]}: kernel {kernel[s, d]}, table {table[s, d]}")
    return bad


def link_up(emu, a: int, b: int) -> bool:
    link = emu.applied.by_pair.get((a, b)) or emu.applied.by_pair.get((b, a))
    return link is not None and bool(emu.applied.up[link.slot])


def settle(emu, timeout_s: float = 10.0) -> None:
    """Tick until no route item waits (background mode installs within a budget per tick)."""
    deadline = time.monotonic() + timeout_s
    while emu.pending_route_items and time.monotonic() < deadline:
        emu.tick()
    assert not emu.pending_route_items, f"{emu.pending_route_items} route items still queued"


def fail_and_restore(emu, a: str, b: str) -> None:
    """Link a~b fails, then comes back; the kernel is checked after each change has reached it."""
    for change in (lambda: emu.override(a, b, up=False), lambda: emu.clear_override(a, b)):
        change()
        emu.tick()  # the link's new state; in background mode the routes follow a computation later
        time.sleep(LINKWATCH_S)  # the kernel has seen the carrier change (it deletes objects on a dead link)
        assert mismatches(emu) == []
        emu.run(1.0)
        settle(emu)
        assert mismatches(emu) == []


def run_and_check(tmp_path, routing: str) -> None:
    scenario = dataclasses.replace(lasernet.load_scenario("topologies/mini.yaml"), probes=())
    with lasernet.Emulation(scenario, run_dir=tmp_path / "run", speed=SPEED, routing=routing) as emu:
        for _ in range(ROUNDS):
            emu.run(ROUND_S)
            settle(emu)
            assert mismatches(emu) == []
        # the link most routes use fails and comes back: its objects are black holes meanwhile, then gateways
        slot = int(np.argmax(np.bincount(emu.nexthops.effective_slot().ravel() + 1)[1:]))
        link = emu.applied.links[slot]
        parks_before = emu.host.kernel.nexthop_writes
        fail_and_restore(emu, emu.node_names[link.a], emu.node_names[link.b])
        assert emu.host.kernel.nexthop_writes > parks_before  # black holes, then gateways back
        # a station's only ground link: every route of the station is withdrawn, then back
        nodes, _ = emu.path(STATION, FAR)
        fail_and_restore(emu, nodes[0], nodes[1])
        assert emu.nexthops.retargets > 0  # rows moved to another link in one write each
        return emu.rows_rewritten


def test_kernel_routes_follow_the_table_through_handovers_and_a_failure_in_tick_mode(tmp_path):
    run_and_check(tmp_path, "tick")


def test_kernel_routes_follow_the_table_with_the_oracle_in_the_background(tmp_path, monkeypatch):
    # mini's rows are short: let rows with 16 withdrawn or new routes be rewritten whole as prefixes
    monkeypatch.setattr(lasernet.Emulation, "REAGGREGATE_MIN", 16)
    assert run_and_check(tmp_path, "background") >= 2  # the station's row, withdrawn and back

