"""Walker shells built by lasernet against closed-form orbital mechanics, and TLE propagation against Skyfield."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from lasernet import orbits, skydata
from lasernet.spec import elements
from lasernet.spec.scenario import Shell

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
MU = 398600.8  # km^3/s^2 (WGS72, SGP4's constant)
RE = 6378.135


def _sats(shell: Shell) -> orbits.Satellites:
    satrecs = orbits.walker_satrecs(shell, EPOCH)
    n = len(satrecs)
    plane, slot, _, _ = orbits.walker_elements(shell)
    return orbits.Satellites(tuple(f"s{i}" for i in range(n)), np.zeros(n, int), plane, slot, tuple(satrecs))


def _teme(sats, offsets_s):
    return sats.teme_km(skydata.times(EPOCH, np.asarray(offsets_s, dtype=float)))


@pytest.mark.parametrize("altitude_km,per_plane", [(550, 22), (630, 34), (1100, 8), (780, 11)])
def test_intra_plane_isl_length_matches_chord(altitude_km, per_plane):
    """Neighbours in a circular plane of N satellites are 2 r sin(pi / N) apart."""
    sats = _sats(Shell("s", "delta", 2, per_plane, 1, altitude_km, 53.0))
    pos = _teme(sats, np.arange(0, 6000, 300))
    chord_km = np.linalg.norm(pos[:, 1] - pos[:, 0], axis=-1)
    expected_km = 2 * (RE + altitude_km) * math.sin(math.pi / per_plane)
    # SGP4 includes J2: the radius of a "circular" orbit breathes by a few km (~0.1%); allow 0.3%.
    assert np.median(chord_km) == pytest.approx(expected_km, rel=3e-3)
    assert np.all(np.abs(chord_km / expected_km - 1) < 3e-3)


@pytest.mark.parametrize("altitude_km,inclination_deg", [(550, 53.0), (780, 86.4), (1100, 53.0)])
def test_orbital_period_matches_kepler(altitude_km, inclination_deg):
    """Time between ascending-node crossings equals 2 pi sqrt(a^3 / mu) up to J2's nodal-period correction."""
    sats = _sats(Shell("s", "delta", 1, 1, 0, altitude_km, inclination_deg))
    t = np.arange(0.0, 4 * 7200.0, 1.0)
    z = _teme(sats, t)[:, 0, 2]
    up = np.flatnonzero((z[:-1] < 0) & (z[1:] >= 0))
    crossings = t[up] + (-z[up] / (z[up + 1] - z[up]))  # linear interpolation between samples
    period_s = np.diff(crossings).mean()
    a = RE + altitude_km
    kepler_s = 2 * math.pi * math.sqrt(a**3 / MU)
    # J2 changes the nodal period by ~1.5 J2 (Re/a)^2 (3 - 4 sin^2 i) ~ 1e-3 or less of the Keplerian one.
    assert period_s == pytest.approx(kepler_s, rel=1.5e-3)
    assert orbits.kepler_period_s(altitude_km) == pytest.approx(kepler_s, rel=1e-12)


def _raan_and_latitude_arg(r, v):
    """Right ascension of the node and argument of latitude of TEME states, computed from r x v."""
    h = np.cross(r, v)
    node = np.cross([0.0, 0.0, 1.0], h)
    raan = np.degrees(np.arctan2(node[..., 1], node[..., 0])) % 360
    node_u = node / np.linalg.norm(node, axis=-1, keepdims=True)
    cos_u = np.einsum("...i,...i->...", node_u, r) / np.linalg.norm(r, axis=-1)
    sin_sign = np.sign(r[..., 2])
    u = np.degrees(np.arccos(np.clip(cos_u, -1, 1)))
    return raan, np.where(sin_sign >= 0, u, 360 - u)


@pytest.mark.parametrize("kind,spread", [("delta", 360.0), ("star", 180.0)])
def test_walker_phasing(kind, spread):
    """Planes are spread*p/P apart in RAAN; plane p+1 runs 360 F / (P S) degrees ahead of plane p."""
    P, S, F = 6, 11, 2
    shell = Shell("s", kind, P, S, F, 780, 86.4)
    sats = _sats(shell)
    jd = orbits._julian_date(EPOCH)
    e, r, v = orbits._satrec_array(sats.satrecs).sgp4(np.array([math.floor(jd - 0.5) + 0.5]),
                                                     np.array([jd - (math.floor(jd - 0.5) + 0.5)]))
    raan, u = _raan_and_latitude_arg(r[:, 0], v[:, 0])
    raan = raan.reshape(P, S)
    u = u.reshape(P, S)
    assert np.allclose((raan[:, 0] - raan[0, 0]) % 360, spread * np.arange(P) / P, atol=0.01)
    # Osculating (instantaneous) angles differ from SGP4's mean elements by J2's short-period terms, up to
    # J2 (Re/a)^2 ~ 1e-3 rad ~ 0.06 deg; the spacings checked here are 10 to 60 degrees.
    step = (u[1:, 0] - u[:-1, 0]) % 360
    assert np.allclose(step, 360 * F / (P * S), atol=0.1)
    assert np.allclose((u[:, 1:] - u[:, :-1]) % 360, 360 / S, atol=0.1)


def test_tle_positions_match_skyfield_itrs():
    """lasernet's vectorised TEME->ITRS agrees with Skyfield's own EarthSatellite in the ITRS frame."""
    from skyfield.api import EarthSatellite
    from skyfield.framelib import itrs

    from lasernet.spec.scenario import ElementsFile
    from tests.conftest import DATA

    (name, sat), = elements.read_elements(ElementsFile(DATA / "iss.tle", "tle"))
    assert name == "iss-zarya"
    sats = orbits.Satellites((name,), np.array([-1]), np.array([-1]), np.array([-1]), (sat,))
    start = dt.datetime(2014, 1, 21, tzinfo=dt.timezone.utc)
    t = skydata.times(start, np.arange(0, 86400, 3600.0))
    ours = sats.positions_km(t)[:, 0]
    ref = EarthSatellite.from_satrec(sat, skydata.timescale()).at(t).frame_xyz(itrs).km.T
    assert np.max(np.linalg.norm(ours - ref, axis=-1)) < 0.05  # km: polar motion is neglected by both


def test_omm_json_gives_the_same_orbit_as_the_equivalent_tle():
    """The ISS as CelesTrak OMM (JSON) and as a TLE with the same elements propagate to the same place."""
    from lasernet.spec.scenario import ElementsFile
    from tests.conftest import DATA

    (tle_name, tle_sat), = elements.read_elements(ElementsFile(DATA / "iss.tle", "tle"))
    (omm_name, omm_sat), = elements.read_elements(ElementsFile(DATA / "iss-omm.json", "omm"))
    assert omm_name == tle_name == "iss-zarya"
    t = skydata.times(dt.datetime(2014, 1, 21, tzinfo=dt.timezone.utc), np.arange(0, 86400, 600.0))
    pos = [orbits.Satellites((n,), np.array([-1]), np.array([-1]), np.array([-1]), (s,)).positions_km(t)[:, 0]
           for n, s in ((tle_name, tle_sat), (omm_name, omm_sat))]
    # The TLE's fields carry fewer digits (mean motion to 1e-8 rev/day, epoch to 1e-8 day): metres apart.
    assert np.max(np.linalg.norm(pos[0] - pos[1], axis=-1)) < 1.0


def test_omm_with_a_missing_field_is_named(tmp_path):
    from lasernet import ScenarioError
    from lasernet.spec.scenario import ElementsFile

    (tmp_path / "bad.json").write_text('[{"OBJECT_NAME": "X", "EPOCH": "2014-01-20T22:23:04.000416"}]')
    with pytest.raises(ScenarioError, match=r"bad\.json: record 1: missing or invalid OMM field"):
        elements.read_elements(ElementsFile(tmp_path / "bad.json", "omm"))
