"""The delay-line relay, observed from inside real namespaces with real traffic (needs root).

Each test states the physics it expects and checks it with a tolerance a reviewer can recompute: medians for
times (the machine has 2 cores and may be shared), binomial sigmas for loss, probe intervals for outages.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time

import numpy as np
import pytest

from lasernet.measure.probes import finish_probe, probe_from_netns, start_probe_in_netns

from .conftest import ECHO_PORT, PROBE_RT_PRIORITY, child_pids, delayline_lab, netns_names, sh

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates network namespaces and TAP interfaces"),
]

RTT_TOLERANCE_S = 0.5e-3
BASE_RTT_LIMIT_S = 1e-3  # the probe path itself (sender, relay, responder wake-ups) at zero delay


def probe(lab, src: str, dst: str, slot: int, count: int, interval_s: float, wait_s: float = 0.5):
    return probe_from_netns(lab.ns[src], lab.addr(dst, slot), ECHO_PORT, count, interval_s, wait_s,
                            rt_priority=PROBE_RT_PRIORITY)


def report(name: str, **numbers) -> None:
    print(f"\n[{name}] " + ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                                     for k, v in numbers.items()))


def added_rtt_s(lab, dst: str, slot: int, delays: dict, name: str) -> tuple[float, float]:
    """Median RTT a->dst with ``delays`` ({slot: one-way delay_s}) and the median the same path has at zero delay.

    The zero-delay median is the probe path's own cost on this host (sender, relay and responder wake-ups,
    ~0.3 ms on this 2-vCPU VM); what the relay *adds* is the difference.
    """
    for slot_ in delays:
        lab.relay.set(slot_, delay_s=0.0)
    lab.relay.commit()
    base = probe(lab, "a", dst, slot, count=200, interval_s=0.01)
    for slot_, delay_s in delays.items():
        lab.relay.set(slot_, delay_s=delay_s)
    lab.relay.commit()
    result = probe(lab, "a", dst, slot, count=300, interval_s=0.01)
    assert base.delivered.all() and result.delivered.all()
    base_s, median_s = float(np.median(base.rtt_s)), float(np.median(result.rtt_s))
    late = [d["release_late_us_mean"] for s in delays for d in lab.relay.stats()[s]["dirs"]]
    report(name, median_rtt_ms=median_s * 1e3, zero_delay_rtt_ms=base_s * 1e3,
           added_ms=(median_s - base_s) * 1e3, expected_ms=2e3 * sum(delays.values()),
           p95_ms=float(np.percentile(result.rtt_s, 95)) * 1e3, fwd_ms=float(np.median(result.forward_s)) * 1e3,
           back_ms=float(np.median(result.back_s)) * 1e3, release_late_us_mean=max(late), **lab.relay.timing())
    return median_s, base_s


def test_rtt_grows_by_twice_the_one_way_delay(fresh):
    median_s, base_s = added_rtt_s(fresh, "b", 0, {0: 0.010}, "rtt 1 hop")
    assert base_s <= BASE_RTT_LIMIT_S
    assert abs((median_s - base_s) - 0.020) <= RTT_TOLERANCE_S


def test_two_hop_rtt_grows_by_twice_the_sum_of_link_delays_through_forwarding_node(fresh):
    median_s, base_s = added_rtt_s(fresh, "c", 1, {0: 0.010, 1: 0.005}, "rtt 2 hops")
    assert base_s <= BASE_RTT_LIMIT_S
    assert abs((median_s - base_s) - 2 * (0.010 + 0.005)) <= RTT_TOLERANCE_S


def test_delay_change_applies_to_frames_sent_after_it(fresh):
    relay = fresh.relay
    relay.set(0, delay_s=0.010)
    relay.commit()
    sender = start_probe_in_netns(fresh.ns["a"], fresh.addr("b", 0), ECHO_PORT, count=300, interval_s=0.01,
                                  wait_s=0.5, rt_priority=PROBE_RT_PRIORITY)
    try:
        _wait_frames(relay, slot=0, direction=0, frames=120)
        before_change_ns = time.monotonic_ns()
        relay.set(0, "ab", delay_s=0.025)
        relay.commit()
        applied_ns = time.monotonic_ns()
    finally:
        result = finish_probe(sender)
    reached = result.reached_responder
    fwd_s = (result.echo_ns - result.send_ns) / 1e9
    before = reached & (result.send_ns < before_change_ns)
    after = reached & (result.send_ns > applied_ns)
    back_s = result.back_s
    report("delay change", before_ms=float(np.median(fwd_s[before])) * 1e3,
           after_ms=float(np.median(fwd_s[after])) * 1e3, apply_ms=(applied_ns - before_change_ns) / 1e6,
           back_ms=float(np.median(back_s)) * 1e3, n_before=int(before.sum()), n_after=int(after.sum()))
    assert before.sum() >= 100 and after.sum() >= 100
    assert abs(np.median(fwd_s[before]) - 0.010) <= RTT_TOLERANCE_S / 2
    assert abs(np.median(fwd_s[after]) - 0.025) <= RTT_TOLERANCE_S / 2
    assert fwd_s[after].min() > (0.010 + 0.025) / 2  # no frame sent after the change kept the old delay
    assert abs(np.median(back_s) - 0.010) <= RTT_TOLERANCE_S / 2  # the other direction is untouched


def test_loss_on_one_direction_is_binomial(fresh):
    loss = 0.2
    fresh.relay.set(0, "ab", loss=loss)
    fresh.relay.commit()
    result = probe(fresh, "a", "b", 0, count=2000, interval_s=0.002)
    n = len(result.seq)
    sigma = math.sqrt(loss * (1 - loss) / n)
    report("loss", forward_loss=result.forward_loss, back_loss=result.back_loss, n=n, sigma=sigma,
           z=(result.forward_loss - loss) / sigma)
    assert abs(result.forward_loss - loss) <= 4.5 * sigma
    assert result.back_loss == 0.0  # b->a has no loss configured


def test_rate_limits_tcp_throughput_to_the_link_rate(fresh):
    rate_bps = 10e6
    fresh.relay.set(0, rate_bps=rate_bps, delay_s=0.002)
    fresh.relay.commit()
    server = subprocess.Popen(["ip", "netns", "exec", fresh.ns["b"], "iperf3", "-s", "-1", "-p", "5201"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        out = _iperf3_client(fresh.ns["a"], fresh.addr("b", 0), seconds=5)
    finally:
        server.terminate()
        server.wait(timeout=10)
    received_bps = out["end"]["sum_received"]["bits_per_second"]
    stats = fresh.relay.stats()[0]["dirs"][0]
    # iperf3 counts TCP payload; the link serialises whole frames (1448 B payload in 1514 B frames)
    report("rate", received_mbps=received_bps / 1e6, goodput_ceiling_mbps=rate_bps * 1448 / 1514 / 1e6,
           queue_drops=stats["drop_queue"])
    assert abs(received_bps - rate_bps) <= 0.10 * rate_bps


def _iperf3_client(ns: str, server_ip: str, seconds: int) -> dict:
    for _attempt in range(50):  # the server needs a moment to listen
        proc = subprocess.run(["ip", "netns", "exec", ns, "iperf3", "-c", server_ip, "-p", "5201", "-t",
                               str(seconds), "-J"], capture_output=True, text=True, timeout=seconds + 30)
        out = json.loads(proc.stdout) if proc.stdout.strip() else {}
        if proc.returncode == 0 and "sum_received" in out.get("end", {}):
            return out
        if "connect" not in out.get("error", "") + proc.stderr:
            raise RuntimeError(f"iperf3 client failed ({proc.returncode}): {out.get('error') or proc.stderr} "
                               f"{proc.stdout[-2000:]}")
        time.sleep(0.1)
    raise RuntimeError("iperf3 server never accepted a connection")


def _wait_frames(relay, slot: int, direction: int, frames: int, timeout_s: float = 20.0) -> None:
    """Wait until the relay has seen ``frames`` more frames on a link direction (the sender is under way)."""
    start = relay.stats()[slot]["dirs"][direction]["rx"]
    deadline = time.monotonic() + timeout_s
    while relay.stats()[slot]["dirs"][direction]["rx"] < start + frames:
        assert time.monotonic() < deadline, f"fewer than {frames} frames on slot {slot} within {timeout_s} s"
        time.sleep(0.01)


def _wait_carrier(lab, want_carrier: bool, timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        shows = [lab.link_show("a", "to-b"), lab.link_show("b", "to-a")]
        if all(("NO-CARRIER" not in s) == want_carrier for s in shows):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"carrier {'on' if want_carrier else 'off'} not shown within {timeout_s} s:\n"
                                 + "".join(shows))
        time.sleep(0.01)


def test_down_shows_no_carrier_and_loses_probes_for_the_outage(fresh):
    relay, interval_s, outage_s = fresh.relay, 0.01, 1.0
    relay.set(0, delay_s=0.005)
    relay.commit()
    sender = start_probe_in_netns(fresh.ns["a"], fresh.addr("b", 0), ECHO_PORT, count=300, interval_s=interval_s,
                                  wait_s=0.5, rt_priority=PROBE_RT_PRIORITY)
    try:
        _wait_frames(relay, slot=0, direction=0, frames=50)
        relay.set(0, up=False)
        relay.commit()
        down_ns = time.monotonic_ns()
        _wait_carrier(fresh, want_carrier=False)
        time.sleep(max(0.0, outage_s - (time.monotonic_ns() - down_ns) / 1e9))
        relay.set(0, up=True)
        relay.commit()
        up_ns = time.monotonic_ns()
    finally:
        result = finish_probe(sender)
    _wait_carrier(fresh, want_carrier=True)
    lost = np.nonzero(~result.reached_responder)[0]
    window_s = (lost[-1] - lost[0] + 1) * interval_s
    requested_s = (up_ns - down_ns) / 1e9
    resumed = result.send_ns > up_ns + 0.05e9
    report("outage", requested_s=requested_s, lost_window_s=window_s, lost=len(lost),
           lost_contiguous=bool(lost[-1] - lost[0] + 1 == len(lost)), delivered_after=int(resumed.sum()))
    assert abs(window_s - requested_s) <= 2 * interval_s
    assert lost[-1] - lost[0] + 1 == len(lost)  # one contiguous outage, nothing lost outside it
    assert result.delivered[resumed].all() and resumed.sum() > 50


def _relay_drops_slot_1_and_keeps_slot_0(lab, name: str) -> None:
    relay = lab.relay
    deadline = time.monotonic() + 5
    while 1 in relay.stats():
        assert time.monotonic() < deadline, "relay still holds slot 1 after its TAP was deleted"
        time.sleep(0.02)
    result = probe(lab, "a", "b", 0, count=100, interval_s=0.01)
    dropped = [line for line in lab.log().splitlines() if "dropped" in line]
    report(name, relay_alive=relay.alive(), links=sorted(relay.stats()),
           median_rtt_ms=float(np.median(result.rtt_s)) * 1e3, log=dropped)
    assert relay.alive()
    assert sorted(relay.stats()) == [0]
    assert any("slot 1" in line and lab.ns["c"] in line for line in dropped)
    assert result.delivered.all()
    assert abs(np.median(result.rtt_s) - 0.004) <= RTT_TOLERANCE_S + BASE_RTT_LIMIT_S


def test_deleting_a_namespace_drops_only_its_links(tmp_path):
    # move mode: the relay's fds do not pin the node's namespace, so deleting it really removes its TAPs
    with delayline_lab("del", str(tmp_path), tap_mode="move") as lab:
        lab.relay.set(0, delay_s=0.002)
        lab.relay.commit()
        lab.echoes.pop("c").stop()  # a deleted node's processes are gone too (they would keep it alive)
        sh("ip", "netns", "del", lab.ns["c"])
        _relay_drops_slot_1_and_keeps_slot_0(lab, "namespace deleted")


def test_deleting_a_tap_underneath_drops_only_its_link(tmp_path):
    with delayline_lab("tapdel", str(tmp_path)) as lab:
        lab.relay.set(0, delay_s=0.002)
        lab.relay.commit()
        sh("ip", "-n", lab.ns["c"], "link", "del", "to-b")
        _relay_drops_slot_1_and_keeps_slot_0(lab, "tap deleted")


def _footprint(prefix: str) -> dict:
    return {"netns": {n for n in netns_names() if n.startswith(prefix)}, "children": child_pids(),
            "tables": {f for f in os.listdir("/dev/shm") if f.startswith(prefix.replace("lnt", "lasernet-lnt"))},
            "temp_taps": {l for l in sh("ip", "-o", "link", "show").splitlines() if ": lnd" in l}}


def test_lab_teardown_leaves_nothing_behind(tmp_path):
    prefix = f"lnt-{os.getpid()}-clean"
    before = _footprint(prefix)
    with delayline_lab("clean", str(tmp_path)) as lab:
        during = _footprint(prefix)
        relay_pid = lab.relay.pid
        result = probe(lab, "a", "c", 1, count=20, interval_s=0.01)
        assert result.delivered.all()
    after = _footprint(prefix)
    report("cleanup", netns_during=len(during["netns"]), children_during=len(during["children"]),
           netns_after=len(after["netns"]), children_after=len(after["children"]))
    assert len(during["netns"]) == 3 and relay_pid in during["children"] and during["tables"]
    assert after == before
    assert not os.path.exists(f"/proc/{relay_pid}")


def test_lab_setup_failure_still_cleans_up(tmp_path):
    prefix = f"lnt-{os.getpid()}-fail"
    before = _footprint(prefix)
    with pytest.raises(FileNotFoundError, match="lnt-.*-fail-z"):
        # slot 1 names a node without a namespace: add_link must fail naming it, and undo slot 0 and everything
        with delayline_lab("fail", str(tmp_path), nodes=("a", "b"), links=((0, "a", "b"), (1, "b", "z")),
                           echo_on=()):
            pass
    assert _footprint(prefix) == before


def test_cleanup_by_name_removes_a_relay_its_taps_and_table(tmp_path):
    """What a crashed controller leaves is removable from ``created()`` alone (what ``lasernet down`` will do)."""
    with delayline_lab("byname", str(tmp_path), nodes=("a", "b"), links=((0, "a", "b"),), echo_on=()) as lab:
        state = json.loads(json.dumps(lab.relay.created()))  # as if read back from the run's state file
        removed = lab.relay.cleanup_created(state)
        lab.relay.proc.wait(timeout=10)
        links_a = sh("ip", "-n", lab.ns["a"], "-o", "link", "show")
        report("cleanup by name", removed=removed)
        assert f"relay process {state['relay_pid']}" in removed
        assert not os.path.exists(state["table_path"])
        assert "to-b" not in links_a


def test_link_by_pid_namespace_is_added_and_removed_at_run_time(fresh):
    """Mininet nodes are reached by the PID of a process in their namespace; links come and go while running."""
    holder = subprocess.Popen(["ip", "netns", "exec", fresh.ns["c"], "sleep", "60"])
    try:
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{holder.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            assert time.monotonic() < deadline, "the holder process never entered its namespace"
            time.sleep(0.01)
        ends = fresh.relay.add_link(fresh.ns["a"], "to-c", holder.pid, "to-a", slot=5)
        shown = fresh.link_show("c", "to-a")
        in_relay = 5 in fresh.relay.stats()
        fresh.relay.remove_link(5)
        gone = subprocess.run(["ip", "-n", fresh.ns["c"], "link", "show", "to-a"], capture_output=True)
        report("link by pid", ends=ends, in_relay=in_relay, removed_from_relay=5 not in fresh.relay.stats())
        assert ends.b[0] == holder.pid and in_relay and "to-a" in shown
        assert 5 not in fresh.relay.stats() and gone.returncode != 0
    finally:
        holder.terminate()
        holder.wait(timeout=10)
