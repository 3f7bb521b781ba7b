"""Collision avoidance: a constructed close approach is found at the TCA and miss distance an independent search
finds, it schedules a manoeuvre that takes the satellite's links down (cause manoeuvre) before they re-acquire,
and the formation model's neighbours meet near the poles as close as its geometry predicts.

References, independent of lasernet's screening:

* Skyfield's ``EarthSatellite`` of the same elements (the Walker satellite's SGP4 record, the debris's TLE as
  written), their distance sampled every 1 ms around its minimum (found by a plain scan every 0.5 s first);
* the formation shell's geometry: two circular orbits of equal radius r and inclination i whose nodes differ by
  dOmega cross where their planes meet, near the latitude extremes; at the crossing two satellites of equal
  anomaly are r dOmega |cos i| apart (the derivative of the position with respect to the node, at argument of
  latitude 90 deg, has length |cos i|), and the planes are 0.2 km apart at the equator: dOmega = 0.2 / (r sin i).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import lasernet
from lasernet import skydata, timeline
from lasernet.orbits import EARTH_RADIUS_KM, build_satellites, walker_satrecs
from lasernet.spec.fields import parse_time
from lasernet.spec.scenario import Shell

from ..conftest import TOPOLOGIES

RING = """
name: cj
epoch: 2026-01-01T00:00:00Z
constellation:
  shells:
    - {{name: sat, type: delta, planes: 1, sats_per_plane: 20, altitude_km: 550, inclination_deg: 53}}
terminals:
  isl: {{count: 2, max_range_km: 5000, acquisition_s: 3}}
isl: {{pattern: ring}}
collision: {{threshold_km: {threshold}, manoeuvre_s: 120, lead_s: 600, catalogue: debris.tle}}
plan: {{duration_s: 4000, step_s: 1}}
"""


def _debris_tle(delta_incl_deg: float = 1.0, ahead_km: float = 0.6) -> tuple:
    """A TLE of an object on sat-0-0's orbit but inclined ``delta_incl_deg`` more and ``ahead_km`` ahead: it
    crosses sat-0-0's path at the nodes, twice an orbit, a few hundred metres away (SGP4's inclination-dependent
    terms make the misses differ: 461 m at the start, 262 m half an orbit later)."""
    from sgp4.api import WGS72, Satrec
    from sgp4.exporter import export_tle

    shell = Shell(name="sat", type="delta", planes=1, sats_per_plane=20, phasing=0, altitude_km=550,
                  inclination_deg=53)
    own = walker_satrecs(shell, parse_time("2026-01-01T00:00:00Z"))[0]
    b = Satrec()
    r = EARTH_RADIUS_KM + 550
    b.sgp4init(WGS72, "i", 90001, own.jdsatepoch + own.jdsatepochF - 2433281.5, 0.0, 0.0, 0.0, 1e-7, 0.0,
               own.inclo + math.radians(delta_incl_deg), (own.mo + ahead_km / r) % (2 * math.pi), own.no_kozai,
               own.nodeo)
    line1, line2 = export_tle(b)
    return line1, line2


def _write(tmp_path, text: str, debris) -> object:
    (tmp_path / "debris.tle").write_text("DEBRIS 1\n" + "\n".join(debris) + "\n")
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return path


def _independent_approaches(sc, debris, duration_s: float) -> list[tuple[float, float]]:
    """(TCA s, miss km) of sat-0-0 and the debris below 5 km, from Skyfield, by scan then 1 ms sampling."""
    from skyfield.api import EarthSatellite

    ts = skydata.timescale()
    a = EarthSatellite.from_satrec(build_satellites(sc).satrecs[0], ts)
    b = EarthSatellite(debris[0], debris[1], "debris", ts)

    def dist(off):
        t = skydata.times(sc.epoch, np.atleast_1d(off))
        return np.linalg.norm(a.at(t).position.km - b.at(t).position.km, axis=0)

    coarse = np.arange(0, duration_s + 600, 0.5)
    d = dist(coarse)
    out = []
    for k in np.flatnonzero((d[1:-1] < d[:-2]) & (d[1:-1] <= d[2:]) & (d[1:-1] < 5)) + 1:
        fine = coarse[k] + np.arange(-0.5, 0.5, 0.001)
        df = dist(fine)
        out.append((float(fine[np.argmin(df)]), float(df.min())))
    return out


def test_a_constructed_close_approach_is_found_at_the_independent_tca_and_miss(tmp_path):
    debris = _debris_tle()
    sc = lasernet.load_scenario(_write(tmp_path, RING.format(threshold=1.0), debris))
    tl = lasernet.plan(sc)
    c = tl.conjunctions
    ref = [(t, m) for t, m in _independent_approaches(sc, debris, 4000 + 600) if m < 1.0]
    assert len(ref) >= 2 and 0.2 < ref[1][1] < 1.0  # crossings at the nodes, twice an orbit, within the threshold
    got = [(t, m) for t, m, a in zip(c.tca_s, c.miss_km, c.a) if a == 0]
    assert len(got) == len(ref)
    for (t_got, m_got), (t_ref, m_ref) in zip(got, ref):
        assert t_got == pytest.approx(t_ref, abs=0.02)
        assert m_got == pytest.approx(m_ref, abs=0.002)  # 2 m
    assert set(c.b_name.tolist()) == {"debris-1"} and np.all(c.manoeuvres == 0)
    # the relative speed at the crossing is ~0.13 km/s: sampled every 1 s, the approach lies between samples
    summary = tl.summary()["faults"]["conjunctions"]
    assert summary["below_threshold"] == sum(1 for t, _ in ref if t < 4001)


def test_the_manoeuvre_takes_the_satellites_laser_links_down_then_they_reacquire(tmp_path):
    debris = _debris_tle()
    sc = lasernet.load_scenario(_write(tmp_path, RING.format(threshold=1.0), debris))
    tl = lasernet.plan(sc)
    c = tl.conjunctions
    tca = float(c.tca_s[c.tca_s > 700][0])  # the approach half an orbit in
    begin, end = tca - 600, tca - 600 + 120
    steps = tl.offsets_s
    during = (steps + 1 > begin) & (steps < end)
    links = np.flatnonzero((tl.links.a == 0) | (tl.links.b == 0))
    assert len(links) == 2 and during.sum() >= 120
    assert not tl.up[during][:, links].any()
    assert np.all(tl.cause[during][:, links] == timeline.MANOEUVRE)
    after = np.flatnonzero(~during & (steps >= end))[:3]  # 3 s of acquisition
    assert np.all(tl.cause[after][:, links] == timeline.ACQUISITION)
    assert tl.up[after[-1] + 1, links].all()
    # the other satellites' links are untouched
    others = np.setdiff1d(np.arange(len(tl.links)), links)
    assert tl.up[during][:, others].all()
    tl.write_events_csv(tmp_path / "events.csv")
    text = (tmp_path / "events.csv").read_text()
    assert ",sat-0-0,sat-0-0,debris-1,node,manoeuvre,conjunction," in text and ",down,manoeuvre," in text


def test_an_approach_farther_than_the_threshold_schedules_nothing(tmp_path):
    debris = _debris_tle()
    sc = lasernet.load_scenario(_write(tmp_path, RING.format(threshold=0.1), debris))
    tl = lasernet.plan(sc)
    assert len(tl.conjunctions.tca_s) == 0 and not (tl.cause == timeline.MANOEUVRE).any()
    assert 200 < tl.summary()["faults"]["conjunctions"]["closest_screened_m"] < 1000


FORMATION = """
name: fm
epoch: 2026-01-01T00:00:00Z
constellation:
  shells:
    - {name: tpu, type: formation, planes: 2, sats_per_plane: 1, spacing_km: 0.2, altitude_km: 650,
       inclination_deg: 97.98, raan0_deg: 11}
isl: {pattern: none}
collision: {threshold_km: 0.05, manoeuvre_s: 60, lead_s: 300}
plan: {duration_s: 6000, step_s: 1}
"""


def test_formation_neighbours_meet_near_the_poles_as_close_as_their_geometry_says(tmp_path):
    path = tmp_path / "fm.yaml"
    path.write_text(FORMATION)
    tl = lasernet.plan(lasernet.load_scenario(path))
    c = tl.conjunctions
    r, i = EARTH_RADIUS_KM + 650, math.radians(97.98)
    predicted_km = 0.2 / (r * math.sin(i)) * r * abs(math.cos(i))  # 28.0 m
    assert len(c.tca_s) >= 2  # twice an orbit, half an orbit (49 min) apart
    half_orbit_s = math.pi * math.sqrt(r**3 / 398600.8)
    assert np.diff(c.tca_s) == pytest.approx(half_orbit_s, rel=0.01)
    assert np.allclose(c.miss_km, predicted_km, rtol=0.05)
    # at the latitude extremes: argument of latitude 90 or 270 deg
    sats = build_satellites(lasernet.load_scenario(path))
    pos = sats.positions_km(skydata.times(tl.start_utc, c.tca_s))[:, 0]
    lat = np.degrees(np.arcsin(pos[:, 2] / np.linalg.norm(pos, axis=-1)))
    assert np.all(np.abs(lat) > 80)


def test_bad_collision_sections_name_the_field(tmp_path):
    path = tmp_path / "fm.yaml"
    path.write_text(FORMATION.replace("catalogue", "x").replace("lead_s: 300}", "lead_s: 300, catalogue: no.tle}"))
    with pytest.raises(lasernet.ScenarioError) as err:
        lasernet.load_scenario(path)
    assert ": collision.catalogue: " in str(err.value) or ": collision.catalogue.file: " in str(err.value)
    path.write_text(FORMATION.replace("threshold_km: 0.05", "threshold_km: -1"))
    with pytest.raises(lasernet.ScenarioError, match="collision.threshold_km"):
        lasernet.load_scenario(path)


def _brute_force_min_km(scenario, duration_s: float) -> float:
    """The smallest distance between any two satellites, every second, by numpy over all pairs."""
    sats = build_satellites(scenario)
    best = np.inf
    for lo in range(0, int(duration_s) + 1, 250):
        pos = sats.positions_km(skydata.times(scenario.epoch, np.arange(lo, min(lo + 250, duration_s + 1), 1.0)))
        d = np.linalg.norm(pos[:, :, None, :] - pos[:, None, :, :], axis=-1)
        d[:, np.arange(len(sats)), np.arange(len(sats))] = np.inf
        best = min(best, float(d.min()))
    return best


@pytest.mark.parametrize("radial_km, closest_m", [(0.0, (2.0, 5.0)), (0.05, (45.0, 60.0))])
def test_e_i_separation_keeps_the_suncatcher_formation_apart(tmp_path, radial_km, closest_m):
    text = (TOPOLOGIES / "suncatcher.yaml").read_text()
    text = text.replace("raan0_deg: 11}", f"raan0_deg: 11, radial_separation_km: {radial_km}}}")
    text = text.replace("include: [ground/", f"include: [{TOPOLOGIES}/ground/")
    text += "collision: {threshold_km: 0.04, manoeuvre_s: 60, lead_s: 300}\n"
    path = tmp_path / "sc.yaml"
    path.write_text(text)
    sc = dataclasses.replace(lasernet.load_scenario(path), ground=())
    tl = lasernet.plan(sc, duration_s=2500, step_s=1)  # the first polar crossing is at 1,467 s
    brute_km = _brute_force_min_km(sc, 2500)
    assert closest_m[0] < brute_km * 1e3 < closest_m[1]
    c = tl.conjunctions
    assert c.closest_km <= brute_km + 1e-4  # the screen's segment minima see at least what whole seconds show
    assert (len(c.tca_s) > 0) == (radial_km == 0.0)
    if radial_km:  # the formation stays a formation: +Grid neighbours within 1.25 spacings
        isl = tl.links.kind == 0
        assert tl.up[:, isl].all() and (tl.delay_s[:, isl] * 299792.458).max() < 0.25


def test_windows_schedule_the_manoeuvres_of_one_long_plan(tmp_path):
    debris = _debris_tle()
    sc = lasernet.load_scenario(_write(tmp_path, RING.format(threshold=1.0), debris))
    full = timeline.plan(sc, duration_s=3000, step_s=1)
    assert (full.cause == timeline.MANOEUVRE).any()
    w = timeline.plan(sc, duration_s=130, step_s=1)  # a boundary at 2,340 s, inside the manoeuvre (2,269-2,389 s)
    k0 = 0
    while k0 < 3000:
        part = slice(k0, k0 + len(w.offsets_s))
        n = len(full.offsets_s[part])
        assert w.links.names == full.links.names
        assert np.array_equal(w.cause[:n], full.cause[part]) and np.array_equal(w.up[:n], full.up[part])
        k0 += len(w.offsets_s) - 1
        w = timeline.plan_next(sc, w, 130)


def test_a_saved_plan_keeps_its_conjunctions(tmp_path):
    sc = lasernet.load_scenario(_write(tmp_path, RING.format(threshold=1.0), _debris_tle()))
    tl = lasernet.plan(sc, duration_s=600)
    tl.save(tmp_path / "plan.npz")
    back = lasernet.Timeline.load(tmp_path / "plan.npz")
    assert np.array_equal(back.conjunctions.tca_s, tl.conjunctions.tca_s)
    assert back.summary()["faults"] == tl.summary()["faults"]
    assert np.array_equal(back.fault_events()["other"], tl.fault_events()["other"])
