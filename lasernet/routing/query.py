"""Offline route queries: the oracle's path between two nodes, or one node's forwarding table, at one instant.

A routing researcher asks what the emulation would route at emulated time ``t_s`` without emulating: this module
finds the link states a run has at that instant and runs the oracle (:mod:`lasernet.routing.oracle`) over them,
exactly as the live driver does in a tick (``up, delay = timeline.state_at(t_s - offset)``; the links that are
up, each with its light delay interpolated between the two steps around ``t_s``).

Time is the run's clock: ``t_s`` counts emulated seconds from the run's start (the scenario epoch unless a run is
started elsewhere), and the plan is sampled every ``step_s`` from that start. The state at an instant is not a
function of geometry alone, because a plan has memory:

* a link carries traffic only ``acquisition_s`` after it became usable;
* a satellite whose ISL candidates outnumber its terminals keeps the links it already holds;
* a ``longest-visible`` ground station keeps its satellite while it stays usable, so which satellite it holds
  now follows from every handover since the run began.

:func:`plan_at` therefore returns the state one plan from the run's start has at ``t_s``. When the memory reaches
back a bounded time (no ``longest-visible`` station, and a step at least the acquisition time before ``t_s`` at
which no satellite had more usable ISLs than terminals) a short window ending just after ``t_s`` gives it;
otherwise the run is planned from its start up to ``t_s``, in windows continued one from another as the driver
plans them (:func:`lasernet.timeline.plan_next`), so that memory stays bounded and time grows with ``t_s``. A saved plan (``Timeline.load``) is queried
as it is (:func:`load_plan`, :func:`saved_state`).

:func:`path` and :func:`table` answer in node names, over paths that pass through no station that carries no
transit (the scenario's ``transit:``, kept in the plan); their one-way light time is the sum of the delays of the
links the path takes (the oracle breaks ties on delays rounded to the nanosecond, its module docstring says how).
Between two sites a residency rule governs (the scenario's ``policy:``, kept in the plan), the path is the
shortest over the nodes the rule allows (:mod:`lasernet.routing.policy`), and :class:`Path` says which rule, the
unconstrained path where it differs, and the delay cost of sovereignty between the two.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import pathlib
from dataclasses import dataclass

import numpy as np

from .. import timeline as tl_mod
from .. import weather
from ..errors import OptionError
from ..spec.fields import parse_time
from ..spec.scenario import Scenario
from ..timeline import Timeline
from . import oracle, policy

#: Steps planned before ``t_s`` beyond the acquisition time, in the short window: the room in which to find a step
#: with no satellite over its terminal budget.
WARMUP_STEPS = 30
#: Window length (emulated s) when a run is planned from its start up to ``t_s``.
CHAIN_WINDOW_S = 3600.0
NAMES = {"at": "at", "start": "start", "step_s": "step_s", "source": "source", "destination": "destination",
         "node": "node"}


@dataclass(frozen=True)
class Path:
    """The oracle's path from ``nodes[0]`` to ``nodes[-1]``; ``nodes`` is empty when there is none.

    Between the members of a residency rule (``rule``, its jurisdiction) it is the shortest path over the nodes
    the rule allows; ``unconstrained`` is then the shortest path over every node where that differs, and
    ``sovereignty_cost_s`` this path's one-way time minus the unconstrained one's (0 for the same path, inf when
    the pair is reachable only through nodes the rule forbids; None when no rule governs the pair, or it is
    unreachable either way)."""

    source: str
    destination: str
    nodes: tuple[str, ...]
    one_way_s: float  # inf when unreachable
    rule: str | None = None
    unconstrained: "Path | None" = None
    sovereignty_cost_s: float | None = None

    @property
    def hops(self) -> int | None:
        return len(self.nodes) - 1 if self.nodes else None


@dataclass(frozen=True)
class Route:
    """One entry of a node's forwarding table: towards ``destination``, hand packets to ``next_hop``."""

    destination: str
    next_hop: str | None  # None when unreachable
    hops: int | None
    one_way_s: float  # inf when unreachable
    rule: str | None = None  # the residency rule governing the pair, if one does (its path keeps to the rule)


@dataclass(frozen=True)
class State:
    """The link state of a plan at one instant: ``up[L]`` and ``delay_s[L]`` of ``timeline``'s links."""

    timeline: Timeline
    t_s: float  # emulated seconds since the run's start
    at_utc: dt.datetime
    up: np.ndarray
    delay_s: np.ndarray

    @property
    def node_names(self) -> tuple[str, ...]:
        return self.timeline.node_names

    def routes(self) -> oracle.Routes:
        """The oracle's table over the links that are up, through no station that carries no transit (as the
        driver computes it in a tick)."""
        links = self.timeline.links
        return oracle.compute(len(self.node_names), links.a, links.b, self.up,
                              np.where(np.isnan(self.delay_s), 0.0, self.delay_s), transit=self.timeline.transit)

    def policy_routes(self) -> policy.PolicyRoutes:
        """:meth:`routes` and a table per residency rule of the plan, over the nodes it allows."""
        return policy.of_timeline(self.timeline, self.up, self.delay_s)


def seconds_at(at, start: dt.datetime, option: str = NAMES["at"]) -> float:
    """``at`` as seconds since ``start``: a number of seconds (a string of one too) or an ISO 8601 UTC time.

    Raises :class:`OptionError` naming ``option`` when it is neither, not finite, or before ``start``.
    """
    if isinstance(at, (int, float)) and not isinstance(at, bool):
        t_s = float(at)
    else:
        try:
            t_s = float(at)
        except (TypeError, ValueError):
            moment = parse_time(at)
            if moment is None:
                raise OptionError(option, f"must be seconds since the run's start or an ISO 8601 UTC time like "
                                          f"2026-01-01T00:10:00Z, got {at!r}") from None
            t_s = (moment - start).total_seconds()
            if t_s < 0:
                raise OptionError(option, f"{_iso(moment)} is before the run's start {_iso(start)}; give a later "
                                          f"time") from None
    if not math.isfinite(t_s) or t_s < 0:
        raise OptionError(option, f"must be a finite number of seconds >= 0 since the run's start, got {t_s:g}")
    return t_s


def plan_at(scenario: Scenario, at, start: dt.datetime | str | None = None, step_s: float | None = None,
            names: dict[str, str] = NAMES, progress: tl_mod.Progress | None = None) -> State:
    """The link state a run of ``scenario`` from ``start`` (default: its epoch), planned every ``step_s`` (default:
    the scenario's), has at ``at`` (seconds since the start, or an ISO 8601 UTC time; see the module docstring).

    Bad values raise :class:`OptionError` naming the parameter as ``names`` calls it. Far from the start, the
    answer costs planning every step since it (when the plan's memory is unbounded): start the run near ``at``.
    ``progress(done, total)`` is called with steps planned.
    """
    names = {**NAMES, **names}
    start, _, step_s = tl_mod.check_window(scenario, start, 0.0, step_s,
                                           names={"start": names["start"], "step_s": names["step_s"]})
    t_s = seconds_at(at, start, names["at"])
    end = dt.datetime(2051, 1, 1, tzinfo=dt.timezone.utc)
    if t_s + step_s > (end - start).total_seconds():
        raise OptionError(names["at"], f"{t_s:g} s after {_iso(start)} is after 2050 (the ephemeris range); give "
                                       f"an earlier time")
    k = int(math.floor(t_s / step_s))  # the step in force at t_s (as state_at finds it); it interpolates to k + 1
    # A window as long as the chain's windows must fit in memory (the error names --step and the window).
    tl_mod.check_window(scenario, start, min((k + 1) * step_s, CHAIN_WINDOW_S), step_s,
                        names={"start": names["start"], "step_s": names["step_s"], "duration_s": names["at"]})
    window = _short_window(scenario, start, step_s, k)
    if window is None:
        window = _from_start(scenario, start, step_s, k, progress or (lambda done, total: None))
    timeline, first_step = window
    return state(timeline, t_s - first_step * step_s, offset_s=first_step * step_s)


def state(timeline: Timeline, t_s: float, offset_s: float = 0.0, option: str = NAMES["at"]) -> State:
    """The state of ``timeline`` ``t_s`` seconds after its first step (``offset_s``: that step's time in the run).

    Raises :class:`OptionError` naming ``option`` when ``t_s`` lies outside the timeline.
    """
    last_s = float(timeline.offsets_s[-1]) if len(timeline.offsets_s) else -1.0
    if not (math.isfinite(t_s) and -1e-6 <= t_s <= last_s + 1e-6):
        raise OptionError(option, f"{t_s + offset_s:g} s is outside the plan ({offset_s:g} to {offset_s + last_s:g} "
                                  f"s from {_iso(timeline.start_utc - dt.timedelta(seconds=offset_s))}); give a "
                                  f"time inside it or plan a longer window")
    up, delay = timeline.state_at(t_s)
    return State(timeline, t_s + offset_s, timeline.start_utc + dt.timedelta(seconds=t_s), up, delay)


def load_plan(path, option: str = "plan") -> Timeline:
    """A plan :meth:`Timeline.save` wrote (``lasernet plan -o FILE``), or :class:`OptionError` naming ``option``."""
    if not pathlib.Path(path).is_file():
        raise OptionError(option, f"no such file {str(path)!r}; write one with `lasernet plan SCENARIO -o FILE`")
    try:
        return Timeline.load(path)
    except (OSError, ValueError, KeyError, EOFError):
        raise OptionError(option, f"{path} is not a plan `lasernet plan -o FILE` wrote; write one with "
                                  f"`lasernet plan SCENARIO -o FILE`") from None


def saved_state(timeline: Timeline, at, option: str = NAMES["at"]) -> State:
    """The state of a saved plan at ``at`` (seconds since its start, or an ISO 8601 UTC time inside it)."""
    return state(timeline, seconds_at(at, timeline.start_utc, option), option=option)


def path(st: State, source: str, destination: str, names: dict[str, str] = NAMES) -> Path:
    """The oracle's path from node ``source`` to node ``destination`` in the state ``st`` (under the residency
    rule that governs the pair, if one does: see :class:`Path`)."""
    names = {**NAMES, **names}
    s = node_index(st, source, names["source"])
    d = node_index(st, destination, names["destination"])
    if s == d:
        raise OptionError(names["destination"], f"is the source ({source}); give two different nodes")
    pr = st.policy_routes()
    node_names = st.node_names
    nodes = pr.path(s, d)
    found = Path(source, destination, tuple(node_names[i] for i in nodes), _links_s(st, pr.links(s, d), nodes))
    k = pr.rule_of(s, d)
    if k < 0:
        return found
    free = oracle.path(pr.base, s, d)
    rule = pr.rules[k].rule
    if free == nodes:
        return dataclasses.replace(found, rule=rule, sovereignty_cost_s=0.0 if nodes else None)
    unconstrained = Path(source, destination, tuple(node_names[i] for i in free), _one_way_s(st, pr.base, free))
    cost = found.one_way_s - unconstrained.one_way_s if nodes else math.inf
    return dataclasses.replace(found, rule=rule, unconstrained=unconstrained, sovereignty_cost_s=cost)


def table(st: State, node: str, names: dict[str, str] = NAMES) -> list[Route]:
    """The forwarding table of ``node`` in the state ``st``: one :class:`Route` per other node, by name."""
    names = {**NAMES, **names}
    s = node_index(st, node, names["node"])
    pr = st.policy_routes()
    out = []
    for d in sorted(range(len(st.node_names)), key=lambda i: st.node_names[i]):
        if d == s:
            continue
        nodes = pr.path(s, d)
        k = pr.rule_of(s, d)
        out.append(Route(st.node_names[d], st.node_names[nodes[1]] if nodes else None,
                         len(nodes) - 1 if nodes else None, _links_s(st, pr.links(s, d), nodes),
                         pr.rules[k].rule if k >= 0 else None))
    return out


def node_index(st: State, name: str, option: str) -> int:
    """The index of node ``name``, or :class:`OptionError` naming ``option`` with some of the nodes there are."""
    names = st.node_names
    if name in names:
        return names.index(name)
    stations = list(st.timeline.station_names)[:3]
    some = ", ".join(list(names[:3]) + (["..."] if len(names) > 3 + len(stations) else []) + stations)
    raise OptionError(option, f"unknown node {name!r}; nodes are named like {some}")


# ---------------------------------------------------------------------------------------------------------------
def _one_way_s(st: State, routes: oracle.Routes, nodes: list[int]) -> float:
    """The sum of the delays of the links a path takes (inf for no path)."""
    return _links_s(st, [int(routes.link[u, nodes[-1]]) for u in nodes[:-1]], nodes)


def _links_s(st: State, links: list[int], nodes: list[int]) -> float:
    """The sum of the delays of ``links``, the links of the path ``nodes`` (inf for no path)."""
    if not nodes:
        return math.inf
    return float(np.sum(st.delay_s[links], dtype=np.float64))


def _short_window(scenario: Scenario, start: dt.datetime, step_s: float, k: int):
    """(timeline, its first step) of a window ending at step k + 1 whose step k is the run's, or None if it may not be.

    Exact when no station is ``longest-visible``, no clouds are planned (a process from the run's start), the ISL
    pattern is not ``nearest``, no site has diversity stations (``ground.diversity``: hysteresis), and, at some step
    of the window at least the acquisition time before step k, no ISL is down for want of a terminal: from such a
    step on the terminals held do not depend on the steps before, and links acquired in the window are acquired in
    the run.
    """
    if any(g.handover == "longest-visible" for g in scenario.ground):
        return None
    if weather.of(scenario) is not None and scenario.gsl_terminal.kind == "laser":
        return None
    if scenario.isl.pattern == "nearest":  # hysteresis and slews to new partners remember the steps before
        return None
    if scenario.diversity:  # the station serving a site is kept while it has a link: it remembers the steps before
        return None
    acquisition_s = max(scenario.isl_terminal.acquisition_s, scenario.gsl_terminal.acquisition_s)
    acq = int(math.ceil(acquisition_s / step_s - 1e-9))
    k0 = max(0, k - acq - WARMUP_STEPS)
    timeline = tl_mod.plan(scenario, start=start + dt.timedelta(seconds=k0 * step_s),
                           duration_s=(k + 1 - k0) * step_s, step_s=step_s)
    if k0 == 0:
        return timeline, 0  # the run's own first steps
    isl = timeline.links.kind != tl_mod.GSL
    free = ~(timeline.cause[:, isl] == tl_mod.HANDOVER).any(axis=1)  # (T,) no ISL lacked a terminal
    return (timeline, k0) if free[:k - acq - k0 + 1].any() else None


def _from_start(scenario: Scenario, start: dt.datetime, step_s: float, k: int, progress: tl_mod.Progress):
    """(timeline, its first step) of the window holding steps k and k + 1 of a run planned from its start."""
    timeline = tl_mod.plan(scenario, start=start, duration_s=min(CHAIN_WINDOW_S, (k + 1) * step_s), step_s=step_s)
    first = 0
    while first + len(timeline.offsets_s) - 1 < k + 1:
        first += len(timeline.offsets_s) - 1  # the next window starts at this one's last step
        progress(first, k + 1)
        timeline = tl_mod.plan_next(scenario, timeline, min(CHAIN_WINDOW_S, (k + 1 - first) * step_s))
    progress(k + 1, k + 1)
    return timeline, first


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
