"""A run planned in windows is one continuous plan; a satellite never holds more ISLs than it has terminals.

The live driver plans a run in windows (``Timeline.carry`` -> ``plan_next``). These tests chain short windows
exactly as the driver does and compare every step of every window against one plan over the whole span: the
same links up, the same causes (acquisition waits at the boundaries included), the same delays. The terminal
budget is checked against a plain one-link-at-a-time greedy written here from the documented rule.
"""

from __future__ import annotations

import numpy as np
import pytest

import lasernet
from lasernet import terminals, timeline
from lasernet.topology import ISL

from ..conftest import TOPOLOGIES

SPAN_S = 1800.0


def chain(scenario, window_s: float, span_s: float) -> list:
    """Windows of ``window_s`` as the driver plans them, until they cover ``span_s``."""
    windows = [timeline.plan(scenario, duration_s=window_s, step_s=1)]
    while (windows[-1].carry.start_utc - scenario.epoch).total_seconds() < span_s - 1e-9:
        windows.append(timeline.plan_next(scenario, windows[-1], window_s))
    return windows


def assert_windows_are_the_continuous_plan(scenario, window_s: float) -> int:
    full = timeline.plan(scenario, duration_s=SPAN_S, step_s=1)
    column = {name: i for i, name in enumerate(full.links.names)}
    compared = 0
    last_state: dict[str, bool] = {}
    for w in chain(scenario, window_s, SPAN_S):
        k0 = int(round((w.start_utc - scenario.epoch).total_seconds()))
        steps = k0 + np.arange(len(w.offsets_s))
        inside = steps <= SPAN_S
        steps = steps[inside]
        names = w.links.names
        for j, name in enumerate(names):
            if name not in column:  # a pair this window considered but never used: it must stay down
                assert not w.up[inside, j].any(), f"{name} up in the window at {k0} s, never in the plan"
                continue
            i = column[name]
            assert np.array_equal(w.up[inside, j], full.up[steps, i]), f"{name}: up differs in window at {k0} s"
            assert np.array_equal(w.cause[inside, j], full.cause[steps, i]), f"{name}: cause differs at {k0} s"
            d_w, d_f = w.delay_s[inside, j], full.delay_s[steps, i]
            ok = w.up[inside, j]
            assert np.allclose(d_w[ok], d_f[ok], rtol=0, atol=1e-9)
            compared += int(inside.sum())
        here = set(names)
        absent = [i for name, i in column.items() if name not in here]
        assert not full.up[np.ix_(steps, absent)].any(), f"the plan uses a link the window at {k0} s lacks"
        # The driver leaves a link it does not find in the window as the previous window last had it (its last
        # step is this window's first, so that is its second-to-last step): it must have been down there.
        left_up = {name for name, was_up in last_state.items() if was_up and name not in here}
        assert not left_up, f"links up when the window at {k0} s begins but not in it (left up): {left_up}"
        last_state = {name: bool(w.up[max(len(w.up) - 2, 0), j]) for j, name in enumerate(names)}
    return compared


@pytest.mark.parametrize("window_s", [120.0, 60.0])  # with 60 s windows a handover falls on a boundary (660 s)
def test_longest_visible_windows_are_one_continuous_plan(window_s):
    scenario = lasernet.load_scenario(TOPOLOGIES / "mini.yaml")  # longest-visible stations
    assert {g.handover for g in scenario.ground} == {"longest-visible"}
    assert assert_windows_are_the_continuous_plan(scenario, window_s) > 0


@pytest.mark.parametrize("window_s", [120.0, 7.0])
def test_nearest_windows_are_one_continuous_plan(write_scenario, window_s):
    text = (TOPOLOGIES / "mini.yaml").read_text().replace("handover: longest-visible", "handover: nearest")
    text = text.replace("include: [ground/", f"include: [{TOPOLOGIES}/ground/")
    scenario = lasernet.load_scenario(write_scenario(text))
    assert {g.handover for g in scenario.ground} == {"nearest"}
    assert assert_windows_are_the_continuous_plan(scenario, window_s) > 0


@pytest.mark.parametrize("window_s", [120.0, 7.0])
def test_between_shell_windows_are_one_continuous_plan(write_scenario, window_s):
    """+Grid in two shells with links between them (nearest rule, a slew to each new partner, acquisition)."""
    scenario = lasernet.load_scenario(write_scenario("""
        name: two-shells
        epoch: 2026-01-01T00:00:00Z
        constellation:
          shells:
            - {name: hi, type: delta, planes: 6, sats_per_plane: 8, phasing: 1, altitude_km: 1100, inclination_deg: 53}
            - {name: lo, type: delta, planes: 5, sats_per_plane: 6, phasing: 2, altitude_km: 600, inclination_deg: 70}
        terminals:
          isl: {count: 6, max_range_km: 3000, acquisition_s: 2, sun_exclusion_deg: 3, slew_rate_deg_s: 2}
        isl: {pattern: plus-grid, between_shells: {count: 2}, switch_margin: 0.1}
        """))
    assert scenario.isl.between_shells == 2
    assert assert_windows_are_the_continuous_plan(scenario, window_s) > 0


def test_a_link_acquired_across_a_boundary_waits_its_acquisition_time():
    """Windows that start a step after a link became usable: that link still waits acquisition_s."""
    scenario = lasernet.load_scenario(TOPOLOGIES / "mini.yaml")
    full = timeline.plan(scenario, duration_s=SPAN_S, step_s=1)
    acq = full.cause == lasernet.CAUSES.index("acquisition")
    step, link = np.argwhere(acq[1:] & ~acq[:-1])[0] + (1, 0)  # a link that starts acquiring at `step`
    first = timeline.plan(scenario, duration_s=float(step), step_s=1)  # the next window starts at that step
    second = timeline.plan_next(scenario, first, 60.0)
    j = second.links.names.index(full.links.names[link])
    assert second.cause[0, j] == lasernet.CAUSES.index("acquisition") and not second.up[0, j]


def test_windows_keep_the_satellite_a_longest_visible_station_holds():
    scenario = lasernet.load_scenario(TOPOLOGIES / "mini.yaml")
    windows = chain(scenario, 120.0, 600.0)
    for before, after in zip(windows, windows[1:]):
        gsl_b = np.flatnonzero((before.links.kind == 1) & before.up[-1])
        held = {before.links.names[j] for j in gsl_b}
        gsl_a = np.flatnonzero((after.links.kind == 1) & after.up[0])
        assert held == {after.links.names[j] for j in gsl_a}  # the same instant, the same satellites


# ------------------------------------------------------------------------------------------- terminal budget
def greedy_reference(feasible, range_km, a, b, count):
    """The documented rule, one link at a time: held links first, then shortest, then lower index."""
    T, L = feasible.shape
    held = np.zeros((T, L), bool)
    prev = np.zeros(L, bool)
    for k in range(T):
        order = sorted(np.flatnonzero(feasible[k]), key=lambda j: (not prev[j], float(range_km[k, j]), j))
        used: dict[int, int] = {}
        for j in order:
            if used.get(a[j], 0) < count and used.get(b[j], 0) < count:
                held[k, j] = True
                used[a[j]] = used.get(a[j], 0) + 1
                used[b[j]] = used.get(b[j], 0) + 1
        prev = held[k]
    return held


def explicit_scenario(write_scenario, count: int, links: list[tuple[str, str]]):
    pairs = ", ".join(f"[{x}, {y}]" for x, y in links)
    return lasernet.load_scenario(write_scenario(f"""
        name: budget
        epoch: 2026-01-01T00:00:00Z
        constellation:
          shells: [{{name: s, type: delta, planes: 8, sats_per_plane: 8, phasing: 1, altitude_km: 1100,
                     inclination_deg: 53}}]
        terminals:
          isl: {{count: {count}, max_range_km: 9000, acquisition_s: 0}}
        isl:
          pattern: explicit
          links: [{pairs}]
        """))


def test_explicit_pattern_with_one_terminal_holds_one_link_the_established_then_shortest(write_scenario):
    # s-0-0 has two candidates: its plane neighbour (fixed chord) and the next plane's (length varies).
    scenario = explicit_scenario(write_scenario, 1, [("s-0-0", "s-0-1"), ("s-0-0", "s-1-0")])
    tl = lasernet.plan(scenario, duration_s=5400, step_s=10)
    cols = np.flatnonzero(tl.links.kind == ISL)
    assert len(cols) == 2
    up, cause, rng = tl.up[:, cols], tl.cause[:, cols], tl.delay_s[:, cols]
    handover = lasernet.CAUSES.index("handover")
    assert up.sum(axis=1).max() == 1  # one terminal on s-0-0: never two links at once
    both = (cause == 0) | (cause == handover)  # steps where each link on its own could be up
    contested = both.all(axis=1)
    assert contested.sum() > 10, "the test needs times when both candidates are feasible"
    assert (up[contested].sum(axis=1) == 1).all()  # one wins, the other waits for a terminal
    assert (cause[contested][~up[contested]] == handover).all()
    k0 = int(np.flatnonzero(contested)[0])
    if k0 == 0 or not both[k0 - 1].any():  # contested from the start: the shorter wins
        assert up[k0, int(np.argmin(rng[k0]))]
    # The holder keeps its link while it stays feasible, even when the other becomes shorter ...
    for k in range(1, len(up)):
        for j in range(2):
            if up[k - 1, j] and both[k, j]:
                assert up[k, j], f"step {k}: link {j} given up while still feasible"
    held_longer = contested & (np.argmax(up, axis=1) != np.argmin(rng, axis=1))
    assert held_longer.any(), "the test needs a time when the held link is the longer one"


def test_budget_matches_the_one_at_a_time_greedy_on_random_candidates():
    rng = np.random.default_rng(7)
    n, L, T = 12, 40, 30
    a = rng.integers(0, n, L)
    b = (a + rng.integers(1, n, L)) % n
    feasible = rng.random((T, L)) < 0.7
    range_km = rng.random((T, L)).astype(np.float32)
    for count in (1, 2, 3):
        held, _ = terminals.within_budget(feasible, range_km, a, b, n, count)
        assert np.array_equal(held, greedy_reference(feasible, range_km, a, b, count))
        deg = np.zeros((T, n), int)
        for j in range(L):
            deg[:, a[j]] += held[:, j]
            deg[:, b[j]] += held[:, j]
        assert deg.max() <= count


def test_the_drivers_windows_planned_ahead_by_planner_processes_are_the_continuous_plan():
    """PlanWindows as the coordinator drives it, tick by tick: the state at every second is the long plan's."""
    from lasernet.emulation.windows import PlanWindows

    scenario = lasernet.load_scenario(TOPOLOGIES / "mini.yaml")
    full = timeline.plan(scenario, duration_s=SPAN_S, step_s=1)
    column = {name: i for i, name in enumerate(full.links.names)}
    released = []
    windows = PlanWindows(scenario, scenario.epoch, 120.0, 1.0, on_release=released.append)
    windows.first()
    applied: dict[str, bool] = {}  # what a driver would hold: links missing from a window keep their state
    for t in np.arange(0.0, SPAN_S + 0.5, 0.5):
        tl, offset = windows.at(t)
        up, _ = tl.state_at(t - offset)
        applied.update({name: bool(up[j]) for j, name in enumerate(tl.links.names)})
        k = int(t)
        want = {name for name, i in column.items() if full.up[k, i]}
        assert {name for name, is_up in applied.items() if is_up} == want, f"t = {t}"
        windows.plan_ahead(t)
    windows.close()
    assert len(released) >= 13 and len(windows.windows) <= 2  # windows the clock left are let go


def test_a_window_being_planned_is_killed_when_the_run_stops_and_a_planners_error_reaches_the_run():
    """The planner process of the next window does not outlive ``close``; what it raised is raised by ``at``."""
    import dataclasses
    import os
    import time

    from lasernet.emulation.windows import PlanWindows

    scenario = lasernet.load_scenario(TOPOLOGIES / "mini.yaml")
    windows = PlanWindows(scenario, scenario.epoch, 600.0, 1.0)
    first = windows.first()
    windows.plan_ahead(500.0)
    deadline = time.monotonic() + 10
    while windows._child is None and time.monotonic() < deadline:  # noqa: SLF001 (the test's own module's view)
        time.sleep(0.01)
    pid = windows._child.pid
    windows.close()
    assert windows._child is None or windows._child.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)

    broken = dataclasses.replace(first, carry=dataclasses.replace(first.carry, step_s=-1.0))
    windows = PlanWindows(scenario, scenario.epoch, 600.0, 1.0)
    windows.windows = [(0.0, broken)]
    windows.plan_ahead(500.0)
    with pytest.raises(Exception, match="step"):
        windows.at(700.0)
