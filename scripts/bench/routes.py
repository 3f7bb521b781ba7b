#!/usr/bin/env python3
"""Benchmark route installation (batched netlink vs ``ip``) and the routing oracle at starlink-shell1 size.

Prints, measured in this run:
  * the cost per route of replacing N /32 routes (each one's gateway really changes) in one namespace with
    lasernet's batched :class:`~lasernet.net.rtnl.Netlink` (one ``replace_route`` call per route, and
    ``replace_routes`` packing them all with numpy), with one ``ip route replace`` process per
    route (on a subset, scaled), and with one ``ip -batch`` process; and the ratios;
  * the oracle's full recompute time for a +Grid torus of 72 planes x 22 satellites plus 100 ground nodes with
    one link each (1,684 nodes, 3,268 links), and how many (source, destination) next hops change for small
    delay perturbations and for one link going down;
  * step by step over a real plan (``--scenario``, default starlink-shell1, ``--steps`` of it): the fresh
    computation against the repaired one (:class:`lasernet.routing.oracle.Oracle`) and the background process's
    whole work per request.

Needs root (it creates one namespace, ``lnr-bench-<pid>``, and removes it on every path).
Usage: .venv/bin/python scripts/bench/routes.py [--routes 2000] [--ip-subset 100]
"""

from __future__ import annotations

import os
import socket

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lasernet.net.rtnl import Netlink  # noqa: E402
from lasernet.routing import oracle  # noqa: E402

GATEWAYS = (("10.99.0.1", "b0"), ("10.99.0.3", "b2"))  # two point-to-point peers to alternate between


def destinations(n: int) -> list[str]:
    return [f"10.{200 + i // 65536}.{(i // 256) % 256}.{i % 256}" for i in range(n)]


def sh(*args: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr.strip()}")


def bench_install(ns: str, n_routes: int, ip_subset: int, repeats: int) -> None:
    nl = Netlink(ns)
    try:
        nl.add_veth("b0", "b1")
        nl.add_veth("b2", "b3")
        nl.commit()
        for dev, address in (("b0", "10.99.0.0"), ("b1", "10.99.0.1"), ("b2", "10.99.0.2"), ("b3", "10.99.0.3")):
            nl.add_address(dev, address, 31)
            nl.set_link(dev, up=True)
        nl.commit()
        dsts = destinations(n_routes)
        rounds = 0

        def netlink_round() -> tuple[float, float]:
            nonlocal rounds
            gateway, dev = GATEWAYS[rounds % 2]
            rounds += 1
            t0 = time.perf_counter()
            for dst in dsts:
                nl.replace_route(dst, 32, gateway=gateway, dev=dev)
            t1 = time.perf_counter()
            assert nl.commit() == n_routes
            t2 = time.perf_counter()
            return t1 - t0, t2 - t1

        dst_u32 = np.array([int.from_bytes(socket.inet_aton(d), "big") for d in dsts], np.uint32)

        def bulk_round() -> tuple[float, float]:
            nonlocal rounds
            gateway, dev = GATEWAYS[rounds % 2]
            rounds += 1
            t0 = time.perf_counter()
            nl.replace_routes(dst_u32, gateway, dev)
            t1 = time.perf_counter()
            assert nl.commit() == n_routes
            t2 = time.perf_counter()
            return t1 - t0, t2 - t1

        netlink_round()  # the first round creates the routes; later rounds replace them
        times = [netlink_round() for _ in range(repeats)]
        queue_us = statistics.median(t[0] for t in times) / n_routes * 1e6
        commit_us = statistics.median(t[1] for t in times) / n_routes * 1e6
        netlink_us = queue_us + commit_us
        times = [bulk_round() for _ in range(repeats)]
        bulk_queue_us = statistics.median(t[0] for t in times) / n_routes * 1e6
        bulk_commit_us = statistics.median(t[1] for t in times) / n_routes * 1e6
        bulk_us = bulk_queue_us + bulk_commit_us

        # A tick changes a few routes in many namespaces: the fixed cost of one small commit matters there.
        small, n_commits = 4, 500
        t0 = time.perf_counter()
        for i in range(n_commits):
            gateway, dev = GATEWAYS[i % 2]
            for dst in dsts[:small]:
                nl.replace_route(dst, 32, gateway=gateway, dev=dev)
            nl.commit()
        small_us = (time.perf_counter() - t0) / n_commits * 1e6

        gateway, dev = GATEWAYS[rounds % 2]
        t0 = time.perf_counter()
        for dst in dsts[:ip_subset]:
            sh("ip", "-n", ns, "route", "replace", f"{dst}/32", "via", gateway, "dev", dev)
        ip_us = (time.perf_counter() - t0) / ip_subset * 1e6

        batch_us = []
        with tempfile.NamedTemporaryFile("w", suffix=".ip") as f:
            for r in range(repeats):
                gateway, dev = GATEWAYS[(rounds + 1 + r) % 2]
                f.seek(0)
                f.truncate()
                f.write("".join(f"route replace {dst}/32 via {gateway} dev {dev}\n" for dst in dsts))
                f.flush()
                t0 = time.perf_counter()
                sh("ip", "-n", ns, "-batch", f.name)
                batch_us.append((time.perf_counter() - t0) / n_routes * 1e6)
        batch_us = statistics.median(batch_us)
        table = subprocess.run(["ip", "-n", ns, "route", "show", "root", "10.200.0.0/14"], capture_output=True,
                               text=True).stdout
        assert len(table.splitlines()) == n_routes, "every route is installed exactly once"
    finally:
        nl.close()

    print(f"\nReplacing {n_routes} /32 routes in one namespace (median of {repeats}; each changes its gateway):")
    print(f"  batched netlink   {netlink_us:8.1f} us/route  (queue {queue_us:.1f} + commit {commit_us:.1f})  "
          f"= {netlink_us * n_routes / 1e3:.1f} ms for all")
    print(f"  netlink, bulk     {bulk_us:8.1f} us/route  (replace_routes: queue {bulk_queue_us:.1f} + commit "
          f"{bulk_commit_us:.1f})  = {bulk_us * n_routes / 1e3:.1f} ms for all")
    print(f"  batched netlink, commits of {small} routes: {small_us:.1f} us per commit "
          f"({small_us / small:.1f} us/route)")
    print(f"  ip -batch         {batch_us:8.1f} us/route  (one process)  = {batch_us * n_routes / 1e3:.1f} ms for all"
          f"   ratio {batch_us / netlink_us:.1f}x, {batch_us / bulk_us:.1f}x bulk")
    print(f"  ip per route      {ip_us:8.1f} us/route  ({ip_subset} routes measured, scaled) "
          f"= {ip_us * n_routes / 1e3:.0f} ms for all   ratio {ip_us / netlink_us:.0f}x, {ip_us / bulk_us:.0f}x bulk")


def shell1_like(rng: np.random.Generator, planes: int = 72, slots: int = 22, ground: int = 100):
    """+Grid torus links with shell1-like light delays, plus ``ground`` nodes with one link each."""
    sat = np.arange(planes * slots).reshape(planes, slots)
    n_sat = planes * slots
    a = np.concatenate([sat.ravel(), sat.ravel(), n_sat + np.arange(ground)])
    b = np.concatenate([np.roll(sat, -1, axis=1).ravel(), np.roll(sat, -1, axis=0).ravel(),
                        rng.integers(n_sat, size=ground)])
    intra_s = 2 * 6921.0 * np.sin(np.pi / slots) / 299792.458  # chord between neighbours in a 550 km orbit
    latitude = np.deg2rad(53) * np.sin(2 * np.pi * (np.arange(slots) + 0.5) / slots)
    inter_s = 2 * 6921.0 * np.sin(np.pi / planes) * np.cos(latitude) / 299792.458
    delay_s = np.concatenate([np.full(n_sat, intra_s), np.tile(inter_s, planes) * rng.uniform(0.98, 1.02, n_sat),
                              rng.uniform(1.8e-3, 3.5e-3, ground)])
    return n_sat + ground, a, b, delay_s


def bench_oracle(repeats: int) -> None:
    rng = np.random.default_rng(1)
    n, a, b, delay_s = shell1_like(rng)
    up = np.ones(len(a), bool)
    oracle.compute(n, a, b, up, delay_s)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        base = oracle.compute(n, a, b, up, delay_s)
        times.append(time.perf_counter() - t0)
    print(f"\nOracle, {n} nodes, {len(a)} links (72x22 +Grid torus + 100 ground nodes), all pairs:")
    print(f"  full recompute {statistics.median(times) * 1e3:.0f} ms (median of {repeats}; "
          f"min {min(times) * 1e3:.0f}, max {max(times) * 1e3:.0f}); longest path {base.hops.max()} hops, "
          f"{base.delay_s[np.isfinite(base.delay_s)].max() * 1e3:.1f} ms")
    pairs = n * (n - 1)
    for label, delay2, up2 in [
        ("delays x (1 + 1e-6 noise)", delay_s * (1 + 1e-6 * rng.standard_normal(len(a))), up),
        ("delays x (1 + 1e-4 noise)", delay_s * (1 + 1e-4 * rng.standard_normal(len(a))), up),
        ("one inter-plane ISL down", delay_s, np.where(np.arange(len(a)) == 72 * 22 + 11, False, up)),
    ]:
        new = oracle.compute(n, a, b, up2, delay2)
        t0 = time.perf_counter()
        src, _dst = oracle.diff(base, new)
        diff_ms = (time.perf_counter() - t0) * 1e3
        print(f"  {label:28s} {len(src):7d} of {pairs} next hops change ({len(src) / pairs:.2%}); "
              f"diff {diff_ms:.0f} ms")


def bench_steps(scenario_name: str, steps: int) -> None:
    """Step by step over a real plan: a fresh SciPy table per step (oracle.compute, the reference and the code
    before) against the repaired one (oracle.Oracle), and the background process's whole work per request."""
    import lasernet
    from lasernet.routing.background import OracleProcess

    scenario = lasernet.load_scenario(Path(__file__).resolve().parents[2] / "topologies" / f"{scenario_name}.yaml")
    timeline = lasernet.timeline.plan(scenario, duration_s=steps)
    links, n = timeline.links, len(timeline.node_names)
    delays = [np.where(np.isnan(timeline.delay_s[k]), 0.0, timeline.delay_s[k]).astype(np.float64)
              for k in range(steps)]
    fresh, repaired, changed = [], [], []
    table = oracle.Oracle(n)
    for k in range(steps):
        t0 = time.perf_counter()
        table.update(links.a, links.b, timeline.up[k], delays[k], transit=timeline.transit)
        repaired.append(time.perf_counter() - t0)
        changed.append(len(table.changed[0]))
        if k % 5 == 0 or k < 3:  # the fresh computation is slow: every fifth step
            t0 = time.perf_counter()
            oracle.compute(n, links.a, links.b, timeline.up[k], delays[k], transit=timeline.transit)
            fresh.append(time.perf_counter() - t0)
    proc = OracleProcess(n)
    served = []
    try:
        slots = np.arange(len(links.a), dtype=np.int32)
        for k in range(steps):
            proc.submit(float(k), links.a, links.b, timeline.up[k], delays[k], slots, timeline.transit)
            served.append(proc.poll(timeout_s=600.0).compute_s)
    finally:
        proc.close()
    ms = lambda xs: statistics.median(xs) * 1e3  # noqa: E731
    p99 = lambda xs: float(np.percentile(xs, 99)) * 1e3  # noqa: E731
    print(f"\nOracle over {scenario_name}'s plan, {n} nodes, {len(links.a)} links, {steps} steps of "
          f"{timeline.step_s:g} s (one core):")
    print(f"  fresh (SciPy Dijkstra from every node)  {ms(fresh):7.1f} ms per step (median of {len(fresh)})")
    print(f"  repaired (oracle.Oracle)                {ms(repaired[1:]):7.1f} ms per step (median; p99 "
          f"{p99(repaired[1:]):.1f}, first step {repaired[0] * 1e3:.0f} ms); {statistics.median(changed[1:]):.0f} "
          f"entries change per step   ratio {ms(fresh) / ms(repaired[1:]):.1f}x")
    print(f"  the background process, per request     {ms(served[1:]):7.1f} ms (median; p99 {p99(served[1:]):.1f}; "
          f"repair, hysteresis and the differences to send)")
    print(f"  Hypatia's satgenpy per 1 s step, from the issue (not measured here): 12,982 ms = "
          f"{12982 / ms(repaired[1:]):.0f}x the repaired table")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=2000)
    parser.add_argument("--ip-subset", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scenario", default="starlink-shell1", help="a shipped scenario for the step-by-step part")
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("routes: the install benchmark needs root (namespaces); running the oracle part only")
    else:
        ns = f"lnr-bench-{os.getpid()}"
        sh("ip", "netns", "add", ns)
        try:
            bench_install(ns, args.routes, min(args.ip_subset, args.routes), args.repeats)
        finally:
            sh("ip", "netns", "del", ns)
    bench_oracle(args.repeats)
    bench_steps(args.scenario, args.steps)


if __name__ == "__main__":
    main()
