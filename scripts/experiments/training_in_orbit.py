#!/usr/bin/env python3
"""Training in orbit: a ring all-reduce with a compute phase per round on power-limited servers, live.

Runs ``topologies/training-in-orbit.yaml`` (a 53 deg shell whose eclipses throttle and stop the servers) or
``training-in-orbit-dawn-dusk.yaml`` (a dawn-dusk cluster, always sunlit) the way ``lasernet run`` does, with one
difference: once the run is up its servers' parent cgroup gets the CFS weight of 16 ordinary processes (v1
``cpu.shares`` 16384, v2 ``cpu.weight`` 1600). With group scheduling that parent competes with the machine's
other load as *one* task, so on a shared machine the servers would get less than their ``cpus``; weighted, their
quotas are what limits them (they cannot take more than the quotas: 0.8 of a core together here), which is what
the experiment measures: a satellite's compute, not this machine's other work. ``--no-weight`` leaves it out.

Then it builds ``report.html`` (with its "Training by power state" section), which writes ``training.csv``
(:mod:`lasernet.measure.training`), and prints the table: round time (p50/p90) by the ring's power state at the
round's start, compute time and CPU share by each member's own state, and the share of the run the ring spent
nominal, throttled and off (planned and as applied).

Usage (as root): .venv/bin/python scripts/experiments/training_in_orbit.py [--dawn-dusk] [--speed 60]
    [--duration 300] [--start ISO] [--run-dir DIR] [--no-weight]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import lasernet  # noqa: E402
from lasernet.cli import runner  # noqa: E402
from lasernet.measure.report import build_report  # noqa: E402

SERVER_WEIGHT = 16  # ordinary processes' worth of CFS weight for the run's servers' parent group


def weight_servers(emu) -> None:
    """Give the run's servers' parent cgroup the CFS weight of :data:`SERVER_WEIGHT` processes."""
    groups = emu.host.cgroups
    if groups is None:
        return
    if groups.version == 2:
        (groups.root / groups.parent / "cpu.weight").write_text(str(100 * SERVER_WEIGHT))
    else:
        (groups.root / "cpu" / groups.parent / "cpu.shares").write_text(str(1024 * SERVER_WEIGHT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dawn-dusk", action="store_true", help="the dawn-dusk cluster instead of the 53 deg shell")
    ap.add_argument("--speed", type=float, default=60.0)
    ap.add_argument("--duration", type=float, default=None, help="wall seconds (default the workload's)")
    ap.add_argument("--start", default=None, help="emulated start, ISO 8601 (default the scenario's epoch)")
    ap.add_argument("--run-dir", default=None)
    ap.add_argument("--links", default="auto")
    ap.add_argument("--no-weight", action="store_true", help="leave the servers' cgroup at the default weight")
    args = ap.parse_args(argv)
    name = "training-in-orbit-dawn-dusk" if args.dawn_dusk else "training-in-orbit"
    scenario = lasernet.load_scenario(REPO / "topologies" / f"{name}.yaml")
    start = None if args.start is None else dt.datetime.fromisoformat(args.start.replace("Z", "+00:00"))
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix=f"lasernet-{name}-"))
    duration_s = args.duration if args.duration is not None else scenario.workload.duration_s
    summary = runner.run(scenario, duration_s=duration_s, speed=args.speed, start=start, links=args.links,
                         run_dir=run_dir, on_start=None if args.no_weight else weight_servers)
    build_report(run_dir)
    failed = summary.get("workload", {}).get("failed", [])
    print(f"{name}: {duration_s:g} s at {args.speed:g}x, run directory {run_dir}")
    with (run_dir / "training.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            print(",".join(row.values()))
    for job in failed:
        print(f"failed: {job['node']} {job['command']} exit {job['exit_code']}: {job['stderr']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
