"""Offline route queries (issue 17): `lasernet path` and `lasernet routes` answer what the oracle routes at one
instant of a run, without emulating.

The reference is independent of the oracle: networkx's Dijkstra over the links up at that instant, each weighted
by its light delay. The link state itself is checked against one plan over the whole span from the run's start,
the state the live driver would use at that time (its memory of handovers and acquisitions included).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
import subprocess
import sys

import networkx as nx
import numpy as np
import pytest
from click.testing import CliRunner

import lasernet
from lasernet.cli import main
from lasernet.routing import query

from ..conftest import TOPOLOGIES

MINI = TOPOLOGIES / "mini.yaml"
SPAN_S = 1500.0
TIMES_S = (0.0, 1.0, 2.5, 61.0, 333.3, 600.0, 901.7, 1234.0, 1499.0)


@pytest.fixture(scope="module")
def mini():
    return lasernet.load_scenario(MINI)


@pytest.fixture(scope="module")
def full(mini):
    """One plan from the run's start (the scenario epoch) over the whole span, as `lasernet plan` makes it."""
    return lasernet.plan(mini, duration_s=SPAN_S, step_s=mini.plan.step_s)


def graph(timeline, up, delay_s) -> nx.Graph:
    """The links up, by node name, each weighted by its delay (the fastest of parallel links)."""
    g = nx.Graph()
    g.add_nodes_from(timeline.node_names)
    names = timeline.node_names
    for a, b, d in zip(timeline.links.a[up], timeline.links.b[up], np.asarray(delay_s, float)[up]):
        u, v = names[a], names[b]
        if not g.has_edge(u, v) or g[u][v]["delay_s"] > d:
            g.add_edge(u, v, delay_s=float(d))
    return g


def up_links(timeline, up) -> dict[str, int]:
    return {name: i for i, name in enumerate(timeline.links.names) if up[i]}


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr.strip().splitlines()


# ------------------------------------------------------------------------------------------------- the state
@pytest.mark.parametrize("t_s", TIMES_S)
def test_the_queried_state_is_the_state_of_one_plan_from_the_runs_start(mini, full, t_s):
    st = query.plan_at(mini, t_s)
    up_f, delay_f = full.state_at(t_s)
    mine, theirs = up_links(st.timeline, st.up), up_links(full, up_f)
    assert set(mine) == set(theirs), (sorted(set(mine) - set(theirs)), sorted(set(theirs) - set(mine)))
    d_mine = np.array([st.delay_s[mine[n]] for n in sorted(mine)])
    d_full = np.array([delay_f[theirs[n]] for n in sorted(mine)])
    assert np.allclose(d_mine, d_full, rtol=0, atol=1e-9)
    assert st.t_s == t_s and st.at_utc == mini.epoch + dt.timedelta(seconds=t_s)
    g = graph(full, up_f, delay_f)
    for a, b in (("ashburn", "frankfurt"), ("dublin", "ashburn"), ("sat-0-0", "sat-4-4")):
        assert list(query.path(st, a, b).nodes) == nx.dijkstra_path(g, a, b, weight="delay_s")


@pytest.mark.parametrize("warmup_s", [0.0, 1200.0])
def test_a_plan_begun_later_would_not_be_the_runs_state(mini, full, warmup_s):
    """Why the query plans mini from the run's start: its longest-visible stations keep the satellite they hold,
    so a plan begun later (even 20 minutes before the instant) holds other satellites at some instants."""
    differ = 0
    for k in (400, 900, 1234, 1499):
        k0 = max(0, k - int(warmup_s))
        late = lasernet.plan(mini, start=mini.epoch + dt.timedelta(seconds=k0), duration_s=k - k0, step_s=1)
        differ += set(up_links(late, late.up[k - k0])) != set(up_links(full, full.up[k]))
    assert differ > 0


@pytest.mark.parametrize("isl_count,polar_cutoff_deg", [(4, 75.0), (3, 22.0)])
def test_a_short_window_is_the_runs_state_where_the_plans_memory_is_bounded(mini, isl_count, polar_cutoff_deg):
    """Nearest-handover stations hold no memory. With 4 terminals for the 4 +Grid candidates the ISL budget never
    binds; with 3, and inter-plane links only below 22 deg latitude, it binds in runs of some 40 steps between
    steps where it does not, so that some queries find such a step in a short window and the others must plan
    from the start."""
    sc = dataclasses.replace(mini, ground=tuple(dataclasses.replace(g, handover="nearest") for g in mini.ground),
                             isl_terminal=dataclasses.replace(mini.isl_terminal, count=isl_count),
                             isl=dataclasses.replace(mini.isl, polar_cutoff_deg=polar_cutoff_deg))
    full = lasernet.plan(sc, duration_s=900, step_s=1)
    times_s = np.arange(40.0, 900.0, 23.0)
    short = unchecked_differ = 0
    for t_s in times_s:
        st = query.plan_at(sc, t_s)
        short += st.timeline.start_utc > sc.epoch
        up_f, delay_f = full.state_at(t_s)
        assert set(up_links(st.timeline, st.up)) == set(up_links(full, up_f)), t_s
        g, p = graph(full, up_f, delay_f), query.path(st, "ashburn", "frankfurt")
        if nx.has_path(g, "ashburn", "frankfurt"):
            assert abs(p.one_way_s - nx.dijkstra_path_length(g, "ashburn", "frankfurt", weight="delay_s")) <= 1e-9
        else:  # with 3 terminals a station's satellite is sometimes cut off
            assert p.nodes == () and p.one_way_s == math.inf
        k = int(t_s)  # the same short window taken without the budget check:
        k0 = k - query.WARMUP_STEPS - 2
        w = lasernet.plan(sc, start=sc.epoch + dt.timedelta(seconds=k0), duration_s=k + 1 - k0, step_s=1)
        unchecked_differ += set(up_links(w, w.up[k - k0])) != set(up_links(full, full.up[k]))
    if isl_count == 4:
        assert short == len(times_s) and unchecked_differ == 0
    else:
        assert 0 < short < len(times_s) and unchecked_differ > 0


def test_a_run_started_later_counts_time_from_its_start(mini):
    start = mini.epoch + dt.timedelta(seconds=300)
    later = lasernet.plan(mini, start=start, duration_s=200, step_s=1)
    up_l, _ = later.state_at(100.0)
    for at in (100.0, "2026-01-01T00:06:40Z"):
        st = query.plan_at(mini, at, start="2026-01-01T00:05:00Z")
        assert st.t_s == 100.0 and st.at_utc == start + dt.timedelta(seconds=100)
        assert set(up_links(st.timeline, st.up)) == set(up_links(later, up_l))
    code, out, err = invoke("path", "mini", "dublin", "frankfurt", "--start", "2026-01-01T00:05:00Z", "--at", "100",
                            "--json")
    assert code == 0, err
    assert json.loads(out)["path"] == list(query.path(st, "dublin", "frankfurt").nodes)
    assert json.loads(out)["at_utc"] == "2026-01-01T00:06:40.000Z"


# --------------------------------------------------------------------------------------------- paths, tables
@pytest.mark.parametrize("t_s", [0.0, 333.3, 1234.0])
def test_paths_have_the_networkx_shortest_delay_and_their_hop_count(mini, full, t_s):
    st = query.plan_at(mini, t_s)
    g = graph(st.timeline, st.up, st.delay_s)
    links = up_links(st.timeline, st.up)
    for a, b in (("ashburn", "frankfurt"), ("frankfurt", "dublin"), ("sat-1-2", "dublin"), ("sat-7-7", "sat-3-3")):
        p = query.path(st, a, b)
        assert p.nodes[0] == a and p.nodes[-1] == b and p.hops == len(p.nodes) - 1
        assert abs(p.one_way_s - nx.dijkstra_path_length(g, a, b, weight="delay_s")) <= 1e-9
        # it is the sum of the delays of links that are up, one between each pair of consecutive nodes
        hops = [links.get(f"{u}~{v}", links.get(f"{v}~{u}")) for u, v in zip(p.nodes, p.nodes[1:])]
        assert None not in hops
        assert p.one_way_s == pytest.approx(sum(float(st.delay_s[i]) for i in hops), abs=1e-12)


def test_a_forwarding_table_lists_every_other_node_by_name_with_networkx_delays(mini):
    st = query.plan_at(mini, 600.0)
    g = graph(st.timeline, st.up, st.delay_s)
    lengths, paths = nx.single_source_dijkstra(g, "dublin", weight="delay_s")
    rows = query.table(st, "dublin")
    assert [r.destination for r in rows] == sorted(n for n in st.node_names if n != "dublin")
    for r in rows:
        p = query.path(st, "dublin", r.destination)
        assert r.next_hop == p.nodes[1] and r.hops == p.hops == len(p.nodes) - 1
        assert abs(r.one_way_s - lengths[r.destination]) <= 1e-9
        assert g.has_edge("dublin", r.next_hop)


def test_an_unreachable_destination_has_no_path_hops_or_finite_delay(mini, full):
    up, delay = full.state_at(10.0)
    ashburn = full.node_names.index("ashburn")
    up &= (full.links.a != ashburn) & (full.links.b != ashburn)
    st = query.State(full, 10.0, full.start_utc, up, delay)
    p = query.path(st, "dublin", "ashburn")
    assert p.nodes == () and p.hops is None and p.one_way_s == math.inf
    row = next(r for r in query.table(st, "dublin") if r.destination == "ashburn")
    assert row.next_hop is None and row.hops is None and row.one_way_s == math.inf


# ---------------------------------------------------------------------------------------------- the commands
def test_lasernet_path_prints_the_networkx_delay_and_hops(mini, full):
    code, out, err = invoke("path", MINI, "ashburn", "frankfurt", "--at", "2026-01-01T00:10:00Z")
    assert code == 0, err
    up, delay = full.state_at(600.0)
    g = graph(full, up, delay)
    ref = nx.dijkstra_path_length(g, "ashburn", "frankfurt", weight="delay_s")
    first, nodes = out.strip().splitlines()
    m = re.fullmatch(r"ashburn -> frankfurt at 2026-01-01T00:10:00.000Z \(600 s\): (\d+) hops, one-way "
                     r"([0-9.]+) ms", first)
    assert m, first
    assert int(m[1]) == len(nodes.split()) - 1
    assert abs(float(m[2]) * 1e-3 - ref) <= 1e-9  # printed to the nanosecond
    code, out, err = invoke("path", "mini", "ashburn", "frankfurt", "--at", "600", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["path"] == nodes.split() and doc["hops"] == len(doc["path"]) - 1 == int(m[1])
    assert abs(doc["one_way_ms"] * 1e-3 - ref) <= 1e-9 and doc["t_s"] == 600.0


def test_lasernet_routes_prints_every_destination_sorted_with_networkx_delays(mini, full):
    up, delay = full.state_at(61.0)
    lengths, paths = nx.single_source_dijkstra(graph(full, up, delay), "sat-2-3", weight="delay_s")
    code, out, err = invoke("routes", "mini", "sat-2-3", "--at", "61", "--json")
    assert code == 0, err
    rows = json.loads(out)["routes"]
    assert [r["destination"] for r in rows] == sorted(n for n in full.node_names if n != "sat-2-3")
    for r in rows:
        assert abs(r["one_way_ms"] * 1e-3 - lengths[r["destination"]]) <= 1e-9
        assert r["next_hop"] == paths[r["destination"]][1] and r["hops"] == len(paths[r["destination"]]) - 1
    code, text, _ = invoke("routes", "mini", "sat-2-3", "--at", "61")
    lines = text.strip().splitlines()
    assert lines[0].startswith("sat-2-3 at 2026-01-01T00:01:01.000Z (61 s): 66 of 66 destinations reachable")
    table = [line.split() for line in lines[2:]]
    assert [(d, n, int(h)) for d, n, h, _ in table] == [(r["destination"], r["next_hop"], r["hops"]) for r in rows]
    assert all(abs(float(ms) - r["one_way_ms"]) <= 1e-6 for (*_, ms), r in zip(table, rows))


def test_a_saved_plan_answers_as_the_scenario_does(tmp_path):
    saved = tmp_path / "plan.npz"
    code, _, err = invoke("plan", "mini", "--duration", "300", "-o", saved)
    assert code == 0, err
    for at in ("0", "150.5", "2026-01-01T00:05:00Z"):
        for args in (["path", "ashburn", "dublin"], ["routes", "frankfurt"]):
            _, from_plan, _ = invoke(*args[:1], "--plan", saved, *args[1:], "--at", at, "--json")
            _, from_scenario, _ = invoke(*args[:1], "mini", *args[1:], "--at", at, "--json")
            assert json.loads(from_plan) == json.loads(from_scenario)


def test_no_path_exits_1_and_says_so(tmp_path, full):
    cut = dataclasses.replace(full, up=full.up & (full.links.a != full.node_names.index("ashburn"))
                              & (full.links.b != full.node_names.index("ashburn")))
    cut.save(tmp_path / "cut.npz")
    code, out, _ = invoke("path", "--plan", tmp_path / "cut.npz", "dublin", "ashburn", "--at", "5")
    assert code == 1 and "dublin -> ashburn at 2026-01-01T00:00:05.000Z (5 s): no path (unreachable)" in out
    code, out, _ = invoke("path", "--plan", tmp_path / "cut.npz", "dublin", "ashburn", "--at", "5", "--json")
    assert code == 1 and json.loads(out)["path"] == [] and json.loads(out)["hops"] is None


# ---------------------------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def saved_plan(tmp_path_factory, full):
    path = tmp_path_factory.mktemp("plan") / "p.npz"
    lasernet.plan(lasernet.load_scenario(MINI), duration_s=60, step_s=1).save(path)
    return path


@pytest.mark.parametrize("args,fragment", [
    (["path", "mini", "ashburn", "atlantis"], "error: B: unknown node 'atlantis'; nodes are named like sat-0-0"),
    (["path", "mini", "atlantis", "ashburn"], "error: A: unknown node 'atlantis'"),
    (["routes", "mini", "atlantis"], "error: NODE: unknown node 'atlantis'"),
    (["path", "mini", "dublin", "dublin"], "error: B: is the source (dublin); give two different nodes"),
    (["path", "mini", "dublin", "ashburn", "--at", "nan"], "error: --at: must be a finite number of seconds >= 0"),
    (["path", "mini", "dublin", "ashburn", "--at", "inf"], "error: --at: must be a finite number of seconds >= 0"),
    (["path", "mini", "dublin", "ashburn", "--at", "-1"], "error: --at: must be a finite number of seconds >= 0"),
    (["routes", "mini", "dublin", "--at", "noon"], "error: --at: must be seconds since the run's start or an ISO"),
    (["routes", "mini", "dublin", "--at", "2025-12-31T23:00:00Z"],
     "error: --at: 2025-12-31T23:00:00Z is before the run's start 2026-01-01T00:00:00Z"),
    (["routes", "mini", "dublin", "--at", "1e10"], "error: --at: 1e+10 s after 2026-01-01T00:00:00Z is after 2050"),
    (["routes", "mini", "dublin", "--step", "0"], "error: --step: must be a finite number of seconds > 0"),
    (["routes", "mini", "dublin", "--start", "dawn"], "error: --start: must be an ISO 8601 UTC time"),
    (["routes", "--plan", "missing.npz", "dublin"], "error: --plan: no such file 'missing.npz'; write one with "
                                                    "`lasernet plan SCENARIO -o FILE`"),
    (["routes", "--plan", "garbage.npz", "dublin"], "error: --plan: garbage.npz is not a plan `lasernet plan -o"),
    (["routes", "--plan", "SAVED", "dublin", "--at", "61"], "error: --at: 61 s is outside the plan (0 to 60 s"),
    (["routes", "--plan", "SAVED", "dublin", "--at", "2026-01-02T00:00:00Z"], "error: --at: 86400 s is outside"),
    (["routes", "--plan", "SAVED", "dublin", "--start", "2026-01-01T00:00:00Z"], "error: --start: a saved --plan"),
    (["routes", "--plan", "SAVED", "mini", "dublin"], "error: --plan: takes the place of SCENARIO ('mini')"),
    (["path", "mini", "dublin"], "error: expected SCENARIO A B, or --plan FILE A B, got 2 arguments"),
])
def test_bad_input_is_one_line_naming_the_option_and_exit_2(tmp_path, monkeypatch, saved_plan, args, fragment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "garbage.npz").write_text("not a plan\n")
    args = [str(saved_plan) if a == "SAVED" else a for a in args]
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = invoke(*args)
    assert code == 2, (out, err)
    assert len(err) == 1 and err[0].startswith(fragment), err
    assert out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_the_real_command_line_refuses_an_unknown_node_on_one_line_with_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lasernet.cli", "path", "mini", "ashburn", "atlantis", "--at", "5"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and proc.stdout == "" and list(tmp_path.iterdir()) == []
    assert proc.stderr.strip().splitlines() == [
        "error: B: unknown node 'atlantis'; nodes are named like sat-0-0, sat-0-1, sat-0-2, ..., ashburn, frankfurt, "
        "dublin"]


def test_the_help_names_both_ways_to_give_the_state():
    for command, usage in (("path", "[SCENARIO] A B"), ("routes", "[SCENARIO] NODE")):
        code, out, _ = invoke(command, "--help")
        assert code == 0 and f"[OPTIONS] {usage}" in out, out
        assert "--plan FILE" in out and "--at TIME" in out and "--json" in out


@pytest.mark.parametrize("change", ["nearest", "clouds"])
def test_plans_that_remember_their_past_are_queried_from_the_runs_start(mini, change):
    """The nearest pattern (hysteresis, slews to new partners) and clouds (a process from the run's start) make a
    step depend on every step before it: a query plans from the run's start, and gets that plan's state."""
    sc = dataclasses.replace(mini, ground=tuple(dataclasses.replace(g, handover="nearest") for g in mini.ground))
    if change == "nearest":
        sc = dataclasses.replace(sc, isl=dataclasses.replace(sc.isl, pattern="nearest"))
    else:
        sc = dataclasses.replace(sc, clouds=lasernet.spec.scenario.CloudDefaults(0.5, 120.0, 300.0))
    t_s = 333.0
    st = query.plan_at(sc, t_s)
    assert st.timeline.start_utc == sc.epoch
    full = lasernet.plan(sc, duration_s=t_s + 1, step_s=1)
    assert set(up_links(st.timeline, st.up)) == set(up_links(full, full.state_at(t_s)[0]))
    if change == "clouds":
        assert (full.cause == lasernet.CAUSES.index("cloud")).any()
