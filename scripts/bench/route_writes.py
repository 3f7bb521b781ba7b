#!/usr/bin/env python3
"""Count the kernel writes that keeping every router's routes equal to the oracle's table takes, step by step.

Offline (no root, nothing created): for each scenario, a plan of ``--seconds`` (``lasernet.timeline.plan``),
then at every step the oracle's table over the links up (:func:`lasernet.routing.oracle.compute`, with the
background process's hysteresis, :func:`lasernet.routing.background.keep_near_best`, as the coordinator runs
it at these sizes; ``--no-hysteresis`` for the bare diff) and its changed entries against the step before
(what :func:`lasernet.routing.oracle.diff` lists). Link indices of one plan are stable, so they stand for the
coordinator's slots. Prints, per scenario:

* the changed entries per step, split by kind of row: rows of stub stations (``transit: false``), rows of
  satellites (and transit stations), and among both the rows where (nearly) every route moved to one new link
  (at least 90% of the row's routes changed, at least 90% of those to one link): what a handover makes;
* **today**: one route write per changed entry (``/32`` replace, or ``unreachable``/delete for a withdrawal);
* **nexthop objects** (:class:`lasernet.emulation.nexthops.NexthopPlan`, the coordinator's scheme): the labels
  made, routes written and labels retargeted, rows rewritten whole as aggregated prefixes where that is fewer
  writes (as background mode does; counted at their upper bound: every prefix, and every /32 and prefix the
  row may hold deleted; ``--no-reaggregate``: labels only), plus what the host adds
  (:mod:`lasernet.emulation.kernel`): a black hole for every label on a link that goes down (at both ends) and
  the gateway back when it comes up;
* the ratio of the two, per step (mean, p50, p99, max) and in all.

Usage: .venv/bin/python scripts/bench/route_writes.py [--scenario starlink-shell1 --scenario starlink-phase1]
[--seconds 120] [--no-hysteresis]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import lasernet  # noqa: E402
from lasernet.spec.shipped import resolve_scenario  # noqa: E402
from lasernet.emulation.coordinator import Emulation  # noqa: E402
from lasernet.emulation.nexthops import NONE, NexthopPlan, row_prefixes  # noqa: E402
from lasernet.routing import oracle  # noqa: E402
from lasernet.routing.background import keep_near_best  # noqa: E402

WHOLE_ROW = 0.9  # a row "moved": this share of its routes changed, and this share of those to one link
REAGGREGATE_MIN = Emulation.REAGGREGATE_MIN


def whole_rows(src, dst, new_slot, reachable_per_row) -> np.ndarray:
    """Rows among ``src`` where (nearly) every route moved to the same new link."""
    rows, start, count = np.unique(src, return_index=True, return_counts=True)
    out = []
    for r, lo, c in zip(rows, start, count):
        if c < WHOLE_ROW * max(reachable_per_row[r], 1):
            continue
        _, top = np.unique(new_slot[lo:lo + c], return_counts=True)
        if top.max() >= WHOLE_ROW * c:
            out.append(r)
    return np.array(out, np.int64)


def measure(name: str, seconds: float, hysteresis: bool, reaggregate: bool) -> None:
    scenario = lasernet.load_scenario(resolve_scenario(name))
    t0 = time.monotonic()
    tl = lasernet.plan(scenario, duration_s=seconds)
    n, links = len(tl.node_names), tl.links
    print(f"{name}: {n} routers ({tl.n_satellites} satellites), {len(links.a)} links, {len(tl.offsets_s)} steps "
          f"of {tl.step_s:g} s (planned in {time.monotonic() - t0:.1f} s); hysteresis "
          f"{'50 us (as the background oracle)' if hysteresis else 'off'}")
    slots = np.arange(len(links.a), dtype=np.int32)
    stub = ~np.asarray(tl.transit, bool)
    plan = NexthopPlan(n)
    bits = max(1, int(n).bit_length())
    row_singles = np.zeros(n, np.int64)  # per router: /32 routes written since its last aggregation
    row_prefix_count = np.zeros(n, np.int64)
    reaggregated_rows = 0
    prev_next = np.full((n, n), -1, np.int32)
    prev_slot = np.full((n, n), -1, np.int32)
    prev_up = np.zeros(len(links.a), bool)
    today, ours, parks = [], [], []
    kinds = {"stub station rows": 0, "satellite rows": 0, "whole-row moves (entries)": 0}
    whole_count = 0
    compute_s = plan_s = 0.0
    for k in range(len(tl.offsets_s)):
        up = tl.up[k]
        delay = np.where(np.isnan(tl.delay_s[k]), 0.0, tl.delay_s[k]).astype(np.float64)
        c0 = time.monotonic()
        routes = oracle.compute(n, links.a, links.b, up, delay, transit=tl.transit)
        next_hop = routes.next_hop.copy()
        slot = np.where(routes.link >= 0, slots[np.maximum(routes.link, 0)], -1).astype(np.int32)
        if hysteresis:
            keep_near_best(n, routes, next_hop, slot, prev_next, links.a, links.b, up, delay, slots, 50e-6,
                           tl.transit)
        compute_s += time.monotonic() - c0
        src, dst = np.nonzero((next_hop != prev_next) | (slot != prev_slot))
        new_slot = slot[src, dst]
        # the host parks the labels of links going down (both ends), and restores those of links coming up
        flipped = np.flatnonzero(prev_up != up)
        host_writes = 0
        for li in flipped:
            for end in (links.a[li], links.b[li]):
                host_writes += int((plan.slot[end] == li).sum())
        p0 = time.monotonic()
        if k == 0:
            plan.first(slot)
            writes = int(plan.slot.__ge__(0).sum())  # one nexthop object per router and link it uses
            values = np.full((n, 1 << bits), oracle.DONT_CARE, np.int64)  # the first table's prefixes per row
            values[:, 1:n + 1] = np.where(plan.label >= 0, plan.label, -1)
            values[np.arange(n), np.arange(n) + 1] = oracle.DONT_CARE
            row_prefix_count = np.bincount(oracle.aggregate(values, bits)[0], minlength=n)
            del values
        else:
            writes = 0
            if reaggregate:  # as the coordinator's _reaggregate_rows (background mode)
                sure = (new_slot < 0) | (plan.label[src, dst] == NONE)
                counts = np.bincount(src[sure], minlength=n)
                whole = []
                for s in np.flatnonzero(counts >= REAGGREGATE_MIN).tolist():
                    first, _bits, _value = row_prefixes(s, slot[s].astype(np.int64))
                    if len(first) + row_singles[s] + row_prefix_count[s] >= counts[s]:
                        continue
                    made = plan.rebuild_row(s, slot[s].astype(np.int64))
                    writes += len(made[0]) + len(first) + int(row_singles[s] + row_prefix_count[s])  # at most
                    row_singles[s], row_prefix_count[s] = 0, len(first)
                    whole.append(s)
                reaggregated_rows += len(whole)
                rest = ~np.isin(src, whole)
                src_i, dst_i, new_i = src[rest], dst[rest], new_slot[rest]
            else:
                src_i, dst_i, new_i = src, dst, new_slot
            gone = new_i < 0
            plan.clear(src_i[gone], dst_i[gone])
            assigned = plan.assign(src_i[~gone], dst_i[~gone], new_i[~gone])
            np.add.at(row_singles, assigned.routes[0], 1)
            np.add.at(row_singles, src_i[gone], 1)
            writes += assigned.count + int(gone.sum())
        if k > 0:
            plan_s += time.monotonic() - p0
        if k > 0:
            today.append(len(src))
            ours.append(writes + host_writes)
            parks.append(host_writes)
            on_stub = stub[src]
            kinds["stub station rows"] += int(on_stub.sum())
            kinds["satellite rows"] += int((~on_stub).sum())
            whole = whole_rows(src, dst, new_slot, (prev_next >= 0).sum(axis=1))
            whole_count += len(whole)
            kinds["whole-row moves (entries)"] += int(np.isin(src, whole).sum())
        prev_next, prev_slot, prev_up = next_hop, slot, up.copy()
        if k > 0:
            assert (plan.effective_slot() == np.where(slot >= 0, slot, -1)).all(), f"step {k}: labels != table"
    today, ours = np.array(today), np.array(ours)
    steps = len(today)
    total = today.sum()
    print(f"  changed entries per step: mean {today.mean():.0f}, p50 {np.median(today):.0f}, max {today.max()}; "
          f"{total} in {steps} steps")
    for kind, count in kinds.items():
        print(f"    {kind}: {count} ({100 * count / max(total, 1):.1f}%), {count / steps:.0f} per step"
              + (f"; {whole_count} rows in all" if kind.startswith("whole") else ""))
    ratio = today / np.maximum(ours, 1)
    print(f"  routes written per step today (one per entry): mean {today.mean():.0f}, p50 {np.median(today):.0f}, "
          f"p99 {np.percentile(today, 99):.0f}, max {today.max()}")
    print(f"  with nexthop objects: mean {ours.mean():.0f}, p50 {np.median(ours):.0f}, "
          f"p99 {np.percentile(ours, 99):.0f}, max {ours.max()} (of which black holes and restores for links "
          f"going down and up: {np.sum(parks)} in all; rows rewritten whole as prefixes: {reaggregated_rows})")
    print(f"  ratio today / nexthop objects: {total / max(ours.sum(), 1):.2f}x in all; per step p50 "
          f"{np.median(ratio):.2f}x, in the step with the most writes today "
          f"{today[today.argmax()] / max(ours[today.argmax()], 1):.2f}x")
    print(f"  labels per router at the end: mean {(plan.slot >= 0).sum(axis=1).mean():.1f}, max "
          f"{(plan.slot >= 0).sum(axis=1).max()}; oracle {1e3 * compute_s / (steps + 1):.0f} ms per step, "
          f"nexthop plan {1e3 * plan_s / steps:.1f} ms per step (this bench's own cost)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", action="append", help="scenario name or file (repeatable); default "
                        "starlink-shell1 and starlink-phase1")
    parser.add_argument("--seconds", type=float, default=120.0, help="plan length (default 120 s)")
    parser.add_argument("--no-hysteresis", action="store_true", help="the bare diff, without keep_near_best")
    parser.add_argument("--no-reaggregate", action="store_true", help="labels only: no row rewritten as prefixes")
    args = parser.parse_args()
    for name in args.scenario or ["starlink-shell1", "starlink-phase1"]:
        measure(name, args.seconds, not args.no_hysteresis, not args.no_reaggregate)


if __name__ == "__main__":
    main()
