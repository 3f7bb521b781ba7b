"""The report's orbital data-centre outputs: sunlight and power per plane, compute available, upsets on a
timeline, and the map's night side and shadowed satellites, each checked against a reference of its own.

References, independent of the code under test:

* sunlit satellites per plane: Skyfield's ``EarthSatellite.at(t).is_sunlit(eph)`` (a point Sun and a spherical
  Earth) for the same SGP4 records, counted per plane (the plane read from the satellite's name, ``sat-P-S``), at
  every step where the plan has no satellite in the penumbra (away from the shadow's edge, where the two models
  may disagree by up to 2 s, tests/unit/test_sunlight.py);
* power-state shares and compute: plain Python loops over the plan's arrays, with the compute of each satellite
  written out from the scenario's figures (compute_w + server_w per server) and the quota of each state from the
  documented rule (1 nominal, throttle_factor throttled, 0 off);
* the subsolar point: Skyfield's ``wgs84.subpoint_of`` of the Sun's geocentric position, and the NOAA solar
  position formula (declination and equation of time from the day of year, Spencer's Fourier series);
* the map: the satellites drawn in the umbra style are those whose plan illumination is 0, at the longitude and
  latitude of their Earth-fixed positions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math

import numpy as np
import pytest

import lasernet
from lasernet import geometry, skydata
from lasernet.measure import datacentre, plots
from lasernet.measure.report import build_report, map_figure
from lasernet.orbits import build_satellites
from lasernet.power import OFF, POWER_STATES, THROTTLED

from ..conftest import TOPOLOGIES
from .test_conjunctions import FORMATION  # two satellites 0.2 km apart, manoeuvring near the poles

# Three planes of four satellites at 1100 km, 53 deg: each crosses the Earth's shadow once an orbit (107 min),
# the planes at different times. Satellites sat-0-0 and sat-1-2 carry servers; upsets are frequent.
DC = """
name: dc
epoch: 2026-01-01T00:00:00Z
seed: 3
constellation:
  shells:
    - {name: sat, type: delta, planes: 3, sats_per_plane: 4, altitude_km: 1100, inclination_deg: 53}
isl: {pattern: none}
hosts:
  - {name: rack-a, attach: sat-0-0, cpus: 2}
  - {name: rack-b, attach: sat-1-2}
power:
  - {satellites: "sat-*", solar_w: 4000, battery_wh: 1000, bus_w: 500, compute_w: 2500, server_w: 300,
     soc_start: 0.6, throttle_factor: 0.25}
upsets: {rate_per_day: 200, saa_rate_per_day: 2000, router_reboot_s: 20}
plan: {duration_s: 6600, step_s: 10}
"""
COMPUTE_W = {"sat-0-0": 2500 + 300, "sat-1-2": 2500 + 300}  # the others: 2500
FACTOR = {"nominal": 1.0, "throttled": 0.25, "off": 0.0}
SERVER_CPUS = {"rack-a": ("sat-0-0", 2.0), "rack-b": ("sat-1-2", 1.0)}  # no cpus: limit: one CPU's worth


@pytest.fixture(scope="module")
def dc(tmp_path_factory):
    path = tmp_path_factory.mktemp("dc") / "scenario.yaml"
    path.write_text(DC)
    sc = lasernet.load_scenario(path)
    return sc, lasernet.plan(sc)


def _plane_of_name(name: str) -> str:
    shell, plane, _slot = name.split("-")
    return f"{shell}-{plane}"


def test_per_plane_sunlit_share_is_skyfields_is_sunlit_count(dc):
    from skyfield.api import EarthSatellite

    sc, tl = dc
    labels, plane = datacentre.plane_index(tl)
    names = tl.node_names[:tl.n_satellites]
    assert labels == ["sat-0", "sat-1", "sat-2"]
    assert [labels[p] for p in plane] == [_plane_of_name(n) for n in names]
    shares = datacentre.plane_shares(tl.illumination_state, plane, len(labels), 3)
    ts, eph = skydata.timescale(), skydata.ephemeris()
    sats = build_satellites(sc)
    t = skydata.times(tl.start_utc, tl.offsets_s)
    lit = np.stack([EarthSatellite.from_satrec(s, ts).at(t).is_sunlit(eph) for s in sats.satrecs], axis=1)
    clear = ~((tl.illumination > 0) & (tl.illumination < 1)).any(axis=1)  # no satellite in the penumbra
    mixed = clear & ~lit.all(axis=1) & lit.any(axis=1)
    assert clear.sum() > 0.9 * len(clear) and mixed.sum() > 100  # most steps, many with some in shadow
    for k in np.flatnonzero(clear):
        for p, label in enumerate(labels):
            members = [n for n, name in enumerate(names) if _plane_of_name(name) == label]
            expected = sum(bool(lit[k, n]) for n in members) / len(members)
            assert shares[k, p, geometry.SUNLIT] == expected, (k, label)
            assert shares[k, p, geometry.UMBRA] == 1 - expected, (k, label)


def test_power_state_shares_and_compute_available_match_plain_loops(dc):
    sc, tl = dc
    labels, plane = datacentre.plane_index(tl)
    names = tl.node_names[:tl.n_satellites]
    shares = datacentre.plane_shares(tl.power_state, plane, len(labels), 3)
    weights, unit = datacentre.compute_weights(tl, sc)
    available = datacentre.compute_allowed(tl.cpu_quota, weights)
    cpus = datacentre.server_cpus_planned(tl, sc)
    assert unit == "W" and weights.sum() == 12 * 2500 + 2 * 300
    states = POWER_STATES
    seen = set()
    for k in range(len(tl.offsets_s)):
        counts: dict[str, dict[str, int]] = {}
        total = 0.0
        for n, name in enumerate(names):
            state = states[int(tl.power_state[k, n])]
            seen.add(state)
            per = counts.setdefault(_plane_of_name(name), {s: 0 for s in states})
            per[state] += 1
            total += COMPUTE_W.get(name, 2500) * FACTOR[state]
        for p, label in enumerate(labels):
            for code, state in enumerate(states):
                assert shares[k, p, code] == counts[label][state] / 4
        assert available[k] == pytest.approx(total, rel=1e-6)
        server_total = sum(c * FACTOR[states[int(tl.power_state[k, names.index(sat)])]]
                           for sat, c in SERVER_CPUS.values())
        assert cpus[k] == pytest.approx(server_total, rel=1e-6)
    assert seen == set(states)  # the scenario does reach every state


def test_applied_server_cpus_replay_the_power_events_of_events_csv(dc):
    sc, tl = dc
    rows = [{"t_s": "12.000", "kind": "server", "what": "rack-a", "a": "rack-a", "b": "sat-0-0", "event": "throttled",
             "cause": "power", "detail": "cpus 0.5"},
            {"t_s": "15.000", "kind": "isl", "what": "x~y", "event": "down", "cause": "range", "detail": ""},
            {"t_s": "20.000", "kind": "server", "what": "rack-b", "a": "rack-b", "b": "sat-1-2", "event": "off",
             "cause": "power", "detail": "cpu factor 0"},
            {"t_s": "25.000", "kind": "server", "what": "rack-b", "a": "rack-b", "b": "sat-1-2",
             "event": "restart", "cause": "upset", "detail": ""},
            {"t_s": "30.000", "kind": "server", "what": "rack-a", "a": "rack-a", "b": "sat-0-0", "event": "nominal",
             "cause": "power", "detail": "cpus 2"}]
    t, total = datacentre.server_cpus_applied(tl, sc, rows, 40.0)
    np.testing.assert_array_equal(t, [0, 12, 20, 30, 40])
    np.testing.assert_array_equal(total, [3, 1.5, 0.5, 2, 2])
    faults = datacentre.fault_events(tl, datacentre.plane_index(tl)[1], rows, 40.0)
    np.testing.assert_array_equal(faults["applied"][0], [25.0])
    np.testing.assert_array_equal(faults["applied"][1], [1])  # sat-1-2 flies in plane sat-1


def test_fault_events_per_plane_are_the_plans_upsets(dc):
    _, tl = dc
    labels, plane = datacentre.plane_index(tl)
    end_s = 3000.0
    faults = datacentre.fault_events(tl, plane, [], end_s)
    names = tl.node_names
    u = tl.upsets
    for cause, in_saa in (("upset", False), ("upset-saa", True)):
        sel = (u.in_saa == in_saa) & (u.offset_s <= end_s)
        t, p = faults["planned"][cause]
        np.testing.assert_array_equal(np.sort(t), np.sort(u.offset_s[sel]))
        assert sorted(labels[i] for i in p) == sorted(_plane_of_name(names[n]) for n in u.satellite[sel])
        assert len(t) > 5


def _run_dir(tmp_path, scenario_text: str, end_s: float, events: str = ""):
    path = tmp_path / "scenario.yaml"
    path.write_text(scenario_text)
    sc = lasernet.load_scenario(path)
    tl = lasernet.plan(sc)
    tl.save(tmp_path / "plan.npz")
    (tmp_path / "run.json").write_text(json.dumps({"scenario": str(path), "scenario_name": sc.name}))
    (tmp_path / "events.csv").write_text("time_utc,t_s,kind,what,a,b,event,cause,delay_ms,detail\n" + events)
    (tmp_path / "ticks.csv").write_text("tick,t_s,cost_ms,overrun,link_changes,route_changes,links_ms,routes_ms\n"
                                        + "".join(f"{k},{k * 10.0:.3f},1.0,0,0,0,0.5,0.5\n"
                                                  for k in range(int(end_s / 10) + 1)))
    return sc, tl


def test_report_draws_the_data_centre_figures_from_the_run_directory(tmp_path):
    text = DC + "workload: {report: {map_at_s: [1200]}}\n"
    _run_dir(tmp_path, text, 3000.0, "2026-01-01T00:00:12.000Z,12.000,server,rack-a,rack-a,sat-0-0,throttled,"
                                     "power,,cpus 0.5\n")
    html = build_report(tmp_path).read_text()
    for name in ("sunlight", "power-states", "compute", "faults", "map-1200s"):
        png = (tmp_path / "plots" / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n", name
    assert "<h2>Sunlight and power</h2>" in html and "Compute available" in html
    assert "no power: section" not in html


def test_report_says_so_when_the_scenario_has_no_power_section(tmp_path):
    text = DC.split("power:")[0].replace("hosts:\n  - {name: rack-a, attach: sat-0-0, cpus: 2}\n"
                                         "  - {name: rack-b, attach: sat-1-2}\n", "")
    text += "plan: {duration_s: 600, step_s: 10}\nworkload: {report: {map_at_s: [0]}}\n"
    _run_dir(tmp_path, text, 600.0)
    html = build_report(tmp_path).read_text()
    assert (tmp_path / "plots" / "sunlight.png").exists()
    for name in ("power-states", "compute", "faults"):
        assert not (tmp_path / "plots" / f"{name}.png").exists(), name
    assert "The scenario has no power: section" in html and "no upsets: or collision: section" in html


# ---------------------------------------------------------------------------------------------------------------
# The map


def _noaa_subsolar_deg(when: dt.datetime) -> tuple[float, float]:
    """Subsolar latitude and longitude from NOAA's general solar position formulas (Spencer 1971 series)."""
    day = when.timetuple().tm_yday
    hours = when.hour + when.minute / 60 + when.second / 3600
    g = 2 * math.pi / 365 * (day - 1 + (hours - 12) / 24)
    eqtime_min = 229.18 * (0.000075 + 0.001868 * math.cos(g) - 0.032077 * math.sin(g) - 0.014615 * math.cos(2 * g)
                           - 0.040849 * math.sin(2 * g))
    decl = (0.006918 - 0.399912 * math.cos(g) + 0.070257 * math.sin(g) - 0.006758 * math.cos(2 * g)
            + 0.000907 * math.sin(2 * g) - 0.002697 * math.cos(3 * g) + 0.00148 * math.sin(3 * g))
    lon = -15 * (hours - 12 + eqtime_min / 60)
    return math.degrees(decl), (lon + 180) % 360 - 180


def _lon_diff(a: float, b: float) -> float:
    return abs((a - b + 180) % 360 - 180)


@pytest.mark.parametrize("when", ["2026-01-01T00:30:00Z", "2026-03-20T12:00:00Z", "2026-06-21T06:15:00Z",
                                  "2026-10-05T18:45:30Z"])
def test_subsolar_point_is_skyfields_and_noaas(when):
    from skyfield.api import wgs84

    moment = lasernet.parse_time(when)
    t = skydata.times(moment, np.zeros(1))
    lat, lon = (float(x[0]) for x in geometry.subsolar_point_deg(geometry.sun_itrs_km(t)))
    eph = skydata.ephemeris()
    sub = wgs84.subpoint_of((eph["sun"] - eph["earth"]).at(t[0]))
    assert abs(lat - sub.latitude.degrees) < 0.1 and _lon_diff(lon, sub.longitude.degrees) < 0.1
    noaa_lat, noaa_lon = _noaa_subsolar_deg(moment)
    assert abs(lat - noaa_lat) < 0.5 and _lon_diff(lon, noaa_lon) < 0.5  # the series' own accuracy: ~0.2 deg
    # day at the subsolar point, night at its antipode, the terminator 90 degrees away
    assert geometry.solar_elevation_deg(lat, lon, lat, lon) == pytest.approx(90)
    assert geometry.solar_elevation_deg(-lat, lon + 180, lat, lon) == pytest.approx(-90)
    on_terminator = lat - 90 if lat >= 0 else lat + 90  # 90 degrees along the subsolar meridian
    assert geometry.solar_elevation_deg(on_terminator, lon, lat, lon) == pytest.approx(0, abs=1e-9)


def test_map_shades_the_night_from_the_subsolar_point_and_draws_umbra_satellites_dark():
    from matplotlib.colors import to_rgba

    sc = dataclasses.replace(lasernet.load_scenario(TOPOLOGIES / "mini.yaml"), ground=(), probes=(), hosts=())
    when = lasernet.parse_time("2026-01-01T00:30:00Z")
    tl = lasernet.plan(sc, start=when, duration_s=0)
    fig = map_figure(sc, when, tl, 0.0)
    ax = fig.axes[0]
    (marker,) = [line for line in ax.lines if line.get_gid() == "subsolar"]
    sub_lon, sub_lat = float(marker.get_xdata()[0]), float(marker.get_ydata()[0])
    ref_lat, ref_lon = _noaa_subsolar_deg(when)
    assert abs(sub_lat - ref_lat) < 0.5 and _lon_diff(sub_lon, ref_lon) < 0.5
    # the night overlay: shaded at the antipode, clear at the subsolar point
    (night,) = [im for im in ax.images if im.get_array().ndim == 3]
    rgba = np.asarray(night.get_array())
    step = plots.NIGHT_GRID_DEG
    cell = lambda lat, lon: rgba[int((lat + 90) / step), int(((lon + 180) % 360) / step)]  # noqa: E731
    assert cell(sub_lat, sub_lon)[3] == 0 and cell(-sub_lat, sub_lon + 180)[3] > 0
    # satellites by illumination: umbra ones in the umbra style, where they are
    sats = build_satellites(sc)
    pos = sats.positions_km(skydata.times(when, np.zeros(1)))[0]
    lon = np.degrees(np.arctan2(pos[:, 1], pos[:, 0]))
    lat = np.degrees(np.arctan2(pos[:, 2], np.hypot(pos[:, 0], pos[:, 1])))
    drawn = {c.get_gid(): c for c in ax.collections if (c.get_gid() or "").startswith("satellites-")}
    for state, code in (("umbra", 0.0), ("sunlit", 1.0)):
        ours = tl.illumination[0] == code
        assert ours.sum() >= 5, state
        offsets = drawn[f"satellites-{state}"].get_offsets()
        np.testing.assert_allclose(np.sort(offsets[:, 0]), np.sort(lon[ours]), atol=1e-9)
        np.testing.assert_allclose(np.sort(offsets[:, 1]), np.sort(lat[ours]), atol=1e-9)
        face = drawn[f"satellites-{state}"].get_facecolor()[0]
        np.testing.assert_allclose(face, to_rgba(plots.SAT_ILLUMINATION_STYLE[state]["color"]))
    assert to_rgba(plots.SAT_ILLUMINATION_STYLE["umbra"]["color"]) != \
        to_rgba(plots.SAT_ILLUMINATION_STYLE["sunlit"]["color"])
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_shipped_suncatcher_in_june_is_throttled_per_plane_while_in_the_umbra(tmp_path):
    sc = dataclasses.replace(lasernet.load_scenario(TOPOLOGIES / "suncatcher.yaml"), ground=())
    tl = lasernet.plan(sc, start="2026-06-21T00:00:00Z", duration_s=6000, step_s=10)
    labels, plane = datacentre.plane_index(tl)
    assert labels == [f"tpu-{p}" for p in range(9)]
    light = datacentre.plane_shares(tl.illumination_state, plane, 9, 3)
    power = datacentre.plane_shares(tl.power_state, plane, 9, 3)
    umbra = light[:, :, geometry.UMBRA] == 1.0
    assert umbra.any(axis=0).all()  # the cluster flies through the June shadow together
    # no compute is switched off, it is throttled in the umbra (the 10 kW discharge limit cannot carry 17 kW)
    assert np.all(power[:, :, OFF] == 0)
    assert np.all(power[umbra][:, THROTTLED] == 1.0)
    weights, _ = datacentre.compute_weights(tl, sc)
    available = datacentre.compute_allowed(tl.cpu_quota, weights)
    assert available.max() == pytest.approx(81 * 15000) and available.min() == pytest.approx(81 * 15000 / 2)
    fig = plots.state_shares_per_plane(tl.offsets_s, labels, power, POWER_STATES,
                                       plots.POWER_COLORS, "power state")
    assert len(fig.axes) == 9
    assert plots.save_png(fig, tmp_path / "p.png")[:4] == b"\x89PNG"


def test_manoeuvres_are_on_the_timeline_in_the_plane_of_the_satellite_that_moves(write_scenario):
    tl = lasernet.plan(lasernet.load_scenario(write_scenario(FORMATION)))
    labels, plane = datacentre.plane_index(tl)
    c = tl.conjunctions
    assert c.reported.sum() >= 2
    faults = datacentre.fault_events(tl, plane, [], 6000.0)
    assert set(faults["planned"]) == {"conjunction"}
    t, p = faults["planned"]["conjunction"]
    moving = [tl.node_names[n] for n in c.manoeuvres[c.reported]]
    np.testing.assert_allclose(np.sort(t), np.sort(np.maximum(c.start_s[c.reported], 0.0)))
    assert sorted(labels[i] for i in p) == sorted(_plane_of_name(name) for name in moving)
    fig = plots.fault_timeline(labels, faults["planned"], faults["applied"], 6000.0, datacentre.FAULT_CAUSES)
    (label,) = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert label == f"collision-avoidance manoeuvre ({int(c.reported.sum())})"
    plots.save_png(fig)
