"""lasernet on a real Ray cluster of "machines" that are network namespaces of this one: mini spread over two.

The module's fixture (:class:`lasernet.emulation.cluster.sandbox.NamespaceCluster`) makes two namespaces joined by a
bridge (10.213.k.0/24, a test range on this box only), starts a Ray head in the first and a Ray node in the
second (``ray start``, as a user forms a cluster), and runs the coordinator inside the first, as on a head
machine. It removes exactly what it made: every process whose network namespace is one of its own, the
namespaces, the bridge and Ray's temporary directory.

What is checked, each against an independent reference: every ground-station pair answers ping over the
emulated network; probe paths that cross machines have a median RTT within 0.5 ms of their light time (plus the
relays' own measured lateness, as on one machine); a cross-machine link taken down shows NO-CARRIER on both of its
ends, on two machines; SIGKILL of the coordinator then ``lasernet down`` leaves nothing on either machine; an
agent killed mid-run stops the run with one line naming its machine, and the other machine is cleaned.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from lasernet.emulation.cluster.sandbox import NamespaceCluster, ray_command
from lasernet.net.procs import netns_inode

from .test_lifecycle import assert_nothing_left, snapshot

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root to create network namespaces (CI runs as root)", allow_module_level=True)

if not ray_command().exists():
    pytest.skip("needs Ray (scripts/setup.sh installs it)", allow_module_level=True)

MACHINES = 2
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster():
    """Two namespaces as machines, a Ray head in m0 and a Ray node in m1 (lasernet.emulation.cluster.sandbox)."""
    from lasernet.emulation import state as run_state

    runs_before = {run["run_id"] for run in run_state.list_runs()}
    with NamespaceCluster(MACHINES) as sandbox:
        print(f"ray: {MACHINES} nodes up in {sandbox.start_s:.1f} s")
        try:
            yield {"address": sandbox.address, "namespaces": sandbox.namespaces, "sandbox": sandbox}
        finally:  # what a failed test left (its tests assert that nothing is left; this is only the safety net)
            for run in run_state.list_runs():
                if run["run_id"] not in runs_before:
                    run_state.teardown(run, quiet=True)


def _in_head(cluster, argv, **kw) -> subprocess.Popen:
    return cluster["sandbox"].popen(0, argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    **kw)


DRIVER = textwrap.dedent('''
    import json, sys
    import lasernet
    address, run_dir = sys.argv[1], sys.argv[2]
    out = {}
    sc = lasernet.load_scenario("topologies/mini.yaml")
    with lasernet.Emulation(sc, cluster=address, links="delayline", duration_s=10, run_dir=run_dir) as emu:
        emu.run(10)
        out["placement"] = {name: emu.host.placement.machine.tolist()[i] for i, name in enumerate(emu.node_names)}
        stations = emu.node_names[emu.n_satellites:]
        out["ping"] = {}
        for a in stations:
            for b in stations:
                if a != b:
                    text = emu.nodes[a].cmd(f"ping -c 1 -W 2 {emu.nodes[b].IP()}")
                    out["ping"][f"{a}>{b}"] = " 0% packet loss" in text
        machine = emu.host.placement.machine
        nodes, _ = emu.path(sc.probes[0].src, sc.probes[0].dst)
        idx = [emu.node_names.index(n) for n in nodes]
        hop = next(k for k in range(len(idx) - 1) if machine[idx[k]] != machine[idx[k + 1]])
        a, b = nodes[hop], nodes[hop + 1]
        link = emu.applied.by_pair.get((idx[hop], idx[hop + 1])) or emu.applied.by_pair[(idx[hop + 1], idx[hop])]
        ends = {emu.node_names[link.a]: link.ifname_a, emu.node_names[link.b]: link.ifname_b}
        show = lambda: {n: emu.nodes[n].cmd(f"ip -br link show dev {ends[n]}").split("@")[0] + " " +
                        emu.nodes[n].cmd(f"ip -br link show dev {ends[n]}").split()[-1] for n in ends}
        out["link"] = {"ends": [a, b], "machines": [int(machine[idx[hop]]), int(machine[idx[hop + 1]])],
                       "before": show()}
        emu.override(a, b, up=False, for_s=3.0 * emu.speed)
        emu.run(0.5)
        out["link"]["down"] = show()
        emu.run(3.0)
        out["link"]["after"] = show()
        out["summary"] = emu.host.summary()
        out["late_ms"] = max(emu.host.release_late_s()) * 1e3
    print(json.dumps(out))
''')


def _run_driver(cluster, tmp_path, script: str, timeout_s: float) -> dict:
    """Run a driver script in the head machine's namespace; its last stdout line is its JSON result."""
    (tmp_path / "driver.py").write_text(script)
    proc = _in_head(cluster, [sys.executable, tmp_path / "driver.py", cluster["address"], tmp_path / "run"])
    out, err = proc.communicate(timeout=timeout_s)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_mini_across_two_machines_pings_every_pair_keeps_light_time_and_carrier(cluster, tmp_path):
    before = snapshot()
    result = _run_driver(cluster, tmp_path, DRIVER, 300)
    placement, summary = result["placement"], result["summary"]
    print(f"machines: {[(m['name'], m['routers']) for m in summary['machines']]}, cross-machine links "
          f"{summary['cross_machine_links']}, substrate one-way {summary['substrate_one_way_ms']} ms, "
          f"links below the substrate {summary['below_substrate_links']}")
    assert {m["routers"] > 0 for m in summary["machines"]} == {True} and len(summary["machines"]) == MACHINES
    assert summary["cross_machine_links"] > 0 and summary["substrate_measurements"] >= 1
    failed = [pair for pair, ok in result["ping"].items() if not ok]
    print(f"ping: {len(result['ping']) - len(failed)} of {len(result['ping'])} ground-station pairs answered")
    assert not failed
    # Probe paths that cross machines: the light time along them, as on one machine.
    import csv

    rows = list(csv.DictReader((tmp_path / "run" / "probes.csv").open()))
    crossing = 0
    for pair in sorted({r["pair"] for r in rows}):
        mine = [r for r in rows if r["pair"] == pair and r["measured_rtt_ms"] and r["predicted_rtt_ms"]]
        nodes = mine[0]["path"].split(">")
        machines = {placement[n] for n in nodes}
        err_ms = np.array([float(r["measured_rtt_ms"]) - float(r["predicted_rtt_ms"]) for r in mine])
        print(f"{pair}: {len(err_ms)} probes over {len(nodes) - 1} hops on machines {sorted(machines)}: measured - "
              f"predicted median {np.median(err_ms):+.3f} ms, p1 {np.percentile(err_ms, 1):+.3f} ms")
        assert len(err_ms) >= 100
        if len(machines) > 1:
            crossing += 1
            # As on one machine (test_emulation.py): 0.5 ms plus the relays' own lateness measured in this run
            # on each of the round trip's hops (the slower machine's).
            allowed = 0.5 + 2 * (len(nodes) - 1) * result["late_ms"]
            print(f"{pair}: relays {result['late_ms'] * 1e3:.1f} us late on average: allowed |median| "
                  f"{allowed:.3f} ms")
            assert abs(np.median(err_ms)) <= allowed
            assert np.percentile(err_ms, 1) >= -0.1  # never faster than light (compensation never overshoots)
    assert crossing >= 1
    link = result["link"]
    print(f"cross-machine link {link['ends']} on machines {link['machines']}: up {link['before']}, "
          f"down {link['down']}, after {link['after']}")
    assert link["machines"][0] != link["machines"][1]
    assert all("NO-CARRIER" not in v for v in link["before"].values())
    assert all("NO-CARRIER" in v for v in link["down"].values())
    assert all("NO-CARRIER" not in v for v in link["after"].values())
    assert_nothing_left(before)


def _wait_for(path: Path, proc: subprocess.Popen, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


def _shares(run_id: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path("/run/lasernet").glob(f"{run_id[:30]}*-m*.json"))]


def test_sigkill_of_the_coordinator_then_down_leaves_nothing_on_any_machine(cluster, tmp_path):
    before = snapshot()
    proc = _in_head(cluster, [sys.executable, "-m", "lasernet.cli", "up", "mini", "--cluster", cluster["address"],
                              "--links", "delayline", "--run-dir", tmp_path / "run"])
    _wait_for(tmp_path / "run" / "status.json", proc)
    run_id = json.loads((tmp_path / "run" / "state.json").read_text())["run_id"]
    state = json.loads((Path("/run/lasernet") / f"{run_id}.json").read_text())
    shares = [m["run_id"] for m in state["cluster"]["machines"]]
    assert len(shares) == MACHINES
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    down = subprocess.run(["ip", "netns", "exec", cluster["namespaces"][0], sys.executable, "-m", "lasernet.cli",
                           "down", run_id], capture_output=True, text=True, cwd=REPO, timeout=180)
    print(down.stdout.strip())
    assert down.returncode == 0, down.stderr[-2000:]
    assert all(any(line.startswith(f"down: {run_id}: m{k} ") for line in down.stdout.splitlines())
               for k in range(MACHINES))
    assert not [s for s in shares if (Path("/run/lasernet") / f"{s}.json").exists()]
    assert_nothing_left(before, timeout_s=20.0)


def test_an_agent_killed_mid_run_stops_the_run_with_one_line_and_the_rest_is_cleaned(cluster, tmp_path):
    before = snapshot()
    proc = _in_head(cluster, [sys.executable, "-m", "lasernet.cli", "up", "mini", "--cluster", cluster["address"],
                              "--links", "delayline", "--run-dir", tmp_path / "run"])
    _wait_for(tmp_path / "run" / "status.json", proc)
    run_id = json.loads((tmp_path / "run" / "state.json").read_text())["run_id"]
    state = json.loads((Path("/run/lasernet") / f"{run_id}.json").read_text())
    victim = state["cluster"]["machines"][1]
    share = json.loads((Path("/run/lasernet") / f"{victim['run_id']}.json").read_text())
    agent_pid = share["driver"]["pid"]
    assert netns_inode(agent_pid) == os.stat(f"/run/netns/{cluster['namespaces'][1]}").st_ino  # it runs on m1
    os.kill(agent_pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    print(f"exit {proc.returncode}: {lines[-1] if lines else ''}")
    assert proc.returncode == 2
    assert "m1" in lines[-1] and victim["ip"] in lines[-1] and "Traceback" not in err
    # Both shares are gone: the head's by its agent, the dead agent's by a Ray task on its machine.
    assert not [m for m in state["cluster"]["machines"] if (Path("/run/lasernet") / f"{m['run_id']}.json").exists()]
    assert_nothing_left(before, timeout_s=20.0)


def test_the_cli_on_a_cluster_runs_lasernets_commands_and_each_nodes_on_its_machine(cluster, tmp_path):
    before = snapshot()
    proc = _in_head(cluster, [sys.executable, "-m", "lasernet.cli", "up", "mini", "--cluster", cluster["address"],
                              "--links", "delayline", "--cli", "--run-dir", tmp_path / "run"], stdin=subprocess.PIPE)
    try:
        _wait_for(tmp_path / "run" / "status.json", proc)
        run_id = json.loads((tmp_path / "run" / "state.json").read_text())["run_id"]
        nodes = json.loads((Path("/run/lasernet") / f"{run_id}.json").read_text())["cluster"]["nodes"]
        far = next(name for name, node in nodes.items() if node["machine"] == 1 and node["role"] == "satellite")
        near = next(name for name, node in nodes.items() if node["machine"] == 0 and node["role"] == "satellite")
        out, err = proc.communicate(f"orbit\nnodes\n{near} ip -br addr show lo\n{far} ip -br addr show lo\n"
                                    f"path ashburn frankfurt\nexit\n", timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    out = out.replace("lasernet> ", "\n")
    assert re.search(r"t = [\d.]+ s \(.* UTC\), speed 1x; links up \d+/\d+; ticks \d+", out), out
    listed = dict(re.findall(r"^(\S+)\s+m(\d)$", out, re.M))
    assert {name: int(m) for name, m in listed.items()} == {name: node["machine"] for name, node in nodes.items()}
    for name in (near, far):  # each node's own loopback: the command ran in that node, on its machine
        assert re.search(rf"^lo\s+UNKNOWN\s+127\.0\.0\.1/8 {re.escape(nodes[name]['loopback'])}/32", out, re.M), out
    assert re.search(r"^ashburn( > \S+)+ > frankfurt$", out, re.M), out
    assert_nothing_left(before, timeout_s=20.0)


def test_links_netem_on_a_cluster_whose_machines_lack_it_names_the_machine_and_leaves_nothing(cluster, tmp_path):
    from lasernet.emulation.links import netem_available

    if netem_available():
        pytest.skip("this kernel has sch_netem: the refusal cannot happen here (netem halves across machines are "
                    "tested in the QEMU guest, tests/vm/guest/test_cross_machine_netem.py)")
    before = snapshot()
    proc = _in_head(cluster, [sys.executable, "-m", "lasernet.cli", "up", "mini", "--cluster", cluster["address"],
                              "--links", "netem", "--duration", "5", "--run-dir", tmp_path / "run"])
    out, err = proc.communicate(timeout=120)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    print(f"exit {proc.returncode}: {lines[-1] if lines else ''}")
    assert proc.returncode == 2 and "Traceback" not in err
    assert "--links netem" in lines[-1] and "m0" in lines[-1] and "--links delayline" in lines[-1]
    assert_nothing_left(before, timeout_s=20.0)


OSPF_DRIVER = textwrap.dedent('''
    import dataclasses, json, sys
    import lasernet
    from lasernet.spec.routing import RoutingConfig
    address, run_dir = sys.argv[1], sys.argv[2]
    sc = lasernet.load_scenario("topologies/mini.yaml")
    sc = dataclasses.replace(sc, probes=(), routing=RoutingConfig(protocol="ospf", daemon="frr"))
    out = {}
    with lasernet.Emulation(sc, cluster=address, links="delayline", run_dir=run_dir) as emu:
        out["converged_s"] = emu.run_until_converged(120)
        stations = emu.node_names[emu.n_satellites:]
        machine = emu.host.placement.machine
        out["stations"] = {s: int(machine[emu.node_names.index(s)]) for s in stations}
        out["placement"] = {n: int(machine[i]) for i, n in enumerate(emu.node_names)}
        out["ping"], out["proto"] = {}, {}
        for a in stations:
            for b in stations:
                if a != b:
                    text = emu.nodes[a].cmd(f"ping -c 2 -i 0.2 -W 2 -I {emu.nodes[a].IP()} {emu.nodes[b].IP()}")
                    out["ping"][f"{a}>{b}"] = " 0 received" not in text and "received" in text
                    out["proto"][f"{a}>{b}"] = emu.nodes[a].cmd(f"ip route show {emu.nodes[b].IP()}/32")
        out["summary"] = emu.host.summary()
    print(json.dumps(out))
''')


def test_ospf_frr_forms_adjacencies_across_machines_converges_and_delivers(cluster, tmp_path):
    before = snapshot()
    result = _run_driver(cluster, tmp_path, OSPF_DRIVER, 400)
    print(f"ospf (frr) over {len(result['summary']['machines'])} machines, "
          f"{result['summary']['cross_machine_links']} cross-machine links: converged after "
          f"{result['converged_s']} s; stations on machines {sorted(set(result['stations'].values()))}")
    assert result["converged_s"] is not None
    assert len(set(result["stations"].values())) == MACHINES  # some pairs are on two machines
    failed = [pair for pair, ok in result["ping"].items() if not ok]
    assert not failed, failed
    assert all("proto ospf" in route for route in result["proto"].values())
    # Both machines share this run directory: each keeps its routers' configs and logs under its own name.
    for m, name in enumerate(["routing", *(f"routing-m{k}" for k in range(1, MACHINES))]):
        kept = {d.name for d in (tmp_path / "run" / name).iterdir() if (d / "ospfd.conf").exists()}
        assert kept == {n for n, k in result["placement"].items() if k == m}, name
    assert_nothing_left(before)
