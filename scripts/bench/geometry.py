#!/usr/bin/env python3
"""Benchmark the offline pipeline (orbits + geometry + links + timeline) against the straightforward way.

Prints, measured in this run on one core:
  * starlink-shell1 with its 100 ground stations and Sun checks: median ms per time step, lasernet's vectorised
    pipeline vs the straightforward one (one Skyfield EarthSatellite per satellite for positions, the rest
    vectorised as in lasernet), and the ratio;
  * starlink-shell1 with pointing limits (a field of regard and a slew rate on every ISL terminal) against the
    same without, interleaved run by run; with clouds over its stations against the same without (ground
    terminals made laser for both); with the ground segment of issue 15 (every station with a spare optical
    terminal, an RF fallback and in a diversity pair) against the same clouded laser stations without (2 s
    acquisition for both); and with the ``nearest`` ISL pattern instead of the +Grid;
  * starlink-phase1 (4,408 satellites): median ms per step;
  * one hour of starlink-shell1 at 1 s steps end to end (lasernet.plan) in a child process: wall seconds and
    peak resident memory.

Usage: .venv/bin/python scripts/bench/geometry.py [--quick] [--only ground-segment]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import lasernet  # noqa: E402
from lasernet import skydata, timeline  # noqa: E402
from lasernet.orbits import build_satellites  # noqa: E402
from lasernet.spec.scenario import CloudDefaults, DiversityGroup, FieldOfRegard, RfTerminal  # noqa: E402


def per_step_ms(scenario, steps: int, repeats: int) -> list[float]:
    """lasernet.plan over ``steps`` 1-s steps, ``repeats`` times (after a warm-up): ms per step each time."""
    lasernet.plan(scenario, duration_s=10, step_s=1)  # warm caches (ephemeris, SatrecArray)
    out = []
    for k in range(repeats):
        t0 = time.perf_counter()
        lasernet.plan(scenario, start=scenario.epoch.replace(minute=k), duration_s=steps - 1, step_s=1)
        out.append((time.perf_counter() - t0) / steps * 1e3)
    return out


def with_and_without_ms(plain, other, steps: int, repeats: int) -> tuple[list[float], list[float]]:
    """ms per step of ``plain`` and of ``other``, planned alternately ``repeats`` times each (after a warm-up)."""
    lasernet.plan(plain, duration_s=10, step_s=1)
    lasernet.plan(other, duration_s=10, step_s=1)
    a, b = [], []
    for k in range(repeats):
        for sc, out in ((plain, a), (other, b)):
            t0 = time.perf_counter()
            lasernet.plan(sc, start=sc.epoch.replace(minute=k), duration_s=steps - 1, step_s=1)
            out.append((time.perf_counter() - t0) / steps * 1e3)
    return a, b


def straightforward_step_ms(scenario, repeats: int) -> list[float]:
    """Positions from one Skyfield EarthSatellite per satellite; links, ground and Sun as lasernet does them."""
    from skyfield.api import EarthSatellite
    from skyfield.framelib import itrs

    ts = skydata.timescale()
    sats = build_satellites(scenario)
    objs = [EarthSatellite.from_satrec(s, ts) for s in sats.satrecs]
    stations = timeline._Stations.of(scenario)
    node_names = tuple(sats.names) + stations.names
    isl = timeline.isl_candidates(scenario, sats, node_names)
    out = []
    for k in range(repeats):
        t = skydata.times(scenario.epoch, np.array([float(k)]))
        t0 = time.perf_counter()
        pos = np.array([o.at(t[0]).frame_xyz(itrs).km for o in objs])[None]
        sun = lasernet.geometry.sun_itrs_km(t)
        timeline._isl_states(scenario, isl, pos, sun)
        timeline._sight(scenario, stations, pos, sun, 0, timeline._Sightings())
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def ground_segment(scenario):
    """``scenario`` with every station given a spare optical terminal (make before break) and a 100 Mbit/s RF
    fallback with its own mask and the ground terminal's range, and its stations paired into diversity groups."""
    ground = tuple(dataclasses.replace(g, terminals=g.max_links + 1,
                                       rf=RfTerminal(100e6, g.min_elevation_deg, scenario.gsl_terminal.max_range_km))
                   for g in scenario.ground)
    pairs = tuple(DiversityGroup(f"site-{k}", (ground[2 * k].name, ground[2 * k + 1].name))
                  for k in range(len(ground) // 2))
    return dataclasses.replace(scenario, ground=ground, diversity=pairs)


def ground_segment_ms(shell1, reps: int) -> tuple[float, float]:
    """Median ms per step of shell1's clouded laser stations (2 s acquisition) with and without the ground
    segment (:func:`ground_segment`), interleaved."""
    laser = dataclasses.replace(shell1, gsl_terminal=dataclasses.replace(shell1.gsl_terminal, kind="laser",
                                                                         acquisition_s=2.0),
                                clouds=CloudDefaults(0.5, 3 * 3600.0, 300.0))
    off_ms, on_ms = with_and_without_ms(laser, ground_segment(laser), 120, reps)
    return statistics.median(on_ms), statistics.median(off_ms)


def hour_end_to_end() -> dict:
    code = (
        "import os, resource, time, json; os.environ.setdefault('OPENBLAS_NUM_THREADS','1');"
        "import lasernet;"
        f"sc = lasernet.load_scenario({str(REPO / 'topologies' / 'starlink-shell1.yaml')!r});"
        "t0 = time.perf_counter(); tl = lasernet.plan(sc, duration_s=3600, step_s=1);"
        "dt = time.perf_counter() - t0;"
        "print(json.dumps({'seconds': dt, 'peak_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,"
        " 'links': len(tl.links), 'steps': len(tl.offsets_s)}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--only", choices=("ground-segment",), help="measure that line alone")
    args = parser.parse_args()
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    except (AttributeError, OSError):
        pass
    reps = 2 if args.quick else 5
    shell1 = lasernet.load_scenario(REPO / "topologies" / "starlink-shell1.yaml")
    if args.only == "ground-segment":
        on, off = ground_segment_ms(shell1, reps)
        shipped = statistics.median(per_step_ms(shell1, 120, reps))
        print(f"starlink-shell1 with RF fallback, diversity pairs and make before break: {on:.2f} ms/step against "
              f"{off:.2f} without (clouded laser stations, interleaved runs); {shipped:.2f} as shipped (RF ground "
              f"terminals, no clouds)")
        return
    phase1 = lasernet.load_scenario(REPO / "topologies" / "starlink-phase1.yaml")
    print(f"starlink-shell1: {sum(s.size for s in shell1.constellation.shells)} satellites, "
          f"{len(shell1.ground)} ground stations, Sun checks on")
    ours = statistics.median(per_step_ms(shell1, 120, reps))
    base = statistics.median(straightforward_step_ms(shell1, 3 if args.quick else 5))
    print(f"  lasernet vectorised       {ours:8.2f} ms/step (median of {reps} runs of 120 steps; goal <= 3)")
    print(f"  straightforward baseline  {base:8.2f} ms/step (one Skyfield EarthSatellite per satellite)")
    print(f"  ratio                     {base / ours:8.1f}x faster")
    pointed = dataclasses.replace(shell1, isl_terminal=dataclasses.replace(
        shell1.isl_terminal, field_of_regard=FieldOfRegard(10.0, 55.0, (60.0, 120.0)), slew_rate_deg_s=1.0))
    plain_ms, pointed_ms = with_and_without_ms(shell1, pointed, 120, reps)
    print(f"  with pointing limits      {statistics.median(pointed_ms):8.2f} ms/step against "
          f"{statistics.median(plain_ms):.2f} without (field of regard + slew rate, interleaved runs)")
    laser = dataclasses.replace(shell1, gsl_terminal=dataclasses.replace(shell1.gsl_terminal, kind="laser"))
    clouded = dataclasses.replace(laser, clouds=CloudDefaults(0.5, 3 * 3600.0, 300.0))
    clear_ms, clouded_ms = with_and_without_ms(laser, clouded, 120, reps)
    print(f"  with clouds               {statistics.median(clouded_ms):8.2f} ms/step against "
          f"{statistics.median(clear_ms):.2f} without (ground terminals made laser, 100 stations, interleaved runs)")
    on, off = ground_segment_ms(shell1, reps)
    print(f"  with the ground segment   {on:8.2f} ms/step against {off:.2f} without (RF fallback, diversity pairs, "
          f"a spare terminal per station; clouded laser stations, interleaved runs)")
    nearest = dataclasses.replace(shell1, isl=dataclasses.replace(shell1.isl, pattern="nearest"))
    _, nearest_ms = with_and_without_ms(shell1, nearest, 60, max(2, reps // 2))
    print(f"  pattern nearest           {statistics.median(nearest_ms):8.2f} ms/step (instead of +Grid; "
          f"N x N distances per step)")
    p1 = statistics.median(per_step_ms(phase1, 60, max(2, reps // 2)))
    print(f"starlink-phase1 (4,408 satellites): {p1:.2f} ms/step (goal <= 10)")
    hour = hour_end_to_end()
    print(f"starlink-shell1, 1 hour at 1 s ({hour['steps']} steps, {hour['links']} links) end to end: "
          f"{hour['seconds']:.1f} s (goal <= 10), peak memory {hour['peak_mb']:.0f} MB (goal <= 1024)")


if __name__ == "__main__":
    main()
