"""Timelines: events begin with the initial state, save/load round-trips, and `lasernet plan` writes both files."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from click.testing import CliRunner

import lasernet
from lasernet.cli import main

from ..conftest import TOPOLOGIES


@pytest.fixture(scope="module")
def mini():
    return lasernet.plan(lasernet.load_scenario(TOPOLOGIES / "mini.yaml"), duration_s=900, step_s=1)


def test_events_start_with_every_link_up_at_the_start_then_changes(mini, tmp_path):
    n = mini.write_events_csv(tmp_path / "events.csv")
    every = list(csv.DictReader((tmp_path / "events.csv").open()))
    assert len(every) == n
    assert list(every[0]) == ["time_utc", "link", "a", "b", "kind", "event", "cause", "delay_ms"]
    rows = [r for r in every if r["kind"] != "node"]  # satellites' illumination rows: tests/unit/test_sunlight.py
    initial = [r for r in rows if r["time_utc"] == "2026-01-01T00:00:00.000Z"]
    assert len(initial) == int(mini.up[0].sum())
    assert all(r["event"] == "up" and r["cause"] == "" for r in initial)
    later = rows[len(initial):]
    assert later, "a 15-minute window of mini has link changes"
    # Replaying the events reproduces the state at the last step.
    state = {}
    for r in rows:
        state[r["link"]] = r["event"] == "up"
    names = mini.links.names
    assert {names[k] for k in np.flatnonzero(mini.up[-1])} == {k for k, v in state.items() if v}
    for r in later:
        assert r["kind"] in ("isl", "gsl")
        assert (r["event"] == "down") == (r["cause"] != "")
        if r["event"] == "down":
            assert r["cause"] in lasernet.CAUSES
        a, b = r["link"].split("~")
        assert (a, b) == (r["a"], r["b"])


def test_delay_is_light_time_over_range(mini):
    up = mini.up
    d = mini.delay_s[up].astype(float)
    assert np.all((d > 0.001) & (d < 0.03))  # 300 km to 9,000 km


def test_save_and_load_round_trip(mini, tmp_path):
    mini.save(tmp_path / "plan.npz")
    back = lasernet.Timeline.load(tmp_path / "plan.npz")
    assert back.scenario_name == "mini"
    assert back.start_utc == mini.start_utc
    assert back.links.names == mini.links.names
    assert np.array_equal(back.up, mini.up)
    assert np.array_equal(back.cause, mini.cause)
    assert np.array_equal(back.delay_s, mini.delay_s, equal_nan=True)
    assert back.summary() == mini.summary()


def test_state_at_interpolates_delay_between_steps(mini):
    k = 100
    up, delay = mini.state_at(mini.offsets_s[k] + 0.25)
    assert np.array_equal(up, mini.up[k])
    expected = mini.delay_s[k] + 0.25 * (mini.delay_s[k + 1] - mini.delay_s[k])
    ok = ~np.isnan(expected)
    assert np.allclose(delay[ok], expected[ok], rtol=1e-6)


def test_same_scenario_gives_the_same_plan(mini):
    again = lasernet.plan(lasernet.load_scenario(TOPOLOGIES / "mini.yaml"), duration_s=900, step_s=1)
    assert np.array_equal(again.up, mini.up) and np.array_equal(again.cause, mini.cause)


def test_cli_plan_writes_plan_and_events(tmp_path):
    result = CliRunner().invoke(main, ["plan", "mini", "--duration", "120", "--step", "2",
                                       "-o", str(tmp_path / "p.npz"), "--events", str(tmp_path / "e.csv")])
    assert result.exit_code == 0, result.output
    assert "links over the window" in result.output and "ground coverage" in result.output
    tl = lasernet.Timeline.load(tmp_path / "p.npz")
    assert len(tl.offsets_s) == 61 and tl.step_s == 2
    assert (tmp_path / "e.csv").read_text().startswith("time_utc,link,a,b,kind,event,cause,delay_ms\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.csv", "p.npz"]
