"""Make before break, live: probes across a ground handover lose nothing on a station with a spare optical
terminal, and exactly the acquisition window on the same station with one terminal.

The scenario (topologies/handover.yaml) is one station taking the nearest satellite of mini's shell, with two
optical terminals for its one link. The plan of its one-terminal twin gives the first handover (the step its link
is released and the next one starts acquiring, :mod:`lasernet.groundsegment`); each emulation starts
``HANDOVER_LEAD_S`` before that instant and probes from the station to a satellite at 100 Hz across it
(monotonic-clock UDP echoes, lasernet.measure.probes; one-way delivery is what is judged).

Tolerances come from the same run. With two terminals the new link carries traffic at the handover step and
the old one is released a step later (routes have moved to the new, nearer satellite by then), so nothing
should be lost; the bound allows what could be in flight on the released link when it goes down, its light time
plus the largest tick cost, and only within that step. With one terminal the lost probes form one contiguous window,
whose length must be that between the tick that applied the release and the tick that applied the new link up
(the plan's acquisition_s, quantised by the ticks as they happened) within two probe intervals plus the largest
tick cost.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os

import numpy as np
import pytest

import lasernet
from lasernet.topology import GSL

from ..conftest import TOPOLOGIES

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root to create network namespaces (CI runs as root)", allow_module_level=True)

from .test_emulation import LINKS, _probe  # noqa: E402 (after the root check, as that module's own)

SCENARIO = TOPOLOGIES / "handover.yaml"
STATION, DEST = "mbb", "sat-4-4"
PORT = 7960
INTERVAL_S = 0.01
HANDOVER_LEAD_S = 5.0  # the emulation starts this long before the handover (start-up of the prober: ~0.3 s)
AFTER_S = 5.0  # and probes this long after it


def _with_terminals(scenario, count: int):
    return dataclasses.replace(scenario, ground=tuple(dataclasses.replace(g, terminals=count)
                                                      for g in scenario.ground))


def _first_handover(scenario) -> tuple[float, float, float]:
    """(offset_s of the station's first handover from the scenario's epoch, acquisition_s, the one-way light time
    of the link it releases), from the plan of its one-terminal twin: the first step whose link is down after
    one was up."""
    tl = lasernet.plan(_with_terminals(scenario, 1), duration_s=900, step_s=1)
    cols = np.flatnonzero(tl.links.kind == GSL)
    up = tl.up[:, cols]
    for k in range(int(HANDOVER_LEAD_S) + 2, len(up)):
        if up[k - 1].any() and not up[k].any():
            old = cols[np.flatnonzero(up[k - 1])[0]]
            return float(tl.offsets_s[k]), scenario.gsl_terminal.acquisition_s, float(tl.delay_s[k - 1, old])
    pytest.fail("no handover in the first 15 minutes of topologies/handover.yaml")


def _probe_across(scenario, start, run_dir, acquisition_s: float):
    """Emulate from ``start``, probe STATION -> DEST across the handover; return (lost (bool per probe), send time
    of each probe in emulated s, the ticks' t_s and their largest cost)."""
    with lasernet.Emulation(scenario, run_dir=run_dir, links=LINKS, start=start) as emu:
        count = int((HANDOVER_LEAD_S + acquisition_s + AFTER_S) / INTERVAL_S)
        first_tick = len(emu.ticks)
        collect = _probe(emu, STATION, DEST, count=count, interval_s=INTERVAL_S, port=PORT)
        emu.run(HANDOVER_LEAD_S + acquisition_s + AFTER_S)
        result = collect()
        sent_s = emu.mono_to_s(result.send_ns)
        ticks = emu.ticks[first_tick:]
        return (~result.forward_ok, sent_s, np.array([t.t_s for t in ticks]),
                max(t.cost_s for t in ticks))


def test_a_station_with_a_spare_terminal_loses_nothing_across_a_handover(tmp_path):
    scenario = lasernet.load_scenario(SCENARIO)
    assert scenario.ground[0].terminal_count == 2
    at_s, acq_s, old_delay_s = _first_handover(scenario)
    start = scenario.epoch + dt.timedelta(seconds=at_s - HANDOVER_LEAD_S)
    lost, sent_s, _, max_cost_s = _probe_across(scenario, start, tmp_path / "run", acq_s)
    assert sent_s[0] < HANDOVER_LEAD_S - 1.0, "probing began too late to cover the handover"
    assert sent_s[-1] > HANDOVER_LEAD_S + acq_s + 1.0
    in_flight = math.ceil((old_delay_s + max_cost_s) / INTERVAL_S)
    print(f"make before break: {int(lost.sum())} of {len(lost)} probes lost across the handover at "
          f"{at_s:.0f} s (in flight on the released link at most {in_flight}; largest tick {max_cost_s * 1e3:.1f} ms)")
    assert lost.sum() <= in_flight
    step_s = 1.0  # the plan's step: the old link is released one step after the handover
    near = (sent_s >= HANDOVER_LEAD_S - 0.2) & (sent_s <= HANDOVER_LEAD_S + step_s + in_flight * INTERVAL_S + 0.2)
    assert not lost[~near].any(), "probes lost away from the handover"


def test_the_same_handover_with_one_terminal_loses_exactly_its_acquisition_window(tmp_path):
    scenario = _with_terminals(lasernet.load_scenario(SCENARIO), 1)
    at_s, acq_s, _ = _first_handover(scenario)
    start = scenario.epoch + dt.timedelta(seconds=at_s - HANDOVER_LEAD_S)
    lost, sent_s, tick_s, max_cost_s = _probe_across(scenario, start, tmp_path / "run", acq_s)
    assert sent_s[0] < HANDOVER_LEAD_S - 1.0, "probing began too late to cover the handover"
    lost_idx = np.flatnonzero(lost[:-int(1.0 / INTERVAL_S)])  # the last second's replies may still be in flight
    assert len(lost_idx) > 0
    window_s = (lost_idx[-1] - lost_idx[0] + 1) * INTERVAL_S
    # the ticks that applied the release (first at or after the handover) and the new link up (acq_s later)
    down_tick = tick_s[np.searchsorted(tick_s, HANDOVER_LEAD_S - 1e-9)]
    up_tick = tick_s[np.searchsorted(tick_s, HANDOVER_LEAD_S + acq_s - 1e-9)]
    want_s = up_tick - down_tick
    print(f"break before make: forward loss window {window_s:.3f} s ({len(lost_idx)} probes) against "
          f"{want_s:.3f} s between the ticks applying it (acquisition_s {acq_s:g}); largest tick "
          f"{max_cost_s * 1e3:.1f} ms")
    assert abs(window_s - want_s) <= 2 * INTERVAL_S + max_cost_s + 1e-9
    assert abs(want_s - acq_s) <= 0.2  # the ticks follow the plan's steps (tick_s 0.1)
    assert np.all(lost[lost_idx[0]:lost_idx[-1] + 1])  # one contiguous window
    assert abs(sent_s[lost_idx[0]] - down_tick) <= 2 * INTERVAL_S + max_cost_s + 0.05
