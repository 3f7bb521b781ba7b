"""Stations that carry no transit: the scenario's ``transit:`` and its defaults per kind, the plan that keeps it,
and the FIB watcher's judgement (a pair is connected only through relaying nodes; a walk through a stub is not
delivered), each against an independent reference (networkx on the graph without the other stubs)."""

from __future__ import annotations

from types import SimpleNamespace

import networkx as nx
import numpy as np
import pytest

import lasernet
from lasernet.routing.convergence import FibWatcher, _connected_through_transit

SCENARIO = """\
    name: stubs
    epoch: 2026-01-01T00:00:00Z
    constellation:
      shells: [{name: sat, planes: 2, sats_per_plane: 4, phasing: 0, altitude_km: 800, inclination_deg: 60}]
    ground:
      DEFAULTS
      stations:
        - {name: gs, lat_deg: 10, lon_deg: 10}
        - {name: city, kind: city, lat_deg: 20, lon_deg: 20}
        - {name: dc, kind: data-centre, lat_deg: 30, lon_deg: 30}
        - {name: relay, lat_deg: 40, lon_deg: 40, transit: true}
        - {name: shut, kind: data-centre, lat_deg: 50, lon_deg: 50, transit: false}
    plan: {duration_s: 10, step_s: 5}
"""


def test_ground_stations_and_cities_carry_no_transit_unless_told(write_scenario):
    sc = lasernet.load_scenario(write_scenario(SCENARIO.replace("DEFAULTS", "")))
    assert {g.name: g.transit for g in sc.ground} == {"gs": False, "city": False, "dc": True, "relay": True,
                                                      "shut": False}
    everyone = lasernet.load_scenario(write_scenario(SCENARIO.replace("DEFAULTS", "defaults: {transit: true}")))
    assert {g.name: g.transit for g in everyone.ground} == {"gs": True, "city": True, "dc": True, "relay": True,
                                                            "shut": False}  # a station's own word beats defaults


def test_a_transit_that_is_not_a_boolean_is_one_line_naming_the_field(write_scenario):
    text = SCENARIO.replace("DEFAULTS", "").replace("transit: true", "transit: 'yes'")
    with pytest.raises(lasernet.ScenarioError) as err:
        lasernet.load_scenario(write_scenario(text))
    assert str(err.value) == "scenario.yaml: ground.stations[3].transit: must be true or false, got 'yes'"


def test_the_plan_keeps_which_nodes_relay_and_a_saved_plan_too(write_scenario, tmp_path):
    sc = lasernet.load_scenario(write_scenario(SCENARIO.replace("DEFAULTS", "")))
    tl = lasernet.plan(sc)
    assert tl.transit.tolist() == [True] * 8 + [False, False, True, True, False]
    tl.save(tmp_path / "p.npz")
    assert lasernet.Timeline.load(tmp_path / "p.npz").transit.tolist() == tl.transit.tolist()


# ---------------------------------------------------------------------------------------------- FIB judgement
def _watcher(n, links, transit, next_hop):
    """A FibWatcher over ``links`` (all up) whose FIBs forward as ``next_hop[(s, d)] = neighbour`` says."""
    slots = {frozenset(ab): k for k, ab in enumerate(links)}
    applied = SimpleNamespace(valid=np.ones(len(links), bool), up=np.ones(len(links), bool),
                              delay_s=np.full(len(links), 1e-3),
                              links=[SimpleNamespace(a=a, b=b) for a, b in links])
    w = FibWatcher([f"n{i}" for i in range(n)], n, [], lambda: 0.0, applied, transit=transit)
    for (s, d), hop in next_hop.items():
        w.next_slot[s, d] = slots[frozenset((s, hop))]
    return w


def test_a_fib_that_relays_through_a_stub_is_broken_and_the_chain_around_it_delivers():
    """Satellites 0-1-2-3 in a chain and stub station 4 linked to 0 and 3: the FIB route 0 -> 4 -> 3 is broken
    (pair connected through relaying nodes, walk not delivered); 0 -> 1 -> 2 -> 3 delivers; 4 -> 3 and 0 -> 4
    end at or start from the stub and deliver."""
    links = [(0, 1), (1, 2), (2, 3), (4, 0), (4, 3)]
    transit = np.array([True, True, True, True, False])
    via_stub = _watcher(5, links, transit, {(0, 3): 4, (4, 3): 3, (0, 4): 4})
    via_stub.evaluate()
    assert via_stub.last["connected"][0, 3] and not via_stub.last["delivered"][0, 3]
    assert via_stub.last["delivered"][4, 3] and via_stub.last["delivered"][0, 4]
    around = _watcher(5, links, transit, {(0, 3): 1, (1, 3): 2, (2, 3): 3, (4, 3): 3, (0, 4): 4})
    around.evaluate()
    assert around.last["delivered"][0, 3] and around.last["delivered"][1, 3]
    relaying = _watcher(5, links, np.ones(5, bool), {(0, 3): 4, (4, 3): 3})
    relaying.evaluate()
    assert relaying.last["delivered"][0, 3]  # the same FIBs are right when the station may relay


def test_two_islands_joined_only_by_a_stub_are_not_connected_so_not_broken():
    links = [(0, 1), (2, 3), (4, 1), (4, 2)]
    w = _watcher(5, links, np.array([True, True, True, True, False]), {})
    w.evaluate()
    c = w.last["connected"]
    assert not c[0, 3] and not c[1, 2] and c[4, 0] and c[4, 3] and c[0, 1] and c[4, 1]


def test_connectivity_through_relaying_nodes_equals_networkx_without_the_other_stubs():
    rng = np.random.default_rng(23)
    for n, m, n_stubs in [(10, 12, 3), (30, 40, 10), (50, 60, 25)]:
        a, b = rng.integers(n, size=m), rng.integers(n, size=m)
        keep = a != b
        a, b = a[keep], b[keep]
        transit = np.ones(n, bool)
        transit[rng.choice(n, n_stubs, replace=False)] = False
        got = _connected_through_transit(n, a, b, transit)
        g = nx.Graph()
        g.add_nodes_from(range(n))
        g.add_edges_from(zip(a.tolist(), b.tolist()))
        for s in range(n):
            for d in range(n):
                h = g.subgraph([x for x in range(n) if transit[x] or x in (s, d)])
                assert got[s, d] == (s != d and nx.has_path(h, s, d)), (s, d)


def test_route_queries_take_the_plans_transit_and_go_around_a_stub():
    """A four-satellite chain and a station linked to both ends, as a plan would hold it: ``lasernet path`` goes
    along the chain when the plan marks the station a stub, through the station when it may relay."""
    import datetime as dt

    from lasernet.routing import query
    from lasernet.timeline import Timeline
    from lasernet.topology import GROUND, GSL, INTRA, ISL, LinkTable

    names = ("sat-0-0", "sat-0-1", "sat-0-2", "sat-0-3", "gs")
    links = LinkTable(names, np.array([0, 1, 2, 4, 4]), np.array([1, 2, 3, 0, 3]),
                      np.array([ISL, ISL, ISL, GSL, GSL], np.uint8), np.array([INTRA] * 3 + [GROUND] * 2, np.uint8))
    delay = np.array([[1e-3, 1e-3, 1e-3, 0.5e-3, 0.5e-3]], np.float32)
    for transit, expected in ((False, ("sat-0-0", "sat-0-1", "sat-0-2", "sat-0-3")), (True, ("sat-0-0", "gs", "sat-0-3"))):
        tl = Timeline("t", dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), 1.0, np.zeros(1), links, 4,
                      np.ones((1, 5), bool), delay, np.zeros((1, 5), np.uint8), np.full(5, 1e9),
                      transit=np.array([True] * 4 + [transit]))
        path = query.path(query.state(tl, 0.0), "sat-0-0", "sat-0-3")
        assert path.nodes == expected
        assert path.one_way_s == pytest.approx(3e-3 if not transit else 1e-3, abs=1e-9)
