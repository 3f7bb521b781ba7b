"""Line of sight, elevation and Sun exclusion on constructed geometry and against Skyfield's separation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lasernet import geometry, skydata, terminals
from lasernet.spec.scenario import Terminal

R = geometry.WGS84_A_KM


def _equatorial(altitude_km, lon_deg):
    lon = np.radians(lon_deg)
    r = R + altitude_km
    return np.stack([r * np.cos(lon), r * np.sin(lon), np.zeros_like(lon)], axis=-1)


@pytest.mark.parametrize("altitude_km", [550.0, 1100.0])
def test_earth_blocks_pairs_whose_chord_dips_below_the_margin(altitude_km):
    """Two satellites 2*theta apart on the equator: the chord's lowest point is at r cos(theta) - R."""
    margin = 80.0
    r = R + altitude_km
    theta_limit = math.degrees(math.acos((R + margin) / r))  # half-angle where the chord just grazes
    for half_deg, blocked in ((theta_limit - 0.2, False), (theta_limit + 0.2, True), (5.0, False), (90, True)):
        a, b = _equatorial(altitude_km, -half_deg), _equatorial(altitude_km, half_deg)
        assert bool(geometry.earth_blocks(a, b, margin)) is blocked, half_deg
        lowest = r * math.cos(math.radians(min(half_deg, 90))) - R
        assert float(geometry.segment_clearance_km(a, b)) == pytest.approx(lowest, abs=1e-6)


def test_earth_is_an_ellipsoid_over_the_poles():
    """Over the pole the surface is 21.4 km lower than at the equator: a chord 70 km above it is clear."""
    b_km = geometry.WGS84_B_KM
    r = b_km + 600
    theta = math.acos((b_km + 90) / r)
    a = np.array([r * math.sin(-theta), 0, r * math.cos(theta)])
    c = np.array([r * math.sin(theta), 0, r * math.cos(theta)])
    assert not geometry.earth_blocks(a, c, 80.0)
    assert geometry.segment_clearance_km(a, c) == pytest.approx(90.0, abs=0.5)


def test_elevation_overhead_horizon_and_below():
    st = geometry.geodetic_to_itrs_km(0.0, 0.0, 0.0)
    up = geometry.up_unit(0.0, 0.0)
    assert geometry.elevation_deg(st, up, st + up * 500) == pytest.approx(90.0)
    assert geometry.elevation_deg(st, up, st + np.array([0, 1000.0, 0])) == pytest.approx(0.0, abs=1e-9)
    assert geometry.elevation_deg(st, up, np.zeros(3)) == pytest.approx(-90.0)


def test_geodetic_position_matches_skyfield_wgs84():
    from skyfield.api import wgs84
    from skyfield.framelib import itrs

    t = skydata.timescale().utc(2026, 1, 1)
    for lat, lon, alt in ((78.23, 15.41, 500.0), (-33.9, 18.4, 10.0), (0.0, -120.0, 0.0)):
        ref = wgs84.latlon(lat, lon, alt).at(t).frame_xyz(itrs).km
        assert np.allclose(geometry.geodetic_to_itrs_km(lat, lon, alt), ref, atol=1e-6)


def test_sun_exclusion_agrees_with_skyfield_separation():
    """A terminal is blinded exactly when Skyfield's apparent Sun is within the exclusion angle of its target."""
    from skyfield.api import EarthSatellite
    from skyfield.framelib import itrs
    from skyfield.positionlib import ICRF

    from lasernet.spec.elements import read_elements
    from lasernet.spec.scenario import ElementsFile
    from tests.conftest import DATA

    (_, satrec), = read_elements(ElementsFile(DATA / "iss.tle", "tle"))
    ts = skydata.timescale()
    eph = skydata.ephemeris()
    rng = np.random.default_rng(7)
    term = Terminal(sun_exclusion_deg=5.0)
    checked = 0
    for hours in (1.0, 7.5, 13.0):
        t = ts.utc(2014, 1, 21, hours)
        sat = EarthSatellite.from_satrec(satrec, ts)
        here = sat.at(t).frame_xyz(itrs).km
        sun_seen = (eph["earth"] + sat).at(t).observe(eph["sun"]).apparent()  # from the satellite itself
        sun_itrs = geometry.sun_itrs_km(skydata.times(t.utc_datetime(), np.array([0.0])))[0]
        sun_unit = sun_itrs / np.linalg.norm(sun_itrs)
        # Targets 3,000 km away in directions scattered around the Sun, 0.5 to 10 degrees off it.
        for _ in range(40):
            off = np.radians(rng.uniform(0.5, 10.0))
            perp = np.cross(sun_unit, rng.normal(size=3))
            perp /= np.linalg.norm(perp)
            direction = math.cos(off) * sun_unit + math.sin(off) * perp
            target = here + 3000.0 * direction
            # Independent reference: the target's direction as a Skyfield position, its separation from the Sun.
            rot = itrs.rotation_at(t)
            target_gcrs = ICRF(rot.T @ (target - here) / 149597870.7, t=t, center=399)
            sep_deg = sun_seen.separation_from(target_gcrs).degrees
            if abs(sep_deg - term.sun_exclusion_deg) < 0.02:
                continue  # too close to call at the parallax (0.003 deg) and aberration level
            ours = terminals.sun_blinded_both_ends(term, here, target, sun_unit)
            assert bool(ours) == bool(sep_deg < term.sun_exclusion_deg), (hours, sep_deg)
            checked += 1
    assert checked > 100


def test_a_sun_hidden_by_the_earth_blinds_nothing():
    sun_unit = np.array([1.0, 0.0, 0.0])
    behind = np.array([-(R + 550.0), 0.0, 0.0])  # in the Earth's shadow
    lit = np.array([0.0, R + 550.0, 0.0])
    sun_km = sun_unit * 1.496e8
    assert geometry.sunlit_fraction(behind, sun_km) == 0.0
    assert geometry.sunlit_fraction(lit, sun_km) == 1.0


def test_acquisition_delays_new_links_but_not_those_up_at_the_start():
    feasible = np.array([[1, 0], [1, 0], [0, 1], [1, 1], [1, 1], [1, 1], [1, 1]], dtype=bool)
    up = terminals.acquired(feasible, step_s=1.0, acquisition_s=2.0)
    # Link 0: up at the start (already acquired), lost at step 2, feasible again at 3 -> up from step 5.
    assert up[:, 0].tolist() == [True, True, False, False, False, True, True]
    # Link 1: feasible from step 2 -> up from step 4.
    assert up[:, 1].tolist() == [False, False, False, False, True, True, True]
    assert terminals.acquired(feasible, 1.0, 0.0).tolist() == feasible.tolist()
    # 2.5 s at 1 s steps: the first step at least 2.5 s after becoming feasible.
    assert terminals.acquired(feasible, 1.0, 2.5)[:, 1].tolist() == [False] * 5 + [True, True]
