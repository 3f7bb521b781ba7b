#!/usr/bin/env python3
"""Benchmark a cluster run against a one-machine run of the same scenario, on this box: is spreading out free?

Run as root from the repository (``.venv/bin/python scripts/bench/cluster.py``); it prints numbers and asserts
nothing. In one run, on the same scenario (default ``starlink-shell1``), each measured in a child process:

1. **one machine**: ``lasernet.Emulation(scenario)`` as a user runs it today (the baseline);
2. **``--machines`` machines** (default 2): a :class:`lasernet.emulation.cluster.sandbox.NamespaceCluster` (one network
   namespace and one Ray node per machine, on this box), the coordinator inside the first, ``cluster=ADDRESS``.

For each: bring-up (``start()``, planning included) and teardown (``stop()``) seconds, tick cost p50/p99/max and
overruns over ``--seconds`` of wall time, and for the cluster also each machine's own apply time per tick
(p50/p99, from ``ticks.csv``), the message bytes sent to each machine per tick, the cross-machine links and the
substrate's measured one-way delay. Two "machines" on one 2-core box share its CPUs, so the cluster's tick cost
is an upper bound of what two real machines give (each would have its own cores); the messages are real.
``--quick``: a cut-down shell (6 planes x 22 satellites, 20 cities) and 10 s of ticks.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

CHILD = r'''
import csv, json, sys, time
import numpy as np
sys.path.insert(0, {bench!r})
import lasernet
from emulation import cut_down
args = json.loads(sys.argv[1])
sc = lasernet.load_scenario(args["scenario"])
if args["quick"]:
    sc = cut_down(sc, 6, 20)
t0 = time.monotonic()
emu = lasernet.Emulation(sc, run_dir=args["run_dir"], links="delayline", cluster=args["cluster"])
emu.start()
up_s = time.monotonic() - t0
n0 = len(emu.ticks)
emu.run(args["seconds"])
costs = emu.ticks.column("cost_s")[n0:] * 1e3
out = {{"nodes": len(emu.node_names), "up_s": up_s, "ticks": len(costs), "p50_ms": float(np.percentile(costs, 50)),
       "p99_ms": float(np.percentile(costs, 99)), "max_ms": float(costs.max()),
       "overruns": int(sum(c > emu.tick_s * 1e3 for c in costs)), "links": len(emu.applied)}}
if args["cluster"]:
    out["cluster"] = emu.host.summary()
    out["bytes_per_tick"] = (emu.host.bytes_sent / max(1, len(emu.ticks))).tolist()
t1 = time.monotonic()
emu.stop()
out["down_s"] = time.monotonic() - t1
if args["cluster"]:
    rows = list(csv.DictReader(open(args["run_dir"] + "/ticks.csv")))[n0:]
    out["apply_ms"] = [[float(np.percentile([float(r[k]) for r in rows], q)) for q in (50, 99)]
                       for k in rows[0] if k.startswith("apply_ms_m")]
print(json.dumps(out))
'''


def measure(args, cluster_address: str | None, sandbox=None) -> dict:
    run_dir = tempfile.mkdtemp(prefix="lasernet-bench-cluster-")
    spec = {"scenario": args.scenario, "quick": args.quick, "seconds": args.seconds, "run_dir": run_dir,
            "cluster": cluster_address}
    script = Path(run_dir) / "child.py"
    script.write_text(CHILD.format(bench=str(Path(__file__).resolve().parent)))
    argv = [sys.executable, str(script), json.dumps(spec)]
    proc = (sandbox.popen(0, argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if sandbox else subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                             text=True))
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"bench child failed ({proc.returncode}): {err.strip()[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    from lasernet.emulation.cluster.sandbox import NamespaceCluster

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default=str(ROOT / "topologies" / "starlink-shell1.yaml"))
    ap.add_argument("--seconds", type=float, default=60.0, help="wall seconds of ticks per run (default 60)")
    ap.add_argument("--machines", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.seconds = min(args.seconds, 10.0)
    print(f"cluster bench: {Path(args.scenario).stem}{' (quick)' if args.quick else ''}, {args.seconds:g} s of "
          f"ticks, 1 machine vs {args.machines} (namespaces of this box, Ray {_ray_version()})")
    one = measure(args, None)
    with NamespaceCluster(args.machines) as sandbox:
        print(f"  Ray: {args.machines} nodes started in {sandbox.start_s:.1f} s")
        t0 = time.monotonic()
        many = measure(args, sandbox.address, sandbox)
        many["wall_s"] = time.monotonic() - t0
    print(f"  {'':24s} {'1 machine':>12s} {f'{args.machines} machines':>12s} {'ratio':>7s}")
    for key, label in (("up_s", "bring-up s"), ("down_s", "teardown s"), ("p50_ms", "tick p50 ms"),
                       ("p99_ms", "tick p99 ms"), ("max_ms", "tick max ms"), ("overruns", "overruns")):
        ratio = many[key] / one[key] if one[key] else float("nan")
        print(f"  {label:24s} {one[key]:12.2f} {many[key]:12.2f} {ratio:7.2f}")
    c = many["cluster"]
    print(f"  nodes {one['nodes']}, links {one['links']}; cross-machine links {c['cross_machine_links']} "
          f"({c['cross_machine_links'] / max(1, many['links']) * 100:.1f}%)")
    for k, m in enumerate(c["machines"]):
        p50, p99 = many["apply_ms"][k]
        print(f"  {m['name']} {m['ip']}: {m['routers']} routers, apply p50 {p50:.2f} ms p99 {p99:.2f} ms, "
              f"{many['bytes_per_tick'][k] / 1024:.1f} KiB sent per tick")
    print(f"  substrate one-way (ms): {c['substrate_one_way_ms']}; links below it: {c['below_substrate_links']}")
    return 0


def _ray_version() -> str:
    try:
        import ray

        return ray.__version__
    except ImportError:
        return "missing"


if __name__ == "__main__":
    sys.exit(main())
