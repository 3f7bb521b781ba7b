#!/usr/bin/env python3
"""Oracle vs OSPF vs IS-IS vs Babel on the same orbit: convergence, loss during link changes, control traffic.

For each routing (the oracle, then each daemon protocol; ``bgp`` splits the planes between two operators) the script emulates the same scenario window with the
same probe pairs, waits for the initial convergence, then lets the orbit drive the links (ISLs cut at the
range/polar limits, ground handovers) for ``--duration`` wall seconds at ``--speed``. The FIB watcher
(:mod:`lasernet.routing.convergence`) measures every change; the oracle is measured the same way (its routes are
installed by the driver within the tick that applies the change). Outputs, in ``--out``:

- ``routing_protocols.json``: per routing, for the changes with a link going down, the distribution of the time
  until every connected pair is delivered again (``reachable_again_s``: what decides loss) and until the FIBs
  stopped changing (``convergence_s``; for the oracle this includes its tick-by-tick re-optimisation as delays
  drift), both in the daemons' own time (wall seconds: emulated seconds / speed); probes lost in change
  windows; path stretch; and the control-plane traffic;
- ``routing_protocols.png``: convergence CDFs and a bar chart of loss and control traffic.

Control-plane traffic is the bytes sent on all link interfaces after the initial convergence minus what the
oracle run sent in the same time with the same probes (the oracle sends no control packets). It is approximate
by the probes' path-length differences (paths of hop-count metrics are a few percent shorter in hops than the
oracle's shortest-delay paths), about +-5% of the probes' own link bytes (printed as ``probe_bytes_per_s``).

At ``--speed`` S the orbit runs S times faster than the daemons' timers: link changes come S times more often
than in orbit; convergence times are reported in the daemons' time. Needs root.

    sudo .venv/bin/python scripts/bench/routing_protocols.py --speed 4 --duration 240
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

import lasernet
from lasernet.spec.routing import RoutingConfig
from lasernet.spec.scenario import ProbePair

RUNS = {"oracle": ("oracle", ""), "ospf": ("ospf", "frr"), "isis": ("isis", "frr"), "babel": ("babel", "bird"),
        "ospf-bird": ("ospf", "bird"), "bgp": ("bgp", "frr")}


def link_bytes(emu) -> tuple[int, int]:
    """Bytes and packets sent on every router's link interfaces (not lo, not server LANs), from /proc/net/dev."""
    lans = {f"{h.name}" for h in emu.scenario.hosts}
    total_b = total_p = 0
    for name in emu.node_names:
        for line in emu.nodes[name].cmd("cat /proc/net/dev").splitlines()[2:]:
            if ":" not in line:
                continue
            ifname, rest = line.split(":", 1)
            ifname = ifname.strip()
            if ifname == "lo" or ifname in lans:
                continue
            fields = rest.split()
            total_b += int(fields[8])
            total_p += int(fields[9])
    return total_b, total_p


def run_one(label: str, scenario, args, out: Path) -> dict:
    protocol, daemon = RUNS[label]
    if protocol == "oracle":
        cfg = RoutingConfig()
    elif protocol == "bgp":  # two operators, the first and the second half of the first shell's planes
        from lasernet.spec.routing import Operator

        half = scenario.constellation.shells[0].planes // 2
        cfg = RoutingConfig(protocol="bgp", daemon="frr", hello_s=1, dead_s=3,
                            operators=(Operator("alpha", 64500, (0, half - 1)), Operator("beta", 64501, (half, 999))))
    else:
        cfg = RoutingConfig(protocol=protocol, daemon=daemon)
    sc = dataclasses.replace(scenario, routing=cfg)
    run_dir = out / label
    emu = lasernet.Emulation(sc, speed=args.speed, duration_s=args.duration + 200, run_dir=run_dir)
    with emu:
        if protocol == "oracle":  # the same measurement, on the routes the driver installs
            emu.fib_watch = emu.fib_watcher()
            emu.fib_watch.start()
            emu.run(2.0)
            initial = 0.0
        else:
            initial = emu.run_until_converged(args.converge_timeout)
            if initial is None:
                print(f"{label}: did not converge within {args.converge_timeout} s", file=sys.stderr)
        b0, p0 = link_bytes(emu)
        t0 = time.monotonic()
        t0_s = emu.now_s()
        emu.run(args.duration)
        b1, p1 = link_bytes(emu)
        wall = time.monotonic() - t0
    rows = [r for r in emu.fib_watch.changes(emu.fib_watch.end_s) if r["t_s"] >= t0_s]
    lost_at = _probes(run_dir / "probes.csv")
    downs = [r for r in rows if r["downs"]]
    conv = np.array([r["convergence_s"] for r in downs]) / args.speed
    reach = np.array([r["reachable_again_s"] for r in downs]) / args.speed
    lost = sent = 0
    for r in rows:
        sel = (lost_at[0] >= r["t_s"]) & (lost_at[0] < r["t_s"] + r["window_s"])
        sent += int(sel.sum())
        lost += int(lost_at[1][sel].sum())
    after = lost_at[0] >= t0_s
    return {"label": label, "protocol": protocol, "daemon": daemon,
            "initial_convergence_s": None if initial is None else initial / args.speed,
            "changes": len(rows), "changes_with_down": len(downs),
            "unconverged_down_changes": int(np.isnan(conv).sum()),
            "down_convergence_s": [None if math.isnan(x) else float(x) for x in conv],
            "down_reachable_again_s": [None if math.isnan(x) else float(x) for x in reach],
            "probes_sent": int(after.sum()), "probes_lost": int(lost_at[1][after].sum()),
            "probes_lost_in_changes": lost, "probes_sent_in_changes": sent,
            "stretch_median": emu.fib_watch.result.get("stretch_median"),
            "ground_stretch_median": emu.fib_watch.result.get("ground_stretch_median"),
            "link_bytes_per_s": (b1 - b0) / wall, "link_packets_per_s": (p1 - p0) / wall}


def _probes(path: Path):
    import csv

    t, lost = [], []
    with path.open() as f:
        for row in csv.DictReader(f):
            t.append(float(row["t_s"]))
            lost.append(not row["measured_rtt_ms"])
    return np.array(t), np.array(lost, bool)


def plot(results: list[dict], path: Path, speed: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in results:
        v = np.sort([x for x in r["down_reachable_again_s"] if x is not None])
        if len(v):
            ax1.step(np.concatenate([[0], v]), np.linspace(0, 1, len(v) + 1), where="post",
                     label=f"{r['label']} (n={len(v)}, median {np.median(v):.2f} s)")
    ax1.set_xscale("symlog", linthresh=0.01)
    ax1.set_xlabel("s until every connected pair is delivered again (daemon time)")
    ax1.set_title(f"after a link goes down: mini at {speed:g}x")
    ax1.set_ylabel("share of changes")
    ax1.legend(fontsize=8)
    labels = [r["label"] for r in results]
    x = np.arange(len(labels))
    loss = [100 * r["probes_lost_in_changes"] / max(1, r["probes_sent_in_changes"]) for r in results]
    ctrl = [r.get("control_bytes_per_s", 0) / 1e3 for r in results]
    ax2.bar(x - 0.2, loss, 0.4, label="probes lost in change windows (%)", color="tab:red")
    ax2b = ax2.twinx()
    ax2b.bar(x + 0.2, ctrl, 0.4, label="control traffic (kB/s, all links)", color="tab:blue")
    ax2.set_xticks(x, labels)
    ax2.set_ylabel("loss (%)", color="tab:red")
    ax2b.set_ylabel("control plane (kB/s)", color="tab:blue")
    ax2.set_title("loss during changes and control traffic")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="mini")
    ap.add_argument("--speed", type=float, default=4.0)
    ap.add_argument("--duration", type=float, default=240.0, help="wall seconds per routing after convergence")
    ap.add_argument("--runs", default="oracle,ospf,isis,babel", help=f"comma-separated, of {', '.join(RUNS)}")
    ap.add_argument("--probe-rate", type=float, default=50.0)
    ap.add_argument("--pairs", help="probe pairs A>B,C>D instead of the scenario's own (e.g. for walker-240)")
    ap.add_argument("--converge-timeout", type=float, default=180.0)
    ap.add_argument("--out", default="runs/bench-routing")
    args = ap.parse_args()
    from lasernet import resolve_scenario

    scenario = lasernet.load_scenario(resolve_scenario(args.scenario))
    if args.pairs:  # the scenario's own pairs were validated when it was loaded
        pairs = [tuple(pair.split(">", 1)) for pair in args.pairs.split(",")]
        names = {g.name for g in scenario.ground} | {h.name for h in scenario.hosts}
        bad = [">".join(p) for p in pairs if len(p) != 2 or not set(p) <= names]
        if bad:
            print(f"--pairs: {bad[0]!r} is not FROM>TO between ground stations or hosts of {args.scenario}",
                  file=sys.stderr)
            sys.exit(2)
    else:
        pairs = [(p.src, p.dst) for p in scenario.probes]
    scenario = dataclasses.replace(scenario, probes=tuple(ProbePair(a, b, args.probe_rate) for a, b in pairs))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for label in args.runs.split(","):
        print(f"--- {label}", flush=True)
        r = run_one(label, scenario, args, out)
        results.append(r)
        print(json.dumps({k: v for k, v in r.items() if not isinstance(v, list)}), flush=True)
    base = next((r for r in results if r["label"] == "oracle"), None)
    for r in results:
        if base is not None:
            r["control_bytes_per_s"] = max(0.0, r["link_bytes_per_s"] - base["link_bytes_per_s"])
            r["probe_bytes_per_s"] = base["link_bytes_per_s"]
    (out / "routing_protocols.json").write_text(json.dumps(results, indent=1))
    plot(results, out / "routing_protocols.png", args.speed)
    print(f"\n{'routing':10} {'downs':>5} {'reach p50':>9} {'p95':>7} {'max':>7} {'settled p50':>11} {'unconv':>6} "
          f"{'lost/changes':>13} {'stretch':>8} {'ctrl kB/s':>9}")
    for r in results:
        v = np.array([x for x in r["down_reachable_again_s"] if x is not None])
        c = np.array([x for x in r["down_convergence_s"] if x is not None])
        q = (lambda p: f"{np.percentile(v, p):.3f}") if len(v) else (lambda p: "-")
        print(f"{r['label']:10} {r['changes_with_down']:5d} {q(50):>9} {q(95):>7} {q(100):>7} "
              f"{(f'{np.median(c):.3f}' if len(c) else '-'):>11} "
              f"{r['unconverged_down_changes']:6d} {r['probes_lost_in_changes']:6d}/{r['probes_sent_in_changes']:<6d} "
              f"{(r['ground_stretch_median'] or float('nan')):8.4f} {r.get('control_bytes_per_s', 0) / 1e3:9.2f}")
    print(f"results: {out / 'routing_protocols.json'}, plot: {out / 'routing_protocols.png'}")


if __name__ == "__main__":
    main()
