"""The live emulation of `mini` as root: measured RTTs against light time, outages, loss, rate and cleanup.

Every test probes with monotonic-clock UDP echoes (lasernet.measure.probes) between the emulation's own nodes.
Tolerances are physical: loss windows within two probe intervals of the outage, loss within a binomial band,
medians of measured minus predicted RTT within 0.5 ms over paths of four or more hops, plus what the delay-line
relays measured of their own lateness in the same run on each hop of the round trip (a loaded machine wakes them
later; see ``_rtt_allowance_ms``).

The link backend is ``$LASERNET_LINKS`` (auto, netem or delayline; default auto, which is delayline on a kernel
without sch_netem). The same tests run with the netem backend inside a QEMU guest (tests/vm/test_emulation_in_vm.py),
where everything is emulated in software (TCG) and each hop's forwarding costs the guest far more than the 0.5 ms
budget; there (``LASERNET_VM_GUEST=1``) the RTT tests judge what the guest's cost cancels out of, as the VM suite
does, with the bounds named in GUEST_* below; the host's bounds are never loosened.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import lasernet
from lasernet.measure.probes import ProbeResult, read_record
from lasernet.spec.scenario import ProbePair

from ..conftest import TOPOLOGIES

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root to create network namespaces (CI runs as root)", allow_module_level=True)

PORT = 7900
LINKS = os.environ.get("LASERNET_LINKS", "auto")
IN_GUEST = os.environ.get("LASERNET_VM_GUEST") == "1"
SCENARIO = TOPOLOGIES / (os.environ.get("LASERNET_TEST_SCENARIO", "mini") + ".yaml")
# The scenario's first probe pair is the path the tests fail links on, its second the one they set loss on
# (mini: ashburn>frankfurt and dublin>ashburn).
_PROBES = lasernet.load_scenario(SCENARIO).probes
SRC, DST = _PROBES[0].src, _PROBES[0].dst
LOSS_SRC, LOSS_DST = _PROBES[1].src, _PROBES[1].dst
# Guest bounds (LASERNET_VM_GUEST=1: QEMU TCG, see tests/vm/test_emulation_in_vm.py). There every process and
# every forwarded packet costs the emulated CPU 10-100x what it costs natively; measured there, a UDP echo over
# one bare veth pair takes 1.6-5.6 ms. So measured - predicted RTT cannot be within 0.5 ms: in the guest its 10th
# percentile must lie between -0.5 ms (never below the light time: what a netem delay programmed too short, e.g.
# by a wrong psched clock, would break) and GUEST_RTT_EXCESS_MS (the guest's own cost over the path's 8
# forwarding steps and two Python processes). The 10th percentile, because load on the host only ever adds
# latency (medians have come out +5.9 to +25.8 ms over tiny's 4 hops from one run to the next). Ticks overrun there
# (a tick costs 0.1-1 s of TCG time), and an override starts and ends at ticks, so the outage window and the
# reroute losses get the largest tick cost seen during the test added to their host bounds.
GUEST_RTT_EXCESS_MS = 15.0
# Enough RTTs for a 10th percentile; under TCG the second pair's prober starts seconds after the first (its
# interpreter is slow to start) and has given 28-51 RTTs in a 24 s run, the first pair 200+.
GUEST_MIN_PROBES = 20
GUEST_RTT_RUN_S = 24


def _probe(emu, src: str, dst: str, count: int, interval_s: float, port: int):
    """Start an echo responder on dst and a prober on src; return a function that collects the result.

    The result's ``forward_ok`` marks the probes the responder received (one-way delivery).
    """
    record = str(emu.run_dir / f"echo-{port}.csv")
    responder = emu.nodes[dst].popen([sys.executable, "-m", "lasernet.measure.probes", "echo", "--port", str(port),
                                      "--rt-priority", "5", "--record", record], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
    assert responder.stdout.readline().strip() == "ready", responder.stderr.read()
    prober = emu.nodes[src].popen([sys.executable, "-m", "lasernet.measure.probes", "probe", "--target",
                                   emu.nodes[dst].IP(), "--port", str(port), "--count", str(count), "--interval-s",
                                   str(interval_s), "--wait-s", "1.0", "--rt-priority", "5"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    # The prober sends its first probe only once its interpreter has started (~0.3 s here, seconds in the TCG
    # guest): tick until the responder has received one, so that what a test does next happens while probing.
    deadline = time.monotonic() + 60
    while not len(read_record(record)):
        assert prober.poll() is None and time.monotonic() < deadline, "the prober never reached the responder"
        emu.run(0.05)

    def collect() -> ProbeResult:
        try:
            out, err = prober.communicate(timeout=count * interval_s + 30)
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


def _max_tick_cost_s(emu, since: int) -> float:
    """Largest tick cost since tick index ``since``: 0 on the host (bounds unchanged), measured in the guest."""
    return max((t.cost_s for t in emu.ticks[since:]), default=0.0) if IN_GUEST else 0.0


def _tick_lateness_s(emu, down_tick: int, for_s: float) -> float:
    """How far the two ticks that applied a ``for_s`` override (the first at index ``down_tick``, the second the
    first to reach its end) ran from ``for_s`` wall seconds apart, plus the larger of their link writes: the
    substrate's timing error in that window (a tick woken late by a loaded machine moves its edge by as much)."""
    ticks = [emu.ticks[k] for k in range(down_tick, len(emu.ticks))]
    down = ticks[0]
    end_s = down.t_s + for_s * emu.speed - 0.5 * emu.tick_s * emu.speed  # the override's own end rule
    up = next(t for t in ticks if t.t_s >= end_s)
    return abs((up.t_s - down.t_s) / emu.speed - for_s) + max(down.links_s, up.links_s)


def _relay_late_ms(emu) -> float:
    """How late the delay-line relays released frames, on average (ms): the substrate's own cost per hop.

    Each relay counts, for every frame it held, how long after its due time it was written out (its wake-up
    and scheduling latency, which grows when the machine is loaded). 0 for the netem backend (no relay).
    """
    late = getattr(emu.backend, "release_late_s", None)
    return late() * 1e3 if late is not None else 0.0


def _rtt_allowance_ms(late_ms: float, hops: int) -> float:
    """Allowed |median measured - predicted RTT|: 0.5 ms plus the relays' measured lateness on each of 2 x hops."""
    return 0.5 + 2 * hops * late_ms


def _first_hop_link(emu, src: str, dst: str) -> tuple[str, str]:
    nodes, _ = emu.path(src, dst)
    return nodes[0], nodes[1]


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """One running emulation of the scenario (mini) for the tests that steer links by hand (no scenario probes)."""
    scenario = lasernet.load_scenario(SCENARIO)
    scenario = dataclasses.replace(scenario, probes=())
    with lasernet.Emulation(scenario, run_dir=tmp_path_factory.mktemp("mini") / "run", links=LINKS) as emu:
        emu.run(0.5)
        yield emu


def test_rtt_matches_light_time_over_four_or_more_hops(tmp_path):
    """mini's probe pairs: median |measured - predicted RTT| <= 0.5 ms, on paths of >= 4 hops, never below it."""
    scenario = lasernet.load_scenario(SCENARIO)
    run_s = GUEST_RTT_RUN_S if IN_GUEST else 12
    with lasernet.Emulation(scenario, duration_s=run_s, run_dir=tmp_path / "run", links=LINKS) as emu:
        emu.run(run_s)
        late_ms = _relay_late_ms(emu)
    rows = list(csv.DictReader((tmp_path / "run" / "probes.csv").open()))
    assert rows, "probes.csv is empty"
    for pair in {r["pair"] for r in rows}:
        mine = [r for r in rows if r["pair"] == pair and r["measured_rtt_ms"] and r["predicted_rtt_ms"]]
        assert len(mine) >= (GUEST_MIN_PROBES if IN_GUEST else 150), (pair, len(mine))
        hops = [len(r["path"].split(">")) - 1 for r in mine]
        assert min(hops) >= 4, (pair, min(hops))
        err = np.array([float(r["measured_rtt_ms"]) - float(r["predicted_rtt_ms"]) for r in mine])
        print(f"{pair}: {len(err)} probes over {min(hops)}-{max(hops)} hops, predicted "
              f"{float(mine[0]['predicted_rtt_ms']):.2f} ms, measured - predicted median {np.median(err):+.3f} ms, "
              f"p1 {np.percentile(err, 1):+.3f} ms, p99 {np.percentile(err, 99):+.3f} ms")
        if IN_GUEST:
            print(f"{pair}: (guest) measured - predicted p10 {np.percentile(err, 10):+.3f} ms")
            assert -0.5 <= np.percentile(err, 10) <= GUEST_RTT_EXCESS_MS
        else:
            allowed = _rtt_allowance_ms(late_ms, max(hops))
            print(f"{pair}: relays released frames {late_ms * 1e3:.1f} us late on average: allowed |median| "
                  f"{allowed:.3f} ms")
            assert abs(np.median(err)) <= allowed
            # Never faster than light: a probe may beat the prediction only by the delay change of one tick
            # (a path's light time changes by < 0.05 ms per 0.1 s tick), when it was sent just before the
            # relay took in that tick's new delays.
            assert np.percentile(err, 1) >= -0.1
    ticks = list(csv.DictReader((tmp_path / "run" / "ticks.csv").open()))
    assert len(ticks) >= (12 if IN_GUEST else 100)  # in the guest ticks overrun, so there are fewer
    assert (tmp_path / "run" / "events.csv").read_text().count("\n") > 1


def test_links_spread_over_several_relays_keep_light_time_and_leave_nothing(tmp_path, monkeypatch):
    """More links than one relay may hold (its open-file limit): several relays, each serving a range of slots.

    Probe paths that cross links of different relays still measure the light time, the state file lists every
    relay, and stop() removes every relay process and table.
    """
    if LINKS == "netem" or IN_GUEST:
        pytest.skip("delay-line relays only: the netem backend has none")
    from lasernet.emulation import links as links_mod
    from lasernet.net import procs

    per = 40
    monkeypatch.setattr(links_mod, "links_per_relay", lambda: per)  # as if the fd limit held 40 links a relay
    scenario = lasernet.load_scenario(SCENARIO)
    with lasernet.Emulation(scenario, duration_s=8, run_dir=tmp_path / "run", links="delayline") as emu:
        relays = emu.backend.relays
        assert len(relays) == math.ceil(len(emu.applied) / per) >= 3
        pids, tables = [r.pid for r in relays], [r.table_path for r in relays]
        state = json.loads((tmp_path / "run" / "state.json").read_text())
        assert [r["relay_pid"] for r in state["backend"]["relays"]] == pids
        shard_of = {frozenset((emu.node_names[a], emu.node_names[b])): link.slot // per
                    for (a, b), link in emu.applied.by_pair.items()}
        emu.run(8)
        late_ms = _relay_late_ms(emu)
    rows = list(csv.DictReader((tmp_path / "run" / "probes.csv").open()))
    for pair in {r["pair"] for r in rows}:
        mine = [r for r in rows if r["pair"] == pair and r["measured_rtt_ms"] and r["predicted_rtt_ms"]]
        nodes = mine[0]["path"].split(">")
        assert len({shard_of[frozenset(hop)] for hop in zip(nodes, nodes[1:])}) >= 2, (pair, nodes)
        err = np.array([float(r["measured_rtt_ms"]) - float(r["predicted_rtt_ms"]) for r in mine])
        allowed = _rtt_allowance_ms(late_ms, len(nodes) - 1)
        print(f"{pair} over {len(relays)} relays: {len(err)} probes, measured - predicted median "
              f"{np.median(err):+.3f} ms (allowed {allowed:.3f}: relays {late_ms * 1e3:.1f} us late on average), "
              f"p1 {np.percentile(err, 1):+.3f} ms")
        assert len(err) >= 100 and abs(np.median(err)) <= allowed and np.percentile(err, 1) >= -0.1
    assert not [p for p in pids if procs.start_time(p) is not None and not procs.is_zombie(p)]
    assert not [t for t in tables if os.path.exists(t)]


def test_forced_outage_without_alternative_loses_exactly_its_window(mini):
    """A station's only ground link down for 1 s: forward probes lost for 1 s +- 2 probe intervals."""
    interval = 0.01
    a, b = _first_hop_link(mini, SRC, DST)
    assert a == SRC
    collect = _probe(mini, SRC, DST, count=400, interval_s=interval, port=PORT)
    first_tick = len(mini.ticks)
    mini.run(1.0)
    mini.override(a, b, up=False, for_s=1.0 * mini.speed)
    down_tick = len(mini.ticks)  # the next tick applies the outage
    mini.run(3.5)
    result = collect()
    lost = ~result.forward_ok
    lost_idx = np.flatnonzero(lost[: int(3.5 / interval)])
    assert len(lost_idx) > 0
    window_s = (lost_idx[-1] - lost_idx[0] + 1) * interval
    late_s = _tick_lateness_s(mini, down_tick, 1.0)
    slack_s = _max_tick_cost_s(mini, first_tick) + late_s
    print(f"outage 1.000 s: forward loss window {window_s:.3f} s ({len(lost_idx)} probes); the ticks that applied "
          f"it ran {late_s * 1e3:.1f} ms off their 1 s apart (wake-up lateness and link writes)"
          + (f"; largest tick cost {_max_tick_cost_s(mini, first_tick) * 1e3:.0f} ms (guest)" if IN_GUEST else ""))
    assert abs(window_s - 1.0) <= 2 * interval + slack_s + 1e-9
    assert np.all(lost[lost_idx[0]:lost_idx[-1] + 1])  # one contiguous window
    assert result.forward_ok[lost_idx[-1] + 5:].mean() > 0.99  # delivery resumed


def test_reroute_around_a_failed_link_within_one_tick(mini):
    """An ISL on the path fails for 3 s: the oracle routes around it; at most one tick of probes is lost."""
    interval = 0.01
    nodes, _ = mini.path(SRC, DST)
    a, b = nodes[2], nodes[3]  # an inter-satellite link in the middle of the path
    collect = _probe(mini, SRC, DST, count=300, interval_s=interval, port=PORT + 1)
    first_tick = len(mini.ticks)
    mini.run(0.7)
    mini.override(a, b, up=False, for_s=3.0 * mini.speed)
    mini.run(1.0)
    detour, _ = mini.path(SRC, DST)
    assert (a, b) not in zip(detour, detour[1:]) and (b, a) not in zip(detour, detour[1:])
    mini.run(2.5)
    result = collect()
    lost = int((~result.forward_ok).sum())
    longest_isl_s = 0.021 if SCENARIO.stem == "mini" else 0.035  # mini's ISLs are <= 21 ms long, tiny's <= 35 ms
    in_flight = math.ceil(longest_isl_s / interval)  # probes on the failed ISL when it went down
    slack_s = _max_tick_cost_s(mini, first_tick)
    print(f"reroute {a}~{b}: {lost} of {len(result.seq)} probes lost (one tick = {mini.tick_s / interval:.0f})"
          + (f"; largest tick cost {slack_s * 1e3:.0f} ms (guest)" if IN_GUEST else ""))
    assert lost <= in_flight + math.ceil((mini.tick_s + slack_s) / interval)
    assert result.forward_ok[-50:].all()


def test_loss_matches_the_configured_probability(mini):
    """20% loss on a link: >= 1,000 forward probes lose 20% within 4.5 binomial sigmas."""
    interval = 0.004
    count = 1400  # some 50-150 are sent before a tick applies the loss and are not counted
    a, b = _first_hop_link(mini, LOSS_SRC, LOSS_DST)
    collect = _probe(mini, LOSS_SRC, LOSS_DST, count=count, interval_s=interval, port=PORT + 2)
    mini.override(a, b, loss=0.2)
    try:
        mini.run(0.2)  # a tick has applied it: probes sent from now on cross the lossy first hop
        applied_ns = time.monotonic_ns()
        mini.run(count * interval + 1.3)
    finally:
        mini.clear_override(a, b)
    result = collect()
    after = result.send_ns > applied_ns  # the probes sent before (some 50) met no loss: not counted
    sent = int(after.sum())
    forward_loss = 1 - result.forward_ok[after].mean()
    sigma = math.sqrt(0.2 * 0.8 / sent)
    print(f"loss 0.200 configured: forward {forward_loss:.3f} over {sent} probes sent with it (sigma {sigma:.3f})")
    assert sent >= 1000
    assert abs(forward_loss - 0.2) <= 4.5 * sigma


def test_rate_limit_gives_iperf3_tcp_within_ten_percent(mini):
    """A 10 Mbit/s link: iperf3 TCP through it reaches 10 Mbit/s within 10%."""
    a, b = _first_hop_link(mini, SRC, DST)
    server = mini.nodes[b].popen(["iperf3", "-s", "-1", "-p", "5301"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    mini.override(a, b, rate_bps=10e6)
    client = mini.nodes[a].popen(["iperf3", "-c", mini.nodes[b].IP(), "-p", "5301", "-t", "6", "-O", "2", "-J"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        mini.run(9.5)
        out, err = client.communicate(timeout=30)
    finally:
        mini.clear_override(a, b)
        for p in (client, server):
            if p.poll() is None:
                p.kill()
            p.wait()
    import json

    report = json.loads(out)
    bps = report["end"]["sum_received"]["bits_per_second"]
    print(f"rate 10.0 Mbit/s configured: iperf3 TCP received {bps / 1e6:.2f} Mbit/s")
    assert abs(bps - 10e6) <= 0.1 * 10e6


@pytest.mark.skipif(IN_GUEST, reason="needs ticks on time: at 300x one 0.1-0.3 s tick overrun in the TCG guest is "
                                      "30-90 s of emulated drift, which is what this test measures")
def test_geometry_driven_delay_change_shows_in_measured_delay_within_one_tick(tmp_path):
    """Two satellites in neighbouring planes separate (the ISL grows ~3.7 ms in 10 minutes); at 300x speed that is
    ~0.2 ms per 0.1 s tick. The measured one-way delay follows the plan at the current tick, not a tick late."""
    scenario = lasernet.load_scenario(TOPOLOGIES / "mini.yaml")
    scenario = dataclasses.replace(scenario, probes=(ProbePair("sat-4-2", "sat-5-2", 100.0),), hosts=())
    with lasernet.Emulation(scenario, speed=300, duration_s=2.0, run_dir=tmp_path / "run",
                            links=LINKS) as emu:
        emu.run(2.0)
    rows = [r for r in csv.DictReader((tmp_path / "run" / "probes.csv").open())
            if r["measured_fwd_ms"] and r["predicted_fwd_ms"] and r["path"] == "sat-4-2>sat-5-2"]
    assert len(rows) > 120
    meas = np.array([float(r["measured_fwd_ms"]) for r in rows])
    pred = np.array([float(r["predicted_fwd_ms"]) for r in rows])
    prev = np.array([float(r["predicted_fwd_prev_tick_ms"]) for r in rows])
    growth_per_tick = np.median(pred - prev)
    err_now, err_prev = np.median(meas - pred), np.median(meas - prev)
    print(f"ISL sat-4-2~sat-5-2 grew {pred[-1] - pred[0]:.2f} ms over the run ({growth_per_tick * 1e3:.0f} us per "
          f"tick); measured - predicted one-way: {err_now * 1e3:+.0f} us at this tick, {err_prev * 1e3:+.0f} us "
          f"against the tick before")
    assert pred[-1] - pred[0] > 2.0
    assert growth_per_tick > 0.1
    assert abs(err_now) <= 0.25
    # Lagging by one tick would put the measurement on the previous tick's prediction instead.
    assert abs(err_now) < abs(err_prev)
