#!/usr/bin/env python3
"""A jamming attack on the ground segment, and how the routing daemons react to it.

An adversary's ground site (``jamming:``, :mod:`lasernet.spec.faults`) dazzles the optical ground terminals of
every satellite in its view from ``--start-s`` to ``--stop-s``. This runs `mini` (three stations, 64 satellites)
live with a real routing daemon on every router (default OSPF in FRR) and the jammer on a station's own site
(default dublin, mask 20 degrees: above the station's 10 degrees, so the station keeps the low satellites the
jammer cannot see), and reports:

* what the plan blinds: the ground links taken down with cause ``jamming``, when, and what the stations hand
  over to;
* what the run applied (``events.csv``): the same links down at the planned instants, within a tick;
* the routing's reaction (``convergence.csv``): for each change the attack made, how long until every connected
  pair was delivered again (``reachable_again_s``) and until the FIBs settled;
* what the traffic saw: the scenario's UDP probes lost while the attack was on, per pair.

The figures go to ``jamming.json`` in the run directory (with the run's own files) and to stdout.

Usage (as root): .venv/bin/python scripts/experiments/jamming.py [--protocol ospf] [--daemon frr]
    [--site dublin] [--start-s 10] [--stop-s 40] [--run-dir DIR]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import lasernet  # noqa: E402
from lasernet import timeline  # noqa: E402
from lasernet.spec.faults import Jammer  # noqa: E402
from lasernet.spec.routing import RoutingConfig  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--protocol", default="ospf", choices=("ospf", "isis", "babel"))
    ap.add_argument("--daemon", default="frr", choices=("frr", "bird"))
    ap.add_argument("--site", default="dublin", help="the station whose site the adversary stands on")
    ap.add_argument("--min-elevation-deg", type=float, default=20.0)
    ap.add_argument("--start-s", type=float, default=10.0)
    ap.add_argument("--stop-s", type=float, default=40.0)
    ap.add_argument("--after-s", type=float, default=15.0, help="run this long past the attack's end")
    ap.add_argument("--run-dir", default=None)
    args = ap.parse_args(argv)
    base = lasernet.load_scenario(REPO / "topologies" / "mini.yaml")
    site = next((g for g in base.ground if g.name == args.site), None)
    if site is None:
        print(f"--site: no station {args.site!r} in mini; stations are "
              f"{', '.join(g.name for g in base.ground)}", file=sys.stderr)
        return 2
    jammer = Jammer("adversary", site.lat_deg, site.lon_deg, 0.0, args.min_elevation_deg, args.start_s, args.stop_s)
    scenario = dataclasses.replace(base, jamming=(jammer,),
                                   routing=RoutingConfig(protocol=args.protocol, daemon=args.daemon))
    duration_s = args.stop_s + args.after_s
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="lasernet-jamming-"))
    planned = _planned(lasernet.plan(scenario, duration_s=duration_s))
    with lasernet.Emulation(scenario, run_dir=run_dir, duration_s=duration_s) as emu:
        converged_s = emu.run_until_converged(120)
        emu.run(max(0.0, duration_s - emu.now_s()))
    applied = [r for r in _rows(run_dir / "events.csv") if r.get("cause") == "jamming"]
    changes = [r for r in _rows(run_dir / "convergence.csv")
               if args.start_s - 0.5 <= float(r["t_s"]) <= args.stop_s + 0.5]
    lost = _lost_during(run_dir / "probes.csv", args.start_s, args.stop_s + args.after_s)
    out = {"jammer": dataclasses.asdict(jammer), "protocol": args.protocol, "daemon": args.daemon,
           "initial_convergence_s": converged_s, "planned": planned,
           "applied": [{"t_s": float(r["t_s"]), "link": r["what"]} for r in applied],
           "changes": [{k: r[k] for k in ("t_s", "links", "reachable_again_s", "settled_s", "converged",
                                          "max_broken_pairs", "probes_lost")} for r in changes],
           "probes_lost_after_attack_start": lost, "run_dir": str(run_dir)}
    (run_dir / "jamming.json").write_text(json.dumps(out, indent=1))
    print(f"jammer on {args.site}'s site above {args.min_elevation_deg:g} deg, {args.start_s:g}-{args.stop_s:g} s, "
          f"{args.protocol} ({args.daemon}); initial convergence {converged_s} s")
    for p in planned:
        print(f"  planned: {p['t_s']:6.1f} s {p['link']} down (jamming)")
    for a in out["applied"]:
        print(f"  applied: {a['t_s']:6.1f} s {a['link']}")
    for c in out["changes"]:
        print(f"  change at {float(c['t_s']):6.1f} s ({c['links']}): reachable again after "
              f"{c['reachable_again_s']} s, settled {c['settled_s']} s, converged {c['converged']}, "
              f"{c['probes_lost']} probes lost")
    print(f"  probes lost from the attack's start on: {lost}; files in {run_dir}")
    return 0


def _planned(tl) -> list[dict]:
    """The ground links the plan takes down with cause jamming: when and which."""
    ev = tl.events()
    names = tl.node_names
    jam = (ev["cause"] == timeline.JAMMING) & ~ev["up"]
    return [{"t_s": float(tl.offsets_s[s]), "link": f"{names[tl.links.a[li]]}~{names[tl.links.b[li]]}"}
            for s, li in zip(ev["step"][jam], ev["link"][jam])]


def _rows(path: Path) -> list[dict]:
    try:
        with path.open() as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        return []


def _lost_during(path: Path, start_s: float, stop_s: float) -> dict:
    lost: dict[str, int] = {}
    for r in _rows(path):
        t = float(r["t_s"])
        if start_s <= t < stop_s:
            lost[r["pair"]] = lost.get(r["pair"], 0) + (0 if r["measured_rtt_ms"] else 1)
    return lost


if __name__ == "__main__":
    sys.exit(main())
