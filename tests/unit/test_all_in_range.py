"""Hypatia's ground rule (``handover: all-in-range``): a city links every satellite above its mask, so the route
between two cities can pick, per destination, the satellite that suits it. Against an independent reference: a
networkx shortest path over a graph built from Skyfield's own geometry (each satellite an ``EarthSatellite``,
ISLs of the +Grid written out here, ground links wherever Skyfield's altaz puts the satellite above the mask). The
one-nearest-satellite rule can only be as short, never shorter."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest

import lasernet
from lasernet import skydata
from lasernet.orbits import build_satellites
from lasernet.routing import query

C_KM_S = 299792.458
PLANES, SLOTS, PHASING, ALTITUDE_KM = 12, 12, 1, 1000.0
MASK_DEG, ISL_RANGE_KM, GSL_RANGE_KM = 10.0, 6000.0, 5000.0
CITIES = {"madrid": (40.4168, -3.7038), "new-york": (40.7128, -74.0060)}
STEPS_S = np.arange(0, 601, 60.0)

SCENARIO = f"""
    name: hypatia-rule
    epoch: 2026-01-01T00:00:00Z
    constellation:
      shells: [{{name: sat, planes: {PLANES}, sats_per_plane: {SLOTS}, phasing: {PHASING}, altitude_km: {ALTITUDE_KM},
                inclination_deg: 53}}]
    terminals:
      isl: {{count: 4, max_range_km: {ISL_RANGE_KM}, acquisition_s: 0, sun_exclusion_deg: 0}}
      gsl: {{kind: rf, count: 2, max_range_km: {GSL_RANGE_KM}, acquisition_s: 0}}
    ground:
      defaults: {{min_elevation_deg: {MASK_DEG}, handover: HANDOVER, max_links: MAX_LINKS}}
      stations:
        - {{name: madrid, kind: city, lat_deg: {CITIES['madrid'][0]}, lon_deg: {CITIES['madrid'][1]}}}
        - {{name: new-york, kind: city, lat_deg: {CITIES['new-york'][0]}, lon_deg: {CITIES['new-york'][1]}}}
    plan: {{duration_s: 600, step_s: 60}}
"""


def _scenario(write_scenario, handover: str, max_links: int):
    text = SCENARIO.replace("HANDOVER", handover).replace("MAX_LINKS", str(max_links))
    return lasernet.load_scenario(write_scenario(text, f"{handover}.yaml"))


def _plus_grid():
    """+Grid pairs of a Walker delta shell written out: slot s to s+1 in its plane, plane p to p+1 in the same slot,
    and the last plane to plane 0 shifted by the phasing factor."""
    idx = lambda p, s: p * SLOTS + s % SLOTS  # noqa: E731
    pairs = [(idx(p, s), idx(p, s + 1)) for p in range(PLANES) for s in range(SLOTS)]
    pairs += [(idx(p, s), idx(p + 1, s)) for p in range(PLANES - 1) for s in range(SLOTS)]
    pairs += [(idx(PLANES - 1, s), idx(0, s + PHASING)) for s in range(SLOTS)]
    return pairs


def _reference_delays_s(scenario):
    """One-way delay between the two cities at every step of STEPS_S, by networkx over Skyfield's geometry, and how
    many satellites each city had in view (the most, over the steps)."""
    from skyfield.api import EarthSatellite, wgs84

    ts = skydata.timescale()
    t = skydata.times(scenario.epoch, STEPS_S)
    sats = [EarthSatellite.from_satrec(rec, ts) for rec in build_satellites(scenario).satrecs]
    pos_km = np.stack([s.at(t).position.km.T for s in sats], axis=1)  # (T, N, 3), GCRS
    cities = {name: wgs84.latlon(lat, lon) for name, (lat, lon) in CITIES.items()}
    view = {name: [(s - topos).at(t).altaz() for s in sats] for name, topos in cities.items()}
    out, most = [], 0
    for k in range(len(STEPS_S)):
        g = nx.Graph()
        for i, j in _plus_grid():
            pi, pj = pos_km[k, i], pos_km[k, j]
            rng = float(np.linalg.norm(pi - pj))
            closest = np.linalg.norm(pi + np.clip(np.dot(-pi, pj - pi) / rng ** 2, 0, 1) * (pj - pi))
            assert closest > 6378.137 + 80 + 50  # clear of the atmosphere with room to spare (no ellipsoid doubt)
            if rng <= ISL_RANGE_KM:
                g.add_edge(i, j, weight=rng / C_KM_S)
        for name in cities:
            seen = 0
            for n, (alt, _az, dist) in enumerate(view[name]):
                if alt.degrees[k] >= MASK_DEG and dist.km[k] <= GSL_RANGE_KM:
                    g.add_edge(name, n, weight=dist.km[k] / C_KM_S)
                    seen += 1
            most = max(most, seen)
        out.append(nx.shortest_path_length(g, "madrid", "new-york", weight="weight"))
    return np.array(out), most


def _lasernet_delays_s(scenario):
    tl = lasernet.plan(scenario)
    return np.array([query.path(query.state(tl, t_s), "madrid", "new-york").one_way_s for t_s in STEPS_S])


def test_all_in_range_path_delay_equals_networkx_over_skyfield_geometry_and_beats_the_nearest_rule(write_scenario):
    everything = _scenario(write_scenario, "all-in-range", 16)
    reference, most_in_view = _reference_delays_s(everything)
    assert 2 <= most_in_view <= 16  # the cities' 16 terminals take every satellite in view: no budget binds
    got = _lasernet_delays_s(everything)
    # float32 link delays, and lasernet's TEME->ITRS against Skyfield's: well under a microsecond (300 m)
    assert np.all(np.isfinite(got)) and np.abs(got - reference).max() < 1e-6, (got - reference)
    nearest = _lasernet_delays_s(_scenario(write_scenario, "nearest", 1))
    assert np.all(got <= nearest + 1e-9)
    print(f"madrid -> new-york one-way over {len(STEPS_S)} steps: all-in-range {np.mean(got) * 1e3:.3f} ms mean, "
          f"nearest {np.mean(nearest) * 1e3:.3f} ms mean; nearest longer by {np.max(nearest - got) * 1e3:.3f} ms "
          f"at most, at {np.sum(nearest - got > 1e-6)} of {len(STEPS_S)} steps")


def test_all_in_range_with_one_terminal_is_refused_on_one_line(write_scenario):
    with pytest.raises(lasernet.ScenarioError) as err:
        _scenario(write_scenario, "all-in-range", 1)
    assert str(err.value).startswith("all-in-range.yaml: ground.stations[0].max_links: handover all-in-range with "
                                     "max_links 1 is nearest") and "\n" not in str(err.value)


def test_the_memory_estimate_bounds_the_ground_links_an_all_in_range_plan_makes(write_scenario):
    """The plan's memory check counts an all-in-range station's ground links from the scenario alone: at least as
    many as the plan makes (an upper estimate), and not ten times more (or long plans would be refused)."""
    from lasernet.timeline import GSL, _gsl_pairs_estimate

    sc = _scenario(write_scenario, "all-in-range", 16)
    tl = lasernet.plan(sc, duration_s=3600, step_s=10)
    made = int((tl.links.kind == GSL).sum())
    estimate = sum(_gsl_pairs_estimate(sc, g, 3600, tl.n_satellites) for g in sc.ground)
    print(f"{made} ground links in an hour, estimated {estimate:.0f}")
    assert made <= estimate <= 10 * made
