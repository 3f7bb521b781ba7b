#!/usr/bin/env python3
"""How a terminal's field of regard cuts inter-plane links, against the latitude cut-off that stands in for it.

For each scenario (default: starlink-shell1 and iridium), over one orbital period at 10 s steps, with the
scenario's own polar cut-off removed, this plans the ISLs with cross-track terminals sweeping +-W degrees of
azimuth (W = 30, 45, 55, 60, 75; fore/aft terminals +-10 degrees, no nadir limit) and prints, per W:

* the share of inter-plane link-steps out of the field (cause ``fov``);
* the lowest latitude at which an inter-plane link is out of the field, and the latitude band above which most
  of them are (the higher |latitude| of the two ends, in 5-degree bands: the first band where >= 50 % are out);
* the share a latitude cut-off at the scenario's ``polar_cutoff_deg`` takes down, for comparison, and how far
  the two agree link-step by link-step, and the latitude cut-off that would take as many link-steps down;
* the fastest line of sight of inter-plane and seam links (what a slew-rate limit would have to stay above).

Usage: .venv/bin/python scripts/experiments/pointing_vs_polar.py [scenario ...]
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import lasernet  # noqa: E402
from lasernet import geometry, skydata, terminals  # noqa: E402
from lasernet.orbits import build_satellites, kepler_period_s  # noqa: E402
from lasernet.spec.scenario import FieldOfRegard  # noqa: E402
from lasernet.timeline import FOV, POLAR  # noqa: E402
from lasernet.topology import INTER, SEAM, isl_candidates  # noqa: E402

WIDTHS_DEG = (30.0, 45.0, 55.0, 60.0, 75.0)


def study(name: str) -> None:
    sc = lasernet.load_scenario(REPO / "topologies" / f"{name}.yaml")
    sc = dataclasses.replace(sc, ground=(), probes=(), hosts=())
    cutoff = sc.isl.polar_cutoff_deg
    period_s = kepler_period_s(sc.constellation.shells[0].altitude_km)
    duration_s = math.floor(period_s / 10) * 10
    sats = build_satellites(sc)
    isl = isl_candidates(sc, sats, tuple(sats.names))
    offsets = np.arange(0.0, duration_s + 1, 10.0)
    pos, vel = sats.positions_and_velocities(skydata.times(sc.epoch, offsets))
    lat = np.abs(geometry.latitude_deg(pos))
    inter = isl.role == INTER
    lat_link = np.maximum(lat[:, isl.a[inter]], lat[:, isl.b[inter]])
    print(f"{name}: {len(sats)} satellites, {int(inter.sum())} inter-plane links, one orbit ({duration_s:.0f} s) at "
          f"10 s; latitude cut-off in the scenario: {cutoff:g} deg")
    if cutoff < 90:
        polar = lasernet.plan(sc, duration_s=duration_s, step_s=10.0).cause[:, :len(isl)][:, inter] == POLAR
        print(f"  latitude cut-off {cutoff:g} deg: {polar.mean():.1%} of inter-plane link-steps down (polar)")
    flat = dataclasses.replace(sc, isl=dataclasses.replace(sc.isl, polar_cutoff_deg=90.0))
    for w in WIDTHS_DEG:
        term = dataclasses.replace(sc.isl_terminal, sun_exclusion_deg=0.0,
                                   field_of_regard=FieldOfRegard(along_track_deg=10.0, cross_track_deg=w))
        cause = lasernet.plan(dataclasses.replace(flat, isl_terminal=term), duration_s=duration_s,
                              step_s=10.0).cause[:, :len(isl)][:, inter]
        out = cause == FOV
        lowest = float(lat_link[out].min()) if out.any() else float("nan")
        bands = [b for b in range(0, 90, 5) if ((lat_link >= b) & (lat_link < b + 5)).any()
                 and out[(lat_link >= b) & (lat_link < b + 5)].mean() >= 0.5]
        most = f"{bands[0]}-{bands[0] + 5}" if bands else "none"
        both = (f"; of them {(out & polar).sum() / max(out.sum(), 1):.0%} polar, of the polar ones "
                f"{(out & polar).sum() / max(polar.sum(), 1):.0%} fov") if cutoff < 90 else ""
        if 0 < out.mean() < 1:  # the latitude cut-off that would take down as many link-steps
            same = float(np.quantile(lat_link, 1 - out.mean()))
            both += (f"; a {same:.1f} deg latitude cut-off takes as many, "
                     f"{(out & (lat_link > same)).sum() / out.sum():.0%} of them the same")
        print(f"  cross-track +-{w:>4.0f} deg: {out.mean():6.1%} of inter-plane link-steps out of the field "
              f"(fov); lowest latitude out {lowest:5.1f} deg; most out from the {most} deg band{both}")
    for role, label in ((INTER, "inter-plane"), (SEAM, "seam")):
        m = isl.role == role
        if m.any():
            _, _, r1 = terminals.pointing(pos[:, isl.a[m]], vel[:, isl.a[m]], pos[:, isl.b[m]], vel[:, isl.b[m]])
            _, _, r2 = terminals.pointing(pos[:, isl.b[m]], vel[:, isl.b[m]], pos[:, isl.a[m]], vel[:, isl.a[m]])
            r = np.maximum(r1, r2)
            print(f"  {label} line-of-sight rate in the body frame: p50 {np.median(r):.3f}, max {r.max():.3f} deg/s")


def main() -> None:
    for name in sys.argv[1:] or ["starlink-shell1", "iridium"]:
        study(name)


if __name__ == "__main__":
    main()
