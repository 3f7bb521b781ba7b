"""Radiation upsets: as many as the rate integral predicts (Poisson bounds), more per hour inside the South
Atlantic Anomaly, the same for the same seed whatever the windows, and a router reboot takes the links down.

The reference for where the satellites are over the SAA is independent of lasernet: Skyfield's positions of the
same SGP4 records in the ITRS frame, their geocentric latitude and longitude, and matplotlib's point-in-polygon
(``matplotlib.path.Path.contains_points``) on the Fermi GBM polygon.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import lasernet
from lasernet import skydata, timeline
from lasernet.orbits import build_satellites
from lasernet.spec.faults import GBM_SAA_POLYGON

SHELL = """
name: up
epoch: 2026-01-01T00:00:00Z
seed: {seed}
constellation:
  shells:
    - {{name: sat, type: delta, planes: 2, sats_per_plane: 4, altitude_km: 550, inclination_deg: 53}}
isl: {{pattern: {pattern}}}
upsets: {{rate_per_day: {base}, saa_rate_per_day: {saa}, router_reboot_s: {reboot}}}
plan: {{duration_s: {duration}, step_s: {step}}}
"""


def _scenario(write_scenario, seed=7, base=24.0, saa=2400.0, reboot=0, duration=86400, step=10, pattern="none",
              shell=SHELL):
    return lasernet.load_scenario(write_scenario(shell.format(seed=seed, base=base, saa=saa, reboot=reboot,
                                                              duration=duration, step=step, pattern=pattern)))


def _skyfield_in_saa(sc, tl) -> np.ndarray:
    """(T, N) inside the GBM polygon, from Skyfield's ITRS positions and matplotlib's point-in-polygon."""
    from matplotlib.path import Path as Polygon
    from skyfield.api import EarthSatellite
    from skyfield.framelib import itrs

    ts = skydata.timescale()
    t = skydata.times(tl.start_utc, tl.offsets_s)
    poly = Polygon([(lon, lat) for lat, lon in GBM_SAA_POLYGON])
    out = np.zeros((len(tl.offsets_s), tl.n_satellites), dtype=bool)
    for n, rec in enumerate(build_satellites(sc).satrecs):
        x, y, z = EarthSatellite.from_satrec(rec, ts).at(t).frame_xyz(itrs).km
        lat = np.degrees(np.arctan2(z, np.hypot(x, y)))
        lon = np.degrees(np.arctan2(y, x))
        out[:, n] = poly.contains_points(np.column_stack([lon, lat]))
    return out


def test_upset_counts_match_the_rate_integral_and_rise_in_the_saa(write_scenario):
    sc = _scenario(write_scenario)
    tl = lasernet.plan(sc)
    inside = _skyfield_in_saa(sc, tl)
    assert 0.02 < inside.mean() < 0.3  # a 53-degree orbit crosses the anomaly several times a day
    dt = tl.step_s
    t_in, t_out = inside.sum() * dt, (~inside).sum() * dt  # satellite-seconds, each step lasting step_s
    expected_in, expected_out = 2400 / 86400 * t_in, 24 / 86400 * t_out
    u = tl.upsets
    assert tl.fault_summary()["upsets"]["expected"] == pytest.approx(expected_in + expected_out, rel=0.01)
    n_in, n_out = int(u.in_saa.sum()), int((~u.in_saa).sum())
    for n, mu in ((n_in, expected_in), (n_out, expected_out)):
        assert abs(n - mu) < 4 * math.sqrt(mu) + 1, (n, mu)  # Poisson: 4 standard deviations
    assert n_in / t_in > 20 * n_out / t_out  # per unit time, the anomaly upsets ~100 times more
    # each upset happens where its cause says: inside the SAA by Skyfield's reckoning (or on its edge)
    agree = inside[u.step, u.satellite] == u.in_saa
    assert agree.mean() > 0.98


def test_the_same_seed_gives_the_same_upsets_and_another_seed_others(write_scenario):
    a = lasernet.plan(_scenario(write_scenario, duration=20000))
    b = lasernet.plan(_scenario(write_scenario, duration=20000))
    c = lasernet.plan(_scenario(write_scenario, seed=8, duration=20000))
    assert len(a.upsets.step) > 20
    assert np.array_equal(a.upsets.offset_s, b.upsets.offset_s)
    assert np.array_equal(a.upsets.satellite, b.upsets.satellite)
    assert not (len(a.upsets.step) == len(c.upsets.step) and np.array_equal(a.upsets.offset_s, c.upsets.offset_s))


def test_windows_draw_the_upsets_of_one_long_plan(write_scenario):
    sc = _scenario(write_scenario, duration=6000, step=1, reboot=30)
    full = timeline.plan(sc, duration_s=6000, step_s=1)
    w = timeline.plan(sc, duration_s=700, step_s=1)
    got_off, got_sat, k0 = [], [], 0
    while k0 < 6000:
        got_off.append(w.upsets.offset_s + k0)
        got_sat.append(w.upsets.satellite)
        part = full.upsets.rebooting[k0:k0 + len(w.offsets_s)]
        assert np.array_equal(w.upsets.rebooting[:len(part)], part)
        k0 += len(w.offsets_s) - 1
        w = timeline.plan_next(sc, w, 700)
    off, sat = np.concatenate(got_off), np.concatenate(got_sat)
    keep = off < full.offsets_s[-1] + 1  # the last window reaches past the long plan's end
    assert len(full.upsets.step) > 10
    assert np.array_equal(sat[keep], full.upsets.satellite)
    assert np.allclose(off[keep], full.upsets.offset_s, rtol=0, atol=1e-6)


def test_a_router_reboot_takes_the_satellites_links_down_then_they_reacquire(write_scenario, tmp_path):
    grid = SHELL.replace("planes: 2, sats_per_plane: 4, altitude_km: 550", "planes: 8, sats_per_plane: 8, "
                         "altitude_km: 1100").replace("isl: {{", "terminals: {{isl: {{max_range_km: 8000, "
                                                      "acquisition_s: 5}}}}\nisl: {{")
    sc = _scenario(write_scenario, base=10, saa=10, reboot=30, duration=1500, step=1, pattern="plus-grid",
                   shell=grid)
    tl = lasernet.plan(sc)
    u = tl.upsets
    assert len(u.step) >= 2

    def alone(j):  # an upset with no other on either end of the satellite's links within 60 s after it
        return not np.any((np.abs(u.offset_s - u.offset_s[j]) < 60) & (np.arange(len(u.step)) != j))

    j = next(j for j in range(len(u.step)) if alone(j) and u.offset_s[j] < tl.offsets_s[-1] - 60)
    n, at = int(u.satellite[j]), float(u.offset_s[j])
    links = np.flatnonzero((tl.links.a == n) | (tl.links.b == n))
    first = math.ceil(at)  # the first step starting at or after the upset
    was_up = tl.up[first - 1, links]
    assert was_up.any()
    assert not tl.up[first:first + 30][:, links].any()
    assert np.all(tl.cause[first:first + 30][:, links[was_up]] == timeline.REBOOT)
    # then acquisition (5 s) before the links carry traffic again
    end = first + 30
    back = links[was_up & tl.up[end + 5, links]]
    assert len(back)
    assert np.all(tl.cause[end:end + 5][:, back] == timeline.ACQUISITION)
    tl.write_events_csv(tmp_path / "events.csv")
    text = (tmp_path / "events.csv").read_text()
    assert ",node,reboot,upset" in text and ",down,reboot," in text


@pytest.mark.parametrize("section, field, says", [
    ("{rate_per_day: -1}", "upsets.rate_per_day", "between 0"),
    ("{saa: {lat_deg: [0, 1], lon_deg: [0, 1]}}", "upsets.saa", "3 or more"),
    ("{bogus: 1}", "upsets.bogus", "unknown field"),
])
def test_bad_upsets_sections_name_the_field(write_scenario, section, field, says):
    text = SHELL.format(seed=1, base=0, saa=0, reboot=0, duration=60, step=1, pattern="none")
    text = text.replace("upsets: {rate_per_day: 0, saa_rate_per_day: 0, router_reboot_s: 0}", f"upsets: {section}")
    with pytest.raises(lasernet.ScenarioError) as err:
        lasernet.load_scenario(write_scenario(text))
    assert f": {field}: " in str(err.value) and says in str(err.value)


def test_a_saved_plan_keeps_its_upsets(write_scenario, tmp_path):
    tl = lasernet.plan(_scenario(write_scenario, duration=3000, step=1, reboot=30))
    tl.save(tmp_path / "plan.npz")
    back = lasernet.Timeline.load(tmp_path / "plan.npz")
    assert np.array_equal(back.upsets.offset_s, tl.upsets.offset_s)
    assert np.array_equal(back.upsets.rebooting, tl.upsets.rebooting)
    assert back.summary()["faults"] == tl.summary()["faults"]


def test_the_live_half_reads_each_ticks_upsets_once(write_scenario):
    tl = lasernet.plan(_scenario(write_scenario, duration=3000, step=1))
    ticks = np.arange(0, 3000.05, 0.1)
    got = np.concatenate([tl.upsets_between(a, b) for a, b in zip(ticks[:-1], ticks[1:])])
    inside = tl.upsets.offset_s <= ticks[-1]
    assert len(got) == inside.sum() > 5 and np.array_equal(got, tl.upsets.satellite[inside])


def test_reboots_drawn_in_a_windows_last_step_start_where_one_long_plan_starts_them(write_scenario):
    # ~1 upset every 5 s over 8 satellites and 7 s windows: many fall in a window's last step
    sc = _scenario(write_scenario, base=10000, saa=10000, reboot=12, duration=600, step=1)
    full = timeline.plan(sc, duration_s=600, step_s=1)
    w, k0, boundary_hits = timeline.plan(sc, duration_s=7, step_s=1), 0, 0
    while k0 < 600:
        part = full.upsets.rebooting[k0:k0 + len(w.offsets_s)]
        assert np.array_equal(w.upsets.rebooting[:len(part)], part), k0
        boundary_hits += int((w.upsets.step == len(w.offsets_s) - 1).sum())
        k0 += len(w.offsets_s) - 1
        w = timeline.plan_next(sc, w, 7)
    assert boundary_hits > 5


def test_a_stations_link_to_a_rebooting_satellite_is_down_and_the_station_keeps_it(write_scenario):
    from ..conftest import TOPOLOGIES

    text = (TOPOLOGIES / "mini.yaml").read_text().replace("include: [ground/", f"include: [{TOPOLOGIES}/ground/")
    text += "upsets: {rate_per_day: 60, saa_rate_per_day: 60, router_reboot_s: 30}\n"
    tl = lasernet.plan(lasernet.load_scenario(write_scenario(text)), duration_s=900)
    gsl = np.flatnonzero(tl.links.kind == 1)
    sat = tl.links.b[gsl]
    rebooting = tl.upsets.rebooting[:, sat]
    assert not tl.up[:, gsl][rebooting].any()
    why = tl.cause[:, gsl]
    assert (why == timeline.REBOOT).any()
    assert np.all(rebooting[why == timeline.REBOOT])  # reboot is the cause only while the satellite reboots
