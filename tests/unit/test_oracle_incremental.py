"""The oracle repaired from step to step (oracle.Oracle, routing/trees.py) against a fresh SciPy computation
(oracle.compute) of every step: the same delays and hop counts to the nanosecond, next hops that are shortest,
never through a stub, and ``changed`` exactly the entries that differ from the previous step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lasernet
from lasernet.routing import oracle

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"


def assert_same_as_fresh(table: oracle.Routes, n, a, b, up, delay_s, transit=None):
    delay_s = np.asarray(delay_s, np.float64)  # a plan keeps float32 delays; the oracle counts in float64
    ref = oracle.compute(n, a, b, up, delay_s, transit=transit)
    assert np.array_equal(table.delay_s, ref.delay_s)
    assert np.array_equal(table.hops, ref.hops)
    assert np.array_equal(table.reachable, ref.reachable)
    s, d = np.nonzero(table.reachable)
    nh, li = table.next_hop[s, d], table.link[s, d]
    assert np.all(up[li]) and np.all(((a[li] == s) & (b[li] == nh)) | ((b[li] == s) & (a[li] == nh)))
    # the next hop lies on a shortest path: its own delay to d plus the link's is the whole (whole nanoseconds)
    rest = np.where(nh == d, 0, np.rint(table.delay_s[nh, d] * 1e9))
    assert np.all(rest + np.rint(delay_s[li] * 1e9) == np.rint(table.delay_s[s, d] * 1e9))
    assert np.all(table.hops[s, d] == np.where(nh == d, 0, table.hops[nh, d]) + 1)
    if transit is not None:
        assert np.all(transit[nh] | (nh == d))  # a stub is never a relay
    np.testing.assert_array_equal(np.diag(table.next_hop), -1)


def assert_changed_is_the_difference(orc: oracle.Oracle, before, table: oracle.Routes):
    s, d = np.nonzero((before[0] != table.next_hop) | (before[1] != table.link))
    assert np.array_equal(orc.changed[0], s) and np.array_equal(orc.changed[1], d)


def torus_with_stations(rng, planes=9, slots=8, stations=12):
    sat = np.arange(planes * slots).reshape(planes, slots)
    n_sat = planes * slots
    a = [sat.ravel(), sat.ravel()]
    b = [np.roll(sat, -1, axis=1).ravel(), np.roll(sat, -1, axis=0).ravel()]
    for k in range(stations):  # each station can see three satellites; some stations relay
        a.append(np.full(3, n_sat + k))
        b.append(rng.choice(n_sat, 3, replace=False))
    a, b = np.concatenate(a), np.concatenate(b)
    transit = np.ones(n_sat + stations, bool)
    transit[n_sat:] = rng.random(stations) < 0.3
    return n_sat + stations, a, b, transit


def test_a_moving_torus_with_link_churn_matches_a_fresh_computation_at_every_step():
    rng = np.random.default_rng(3)
    n, a, b, transit = torus_with_stations(rng)
    base = rng.uniform(2e-3, 6e-3, len(a))
    orc = oracle.Oracle(n)
    before = None
    for step in range(40):
        delay = np.rint((base * (1 + 0.02 * np.sin(0.3 * step + np.arange(len(a))))) * 1e9) / 1e9
        up = rng.random(len(a)) > 0.08  # links come and go, islands form and merge
        table = orc.update(a, b, up, delay, transit=transit)
        assert_same_as_fresh(table, n, a, b, up, delay, transit)
        if before is not None:
            assert_changed_is_the_difference(orc, before, table)
        before = (table.next_hop.copy(), table.link.copy())


def test_equal_paths_keep_the_previous_choice():
    """A ring of 4 with equal delays: 0 reaches 2 both ways. Whatever the first step picked stays, step after step,
    while the delays stay equal, and moves only when the other way becomes strictly shorter."""
    a, b = np.array([0, 1, 2, 3]), np.array([1, 2, 3, 0])
    up, delay = np.ones(4, bool), np.full(4, 1e-3)
    orc = oracle.Oracle(4)
    first = int(orc.update(a, b, up, delay).next_hop[0, 2])
    for _ in range(3):
        assert orc.update(a, b, up, delay).next_hop[0, 2] == first
        assert len(orc.changed[0]) == 0
    other = 3 if first == 1 else 1
    longer = delay.copy()
    longer[[0, 1] if first == 1 else [2, 3]] += 1e-6  # the first choice's way is now 2 ns longer
    assert orc.update(a, b, up, longer).next_hop[0, 2] == other


def test_links_may_be_added_and_a_link_id_that_names_other_nodes_starts_again():
    rng = np.random.default_rng(5)
    n, a, b, transit = torus_with_stations(rng, planes=5, slots=5, stations=4)
    delay = rng.uniform(1e-3, 3e-3, len(a))
    orc = oracle.Oracle(n)
    k = len(a) - 6
    orc.update(a[:k], b[:k], np.ones(k, bool), delay[:k], transit=transit)  # fewer links at first
    table = orc.update(a, b, np.ones(len(a), bool), delay, transit=transit)
    assert_same_as_fresh(table, n, a, b, np.ones(len(a), bool), delay, transit)
    b2 = b.copy()
    b2[0] = (b[0] + 7) % 25  # link 0 now joins other satellites
    table = orc.update(a, b2, np.ones(len(a), bool), delay, transit=transit)
    assert_same_as_fresh(table, n, a, b2, np.ones(len(a), bool), delay, transit)
    table = orc.update(a[:k], b2[:k], np.ones(k, bool), delay[:k], transit=transit)  # and fewer again
    assert_same_as_fresh(table, n, a[:k], b2[:k], np.ones(k, bool), delay[:k], transit)


def test_a_station_that_stops_relaying_is_routed_around():
    rng = np.random.default_rng(9)
    n, a, b, transit = torus_with_stations(rng, planes=6, slots=6, stations=5)
    delay = rng.uniform(1e-3, 3e-3, len(a))
    delay[len(a) - 15:] = 0.2e-3  # stations are shortcuts when they may relay
    up = np.ones(len(a), bool)
    orc = oracle.Oracle(n)
    orc.update(a, b, up, delay, transit=np.ones(n, bool))
    table = orc.update(a, b, up, delay, transit=transit)
    assert_same_as_fresh(table, n, a, b, up, delay, transit)


@pytest.mark.parametrize("steps", [6])
def test_starlink_shell1_steps_match_a_fresh_computation(steps):
    """The real thing: 1,684 nodes of starlink-shell1 (100 cities, stubs) over its first seconds."""
    scenario = lasernet.load_scenario(TOPOLOGIES / "starlink-shell1.yaml")
    timeline = lasernet.timeline.plan(scenario, duration_s=steps)
    links, n = timeline.links, len(timeline.node_names)
    orc = oracle.Oracle(n)
    before = None
    for k in range(steps):
        delay = np.where(np.isnan(timeline.delay_s[k]), 0.0, timeline.delay_s[k])
        table = orc.update(links.a, links.b, timeline.up[k], delay, transit=timeline.transit)
        assert_same_as_fresh(table, n, links.a, links.b, timeline.up[k], delay, timeline.transit)
        if before is not None:
            assert_changed_is_the_difference(orc, before, table)
            assert 0 < len(orc.changed[0]) < 0.01 * n * n  # a few thousand of 2.8 million entries per second
        before = (table.next_hop.copy(), table.link.copy())
