"""Inside the VM: netem on a veth pair delays and drops what it is told to, by measured UDP echo RTT.

Run by tests/vm/test_netem_in_vm.py in one boot of Debian's stock kernel; it fails on the host (no sch_netem).

Why measured RTT and not ``tc qdisc show``: with a misconfigured 9p root (no ``multidevs=remap``) tc reads a wrong
``/proc/net/psched`` and programs delays ~15x too small while still printing the requested value.

The tolerance, honestly: under QEMU TCG the guest's own stack is slow and the host may be shared. A UDP echo
between two Python processes over a bare veth pair takes 1.5-6 ms (median) instead of ~0.05 ms, netem's timer
path adds up to another ms or two (the emulated CPU has to wake for each timer), and single probes jitter by
many ms when the host is busy. So:

- every figure comes from hundreds of probes, sent every 10 ms on average (so that the guest never falls
  behind) with each gap drawn from 5-15 ms: with a fixed 10 ms gap every netem delay here, a multiple of it,
  put the prober's next send, the echoer's receive and both ends' netem releases at the same instant, and under
  host load the 10 ms setting came out 2.8 ms slower than the 25 ms one at the 10th percentile. And the
  three settings (a bare twin pair with no qdisc at all, netem 10 ms per end, netem 25 ms per end) are measured
  interleaved, in six rounds of 50 probes each (the order rotating from round to round; each netem switch a
  ``tc qdisc change``), so that a burst of host load hits all three alike;
- netem's delay is a floor: no probe can come back sooner than the configured RTT, and host load only ever adds
  latency. So the RTTs are judged at their low percentiles, where load reaches least: the 10th percentile must
  never be below the configured RTT (20 ms, 50 ms: what the 9p pitfall breaks), and may exceed it by at most
  the guest's own cost at the same percentile, measured on the bare twin in the same rounds, plus
  ``NETEM_TIMER_COST_MS`` for netem's timer wake-ups. (The medians were judged so once, against a
  bare baseline measured before the netem rounds: with another process keeping one host core busy the 10 ms
  median came out 26.6 ms against an allowance of 23.7 ms.)
- changing the delay in place from 10 ms to 25 ms per end must move the RTT by 30 ms +/- 1 ms, judged on the
  fastest probe of each setting (its floor): there the guest's cost cancels, and load, which only adds, reaches
  it least. (At the 10th percentile, in CI with one host core kept busy, the 10 ms setting once came out 3.3 ms
  above its floor and the 25 ms one 1.9 ms: a move of 28.6 ms.)
The medians and percentiles are recorded and printed in the host's test summary.
"""

from __future__ import annotations

import math
import statistics

import pytest

PROBES = 300          # per setting, one every 10 ms, in 6 interleaved rounds of 50
ROUNDS = 6
LOSS_PROBES = 1000
TOLERANCE_MS = 1.0
NETEM_TIMER_COST_MS = 2.0  # netem's hrtimer wake-ups on top of the bare pair's cost, under TCG
PROBE_JITTER = 0.5         # each probe gap uniform in 10 ms * (1 +/- 0.5)
BARE = "bare"


@pytest.fixture(scope="session")
def netem_pair(veth_pair, bare_pair, echoer):
    """The netem pair with ``netem delay 10ms`` added on both ends (the bare twin left as it is)."""
    for pair in (veth_pair, bare_pair):
        pair.probe(50)  # warm up (first exec of the prober, neighbour resolution); not recorded
    for end in ("a0", "b0"):
        veth_pair.netem(end, "add", "delay 10ms")
    return veth_pair


@pytest.fixture(scope="session")
def delay_rtts(netem_pair, bare_pair, record):
    """RTT statistics of the bare twin and of netem at 10 ms and 25 ms per end, measured in interleaved rounds.

    Returns ({BARE or delay per end in ms: stats}, [(delay set, root qdisc of a0 then) for each netem switch])."""
    settings = [BARE, 10, 25]
    samples = {setting: [] for setting in settings}
    qdiscs = []
    for round_index in range(ROUNDS):
        for setting in settings[round_index % 3:] + settings[:round_index % 3]:
            if setting == BARE:
                m = bare_pair.probe(PROBES // ROUNDS, jitter=PROBE_JITTER)
            else:
                for end in ("a0", "b0"):
                    netem_pair.netem(end, "change", f"delay {setting}ms")
                qdiscs.append((setting, netem_pair.root_qdisc("a0")))
                m = netem_pair.probe(PROBES // ROUNDS, jitter=PROBE_JITTER)
            assert m["lost"] == 0, (setting, m)
            samples[setting].extend(m["rtt_ms"])
    stats = {}
    for setting, rtts in samples.items():
        configured_ms = 0.0 if setting == BARE else 2.0 * setting
        stats[setting] = {"sent": len(rtts), "received": len(rtts), "lost": 0,
                          "median_ms": statistics.median(rtts), "p10_ms": quantile(rtts, 0.1),
                          "p90_ms": quantile(rtts, 0.9), "min_ms": min(rtts)}
        if setting != BARE:
            stats[setting]["above_configured_ms"] = stats[setting]["median_ms"] - configured_ms
            stats[setting]["p10_above_configured_ms"] = stats[setting]["p10_ms"] - configured_ms
            stats[setting]["p10_allowance_ms"] = excess_allowance_ms(stats)
        record("bare veth twin (no qdisc), interleaved" if setting == BARE
               else f"netem delay {setting}ms on each end", stats[setting])
    record("change 10 -> 25 ms per end", {"expected_move_ms": 30.0,
                                          "median_moved_ms": stats[25]["median_ms"] - stats[10]["median_ms"],
                                          "p10_moved_ms": stats[25]["p10_ms"] - stats[10]["p10_ms"],
                                          "min_moved_ms": stats[25]["min_ms"] - stats[10]["min_ms"]})
    return stats, qdiscs


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def test_guest_kernel_reports_nanosecond_psched_clock():
    # tc converts delays with these numbers; a wrong file here is the multidevs pitfall.
    assert open("/proc/net/psched").read().split() == ["000003e8", "00000040", "000f4240", "3b9aca00"]


def test_every_probe_comes_back_over_the_bare_veth_pair(delay_rtts):
    # The reference: its percentiles are the guest's cost without netem (median 1.5-6 ms under TCG).
    assert delay_rtts[0][BARE]["lost"] == 0


def excess_allowance_ms(stats: dict) -> float:
    """What the guest itself may add at the 10th percentile: the bare twin's, plus netem's timer wake-ups."""
    return stats[BARE]["p10_ms"] + NETEM_TIMER_COST_MS


def test_netem_10ms_on_each_end_gives_a_20ms_rtt(delay_rtts):
    stats = delay_rtts[0]
    m = stats[10]
    assert m["p10_ms"] >= 20.0, "netem delivered early: is the 9p root exported with multidevs=remap?"
    assert m["p10_ms"] - 20.0 < excess_allowance_ms(stats), (m, stats[BARE])


def test_netem_changed_in_place_to_25ms_on_each_end_gives_a_50ms_rtt(delay_rtts):
    stats, qdiscs = delay_rtts
    assert stats[25]["p10_ms"] >= 50.0, "netem delivered early: is the 9p root exported with multidevs=remap?"
    assert stats[25]["p10_ms"] - 50.0 < excess_allowance_ms(stats), (stats[25], stats[BARE])
    # The change moves the RTT's floor by twice the change per end: the guest's own cost cancels here.
    assert stats[25]["min_ms"] - stats[10]["min_ms"] == pytest.approx(30.0, abs=TOLERANCE_MS)
    # In place: one qdisc (same handle) throughout, its packet counter never reset by a delete + add, and each
    # change took (the delay read back is the one just set).
    assert {(q["kind"], q["handle"]) for _, q in qdiscs} == {("netem", qdiscs[0][1]["handle"])}
    packets = [q["packets"] for _, q in qdiscs]
    assert packets == sorted(packets) and packets[-1] >= packets[0] + PROBES
    assert [q["options"]["delay"]["delay"] for _, q in qdiscs] == pytest.approx([d / 1000 for d, _ in qdiscs])


def test_netem_loss_20pct_on_one_end_drops_a_binomial_share_of_probes(netem_pair, record):
    p = 0.20
    drops_before = netem_pair.root_qdisc("a0")["drops"]
    netem_pair.netem("a0", "change", "delay 1ms loss 20%")
    netem_pair.netem("b0", "change", "delay 1ms")
    m = netem_pair.probe(LOSS_PROBES, interval_s=0.005)
    record("netem a0 'delay 1ms loss 20%', b0 'delay 1ms'", m)
    # Each probe is lost on a0's egress independently with p = 0.2: lost ~ Binomial(1000, 0.2), sd 12.6.
    sd = math.sqrt(LOSS_PROBES * p * (1 - p))
    assert abs(m["lost"] - LOSS_PROBES * p) <= 4 * sd, m
    # netem dropped these probes (and perhaps a stray neighbour-discovery packet of its own).
    drops = netem_pair.root_qdisc("a0")["drops"] - drops_before
    assert m["lost"] <= drops <= m["lost"] + 3
