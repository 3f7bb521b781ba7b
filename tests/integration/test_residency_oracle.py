"""Residency rules with oracle routing, in the kernel: policy routing keeps the governed pairs on allowed nodes.

`sovereign` with the oracle instead of BGP: its rule keeps traffic between the EU sites (frankfurt, dublin,
paris-dc) on alpha's satellites (planes 0-3) and EU ground. Started 308 s after its epoch, dublin loses its last
alpha satellite 7 s in and is left with beta's sat-7-1 (the plan says so; the test checks it). The packets' way is
read from the kernels themselves, hop by hop with ``ip route get DST from SRC iif DEV`` in each router (what
the kernel does with a packet arriving there from that source), and judged against lasernet.routing.policy's
tables over the plan's links at that second: an EU pair goes the rule's way or is unreachable; a pair the rule
does not govern (ashburn to dublin) goes the plain oracle's way, through beta.
"""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest
import yaml

import lasernet
from lasernet.routing import oracle, policy

from ..conftest import TOPOLOGIES

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root to create network namespaces (CI runs as root)", allow_module_level=True)

LINKS = os.environ.get("LASERNET_LINKS", "auto")
START_S = 308
JUDGED_AT_S = 10.0


def oracle_sovereign(tmp_path):
    source = yaml.safe_load((TOPOLOGIES / "sovereign.yaml").read_text())
    source["routing"] = {"protocol": "oracle", "operators": source["routing"]["operators"]}  # the oracle routes
    source["ground"]["include"] = [str(TOPOLOGIES / "ground" / "sites.yaml")]
    source["probes"] = []
    path = tmp_path / "sovereign-oracle.yaml"
    path.write_text(yaml.safe_dump(source, sort_keys=False))
    return lasernet.load_scenario(path)


def kernel_path(emu, source: str, destination: str, limit: int = 40) -> list[str] | None:
    """The routers a packet from ``source``'s loopback to ``destination``'s goes through, as each kernel routes it;
    None when a router on the way has no route (unreachable)."""
    names = list(emu.node_names)
    src_ip, dst_ip = lasernet.addressing.loopback_ip(names.index(source)), \
        lasernet.addressing.loopback_ip(names.index(destination))
    by_ip = {}
    for link in emu.applied.links:
        by_ip[link.ip_a] = (names[link.a], link.ifname_a)
        by_ip[link.ip_b] = (names[link.b], link.ifname_b)
    path, node, iif = [source], source, None
    while node != destination and len(path) <= limit:
        extra = "" if iif is None else f" from {src_ip} iif {iif}"
        out = emu.nodes[node].cmd(f"ip -j route get {dst_ip}{extra} 2>/dev/null").strip()
        if not out:
            return None
        route = json.loads(out)[0]
        if route.get("type", "unicast") != "unicast" or "gateway" not in route:
            return None
        node, iif = by_ip[route["gateway"]]
        path.append(node)
    return path


def test_oracle_routes_eu_pairs_on_alpha_or_not_at_all_and_other_pairs_as_usual(tmp_path):
    scenario = oracle_sovereign(tmp_path)
    start = scenario.epoch + dt.timedelta(seconds=START_S)
    tl = lasernet.plan(scenario, start=start, duration_s=30, step_s=1)
    names = list(tl.node_names)
    ix = {n: i for i, n in enumerate(names)}
    beta = {n for n in names[:tl.n_satellites] if int(n.split("-")[1]) >= 4}
    with lasernet.Emulation(scenario, start=start, run_dir=tmp_path / "run", links=LINKS, routing="tick") as emu:
        paths = {}
        while emu.now_s() < JUDGED_AT_S:
            emu.run(0.5)
        judged = int(emu.now_s())
        for pair in (("frankfurt", "paris-dc"), ("paris-dc", "frankfurt"), ("frankfurt", "dublin"),
                     ("ashburn", "dublin"), ("dublin", "ashburn")):
            paths[pair] = kernel_path(emu, *pair)
        if int(emu.now_s()) != judged:  # a tick applied a new second while we read: read again on it
            judged = int(emu.now_s())
            paths = {pair: kernel_path(emu, *pair) for pair in paths}
        said = {pair: emu.path(*pair)[0] for pair in paths}  # what the emulation says (and its probes predict)
    print(f"kernel paths at {judged} s: {paths}")
    reference = policy.of_timeline(tl, tl.up[judged], tl.delay_s[judged])
    rule = reference.rules[0]
    base = reference.base
    assert not rule.reachable(ix["frankfurt"], ix["dublin"]) and oracle.path(base, ix["frankfurt"], ix["dublin"])
    assert paths[("frankfurt", "dublin")] is None  # the rule leaves no path: dropped, not sent through beta
    for s, d in (("frankfurt", "paris-dc"), ("paris-dc", "frankfurt")):
        assert paths[(s, d)] == [names[i] for i in rule.path(ix[s], ix[d])], (s, d)
        assert not set(paths[(s, d)]) & beta
    assert said == {pair: path or [] for pair, path in paths.items()}
    for s, d in (("ashburn", "dublin"), ("dublin", "ashburn")):  # not governed: the plain oracle's path
        assert paths[(s, d)] == [names[i] for i in oracle.path(base, ix[s], ix[d])], (s, d)
        assert set(paths[(s, d)]) & beta


def test_residency_rules_with_background_oracle_routing_are_refused_before_anything_exists(tmp_path):
    scenario = oracle_sovereign(tmp_path)
    emu = lasernet.Emulation(scenario, run_dir=tmp_path / "run", links=LINKS, routing="background")
    with pytest.raises(lasernet.errors.OptionError, match="--routing"):
        emu.start()
    emu.stop()
    assert not (tmp_path / "run" / "state.json").exists() or not json.loads(
        (tmp_path / "run" / "state.json").read_text()).get("nodes")
