"""Ground-link windows and handover choices against Skyfield's own pass finder and altaz, not against lasernet."""

from __future__ import annotations


import numpy as np
import pytest

import lasernet
from lasernet.topology import GSL

from ..conftest import DATA

START = "2014-01-21T00:00:00Z"


@pytest.fixture
def iss_scenario(write_scenario):
    (DATA / "iss.tle").read_text()
    return write_scenario(f"""
        name: iss-windows
        epoch: {START}
        constellation:
          tle: [{DATA / 'iss.tle'}]
        terminals:
          gsl: {{kind: rf, count: 1, max_range_km: 5000, acquisition_s: 0}}
        isl: {{pattern: none}}
        ground:
          stations:
            - {{name: boston, lat_deg: 42.3583, lon_deg: -71.0603, alt_m: 43, min_elevation_deg: 10}}
            - {{name: nairobi, lat_deg: -1.2864, lon_deg: 36.8172, alt_m: 1795, min_elevation_deg: 25}}
        """)


def test_ground_link_windows_match_skyfield_find_events(iss_scenario):
    """Every rise and set of the ISS over two stations in a day is within 2 s of Skyfield's find_events."""
    from skyfield.api import EarthSatellite, wgs84

    from lasernet import skydata
    from lasernet.spec.elements import read_elements
    from lasernet.spec.scenario import ElementsFile

    scenario = lasernet.load_scenario(iss_scenario)
    tl = lasernet.plan(scenario, duration_s=86400, step_s=1)
    (_, satrec), = read_elements(ElementsFile(DATA / "iss.tle", "tle"))
    ts = skydata.timescale()
    sat = EarthSatellite.from_satrec(satrec, ts)
    t0 = ts.utc(2014, 1, 21)
    t1 = ts.utc(2014, 1, 22)
    checked = 0
    for g, station in enumerate(scenario.ground):
        topos = wgs84.latlon(station.lat_deg, station.lon_deg, station.alt_m)
        times, kinds = sat.find_events(topos, t0, t1, altitude_degrees=station.min_elevation_deg)
        ref_rise = [(t.utc_datetime() - tl.start_utc).total_seconds() for t, k in zip(times, kinds) if k == 0]
        ref_set = [(t.utc_datetime() - tl.start_utc).total_seconds() for t, k in zip(times, kinds) if k == 2]
        cols = (tl.links.kind == GSL) & (tl.links.a == tl.n_satellites + g)
        up = tl.up[:, cols].any(axis=1)
        edges = np.flatnonzero(np.diff(up.astype(int)))
        rises = [tl.offsets_s[k + 1] for k in edges if up[k + 1]]
        sets = [tl.offsets_s[k] for k in edges if not up[k + 1]]
        assert len(rises) == len(ref_rise) >= 2, (station.name, rises, ref_rise)
        assert len(sets) == len(ref_set)
        # A 1 s step sees a rise at the first sample after it and a set at the last sample before it.
        assert np.all(np.abs(np.array(rises) - np.array(ref_rise)) <= 2.0), (rises, ref_rise)
        assert np.all(np.abs(np.array(sets) - np.array(ref_set)) <= 2.0), (sets, ref_set)
        checked += len(rises)
    assert checked >= 4


def _altaz_reference(scenario, tl, step):
    """(elevation_deg, range_km) of every satellite from every station at one step, by Skyfield's altaz."""
    from skyfield.api import EarthSatellite, wgs84

    from lasernet import skydata
    from lasernet.orbits import build_satellites

    sats = build_satellites(scenario)
    ts = skydata.timescale()
    t = skydata.times(tl.start_utc, np.array([tl.offsets_s[step]]))[0]
    out = np.zeros((len(scenario.ground), len(sats), 2))
    for g, st in enumerate(scenario.ground):
        topos = wgs84.latlon(st.lat_deg, st.lon_deg, st.alt_m)
        for n, satrec in enumerate(sats.satrecs):
            alt, _, distance = (EarthSatellite.from_satrec(satrec, ts) - topos).at(t).altaz()
            out[g, n] = alt.degrees, distance.km
    return out


def test_nearest_policy_takes_the_closest_visible_satellite(write_scenario):
    """At sampled steps, each station's link goes to the satellite Skyfield finds nearest above the mask."""
    path = write_scenario("""
        name: nearest
        epoch: 2026-01-01T00:00:00Z
        constellation:
          shells: [{name: s, planes: 6, sats_per_plane: 10, phasing: 1, altitude_km: 1000, inclination_deg: 53}]
        terminals:
          gsl: {kind: rf, count: 4, max_range_km: 5000, acquisition_s: 0}
        isl: {pattern: none}
        ground:
          defaults: {min_elevation_deg: 15, handover: nearest}
          stations:
            - {name: madrid, lat_deg: 40.4168, lon_deg: -3.7038}
            - {name: lagos, lat_deg: 6.5244, lon_deg: 3.3792}
        """)
    scenario = lasernet.load_scenario(path)
    tl = lasernet.plan(scenario, duration_s=1200, step_s=10)
    checked = 0
    for step in (0, 37, 80, 119):
        ref = _altaz_reference(scenario, tl, step)
        for g in range(len(scenario.ground)):
            cols = np.flatnonzero((tl.links.kind == GSL) & (tl.links.a == tl.n_satellites + g) & tl.up[step])
            visible = ref[g, :, 0] >= scenario.ground[g].min_elevation_deg
            if not visible.any():
                assert len(cols) == 0
                continue
            nearest = int(np.argmin(np.where(visible, ref[g, :, 1], np.inf)))
            assert [int(tl.links.b[c]) for c in cols] == [nearest]
            assert tl.delay_s[step, cols[0]] * 299792.458 == pytest.approx(ref[g, nearest, 1], abs=0.05)
            checked += 1
    assert checked >= 4


def test_longest_visible_keeps_its_satellite_until_it_sets(write_scenario):
    """longest-visible never hands over while its satellite is still usable, and hands over less than nearest."""
    text = """
        name: sticky
        epoch: 2026-01-01T00:00:00Z
        constellation:
          shells: [{name: s, planes: 6, sats_per_plane: 10, phasing: 1, altitude_km: 1000, inclination_deg: 53}]
        terminals:
          gsl: {kind: rf, count: 4, max_range_km: 5000, acquisition_s: 0}
        isl: {pattern: none}
        ground:
          defaults: {min_elevation_deg: 15, handover: POLICY}
          stations: [{name: madrid, lat_deg: 40.4168, lon_deg: -3.7038}]
        """
    counts = {}
    for policy in ("nearest", "longest-visible"):
        tl = lasernet.plan(lasernet.load_scenario(write_scenario(text.replace("POLICY", policy), f"{policy}.yaml")),
                           duration_s=7200, step_s=5)
        gsl = tl.links.kind == GSL
        downs = list(zip(*np.nonzero(tl.up[:-1, gsl] & ~tl.up[1:, gsl])))
        counts[policy] = len(downs)
        if policy == "longest-visible":
            for step, col in downs:
                cause = tl.cause[step + 1, np.flatnonzero(gsl)[col]]
                assert lasernet.CAUSES[cause] == "elevation", "handed over while still visible"
    assert counts["longest-visible"] < counts["nearest"]


def test_station_and_satellite_link_budgets_hold(write_scenario):
    """No station holds more than max_links and no satellite serves more stations than its GSL terminals."""
    path = write_scenario("""
        name: budget
        epoch: 2026-01-01T00:00:00Z
        constellation:
          shells: [{name: s, planes: 4, sats_per_plane: 6, phasing: 1, altitude_km: 1200, inclination_deg: 53}]
        terminals:
          gsl: {kind: rf, count: 1, max_range_km: 6000, acquisition_s: 0}
        isl: {pattern: none}
        ground:
          defaults: {min_elevation_deg: 5, max_links: 2, handover: nearest}
          stations:
            - {name: paris, lat_deg: 48.85, lon_deg: 2.35}
            - {name: london, lat_deg: 51.5, lon_deg: -0.12}
            - {name: brussels, lat_deg: 50.85, lon_deg: 4.35}
        """)
    tl = lasernet.plan(lasernet.load_scenario(path), duration_s=3600, step_s=10)
    gsl = np.flatnonzero(tl.links.kind == GSL)
    assert len(gsl) > 0
    up = tl.up[:, gsl]
    for node in np.unique(tl.links.a[gsl]):
        assert up[:, tl.links.a[gsl] == node].sum(axis=1).max() <= 2
    for sat in np.unique(tl.links.b[gsl]):
        assert up[:, tl.links.b[gsl] == sat].sum(axis=1).max() <= 1
    # Three stations close together compete for the same few satellites: budgets were binding at times.
    assert lasernet.CAUSES.index("handover") in tl.cause[:, gsl]
