"""Run the in-orbit-processing experiment in both modes, one after the other, and compare them (root).

``in-orbit-processing`` (raw: each EO satellite downlinks over its own ground contacts) and
``in-orbit-processing-compute`` (processed: over the ISLs to an orbital compute node, reduced 10x, down through the
mesh) are the same scenario but for the producers' MODE. Each is run with ``lasernet run``'s Python face
(:func:`lasernet.cli.runner.experiment`) for the same wall time and speed, so both see the same orbits; the
report of each run has its Earth observation section. Writes ``comparison.json`` and ``comparison.md`` (the table
printed) in ``--out``::

    .venv/bin/python scripts/experiments/in_orbit_processing.py --speed 25 --duration 240 --out runs/eo
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import lasernet  # noqa: E402
from lasernet.cli.runner import experiment  # noqa: E402
from lasernet.measure import eo  # noqa: E402

SCENARIOS = {"raw": "in-orbit-processing", "processed": "in-orbit-processing-compute"}


def table(results: dict[str, dict]) -> str:
    mb = lambda b: f"{b / 1e6:.1f}"  # noqa: E731
    sec = lambda x: "-" if x is None else f"{x:,.0f}"  # noqa: E731
    lines = ["| mode | produced MB | downlinked MB | chunks down / produced | age p50 s | age p99 s | "
             "backlog at the end MB |", "|---|---|---|---|---|---|---|"]
    for mode, s in results.items():
        extra = f" (+{mb(s['compute_backlog_end_bytes'])} at the compute node)" if s["compute_backlog_end_bytes"] else ""
        lines.append(f"| {mode} | {mb(s['produced_bytes'])} | {mb(s['downlinked_bytes'])} | "
                     f"{s['downlinked_chunks']} / {s['chunks_produced']} | {sec(s['age_p50_s'])} | "
                     f"{sec(s['age_p99_s'])} | {mb(s['backlog_end_bytes'])}{extra} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speed", type=float, default=25.0)
    ap.add_argument("--duration", type=float, default=240.0, help="wall seconds per mode")
    ap.add_argument("--out", type=Path, default=Path("runs") / "in-orbit-processing")
    ap.add_argument("--links", default="auto")
    ap.add_argument("--modes", default="raw,processed")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for mode in args.modes.split(","):
        scenario = lasernet.load_scenario(lasernet.resolve_scenario(SCENARIOS[mode]))
        run_dir = args.out / mode
        summary = experiment(scenario, duration_s=args.duration, speed=args.speed, links=args.links, run_dir=run_dir)
        failed = summary.get("workload", {}).get("failed")
        if failed:
            print(f"{mode}: failed jobs: {failed}", file=sys.stderr)
            return 1
        results[mode] = eo.summary(eo.read_run(run_dir))
        results[mode]["run_dir"] = str(run_dir)
        print(f"{mode}: {run_dir}", flush=True)
    text = table(results)
    (args.out / "comparison.json").write_text(json.dumps({"speed": args.speed, "duration_s": args.duration,
                                                          "results": results}, indent=1))
    (args.out / "comparison.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
