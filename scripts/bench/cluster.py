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

3. **FRR OSPF per router** (``mini`` with ``routing: ospf`` on one machine, after convergence): the proportional
   set size of every routing daemon process (zebra, ospfd, ...) per router and their CPU time per router per
   second over ``--frr-seconds`` of orbit-driven link changes; with the per-router memory of the emulation
   itself (README: 1.49 MiB a node at starlink-phase1 size), the number of 16-core / 64 GB machines
   ``starlink-phase1`` (4,508 routers) with OSPF on every router needs, bound by memory and by CPU (at half of
   each machine's cores, leaving the rest to the kernel's forwarding and the relays).
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


FRR_CHILD = r'''
import dataclasses, json, os, sys, time
sys.path.insert(0, {bench!r})
import lasernet
from lasernet.spec.routing import RoutingConfig
from emulation import pss_kib, cut_down
args = json.loads(sys.argv[1])
sc = lasernet.load_scenario(args["scenario"])
if args["cut"]:
    sc = cut_down(sc, *args["cut"])
sc = dataclasses.replace(sc, probes=(), routing=RoutingConfig(protocol="ospf", daemon="frr"))
tick = os.sysconf("SC_CLK_TCK")
def cpu_s(pid):
    try:
        f = open(f"/proc/{{pid}}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / tick
    except OSError:
        return 0.0
with lasernet.Emulation(sc, run_dir=args["run_dir"], links="delayline") as emu:
    took = emu.run_until_converged(120)
    pids = [p["pid"] for p in emu.state.data["routing"]["processes"]]
    c0, t0 = sum(cpu_s(p) for p in pids), time.monotonic()
    emu.run(args["seconds"])
    c1, t1 = sum(cpu_s(p) for p in pids), time.monotonic()
    n = len(emu.node_names)
    print(json.dumps({{"routers": n, "converged_s": took, "daemons": len(pids),
                      "pss_mib_per_router": sum(pss_kib(p) for p in pids) / 1024 / n,
                      "cpu_per_router": (c1 - c0) / (t1 - t0) / n}}))
'''


def measure_frr(args, scenario: str, cut=None) -> dict:
    run_dir = tempfile.mkdtemp(prefix="lasernet-bench-frr-")
    script = Path(run_dir) / "frr.py"
    script.write_text(FRR_CHILD.format(bench=str(Path(__file__).resolve().parent)))
    proc = subprocess.run([sys.executable, str(script), json.dumps({"run_dir": run_dir + "/run", "cut": cut,
                                                                      "scenario": scenario,
                                                                      "seconds": args.frr_seconds})],
                          cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"FRR child failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    from lasernet.emulation.cluster.sandbox import NamespaceCluster

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default=str(ROOT / "topologies" / "starlink-shell1.yaml"))
    ap.add_argument("--seconds", type=float, default=60.0, help="wall seconds of ticks per run (default 60)")
    ap.add_argument("--machines", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--frr-seconds", type=float, default=60.0, help="wall seconds of FRR OSPF measured (0: skip)")
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
    if args.frr_seconds > 0:
        # Two sizes: an OSPF router holds the whole network's LSDB and routes, so its cost grows with the
        # network; a straight line through mini and a cut-down shell1 is extrapolated to phase1.
        sizes = [measure_frr(args, str(ROOT / "topologies" / "mini.yaml")),
                 measure_frr(args, str(ROOT / "topologies" / "starlink-shell1.yaml"), cut=[6, 20])]
        for frr in sizes:
            print(f"  FRR OSPF, {frr['routers']} routers ({frr['daemons']} daemon processes, converged in "
                  f"{frr['converged_s']:.1f} s): {frr['pss_mib_per_router']:.2f} MiB PSS and "
                  f"{frr['cpu_per_router'] * 100:.2f}% of a core per router over {args.frr_seconds:g} s of orbit")
        (n0, m0, c0), (n1, m1, c1) = ((f["routers"], f["pss_mib_per_router"], f["cpu_per_router"]) for f in sizes)
        routers, cores, mem_gib, node_mib = 4508, 16, 64, 1.49  # node_mib: README, the emulation's own per node
        mem = m0 + (m1 - m0) / (n1 - n0) * (routers - n0)
        cpu = max(c0, c1) if c1 <= c0 else c0 + (c1 - c0) / (n1 - n0) * (routers - n0)
        per_router_mib = node_mib + max(mem, m1)
        by_mem = routers * per_router_mib / 1024 / (0.8 * mem_gib)
        by_cpu = routers * cpu / (0.5 * cores)
        print(f"  starlink-phase1 with OSPF (extrapolated to {routers} routers): {per_router_mib:.2f} MiB a router "
              f"({routers * per_router_mib / 1024:.1f} GiB: {by_mem:.2f} machines of {mem_gib} GB at 80%), "
              f"{cpu * 100:.2f}% of a core a router ({routers * cpu:.1f} cores: {by_cpu:.2f} machines of {cores} "
              f"cores at 50%): {max(1, int(-(-max(by_mem, by_cpu) // 1)))} machine(s), bound by "
              f"{'memory' if by_mem >= by_cpu else 'CPU'}")
    return 0


def _ray_version() -> str:
    try:
        import ray

        return ray.__version__
    except ImportError:
        return "missing"


if __name__ == "__main__":
    sys.exit(main())
