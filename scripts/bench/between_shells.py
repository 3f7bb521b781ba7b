#!/usr/bin/env python3
"""Benchmark links between shells (``isl.between_shells``) at Starlink phase 1's size (4,408 satellites).

Prints the CPU time (process time, so that other load on the machine counts less) per step of short plans of
``starlink-phase1-between-shells`` against the same scenario without the option (``starlink-phase1``, its +Grid
only), interleaved run by run, and how many between-shell links the plan holds.

Usage: .venv/bin/python scripts/bench/between_shells.py [--steps 30] [--reps 3]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import lasernet  # noqa: E402
from lasernet.topology import BETWEEN_SHELLS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    with_ = lasernet.load_scenario(REPO / "topologies" / "starlink-phase1-between-shells.yaml")
    without = lasernet.load_scenario(REPO / "topologies" / "starlink-phase1.yaml")
    times = {"with": [], "without": []}
    held = 0
    for _ in range(args.reps):
        for name, sc in (("without", without), ("with", with_)):
            t0 = time.process_time()
            tl = lasernet.plan(sc, duration_s=args.steps - 1, step_s=1)
            times[name].append((time.process_time() - t0) * 1000 / args.steps)
            if name == "with":
                cols = tl.links.role == BETWEEN_SHELLS
                held = int(cols.sum())
                up = int(tl.up[:, cols].sum(axis=1).max())
    a, b = statistics.median(times["with"]), statistics.median(times["without"])
    print(f"starlink-phase1 +Grid with between-shell links: {a:.1f} ms/step CPU; without: {b:.1f} ms/step "
          f"({a / b:.2f}x); {held} between-shell pairs held in {args.steps} steps, at most {up} up at once "
          f"(runs: with {np.round(times['with'], 1).tolist()}, without {np.round(times['without'], 1).tolist()})")


if __name__ == "__main__":
    main()
