"""Residency rules (issue 18): traffic between two sites of a jurisdiction crosses only the satellites of the
operators allowed for it and lands only at its ground sites, or is unreachable; `lasernet path` shows the allowed
path, the unconstrained one and the delay cost of sovereignty between them.

The reference is independent of the policy code: networkx's Dijkstra over the plan's links that are up, each
weighted by its light delay, on the subgraph of the nodes the rule allows, worked out here from the scenario's own
words (alpha flies planes 0-3; the eu sites are those the scenario file marks eu), and with the stub stations
other than the pair's own ends removed (a stub may begin or end a path, never lie inside it).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from types import SimpleNamespace

import networkx as nx
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

import lasernet
from lasernet.cli import main
from lasernet.routing import policy
from lasernet.routing.convergence import FibWatcher

from ..conftest import TOPOLOGIES

SOVEREIGN = TOPOLOGIES / "sovereign.yaml"
SPAN_S = 600.0
TIMES_S = np.arange(0.0, SPAN_S + 1, 20.0)
EU = ("frankfurt", "dublin", "paris-dc")


@pytest.fixture(scope="module")
def plan():
    scenario = lasernet.load_scenario(SOVEREIGN)
    return lasernet.plan(scenario, duration_s=SPAN_S, step_s=1.0)


def allowed_names(names) -> set[str]:
    """What the eu rule allows, from the scenario's text: alpha's satellites (planes 0-3) and the eu sites."""
    return {n for n in names if n.startswith("sat-") and int(n.split("-")[1]) <= 3} | set(EU)


def graph(timeline, t_s, keep=None, stubs=()) -> nx.Graph:
    """The links up at ``t_s`` among the ``keep`` nodes (default: all), by name, without the ``stubs``."""
    up, delay = timeline.state_at(t_s)
    names = timeline.node_names
    g = nx.Graph()
    for a, b, d in zip(timeline.links.a[up], timeline.links.b[up], delay[up]):
        u, v = names[a], names[b]
        if keep is not None and not (u in keep and v in keep) or u in stubs or v in stubs:
            continue
        if not g.has_edge(u, v) or g[u][v]["delay_s"] > d:
            g.add_edge(u, v, delay_s=float(d))
    return g


def reference_s(timeline, t_s, s, d, keep=None) -> float:
    """networkx's shortest one-way delay from s to d (inf: none), relaying through no stub but s and d."""
    names = timeline.node_names
    stubs = {n for n, relays in zip(names, timeline.transit) if not relays} - {s, d}
    g = graph(timeline, t_s, keep, stubs)
    try:
        return nx.shortest_path_length(g, s, d, weight="delay_s")
    except (nx.NetworkXNoPath, nx.NodeNotFound):
        return float("inf")


def routed(timeline, t_s, s, d):
    """(nodes by name, one-way s) of the policy routes' path from s to d at t_s."""
    up, delay = timeline.state_at(t_s)
    pr = policy.of_timeline(timeline, up, delay)
    names = timeline.node_names
    i, j = names.index(s), names.index(d)
    nodes = [names[k] for k in pr.path(i, j)]
    return nodes, (float(np.sum(delay[pr.links(i, j)])) if nodes else float("inf"))


# --------------------------------------------------------------------------------------------------------------
def test_the_plan_keeps_the_rule_as_the_scenario_states_it(plan, tmp_path):
    names = plan.node_names
    assert plan.residency == ("eu",)
    assert {names[i] for i in np.flatnonzero(plan.residency_members[0])} == set(EU)
    assert {names[i] for i in np.flatnonzero(plan.residency_allowed[0])} == allowed_names(names)
    plan.save(tmp_path / "p.npz")
    back = lasernet.Timeline.load(tmp_path / "p.npz")
    assert back.residency == ("eu",) and (back.residency_allowed == plan.residency_allowed).all()
    assert (back.residency_members == plan.residency_members).all()


def test_jurisdictions_come_from_entries_or_ground_defaults_and_rules_default_to_them(tmp_path):
    def defaults(doc):
        doc["ground"]["defaults"]["jurisdiction"] = "eu"
        doc["ground"]["stations"] = ["frankfurt", "dublin", {"site": "ashburn", "jurisdiction": "us"}]
        doc["routing"]["operators"].append({"name": "gamma", "asn": 64502, "satellites": ["sat-5-5"],
                                            "jurisdiction": "eu"})
    sc = lasernet.load_scenario(_variant(tmp_path, defaults))
    assert [(g.name, g.jurisdiction) for g in sc.ground] == [("frankfurt", "eu"), ("dublin", "eu"), ("ashburn", "us")]
    (rule,) = sc.policy.residency
    assert (rule.operators, rule.members, rule.land_at) == (("alpha", "gamma"), ("frankfurt", "dublin"),
                                                            ("frankfurt", "dublin"))


def test_a_pair_is_governed_when_both_ends_are_members_of_one_rule(plan):
    up, delay = plan.state_at(0.0)
    governed = policy.of_timeline(plan, up, delay).governed()
    names = plan.node_names
    eu = [names.index(n) for n in EU]
    want = np.full(governed.shape, -1)
    for i in eu:
        for j in eu:
            want[i, j] = 0 if i != j else -1
    assert (governed == want).all()


def test_a_plan_without_rules_or_saved_before_them_loads_with_none(tmp_path):
    mini = lasernet.plan(lasernet.load_scenario(TOPOLOGIES / "mini.yaml"), duration_s=5)
    mini.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as z:
        assert "residency" not in z.files  # what a plan saved before the rules holds
    back = lasernet.Timeline.load(tmp_path / "m.npz")
    assert back.residency == () and back.residency_members.shape == (0, len(back.node_names))


def test_governed_pairs_take_the_shortest_allowed_path_that_networkx_finds(plan):
    keep = allowed_names(plan.node_names)
    seen = {"costly": 0, "same": 0, "cut": 0, "via_dc": 0}
    for t_s in TIMES_S:
        for s, d in (("frankfurt", "dublin"), ("dublin", "paris-dc"), ("paris-dc", "frankfurt")):
            nodes, got_s = routed(plan, t_s, s, d)
            want_s = reference_s(plan, t_s, s, d, keep)
            free_s = reference_s(plan, t_s, s, d)
            assert set(nodes) <= keep, (t_s, s, d, nodes)  # never a forbidden node
            if np.isinf(want_s):
                assert nodes == [], (t_s, s, d, nodes)  # unreachable, not routed through beta or ashburn
                seen["cut"] += not np.isinf(free_s)
                continue
            assert nodes[0] == s and nodes[-1] == d
            assert got_s == pytest.approx(want_s, abs=1e-8 * len(nodes)), (t_s, s, d)
            seen["costly" if want_s > free_s + 1e-6 else "same"] += 1
            seen["via_dc"] += "paris-dc" in nodes[1:-1]
    # the scenario shows every case: a cost, no cost, a pair only forbidden nodes join, a relay at the allowed DC
    assert all(seen.values()), seen


def test_pairs_no_rule_governs_take_the_unconstrained_shortest_path(plan):
    for t_s in TIMES_S:
        for s, d in (("frankfurt", "ashburn"), ("ashburn", "dublin"), ("sat-5-1", "paris-dc")):
            nodes, got_s = routed(plan, t_s, s, d)
            assert got_s == pytest.approx(reference_s(plan, t_s, s, d), abs=1e-8 * max(len(nodes), 1)), (t_s, s, d)


def test_a_data_centre_that_carries_no_transit_is_not_relayed_through_under_the_rule(plan):
    names = plan.node_names
    transit = plan.transit.copy()
    transit[names.index("paris-dc")] = False
    stub = dataclasses.replace(plan, transit=transit)
    keep = allowed_names(names)
    for t_s in TIMES_S:
        nodes, got_s = routed(stub, t_s, "frankfurt", "dublin")
        assert "paris-dc" not in nodes
        assert got_s == pytest.approx(reference_s(stub, t_s, "frankfurt", "dublin", keep), abs=1e-7), t_s


def test_a_member_outside_land_at_is_an_end_of_its_own_traffic_and_relays_no_other(plan):
    """With land_at [frankfurt, dublin], paris-dc still reaches them under the rule, but their traffic between
    each other no longer comes down at paris-dc."""
    names = plan.node_names
    allowed = plan.residency_allowed.copy()
    allowed[0, names.index("paris-dc")] = False
    narrow = dataclasses.replace(plan, residency_allowed=allowed)
    land = allowed_names(names) - {"paris-dc"}
    relayed = 0
    for t_s in TIMES_S:
        relayed += "paris-dc" in routed(plan, t_s, "frankfurt", "dublin")[0]
        nodes, got_s = routed(narrow, t_s, "frankfurt", "dublin")
        assert "paris-dc" not in nodes
        assert got_s == pytest.approx(reference_s(narrow, t_s, "frankfurt", "dublin", land), abs=1e-7), t_s
        nodes, got_s = routed(narrow, t_s, "paris-dc", "dublin")
        assert got_s == pytest.approx(reference_s(narrow, t_s, "paris-dc", "dublin", land | {"paris-dc"}),
                                      abs=1e-7), t_s
    assert relayed  # with the default land_at it did relay


def test_unsatisfiable_lists_the_governed_pairs_networkx_cannot_join_within_the_rule(plan):
    keep = allowed_names(plan.node_names)
    names = plan.node_names
    for t_s in TIMES_S:
        up, delay = plan.state_at(t_s)
        rule, src, dst = policy.of_timeline(plan, up, delay).unsatisfiable()
        got = {frozenset((names[a], names[b])) for a, b in zip(src, dst)}
        want = {frozenset((a, b)) for i, a in enumerate(EU) for b in EU[i + 1:]
                if np.isinf(reference_s(plan, t_s, a, b, keep))}
        assert got == want and (rule == 0).all(), t_s


# --------------------------------------------------------------------------------------------------------------
def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr.strip().splitlines()


def _time_where(plan, case: str) -> float:
    keep = allowed_names(plan.node_names)
    for t_s in TIMES_S:
        rule_s = reference_s(plan, t_s, "frankfurt", "dublin", keep)
        free_s = reference_s(plan, t_s, "frankfurt", "dublin")
        if {"costly": rule_s > free_s + 1e-6, "cut": np.isinf(rule_s) and not np.isinf(free_s),
                "same": abs(rule_s - free_s) < 1e-9}[case]:
            return float(t_s)
    raise AssertionError(f"no {case} time in the plan")


def test_lasernet_path_prints_the_allowed_path_and_the_cost_of_sovereignty(plan):
    t_s = _time_where(plan, "costly")
    code, out, err = cli("path", SOVEREIGN, "frankfurt", "dublin", "--at", t_s)
    assert code == 0 and err == []
    head, nodes, without = out.strip().splitlines()
    keep = allowed_names(plan.node_names)
    rule_s = reference_s(plan, t_s, "frankfurt", "dublin", keep)
    free_s = reference_s(plan, t_s, "frankfurt", "dublin")
    assert "under residency rule eu" in head and f"one-way {rule_s * 1e3:.6f} ms" in head
    assert set(nodes.split()) <= keep
    assert without.startswith("without the rule: ") and f"one-way {free_s * 1e3:.6f} ms" in without
    assert f"(sovereignty costs {(rule_s - free_s) * 1e3:.6f} ms)" in without

    code, out, _ = cli("path", SOVEREIGN, "frankfurt", "dublin", "--at", t_s, "--json")
    got = json.loads(out)
    assert code == 0 and got["rule"] == "eu" and set(got["path"]) <= keep
    assert got["one_way_ms"] == pytest.approx(rule_s * 1e3, abs=1e-5)
    assert got["unconstrained"]["one_way_ms"] == pytest.approx(free_s * 1e3, abs=1e-5)
    assert got["sovereignty_cost_ms"] == pytest.approx((rule_s - free_s) * 1e3, abs=1e-5)
    assert got["unconstrained"]["hops"] == len(got["unconstrained"]["path"]) - 1


def test_lasernet_path_says_the_same_path_when_the_rule_costs_nothing(plan):
    code, out, _ = cli("path", SOVEREIGN, "frankfurt", "dublin", "--at", _time_where(plan, "same"))
    assert code == 0 and out.strip().splitlines()[-1] == "without the rule: the same path"


def test_a_pair_only_forbidden_nodes_join_is_unreachable_not_routed_through_them(plan):
    t_s = _time_where(plan, "cut")
    code, out, _ = cli("path", SOVEREIGN, "frankfurt", "dublin", "--at", t_s)
    head, without = out.strip().splitlines()
    assert code == 1 and head.endswith("under residency rule eu: no path (unreachable)")
    assert without.endswith("(reachable only through nodes the rule forbids)")
    assert set(without.split(": ")[-1].split(" (")[0].split()) - allowed_names(plan.node_names)  # beta's, or more
    code, out, _ = cli("path", SOVEREIGN, "frankfurt", "dublin", "--at", t_s, "--json")
    got = json.loads(out)
    assert code == 1 and got["path"] == [] and got["rule"] == "eu" and got["sovereignty_cost_ms"] is None
    assert got["unconstrained"]["path"][0] == "frankfurt"


def test_a_saved_plan_is_queried_under_its_rules(plan, tmp_path):
    plan.save(tmp_path / "p.npz")
    t_s = _time_where(plan, "costly")
    code, out, _ = cli("path", "--plan", tmp_path / "p.npz", "frankfurt", "dublin", "--at", t_s, "--json")
    got = json.loads(out)
    assert code == 0 and got["rule"] == "eu" and got["sovereignty_cost_ms"] > 0
    code, out, _ = cli("routes", "--plan", tmp_path / "p.npz", "dublin", "--at", t_s, "--json")
    rules = {r["destination"]: r["rule"] for r in json.loads(out)["routes"]}
    assert rules["frankfurt"] == rules["paris-dc"] == "eu" and rules["ashburn"] is None


def test_an_ungoverned_pair_has_no_rule_line(plan):
    code, out, _ = cli("path", SOVEREIGN, "frankfurt", "ashburn", "--at", 0)
    assert code == 0 and "without the rule" not in out and "residency" not in out
    code, out, _ = cli("path", SOVEREIGN, "frankfurt", "ashburn", "--at", 0, "--json")
    got = json.loads(out)
    assert (got["rule"], got["unconstrained"], got["sovereignty_cost_ms"]) == (None, None, None)


# --------------------------------------------------------------------------------------------------------------
def _variant(tmp_path, change) -> str:
    doc = yaml.safe_load(SOVEREIGN.read_text())
    doc["ground"]["include"] = [str(TOPOLOGIES / "ground" / "sites.yaml")]
    change(doc)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def _set(doc, *path_value):
    *keys, value = path_value
    node = doc
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value


@pytest.mark.parametrize("change,message", [
    (lambda d: _set(d, "policy", "residency", 0, "operators", ["gamma"]),
     "s.yaml: policy.residency[0].operators[0]: unknown operator 'gamma'; operators are alpha, beta"),
    (lambda d: _set(d, "policy", "residency", 0, "jurisdiction", "in"),
     "s.yaml: policy.residency[0].jurisdiction: no ground site has jurisdiction 'in' (the sites' jurisdictions: "
     "eu, us)"),
    (lambda d: d["policy"]["residency"].append({"jurisdiction": "eu"}),
     "s.yaml: policy.residency[1].jurisdiction: jurisdiction 'eu' already has a rule (policy.residency[0])"),
    (lambda d: _set(d, "policy", "residency", 0, "jurisdiction", "EU"),
     "s.yaml: policy.residency[0].jurisdiction: must be a jurisdiction: a lowercase token like eu"),
    (lambda d: _set(d, "ground", "stations", 0, "jurisdiction", "Europe/Union"),
     "s.yaml: ground.stations[0].jurisdiction: must be a jurisdiction: a lowercase token like eu"),
    (lambda d: _set(d, "routing", "operators", 0, "jurisdiction", "e u"),
     "s.yaml: routing.operators[0].jurisdiction: must be a jurisdiction"),
    (lambda d: _set(d, "routing", "operators", 0, "jurisdiction", "de"),
     "s.yaml: policy.residency[0]: no operator has jurisdiction 'eu', so no satellite may carry its traffic"),
    (lambda d: _set(d, "policy", "residency", 0, "land_at", ["tokyo"]),
     "s.yaml: policy.residency[0].land_at[0]: unknown ground station 'tokyo'"),
    (lambda d: _set(d, "policy", "residency", 0, "when", "always"),
     "s.yaml: policy.residency[0].when: unknown field; allowed here: jurisdiction, operators, land_at"),
    (lambda d: _set(d, "policy", "residency", 0, "operators", []),
     "s.yaml: policy.residency[0].operators: must list at least one operator (alpha, beta)"),
    (lambda d: _set(d, "ground", "stations", 1, "jurisdiction", "uk") or
     _set(d, "ground", "stations", 2, "jurisdiction", "fr"),
     "s.yaml: policy.residency[0].jurisdiction: only frankfurt has jurisdiction 'eu', and a rule governs traffic "
     "between two sites of it"),
    (lambda d: d.pop("routing"),
     "s.yaml: policy.residency[0]: a residency rule allows satellite operators, and the scenario has none"),
])
def test_bad_policy_input_is_one_line_naming_the_field_and_exit_2(tmp_path, change, message):
    code, out, err = cli("plan", _variant(tmp_path, change), "--duration", 10)
    assert code == 2 and out == "" and len(err) == 1, (code, out, err)
    assert message in err[0], err[0]


def one_far_satellite(doc):
    """gamma flies one satellite, in beta's planes, never over both eu sites at once: the only one eu may use."""
    doc["routing"]["operators"].append({"name": "gamma", "asn": 64502, "satellites": ["sat-5-5"]})
    doc["policy"]["residency"][0]["operators"] = ["gamma"]


def test_a_rule_its_plan_never_meets_is_refused_by_plan_naming_the_rule(tmp_path):
    path = _variant(tmp_path, one_far_satellite)
    out_file = tmp_path / "p.npz"
    code, out, err = cli("plan", path, "--duration", 130, "-o", out_file)
    assert code == 2 and len(err) == 1, (code, err)
    assert "s.yaml: policy.residency[0]: " in err[0] and "are joined without the rule but never under it" in err[0]
    assert not out_file.exists()
    # networkx agrees: over the first 120 s some eu pair is joined at some step, but never through gamma alone
    timeline = lasernet.plan(lasernet.load_scenario(path), duration_s=120, step_s=1.0)
    keep = {"sat-5-5"} | set(EU)
    pairs = [(a, b) for i, a in enumerate(EU) for b in EU[i + 1:]]
    free = {p for p in pairs if any(reference_s(timeline, t, *p) < np.inf for t in timeline.offsets_s)}
    ruled = {p for p in pairs if any(reference_s(timeline, t, *p, keep) < np.inf for t in timeline.offsets_s)}
    named = tuple(re.search(r"policy\.residency\[0\]: (\S+) and (\S+) \(jurisdiction eu\)", err[0]).groups())
    assert named in free - ruled


def test_the_live_start_refuses_a_rule_its_first_window_never_meets_before_creating_anything(tmp_path, monkeypatch):
    from lasernet.emulation import coordinator

    def backend(kind):  # the next step of the start: it must not be reached
        raise AssertionError("the start went past the residency check")

    monkeypatch.setattr(coordinator, "choose_backend", backend)
    emu = coordinator.Emulation(lasernet.load_scenario(_variant(tmp_path, one_far_satellite)),
                                run_dir=tmp_path / "run", window_s=130, keep_awake=False)
    try:
        with pytest.raises(lasernet.ScenarioError, match=r"s\.yaml: policy\.residency\[0\]: .* never under it"):
            emu.start()
    finally:
        emu.windows.close()
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------------------------------------------
def _table_case():
    """Five nodes: 0 and 1 members of rule 0, 2 allowed (an allowed operator's satellite), 3 forbidden, 4 an
    outsider. 0 reaches 1 through 3 (forbidden), 1 reaches 0 through 2 (allowed); 4 is no member."""
    nh = np.full((5, 5), -1)
    nh[0, 1], nh[3, 1] = 3, 1
    nh[1, 0], nh[2, 0] = 2, 0
    nh[4, 0], nh[0, 4] = 3, 3
    members = np.array([[True, True, False, False, False]])
    allowed = np.array([[True, True, True, False, False]])
    return nh, members, allowed


def test_violations_count_the_governed_walks_through_forbidden_nodes():
    nh, members, allowed = _table_case()
    assert policy.violations(nh, members, allowed).tolist() == [1]
    rule, src, dst = policy.violating_pairs(nh, members, allowed)
    assert (rule.tolist(), src.tolist(), dst.tolist()) == ([0], [0], [1])
    assert policy.violations([0, 3, 1], members, allowed).tolist() == [1]
    assert policy.violations([1, 2, 0], members, allowed).tolist() == [0]
    assert policy.violations([4, 3, 0], members, allowed).tolist() == [0]  # not a governed pair


def test_violations_judge_a_looping_walk_on_what_it_crossed():
    nh, members, allowed = _table_case()
    looping = nh.copy()
    looping[0, 1], looping[2, 1] = 2, 0  # 0 -> 2 -> 0 -> ... never arrives, crosses only allowed nodes
    assert policy.violations(looping, members, allowed).tolist() == [0]
    looping[2, 1] = 3  # 0 -> 2 -> 3 (forbidden) -> 1
    assert policy.violations(looping, members, allowed).tolist() == [1]


def test_violations_of_the_policy_routes_are_none_and_of_the_base_table_some(plan):
    """The base oracle's table sends some eu pair through beta at some time; the rule's own paths never do."""
    base_violations = 0
    for t_s in TIMES_S:
        up, delay = plan.state_at(t_s)
        pr = policy.of_timeline(plan, up, delay)
        base_violations += int(policy.violations(pr.base.next_hop, plan.residency_members,
                                                 plan.residency_allowed).sum())
        for s in np.flatnonzero(plan.residency_members[0]):
            for d in np.flatnonzero(plan.residency_members[0]):
                if s != d:
                    assert policy.violations(pr.path(s, d), plan.residency_members,
                                             plan.residency_allowed).tolist() == [0]
    assert base_violations > 0


def test_lasernet_plan_states_each_rule_it_checked():
    code, out, err = cli("plan", SOVEREIGN, "--duration", 30)
    assert code == 0 and err == []
    assert ("residency rule eu: traffic between 3 sites kept on 32 of 64 satellites and 3 ground sites"
            in " ".join(out.split()))


def test_the_fib_watcher_counts_walks_through_forbidden_nodes_per_sample_change_and_run(tmp_path):
    """Members 0 and 3 of one rule, joined by 0-1-3 over allowed node 1 and 0-2-3 over forbidden node 2. FIBs
    forwarding 0 -> 3 over 2 (and 3 -> 0 over 1) are one violating pair, counted by hand; moved onto 1, none. The
    count reaches fib.csv, the change's row in convergence.csv and the summary."""
    links = [(0, 1), (1, 3), (0, 2), (2, 3)]
    applied = SimpleNamespace(valid=np.ones(4, bool), up=np.ones(4, bool), delay_s=np.full(4, 1e-3),
                              links=[SimpleNamespace(a=a, b=b) for a, b in links])
    members = np.array([[True, False, False, True]])
    allowed = np.array([[True, True, False, True]])
    clock = {"t": 0.0}
    w = FibWatcher([f"n{i}" for i in range(4)], 4, [], lambda: clock["t"], applied, residency=(members, allowed))
    slot = {frozenset(ab): k for k, ab in enumerate(links)}
    hop = {(0, 1): 1, (1, 0): 0, (0, 2): 2, (2, 0): 0, (1, 3): 3, (3, 1): 1, (2, 3): 3, (3, 2): 2,
           (0, 3): 2, (3, 0): 1, (1, 2): 0, (2, 1): 0}
    for (s, d), h in hop.items():
        w.next_slot[s, d] = slot[frozenset((s, h))]
    w.link_event(0.0, "n0~n2", True)
    w.samples.append((0.5, *w.evaluate(), w.last["violating"]))
    assert w.last["violating"] == 1  # 0 -> 2 -> 3 crosses node 2; 3 -> 1 -> 0 does not
    w.next_slot[0, 3] = slot[frozenset((0, 1))]
    w.samples.append((0.7, *w.evaluate(), w.last["violating"]))
    assert w.last["violating"] == 0
    clock["t"] = 2.0
    summary = w.finish(tmp_path)
    assert [r["violating_pairs"] for r in csv.DictReader(open(tmp_path / "fib.csv"))] == ["1", "0"]
    assert [r["max_violating_pairs"] for r in csv.DictReader(open(tmp_path / "convergence.csv"))] == ["1"]
    assert summary["changes_with_violations"] == 0  # the first change is the initial convergence, apart
    assert summary["violating_pairs_max"] == 1
