"""The background oracle's hysteresis keeps old next hops only where that is loop-free and near the best."""

from __future__ import annotations

import numpy as np

from lasernet.routing import oracle
from lasernet.routing.background import keep_near_best


def _torus(planes: int, slots: int):
    a, b = [], []
    for p in range(planes):
        for s in range(slots):
            i = p * slots + s
            a += [i, i]
            b += [p * slots + (s + 1) % slots, ((p + 1) % planes) * slots + s]
    return np.array(a), np.array(b)


def test_kept_next_hops_form_no_loops_and_stay_within_the_margin_per_hop():
    rng = np.random.default_rng(7)
    n = 12 * 10
    a, b = _torus(12, 10)
    up = np.ones(len(a), bool)
    delay = 5e-3 + rng.random(len(a)) * 1e-4  # near-ties everywhere, as in a +Grid
    slots = np.arange(len(a), dtype=np.int32)
    first = oracle.compute(n, a, b, up, delay)
    prev_next = first.next_hop.copy()
    delay2 = delay + rng.normal(0, 3e-5, len(a))  # the satellites moved a little
    up[5] = False  # and one link went down
    second = oracle.compute(n, a, b, up, delay2)
    next_hop, link = second.next_hop.copy(), second.link.copy()
    slot = np.where(link >= 0, slots[np.maximum(link, 0)], -1).astype(np.int32)
    within = 50e-6
    kept = keep_near_best(n, second, next_hop, slot, prev_next, a, b, up, delay2, slots, within)
    assert kept > 0
    assert (next_hop != second.next_hop).sum() == kept
    kept_table = oracle.Routes(next_hop=next_hop, link=slot, delay_s=second.delay_s, hops=second.hops)
    for s in range(n):
        for d in range(n):
            path = oracle.path(kept_table, s, d)  # raises on a forwarding loop
            if s == d:
                continue
            hops = list(zip(path[:-1], path[1:]))
            assert all(up[slot[u, d]] and {a[slot[u, d]], b[slot[u, d]]} == {u, v} for u, v in hops)
            total = sum(delay2[slot[u, d]] for u, _ in hops)
            assert total <= second.delay_s[s, d] + len(hops) * within + 1e-9 * len(hops)


def test_a_previous_next_hop_through_a_stub_station_is_never_kept():
    """Satellites 0-1-2-3 in a chain and station 4 linked to 0 and 3. Before, 4 relayed (0 -> 4 -> 3); now it is a
    stub and the chain is the best path, a few microseconds longer: well inside the margin, yet the old next hop is
    not kept, because keeping it would relay through the stub (without ``transit`` it would be)."""
    a, b = np.array([0, 1, 2, 4, 4]), np.array([1, 2, 3, 0, 3])
    delay = np.array([1e-3, 1e-3, 1e-3, 1.4995e-3, 1.4995e-3])  # via 4: 2.999 ms, the chain: 3 ms
    up, slots, n = np.ones(5, bool), np.arange(5, dtype=np.int32), 5
    before = oracle.compute(n, a, b, up, delay)
    assert oracle.path(before, 0, 3) == [0, 4, 3]
    transit = np.array([True, True, True, True, False])
    now = oracle.compute(n, a, b, up, delay, transit=transit)
    for stub_aware, expect in ((None, 4), (transit, 1)):
        next_hop, slot = now.next_hop.copy(), now.link.copy()
        keep_near_best(n, now, next_hop, slot, before.next_hop.copy(), a, b, up, delay, slots, 50e-6, stub_aware)
        assert next_hop[0, 3] == expect
