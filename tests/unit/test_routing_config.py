"""The scenario's routing: section: defaults keep the oracle, bad combinations are one line naming field and fix,
and the daemon templates render configurations the daemons themselves accept (BIRD's own parser)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import jinja2
import pytest
import yaml

import lasernet
from lasernet.routing.daemons import FRR_BIN, TEMPLATES, BirdSuite, FrrSuite, LinkSpec, NodeSpec
from lasernet.spec.routing import RoutingConfig

from ..conftest import TOPOLOGIES


def _mini_with(tmp_path, routing):
    doc = yaml.safe_load((TOPOLOGIES / "mini.yaml").read_text())
    doc["ground"]["include"] = [str(TOPOLOGIES / "ground" / "sites.yaml")]
    if routing is None:
        doc.pop("routing", None)
    else:
        doc["routing"] = routing
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_without_a_routing_section_the_oracle_routes(tmp_path):
    assert lasernet.load_scenario(_mini_with(tmp_path, None)).routing == RoutingConfig()
    assert not RoutingConfig().uses_daemons


def test_daemon_defaults_per_protocol(tmp_path):
    assert lasernet.load_scenario(_mini_with(tmp_path, {"protocol": "ospf"})).routing.daemon == "frr"
    assert lasernet.load_scenario(_mini_with(tmp_path, {"protocol": "isis"})).routing.daemon == "frr"
    babel = lasernet.load_scenario(_mini_with(tmp_path, {"protocol": "babel", "hello_s": 0.5})).routing
    assert (babel.daemon, babel.hello_s, babel.dead_s) == ("bird", 0.5, 2.0)


@pytest.mark.parametrize("routing,message", [
    ({"protocol": "rip"}, "routing.protocol: must be one of oracle, ospf, isis, babel, bgp, got 'rip'"),
    ({"protocol": "isis", "daemon": "bird"}, "routing.daemon: isis with bird: BIRD 2 has no IS-IS; use daemon: frr"),
    ({"protocol": "babel", "daemon": "frr"}, "routing.daemon: babel with frr: FRR 8.4's babeld"),
    ({"protocol": "ospf", "hello_s": 1.5}, "routing.hello_s: ospf hello intervals are whole seconds, got 1.5"),
    ({"protocol": "ospf", "hello_s": 5, "dead_s": 5}, "routing.dead_s: must be whole seconds greater than hello_s"),
    ({"protocol": "babel", "bfd": True}, "routing.bfd: babel has no BFD client in BIRD 2"),
    ({"protocol": "ospf", "bfd": "yes"}, "routing.bfd: must be true or false, got 'yes'"),
    ({"protocol": "ospf", "spf_hold_ms": 500, "spf_max_ms": 100}, "routing.spf_max_ms: must be >= spf_hold_ms"),
    ({"protocol": "oracle", "hello_s": 2}, "routing.hello_s: only applies to a routing daemon"),
    ({"protocol": "ospf", "colour": "red"}, "routing.colour: unknown field"),
    ({"protocol": "ospf", "cost": "bandwidth"}, "routing.cost: must be one of hops, delay"),
    ({"protocol": "isis", "retransmit_s": 1}, "routing.retransmit_s: only applies to protocol: ospf"),
])
def test_bad_routing_is_one_line_naming_field_and_fix(tmp_path, routing, message):
    with pytest.raises(lasernet.ScenarioError) as err:
        lasernet.load_scenario(_mini_with(tmp_path, routing))
    assert str(err.value).startswith("r.yaml: ") and message in str(err.value) and "\n" not in str(err.value)


def _node():
    return NodeSpec("sat-3-7", 31, "satellite", "10.255.0.32",
                    [LinkSpec("sat-3-6", "sat-3-6", 10), LinkSpec("sat-3-0", "sat-3-0", 10),
                     LinkSpec("sat-2-7", "sat-2-7", 190), LinkSpec("ashburn", "ashburn", 70)], ["rack-3-7"])


def _render(suite, cfg, tmp_path, node=None):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return {d.name: d.config(env, node or _node(), cfg, tmp_path, "test") for d in suite(cfg).daemons}


def test_frr_ospf_config_has_point_to_point_links_loopback_and_timers(tmp_path):
    cfg = RoutingConfig(protocol="ospf", daemon="frr", hello_s=2, dead_s=6, spf_delay_ms=10, bfd=True, retransmit_s=1)
    texts = _render(FrrSuite, cfg, tmp_path)
    assert list(texts) == ["zebra", "bfdd", "ospfd"]
    ospf = texts["ospfd"]
    assert ospf.count("ip ospf network point-to-point") == 4 and ospf.count("ip ospf bfd profile lasernet") == 4
    assert "ospf router-id 10.255.0.32" in ospf and "network 10.255.0.0/16 area 0" in ospf
    assert "ip ospf hello-interval 2" in ospf and "ip ospf dead-interval 6" in ospf and "ip ospf cost 190" in ospf
    assert "timers throttle spf 10 50 1000" in ospf and ospf.count("ip ospf retransmit-interval 1") == 4
    assert "interface rack-3-7\n ip ospf passive" in ospf
    assert "set src 10.255.0.32" in texts["zebra"] and "transmit-interval 100" in texts["bfdd"]


def test_frr_isis_net_is_derived_from_the_loopback(tmp_path):
    texts = _render(FrrSuite, RoutingConfig(protocol="isis", daemon="frr", hello_s=1, dead_s=3), tmp_path)
    assert " net 49.0001.0102.5500.0032.00" in texts["isisd"]
    assert texts["isisd"].count("isis network point-to-point") == 4 and "isis hello-multiplier 3" in texts["isisd"]


@pytest.mark.skipif(shutil.which("bird") is None, reason="needs BIRD 2 (scripts/setup.sh installs it)")
@pytest.mark.parametrize("protocol,bfd", [("ospf", False), ("ospf", True), ("babel", False)])
def test_bird_accepts_the_generated_config(tmp_path, protocol, bfd):
    """``bird -p`` parses the configuration and exits: the template yields valid BIRD 2 syntax."""
    cfg = RoutingConfig(protocol=protocol, daemon="bird", hello_s=1, dead_s=4, bfd=bfd, retransmit_s=2)
    text = _render(BirdSuite, cfg, tmp_path)["bird"]
    path = tmp_path / "bird.conf"
    path.write_text(text)
    proc = subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr + text


BGP = {"protocol": "bgp", "hello_s": 1, "dead_s": 3,
       "operators": [{"name": "alpha", "asn": 64500, "planes": [0, 3], "land_at": ["ashburn"]},
                     {"name": "beta", "asn": 64501, "planes": [4, 7]}]}


def test_bgp_operators_are_parsed_with_their_planes_and_landing_stations(tmp_path):
    cfg = lasernet.load_scenario(_mini_with(tmp_path, BGP)).routing
    alpha, beta = cfg.operators
    assert (alpha.asn, alpha.planes, alpha.land_at, cfg.daemon) == (64500, (0, 3), ("ashburn",), "frr")
    assert alpha.owns("sat-3-7") and not alpha.owns("sat-4-0") and beta.owns("sat-4-0")


@pytest.mark.parametrize("change,message", [
    ({"operators": []}, "routing.operators: bgp needs at least one operator"),
    ({"operators": [{"name": "a", "asn": 64500, "planes": [0, 3], "land_at": ["paris"]}]},
     "routing.operators[0].land_at[0]: unknown ground station 'paris'; stations are ashburn, frankfurt, dublin"),
    ({"operators": [{"name": "a", "asn": 64500}]}, "routing.operators[0]: needs planes: [first, last]"),
    ({"operators": [{"name": "a", "asn": 64500, "planes": [3, 0]}]}, "routing.operators[0].planes: must be [first"),
    ({"operators": [{"name": "a", "asn": 65001, "planes": [0, 7]}]}, "routing.operators[0].asn: collides with the "
                                                                      "ground stations' ASes 65000..65002"),
    ({"dead_s": 2}, "routing.dead_s: BGP's hold time must be at least 3 keepalives"),
    ({"daemon": "bird"}, "routing.daemon: bgp with bird: lasernet generates BGP configurations for FRR only"),
])
def test_bad_bgp_is_one_line_naming_field_and_fix(tmp_path, change, message):
    with pytest.raises(lasernet.ScenarioError) as err:
        lasernet.load_scenario(_mini_with(tmp_path, {**BGP, **change}))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_operators_only_apply_to_bgp(tmp_path):
    with pytest.raises(lasernet.ScenarioError, match="routing.operators: only applies to protocol: bgp"):
        lasernet.load_scenario(_mini_with(tmp_path, {"protocol": "ospf", "operators": BGP["operators"]}))


def test_bgp_config_confederation_members_and_a_landing_policy(tmp_path):
    from lasernet.routing.daemons import BgpPlan

    cfg = lasernet.load_scenario(_mini_with(tmp_path, BGP)).routing
    names = [f"sat-{p}-{s}" for p in range(8) for s in range(8)] + ["ashburn", "frankfurt", "dublin"]
    plan = BgpPlan(cfg, names, 64)
    node = _node()  # sat-3-7 (alpha): links to sat-3-6, sat-3-0 (alpha), sat-2-7 (alpha), ashburn
    node.links = [dataclasses.replace(lk, peer_ip=f"10.128.0.{k}") for k, lk in enumerate(node.links)]
    node.links.append(LinkSpec("frankfurt", "frankfurt", 70, "10.128.0.9"))
    node.links.append(LinkSpec("sat-4-7", "sat-4-7", 10, "10.128.0.11"))
    node.bgp = plan.node(node)
    text = _render(FrrSuite, cfg, tmp_path, node)["bgpd"]
    assert "router bgp 4200000031" in text and "bgp confederation identifier 64500" in text
    assert "neighbor 10.128.0.0 remote-as 4200000030" in text  # sat-3-6: a member of the same confederation
    assert "neighbor 10.128.0.11 remote-as 64501" in text  # sat-4-7: the other operator
    assert "neighbor 10.128.0.3 remote-as 65000" in text  # ashburn, listed: routes flow
    assert "neighbor 10.128.0.3 route-map lasernet-accept in" in text
    assert "neighbor 10.128.0.9 remote-as 65001" in text  # frankfurt, not listed: nothing is exchanged
    assert "neighbor 10.128.0.9 route-map lasernet-deny in" in text and "route-map lasernet-deny out" in text


# ---------------------------------------------------------------------------------------------- stub stations
def _station(transit: bool):
    return NodeSpec("ashburn", 64, "ground-station", "10.255.0.65",
                    [LinkSpec("sat-0-1", "sat-0-1", 10, "10.128.0.1"), LinkSpec("sat-0-2", "sat-0-2", 10, "10.128.0.3"),
                     LinkSpec("sat-4-2", "sat-4-2", 10, "10.128.0.5")], [], transit=transit)


STUB_LINES = {("ospf", "frr"): ("ospfd", " max-metric router-lsa administrative\n"),
              ("isis", "frr"): ("isisd", " set-overload-bit\n"),
              ("ospf", "bird"): ("bird", "  stub router yes;"),
              ("babel", "bird"): ("bird", "export where source = RTS_DEVICE;")}


@pytest.mark.parametrize("protocol,daemon", list(STUB_LINES), ids=[f"{p}-{d}" for p, d in STUB_LINES])
def test_a_stub_station_carries_its_protocols_no_transit_statement_and_a_transit_one_does_not(tmp_path, protocol,
                                                                                            daemon):
    """OSPF: the router-LSA at maximum metric (RFC 6987; FRR max-metric, BIRD stub router); IS-IS: the overload
    bit; Babel: it announces only its own (device) prefixes, never a route it learnt."""
    cfg = RoutingConfig(protocol=protocol, daemon=daemon, hello_s=1, dead_s=4)
    suite = FrrSuite if daemon == "frr" else BirdSuite
    name, line = STUB_LINES[(protocol, daemon)]
    stub, relay = (_render(suite, cfg, tmp_path, _station(t))[name] for t in (False, True))
    assert line in stub and line not in relay
    if protocol == "babel":
        assert "RTS_BABEL" in relay and "RTS_BABEL" not in stub
    if daemon == "bird" and shutil.which("bird"):  # BIRD's own parser accepts the stub's configuration
        path = tmp_path / "bird.conf"
        path.write_text(stub)
        proc = subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr + stub


def test_a_stub_station_exports_only_its_own_prefixes_over_bgp(tmp_path):
    """Every session of a stub station that exchanges routes sends through ``lasernet-own`` (an empty AS path:
    what the station originates); a landing it is denied stays denied; a satellite and a transit station send
    everything."""
    from lasernet.routing.daemons import BgpPlan

    cfg = lasernet.load_scenario(_mini_with(tmp_path, BGP)).routing  # alpha (planes 0-3) lands at ashburn only
    names = [f"sat-{p}-{s}" for p in range(8) for s in range(8)] + ["ashburn", "frankfurt", "dublin"]
    texts = {}
    for stubs in ((), ("ashburn",)):
        plan = BgpPlan(cfg, names, 64, stubs=stubs)
        node = _station(transit=not stubs)
        node.bgp = plan.node(node)
        texts[bool(stubs)] = _render(FrrSuite, cfg, tmp_path, node)["bgpd"]
    stub, relay = texts[True], texts[False]
    assert "bgp as-path access-list lasernet-own seq 5 permit ^$" in stub and "match as-path lasernet-own" in stub
    for ip in ("10.128.0.1", "10.128.0.3", "10.128.0.5"):
        assert f"neighbor {ip} route-map lasernet-own out" in stub and f"neighbor {ip} route-map lasernet-accept in" in stub
        assert f"neighbor {ip} route-map lasernet-accept out" in relay
    assert "lasernet-own" not in relay
    plan = BgpPlan(cfg, names, 64, stubs=("frankfurt",))  # alpha does not land at frankfurt: deny beats own
    assert plan.neighbor("frankfurt", LinkSpec("sat-0-1", "sat-0-1", 10, "10.128.0.1"))["export"] == "lasernet-deny"
    assert plan.neighbor("sat-0-1", LinkSpec("ashburn", "ashburn", 10, "10.128.0.0"))["export"] == "lasernet-accept"


FRR_DAEMONS = {"ospf": "ospfd", "isis": "isisd", "bgp": "bgpd"}


@pytest.mark.skipif(not all((FRR_BIN / d).exists() for d in FRR_DAEMONS.values()) or os.geteuid() != 0,
                    reason="needs FRR (scripts/setup.sh installs it) and root for its dry run")
@pytest.mark.parametrize("protocol", list(FRR_DAEMONS))
def test_frr_accepts_a_stub_stations_config(tmp_path, protocol):
    """The daemon's own dry run (``-C``) reads the configuration and rejects no line of it (its log file aside:
    the test directory is not the frr user's)."""
    kw = {"operators": [{"name": "alpha", "asn": 64500, "planes": [0, 7]}], "hello_s": 1, "dead_s": 3} \
        if protocol == "bgp" else {}
    cfg = lasernet.load_scenario(_mini_with(tmp_path, {"protocol": protocol, **kw})).routing
    node = _station(transit=False)
    if protocol == "bgp":
        from lasernet.routing.daemons import BgpPlan

        node.bgp = BgpPlan(cfg, [f"sat-{p}-{s}" for p in range(8) for s in range(8)] + ["ashburn"], 64,
                           stubs=["ashburn"]).node(node)
    daemon = FRR_DAEMONS[protocol]
    with tempfile.TemporaryDirectory(prefix="lasernet-frr-") as d:  # readable by user frr, which the daemon runs as
        os.chmod(d, 0o755)
        path = Path(d) / f"{daemon}.conf"
        path.write_text(_render(FrrSuite, cfg, tmp_path, node)[daemon])
        path.chmod(0o644)
        proc = subprocess.run([str(FRR_BIN / daemon), "-C", "-f", str(path), "-u", "frr", "-g", "frr"],
                              capture_output=True, text=True, timeout=60)
    rejected = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "on config line" in ln and "log file" not in ln]
    assert proc.returncode == 0 and not rejected, proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------------------ authentication
def test_a_key_file_gives_the_routers_key_which_no_repr_shows(tmp_path):
    key = tmp_path / "k"
    key.write_text("s3cret.key\nignored\n")
    key.chmod(0o600)
    sc = lasernet.load_scenario(_mini_with(tmp_path, {"protocol": "ospf", "auth": {"key_file": "k"}}))
    assert sc.routing.auth_key == "s3cret.key" and not sc.routing.auth_inline
    assert "s3cret" not in repr(sc) and "s3cret" not in repr(sc.routing)


@pytest.mark.parametrize("auth, protocol, daemon, message", [
    ({"key_file": "k"}, "ospf", "frr", "can be read by others (mode 0644); chmod 600 it"),
    ({"key_file": "missing"}, "ospf", "frr", "cannot read"),
    ({"key": "a b"}, "ospf", "frr", "letters, digits"),
    ({"key": "abcdefghijklmnopq"}, "ospf", "frr", "1 to 16 characters"),
    ({"key": "abc"}, "babel", "bird", "not babel with bird"),
    ({"key": "abc", "key_file": "k"}, "ospf", "frr", "give the routers' key as key_file"),
])
def test_bad_authentication_is_one_line_naming_the_field(tmp_path, auth, protocol, daemon, message):
    key = tmp_path / "k"
    key.write_text("abc\n")
    key.chmod(0o644)
    path = _mini_with(tmp_path, {"protocol": protocol, "daemon": daemon, "auth": auth})
    with pytest.raises(lasernet.ScenarioError) as err:
        lasernet.load_scenario(path)
    text = str(err.value)
    assert text.startswith("r.yaml: routing.auth") and message in text and "\n" not in text, text


@pytest.mark.parametrize("protocol, daemon, lines", [
    ("ospf", "frr", {"ospfd": ["ip ospf authentication message-digest", "ip ospf message-digest-key 1 md5 K.1"]}),
    ("isis", "frr", {"isisd": ["isis password md5 K.1"]}),
    ("ospf", "bird", {"bird": ['authentication cryptographic; password "K.1" { id 1; algorithm hmac sha256; };']}),
])
def test_the_key_is_in_every_link_of_every_daemon_configuration(protocol, daemon, lines):
    """Both links and (BIRD) the pattern for links made later carry the key; FRR's IS-IS also its LSPs'."""
    from lasernet.routing.daemons.base import environment
    from lasernet.routing.daemons.suite import make_suite

    cfg = RoutingConfig(protocol=protocol, daemon=daemon, auth_key="K.1")
    node = NodeSpec("sat-0-0", 0, "satellite", "10.255.0.1",
                    [LinkSpec("eth-a", "sat-0-1", 10, "10.128.0.1"), LinkSpec("eth-b", "sat-0-2", 10, "10.128.0.3")],
                    [])
    daemon_obj = next(d for d in make_suite(cfg).daemons if d.name in lines)
    text = daemon_obj.config(environment(), node, cfg, Path("/tmp/x"), "t")
    for line in lines[daemon_obj.name]:
        assert text.count(line) >= 2, (line, text)
    if protocol == "isis":
        assert "domain-password md5 K.1" in text
    assert "K.1" not in daemon_obj.config(environment(), node, RoutingConfig(protocol=protocol, daemon=daemon),
                                          Path("/tmp/x"), "t")


def test_a_key_written_in_the_scenario_is_hidden_in_the_run_directorys_copy(tmp_path):
    from lasernet.measure import provenance

    path = _mini_with(tmp_path, {"protocol": "ospf", "auth": {"key": "Inline.Key9"}})
    sc = lasernet.load_scenario(path)
    assert sc.routing.auth_inline
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    provenance.record(run_dir, sc, lasernet.plan(sc, duration_s=5))
    copy = (run_dir / "scenario.yaml").read_text()
    assert "Inline.Key9" not in copy and "********" in copy
    assert not any(b"Inline.Key9" in p.read_bytes() for p in run_dir.rglob("*") if p.is_file())
