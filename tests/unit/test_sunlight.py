"""Sunlight per satellite: eclipse entry and exit agree with Skyfield, penumbra lasts what the geometry predicts,
the WGS84 shadow differs from a spherical one where it should, and plans carry it to events and summaries.

References, all independent of lasernet's shadow code:

* Skyfield's own ``EarthSatellite.at(t).is_sunlit(eph)``: the satellite is in shadow when the line to the Sun's
  centre meets a sphere of Skyfield's Earth radius (``skyfield.constants.ERAD``, 6378.1366 km): a point Sun and
  a spherical Earth. lasernet's :func:`sunlit_fraction` with those radii must switch within 2 s of it.
* The same test on the WGS84 ellipsoid with Skyfield's positions and its SPICE-derived ray-ellipsoid
  intersection (``skyfield.geometry.line_and_ellipsoid_intersection``): when the Sun's centre sets or rises.
  The plan's visible fraction crosses one half at that moment (the Earth's limb through the Sun's centre), so
  the plan's crossings must be within 2 s of it.
* Penumbra duration from the orbit alone: the Sun's angular diameter over the rate at which the Earth's limb
  sweeps across it, from the orbital rate and the Sun's elevation above the orbit plane (beta angle).
* The solar disc sampled by ~30,000 rays, each intersected with the WGS84 ellipsoid by its own quadratic.
"""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest

import lasernet
from lasernet import geometry, skydata
from lasernet.orbits import build_satellites
from lasernet.spec.fields import parse_time

from ..conftest import TOPOLOGIES

SKYFIELD_ERAD_KM = 6378.1366  # skyfield.constants.ERAD, the sphere of is_sunlit
AU_KM = 149597870.7


def _scenario(name: str):
    """A shipped scenario without ground stations (their look-ahead is not needed here)."""
    return dataclasses.replace(lasernet.load_scenario(TOPOLOGIES / f"{name}.yaml"), ground=(), probes=(), hosts=())


def _bisect(lit_at, lo: float, hi: float, lit_lo: bool) -> float:
    """The instant in [lo, hi] where the boolean ``lit_at(offset_s)`` leaves ``lit_lo``, to 1 ms."""
    while hi - lo > 1e-3:
        mid = 0.5 * (lo + hi)
        if lit_at(mid) == lit_lo:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _switches(offsets_s: np.ndarray, lit: np.ndarray, lit_at) -> list[tuple[float, bool]]:
    """(instant, lit after) of every change of a boolean sampled at ``offsets_s``, refined with ``lit_at``."""
    ks = np.flatnonzero(lit[1:] != lit[:-1])
    return [(_bisect(lit_at, offsets_s[k], offsets_s[k + 1], bool(lit[k])), bool(lit[k + 1])) for k in ks]


def _half_crossings(offsets_s: np.ndarray, fraction: np.ndarray) -> list[tuple[float, bool]]:
    """(instant, lit after) where the visible fraction crosses 1/2, interpolated between steps."""
    g = fraction.astype(float) - 0.5
    ks = np.flatnonzero(np.sign(g[1:]) != np.sign(g[:-1]))
    return [(offsets_s[k] + g[k] / (g[k] - g[k + 1]), bool(g[k + 1] > 0)) for k in ks]


def _max_dt(ours, theirs) -> float:
    assert [lit for _, lit in ours] == [lit for _, lit in theirs], (ours, theirs)
    return max((abs(a - b) for (a, _), (b, _) in zip(ours, theirs)), default=0.0)


def compare_with_skyfield(name: str, start: str | None, duration_s: float, n_sats: int) -> dict:
    """Entry and exit instants of lasernet vs Skyfield for ``n_sats`` satellites of scenario ``name``.

    Returns the switches and the largest differences: ``sphere`` (lasernet's model with is_sunlit's point Sun
    and sphere, on lasernet's positions and Sun, vs is_sunlit) and ``wgs84`` (the plan's illumination crossing
    1/2 vs the Sun's centre setting behind the WGS84 ellipsoid, on Skyfield's positions and Sun).
    """
    from skyfield.api import EarthSatellite
    from skyfield.framelib import itrs
    from skyfield.geometry import line_and_ellipsoid_intersection

    sc = _scenario(name)
    tl = lasernet.plan(sc, start=start, duration_s=duration_s, step_s=1)
    sats = build_satellites(sc)
    ts, eph = skydata.timescale(), skydata.ephemeris()
    sun_from_earth = eph["sun"] - eph["earth"]
    radii_km = np.array([geometry.WGS84_A_KM, geometry.WGS84_A_KM, geometry.WGS84_B_KM])
    times = lambda offsets: skydata.times(tl.start_utc, np.atleast_1d(offsets))  # noqa: E731
    out = {"sphere": 0.0, "wgs84": 0.0, "eclipses": 0, "switches": {}}
    for i in np.linspace(0, len(sats) - 1, n_sats).astype(int):
        es = EarthSatellite.from_satrec(sats.satrecs[i], ts)
        one = sats.subset(np.array([i]))

        def skyfield_sphere(offsets):
            return es.at(times(offsets)).is_sunlit(eph)

        def lasernet_sphere(offsets):
            t = times(offsets)
            f = geometry.sunlit_fraction(one.positions_km(t)[:, 0], geometry.sun_itrs_km(t), sun_radius_km=0.0,
                                         equatorial_radius_km=SKYFIELD_ERAD_KM, polar_radius_km=SKYFIELD_ERAD_KM)
            return f > 0.5

        def skyfield_wgs84(offsets):
            t = times(offsets)
            sat = es.at(t).frame_xyz(itrs).km
            sun = sun_from_earth.at(t).frame_xyz(itrs).km
            hit = line_and_ellipsoid_intersection(sat, sun - sat, radii_km)
            return np.isnan(hit[0])

        off = tl.offsets_s
        theirs = _switches(off, skyfield_sphere(off), lambda x: bool(skyfield_sphere(x)[0]))
        ours = _switches(off, lasernet_sphere(off), lambda x: bool(lasernet_sphere(x)[0]))
        out["sphere"] = max(out["sphere"], _max_dt(ours, theirs))
        plan_half = _half_crossings(off, tl.illumination[:, i])
        ellipsoid = _switches(off, skyfield_wgs84(off), lambda x: bool(skyfield_wgs84(x)[0]))
        out["wgs84"] = max(out["wgs84"], _max_dt(plan_half, ellipsoid))
        out["eclipses"] += sum(1 for _, lit in theirs if not lit)
        out["switches"][sats.names[i]] = {"is_sunlit": theirs, "plan": plan_half}
    out["timeline"] = tl
    return out


# ---------------------------------------------------------------------------------------------------------------
# Against Skyfield


def test_53_degree_shell_eclipses_match_skyfield_within_2_s():
    got = compare_with_skyfield("mini", None, 7000, 5)  # 7000 s: more than one 107-minute orbit
    assert got["eclipses"] >= 5, got["switches"]
    assert got["sphere"] <= 2.0, got["switches"]
    assert got["wgs84"] <= 2.0, got["switches"]


def test_dawn_dusk_orbit_on_its_epoch_never_enters_the_shadow():
    got = compare_with_skyfield("suncatcher", None, 6000, 3)  # one 98-minute orbit
    assert got["eclipses"] == 0
    assert all(not s["plan"] for s in got["switches"].values())
    assert np.all(got["timeline"].illumination == 1.0)  # no penumbra either, for any of the 81 satellites


def test_dawn_dusk_orbit_in_its_june_eclipse_season_eclipses_match_skyfield_within_2_s():
    # The orbit's normal points 8 deg south of the equator at the Sun's right ascension (ascending node at 18:00
    # local time, inclination 98 deg); the Sun stands 90 deg - |dec_sun + 8 deg| above the orbit plane, more
    # than the 65 deg of the Earth's angular radius at 650 km except near the June solstice.
    got = compare_with_skyfield("suncatcher", "2026-06-21T00:00:00Z", 6000, 3)
    assert got["eclipses"] >= 3, got["switches"]
    assert got["sphere"] <= 2.0, got["switches"]
    assert got["wgs84"] <= 2.0, got["switches"]


# ---------------------------------------------------------------------------------------------------------------
# Penumbra and the ellipsoid


def _penumbra_expected_s(r_km: np.ndarray, v_km_s: np.ndarray, sun_unit: np.ndarray) -> float:
    """Penumbra crossing time of a circular orbit, spherical Earth: the Sun's diameter over the limb's rate.

    Seen from the satellite, the Sun's centre is c from the Earth's centre with cos c = -cos(beta) cos(u - u_sun)
    (u: argument of latitude); the limb is at c = rho_e = asin(R / r), where dc/dt = n sqrt(cos^2 beta -
    cos^2 rho_e) / sin rho_e.
    """
    r = np.linalg.norm(r_km)
    h = np.cross(r_km, v_km_s)
    n = np.linalg.norm(h) / r**2
    sin_beta = float(np.dot(h / np.linalg.norm(h), sun_unit))
    rho_e = np.arcsin(geometry.WGS84_A_KM / r)
    rate = n * np.sqrt((1 - sin_beta**2) - np.cos(rho_e) ** 2) / np.sin(rho_e)
    rho_sun = geometry.SUN_RADIUS_KM / AU_KM
    return 2 * rho_sun / rate


def test_penumbra_lasts_the_seconds_the_sun_takes_to_set_behind_the_limb():
    from skyfield.api import EarthSatellite

    sc = _scenario("mini")
    tl = lasernet.plan(sc, duration_s=3000, step_s=0.1)
    sats = build_satellites(sc)
    ts, eph = skydata.timescale(), skydata.ephemeris()
    state = tl.illumination_state
    durations = []
    for i in range(0, len(sats), 4):
        s = state[:, i]
        runs = np.flatnonzero(np.diff(np.r_[0, (s == geometry.PENUMBRA).astype(int), 0]))
        for lo, hi in zip(runs[::2], runs[1::2]):
            if lo == 0 or hi >= len(s) or s[lo - 1] == s[hi]:
                continue  # cut by the window, or a pass grazing the shadow that never reaches the umbra
            measured = (hi - lo) * tl.step_s
            at = skydata.times(tl.start_utc, np.array([tl.offsets_s[lo]]))
            pv = EarthSatellite.from_satrec(sats.satrecs[i], ts).at(at)
            sun = (eph["sun"] - eph["earth"]).at(at).position.km[:, 0]
            expected = _penumbra_expected_s(pv.position.km[:, 0], pv.velocity.km_per_s[:, 0],
                                            sun / np.linalg.norm(sun))
            if expected < 30.0:  # nearer grazing the limb's rate changes across the disc: no linear estimate
                durations.append((sats.names[i], measured, expected))
    assert len(durations) >= 4, durations
    for name, measured, expected in durations:
        assert abs(measured - expected) <= 0.1 * expected + 2 * tl.step_s, durations
    measured = [m for _, m, _ in durations]
    assert min(measured) > 5.0 and np.median(measured) < 20.0, durations  # ~10 s at low orbit


def _brute_force_fraction(pos_km: np.ndarray, sun_km: np.ndarray, n: int = 201) -> float:
    """Share of ~n^2 pi/4 rays from ``pos_km`` to points of the solar disc that miss the WGS84 ellipsoid."""
    u = (sun_km - pos_km) / np.linalg.norm(sun_km - pos_km)
    e1 = np.cross(u, [0.0, 0.0, 1.0] if abs(u[2]) < 0.9 else [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(u, e1)
    g = np.linspace(-1, 1, n)
    x, y = np.meshgrid(g, g)
    inside = x**2 + y**2 <= 1
    targets = sun_km + geometry.SUN_RADIUS_KM * (x[inside, None] * e1 + y[inside, None] * e2)
    d = targets - pos_km
    w = np.array([1 / geometry.WGS84_A_KM**2, 1 / geometry.WGS84_A_KM**2, 1 / geometry.WGS84_B_KM**2])
    # |p + s d|_W = 1: A s^2 + 2 B s + C = 0 with the ellipsoid's metric W; blocked if a root lies in (0, 1).
    A = np.einsum("ki,ki,i->k", d, d, w)
    B = np.einsum("i,ki,i->k", pos_km, d, w)
    C = float(np.einsum("i,i,i->", pos_km, pos_km, w)) - 1.0
    disc = B**2 - A * C
    s_near = (-B - np.sqrt(np.maximum(disc, 0.0))) / A
    blocked = (disc > 0) & (s_near > 0) & (s_near < 1)
    return float(1.0 - blocked.mean())


def test_the_wgs84_shadow_is_lower_over_the_poles_than_a_sphere_of_the_equatorial_radius():
    # Sun along +x at 1 AU; a satellite 650 km above the pole region, behind the terminator, whose line to the
    # Sun grazes the Earth near the north pole, where the ellipsoid is 21 km below the equatorial sphere.
    sun = np.array([AU_KM, 0.0, 0.0])
    r = geometry.WGS84_B_KM + 650.0
    zs = np.linspace(6330.0, 6400.0, 15)
    pos = np.stack([-np.sqrt(r**2 - zs**2), np.zeros_like(zs), zs], axis=-1)
    ours = geometry.sunlit_fraction(pos, sun)
    sphere = geometry.sunlit_fraction(pos, sun, polar_radius_km=geometry.WGS84_A_KM)
    brute = np.array([_brute_force_fraction(p, sun) for p in pos])
    assert np.allclose(ours, brute, atol=0.01), np.c_[zs, ours, brute]
    assert np.max(np.abs(sphere - brute)) > 0.5  # the sphere gets these wrong, the ellipsoid does not
    assert ours.min() == 0.0 and ours.max() == 1.0 and ((ours > 0) & (ours < 1)).sum() >= 3
    # Over the equator the two agree: the line to the Sun grazes where both radii are the equatorial one.
    eq = np.stack([np.full_like(zs, -2900.0), zs, np.zeros_like(zs)], axis=-1)
    assert np.allclose(geometry.sunlit_fraction(eq, sun),
                       geometry.sunlit_fraction(eq, sun, polar_radius_km=geometry.WGS84_A_KM), atol=1e-9)


def test_fraction_is_one_on_the_day_side_zero_deep_in_the_night_and_a_half_with_the_limb_through_the_sun():
    sun = np.array([AU_KM, 0.0, 0.0])
    r = geometry.WGS84_A_KM + 550.0
    day, night = np.array([r, 0.0, 0.0]), np.array([-r, 0.0, 0.0])
    assert geometry.sunlit_fraction(day, sun) == 1.0 and geometry.sunlit_fraction(night, sun) == 0.0
    # In the equatorial plane the limb passes through the Sun's centre where the line to it grazes the equator.
    x = -np.sqrt(r**2 - geometry.WGS84_A_KM**2)
    graze = np.array([x, geometry.WGS84_A_KM, 0.0])
    sun_ahead = np.array([AU_KM, geometry.WGS84_A_KM, 0.0])  # straight ahead of the grazing line (no parallax)
    # A little more than half: the Earth's limb curves away from the part of the disc it covers.
    assert 0.5 < float(geometry.sunlit_fraction(graze, sun_ahead)) < 0.501
    assert geometry.illumination_state(np.array([0.0, 0.3, 1.0])).tolist() == [0, 1, 2]


# ---------------------------------------------------------------------------------------------------------------
# In plans


@pytest.fixture(scope="module")
def mini():
    return lasernet.plan(_scenario("mini"), duration_s=900, step_s=1)


def test_events_csv_has_each_satellites_illumination_at_the_start_then_each_change(mini, tmp_path):
    mini.write_events_csv(tmp_path / "events.csv")
    rows = [r for r in csv.DictReader((tmp_path / "events.csv").open()) if r["kind"] == "node"]
    start = "2026-01-01T00:00:00.000Z"
    initial = [r for r in rows if r["time_utc"] == start]
    assert sorted(r["link"] for r in initial) == sorted(mini.node_names[:mini.n_satellites])
    state = mini.illumination_state
    names = list(mini.node_names)
    replay = {r["link"]: r["event"] for r in initial}
    for r in rows[len(initial):]:
        assert r["a"] == r["link"] and r["b"] == "" and r["cause"] == "" and r["delay_ms"] == ""
        assert r["event"] != replay[r["link"]], "a row is a change"
        when = (parse_time(r["time_utc"]) - mini.start_utc).total_seconds()
        assert geometry.ILLUMINATION[state[int(round(when)), names.index(r["link"])]] == r["event"]
        replay[r["link"]] = r["event"]
    assert replay == {names[i]: geometry.ILLUMINATION[state[-1, i]] for i in range(mini.n_satellites)}
    entries = [r for r in rows[len(initial):] if r["event"] == "umbra"]
    assert entries, "a 15-minute window of mini has satellites entering the umbra"
    # Link events are unchanged by the node rows: events() holds links only.
    links = [r for r in csv.DictReader((tmp_path / "events.csv").open()) if r["kind"] != "node"]
    assert len(links) == len(mini.events()["step"])


def test_summary_gives_sunlit_fraction_per_satellite_and_plane(mini):
    s = mini.summary()["sunlight"]
    per_sat = mini.illumination.astype(float).mean(axis=0)
    assert s["satellites"]["min"] == pytest.approx(per_sat.min())
    assert s["satellites"]["max"] == pytest.approx(per_sat.max())
    assert sorted(s["planes"]) == [f"sat-{p}" for p in range(8)]
    plane0 = [i for i, n in enumerate(mini.node_names[:mini.n_satellites]) if n.startswith("sat-0-")]
    assert s["planes"]["sat-0"] == pytest.approx(per_sat[plane0].mean())
    assert 0 < s["eclipsed"] < mini.n_satellites


def test_illumination_round_trips_and_old_timelines_still_load(mini, tmp_path):
    mini.save(tmp_path / "plan.npz")
    back = lasernet.Timeline.load(tmp_path / "plan.npz")
    assert np.array_equal(back.illumination, mini.illumination) and back.planes == mini.planes
    assert back.summary() == mini.summary()
    old = dataclasses.replace(mini, illumination=None, planes=())
    old.save(tmp_path / "old.npz")
    with np.load(tmp_path / "old.npz") as z:
        assert "illumination" not in z.files
    back_old = lasernet.Timeline.load(tmp_path / "old.npz")
    assert back_old.illumination is None and back_old.summary()["sunlight"] == {}
    assert back_old.node_events()["step"].size == 0

