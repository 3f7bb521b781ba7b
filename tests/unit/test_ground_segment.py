"""The ground segment beyond one optical terminal per link: make-before-break handover, RF fallback, site diversity.

Each behaviour is checked against a per-step Python loop written here from the documented rule, fed with what a
plainer plan of the same sky shows (which satellite a ``nearest`` station takes at each step with no acquisition
wait, which it could use, when its sky is clouded): nothing of the new code computes the references. Then a run
planned in windows must equal one continuous plan with all three on (the RF bearer and the serving station
included), and the scenario refuses what makes no sense in one line.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import numpy as np
import pytest

import lasernet
from lasernet import timeline, weather
from lasernet.errors import ScenarioError
from lasernet.timeline import ACQUISITION, CLOUD, GSL, HANDOVER, STANDBY, UP

ACQ_S = 10.0
SHELL = """
name: ground-segment
epoch: 2026-01-01T00:00:00Z
seed: {seed}
constellation:
  shells: [{{name: sat, type: delta, planes: 8, sats_per_plane: 8, phasing: 1, altitude_km: 1100,
             inclination_deg: 53}}]
terminals:
  gsl: {{count: 2, max_range_km: 3500, acquisition_s: {acq}, sun_exclusion_deg: 0, data_rate_bps: 10.0e+9}}
isl: {{pattern: none}}
ground:
{clouds}  defaults: {{min_elevation_deg: 10, max_links: 1, handover: nearest}}
  stations:
{stations}
"""


def scenario(write_scenario, stations: str, acq: float = ACQ_S, clouds: str = "", seed: int = 3, extra: str = ""):
    text = SHELL.format(seed=seed, acq=acq, clouds=clouds, stations=stations) + extra
    return lasernet.load_scenario(write_scenario(text, f"s{abs(hash(text))}.yaml"))


def station_cols(tl, g: int) -> np.ndarray:
    return np.flatnonzero((tl.links.kind == GSL) & (tl.links.a == tl.n_satellites + g))


def chosen_and_usable(base, g: int = 0):
    """From a plan with no acquisition wait: the satellite the station holds at each step (-1: none) and, per
    satellite, the steps its optical terminal could use it (held, or usable but not chosen: cause handover)."""
    cols = station_cols(base, g)
    T = len(base.offsets_s)
    chosen = np.full(T, -1)
    usable = {}
    for j in cols:
        sat = int(base.links.b[j])
        chosen[base.up[:, j]] = sat
        usable[sat] = base.up[:, j] | (base.cause[:, j] == HANDOVER)
    return chosen, usable


def connected(tl, g: int = 0) -> np.ndarray:
    return tl.up[:, station_cols(tl, g)].any(axis=1)


# ---------------------------------------------------------------------------------------------------------------
# Make before break

def test_two_terminals_hand_over_without_a_gap_and_one_terminal_loses_exactly_the_acquisition_time(write_scenario):
    one = "    - {name: gs, lat_deg: 40, lon_deg: -75}"
    two = "    - {name: gs, lat_deg: 40, lon_deg: -75, terminals: 2}"
    base = lasernet.plan(scenario(write_scenario, one, acq=0), duration_s=1800, step_s=1)
    chosen, usable = chosen_and_usable(base)
    a = int(ACQ_S)  # steps of acquisition at 1 s steps
    T = len(chosen)
    # The reference, step by step: a satellite taken at step k waits a steps (one terminal), or a minus the steps
    # before k during which it was usable, at most a (two: the spare terminal acquired it then); and with two the
    # satellite released stays up while it is usable and the new one has not carried traffic at the step before.
    want_one, want_two = np.zeros(T, bool), np.zeros(T, bool)
    start = 0
    handovers = []
    for t in range(T):
        if t > 0 and chosen[t] != chosen[t - 1]:
            start = t
            if chosen[t] >= 0 and chosen[t - 1] >= 0:
                handovers.append(t)
        if chosen[t] < 0:
            continue
        early = 0
        while start > 0 and early < a and start - early - 1 >= 0 and usable[chosen[t]][start - early - 1]:
            early += 1
        want_one[t] = start == 0 or t - start >= a
        want_two[t] = start == 0 or t - start + early >= a
    held_up = want_two.copy()
    old = -1
    for t in range(1, T):
        if chosen[t] != chosen[t - 1]:
            old = chosen[t - 1] if chosen[t - 1] >= 0 and held_up[t - 1] else -1
        new_waits = chosen[t] >= 0 and not (chosen[t] == chosen[t - 1] and held_up[t - 1])
        if old >= 0 and old != chosen[t] and new_waits and usable[old][t]:
            want_two[t] = True
        else:
            old = -1
    assert len(handovers) >= 3
    got_one = connected(lasernet.plan(scenario(write_scenario, one), duration_s=1800, step_s=1))
    two_tl = lasernet.plan(scenario(write_scenario, two), duration_s=1800, step_s=1)
    got_two = connected(two_tl)
    assert np.array_equal(got_one, want_one)
    assert np.array_equal(got_two, want_two)
    for k in handovers:  # with one terminal the gap is the acquisition time exactly; with two there is none
        assert got_one[k - 1] and not got_one[k:k + a].any() and got_one[k + a], k
        assert got_two[k - 1:k + a + 1].all(), k
        up = two_tl.up[:, station_cols(two_tl, 0)]
        assert up[k].sum() == 2 and up[k - 1].sum() == 1 and up[k + 1].sum() == 1, k  # old released a step late


def test_the_spare_terminal_acquires_the_next_satellite_while_the_current_one_carries_traffic(write_scenario):
    two = "    - {name: gs, lat_deg: 40, lon_deg: -75, terminals: 2}"
    tl = lasernet.plan(scenario(write_scenario, two), duration_s=1800, step_s=1)
    cols = station_cols(tl, 0)
    up, cause = tl.up[:, cols], tl.cause[:, cols]
    k = next(t for t in range(1, len(up)) if (up[t] & ~up[t - 1]).any() and up[t - 1].any())  # a handover
    new = int(np.flatnonzero(up[k] & ~up[k - 1])[0])
    assert (cause[k - int(ACQ_S):k, new] == ACQUISITION).all()  # acquiring on the spare terminal ...
    assert (up[k - int(ACQ_S):k].sum(axis=1) == 1).all()  # ... while the old link is up


# ---------------------------------------------------------------------------------------------------------------
# RF fallback

CLOUDY = "  clouds: {cloud_free: 0.5, correlation_s: 200, correlation_km: 10}\n"


def test_rf_carries_a_clouded_link_at_its_rate_and_the_laser_reacquires_when_the_cloud_passes(write_scenario, tmp_path):
    plain = "    - {name: gs, lat_deg: 40, lon_deg: -75}"
    rf = "    - {name: gs, lat_deg: 40, lon_deg: -75, rf: {rate_mbps: 100, max_range_km: 3500}}"
    base = lasernet.plan(scenario(write_scenario, plain, acq=0), duration_s=1800, step_s=1)
    chosen, _ = chosen_and_usable(base)  # RF reaches what the laser does (same mask and range): the same choice
    sc = scenario(write_scenario, rf, clouds=CLOUDY)
    cloudy = weather.clouded(weather.of(sc), len(chosen), 1.0)[0][:, 0]
    assert 0.2 < cloudy.mean() < 0.8
    # Reference: the laser is up once clear and held for ACQ_S in a row (from the start: already), else RF.
    want_rf = np.zeros(len(chosen), bool)
    run: dict[int, float] = {}
    for t, sat in enumerate(chosen.tolist()):
        assert sat >= 0
        before = np.inf if t == 0 else run.get(sat, 0.0)  # a link feasible at the start counts as acquired
        optical = not cloudy[t] and before >= ACQ_S
        want_rf[t] = not optical
        run = {sat: before + 1 if not cloudy[t] else 0.0}  # only the held pair's laser runs
    tl = lasernet.plan(sc, duration_s=1800, step_s=1)
    cols = station_cols(tl, 0)
    assert np.array_equal(connected(tl), np.ones(len(chosen), bool))  # never down: RF covers every cloud
    link = {int(tl.links.b[j]): j for j in cols}
    idx = np.array([link[s] for s in chosen])
    on_rf = tl.on_rf[np.arange(len(chosen)), idx]
    assert np.array_equal(on_rf, want_rf)
    assert tl.up[np.arange(len(chosen)), idx].all()
    rates = np.array([tl.rate_at(float(t))[idx[t]] for t in range(len(chosen))])
    assert np.array_equal(rates, np.where(want_rf, 100e6, 10e9))
    why = tl.rf_cause[np.arange(len(chosen)), idx][want_rf]
    assert set(np.unique(why).tolist()) <= {CLOUD, ACQUISITION} and (why == CLOUD).sum() == (cloudy & want_rf).sum()
    # events, per link: an rf row where a link is (or comes up) on RF, an optical row where it returns to the laser
    same = np.r_[False, idx[1:] == idx[:-1]]
    was_rf = np.r_[False, want_rf[:-1]]
    n_rf = int((want_rf & ~(same & was_rf)).sum())
    n_optical = int((~want_rf & same & was_rf).sum())
    tl.write_events_csv(tmp_path / "events.csv")
    text = (tmp_path / "events.csv").read_text()
    assert text.count(",gsl,rf,") == n_rf and text.count(",gsl,optical,") == n_optical
    assert ",gsl,rf,cloud," in text
    summary = tl.summary()["gsl"]["rf"]
    assert summary["link_steps"] == want_rf.sum() and summary["returns_to_optical"] == n_optical


def test_an_rf_terminal_with_a_lower_mask_fills_the_optical_gaps_and_the_station_prefers_the_laser(write_scenario):
    optical = "    - {name: gs, lat_deg: 40, lon_deg: -75, min_elevation_deg: 45}"
    rf = ("    - {name: gs, lat_deg: 40, lon_deg: -75, min_elevation_deg: 45,"
          " rf: {rate_mbps: 50, min_elevation_deg: 10, max_range_km: 3500}}")
    alone = connected(lasernet.plan(scenario(write_scenario, optical, acq=0), duration_s=1800, step_s=1))
    tl = lasernet.plan(scenario(write_scenario, rf, acq=0), duration_s=1800, step_s=1)
    cols = station_cols(tl, 0)
    assert 0.2 < alone.mean() < 0.95  # a 45-degree optical mask leaves gaps over this shell
    on_rf = tl.on_rf[:, cols].any(axis=1)
    assert connected(tl).all()  # the 10-degree RF mask always sees one
    assert np.array_equal(on_rf, ~alone)  # RF exactly where the laser had nothing: the laser is preferred
    assert set(np.unique(tl.rf_cause[:, cols][tl.on_rf[:, cols]]).tolist()) <= {timeline.ELEVATION, timeline.RANGE}


def test_a_saved_plan_keeps_the_rf_bearer_and_the_serving_stations(write_scenario, tmp_path):
    stations = ("    - {name: gs, lat_deg: 40, lon_deg: -75, rf: {rate_mbps: 100, max_range_km: 3500}}\n"
                "    - {name: gs2, lat_deg: 40, lon_deg: -60}")
    extra = "  diversity: [{name: site, stations: [gs2, gs]}]\n"
    tl = lasernet.plan(scenario(write_scenario, stations, clouds=CLOUDY, extra=extra), duration_s=300, step_s=1)
    tl.save(tmp_path / "p.npz")
    back = lasernet.Timeline.load(tmp_path / "p.npz")
    assert np.array_equal(back.rf_cause, tl.rf_cause) and np.array_equal(back.serving, tl.serving)
    assert back.site_names == ("site",) and np.array_equal(back.rate_at(100.0), tl.rate_at(100.0))


# ---------------------------------------------------------------------------------------------------------------
# Site diversity

def test_a_site_is_served_by_its_current_station_while_it_has_a_link_then_by_the_primary(write_scenario, tmp_path):
    stations = ("    - {name: west, lat_deg: 40, lon_deg: -75}\n"
                "    - {name: east, lat_deg: 40, lon_deg: -62}\n"
                "    - {name: south, lat_deg: 30, lon_deg: -70}")
    extra = "  diversity: [{name: site, stations: [east, west, south]}]\n"
    sc = scenario(write_scenario, stations, clouds=CLOUDY, extra=extra)
    plain = lasernet.plan(dataclasses.replace(sc, diversity=()), duration_s=1800, step_s=1)
    tl = lasernet.plan(sc, duration_s=1800, step_s=1)
    order = [1, 0, 2]  # east (primary), west, south: station indices
    linked = np.stack([connected(plain, g) for g in order], axis=1)
    want, cur = [], -1
    for t in range(len(linked)):
        if cur < 0 or not linked[t, cur]:
            cur = next((m for m in range(3) if linked[t, m]), -1)
        want.append(tl.n_satellites + order[cur] if cur >= 0 else -1)
    want = np.array(want)
    assert len(set(want.tolist())) >= 3  # the clouds move the site between stations, and it is sometimes unserved
    assert np.array_equal(tl.serving[:, 0], want)
    for g in range(3):
        cols = station_cols(tl, g)
        serves = want == tl.n_satellites + g
        assert np.array_equal(tl.up[serves][:, cols], plain.up[serves][:, [plain.links.names.index(tl.links.names[j])
                                                                             for j in cols]])
        assert not tl.up[~serves][:, cols].any()
        standby = tl.cause[~serves][:, cols] == STANDBY
        assert standby.any() or g == order[0]
    tl.write_events_csv(tmp_path / "events.csv")
    text = (tmp_path / "events.csv").read_text()
    changes = 1 + int((want[1:] != want[:-1]).sum())
    assert text.count(",site,serve,") + text.count(",site,unserved,") == changes
    assert re.search(r",site,(serve|unserved),cloud,", text)  # the station it left had lost its link to a cloud
    summary = tl.summary()["sites"]["site"]
    assert summary["served"] == pytest.approx((want >= 0).mean())
    assert summary["served"] > max(connected(plain, g).mean() for g in range(3))  # diversity helps


# ---------------------------------------------------------------------------------------------------------------
# Windows

WINDOWED = ("    - {name: a, lat_deg: 40, lon_deg: -75, terminals: 2, handover: longest-visible,"
            " rf: {rate_mbps: 100, max_range_km: 3500}}\n"
            "    - {name: b, lat_deg: 45, lon_deg: -65,"
            " rf: {rate_mbps: 10, min_elevation_deg: 5, max_range_km: 4000}}\n"
            "    - {name: c, lat_deg: 35, lon_deg: -80, terminals: 2}\n"
            "    - {name: d, lat_deg: 42, lon_deg: -85, terminals: 3, max_links: 2}\n"
            "    - {name: e, lat_deg: 30, lon_deg: -70}")


@pytest.mark.parametrize("window_s", [60.0, 7.0])
def test_windows_are_one_continuous_plan_with_rf_diversity_and_make_before_break(write_scenario, window_s):
    extra = "  diversity: [{name: site, stations: [e, b]}]\n"
    sc = scenario(write_scenario, WINDOWED, clouds=CLOUDY, extra=extra, seed=4)  # a seed whose skies do all
    span = 900
    full = timeline.plan(sc, duration_s=span, step_s=1)
    assert full.on_rf.any() and (full.cause == STANDBY).any() and (full.cause == ACQUISITION).any()
    over = [(full.up[:, station_cols(full, g)].sum(axis=1) > st.max_links).sum() for g, st in enumerate(sc.ground)]
    assert over[2] > 0 and over[3] > 0  # c and d keep released links up a while (make before break)
    column = {name: i for i, name in enumerate(full.links.names)}
    w = timeline.plan(sc, duration_s=window_s, step_s=1)
    while True:
        k0 = int(round((w.start_utc - sc.epoch).total_seconds()))
        steps = k0 + np.arange(len(w.offsets_s))
        inside = steps <= span
        steps = steps[inside]
        assert np.array_equal(w.serving[inside], full.serving[steps]), k0
        for j, name in enumerate(w.links.names):
            if name not in column:
                assert not w.up[inside, j].any(), (name, k0)
                continue
            i = column[name]
            assert np.array_equal(w.up[inside, j], full.up[steps, i]), (name, k0)
            assert np.array_equal(w.cause[inside, j], full.cause[steps, i]), (name, k0)
            assert np.array_equal(w.rf_cause[inside, j], full.rf_cause[steps, i]), (name, k0)
        absent = [i for name, i in column.items() if name not in set(w.links.names)]
        assert not full.up[np.ix_(steps, absent)].any(), k0
        if k0 + window_s >= span:
            break
        w = timeline.plan_next(sc, w, window_s)


# ---------------------------------------------------------------------------------------------------------------
# The scenario

@pytest.mark.parametrize("stations, extra, message", [
    ("    - {name: gs, lat_deg: 0, lon_deg: 0, max_links: 2, terminals: 1}", "",
     "ground.stations[0].terminals: a station holding max_links 2 needs at least that many"),
    ("    - {name: gs, lat_deg: 0, lon_deg: 0, rf: {min_elevation_deg: 5}}", "", "ground.stations[0].rf.rate_mbps"),
    ("    - {name: gs, lat_deg: 0, lon_deg: 0}", "  diversity: [{name: s, stations: [gs, nowhere]}]\n",
     "ground.diversity[0].stations[1]: unknown station 'nowhere'"),
    ("    - {name: gs, lat_deg: 0, lon_deg: 0}\n    - {name: gt, lat_deg: 1, lon_deg: 0}",
     "  diversity: [{name: s, stations: [gs, gt]}, {name: t, stations: [gt, gs]}]\n",
     "ground.diversity[1].stations[0]: 'gt' already serves site 's'"),
    ("    - {name: gs, lat_deg: 0, lon_deg: 0}", "  diversity: [{name: s, stations: [gs]}]\n",
     "ground.diversity[0].stations: must list two or more different stations"),
])
def test_bad_ground_segment_fields_are_one_line_naming_the_field(write_scenario, stations, extra, message):
    with pytest.raises(ScenarioError) as err:
        scenario(write_scenario, stations, extra=extra)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_rf_fallback_needs_laser_ground_terminals(write_scenario):
    text = SHELL.format(seed=1, acq=2, clouds="", stations="    - {name: gs, lat_deg: 0, lon_deg: 0, "
                        "rf: {rate_mbps: 10}}").replace("sun_exclusion_deg: 0,", "sun_exclusion_deg: 0, kind: rf,")
    with pytest.raises(ScenarioError, match=r"ground.stations\[0\].rf: an RF fallback backs up laser"):
        lasernet.load_scenario(write_scenario(text))


def test_the_map_draws_links_on_rf_apart_and_the_report_tabulates_the_ground_segment(write_scenario):
    from lasernet.measure import report

    stations = ("    - {name: gs, lat_deg: 40, lon_deg: -75, rf: {rate_mbps: 100, max_range_km: 3500}}\n"
                "    - {name: gs2, lat_deg: 40, lon_deg: -60}")
    extra = "  diversity: [{name: site, stations: [gs2, gs]}]\n"
    sc = scenario(write_scenario, stations, clouds=CLOUDY, extra=extra)
    tl = lasernet.plan(sc, duration_s=600, step_s=1)
    k = int(np.flatnonzero(tl.on_rf.any(axis=1))[0])
    when = tl.start_utc + dt.timedelta(seconds=float(tl.offsets_s[k]))
    labels = [t.get_text() for t in report.map_figure(sc, when, tl, float(tl.offsets_s[k])).axes[0]
              .get_legend().get_texts()]
    assert f"ground link on RF ({int(tl.on_rf[k].sum())})" in labels
    rows = dict(report._ground_segment_rows(tl, [{"kind": "gsl", "event": "rf"}, {"kind": "gsl", "event": "up"}]))
    assert rows["site site"].startswith(f"served {tl.site_summary()['site']['served']:.1%}")
    assert f"{int(tl.on_rf.sum())} link-steps on RF" in rows["RF fallback (plan)"]
    assert rows["RF fallback (applied)"].startswith("1 switches to RF, 0 back")
    assert report.applied_links_at([{"kind": "gsl", "event": "up", "t_s": "0", "what": "gs~sat-0-1"},
                                    {"kind": "gsl", "event": "rf", "t_s": "1", "what": "gs~sat-0-1"}], 2.0) == \
        {"gs~sat-0-1"}  # a switch to RF leaves the link up


def test_the_live_driver_applies_the_rf_rate_and_records_each_switch_of_a_link_that_stays_up(write_scenario):
    """The coordinator's link path driven step by step by a plan with an RF station: the host gets the RF rate
    exactly where the plan has the link on RF, and the recorder one rf/optical row per switch of a link that was
    up before and after (a link coming up on RF has its up row; the plan's events.csv adds an rf row there)."""
    import types

    from lasernet.emulation.coordinator import AppliedLinks, Emulation

    rf = "    - {name: gs, lat_deg: 40, lon_deg: -75, rf: {rate_mbps: 100, max_range_km: 3500}}"
    tl = lasernet.plan(scenario(write_scenario, rf, clouds=CLOUDY), duration_s=900, step_s=1)
    emu = Emulation.__new__(Emulation)  # only the link path's state: no scenario is run
    emu.applied, emu.fib_watch = AppliedLinks(), None
    switches, sent = [], []
    emu.recorder = types.SimpleNamespace(link_event=lambda *a: None,
                                         bearer_event=lambda t_s, tl_, li, on, cause, d: switches.append((t_s, li, on)))
    emu.host = types.SimpleNamespace(apply=lambda slots, up, delay, loss, rate: sent.append((slots, rate[:, 0])))
    slots = np.arange(len(tl.links))
    applied_rate = np.full(len(tl.links), np.nan)
    for k, t_s in enumerate(tl.offsets_s.tolist()):
        up, delay = tl.state_at(t_s)
        emu._apply_links(tl, t_s, slots, up, delay, np.zeros(len(up)), tl.rate_at(t_s), tl.cause[k], tl.rf_cause[k])
        for s, r in sent:
            applied_rate[s] = r
        sent.clear()
        on = tl.up[k]
        assert np.array_equal(applied_rate[on], np.where(tl.on_rf[k, on], 100e6, 10e9)), k
    bev = tl.bearer_events()
    stayed = (bev["step"] > 0) & tl.up[np.maximum(bev["step"] - 1, 0), bev["link"]]
    want = [(float(tl.offsets_s[s]), int(li), bool(on)) for s, li, on in
            zip(bev["step"][stayed], bev["link"][stayed], bev["rf"][stayed])]
    assert switches == want and len(want) >= 2


def test_the_live_driver_records_the_station_serving_each_site_when_it_changes(write_scenario):
    import types

    from lasernet.emulation.coordinator import Emulation

    stations = ("    - {name: west, lat_deg: 40, lon_deg: -75}\n"
                "    - {name: east, lat_deg: 40, lon_deg: -62}")
    extra = "  diversity: [{name: site, stations: [east, west]}]\n"
    tl = lasernet.plan(scenario(write_scenario, stations, clouds=CLOUDY, extra=extra), duration_s=900, step_s=1)
    emu = Emulation.__new__(Emulation)
    emu._site_serving, rows = {}, []
    emu.recorder = types.SimpleNamespace(site_event=lambda *a: rows.append(a))
    for k, t_s in enumerate(tl.offsets_s.tolist()):
        emu._record_sites(tl, t_s, tl.serving[k])
    sev = tl.site_events()
    name = lambda i: tl.node_names[i] if i >= 0 else ""  # noqa: E731
    assert rows == [(float(tl.offsets_s[s]), "site", name(a), name(b)) for s, a, b in
                    zip(sev["step"].tolist(), sev["station"].tolist(), sev["previous"].tolist())]
    assert len(rows) >= 2


# ---------------------------------------------------------------------------------------------------------------
# The rules on hand-made arrays

def test_pre_acquisition_and_hold_over_on_a_handover_whose_next_satellite_rises_late():
    """One station, links A (column 0) and B (1); B taken at step 5, usable from step 4 only; lead 3 steps.
    By hand: B is acquired ahead at step 4 alone (steps 2 and 3 it was not usable); with acquisition of 3 steps it
    carries traffic from step 7 (feasible 4, 5, 6 before it); A, released at 5, is kept up at 5, 6 and 7 (B had not
    carried traffic at the step before), released at 8."""
    from lasernet import groundsegment, terminals

    T = 10
    assigned = np.zeros((T, 2), bool)
    assigned[:5, 0] = True
    assigned[5:, 1] = True
    usable = np.ones((T, 2), bool)
    usable[:4, 1] = False
    pre = groundsegment.pre_acquisition(assigned, usable, 3, np.array([True, True]))
    assert np.flatnonzero(pre[:, 1]).tolist() == [4] and not pre[:, 0].any()
    up = terminals.acquired((assigned | pre) & usable, 1.0, 3.0, np.array([np.inf, 0.0]))
    assert np.flatnonzero(up[:, 1]).tolist() == [7, 8, 9] and np.flatnonzero(up[:, 0]).tolist() == [0, 1, 2, 3, 4]
    hold = groundsegment.hold_over(assigned, up & assigned, usable, np.array([0, 0]), np.array([True, True]))
    assert np.flatnonzero(hold[:, 0]).tolist() == [5, 6, 7] and not hold[:, 1].any()
    # without a spare terminal: nothing ahead, nothing kept (break before make: B waits 3 steps from 5)
    assert not groundsegment.pre_acquisition(assigned, usable, 3, np.array([False, False])).any()
    assert not groundsegment.hold_over(assigned, up, usable, np.array([0, 0]), np.array([False, False])).any()
    # A stops being usable at 6: it is kept at 5 only
    usable[6:, 0] = False
    hold = groundsegment.hold_over(assigned, up & assigned, usable, np.array([0, 0]), np.array([True, True]))
    assert np.flatnonzero(hold[:, 0]).tolist() == [5]


def test_serving_keeps_the_current_station_then_takes_the_primary_then_the_next():
    from lasernet import groundsegment

    linked = np.array([[1, 1, 0],   # primary serves
                       [0, 1, 1],   # primary lost: the second (first in order with a link)
                       [1, 1, 1],   # hysteresis: the second keeps it though the primary is back
                       [1, 0, 1],   # the second lost: the primary
                       [0, 0, 0],   # nobody
                       [0, 0, 1],   # the third
                       [1, 0, 1]], bool)
    assert groundsegment.serving(linked).tolist() == [0, 1, 1, 0, -1, 2, 2]
    assert groundsegment.serving(linked[2:], before=2).tolist() == [2, 2, -1, 2, 2]  # continued from a carry
