"""Inside the VM: netem on a veth pair delays and drops what it is told to, by measured UDP echo RTT.

Run by tests/vm/test_netem_in_vm.py in one boot of Debian's stock kernel; it fails on the host (no sch_netem).

Why measured RTT and not ``tc qdisc show``: with a misconfigured 9p root (no ``multidevs=remap``) tc reads a wrong
``/proc/net/psched`` and programs delays ~15x too small while still printing the requested value.

The tolerance, honestly: under QEMU TCG the guest's own stack is slow and the host may be shared. A UDP echo
between two Python processes over the bare veth pair takes 1.5-6 ms (median) instead of ~0.05 ms, netem's
timer path adds up to another ms or two (the emulated CPU has to wake for each timer), and single probes jitter
by many ms when the host is busy. So:

- every figure is the median of hundreds of probes (sent every 10 ms, so that the guest never falls behind);
- netem's delay is checked where the guest's cost cancels: changing the delay in place from 10 ms to 25 ms per
  end must move the RTT by 30 ms +/- 1 ms. The two settings are measured interleaved (10, 25, 10, 25, ...; each
  switch a ``tc qdisc change``), so that a burst of host load hits both alike, and the move is taken at the 10th
  percentile: host load only ever adds latency, so the fastest tenth is where it reaches least (the medians'
  move is recorded too; it has come out 29.4-30.4 ms);
- the absolute RTTs must never be below the configured RTT (20 ms, 50 ms; 10th percentile), which is what the 9p
  pitfall breaks, and their medians above it by at most the guest's own cost measured in the same boot (the
  bare veth pair's median RTT) plus ``NETEM_TIMER_COST_MS`` for netem's timer wake-ups. A fixed 5 ms allowance
  failed on a busy host: bare veth 4.7 ms, netem +6.1 ms over the configured RTT, the 10 -> 25 ms move still
  29.9 ms (median) / 30.2 ms (p10).
The medians, and what they exceed the configured RTT by, are recorded and printed in the host's test summary.
"""

from __future__ import annotations

import math
import statistics

import pytest

PROBES = 300          # per delay setting, one every 10 ms, in 6 interleaved rounds of 50
ROUNDS = 6
LOSS_PROBES = 1000
TOLERANCE_MS = 1.0
NETEM_TIMER_COST_MS = 2.0  # netem's hrtimer wake-ups on top of the bare pair's cost, under TCG


@pytest.fixture(scope="session")
def netem_pair(veth_pair, echoer, record):
    """The pair with its bare-veth RTT measured first, then ``netem delay 10ms`` added on both ends."""
    veth_pair.probe(50)  # warm up (first exec of the prober, neighbour resolution); not recorded
    veth_pair.bare = veth_pair.probe(PROBES)
    record("bare veth (no qdisc)", veth_pair.bare)
    for end in ("a0", "b0"):
        veth_pair.netem(end, "add", "delay 10ms")
    return veth_pair


@pytest.fixture(scope="session")
def delay_rtts(netem_pair, record):
    """Median RTTs at 10 ms and 25 ms per end, measured in interleaved rounds; each switch is a ``tc change``.

    Returns ({delay per end in ms: stats}, [root qdisc of a0 after each switch])."""
    samples = {10: [], 25: []}
    qdiscs = []
    for _ in range(ROUNDS):
        for delay_ms, rtts in samples.items():
            for end in ("a0", "b0"):
                netem_pair.netem(end, "change", f"delay {delay_ms}ms")
            qdiscs.append(netem_pair.root_qdisc("a0"))
            m = netem_pair.probe(PROBES // ROUNDS)
            assert m["lost"] == 0, m
            rtts.extend(m["rtt_ms"])
    stats = {}
    for delay_ms, rtts in samples.items():
        stats[delay_ms] = {"sent": len(rtts), "received": len(rtts), "lost": 0, "median_ms": statistics.median(rtts),
                           "p10_ms": quantile(rtts, 0.1), "p90_ms": quantile(rtts, 0.9),
                           "above_configured_ms": statistics.median(rtts) - 2 * delay_ms}
        record(f"netem delay {delay_ms}ms on each end", stats[delay_ms])
    record("change 10 -> 25 ms per end", {"expected_move_ms": 30.0,
                                          "median_moved_ms": stats[25]["median_ms"] - stats[10]["median_ms"],
                                          "p10_moved_ms": stats[25]["p10_ms"] - stats[10]["p10_ms"]})
    return stats, qdiscs


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def test_guest_kernel_reports_nanosecond_psched_clock():
    # tc converts delays with these numbers; a wrong file here is the multidevs pitfall.
    assert open("/proc/net/psched").read().split() == ["000003e8", "00000040", "000f4240", "3b9aca00"]


def test_every_probe_comes_back_over_the_bare_veth_pair(netem_pair):
    # Only a reference for the summary: its median is the guest's cost without netem (1.5-6 ms under TCG).
    assert netem_pair.bare["lost"] == 0


def guest_cost_ms(netem_pair) -> float:
    """What the guest itself may add to a median RTT: the bare pair's median plus netem's timer wake-ups."""
    return netem_pair.bare["median_ms"] + NETEM_TIMER_COST_MS


def test_netem_10ms_on_each_end_gives_a_20ms_rtt(delay_rtts, netem_pair):
    m = delay_rtts[0][10]
    assert m["p10_ms"] >= 20.0, "netem delivered early: is the 9p root exported with multidevs=remap?"
    assert m["median_ms"] - 20.0 < guest_cost_ms(netem_pair), (m, netem_pair.bare["median_ms"])


def test_netem_changed_in_place_to_25ms_on_each_end_gives_a_50ms_rtt(delay_rtts, netem_pair):
    m, qdiscs = delay_rtts
    assert m[25]["p10_ms"] >= 50.0, "netem delivered early: is the 9p root exported with multidevs=remap?"
    assert m[25]["median_ms"] - 50.0 < guest_cost_ms(netem_pair), (m[25], netem_pair.bare["median_ms"])
    # The change moves the RTT by twice the change per end: the guest's own cost cancels here.
    assert m[25]["p10_ms"] - m[10]["p10_ms"] == pytest.approx(30.0, abs=TOLERANCE_MS)
    # In place: one qdisc (same handle) throughout, its packet counter never reset by a delete + add.
    assert {(q["kind"], q["handle"]) for q in qdiscs} == {("netem", qdiscs[0]["handle"])}
    packets = [q["packets"] for q in qdiscs]
    assert packets == sorted(packets) and packets[-1] >= packets[0] + PROBES
    assert qdiscs[-1]["options"]["delay"]["delay"] == pytest.approx(0.025)


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
