#!/usr/bin/env python3
"""A BGP prefix hijack by a rogue ground station, with and without the defences lasernet can configure.

`hijack` (topologies/hijack.yaml) runs live with FRR's bgpd on every router: two operators, beta's server `web`
on sat-5-0 (LAN 10.64.0.0/24, web at 10.64.0.2) and a stub station `rogue`. Once BGP has converged, every other
ground station sends UDP probes to web (``udp_probe.py``, 20 Hz each) and a listener on web and one on the rogue
record what reaches them; the rogue takes web's address as its own. At ``--attack-at-s`` the program has the
rogue's bgpd announce both halves of beta's /24, 10.64.0.0/25 and 10.64.0.128/25 (more specific, so preferred by
every router that takes them, and together every address of the LAN), and withdraws them ``--attack-s`` later.
Two prefixes rather than one because FRR 8.4 checks a session's maximum-prefix limit before it counts the prefix
being received: one prefix over the limit is accepted, the next tears the session down (measured here: the
rogue's session carried 2 prefixes against a limit of 1 until a third came). Throughout, every router's kernel FIB is read every ``--sample-s``
(:mod:`lasernet.measure.hijack`) and walked from every router towards web: delivered (web's LAN), diverted (the
rogue) or lost.

Variants (``--variants``): ``none`` (the scenario as shipped), ``filters`` (``routing.prefix_filters: true``:
each session takes from the rogue only its own loopback), ``max-prefixes`` (``routing.max_prefixes: auto``: a
session whose peer sends more prefixes than the plan gives it is torn down) and ``both``. Each runs in its own
emulation and run directory (``<run dir>/<variant>``) and writes there ``hijack.csv`` (``t_s,source,end`` per
sample and router) and ``hijack.json``; ``<run dir>/hijack.json`` collects them: per variant the share of
source-destination pairs (router -> web) diverted during the attack (at worst and on average), each pair's time
diverted, the probes each station sent during the attack, those that reached web and those that reached the
rogue, the state of the rogue's BGP sessions at the end of the attack, the daemons that exited during the
run (``daemons_exited``), and after the withdrawal the most pairs
lost at one sample and how long until every pair was delivered again.

Usage (as root): .venv/bin/python scripts/experiments/hijack.py [--variants none both] [--attack-at-s 5]
    [--attack-s 15] [--after-s 10] [--run-dir DIR] [--links auto]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import ipaddress
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import lasernet  # noqa: E402
from lasernet.measure import hijack as judge  # noqa: E402
from lasernet.spec.routing import MaxPrefixes  # noqa: E402

PORT = 7900
ROGUE, VICTIM = "rogue", "web"
VARIANTS = {"none": {}, "filters": {"prefix_filters": True},
            "max-prefixes": {"max_prefixes": MaxPrefixes(auto=True)},
            "both": {"prefix_filters": True, "max_prefixes": MaxPrefixes(auto=True)}}
PROBE = str(REPO / "scripts" / "experiments" / "udp_probe.py")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", nargs="+", default=["none", "both"], choices=list(VARIANTS))
    ap.add_argument("--attack-at-s", type=float, default=5.0, help="seconds after convergence")
    ap.add_argument("--attack-s", type=float, default=15.0)
    ap.add_argument("--after-s", type=float, default=10.0)
    ap.add_argument("--sample-s", type=float, default=0.5)
    ap.add_argument("--rate-hz", type=float, default=20.0)
    ap.add_argument("--links", default="auto")
    ap.add_argument("--run-dir", default=None)
    ap.add_argument("--no-report", dest="report", action="store_false", help="no report.html per variant")
    args = ap.parse_args(argv)
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="lasernet-hijack-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    base = lasernet.load_scenario(REPO / "topologies" / "hijack.yaml")
    results = {}
    for variant in args.variants:
        scenario = dataclasses.replace(base, routing=dataclasses.replace(base.routing, **VARIANTS[variant]))
        results[variant] = run_variant(scenario, variant, run_dir / variant, args)
        print_variant(variant, results[variant])
    (run_dir / "hijack.json").write_text(json.dumps(results, indent=1))
    print(f"files in {run_dir}")
    return 0


def run_variant(scenario, variant: str, run_dir: Path, args) -> dict:
    procs: list[subprocess.Popen] = []
    with lasernet.Emulation(scenario, run_dir=run_dir, links=args.links) as emu:
        converged_s = emu.run_until_converged(60)
        names = list(emu.node_names)
        web = emu.node(VICTIM)
        owner, rogue = emu.router_index(VICTIM), names.index(ROGUE)
        halves = [str(h) for h in ipaddress.ip_network(web.lan).subnets(1)]  # both /25s: all of the /24
        emu.nodes[ROGUE].cmd(f"ip addr add {web.IP()}/32 dev lo")  # the rogue takes web's address as its own
        work = run_dir / "hijack"
        work.mkdir(exist_ok=True)
        for name in (VICTIM, ROGUE):
            procs.append(emu.node(name).popen([sys.executable, PROBE, "listen", "--port", str(PORT),
                                                "--out", str(work / f"{name}.csv")],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        senders = [n for n in names[emu.n_satellites:] if n != ROGUE]
        for name in senders:
            procs.append(emu.nodes[name].popen([sys.executable, PROBE, "send", "--bind", emu.nodes[name].IP(),
                                                "--to", web.IP(), "--port", str(PORT), "--rate-hz",
                                                str(args.rate_hz), "--name", name,
                                                "--log", str(work / f"{name}.sender.json")],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        sources = [i for i in range(len(names)) if i != rogue]
        fibs = judge.AddressFibs([emu.nodes[n].pid for n in names],
                                 lambda slot: (emu.applied.links[slot].a, emu.applied.links[slot].b)).open()
        start_s = emu.now_s() + args.attack_at_s
        stop_s, end_s = start_s + args.attack_s, start_s + args.attack_s + args.after_s
        asn = emu.daemons.bgp.asn(ROGUE)
        times, ends, sessions, announced, withdrawn = [], [], None, None, None
        try:
            while emu.now_s() < end_s:
                now = emu.now_s()
                if announced is None and now >= start_s:
                    emu.daemons.shell(ROGUE, "configure terminal", f"router bgp {asn}",
                                      "address-family ipv4 unicast", *[f"network {h}" for h in halves])
                    announced = emu.now_s()
                if withdrawn is None and now >= stop_s:
                    sessions = _sessions(emu)
                    emu.daemons.shell(ROGUE, "configure terminal", f"router bgp {asn}",
                                      "address-family ipv4 unicast", *[f"no network {h}" for h in halves])
                    withdrawn = emu.now_s()
                times.append(emu.now_s())
                ends.append(judge.walk(fibs.read(web.IP()), sources, owner, rogue))
                emu.run(args.sample_s)
        finally:
            fibs.close()
            for proc in procs:  # ours: stopped by their Popen, before the nodes go
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=5)
        mono_to_s = emu.clock.mono_to_s
        exited = emu.daemons.report_exits()  # a daemon that died during the run is said, not hidden
    with (run_dir / "hijack.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "source", "end"])
        for t, row in zip(times, ends):
            for i, end in zip(sources, row):
                w.writerow([f"{t:.3f}", names[i], end])
    out = judge.summary(times, ends, [names[i] for i in sources], announced, withdrawn)
    out.update(variant=variant, routing={k: str(v) for k, v in VARIANTS[variant].items()},
               initial_convergence_s=converged_s, prefixes=halves, victim=f"{VICTIM} {web.IP()} on {names[owner]}",
               attack_start_s=announced, attack_stop_s=withdrawn, rogue_sessions=sessions, daemons_exited=exited,
               probes=_probes(work, senders, mono_to_s, announced, withdrawn, args.rate_hz), run_dir=str(run_dir))
    (run_dir / "hijack.json").write_text(json.dumps(out, indent=1))
    if args.report:
        from lasernet.measure.report import build_report

        build_report(run_dir)
    return out


def _sessions(emu) -> dict:
    """The rogue's BGP sessions as its bgpd says: peer -> state (``Established``, ``Idle (PfxCt)``, ...)."""
    try:
        data = json.loads(emu.daemons.shell(ROGUE, "show bgp ipv4 unicast summary json"))
    except ValueError:
        return {}
    return {p.get("hostname") or ip: p.get("state", "?") for ip, p in data.get("peers", {}).items()}


def _probes(work: Path, senders, mono_to_s, start_s: float, stop_s: float, rate_hz: float) -> dict:
    """Per sending station: probes sent during the attack (by their send stamps), and those of them that reached
    web and the rogue."""
    out = {s: {"sent": 0, "at_victim": 0, "at_rogue": 0} for s in senders}
    for where in (VICTIM, ROGUE):
        try:
            with (work / f"{where}.csv").open() as f:
                rows = list(csv.DictReader(f))
        except FileNotFoundError:
            rows = []
        for r in rows:
            t = float(mono_to_s([int(r["sent_ns"])])[0])
            if r["name"] in out and start_s <= t < stop_s:
                out[r["name"]]["at_victim" if where == VICTIM else "at_rogue"] += 1
    for s in senders:  # probe k left at start_ns + k / rate_hz: those stamped inside the attack
        try:
            log = json.loads((work / f"{s}.sender.json").read_text())
        except (FileNotFoundError, ValueError):
            continue
        t0 = float(mono_to_s([log["start_ns"]])[0])
        first = max(0, math.ceil((start_s - t0) * log["rate_hz"]))
        last = math.ceil((stop_s - t0) * log["rate_hz"])  # exclusive
        out[s]["sent"] = max(0, last - first)
    return out


def print_variant(variant: str, r: dict) -> None:
    probes = r["probes"]
    print(f"\n{variant}: {' and '.join(r['prefixes'])} announced by the rogue from {r['attack_start_s']:.1f} to "
          f"{r['attack_stop_s']:.1f} s; pairs (router -> {r['victim']}) diverted: at worst "
          f"{r['share_diverted_max']:.0%}, on average {r['share_diverted_mean']:.0%} ({r['pairs_ever_diverted']} of "
          f"{r['pairs']} ever); probes during the attack: "
          + ", ".join(f"{s} {p['sent']} sent / {p['at_victim']} at web / {p['at_rogue']} at the rogue"
                      for s, p in probes.items())
          + f"; rogue's sessions at the end of the attack: {r['rogue_sessions']}; after the withdrawal at most "
          f"{r['pairs_lost_after_stop_max']} pairs lost, all delivered again after {r['all_delivered_again_s']} s")


if __name__ == "__main__":
    sys.exit(main())
