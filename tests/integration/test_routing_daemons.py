"""Real routing daemons (FRR, BIRD 2) on every router of `mini`: reachability, reconvergence, records, failures.

Each protocol runs in one emulation shared by its tests: real daemons in real namespaces, their control packets
on the emulated links, link outages as carrier loss. The evidence is behavioural: pings between every pair of
ground stations over the routes the daemons installed (the driver installs none), the FIBs' paths never shorter
than the oracle's shortest path (nothing beats light over the shortest path), a forced failure of an ISL on the
daemons' own path after which the FIBs route around it and delivery resumes, with every lost probe sent while
the convergence measurement says pairs were broken. A daemon that cannot start is one line naming node and
daemon, and nothing of the run is left behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import lasernet
from lasernet.emulation.state import STATE_DIR
from lasernet.measure.probes import ProbeResult, read_record
from lasernet.net.procs import is_zombie, start_time
from lasernet.routing.daemons import FRR_TMP, RoutingDaemonError
from lasernet.emulation.webfeed import WebFeed
from lasernet.spec.routing import Operator, RoutingConfig

from ..conftest import TOPOLOGIES

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root to create network namespaces (CI runs as root)", allow_module_level=True)

LINKS = os.environ.get("LASERNET_LINKS", "auto")
SCENARIO = TOPOLOGIES / "mini.yaml"
CONVERGE_TIMEOUT_S = 120  # wall seconds; IS-IS takes ~30 s on mini, OSPF ~10 s, Babel ~5 s, BGP ~3 s
PORT = 7950
# (protocol, daemon, the kernel's "proto" of the routes it installs)
CASES = [("ospf", "frr", "ospf"), ("babel", "bird", "bird"), ("isis", "frr", "isis"), ("bgp", "frr", "bgp")]
# BGP: two operators (planes 0-3 and 4-7), no landing restrictions
OPERATORS = (Operator("alpha", 64500, (0, 3)), Operator("beta", 64501, (4, 7)))
PROBE_INTERVAL_S = 0.01
OUTAGE_S = 15.0  # longer than any protocol's reconvergence here (IS-IS: ~4 s), so the detour can be seen


def _scenario(protocol: str, daemon: str, **timers):
    if protocol == "bgp":
        timers = {"hello_s": 1, "dead_s": 3, "operators": OPERATORS, **timers}
    scenario = lasernet.load_scenario(SCENARIO)
    return dataclasses.replace(scenario, probes=(),
                               routing=RoutingConfig(protocol=protocol, daemon=daemon, **timers))


@pytest.fixture(scope="module", params=CASES, ids=[f"{p}-{d}" for p, d, _ in CASES])
def routed(request, tmp_path_factory):
    protocol, daemon, proto = request.param
    with lasernet.Emulation(_scenario(protocol, daemon), links=LINKS,
                            run_dir=tmp_path_factory.mktemp(f"{protocol}-{daemon}") / "run") as emu:
        took = emu.run_until_converged(CONVERGE_TIMEOUT_S)
        assert took is not None, f"{protocol} ({daemon}) did not converge within {CONVERGE_TIMEOUT_S} s"
        print(f"{protocol} ({daemon}): every connected pair delivered after {took:.1f} s")
        emu.kernel_proto = proto
        yield emu


def _stations(emu) -> list[str]:
    return list(emu.node_names[emu.n_satellites:])


def test_every_ground_station_reaches_every_other_over_daemon_routes(routed):
    """Ping every ordered pair of ground stations (loopback to loopback); the routes are the daemon's."""
    stations = _stations(routed)
    assert len(stations) >= 3
    for src in stations:
        for dst in stations:
            if src == dst:
                continue
            out = routed.nodes[src].cmd(f"ping -c 3 -i 0.2 -W 2 -I {routed.nodes[src].IP()} {routed.nodes[dst].IP()}")
            assert " 0 received" not in out and "received" in out, f"{src} -> {dst}: {out}"
            route = routed.nodes[src].cmd(f"ip route show {routed.nodes[dst].IP()}/32")
            assert f"proto {routed.kernel_proto}" in route, f"{src} -> {dst}: {route!r}"
    assert routed.fib_watch.converged()


def test_node_view_lists_the_daemons_own_neighbours(routed):
    """What the browser view shows for a clicked node (``WebFeed.answer``, no browser needed): the daemon's neighbour
    list names the node's neighbours across its links that are up (by interface, which is named after the node at
    the other end, by link address or by loopback, as each daemon prints them)."""
    node = "sat-0-0"
    answer = WebFeed(routed, ("127.0.0.1", 0)).answer({"kind": "node", "name": node})
    text = answer["neighbours"]
    up = [row for row in routed.link_table() if row["up"] and node in row["link"].split("~")]
    assert up
    peers = [next(n for n in row["link"].split("~") if n != node) for row in up]
    seen = [p for p in peers if p in text or routed.nodes[p].IP() in text
            or any(ip in text for ip in _link_ips(routed, node, p))]
    assert seen, f"{answer['neighbours_command']} in {node} names none of {peers}:\n{text}"
    assert len(answer["routes"]) == int((routed.routes.next_hop[routed.router_index(node)] >= 0).sum())


def _link_ips(emu, a: str, b: str) -> list[str]:
    ia, ib = emu.router_index(a), emu.router_index(b)
    link = emu.applied.by_pair.get((ia, ib)) or emu.applied.by_pair.get((ib, ia))
    return [] if link is None else [str(ip) for ip in (link.ip_a, link.ip_b)]


def test_fib_paths_are_never_shorter_than_the_oracle_shortest_path(routed):
    """Over every delivered pair the FIBs' path delay is >= the oracle's shortest delay (stretch >= 1)."""
    routed.fib_watch.evaluate()
    last = routed.fib_watch.last
    oracle = routed.routes.delay_s
    ok = last["delivered"] & last["connected"] & np.isfinite(oracle)
    assert ok.sum() > 0.99 * last["connected"].sum()
    stretch = last["delay_s"][ok] / oracle[ok]
    print(f"{routed.scenario.routing.protocol}: path stretch over {ok.sum()} pairs: median {np.median(stretch):.4f}, "
          f"p95 {np.percentile(stretch, 95):.4f}, max {stretch.max():.4f}")
    # The applied link delays follow the plan to within the driver's 0.1 us update threshold per link, so a path
    # of up to 10 hops may read 1 us shorter than the oracle's, never more.
    assert (last["delay_s"][ok] - oracle[ok]).min() >= -1e-6


def _probe(emu, src: str, dst: str, count: int, port: int):
    """An echo responder on dst and a prober on src (monotonic stamps); returns a function collecting the result,
    whose ``forward_ok`` marks the probes the responder received."""
    record = str(emu.run_dir / f"echo-{port}.csv")
    responder = emu.nodes[dst].popen([sys.executable, "-m", "lasernet.measure.probes", "echo", "--port", str(port),
                                      "--record", record], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
    assert responder.stdout.readline().strip() == "ready", responder.stderr.read()
    prober = emu.nodes[src].popen([sys.executable, "-m", "lasernet.measure.probes", "probe", "--target",
                                   emu.nodes[dst].IP(), "--port", str(port), "--count", str(count), "--interval-s",
                                   str(PROBE_INTERVAL_S), "--wait-s", "1.0"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not len(read_record(record)):
        assert prober.poll() is None and time.monotonic() < deadline, "the prober never reached the responder"
        emu.run(0.05)

    def collect() -> ProbeResult:
        try:
            out, err = prober.communicate(timeout=count * PROBE_INTERVAL_S + 30)
            assert prober.returncode == 0, err
            result = ProbeResult.from_json(out.strip().splitlines()[-1])
            result.forward_ok = np.isin(result.seq, read_record(record))
            return result
        finally:
            for p in (prober, responder):
                if p.poll() is None:
                    p.kill()
                p.wait()

    return collect


# tcpdump filters of each protocol's own packets (IS-IS runs over LLC, not IP)
CONTROL_FILTER = {"ospf": "ip proto 89", "isis": "isis", "babel": "udp port 6696", "bgp": "tcp port 179"}


def _capture_control(emu, a: str, b: str, before_s: float = 3.0):
    """``lasernet capture`` of the protocol's control packets on a's interface towards b, from ``before_s`` before
    the failure. Returns a check to call with the TickReport of the tick that took the link down: packets (hellos,
    keepalives) cross the interface before it and none after the carrier went off, read with scapy and placed in
    emulated time by the capture's clock mapping."""
    from scapy.all import rdpcap

    from lasernet.emulation.capture import emulated_s

    protocol = emu.scenario.routing.protocol
    pcap = emu.run_dir / f"control-{a}-{b}.pcap"
    cli = subprocess.Popen([sys.executable, "-m", "lasernet.cli", "capture", f"{a}:{b}", "-f", CONTROL_FILTER[protocol],
                            "-w", str(pcap), "--run", emu.run_id], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)  # a's interface to b is named b
    deadline = time.monotonic() + 30
    while not pcap.with_name(pcap.name + ".json").exists():
        assert cli.poll() is None and time.monotonic() < deadline, cli.communicate()
        emu.run(0.1)
    emu.run(before_s)

    def check(down) -> None:
        cli.send_signal(signal.SIGINT)
        _, err = cli.communicate(timeout=20)
        assert cli.returncode == 0, err
        mapping = json.loads(pcap.with_name(pcap.name + ".json").read_text())["clock"]
        t = np.array([emulated_s(p.time, mapping) for p in rdpcap(str(pcap))])
        # The carrier goes off within the tick that applies the outage (its cost), at t_s of that tick and after.
        off_s = down.t_s + down.cost_s * emu.speed
        before, after = t[t < down.t_s], t[t > off_s]
        print(f"{protocol}: {len(t)} control packets on {a}:{b}; {len(before)} before the "
              f"outage at {down.t_s:.3f} s (carrier off by {off_s:.3f} s), {len(after)} after; last before "
              f"{before.max() if len(before) else float('nan'):.3f} s")
        assert len(before) >= 2, t  # hellos every second (hello_s 1), both ways
        assert len(after) == 0, after

    return check


def test_failed_isl_on_the_daemons_path_reconverges_and_delivery_resumes(routed):
    """An ISL on the FIBs' ashburn -> frankfurt path goes down (carrier loss) for 15 s: the FIBs route around it,
    the down event is recorded as converged, delivery resumes, and every lost probe was sent between the failure
    and the moment the convergence measurement found every pair delivered again. A capture of the protocol's own
    packets on that link (``lasernet capture``) holds its hellos before the failure and none after."""
    emu, watch = routed, routed.fib_watch
    src, dst = "ashburn", "frankfurt"
    path = watch.path(src, dst)
    assert path[-1] == dst, path
    sats = [n for n in path if n.startswith("sat-")]
    a, b = sats[0], sats[1]  # the first inter-satellite link of the path
    capture = _capture_control(emu, a, b)
    run_s = 1.0 + 0.6 * OUTAGE_S  # probes end well before the link comes back
    collect = _probe(emu, src, dst, count=int(run_s / PROBE_INTERVAL_S), port=PORT)
    emu.run(1.0)
    down_tick = len(emu.ticks)
    emu.override(a, b, up=False, for_s=OUTAGE_S * emu.speed)
    emu.run(0.6 * OUTAGE_S - 1.0)
    detour = watch.path(src, dst)
    emu.run(1.5)
    result = collect()
    capture(emu.ticks[down_tick])
    down = [c for c in watch.changes() if f"-{a}~{b}" in c["links"] or f"-{b}~{a}" in c["links"]]
    assert len(down) == 1, watch.changes()
    change = down[0]
    hops = list(zip(detour, detour[1:]))
    print(f"{emu.scenario.routing.protocol}: {a}~{b} down at t={change['t_s']:.2f} s; every pair delivered again "
          f"after {change['reachable_again_s']:.3f} s, FIBs settled after {change['settled_s']:.3f} s; "
          f"{int((~result.forward_ok).sum())} of {len(result.seq)} probes lost; detour {'>'.join(detour)}")
    assert detour[-1] == dst and (a, b) not in hops and (b, a) not in hops
    assert change["converged"] and np.isfinite(change["reachable_again_s"])
    assert result.forward_ok[-100:].all()  # delivery resumed
    lost_t = emu.mono_to_s(result.send_ns[~result.forward_ok & (result.send_ns > 0)])
    if len(lost_t):
        # probes in flight on the failed link (<= 21 ms on mini, plus the path before it) are lost at the failure
        assert lost_t.min() >= change["t_s"] - 0.1
        assert lost_t.max() <= change["t_s"] + change["reachable_again_s"] + 2 * PROBE_INTERVAL_S + 0.1


def test_run_records_convergence_and_leaves_nothing_behind(tmp_path):
    """OSPF with BIRD (the fifth combination) and BFD: BFD sessions up on sat-3-7's links; convergence.csv,
    fib.csv and each node's configs and logs land in the run directory, summary data names the protocol, and the
    daemons, their sockets and directories are gone."""
    emu = lasernet.Emulation(_scenario("ospf", "bird", bfd=True), run_dir=tmp_path / "run", links=LINKS)
    with emu:
        assert emu.run_until_converged(CONVERGE_TIMEOUT_S) is not None
        out = emu.daemons.shell("sat-3-7", "show", "ospf", "neighbors")
        assert out.count("Full") >= 2, out  # sat-3-7's intra-plane neighbours at least
        bfd = emu.daemons.shell("sat-3-7", "show", "bfd", "sessions")
        assert bfd.count(" Up ") >= 2 and "0.100" in bfd, bfd  # 100 ms x 3 sessions on those links
        emu.override("sat-3-7", "sat-3-0", up=False, for_s=8.0)
        emu.run(6.0)
        pids = [(r.proc.pid, start_time(r.proc.pid)) for r in emu.daemons.running]
        base = emu.daemons.base
    run = tmp_path / "run"
    rows = (run / "convergence.csv").read_text().splitlines()
    assert rows[0].startswith("t_s,") and any("-sat-3-7~sat-3-0" in r or "-sat-3-0~sat-3-7" in r for r in rows)
    assert (run / "fib.csv").exists()
    assert (run / "routing" / "sat-3-7" / "bird.conf").read_text().count("type ptp") >= 4
    assert (run / "routing" / "sat-3-7" / "bird.log").exists()
    result = emu.fib_watch.result
    assert result["changes_with_down"] >= 1 and result["initial_convergence_s"] > 0
    assert not base.exists()
    assert all(start_time(pid) != start for pid, start in pids)  # every daemon exited


def test_bgp_operators_land_only_at_their_listed_stations(tmp_path):
    """Two operators (ASes) over the planes, each station its own AS, eBGP on every link. The operator whose
    satellite serves frankfurt at the start may land only at ashburn and dublin: frankfurt's session with that
    satellite exchanges nothing, so frankfurt is unreachable although its ground link is up, while ashburn and
    dublin reach each other over BGP routes (and the FIBs count as converged under the policy)."""
    scenario = lasernet.load_scenario(SCENARIO)
    tl = lasernet.plan(scenario, duration_s=60, step_s=1)
    names = list(tl.node_names)
    served = [names[b] if names[a] == "frankfurt" else names[a]
              for li, (a, b) in enumerate(zip(tl.links.a, tl.links.b))
              if "frankfurt" in (names[a], names[b]) and tl.up[:, li].all()]
    assert len(served) == 1, served  # one satellite serves frankfurt for the whole minute
    plane = int(served[0].split("-")[1])
    others = [p for p in range(8) if p != plane]
    operators = (Operator("alpha", 64500, (plane, plane), (), ("ashburn", "dublin")),
                 Operator("beta", 64501, None, tuple(f"sat-{p}-{s}" for p in others for s in range(8))))
    scenario = dataclasses.replace(scenario, probes=(), routing=RoutingConfig(
        protocol="bgp", daemon="frr", hello_s=1, dead_s=3, operators=operators))
    with lasernet.Emulation(scenario, run_dir=tmp_path / "run", links=LINKS) as emu:
        assert emu.run_until_converged(CONVERGE_TIMEOUT_S) is not None
        gsl = [row for row in emu.link_table() if row["link"] in (f"frankfurt~{served[0]}",
                                                                   f"{served[0]}~frankfurt")]
        assert gsl and gsl[0]["up"]
        for src, dst in (("ashburn", "dublin"), ("dublin", "ashburn")):
            out = emu.nodes[src].cmd(f"ping -c 3 -i 0.2 -W 2 {emu.nodes[dst].IP()}")
            assert " 0 received" not in out and "received" in out, f"{src} -> {dst}: {out}"
            assert "proto bgp" in emu.nodes[src].cmd(f"ip route show {emu.nodes[dst].IP()}/32")
        for src in ("ashburn", "dublin"):
            out = emu.nodes[src].cmd(f"ping -c 2 -i 0.2 -W 1 {emu.nodes['frankfurt'].IP()}")
            assert "unreachable" in out or " 0 received" in out, out
        assert "proto bgp" not in emu.nodes["frankfurt"].cmd("ip route")
        summary = emu.daemons.shell(served[0], "show bgp summary")
        print(summary)
        assert "(landing not allowed)" in emu.daemons.shell(served[0], "show running-config")


@pytest.mark.parametrize("daemon", ["frr", "bird"])
def test_daemon_that_fails_to_start_is_one_clear_error_and_everything_is_removed(tmp_path, daemon):
    """A configuration the daemon rejects on one node: RoutingDaemonError naming that node and daemon (with its
    log line), and the run's namespaces, processes, sockets and FRR crash-log directories are all gone."""
    target = "sat-3-7"
    program = {"frr": "ospfd", "bird": "bird"}[daemon]

    def break_one(node, name, text):
        return text + "\nthis is not a configuration line\n" if (node, name) == (target, program) else text

    emu = lasernet.Emulation(_scenario("ospf", daemon), run_dir=tmp_path / "run", links=LINKS,
                             daemon_config_hook=break_one)
    with pytest.raises(RoutingDaemonError) as err:
        with emu:
            pass
    message = str(err.value)
    print(message)
    assert message.startswith(f"{target}: {program} ") and "\n" not in message
    assert f"{tmp_path / 'run' / 'routing' / target}/{program}.conf" in message  # where the config is kept
    assert "rejected its configuration" in message or "syntax error" in message
    assert emu.state is None and not (STATE_DIR / f"{emu.run_id}.json").exists()
    assert not (STATE_DIR / emu.run_id).exists()
    for run in emu.daemons.running:
        assert run.proc.poll() is not None
        assert not (FRR_TMP / f"{run.daemon}.{run.proc.pid}").exists()
    for node in emu.nodes.values():
        assert node.shell is None or node.shell.poll() is not None
        assert not Path(f"/proc/{node.pid}").exists() or start_time(node.pid) is None


def test_sigkill_of_lasernet_up_then_down_removes_the_daemons(tmp_path):
    """`lasernet up` with OSPF (FRR) killed by SIGKILL: `lasernet down` stops every recorded daemon and removes
    their directory and FRR's per-process crash-log directories; `lasernet exec NODE -- vtysh` worked before."""
    import json
    import signal

    doc = yaml.safe_load(SCENARIO.read_text())
    doc["ground"]["include"] = [str(TOPOLOGIES / "ground" / "sites.yaml")]
    doc["routing"] = {"protocol": "ospf", "daemon": "frr"}
    path = tmp_path / "mini-ospf.yaml"
    path.write_text(yaml.safe_dump(doc))
    cli = [sys.executable, "-m", "lasernet.cli"]
    proc = subprocess.Popen(cli + ["up", str(path), "--run-dir", str(tmp_path / "run"), "--links", LINKS],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "run" / "status.json").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "lasernet up did not start"
            time.sleep(0.2)
        state = json.loads((tmp_path / "run" / "state.json").read_text())
        shell = subprocess.run(cli + ["exec", "sat-3-7", "--run", state["run_id"], "--", "vtysh", "-c",
                                      "show ip ospf interface sat-3-6"], capture_output=True, text=True, timeout=30)
        assert "Network Type POINTOPOINT" in shell.stdout, shell.stdout + shell.stderr
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    daemons = state["routing"]["processes"]
    try:
        routers = [n for n in state["nodes"].values() if n["role"] != "server"]
        assert len(daemons) == 2 * len(routers)  # zebra and ospfd on every router
        assert all(start_time(d["pid"]) == d["start"] for d in daemons)  # SIGKILL of the driver left them running
    finally:
        down = subprocess.run(cli + ["down", state["run_id"]], capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stderr
    # gone, or a zombie its new parent has not reaped yet (orphans of the killed driver)
    assert all(start_time(d["pid"]) != d["start"] or is_zombie(d["pid"]) for d in daemons)
    assert not Path(state["routing"]["dir"]).exists()
    assert not any((FRR_TMP / f"{d['daemon']}.{d['pid']}").exists() for d in daemons)
    assert all(start_time(n["pid"]) != n["start"] or is_zombie(n["pid"]) for n in state["nodes"].values())
