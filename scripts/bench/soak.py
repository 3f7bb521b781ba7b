#!/usr/bin/env python3
"""Soak: a long live run across many plan windows, for leaks, clock drift and probe loss the plan does not explain.

Run as root from the repository (``.venv/bin/python scripts/bench/soak.py``); it prints figures and exits 1 if a
guarantee of the README's "Reliability" section does not hold. Default: ``mini`` for one emulated hour at
``--speed 10`` (6 minutes of wall time) with 600 s plan windows, so that the run crosses five window
boundaries, with the scenario's probe pairs (ground to ground, 20 Hz each). It reports:

* **memory**: resident set size (RSS) of the driver and of each delay-line relay once the run is warm (past the
  first window boundary and the planning of the next window, ``--warm-s``) and at its end, and the driver's RSS
  every ``--sample-s`` from the start; the guarantee is growth <= 5% from warm to the end;
* **ticks**: how many ticks ran against the wall time between the first and the last one / tick (ticks
  silently skipped, or a clock that drifts from the emulated time, would show here), overruns and tick cost
  p50/p99/max;
* **probe loss outside planned outages**: a probe is lost in a planned outage if a link of its predicted path
  went down, or its path changed, within one tick (plus the probe's own round trip) of its send time, according
  to the run's own ``events.csv`` and the probe's predicted path; every other lost probe is unexplained, and
  the guarantee is none.
"""

from __future__ import annotations

import argparse
import csv
import sys
import threading
import tracemalloc
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import lasernet  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from emulation import rss_kib  # noqa: E402  (the emulation bench's reader of a process's resident set)


def processes(emu) -> dict[str, int]:
    """The driver and the link backend's relays, by a name for the report."""
    import os

    out = {"driver": os.getpid()}
    for k, relay in enumerate(getattr(emu.backend, "relays", []) or []):
        out[f"relay-{k}"] = relay.pid
    return out


def unexplained_losses(run_dir: Path, tick_emulated_s: float, speed: float) -> tuple[int, int, int, list]:
    """(sent, lost, lost outside planned outages, the first few of those) from the run's own files."""
    downs: dict[str, list[float]] = {}
    changes: list[float] = []
    for r in csv.DictReader((run_dir / "events.csv").open()):
        if r["kind"] in ("isl", "gsl") and r["event"] == "down":
            downs.setdefault(r["what"], []).append(float(r["t_s"]))
        elif r["kind"] == "route":
            changes.append(float(r["t_s"]))
    sent = lost = outside = 0
    examples = []
    rows = list(csv.DictReader((run_dir / "probes.csv").open()))
    by_pair: dict[str, list] = {}
    for r in rows:
        by_pair.setdefault(r["pair"], []).append(r)
    for pair, mine in by_pair.items():
        paths = [r["path"] for r in mine]
        for i, r in enumerate(mine):
            sent += 1
            if r["measured_rtt_ms"]:
                continue
            lost += 1
            t = float(r["t_s"])
            # the probe's round trip takes wall time: at `speed`, that many times more emulated seconds pass
            rtt_s = speed * (float(r["predicted_rtt_ms"]) * 1e-3 if r["predicted_rtt_ms"] else 1.0)
            lo, hi = t - tick_emulated_s - rtt_s, t + rtt_s + tick_emulated_s
            nodes = r["path"].split(">") if r["path"] else []
            hops = {f"{a}~{b}" for a, b in zip(nodes, nodes[1:])} | {f"{b}~{a}" for a, b in zip(nodes, nodes[1:])}
            link_down = any(lo <= x <= hi for h in hops for x in downs.get(h, ()))
            path_moved = any(paths[j] != r["path"] for j in range(max(0, i - 50), min(len(paths), i + 50))
                             if abs(float(mine[j]["t_s"]) - t) <= tick_emulated_s + rtt_s)
            if not (link_down or path_moved or not r["path"]):
                outside += 1
                if len(examples) < 5:
                    examples.append((pair, round(t, 3), r["path"]))
    return sent, lost, outside, examples


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", nargs="?", default="mini")
    ap.add_argument("--emulated-s", type=float, default=3600.0, help="emulated seconds to run (default one hour)")
    ap.add_argument("--speed", type=float, default=10.0)
    ap.add_argument("--window-s", type=float, default=600.0, help="plan window (emulated s)")
    ap.add_argument("--warm-s", type=float, default=None,
                    help="wall seconds before the memory reading growth is counted from (default 1.5 windows)")
    ap.add_argument("--sample-s", type=float, default=30.0, help="wall seconds between the driver's RSS samples")
    ap.add_argument("--run-dir", default=None)
    ap.add_argument("--tracemalloc", type=int, default=0, metavar="N",
                    help="trace Python allocations and print the N sites that grew most from warm to the end")
    args = ap.parse_args()
    for name, value in (("--emulated-s", args.emulated_s), ("--speed", args.speed), ("--window-s", args.window_s)):
        if not value > 0:
            print(f"soak: {name} must be > 0, got {value}", file=sys.stderr)
            return 2
    scenario = lasernet.load_scenario(_resolve(args.scenario))
    wall_s = args.emulated_s / args.speed
    run_dir = Path(args.run_dir or f"runs/soak-{scenario.name}-{int(time.time())}")
    emu = lasernet.Emulation(scenario, speed=args.speed, window_s=args.window_s, run_dir=run_dir)
    readings: dict[str, dict[str, int]] = {}
    snapshots: dict = {}
    if args.tracemalloc:
        tracemalloc.start(8)
    trend: list[tuple[float, int]] = []  # (wall s, driver RSS KiB) once every --sample-s
    # Warm: past the first window boundary and the planning of the window after it (the first window taken in
    # from its planner process leaves its allocations with the process): by default 1.5 windows of wall time.
    warm_s = args.warm_s if args.warm_s is not None else min(wall_s / 2, 1.5 * args.window_s / args.speed)
    with emu:
        procs = processes(emu)
        done = threading.Event()

        def sample():  # beside the one run() below, so that the clock and the ticks are not interrupted
            t0 = time.monotonic()
            warm_taken = False
            while not done.wait(min(args.sample_s, 1.0)):
                t = time.monotonic() - t0
                if not warm_taken and t >= warm_s:
                    readings["warm"] = {name: rss_kib(pid) for name, pid in procs.items()}
                    warm_taken = True
                    if args.tracemalloc:
                        snapshots["warm"] = tracemalloc.take_snapshot()
                if not trend or t - trend[-1][0] >= args.sample_s:
                    trend.append((t, rss_kib(procs["driver"])))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t_start = time.monotonic()
        ticks_before = len(emu.ticks)
        emu.run(wall_s)
        readings["end"] = {name: rss_kib(pid) for name, pid in procs.items()}
        if args.tracemalloc:
            snapshots["end"] = tracemalloc.take_snapshot()
        done.set()
        sampler.join()
        elapsed = time.monotonic() - t_start
        ticks = emu.ticks[ticks_before:]
        windows_crossed = int(emu.now_s() // args.window_s)
    costs = np.array([t.cost_s for t in ticks]) * 1e3
    # Ticks are due every tick_s of wall time: between the first and the last tick of the soak, this many.
    expected = (ticks[-1].t_s - ticks[0].t_s) / (emu.tick_s * args.speed) + 1
    sent, lost, outside, examples = unexplained_losses(run_dir, emu.tick_s * args.speed, args.speed)
    print(f"soak: {scenario.name}, {elapsed * args.speed:.0f} s emulated at {args.speed:g}x in {elapsed:.0f} s, "
          f"{windows_crossed} plan window boundaries crossed (windows of {args.window_s:g} s); run dir {run_dir}")
    ok = True
    for name in readings["warm"]:
        a, b = readings["warm"][name], readings["end"][name]
        growth = (b - a) / a * 100 if a else float("nan")
        ok &= growth <= 5.0
        print(f"  RSS {name}: {a / 1024:.1f} MiB warm ({warm_s:.0f} s) -> {b / 1024:.1f} MiB at the end "
              f"({growth:+.2f}%)")
    print("  RSS driver over the run (wall s: MiB): " + ", ".join(f"{t:.0f}: {x / 1024:.1f}" for t, x in trend))
    drift = len(ticks) - expected
    print(f"  ticks: {len(ticks)} of {expected:.0f} expected (wall / tick; {drift:+.0f}), "
          f"{sum(t.overrun for t in ticks)} overruns, p50 {np.percentile(costs, 50):.2f} ms, "
          f"p99 {np.percentile(costs, 99):.2f} ms, max {costs.max():.1f} ms")
    ok &= abs(drift) <= 2
    print(f"  probes: {sent} sent, {lost} lost, {outside} lost outside planned outages"
          + (f" (e.g. {examples})" if examples else ""))
    for pair, why in (emu.probes.errors.items() if emu.probes else ()):
        print(f"  probes {pair}: no result: {why}")
    ok &= outside == 0 and sent > 0
    if args.tracemalloc and "warm" in snapshots:
        stats = snapshots["end"].compare_to(snapshots["warm"], "traceback")
        print(f"  Python allocations, warm -> end: {sum(s.size_diff for s in stats) / 1024:+.0f} KiB in all; top:")
        for stat in stats[:args.tracemalloc]:
            where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in list(stat.traceback)[::-1][:5])
            print(f"    {stat.size_diff / 1024:+8.0f} KiB {stat.count_diff:+7d} blocks  {where}")
    print("soak: " + ("every guarantee held" if ok else "A GUARANTEE DID NOT HOLD"))
    return 0 if ok else 1


def _resolve(name: str) -> str:
    path = Path(name)
    if path.is_file():
        return str(path)
    return str(Path(__file__).resolve().parents[2] / "topologies" / f"{name}.yaml")


if __name__ == "__main__":
    sys.exit(main())
