#!/usr/bin/env python3
"""Benchmark a whole emulation at constellation scale: bring-up, teardown, tick cost and memory per node.

Run as root from the repository (``.venv/bin/python scripts/bench/emulation.py``); it prints numbers and
asserts nothing. In one run, on the same scenario (default ``starlink-shell1``: 1,584 satellites, 100 cities):

1. **lasernet bring-up and teardown**: ``lasernet.Emulation(scenario).start()`` (planning the first window
   included, reported separately) and ``stop()``; memory is measured while it is up (see 3).
2. **plain Mininet on the same graph**: one host per node, one ``mininet.link.Link`` (veth pair) per link that
   the plan ever has up in its first window, ``Mininet(topo=..., link=Link, controller=None)`` with no switch;
   ``net.start()`` after ``build`` and ``net.stop()`` timed. At full shell1 size this takes ~2 minutes, so by
   default it runs on the first ``--plain-fraction`` of the nodes (and the links among them) and the time is
   scaled linearly to the full size (Mininet's cost is per host and per link; the scaled figure is marked).
   ``--plain-fraction 1`` runs it in full.
3. **ticks**: lasernet ticks for ``--seconds`` of wall time at speed 1 and ``--tick`` s; prints tick cost
   p50/p99/max, overruns, ticks done vs expected (drift) and how late routes were (``routing='background'``:
   lag from the link states used to the install); memory per node: the sum of the proportional set size (PSS,
   shared pages split between sharers) of every node shell, the relays and the driver, divided by the number of
   nodes; the ``/proc/meminfo`` MemAvailable drop from before start() to after it (includes kernel memory:
   namespaces, TAPs, routes); and that drop per phase of start() (``Emulation.start_memory_kib``); the kernel
   route writes the ticks made (netlink messages of the host's route items, plus the nexthop objects the host
   keeps over links going down and up; counted by wrapping ``host.install_routes``, so the same on older code).

``--quick``: a cut-down shell (``--planes`` x 22 satellites, 20 cities) and 10 s of ticks.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import gc  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import lasernet  # noqa: E402
from lasernet.emulation.coordinator import Emulation, mem_available_kib  # noqa: E402


def pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cut_down(scenario, planes: int, cities: int):
    shell = scenario.constellation.shells[0]
    shells = (dataclasses.replace(shell, planes=planes),)
    return dataclasses.replace(scenario, name=f"cut-{planes}p",
                               constellation=dataclasses.replace(scenario.constellation, shells=shells),
                               ground=scenario.ground[:cities], probes=())


def fewer_stations(scenario, keep: int):
    """The scenario with only its first ``keep`` ground stations (and the probe pairs among them)."""
    ground = scenario.ground[:keep]
    names = {g.name for g in ground}
    probes = tuple(p for p in scenario.probes if p.src in names and p.dst in names)
    return dataclasses.replace(scenario, name=f"{scenario.name}-{keep}gs", ground=ground, probes=probes)


def plain_mininet(n_nodes: int, pairs: list[tuple[int, int]]) -> tuple[float, float]:
    """Build, start and stop a plain Mininet of ``n_nodes`` hosts and ``pairs`` links; return (up_s, down_s)."""
    from mininet.link import Link
    from mininet.net import Mininet
    from mininet.topo import Topo

    class Graph(Topo):
        def build(self):
            for i in range(n_nodes):
                self.addHost(f"h{i}", ip=None)
            for a, b in pairs:
                self.addLink(f"h{a}", f"h{b}")

    topo = Graph()
    t0 = time.monotonic()
    net = Mininet(topo=topo, link=Link, controller=None, build=False, autoSetMacs=False)
    try:
        net.build()
        net.start()
        up = time.monotonic() - t0
    finally:
        t1 = time.monotonic()
        net.stop()
        down = time.monotonic() - t1
    return up, down


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", default="starlink-shell1")
    parser.add_argument("--quick", action="store_true", help="a cut-down shell and 10 s of ticks")
    parser.add_argument("--planes", type=int, default=12, help="planes kept with --quick")
    parser.add_argument("--seconds", type=float, default=None, help="wall seconds of ticks (default 60; quick 10)")
    parser.add_argument("--stations", type=int, default=None,
                        help="keep only the scenario's first N ground stations (fewer ground links)")
    parser.add_argument("--tick", type=float, default=0.1)
    parser.add_argument("--routing", default="auto", choices=("auto", "tick", "background"),
                        help="Emulation(routing=...): oracle in the tick or in a background process")
    parser.add_argument("--plain-fraction", type=float, default=0.25,
                        help="fraction of nodes for plain Mininet (scaled up); 0 skips it, 1 runs it in full")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (creates namespaces)", file=sys.stderr)
        return 2
    import logging

    logging.getLogger("lasernet").setLevel(logging.ERROR)
    path = Path(args.scenario)
    if not path.exists():
        path = Path(__file__).resolve().parents[2] / "topologies" / f"{args.scenario}.yaml"
    scenario = lasernet.load_scenario(path)
    if args.quick:
        scenario = cut_down(scenario, args.planes, 20)
    if args.stations is not None:
        if args.stations < 0:
            print(f"--stations: must be 0 or more, got {args.stations}", file=sys.stderr)
            return 2
        scenario = fewer_stations(scenario, args.stations)
    seconds = args.seconds if args.seconds is not None else (10.0 if args.quick else 60.0)
    kwargs = {"routing": args.routing}
    run_dir = Path(tempfile.mkdtemp(prefix="lasernet-bench-"))

    print(f"scenario {scenario.name}; ticks {seconds:.0f} s at {args.tick} s")
    emu = Emulation(scenario, links="delayline", speed=1.0, tick_s=args.tick, duration_s=seconds,
                    run_dir=run_dir, **kwargs)
    avail0 = mem_available_kib()
    t0 = time.monotonic()
    t_plan = t_up = None
    try:
        emu.start()
        t_up = time.monotonic() - t0
        t_plan = emu.start_timings.get("plan", float("nan"))
        n = len(emu.nodes)
        n_links = len(emu.applied)
        print(f"lasernet up:   {t_up:6.2f} s for {n} routers, {n_links} links (plan {t_plan:.2f} s of it)")
        for what, secs in emu.start_timings.items():
            mib = emu.start_memory_kib.get(what, 0) / 1024
            print(f"    {what:<16} {secs:6.2f} s  {mib:7.0f} MiB ({mib / n:.2f} MiB/node)")
        if emu.route_prefixes is not None:
            print(f"    first routes as {emu.route_prefixes} aggregated prefixes for {n * (n - 1)} node pairs")
        pairs = [(a, b) for (a, b) in emu.applied.by_pair]
        gc.collect()
        time.sleep(1.0)
        avail1 = mem_available_kib()
        pids = [node.pid for node in emu.nodes.values()] + [node.pid for node in emu.servers.values()]
        relay_pids = [r.pid for r in emu.backend.relays]
        shells_pss = sum(pss_kib(p) for p in pids)
        shells_rss = sum(rss_kib(p) for p in pids)
        relay, driver = sum(pss_kib(p) for p in relay_pids), pss_kib(os.getpid())
        total = shells_pss + relay + driver
        print(f"memory: shells PSS {shells_pss / 1024:.0f} MiB (RSS {shells_rss / 1024:.0f} MiB), "
              f"{len(relay_pids)} relay{'s' if len(relay_pids) > 1 else ''} "
              f"{relay / 1024:.0f} MiB, driver {driver / 1024:.0f} MiB; per node {total / n / 1024:.2f} MiB (PSS); "
              f"MemAvailable drop {(avail0 - avail1) / 1024:.0f} MiB = {(avail0 - avail1) / n / 1024:.2f} MiB/node")

        emu.ticks.clear()
        written = [0]  # netlink messages of route items (routes, prefixes, nexthop objects) during the ticks
        install = emu.host.install_routes

        def counted(items):
            ops = install(items)
            written[0] += ops
            return ops

        emu.host.install_routes = counted
        kernel = getattr(emu.host, "kernel", None)
        kept0 = getattr(kernel, "nexthop_writes", 0)  # black holes and restores for links going down and up
        w0 = time.monotonic()
        emu.run(seconds)
        wall = time.monotonic() - w0
        kept = getattr(kernel, "nexthop_writes", 0) - kept0
        print(f"kernel route writes during the ticks: {written[0] + kept} netlink messages ({written[0]} route "
              f"items, {kept} nexthop objects kept over links going down and up), {(written[0] + kept) / wall:.0f}/s; "
              f"nexthop objects: {'on' if getattr(emu, 'NEXTHOPS', False) else 'off'}")
        costs = np.array([t.cost_s for t in emu.ticks]) * 1e3
        over = sum(t.overrun for t in emu.ticks)
        expected = int(wall / args.tick)
        print(f"ticks: {len(costs)} in {wall:.1f} s (expected {expected}); cost p50 {np.percentile(costs, 50):.2f} ms "
              f"p99 {np.percentile(costs, 99):.2f} ms max {costs.max():.2f} ms; overruns {over}; "
              f"route changes/tick mean {np.mean([t.route_changes for t in emu.ticks]):.0f}")
        links_ms = np.array([t.links_s for t in emu.ticks]) * 1e3
        routes_ms = np.array([t.routes_s for t in emu.ticks]) * 1e3
        slow = costs >= np.percentile(costs, 95)
        print(f"  parts: links p50 {np.median(links_ms):.2f} ms, routes p50 {np.median(routes_ms):.2f} ms; in the "
              f"slowest 5 % of ticks: links {links_ms[slow].mean():.1f} ms, routes {routes_ms[slow].mean():.1f} ms, "
              f"rest (probes, gc, the scheduler) {(costs - links_ms - routes_ms)[slow].mean():.1f} ms (means)")
        if emu.route_lags:
            lags = np.array(emu.route_lags)
            print(f"routing {emu.routing}: {len(lags)} route updates, lag (emulated s from the link states used to "
                  f"the install) p50 {np.percentile(lags, 50):.2f} s p99 {np.percentile(lags, 99):.2f} s "
                  f"max {lags.max():.2f} s")
        else:
            print(f"routing {emu.routing}: routes computed in every tick (no lag)")
        if hasattr(emu, "install_cost_s"):
            item_s, route_s = emu.install_cost_s
            print(f"  the route budget's learnt cost: {item_s * 1e6:.0f} us per item, {route_s * 1e6:.1f} us per "
                  f"further route")
    finally:
        t1 = time.monotonic()
        emu.stop()
        t_down = time.monotonic() - t1
    print(f"lasernet down: {t_down:6.2f} s (" + ", ".join(f"{k} {v:.2f} s" for k, v in emu.stop_timings.items()) + ")")

    if args.plain_fraction > 0 and t_up is not None:
        total_nodes = len(pairs and emu.node_names)
        keep = max(2, int(round(total_nodes * args.plain_fraction)))
        sub = [(a, b) for a, b in pairs if a < keep and b < keep]
        up, down = plain_mininet(keep, sub)
        scale_n = total_nodes / keep
        scale = (total_nodes + len(pairs)) / (keep + len(sub))
        tag = "" if keep == total_nodes else f" (ran {keep} hosts + {len(sub)} links, scaled x{scale:.2f})"
        up_full, down_full = up * scale, down * scale
        print(f"plain Mininet: up {up_full:6.2f} s, down {down_full:6.2f} s{tag}; nodes scale {scale_n:.2f}")
        print(f"ratio Mininet/lasernet: up {up_full / t_up:.1f}x, down {down_full / t_down:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
