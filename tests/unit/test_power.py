"""Battery and power state per satellite: the plan's SoC is the closed-form energy balance, eclipses drain what
Skyfield's shadow durations say, states change at the documented thresholds without flapping, windows chain.

References, independent of lasernet's power code:

* constant supply and load: SoC(t) = SoC0 + (P_solar - P_load) t / C (charge and discharge limits applied to
  the difference), clipped to [soc_min, soc_max]; below soc_min the bus's unserved energy is P_load * time;
* a satellite whose array exactly carries its bus in sunlight draws from its battery only in the Earth's shadow:
  the energy drawn is the bus power times the time in shadow, which Skyfield's ``is_sunlit`` (point Sun,
  spherical Earth) gives, edges bisected to 1 ms; the penumbra (a few seconds, half lit on average) and the
  WGS84 shape move each edge by at most 2 s (tests/unit/test_sunlight.py).
"""

from __future__ import annotations

import numpy as np
import pytest

import lasernet
from lasernet import skydata, timeline
from lasernet.orbits import build_satellites
from lasernet.power import NOMINAL, OFF, THROTTLED

# A dawn-dusk sun-synchronous satellite: never in shadow in January (tests/unit/test_sunlight.py).
DAWN_DUSK = """
name: pw
epoch: 2026-01-01T00:00:00Z
constellation:
  shells:
    - {{name: sat, type: delta, planes: 1, sats_per_plane: {n}, altitude_km: 650, inclination_deg: 97.98,
       raan0_deg: 11}}
isl: {{pattern: none}}
power:
{power}
plan: {{duration_s: {duration}, step_s: 1}}
"""

INCLINED = DAWN_DUSK.replace("altitude_km: 650, inclination_deg: 97.98", "altitude_km: 1100, inclination_deg: 53")


def _plan(write_scenario, template, power: str, duration: float = 7200, n: int = 1, **kw):
    sc = lasernet.load_scenario(write_scenario(template.format(power=power, duration=duration, n=n)))
    return sc, lasernet.plan(sc, **kw)


def test_constant_discharge_follows_the_closed_form_then_clips_at_soc_min(write_scenario):
    # net -2000 W from 2000 Wh: 1/3600 of the battery per second, from 0.9 to soc_min 0.1 at t = 2880 s
    _, tl = _plan(write_scenario, DAWN_DUSK, "  - {solar_w: 1000, battery_wh: 2000, bus_w: 3000, soc_start: 0.9,"
                                             " soc_min: 0.1, off_below: 0.1, max_discharge_w: 5000}")
    assert np.all(tl.illumination == 1.0)
    t = tl.offsets_s
    expected = np.clip(0.9 + (1000 - 3000) * t / 3600 / 2000, 0.1, 1.0)
    assert np.allclose(tl.power.soc[:, 0], expected, atol=1e-6)
    # below soc_min the battery gives nothing and the bus's 2000 W beyond the array go unserved
    hit = 2880.0
    assert tl.power.deficit_wh[0] == pytest.approx(2000 * (t[-1] + 1 - hit - 1) / 3600, abs=2000 / 3600 * 1.01)


def test_constant_charge_is_limited_by_max_charge_w_and_stops_at_soc_max(write_scenario):
    _, tl = _plan(write_scenario, DAWN_DUSK, "  - {solar_w: 5000, battery_wh: 1000, bus_w: 1000, max_charge_w: 600,"
                                             " soc_start: 0.3, soc_max: 0.95}", duration=7200)
    t = tl.offsets_s
    expected = np.clip(0.3 + min(5000 - 1000, 600) * t / 3600 / 1000, 0.1, 0.95)
    assert np.allclose(tl.power.soc[:, 0], expected, atol=1e-6)
    assert tl.power.soc[-1, 0] == pytest.approx(0.95)


def _skyfield_shadow_s(sc, tl) -> tuple[float, int]:
    """Seconds satellite 0 spends in Skyfield's shadow (is_sunlit False) over the plan's window, and eclipses."""
    from skyfield.api import EarthSatellite

    ts, eph = skydata.timescale(), skydata.ephemeris()
    es = EarthSatellite.from_satrec(build_satellites(sc).satrecs[0], ts)
    lit_at = lambda off: np.asarray(es.at(skydata.times(tl.start_utc, np.atleast_1d(off))).is_sunlit(eph))  # noqa
    off = tl.offsets_s
    lit = lit_at(off)
    edges = [] if lit[0] else [float(off[0])]
    for k in np.flatnonzero(lit[1:] != lit[:-1]):
        lo, hi = off[k], off[k + 1]
        while hi - lo > 1e-3:
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if bool(lit_at(mid)[0]) == bool(lit[k]) else (lo, mid)
        edges.append(0.5 * (lo + hi))
    if not lit[-1]:
        edges.append(float(off[-1]))
    return float(sum(b - a for a, b in zip(edges[::2], edges[1::2]))), len(edges) // 2


def test_eclipse_discharge_is_the_bus_power_times_skyfield_shadow_time(write_scenario):
    # the array exactly carries the bus in sunlight, so the battery pays for the shadow alone and never recharges
    sc, tl = _plan(write_scenario, INCLINED, "  - {solar_w: 1000, battery_wh: 100000, bus_w: 1000, soc_start: 1.0}",
                   duration=7200)
    shadow_s, eclipses = _skyfield_shadow_s(sc, tl)
    assert eclipses >= 1 and shadow_s > 1000
    drawn_wh = (1.0 - float(tl.power.soc[-1, 0])) * 100000
    assert drawn_wh == pytest.approx(1000 * shadow_s / 3600, abs=1000 * (4.0 * eclipses + 1) / 3600)
    # and the battery is drawn only while the plan sees the Sun (partly) hidden
    dsoc = np.diff(tl.power.soc[:, 0].astype(float))
    assert np.all(dsoc[tl.illumination[:-1, 0] == 1.0] == 0)
    assert np.all(dsoc[tl.illumination[:-1, 0] < 1.0] <= 0) and np.all(dsoc[tl.illumination[:-1, 0] == 0] < 0)


THRESHOLDS = ("  - {solar_w: 8000, battery_wh: 1500, bus_w: 1000, compute_w: 6000, max_discharge_w: 10000,"
              " soc_start: 0.6, soc_min: 0.05, off_below: 0.2, on_above: 0.3, throttle_below: 0.4,"
              " resume_above: 0.5, throttle_factor: 0.25}")


def test_power_states_change_at_the_documented_thresholds_with_hysteresis(write_scenario):
    _, tl = _plan(write_scenario, INCLINED, THRESHOLDS, duration=14000)
    soc, state = tl.power.soc[:, 0].astype(float), tl.power.state[:, 0]
    # the documented rule, applied step by step to the plan's own SoC
    expected, prev = [], NOMINAL
    for s in soc:
        down = OFF if s < 0.2 else THROTTLED if s < 0.4 else NOMINAL
        up = NOMINAL if s >= 0.5 else THROTTLED if s >= 0.3 else OFF
        prev = max(min(prev, down), up)
        expected.append(prev)
    assert np.array_equal(state, np.array(expected))  # no supply limit binds here (max_discharge_w 10 kW)
    assert {NOMINAL, THROTTLED, OFF} <= set(state.tolist())  # the eclipses reach every state
    changes = np.flatnonzero(state[1:] != state[:-1]) + 1
    assert len(changes) <= 4 * 3  # two orbits and change: a handful of changes, no flapping at a threshold
    # the CPU quota the live half applies is the documented factor of each state
    assert set(zip(state.tolist(), tl.cpu_quota[:, 0].tolist())) <= {(NOMINAL, 1.0), (THROTTLED, 0.25), (OFF, 0.0)}
    # the load follows the state: bus + quota * compute
    assert np.allclose(tl.power.load_w[:, 0], 1000 + 6000 * tl.cpu_quota[:, 0])
    st, quota = tl.power_at(float(tl.offsets_s[changes[0]]) + 0.5)
    assert st[0] == state[changes[0]] and quota[0] == tl.cpu_quota[changes[0], 0]


def test_power_events_and_csv_carry_states_and_causes(write_scenario, tmp_path):
    _, tl = _plan(write_scenario, INCLINED, THRESHOLDS, duration=7000)
    n = tl.write_events_csv(tmp_path / "events.csv")
    rows = [r.split(",") for r in (tmp_path / "events.csv").read_text().splitlines()[1:]]
    assert len(rows) == n
    power_rows = [r for r in rows if r[4] == "node" and r[5] in ("nominal", "throttled", "off")]
    assert power_rows[0][5] == "nominal" and power_rows[0][6] == ""
    assert {r[6] for r in power_rows[1:]} <= {"low-battery", "recharged"} and len(power_rows) > 2
    assert tl.summary()["power"]["ever"]["throttled"] == 1
    rows_pw = tl.write_power_csv(tmp_path / "power.csv")
    lines = (tmp_path / "power.csv").read_text().splitlines()
    assert lines[0] == "time_utc,satellite,illumination,soc,state,cpu_quota,solar_w,load_w"
    assert rows_pw == len(tl.offsets_s) == len(lines) - 1


def test_windows_chain_the_battery_into_one_continuous_plan(write_scenario):
    sc = lasernet.load_scenario(write_scenario(INCLINED.format(power=THRESHOLDS, duration=3000, n=2)))
    full = timeline.plan(sc, duration_s=7000, step_s=1)
    w = timeline.plan(sc, duration_s=500, step_s=1)
    k0 = 0
    while k0 < 7000:
        assert np.array_equal(w.power.soc, full.power.soc[k0:k0 + len(w.offsets_s)])
        assert np.array_equal(w.power.state, full.power.state[k0:k0 + len(w.offsets_s)])
        k0 += len(w.offsets_s) - 1
        w = timeline.plan_next(sc, w, 500)


def test_save_and_load_keep_the_power_plan(write_scenario, tmp_path):
    _, tl = _plan(write_scenario, INCLINED, THRESHOLDS, duration=300)
    tl.save(tmp_path / "t.npz")
    back = lasernet.Timeline.load(tmp_path / "t.npz")
    assert np.array_equal(back.power_state, tl.power_state) and np.array_equal(back.cpu_quota, tl.cpu_quota)


def test_without_a_power_section_every_satellite_is_nominal(write_scenario):
    sc = lasernet.load_scenario(write_scenario(INCLINED.format(power="  []", duration=60, n=1)))
    tl = lasernet.plan(sc)
    assert tl.power is None and np.all(tl.power_state == NOMINAL) and np.all(tl.cpu_quota == 1)
    assert tl.summary()["power"] == {}


@pytest.mark.parametrize("power, field, says", [
    ("  - {solar_w: 1, battery_wh: 1, off_below: 0.5}", "power[0].off_below", "must be below on_above"),
    ("  - {solar_w: 1, battery_wh: 1, on_above: 0.2}", "power[0].on_above", "must be above off_below"),
    ("  - {solar_w: 1, battery_wh: 1, satellites: 'x-*'}", "power[0].satellites", "matches no satellite"),
    ("  - {solar_w: 1, battery_wh: 1}\n  - {solar_w: 1, battery_wh: 1, satellites: 'sat-0-0'}",
     "power[1].satellites", "already in power[0]"),
    ("  - {battery_wh: 1}", "power[0].solar_w", "is required"),
    ("  - {solar_w: 1, battery_wh: 1, soc_start: 0.01}", "power[0].soc_start", "between soc_min"),
])
def test_bad_power_sections_name_the_field(write_scenario, power, field, says):
    with pytest.raises(lasernet.ScenarioError) as err:
        lasernet.load_scenario(write_scenario(INCLINED.format(power=power, duration=60, n=1)))
    assert f": {field}: " in str(err.value) and says in str(err.value)


def test_lasernet_plan_writes_power_csv(write_scenario, tmp_path):
    from click.testing import CliRunner

    from lasernet.cli import main

    path = write_scenario(INCLINED.format(power=THRESHOLDS, duration=120, n=2))
    out = tmp_path / "power.csv"
    result = CliRunner().invoke(main, ["plan", str(path), "--power", str(out), "--events", str(tmp_path / "e.csv")])
    assert result.exit_code == 0, result.output
    assert "power (2 satellites)" in result.output
    assert len(out.read_text().splitlines()) == 1 + 121 * 2


@pytest.mark.parametrize("until_s", [1000.05, 700.05])  # ends in the third window; in the second, the third planned
def test_a_live_runs_power_csv_joins_its_windows_and_shows_the_quota_applied(write_scenario, tmp_path, until_s):
    """PowerLog (a live run's power.csv) over three chained 400 s windows, fed the quota changes a tick every
    0.1 s would apply to a satellite with servers, the windows the clock left released as the run releases them:
    the rows equal one continuous plan's up to the run's end (each step once, the windows' shared steps too, none
    of a window planned ahead past the end), ``cpu_quota_applied`` equals the plan's quota where servers are and
    is empty where none are."""
    import csv

    from lasernet.measure.powerlog import COLUMNS, PowerLog

    sc = lasernet.load_scenario(write_scenario(INCLINED.format(power=THRESHOLDS, duration=1200, n=2)))
    full = timeline.plan(sc, duration_s=1200, step_s=1)
    windows = [timeline.plan(sc, duration_s=400, step_s=1)]
    for _ in range(2):
        windows.append(timeline.plan_next(sc, windows[-1], 400))
    offsets = [(w.start_utc - full.start_utc).total_seconds() for w in windows]
    assert int(np.count_nonzero(np.diff(full.cpu_quota[:1001, 0]))) >= 1  # the quota changes in the span
    log_ = PowerLog(tmp_path / "power.csv", full.start_utc, served_satellites=[0])
    ticks = np.arange(0.0, until_s, 0.1)
    for i, w in enumerate(windows):
        end_s = offsets[i + 1] if i + 1 < len(windows) else np.inf
        for t_s in ticks[(ticks >= offsets[i]) & (ticks < end_s)]:
            _, quota = w.power_at(t_s - offsets[i])
            log_.applied(t_s, 0, round(float(quota[0]), 6))
        if end_s <= ticks[-1]:
            log_.released(w)  # the clock left it: written by the thread while "ticks" go on
    held = [(o, w) for o, w in zip(offsets, windows) if o + w.offsets_s[-1] > ticks[-1]]
    steps = int(ticks[-1]) + 1
    assert log_.close(held, float(ticks[-1])) == steps * 2
    rows = list(csv.reader((tmp_path / "power.csv").open()))
    assert tuple(rows[0]) == COLUMNS
    rows = rows[1:]
    assert [float(r[1]) for r in rows[::2]] == list(range(steps))  # each step once, in order
    assert [r[:1] + r[2:9] for r in rows] == full.power_rows(range(steps), full.power_satellites())
    assert [r[9] for r in rows[::2]] == [f"{q:.3g}" for q in full.cpu_quota[:steps, 0].tolist()]
    assert {r[9] for r in rows[1::2]} == {""}  # sat-0-1 carries no server
