"""Terminals that point: angles and slew rates in the body frame agree with a hand computation from Skyfield, and
plans take links down for ``fov`` and ``slew`` exactly where that computation puts the partner out of reach.

The reference is independent of lasernet's pointing code: Skyfield's own ``EarthSatellite`` (built from the same
SGP4 elements) gives GCRS positions and velocities; the test builds each satellite's LVLH frame from them with
plain numpy (z nadir, y = -orbit normal, x = y x z), takes the partner's direction in it, and gets the rate at
which that direction turns in the body frame by finite differences of the body-frame unit vector over +-0.5 s.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import lasernet
from lasernet import skydata, terminals
from lasernet.orbits import build_satellites
from lasernet.spec.scenario import FieldOfRegard
from lasernet.timeline import ACQUISITION, FOV, HANDOVER, SLEW, UP
from lasernet.topology import INTRA, isl_candidates

from ..conftest import TOPOLOGIES

STEPS_S = np.arange(0.0, 1200.0, 20.0)  # 20 minutes of mini every 20 s: planes cross their turning latitudes


def _mini(**terminal):
    sc = lasernet.load_scenario(TOPOLOGIES / "mini.yaml")
    sc = dataclasses.replace(sc, ground=(), probes=(), hosts=())
    return dataclasses.replace(sc, isl=dataclasses.replace(sc.isl, polar_cutoff_deg=90.0),
                               isl_terminal=dataclasses.replace(sc.isl_terminal, sun_exclusion_deg=0.0, **terminal))


def _skyfield_states(sats, offsets_s):
    """GCRS positions (T, N, 3) km and velocities (T, N, 3) km/s from Skyfield's EarthSatellite."""
    from skyfield.api import EarthSatellite

    ts = skydata.timescale()
    t = skydata.times(lasernet.load_scenario(TOPOLOGIES / "mini.yaml").epoch, offsets_s)
    r, v = [], []
    for satrec in sats.satrecs:
        at = EarthSatellite.from_satrec(satrec, ts).at(t)
        r.append(at.position.km.T)
        v.append(at.velocity.km_per_s.T)
    return np.stack(r, axis=1), np.stack(v, axis=1)


def _lvlh_unit(r_a, v_a, r_b):
    """The partner's unit direction in a's LVLH axes (x, y, z), by hand."""
    z = -r_a / np.linalg.norm(r_a, axis=-1, keepdims=True)
    n = np.cross(r_a, v_a)
    y = -n / np.linalg.norm(n, axis=-1, keepdims=True)
    x = np.cross(y, z)
    d = r_b - r_a
    u = d / np.linalg.norm(d, axis=-1, keepdims=True)
    return np.stack([np.sum(u * x, -1), np.sum(u * y, -1), np.sum(u * z, -1)], axis=-1)


def _reference(sats, a, b, offsets_s, h_s=0.5):
    """(nadir_deg, azimuth_deg, rate_deg_s) (T, L) of b seen from a, by hand from Skyfield."""
    r0, v0 = _skyfield_states(sats, offsets_s)
    rm, vm = _skyfield_states(sats, offsets_s - h_s)
    rp, vp = _skyfield_states(sats, offsets_s + h_s)
    u = _lvlh_unit(r0[:, a], v0[:, a], r0[:, b])
    du = (_lvlh_unit(rp[:, a], vp[:, a], rp[:, b]) - _lvlh_unit(rm[:, a], vm[:, a], rm[:, b])) / (2 * h_s)
    nadir = np.degrees(np.arccos(np.clip(u[..., 2], -1, 1)))
    azimuth = np.degrees(np.arctan2(u[..., 1], u[..., 0]))
    return nadir, azimuth, np.degrees(np.linalg.norm(du, axis=-1))


@pytest.fixture(scope="module")
def mini_links():
    sc = _mini()
    sats = build_satellites(sc)
    isl = isl_candidates(sc, sats, tuple(sats.names))
    ref_ab = _reference(sats, isl.a, isl.b, STEPS_S)
    ref_ba = _reference(sats, isl.b, isl.a, STEPS_S)
    return sc, sats, isl, ref_ab, ref_ba


def test_pointing_angles_and_rates_match_a_hand_computation_from_skyfield(mini_links):
    sc, sats, isl, (nadir, azimuth, rate), _ = mini_links
    pos, vel = sats.positions_and_velocities(skydata.times(sc.epoch, STEPS_S))
    got_nadir, got_az, got_rate = terminals.pointing(pos[:, isl.a], vel[:, isl.a], pos[:, isl.b], vel[:, isl.b])
    assert np.abs(got_nadir - nadir).max() < 0.01
    assert np.abs((got_az - azimuth + 180) % 360 - 180).max() < 0.01
    # inter-plane lines of sight turn at up to ~0.1 deg/s in mini; intra-plane ones hardly at all
    assert rate.max() > 0.05
    assert np.abs(got_rate - rate).max() < 0.002 * rate.max()
    intra = isl.role == INTRA
    assert rate[:, intra].max() < 1e-3 and np.abs(np.abs(azimuth[:, intra]) - 90).min() > 80  # ahead or behind


def _margin(values, limit):
    return np.abs(values - limit)


def test_a_plan_takes_links_down_for_fov_exactly_where_the_partner_leaves_the_field(mini_links):
    sc0, sats, isl, (n_ab, az_ab, _), (n_ba, az_ba, _) = mini_links
    field = FieldOfRegard(along_track_deg=5.0, cross_track_deg=55.0, nadir_deg=(60.0, 95.0))
    sc = _mini(field_of_regard=field)
    sc = dataclasses.replace(sc, isl_terminal=dataclasses.replace(sc.isl_terminal, acquisition_s=0.0))
    tl = lasernet.plan(sc, duration_s=STEPS_S[-1], step_s=20.0)
    intra = isl.role == INTRA

    def outside(nadir, az):
        a = np.abs(az)
        seen = np.where(intra[None, :], (a <= 5.0) | (a >= 175.0), np.abs(a - 90.0) <= 55.0)
        return ~(seen & (nadir >= 60.0) & (nadir <= 95.0))

    expected = outside(n_ab, az_ab) | outside(n_ba, az_ba)
    assert 0.05 < expected.mean() < 0.6, "the field must cut some link-steps and keep others"
    clear = np.ones(expected.shape, bool)  # link-steps with every angle more than 0.02 deg from a limit
    for nadir, az in ((n_ab, az_ab), (n_ba, az_ba)):
        a = np.abs(az)
        clear &= (_margin(nadir, 60) > 0.02) & (_margin(nadir, 95) > 0.02)
        clear &= np.where(intra[None, :], (_margin(a, 5) > 0.02) & (_margin(a, 175) > 0.02),
                          _margin(np.abs(a - 90), 55) > 0.02)
    cause = tl.cause[:, :len(isl)]
    other = (cause != UP) & (cause != FOV)  # a more fundamental cause (range, earth) reported instead
    assert np.array_equal((cause == FOV)[clear & ~other], expected[clear & ~other])
    assert "fov" in tl.summary()["isl"]["down_link_steps_by_cause"]


def test_a_plan_takes_links_down_for_slew_exactly_where_the_line_of_sight_turns_too_fast(mini_links):
    _, _, isl, (_, _, r_ab), (_, _, r_ba) = mini_links
    limit = 0.06
    sc = _mini(slew_rate_deg_s=limit, acquisition_s=0.0)
    tl = lasernet.plan(sc, duration_s=STEPS_S[-1], step_s=20.0)
    expected = (r_ab > limit) | (r_ba > limit)
    assert 0.02 < expected.mean() < 0.5
    clear = (_margin(r_ab, limit) > 2e-4) & (_margin(r_ba, limit) > 2e-4)
    cause = tl.cause[:, :len(isl)]
    other = (cause != UP) & (cause != SLEW)
    assert np.array_equal((cause == SLEW)[clear & ~other], expected[clear & ~other])
    assert not (cause[:, isl.role == INTRA] == SLEW).any()
    assert "slew" in tl.summary()["isl"]["down_link_steps_by_cause"]
    assert not (cause == ACQUISITION).any(), "a +Grid terminal stays on its link: taking it again needs no slew"


def test_scenarios_without_pointing_limits_plan_as_before():
    sc = _mini()
    assert not sc.isl_terminal.points
    tl = lasernet.plan(sc, duration_s=600, step_s=10)
    assert not np.isin(tl.cause, [FOV, SLEW]).any()


def test_a_terminal_moved_between_partners_waits_the_angle_between_them_over_its_slew_rate(write_scenario):
    """One terminal on s-0-0 and two candidate links (its plane neighbour ahead, the next plane's across), each
    blinded in turn by a wide Sun exclusion so that the terminal moves between them: each
    switch waits acquisition_s + angle / slew rate, the angle between the two partners seen from s-0-0 computed
    here from Skyfield positions; s-0-1 and s-1-0 have a terminal for their one link and add nothing."""
    import math

    rate_deg_s, acq_s, step_s = 0.5, 2.0, 10.0
    sc = lasernet.load_scenario(write_scenario(f"""
        name: switch
        epoch: 2026-01-01T00:00:00Z
        constellation:
          shells: [{{name: s, type: delta, planes: 8, sats_per_plane: 8, phasing: 1, altitude_km: 1100,
                     inclination_deg: 53}}]
        terminals:
          isl: {{count: 1, max_range_km: 9000, acquisition_s: {acq_s}, sun_exclusion_deg: 40,
                 slew_rate_deg_s: {rate_deg_s}}}
        isl:
          pattern: explicit
          links: [[s-0-0, s-0-1], [s-0-0, s-1-0]]
        """))
    tl = lasernet.plan(sc, duration_s=3 * 5400, step_s=step_s)
    sats = build_satellites(sc)
    names = tl.links.names
    j_intra, j_inter = names.index("s-0-0~s-0-1"), names.index("s-0-0~s-1-0")
    held = np.isin(tl.cause[:, [j_intra, j_inter]], [UP, ACQUISITION])
    pos, _ = _skyfield_states(sats, tl.offsets_s)  # GCRS: angles between directions do not depend on the frame
    me, partner = sats.index("s-0-0"), [sats.index("s-0-1"), sats.index("s-1-0")]
    switches = 0
    last = None  # the partner s-0-0's terminal last left
    for k in range(1, len(tl.offsets_s)):
        for old in (0, 1):
            if held[k - 1, old] and not held[k, old]:
                last = old
        for new in (0, 1):
            if held[k, new] and not held[k - 1, new] and last is not None:
                u, v = pos[k, partner[last]] - pos[k, me], pos[k, partner[new]] - pos[k, me]
                angle = math.degrees(math.acos(min(1.0, np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v))))
                need = math.ceil((acq_s + angle / rate_deg_s) / step_s - 1e-9)
                run = held[k:, new]
                length = int(np.argmin(run)) if not run.all() else len(run)
                if length > need:
                    col = [j_intra, j_inter][new]
                    assert (tl.cause[k:k + need, col] == ACQUISITION).all(), (k, angle)
                    assert tl.cause[k + need, col] == UP, (k, angle)
                    switches += last != new
    assert switches >= 4
    assert (tl.cause[:, [j_intra, j_inter]] == HANDOVER).any()
