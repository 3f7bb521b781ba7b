"""Clouds over optical ground stations: a long plan reproduces each station's configured cloud-free share and
correlation time, clouds are correlated by distance, seeded, continued across plan windows, and show as cause
``cloud`` in events and the summary.

The statistics are measured from the plan's own output (which steps each station's ground links are down with
cause ``cloud``) with plain estimators: the share of clear steps, and the e-folding time of the empirical
autocorrelation of the clear/clouded indicator, -lag / ln(acf(lag)), averaged over the first lags.
"""

from __future__ import annotations

import dataclasses
import math
import statistics

import numpy as np
import pytest

import lasernet
from lasernet import weather
from lasernet.timeline import CLOUD, ELEVATION, GSL, plan_next

STEP_S = 600.0
YEAR_STEPS = 50_000  # 347 days at 600 s: ~0.4 points of standard error on a share, for correlation times of 1200 s

SCENARIO = """
name: clouds
epoch: 2026-01-01T00:00:00Z
seed: {seed}
constellation:   # an equatorial ring of 12 at 10,000 km: a station on the equator always sees three or more
  shells: [{{name: meo, type: delta, planes: 1, sats_per_plane: 12, phasing: 0, altitude_km: 10000,
             inclination_deg: 0}}]
terminals:
  gsl: {{count: 4, max_range_km: 50000, acquisition_s: 0, sun_exclusion_deg: 0}}
isl: {{pattern: none}}
ground:
  clouds: {{cloud_free: 0.3, correlation_s: 2400, correlation_km: 300}}
  defaults: {{min_elevation_deg: 10}}
  stations:
    - {{name: a, lat_deg: 0, lon_deg: 0, cloud_free: 0.65, cloud_correlation_s: 1200}}
    - {{name: a-twin, lat_deg: 0, lon_deg: 0, cloud_free: 0.65, cloud_correlation_s: 1200}}
    - {{name: far, lat_deg: 0, lon_deg: 120}}
"""


def _scenario(write_scenario, seed=1):
    return lasernet.load_scenario(write_scenario(SCENARIO.format(seed=seed)))


def _clouded(tl) -> np.ndarray:
    """(T, G) bool from the plan: a station is clouded when its ground links are down for clouds."""
    out = np.zeros((len(tl.offsets_s), len(tl.station_names)), bool)
    seen = np.zeros_like(out)
    for g in range(len(tl.station_names)):
        cols = (tl.links.kind == GSL) & (tl.links.a == tl.n_satellites + g)
        out[:, g] = (tl.cause[:, cols] == CLOUD).any(axis=1)
        seen[:, g] = (tl.cause[:, cols] != ELEVATION).any(axis=1)
    assert seen.all(), "every station must see a satellite at every step"
    return out


def _correlation_time_s(clear: np.ndarray, step_s: float, lags=(1, 2, 3)) -> float:
    x = clear.astype(float) - clear.mean()
    var = np.dot(x, x)
    return float(np.mean([-k * step_s / math.log(np.dot(x[:-k], x[k:]) / var) for k in lags]))


@pytest.fixture(scope="module")
def year(tmp_path_factory):
    d = tmp_path_factory.mktemp("clouds")
    (d / "s.yaml").write_text(SCENARIO.format(seed=1))
    sc = lasernet.load_scenario(d / "s.yaml")
    return sc, lasernet.plan(sc, duration_s=(YEAR_STEPS - 1) * STEP_S, step_s=STEP_S)


def test_a_long_plan_reproduces_each_stations_cloud_free_share_and_correlation_time(year):
    _, tl = year
    clouded = _clouded(tl)
    for g, (share, tau_s) in enumerate([(0.65, 1200.0), (0.65, 1200.0), (0.3, 2400.0)]):  # own, own, defaults
        clear = ~clouded[:, g]
        assert abs(clear.mean() - share) < 0.02, (tl.station_names[g], clear.mean())
        assert abs(_correlation_time_s(clear, STEP_S) / tau_s - 1) < 0.2, tl.station_names[g]


def test_stations_at_one_place_share_their_sky_and_distant_ones_do_not(year):
    _, tl = year
    clouded = _clouded(tl)
    assert np.array_equal(clouded[:, 0], clouded[:, 1])
    assert abs(np.corrcoef(clouded[:, 0], clouded[:, 2])[0, 1]) < 0.03  # 12,700 km apart, L = 300 km


def test_clouds_show_as_cause_cloud_in_events_and_the_summary(year, tmp_path):
    _, tl = year
    summary = tl.summary()["gsl"]
    assert summary["down_events_by_cause"]["cloud"] > 1000
    assert summary["down_link_steps_by_cause"]["cloud"] > 0.3 * YEAR_STEPS
    head = dataclasses.replace(tl, offsets_s=tl.offsets_s[:2000], up=tl.up[:2000], cause=tl.cause[:2000],
                               delay_s=tl.delay_s[:2000], illumination=tl.illumination[:2000])
    head.write_events_csv(tmp_path / "events.csv")
    assert ",down,cloud," in (tmp_path / "events.csv").read_text()


def test_state_correlation_by_distance_is_that_of_thresholded_normals_of_correlation_exp_minus_d_over_l():
    """Stations d apart with L = 300 km: their clear/clouded states correlate as two indicators (z < h) of
    standard normals whose correlation is exp(-d / L) (by Monte Carlo here), from 1 at d = 0 to 0 far apart."""
    pos_km = np.array([0.0, 0.0, 100.0, 300.0, 900.0, 9000.0])  # stations on a line; pairs (0, i)
    G, p = len(pos_km), 0.6
    full = np.exp(-np.abs(pos_km[:, None] - pos_km[None, :]) / 300.0)
    w, v = np.linalg.eigh(full)
    model = weather.Clouds(np.full(G, p), np.full(G, 3600.0),
                           v * np.sqrt(np.clip(w, 0, None)), seed=5)
    state, _ = weather.clouded(model, 200_000, 600.0)
    got = np.array([np.corrcoef(state[:, 0], state[:, i])[0, 1] for i in range(1, G)])
    rng = np.random.default_rng(0)
    h = statistics.NormalDist().inv_cdf(1 - p)
    want = []
    for rho in full[0, 1:]:
        z1 = rng.standard_normal(1_000_000)
        z2 = rho * z1 + math.sqrt(max(0.0, 1 - rho * rho)) * rng.standard_normal(1_000_000)
        want.append(np.corrcoef(z1 < h, z2 < h)[0, 1] if rho < 1 else 1.0)
    assert got[0] == pytest.approx(1.0)
    assert np.abs(got - np.array(want)).max() < 0.03, (got, want)
    assert got[1] > 0.4 and abs(got[-1]) < 0.02


def test_the_same_seed_gives_the_same_clouds_and_another_seed_others(write_scenario):
    a = _clouded(lasernet.plan(_scenario(write_scenario, 1), duration_s=86400, step_s=STEP_S))
    b = _clouded(lasernet.plan(_scenario(write_scenario, 1), duration_s=86400, step_s=STEP_S))
    c = _clouded(lasernet.plan(_scenario(write_scenario, 2), duration_s=86400, step_s=STEP_S))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_windows_continue_the_clouds_of_one_plan(write_scenario):
    sc = _scenario(write_scenario)
    steps, window = 3 * weather.BLOCK_STEPS // 2, 997  # windows cross a block of random numbers
    whole = lasernet.plan(sc, duration_s=steps * 60.0, step_s=60.0)
    assert (whole.cause == CLOUD).any()
    names = whole.links.names
    tl, first = lasernet.plan(sc, duration_s=window * 60.0, step_s=60.0), 0
    while first < steps:
        where = {n: i for i, n in enumerate(tl.links.names)}
        span = slice(first, first + len(tl.offsets_s))
        for j, n in enumerate(names):
            if n in where:
                assert np.array_equal(whole.cause[span, j], tl.cause[:, where[n]]), (n, first)
            else:
                assert not whole.up[span, j].any(), (n, first)
        first += window
        if first >= steps:
            break
        tl = plan_next(sc, tl, min(window, steps - first) * 60.0)


def test_without_ground_clouds_there_are_none_whatever_figures_stations_carry(write_scenario):
    sc = _scenario(write_scenario)
    plain = dataclasses.replace(sc, clouds=None)
    assert sc.ground[0].cloud_free == 0.65 and weather.of(plain) is None
    assert not (lasernet.plan(plain, duration_s=86400, step_s=STEP_S).cause == CLOUD).any()
