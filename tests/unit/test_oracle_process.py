"""The background oracle process (routing/background.py), as the driver uses it: link states by tick, link indices
that change between planning windows while the slots stay, and the table the driver builds from the differences
it is sent. Against a fresh oracle.compute of each tick: without hysteresis the table's paths are shortest; with
it they are loop-free, within the margin per hop, and never relay through a stub."""

from __future__ import annotations

import numpy as np
import pytest

from lasernet.routing import oracle
from lasernet.routing.background import OracleProcess


def network(rng, planes=7, slots=6, stations=8):
    sat = np.arange(planes * slots).reshape(planes, slots)
    n_sat = planes * slots
    a = [sat.ravel(), sat.ravel()]
    b = [np.roll(sat, -1, axis=1).ravel(), np.roll(sat, -1, axis=0).ravel()]
    for k in range(stations):
        a.append(np.full(3, n_sat + k))
        b.append(rng.choice(n_sat, 3, replace=False))
    transit = np.ones(n_sat + stations, bool)
    transit[n_sat:] = False
    transit[n_sat] = True  # one station relays
    return n_sat + stations, np.concatenate(a), np.concatenate(b), transit


def walk(next_hop, slot, s, d, limit):
    path, links = [s], []
    while path[-1] != d:
        links.append(int(slot[path[-1], d]))
        path.append(int(next_hop[path[-1], d]))
        assert len(path) <= limit, f"forwarding loop from {s} to {d}: {path}"
    return path, links


@pytest.mark.parametrize("within_s", [0.0, 50e-6])
def test_the_driver_table_follows_the_ticks_across_a_change_of_window(within_s):
    rng = np.random.default_rng(11)
    n, a, b, transit = network(rng)
    n_links = len(a)
    slot_of = rng.permutation(n_links).astype(np.int32)  # the driver's stable identity of each link
    base = rng.uniform(2e-3, 4e-3, n_links)
    table_next = np.full((n, n), -1, np.int32)
    table_slot = np.full((n, n), -1, np.int32)
    proc = OracleProcess(n, keep_within_s=within_s)
    try:
        for tick in range(30):
            delay = base * (1 + 0.01 * np.sin(0.2 * tick + np.arange(n_links)))
            up = rng.random(n_links) > 0.05
            # a new planning window from tick 15: the same links in another order, and one without a slot yet
            order = np.arange(n_links) if tick < 15 else np.roll(np.arange(n_links), 7)
            slots = slot_of[order].copy()
            if tick >= 15:
                slots[3] = -1
            usable = up[order] & (slots >= 0)
            proc.submit(float(tick), a[order], b[order], usable, delay[order], slots, transit)
            result = proc.poll(timeout_s=60.0)
            assert result is not None and result.t_s == tick
            table_next[result.src, result.dst] = result.next_hop
            table_slot[result.src, result.dst] = result.slot
            # the reference, over the links by slot
            link_up = np.zeros(n_links, bool)
            link_up[slot_of[order][slots >= 0]] = usable[slots >= 0]
            by_slot = np.argsort(slot_of)  # slot -> link
            ref = oracle.compute(n, a[by_slot], b[by_slot], link_up, delay[by_slot], transit=transit)
            assert np.array_equal(table_next >= 0, ref.reachable)
            for s in range(n):
                for d in range(n):
                    if s == d or ref.next_hop[s, d] < 0:
                        continue
                    path, links = walk(table_next, table_slot, s, d, n)
                    assert all(link_up[k] for k in links)
                    assert all({a[by_slot][k], b[by_slot][k]} == {u, v} for k, u, v in zip(links, path, path[1:]))
                    assert all(transit[x] for x in path[1:-1])
                    total = sum(delay[by_slot][k] for k in links)
                    assert total <= ref.delay_s[s, d] + len(links) * within_s + 1e-9 * len(links)
    finally:
        proc.close()
