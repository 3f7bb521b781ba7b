"""A live run longer than its plan windows applies one continuous plan (as root).

The driver plans a run in windows, each continuing the one before it (``Timeline.carry``). Here mini runs live
at 20x with 60 s windows across a dozen boundaries, over 800 s of orbit with ground handovers of its
``longest-visible`` stations (the first come at ~660 s), and the link events the run applied (its ``events.csv``) are compared, one by one,
with the events of one plan computed over the whole span (``lasernet plan``'s ``events.csv``): the same links, the
same up/down changes, the same causes, each applied at the first tick at or after the plan's step.
"""

from __future__ import annotations

import csv
import dataclasses
import os

import pytest

import lasernet
from lasernet.spec.fields import parse_time

from ..conftest import TOPOLOGIES

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root to create network namespaces (CI runs as root)", allow_module_level=True)

LINKS = os.environ.get("LASERNET_LINKS", "auto")


def test_live_events_across_window_boundaries_are_the_continuous_plans(tmp_path):
    scenario = dataclasses.replace(lasernet.load_scenario(TOPOLOGIES / "mini.yaml"), probes=(), hosts=())
    start = scenario.epoch
    # One emulated second (the plan's step) per tick, so that every step's state is applied.
    speed, tick_s, window_s, wall_s = 20.0, 0.05, 60.0, 40.0
    with lasernet.Emulation(scenario, speed=speed, tick_s=tick_s, start=start, window_s=window_s,
                            run_dir=tmp_path / "run", links=LINKS) as emu:
        emu.run(wall_s)
        last_t_s = emu.ticks[-1].t_s
        tick_cost_max_s = max(t.cost_s for t in emu.ticks[1:])
    span_s = float(int(last_t_s))
    assert span_s > 10 * window_s, "the run must cross several window boundaries"
    plan = lasernet.plan(scenario, start=start, duration_s=span_s, step_s=1)
    plan.write_events_csv(tmp_path / "plan-events.csv")

    def planned():
        for r in csv.DictReader((tmp_path / "plan-events.csv").open()):
            t = (parse_time(r["time_utc"]) - start).total_seconds()
            if t > 0 and r["kind"] != "node":  # the initial `up` rows are the run's first tick; no illumination
                yield t, r["link"], r["event"], r["cause"]

    applied = [(float(r["t_s"]), r["what"], r["event"], r["cause"])
               for r in csv.DictReader((tmp_path / "run" / "events.csv").open())
               if r["kind"] in ("isl", "gsl") and float(r["t_s"]) > 0]
    want = list(planned())
    gsl = [e for e in want if not e[1].startswith("sat-")]
    assert len(gsl) >= 4, f"the span needs ground handovers, the plan has {gsl}"
    # A planned change at step t is applied by the first tick at or after t: within one tick of emulated time,
    # plus what the slowest tick of this run cost (a late tick applies late).
    late_s = speed * (emu.tick_s + tick_cost_max_s) + 1e-3
    unmatched = list(applied)
    for t, link, event, cause in want:
        hits = [e for e in unmatched if e[1:] == (link, event, cause) and t - 1e-3 <= e[0] <= t + late_s]
        assert hits, f"planned {event} of {link} ({cause or 'up'}) at {t:.1f} s never applied; applied: {applied}"
        unmatched.remove(hits[0])
    assert not unmatched, f"the run applied changes the continuous plan does not have: {unmatched}"
