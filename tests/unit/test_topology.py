"""The +Grid pattern, the Walker-star seam, the polar cut-off and explicit links, checked on physics."""

from __future__ import annotations

import numpy as np
import pytest

import lasernet
from lasernet.topology import INTER, INTRA, ISL, SEAM

from ..conftest import TOPOLOGIES


def test_plus_grid_gives_four_links_per_satellite_in_a_delta_shell():
    tl = lasernet.plan(lasernet.load_scenario(TOPOLOGIES / "kuiper-630.yaml"), duration_s=0)
    isl = tl.links.kind == ISL
    assert isl.sum() == 2 * 34 * 34
    degree = np.bincount(np.concatenate([tl.links.a[isl], tl.links.b[isl]]), minlength=tl.n_satellites)
    assert np.all(degree == 4)
    assert (tl.links.role[isl] == INTRA).sum() == (tl.links.role[isl] == INTER).sum() == 34 * 34


def test_wrap_pair_is_placed_exactly_like_every_other_inter_plane_pair():
    """A Walker delta shell is symmetric: shifting RAAN by 360/P and phase by 360F/(PS) maps plane p onto p+1 and
    the last plane onto plane 0 shifted by F slots. So with the right partner, a wrap link's range over an orbit
    is a time-shifted copy of any inner inter-plane link's: same mean, same extremes."""
    scenario = lasernet.load_scenario(TOPOLOGIES / "kuiper-630.yaml")
    tl = lasernet.plan(scenario, duration_s=5800, step_s=5)  # one orbit
    names = tl.node_names
    inter = np.flatnonzero(tl.links.role == INTER)
    is_wrap = np.array([names[tl.links.a[k]].startswith("kpr-33-") for k in inter])
    assert is_wrap.sum() == 34
    range_km = tl.delay_s[:, inter].astype(float) * 299792.458
    for stat in (np.mean, np.min, np.max):
        inner, wrap = stat(range_km[:, ~is_wrap], axis=0), stat(range_km[:, is_wrap], axis=0)
        assert np.median(wrap) == pytest.approx(np.median(inner), rel=2e-3)
    # A partner one slot off would be ~0.3 degrees of phase away: its mean range differs by several percent.
    assert np.ptp(np.mean(range_km[:, ~is_wrap], axis=0)) / np.mean(range_km) < 5e-3


@pytest.fixture(scope="module")
def iridium():
    scenario = lasernet.load_scenario(TOPOLOGIES / "iridium.yaml")
    return scenario, lasernet.plan(scenario, duration_s=1800, step_s=10)


def test_walker_star_seam_links_are_never_up_and_counter_rotate(iridium):
    scenario, tl = iridium
    seam = tl.links.role == SEAM
    assert seam.sum() == 11
    assert not tl.up[:, seam].any()
    assert np.all(tl.cause[:, seam] == lasernet.CAUSES.index("seam"))
    # Physics behind the seam: counter-rotating neighbours close at several km/s, co-rotating ones barely move.
    rate = lambda cols: np.median(np.abs(np.diff(tl.delay_s[:, cols], axis=0)) * 299792.458 / 10.0)  # noqa: E731
    inter = tl.links.role == INTER
    assert rate(seam) > 3 * rate(inter)
    assert rate(seam) > 5.0  # km/s


def test_polar_cutoff_switches_off_inter_plane_links_only(iridium):
    """Inter-plane links are down for 'polar' exactly when an end is above the cut-off latitude."""
    from skyfield.api import EarthSatellite
    from skyfield.framelib import itrs

    from lasernet import skydata
    from lasernet.orbits import build_satellites

    scenario, tl = iridium
    cutoff = scenario.isl.polar_cutoff_deg
    sats = build_satellites(scenario)
    ts = skydata.timescale()
    polar_code = lasernet.CAUSES.index("polar")
    inter = np.flatnonzero(tl.links.role == INTER)
    intra = np.flatnonzero(tl.links.role == INTRA)
    assert not np.any(tl.cause[:, intra] == polar_code)
    seen_polar = 0
    for step in range(0, len(tl.offsets_s), 20):
        t = skydata.times(tl.start_utc, np.array([tl.offsets_s[step]]))[0]
        xyz = np.array([EarthSatellite.from_satrec(s, ts).at(t).frame_xyz(itrs).km for s in sats.satrecs])
        lat = np.degrees(np.arctan2(xyz[:, 2], np.hypot(xyz[:, 0], xyz[:, 1])))
        high = np.maximum(np.abs(lat[tl.links.a[inter]]), np.abs(lat[tl.links.b[inter]])) > cutoff
        margin = np.minimum(np.abs(np.abs(lat[tl.links.a[inter]]) - cutoff),
                            np.abs(np.abs(lat[tl.links.b[inter]]) - cutoff)) > 0.01
        assert np.array_equal((tl.cause[step, inter] == polar_code)[margin], high[margin])
        seen_polar += int(high.sum())
    assert seen_polar > 0


def test_explicit_links_and_unknown_satellite_error(write_scenario):
    base = """
        name: explicit
        epoch: 2026-01-01T00:00:00Z
        constellation:
          shells: [{name: s, planes: 1, sats_per_plane: 12, altitude_km: 600, inclination_deg: 50}]
        isl:
          pattern: explicit
          links: [[s-0-0, s-0-1], [s-0-1, LAST]]
        """
    tl = lasernet.plan(lasernet.load_scenario(write_scenario(base.replace("LAST", "s-0-2"))), duration_s=0)
    assert tl.links.names == ["s-0-0~s-0-1", "s-0-1~s-0-2"]
    with pytest.raises(lasernet.ScenarioError, match=r"isl\.links\[1\]: unknown satellite 's-0-99'"):
        lasernet.plan(lasernet.load_scenario(write_scenario(base.replace("LAST", "s-0-99"), "bad.yaml")),
                      duration_s=0)


def test_earth_blocks_some_plus_grid_links_of_the_sparse_polar_shells():
    """In Starlink phase 1 only the sparse 97.6-degree shells have +Grid neighbours hidden by the Earth."""
    scenario = lasernet.load_scenario(TOPOLOGIES / "starlink-phase1.yaml")
    tl = lasernet.plan(scenario, duration_s=0)
    assert (tl.links.kind == ISL).sum() == 8816
    earth = tl.cause[0] == lasernet.CAUSES.index("earth")
    shells = {tl.node_names[a].split("-")[0] for a in tl.links.a[earth]}
    assert 150 < earth.sum() < 400
    assert shells <= {"d", "e"}


def test_formation_cluster_neighbours_are_spacing_apart():
    scenario = lasernet.load_scenario(TOPOLOGIES / "suncatcher.yaml")
    tl = lasernet.plan(scenario, duration_s=600, step_s=60)
    isl = tl.links.kind == ISL
    assert isl.sum() == 2 * 9 * 8
    range_km = tl.delay_s[:, isl] * 299792.458
    # Along-track neighbours stay at the spacing; across-track ones converge towards the poles (cos of latitude
    # of the node crossing), never beyond the spacing by more than J2's breathing.
    assert np.all(range_km < 0.2 * 1.05)
    assert np.median(range_km) == pytest.approx(0.2, rel=0.25)
    assert tl.up[:, isl].all()
