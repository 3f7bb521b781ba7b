"""BGP configurations that express residency rules and the defences against a hijack, from the plan of `sovereign`.

References are the scenario's own facts: which operator owns a satellite (its plane), which sites are EU, which
stations relay, which prefixes a node originates (its loopback by index, its server LANs). FRR's own dry run reads
each rendered configuration without rejecting a line (root and FRR needed for that part).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

import lasernet
from lasernet.routing.daemons import FRR_BIN, BgpPlan, FrrSuite, LinkSpec, NodeSpec
from lasernet.routing.daemons.base import environment
from lasernet.routing.daemons.bgp_plan import residency_community
from lasernet.spec.routing import MaxPrefixes

from ..conftest import TOPOLOGIES

LAN = "10.64.0.0/24"


@pytest.fixture(scope="module")
def sovereign():
    scenario = lasernet.load_scenario(TOPOLOGIES / "sovereign.yaml")
    tl = lasernet.plan(scenario, duration_s=2, step_s=1)
    names = list(tl.node_names)
    rules = [(r, [names[i] for i in m.nonzero()[0]], [names[i] for i in a.nonzero()[0]])
             for r, m, a in zip(tl.residency, tl.residency_members, tl.residency_allowed)]
    stubs = [n for n, t in zip(names, tl.transit) if not t]
    return scenario, tl, names, rules, stubs


def _plan(sovereign, **routing):
    scenario, tl, names, rules, stubs = sovereign
    cfg = dataclasses.replace(scenario.routing, **routing)
    return cfg, BgpPlan(cfg, names, tl.n_satellites, stubs=stubs, residency=rules, lans={"sat-5-5": [LAN]})


def _spec(plan, name, peers):
    i = plan.index[name]
    return NodeSpec(name, i, "x", f"10.255.0.{i + 1}",
                    [LinkSpec(p, p, 10, f"10.128.0.{2 * k + 1}") for k, p in enumerate(peers)], [],
                    lan_prefixes=plan.lans.get(name, []), transit=name not in plan.stubs)


def _config(cfg, plan, name, peers) -> str:
    spec = _spec(plan, name, peers)
    spec.bgp = plan.node(spec)
    return FrrSuite(cfg).protocol.config(environment(), spec, cfg, Path("/tmp/lasernet-test"), "sovereign")


def test_eu_sites_tag_their_prefixes_and_bound_routers_refuse_the_tag_from_forbidden_peers(sovereign):
    """frankfurt originates its loopback with the EU community; an alpha satellite and an EU station refuse routes
    carrying it from beta's satellites and from ashburn, and take them from alpha and the EU stations; beta's
    satellites and ashburn, whom the rule does not bind, take everything."""
    cfg, plan = _plan(sovereign)
    eu = residency_community(0)
    text = _config(cfg, plan, "frankfurt", ["sat-0-1", "sat-7-1"])
    assert f"set community {eu} additive" in text
    assert f"network {plan.own_prefixes('frankfurt')[0]} route-map lasernet-origin" in text
    assert f"bgp community-list standard lasernet-res-0 seq 5 permit {eu}" in text
    for me, peer, refused in [("sat-0-1", "sat-7-1", [0]), ("sat-0-1", "ashburn", [0]), ("frankfurt", "sat-7-1", [0]),
                              ("sat-0-1", "sat-0-2", []), ("sat-0-1", "frankfurt", []), ("sat-0-1", "paris-dc", []),
                              ("frankfurt", "sat-3-3", []), ("sat-7-1", "sat-0-1", []), ("sat-7-1", "frankfurt", []),
                              ("ashburn", "sat-0-1", [])]:
        assert plan.refused(me, peer) == refused, (me, peer)
        n = plan.neighbor(me, LinkSpec(peer, peer, 10, "10.128.0.1"))
        assert n["import_map"] == ("lasernet-res-in-0" if refused else "lasernet-accept"), (me, peer)
    text = _config(cfg, plan, "sat-0-1", ["sat-7-1", "sat-0-2"])
    assert "route-map lasernet-res-in-0 deny 10\n match community lasernet-res-0\n" in text
    assert "neighbor 10.128.0.1 route-map lasernet-res-in-0 in" in text  # sat-7-1
    assert "neighbor 10.128.0.3 route-map lasernet-accept in" in text  # sat-0-2
    assert "lasernet-origin" not in text  # a satellite is not a site: it tags nothing


def test_a_member_outside_land_at_that_relays_exports_only_its_own_tagged_prefixes(sovereign):
    """paris-dc relays (transit: true); with land_at [frankfurt, dublin] it is an end of EU traffic only: its
    sessions export through a map that lets its own prefixes pass and denies the other EU routes."""
    scenario, tl, names, rules, stubs = sovereign
    name, members, allowed = rules[0]
    cfg, _ = _plan(sovereign)
    plan = BgpPlan(cfg, names, tl.n_satellites, stubs=stubs,
                   residency=[(name, members, [n for n in allowed if n != "paris-dc"])])
    n = plan.neighbor("paris-dc", LinkSpec("sat-0-1", "sat-0-1", 10, "10.128.0.1"))
    assert n["export"] == "lasernet-res-end-0"
    text = _config(cfg, plan, "paris-dc", ["sat-0-1"])
    assert ("route-map lasernet-res-end-0 permit 5\n match as-path lasernet-own\nexit\n"
            "route-map lasernet-res-end-0 deny 10\n match community lasernet-res-0\n") in text
    assert "bgp as-path access-list lasernet-own seq 5 permit ^$" in text
    assert plan.neighbor("sat-0-1", LinkSpec("paris-dc", "paris-dc", 10, "10.128.0.0"))["import_map"] == \
        "lasernet-accept"  # a member is trusted with its own prefixes


def test_prefix_filters_take_from_a_stub_station_only_its_own_prefixes_and_carriers_nothing_more_specific(sovereign):
    cfg, plan = _plan(sovereign, prefix_filters=True, max_prefixes=MaxPrefixes(auto=True))
    text = _config(cfg, plan, "sat-5-4", ["ashburn", "sat-5-5", "paris-dc"])
    ashburn = plan.own_prefixes("ashburn")
    assert ashburn == [f"10.255.0.{plan.index['ashburn'] + 1}/32"]
    assert f"ip prefix-list lasernet-from-ashburn seq 5 permit {ashburn[0]}\n" in text
    assert "neighbor 10.128.0.1 prefix-list lasernet-from-ashburn in" in text
    assert "ip prefix-list lasernet-carry seq 5 permit 10.255.0.0/16 ge 32 le 32" in text
    assert "ip prefix-list lasernet-carry seq 10 permit 10.64.0.0/10 ge 24 le 24" in text
    assert "neighbor 10.128.0.3 prefix-list lasernet-carry in" in text  # a satellite
    assert "neighbor 10.128.0.5 prefix-list lasernet-carry in" in text  # paris-dc relays
    # auto: a stub station sends its own (1 here); a carrier every node's loopback and every LAN (68 + 1)
    assert "neighbor 10.128.0.1 maximum-prefix 1 force" in text
    assert f"neighbor 10.128.0.3 maximum-prefix {len(plan.names) + 1} force" in text
    assert plan.own_prefixes("sat-5-5") == [f"10.255.0.{plan.index['sat-5-5'] + 1}/32", LAN]
    cfg, plan = _plan(sovereign, max_prefixes=MaxPrefixes(stub=3))
    text = _config(cfg, plan, "sat-5-4", ["ashburn", "sat-5-5"])
    assert "neighbor 10.128.0.1 maximum-prefix 3 force" in text and "10.128.0.3 maximum-prefix" not in text
    assert "prefix-list" not in text  # filters off
    cfg, plan = _plan(sovereign, prefix_filters=True)
    new = FrrSuite(cfg).protocol.link_commands(cfg, LinkSpec("dublin", "dublin", 10, "10.128.0.9"),
                                               _spec(plan, "sat-5-4", []), plan)
    assert f"ip prefix-list lasernet-from-dublin seq 5 permit {plan.own_prefixes('dublin')[0]}" in new
    assert "neighbor 10.128.0.9 prefix-list lasernet-from-dublin in" in new  # a link made after start


@pytest.mark.skipif(not (FRR_BIN / "bgpd").exists() or os.geteuid() != 0,
                    reason="needs FRR (scripts/setup.sh installs it) and root for its dry run")
def test_frr_accepts_residency_and_defence_configs(sovereign):
    cfg, plan = _plan(sovereign, prefix_filters=True, max_prefixes=MaxPrefixes(auto=True))
    for name, peers in [("sat-0-1", ["sat-0-2", "sat-7-1", "frankfurt", "ashburn", "paris-dc"]),
                        ("frankfurt", ["sat-0-1", "sat-5-5"]), ("paris-dc", ["sat-0-1", "sat-5-5"]),
                        ("sat-5-5", ["sat-5-4", "frankfurt"])]:
        with tempfile.TemporaryDirectory(prefix="lasernet-frr-") as d:
            os.chmod(d, 0o755)
            path = Path(d) / "bgpd.conf"
            path.write_text(_config(cfg, plan, name, peers))
            path.chmod(0o644)
            proc = subprocess.run([str(FRR_BIN / "bgpd"), "-C", "-f", str(path), "-u", "frr", "-g", "frr"],
                                  capture_output=True, text=True, timeout=60)
        rejected = [ln for ln in (proc.stdout + proc.stderr).splitlines()
                    if "on config line" in ln and "log file" not in ln]
        assert proc.returncode == 0 and not rejected, (name, proc.stdout + proc.stderr)


# ---------------------------------------------------------------------------------------------- the schema
def _sovereign_with(tmp_path, **routing):
    doc = yaml.safe_load((TOPOLOGIES / "sovereign.yaml").read_text())
    doc["ground"]["include"] = [str(TOPOLOGIES / "ground" / "sites.yaml")]
    doc["routing"].update(routing)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_defences_are_read_from_the_routing_section(tmp_path):
    r = lasernet.load_scenario(_sovereign_with(tmp_path, prefix_filters=True, max_prefixes="auto")).routing
    assert r.prefix_filters and r.max_prefixes == MaxPrefixes(auto=True)
    r = lasernet.load_scenario(_sovereign_with(tmp_path, max_prefixes={"stub": 2})).routing
    assert not r.prefix_filters and r.max_prefixes == MaxPrefixes(stub=2, transit=None)
    assert lasernet.load_scenario(_sovereign_with(tmp_path)).routing.max_prefixes is None


@pytest.mark.parametrize("change,message", [
    ({"prefix_filters": "yes"}, "routing.prefix_filters: must be true or false, got 'yes'"),
    ({"max_prefixes": 5}, "routing.max_prefixes: must be auto (each session what the plan says its peer may send) "
                          "or {stub: N, transit: M}, got 5"),
    ({"max_prefixes": {"stub": 0}}, "routing.max_prefixes.stub: must be between 1 and 4294967295, got 0"),
    ({"max_prefixes": {"stubs": 2}}, "routing.max_prefixes.stubs: unknown field; allowed here: stub, transit"),
    ({"max_prefixes": {}}, "routing.max_prefixes: give stub: N and/or transit: M"),
])
def test_bad_defences_are_one_line_naming_the_field(tmp_path, change, message):
    with pytest.raises(lasernet.ScenarioError) as err:
        lasernet.load_scenario(_sovereign_with(tmp_path, **change))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_defences_only_apply_to_bgp(tmp_path):
    doc = yaml.safe_load((TOPOLOGIES / "mini.yaml").read_text())
    doc["ground"]["include"] = [str(TOPOLOGIES / "ground" / "sites.yaml")]
    doc["routing"] = {"protocol": "ospf", "max_prefixes": "auto"}
    path = tmp_path / "o.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(lasernet.ScenarioError, match="routing.max_prefixes: only applies to protocol: bgp"):
        lasernet.load_scenario(path)


def test_lasernet_plan_exits_2_naming_the_field(tmp_path):
    import sys

    path = _sovereign_with(tmp_path, max_prefixes={"transit": -1})
    proc = subprocess.run([sys.executable, "-m", "lasernet.cli", "plan", str(path), "--duration", "2"],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "s.yaml: routing.max_prefixes.transit: must be between 1" in lines[0], proc.stderr
