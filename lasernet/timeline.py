"""Link states over a time window: which links are up at each step, their light delay, and why the others are down.

:func:`plan` samples the scenario every ``step_s`` seconds over ``[start, start + duration_s]`` and returns a
:class:`Timeline` with, for T steps and L links:

* ``up[T, L]`` (bool): the link carries traffic;
* ``delay_s[T, L]`` (float32): one-way light time over the straight-line range (NaN where a ground link's pair is
  far out of view and its range was not computed);
* ``cause[T, L]`` (uint8): 0 when up, else the reason it is down, one of :data:`CAUSES`; when several hold, the
  most fundamental one is reported (seam, polar, earth, elevation, range, sun, handover, acquisition);
* ``rate_bps[L]``: the terminal data rate;
* ``illumination[T, N]`` (float32): the fraction of the solar disc each satellite sees past the Earth (1 sunlit,
  0 umbra, between: penumbra; :func:`lasernet.geometry.sunlit_fraction`), and ``planes[N]`` the orbital plane
  each satellite belongs to, for the summary's sunlight per plane;
* ``transit[nodes]`` (bool): which nodes may relay traffic (every satellite; a station as its ``transit:`` says),
  what the oracle needs to route over these links (:func:`lasernet.routing.oracle.compute`).

Inter-satellite links are the topology's candidates. Ground links are chosen step by step: each station holds up
to ``max_links`` satellites above its elevation mask, each satellite serves at most ``terminals.gsl.count``
stations, and the station's handover policy decides which: ``nearest`` takes the closest satellites at every
step; ``all-in-range`` takes every usable satellite (the closest first, when more are in view than the station
has terminals), so that routing may choose per destination among them, as Hypatia's ground stations do;
``longest-visible`` keeps a satellite while it stays usable and then takes the one that will stay usable
longest (looking ahead at most the longest pass the constellation allows, :func:`lookahead_s`, whatever the
window; ties go to the closer satellite). ``all-in-range`` chooses as ``nearest`` does (the closest first, up to
``max_links``): its name says that every satellite in view is wanted and ``max_links`` is the station's terminal
count (at least 2), not a choice of how many to take. Every (station, satellite) pair used in the window becomes one link.
A link that becomes usable carries traffic only ``acquisition_s`` later. A satellite never holds more ISLs than
``terminals.isl.count``: where a pattern offers more, the established links keep their terminals, then the
shortest win (:func:`lasernet.terminals.within_budget`); a candidate left without a terminal is down with cause
``handover``, like a ground link its station did not choose.

A run of any length is planned in windows that join into one continuous plan: each :class:`Timeline` ends with
a :class:`Carry`, the state its last step inherits from the steps before it (satellites kept by
``longest-visible`` stations, links holding terminals, how long each link has been acquiring), and
``plan(..., carry=previous.carry)`` starts the next window at that last step, so that every step of every window
is the step one long plan would give (:func:`plan_next`).

Work is done in chunks of time steps, vectorised over satellites, links and stations; a product of unit vectors
finds the few satellites that can be above each station's mask, so that elevations are computed only for those.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import geometry, skydata, terminals
from .orbits import MU_KM3_S2, Satellites, build_satellites
from .errors import OptionError
from .spec.fields import parse_time
from .spec.scenario import Scenario, check_node_names
from .topology import GROUND, GSL, INTER, KINDS, SEAM, LinkTable, isl_candidates

CAUSES = ("up", "acquisition", "range", "earth", "sun", "polar", "seam", "elevation", "handover")
UP, ACQUISITION, RANGE, EARTH, SUN, POLAR, SEAM_CAUSE, ELEVATION, HANDOVER = range(len(CAUSES))

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Carry:
    """What a plan window starting at ``start_utc`` inherits from the steps before it (see the module docstring).

    All of it is the state just before that step: ISLs holding terminals and, per ISL, the steps it had been
    feasible in a row (acquisition); ground pairs (``station * N + satellite`` keys) assigned, those kept by
    ``longest-visible`` stations, and the steps each had been assigned in a row.
    """

    start_utc: dt.datetime
    step_s: float
    isl_held: np.ndarray  # (L_isl,) bool
    isl_run: np.ndarray  # (L_isl,) float steps
    gsl_keys: np.ndarray  # (K,) int64, sorted
    gsl_run: np.ndarray  # (K,) float steps
    gsl_kept: np.ndarray  # (J,) int64: keys held by longest-visible stations


@dataclass
class Timeline:
    """Sampled link states of one scenario over one window (see the module docstring)."""

    scenario_name: str
    start_utc: dt.datetime
    step_s: float
    offsets_s: np.ndarray  # (T,) seconds since start
    links: LinkTable
    n_satellites: int
    up: np.ndarray  # (T, L) bool
    delay_s: np.ndarray  # (T, L) float32
    cause: np.ndarray  # (T, L) uint8
    rate_bps: np.ndarray  # (L,) float64
    meta: dict = field(default_factory=dict)
    carry: Carry | None = None  # the state a window starting at this timeline's last step inherits
    illumination: np.ndarray | None = None  # (T, N) float32: visible fraction of the solar disc per satellite
    planes: tuple[str, ...] = ()  # (N,) orbital plane of each satellite, e.g. "sat-3"; "" for element files
    transit: np.ndarray | None = None  # (nodes,) bool: may relay (None: every node, as plans saved before it)

    def __post_init__(self):
        if self.transit is None:
            self.transit = np.ones(len(self.links.node_names), dtype=bool)

    @property
    def node_names(self) -> tuple[str, ...]:
        return self.links.node_names

    @property
    def station_names(self) -> tuple[str, ...]:
        return self.node_names[self.n_satellites:]

    @property
    def illumination_state(self) -> np.ndarray | None:
        """(T, N) uint8 codes into :data:`lasernet.geometry.ILLUMINATION` (umbra, penumbra, sunlit)."""
        return None if self.illumination is None else geometry.illumination_state(self.illumination)

    # ---------------------------------------------------------------------------------------------------------
    def events(self) -> dict[str, np.ndarray]:
        """Link up/down events: the initial ``up`` of every link up at the start, then every change.

        Returns columns ``step``, ``link``, ``up`` (bool), ``cause`` (code of the new state) and ``delay_s``,
        ordered by step then link.
        """
        up = self.up
        first = np.flatnonzero(up[0]) if len(up) else np.zeros(0, dtype=int)
        steps_c, links_c = np.nonzero(up[1:] != up[:-1])
        steps = np.concatenate([np.zeros(len(first), dtype=int), steps_c + 1])
        links = np.concatenate([first, links_c])
        return {"step": steps, "link": links, "up": up[steps, links], "cause": self.cause[steps, links],
                "delay_s": self.delay_s[steps, links]}

    def node_events(self) -> dict[str, np.ndarray]:
        """Satellite illumination events: every satellite's state at the start, then every change of state.

        Returns columns ``step``, ``satellite`` (index) and ``state`` (code into
        :data:`lasernet.geometry.ILLUMINATION`: a satellite entering eclipse goes sunlit, penumbra, umbra,
        penumbra, sunlit), ordered by step then satellite; empty for a timeline without illumination.
        """
        state = self.illumination_state
        if state is None or not len(state):
            none = np.zeros(0, dtype=int)
            return {"step": none, "satellite": none, "state": np.zeros(0, dtype=np.uint8)}
        steps_c, sats_c = np.nonzero(state[1:] != state[:-1])
        steps = np.concatenate([np.zeros(state.shape[1], dtype=int), steps_c + 1])
        sats = np.concatenate([np.arange(state.shape[1]), sats_c])
        return {"step": steps, "satellite": sats, "state": state[steps, sats]}

    def write_events_csv(self, path: str | Path) -> int:
        """Write ``time_utc,link,a,b,kind,event,cause,delay_ms`` rows; returns the number of events.

        Link rows (kind ``isl``/``gsl``, :meth:`events`) and, after those of the same step, illumination rows of
        satellites (kind ``node``, link and a = the satellite, event ``umbra``/``penumbra``/``sunlit``,
        :meth:`node_events`).
        """
        ev = self.events()
        nev = self.node_events()
        names = self.links.names
        nodes = self.node_names
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        when = [_iso(self.start_utc + dt.timedelta(seconds=float(s))) for s in self.offsets_s]
        rows = [[when[step], names[link], nodes[self.links.a[link]], nodes[self.links.b[link]],
                 KINDS[self.links.kind[link]], "up" if is_up else "down", "" if is_up else CAUSES[cause],
                 "" if math.isnan(delay) else f"{delay * 1e3:.3f}"]
                for step, link, is_up, cause, delay in zip(ev["step"].tolist(), ev["link"].tolist(),
                                                           ev["up"].tolist(), ev["cause"].tolist(),
                                                           ev["delay_s"].tolist())]
        rows += [[when[step], nodes[sat], nodes[sat], "", "node", geometry.ILLUMINATION[state], "", ""]
                 for step, sat, state in zip(nev["step"].tolist(), nev["satellite"].tolist(),
                                             nev["state"].tolist())]
        # Both streams are ordered by step: merge them, links first within a step.
        order = np.argsort(np.concatenate([ev["step"] * 2, nev["step"] * 2 + 1]), kind="stable")
        with tmp.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["time_utc", "link", "a", "b", "kind", "event", "cause", "delay_ms"])
            w.writerows(rows[k] for k in order.tolist())
        tmp.replace(path)
        return len(rows)

    # ---------------------------------------------------------------------------------------------------------
    def summary(self) -> dict:
        """Numbers a person wants first: links up, delays, outages by cause, ground coverage."""
        out: dict = {"steps": int(len(self.offsets_s)), "step_s": self.step_s,
                     "duration_s": float(self.offsets_s[-1]) if len(self.offsets_s) else 0.0,
                     "satellites": self.n_satellites, "stations": len(self.station_names)}
        ev = self.events()
        later = ev["step"] > 0
        for kind_code, kind in enumerate(KINDS):
            cols = self.links.kind == kind_code
            up = self.up[:, cols]
            per_step = up.sum(axis=1)
            delays_ms = self.delay_s[:, cols][up].astype(float) * 1e3
            downs = later & ~ev["up"] & (self.links.kind[ev["link"]] == kind_code)
            causes = {CAUSES[c]: int(n) for c, n in zip(*np.unique(ev["cause"][downs], return_counts=True))}
            down_steps = {CAUSES[c]: int(n) for c, n in zip(*np.unique(self.cause[:, cols][~up],
                                                                         return_counts=True))}
            out[kind] = {
                "links": int(cols.sum()),
                "up_min": int(per_step.min()) if len(per_step) else 0,
                "up_mean": float(per_step.mean()) if len(per_step) else 0.0,
                "up_max": int(per_step.max()) if len(per_step) else 0,
                "delay_ms": {p: (float(np.percentile(delays_ms, p)) if delays_ms.size else None)
                             for p in (0, 50, 90, 99, 100)},
                "down_events_by_cause": causes,
                "down_link_steps_by_cause": down_steps,
            }
        out["coverage"] = self.ground_coverage()
        out["sunlight"] = self.sunlight()
        return out

    def sunlight(self) -> dict:
        """Share of the window's sunlight each satellite gets: the mean visible fraction of the solar disc.

        ``satellites``: min / median / max over satellites; ``planes``: the mean per orbital plane;
        ``eclipsed``: how many satellites spend at least one step in the umbra or penumbra. Empty without
        illumination.
        """
        if self.illumination is None or not self.illumination.size:
            return {}
        per_sat = self.illumination.mean(axis=0, dtype=np.float64)
        planes: dict[str, list[float]] = {}
        for label, f in zip(self.planes, per_sat):
            if label:
                planes.setdefault(label, []).append(float(f))
        return {"satellites": {"min": float(per_sat.min()), "median": float(np.median(per_sat)),
                               "max": float(per_sat.max())},
                "planes": {label: float(np.mean(v)) for label, v in planes.items()},
                "eclipsed": int((self.illumination < 1.0).any(axis=0).sum())}

    def ground_coverage(self) -> dict[str, float]:
        """Fraction of steps each station has at least one ground link up."""
        cover = {}
        gsl = self.links.kind == GSL
        for g, name in enumerate(self.station_names):
            cols = gsl & (self.links.a == self.n_satellites + g)
            cover[name] = float(self.up[:, cols].any(axis=1).mean()) if cols.any() else 0.0
        return cover

    # ---------------------------------------------------------------------------------------------------------
    def state_at(self, offset_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(up[L], delay_s[L]) at ``offset_s`` after start: up from the step in force, delay interpolated."""
        if not len(self.offsets_s):
            raise ValueError("empty timeline")
        x = (offset_s - self.offsets_s[0]) / self.step_s
        k = int(np.clip(math.floor(x), 0, len(self.offsets_s) - 1))
        k1 = min(k + 1, len(self.offsets_s) - 1)
        w = float(np.clip(x - k, 0.0, 1.0))
        d0, d1 = self.delay_s[k].astype(float), self.delay_s[k1].astype(float)
        delay = np.where(np.isnan(d1), d0, d0 + w * (d1 - d0))
        return self.up[k].copy(), delay

    def save(self, path: str | Path) -> None:
        """Write the timeline to a compressed ``.npz`` (written to a temporary name, then renamed)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part.npz")
        np.savez_compressed(
            tmp, format=np.array("lasernet-timeline-1"), scenario_name=np.array(self.scenario_name),
            start_utc=np.array(_iso(self.start_utc)), step_s=np.array(self.step_s), offsets_s=self.offsets_s,
            node_names=np.array(self.node_names), n_satellites=np.array(self.n_satellites),
            link_a=self.links.a, link_b=self.links.b, link_kind=self.links.kind, link_role=self.links.role,
            up=np.packbits(self.up, axis=0), n_steps=np.array(self.up.shape[0]), delay_s=self.delay_s,
            cause=self.cause, rate_bps=self.rate_bps, meta=np.array(json.dumps(self.meta)),
            transit=np.asarray(self.transit, dtype=bool),
            **({} if self.illumination is None else {"illumination": self.illumination,
                                                     "planes": np.array(self.planes, dtype=str)}))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "Timeline":
        with np.load(path, allow_pickle=False) as z:
            if str(z["format"]) != "lasernet-timeline-1":
                raise ValueError(f"{path}: not a lasernet timeline (format {z['format']})")
            links = LinkTable(tuple(str(s) for s in z["node_names"]), z["link_a"], z["link_b"], z["link_kind"],
                              z["link_role"])
            up = np.unpackbits(z["up"], axis=0, count=int(z["n_steps"])).astype(bool)
            lit = "illumination" in z.files  # absent from timelines saved before illumination was planned
            return cls(scenario_name=str(z["scenario_name"]), start_utc=parse_time(str(z["start_utc"])),
                       step_s=float(z["step_s"]), offsets_s=z["offsets_s"], links=links,
                       n_satellites=int(z["n_satellites"]), up=up, delay_s=z["delay_s"], cause=z["cause"],
                       rate_bps=z["rate_bps"], meta=json.loads(str(z["meta"])),
                       illumination=z["illumination"] if lit else None,
                       planes=tuple(str(p) for p in z["planes"]) if lit else (),
                       transit=z["transit"] if "transit" in z.files else None)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ==============================================================================================================
# Building a timeline

@dataclass
class _Stations:
    names: tuple[str, ...]
    pos_km: np.ndarray  # (G, 3)
    up: np.ndarray  # (G, 3)
    mask_deg: np.ndarray  # (G,)
    max_links: np.ndarray  # (G,)
    sticky: np.ndarray  # (G,) bool: longest-visible policy

    @classmethod
    def of(cls, scenario: Scenario) -> "_Stations":
        gs = scenario.ground
        lat = np.array([g.lat_deg for g in gs], dtype=float)
        lon = np.array([g.lon_deg for g in gs], dtype=float)
        alt = np.array([g.alt_m for g in gs], dtype=float)
        return cls(tuple(g.name for g in gs), geometry.geodetic_to_itrs_km(lat, lon, alt).reshape(-1, 3),
                   geometry.up_unit(lat, lon).reshape(-1, 3), np.array([g.min_elevation_deg for g in gs]),
                   np.array([g.max_links for g in gs], dtype=int),
                   np.array([g.handover == "longest-visible" for g in gs], dtype=bool))


@dataclass
class _Sightings:
    """Sparse (step, station, satellite) entries near each station: range and why unusable (0 = usable)."""

    step: list = field(default_factory=list)
    station: list = field(default_factory=list)
    sat: list = field(default_factory=list)
    range_km: list = field(default_factory=list)
    cause: list = field(default_factory=list)

    def add(self, step, station, sat, range_km, cause):
        for name, arr in zip(("step", "station", "sat", "range_km", "cause"), (step, station, sat, range_km, cause)):
            getattr(self, name).append(arr)

    def arrays(self):
        cat = lambda xs, dt_: np.concatenate(xs).astype(dt_) if xs else np.zeros(0, dt_)  # noqa: E731
        return (cat(self.step, np.int32), cat(self.station, np.int32), cat(self.sat, np.int32),
                cat(self.range_km, np.float32), cat(self.cause, np.uint8))


def plan(scenario: Scenario, start: dt.datetime | str | None = None, duration_s: float | None = None,
         step_s: float | None = None, progress: Progress | None = None, carry: Carry | None = None) -> Timeline:
    """Sample the scenario's links over a window; defaults come from the scenario (start = its epoch).

    With ``carry`` (a previous window's :attr:`Timeline.carry`) the window continues that one: it starts at the
    carry's instant, with its step, and its steps are those one long plan would give (see :func:`plan_next`).
    """
    if carry is not None:
        if start is not None or step_s is not None:
            raise ValueError("a window continuing a carry starts at its instant, with its step: give no start_s or step_s")
        start, step_s = carry.start_utc, carry.step_s
    start, duration_s, step_s = check_window(scenario, start, duration_s, step_s)

    sats = build_satellites(scenario)
    stations = _Stations.of(scenario)
    node_names = _node_names(scenario, sats, stations)
    check_node_names(scenario, node_names)
    isl = isl_candidates(scenario, sats, node_names)
    offsets = np.arange(int(math.floor(duration_s / step_s + 1e-9)) + 1) * step_s
    T, N = len(offsets), len(sats)
    # longest-visible stations rank satellites by how long they stay usable: sight that far past the window
    ahead = int(math.ceil(lookahead_s(scenario, sats, start) / step_s)) if stations.sticky.any() else 0
    T_sight = T + ahead
    sight_offsets = np.arange(T_sight) * step_s

    isl_cause = np.zeros((T, len(isl)), dtype=np.uint8)
    isl_delay = np.zeros((T, len(isl)), dtype=np.float32)
    illumination = np.ones((T, N), dtype=np.float32)
    sightings = _Sightings()
    chunk = max(1, min(T_sight, 120_000 // max(N, 1)))
    for lo in range(0, T_sight, chunk):
        hi = min(T_sight, lo + chunk)
        t = skydata.times(start, sight_offsets[lo:hi])
        pos = sats.positions_km(t)
        sun = geometry.sun_itrs_km(t)
        if lo < T:
            h = min(hi, T)
            illumination[lo:h] = geometry.sunlit_fraction(pos[:h - lo], sun[:h - lo, None, :])
            isl_cause[lo:h], isl_delay[lo:h] = _isl_states(scenario, isl, pos[:h - lo], sun[:h - lo],
                                                           illumination[lo:h] > 0)
        if len(stations.names):
            _sight(scenario, stations, pos, sun, lo, sightings)
        if progress:
            progress(min(hi, T), T)

    isl_up_raw = isl_cause == UP
    held, isl_held = terminals.within_budget(isl_up_raw, isl_delay, isl.a, isl.b, N, scenario.isl_terminal.count,
                                             None if carry is None else carry.isl_held)
    isl_cause[isl_up_raw & ~held] = HANDOVER
    run_before = None if carry is None else carry.isl_run
    isl_up = terminals.acquired(held, step_s, scenario.isl_terminal.acquisition_s, run_before)
    isl_cause[held & ~isl_up] = ACQUISITION
    isl_run = terminals.feasible_run(held, run_before)

    gsl, gsl_up, gsl_delay, gsl_cause, gsl_carry = _ground_links(scenario, stations, sats, node_names, sightings, T,
                                                                 step_s, ahead, carry)
    links = isl.concat(gsl)
    rate = np.concatenate([np.full(len(isl), scenario.isl_terminal.data_rate_bps),
                           np.full(len(gsl), scenario.gsl_terminal.data_rate_bps)])
    return Timeline(
        scenario_name=scenario.name, start_utc=start, step_s=step_s, offsets_s=offsets, links=links,
        n_satellites=N, up=np.concatenate([isl_up, gsl_up], axis=1),
        delay_s=np.concatenate([isl_delay, gsl_delay], axis=1),
        cause=np.concatenate([isl_cause, gsl_cause], axis=1), rate_bps=rate,
        meta={"scenario": str(scenario.source), "seed": scenario.seed},
        carry=Carry(start + dt.timedelta(seconds=float(offsets[-1])), step_s, isl_held, isl_run, *gsl_carry),
        illumination=illumination, planes=_plane_labels(scenario, sats),
        transit=np.array([True] * N + [g.transit for g in scenario.ground], dtype=bool))


def _plane_labels(scenario: Scenario, sats: Satellites) -> tuple[str, ...]:
    """The orbital plane of each satellite, ``<shell>-<plane>``; "" for satellites of element files."""
    shells = scenario.constellation.shells
    return tuple(f"{shells[k].name}-{p}" if k >= 0 else "" for k, p in zip(sats.shell, sats.plane))


def plan_next(scenario: Scenario, previous: Timeline, duration_s: float) -> Timeline:
    """The window after ``previous``: it starts at ``previous``'s last step and continues its plan exactly."""
    return plan(scenario, duration_s=duration_s, carry=previous.carry)


def lookahead_s(scenario: Scenario, sats: Satellites, start: dt.datetime) -> float:
    """How far ahead ``longest-visible`` stations look: the longest pass any satellite can make over them.

    A satellite at radius r stays above elevation e of a station at radius R within the Earth-central angle
    theta = acos(R cos(e) / r) - e; crossing 2 theta at the slowest rate it can move over the ground (its mean
    motion less the Earth's rotation) bounds a pass. Ranking by remaining time capped there is ranking by the
    whole pass, and it is the same in every window. At most :data:`MAX_LOOKAHEAD_S` (high orbits).
    """
    if len(sats) == 0:
        return 0.0
    pos = sats.positions_km(skydata.times(start, np.zeros(1)))[0]
    r_sat = float(geometry.norm_km(pos).max())
    r_station = float(geometry.WGS84_B_KM)
    e = math.radians(min(g.min_elevation_deg for g in scenario.ground)) if scenario.ground else 0.0
    theta = math.acos(min(1.0, r_station * math.cos(e) / r_sat)) - e
    rate = math.sqrt(MU_KM3_S2 / r_sat ** 3) - geometry.EARTH_ROTATION_RAD_S
    return MAX_LOOKAHEAD_S if rate <= 0 else min(MAX_LOOKAHEAD_S, 2 * theta / rate)


#: The most ``longest-visible`` stations look ahead (above ~10,000 km a pass lasts hours).
MAX_LOOKAHEAD_S = 3 * 3600.0


#: Bytes per link and time step at the plan's peak: cause, delay and up (6) twice (per kind, then the whole
#: timeline), the acquisition pass's temporaries (int32 + float64 + bools) and numpy's copies, with a margin.
PLAN_BYTES_PER_LINK_STEP = 40
#: Bytes per (step, station, satellite) sighting: step, station, satellite (int32), range (float32), cause.
PLAN_BYTES_PER_SIGHTING = 17
PLAN_MEMORY_SHARE = 0.8  # of MemAvailable
GSL_CHANGE_S = 30.0  # a station's link changes satellite at most about this often (nearest, dense LEO shells)
PARAMETERS = {"start": "start", "duration_s": "duration_s", "step_s": "step_s"}


def check_window(scenario: Scenario, start, duration_s, step_s, names: dict[str, str] = PARAMETERS):
    """The window ``(start, duration_s, step_s)`` of a plan, defaults filled in, or OptionError naming the bad one.

    ``names`` says how each parameter is called in the error (the CLI passes ``{"duration_s": "--duration", ...}``).
    Besides the values, the memory the plan's arrays will need (:func:`plan_memory_bytes`) must fit in
    :data:`PLAN_MEMORY_SHARE` of the machine's available memory: the error gives the figure and the fix.
    """
    names = {**PARAMETERS, **names}
    if isinstance(start, str):
        parsed = parse_time(start)
        if parsed is None:
            raise OptionError(names["start"], f"must be an ISO 8601 UTC time like 2026-01-01T00:00:00Z, got {start!r}")
        start = parsed
    start = start or scenario.epoch
    duration_s = scenario.plan.duration_s if duration_s is None else float(duration_s)
    step_s = scenario.plan.step_s if step_s is None else float(step_s)
    if not (math.isfinite(step_s) and step_s > 0):
        raise OptionError(names["step_s"], f"must be a finite number of seconds > 0, got {step_s:g}")
    if not (math.isfinite(duration_s) and duration_s >= 0):
        raise OptionError(names["duration_s"], f"must be a finite number of seconds >= 0, got {duration_s:g}")
    if not 1960 <= start.year <= 2050:
        raise OptionError(names["start"], f"must be between 1960 and 2050 (ephemeris range), got {start.year}")
    if duration_s > (dt.datetime(2051, 1, 1, tzinfo=dt.timezone.utc) - start).total_seconds():
        raise OptionError(names["duration_s"], f"{duration_s:g} s from {start:%Y-%m-%d} ends after 2050 (the "
                                               f"ephemeris range); use a shorter {names['duration_s']}")
    need, have = plan_memory_bytes(scenario, duration_s, step_s), _mem_available_bytes()
    if have and need > PLAN_MEMORY_SHARE * have:
        raise OptionError(f"{names['step_s']} {step_s:g}",
                          f"with {names['duration_s']} {duration_s:g} the plan would need {_bytes(need)} of arrays "
                          f"(limit: {PLAN_MEMORY_SHARE:.0%} of MemAvailable, {_bytes(PLAN_MEMORY_SHARE * have)}); "
                          f"use a larger {names['step_s']} or a shorter {names['duration_s']}")
    return start, duration_s, step_s


def plan_memory_bytes(scenario: Scenario, duration_s: float, step_s: float) -> float:
    """An upper estimate of the memory :func:`plan` needs for a window, from the scenario alone (nothing built).

    T steps times, per step: the ISL candidates of the pattern (2 per satellite for a plus-grid, 1 for a ring),
    the ground links (:func:`_gsl_pairs_estimate`: each station's ``max_links`` satellites, a new one every
    :data:`GSL_CHANGE_S`, or for ``all-in-range`` those in view, each held about half a pass), and
    the sightings: the satellites within reach of each station's mask (the share of the sphere a cap of the
    mask's Earth-central angle covers, for the highest shell, or GEO with element files).
    """
    steps = math.floor(duration_s / step_s + 1e-9) + 1
    shells = scenario.constellation.shells
    n_walker = sum(s.size for s in shells)
    n_sat = n_walker + 64 * len(scenario.constellation.element_files)  # element files: a guess, read later
    isl = {"plus-grid": 2 * n_walker, "ring": n_walker, "explicit": len(scenario.isl.links)}.get(scenario.isl.pattern,
                                                                                                  0)
    gsl = sum(_gsl_pairs_estimate(scenario, g, duration_s, n_sat) for g in scenario.ground)
    sightings = 0.0
    if scenario.ground:
        r_earth, r_sat = geometry.WGS84_A_KM, geometry.WGS84_A_KM + max(
            [s.altitude_km for s in shells] + ([35786.0] if scenario.constellation.element_files else []))
        e = math.radians(min(g.min_elevation_deg for g in scenario.ground))
        angle = min(math.pi, math.acos(min(1.0, r_earth * math.cos(e) / r_sat)) - e + math.radians(0.5))
        sightings = len(scenario.ground) * n_sat * (1 - math.cos(angle)) / 2
    return float(steps) * (8 + PLAN_BYTES_PER_LINK_STEP * (isl + gsl) + PLAN_BYTES_PER_SIGHTING * sightings)


def _gsl_pairs_estimate(scenario: Scenario, station, duration_s: float, n_sat: int) -> float:
    """An upper estimate of the (station, satellite) pairs a window gives one station, from the scenario alone.

    ``nearest`` and ``longest-visible`` stations hold ``max_links`` satellites and change one about every
    :data:`GSL_CHANGE_S`. An ``all-in-range`` station holds every satellite in view (at most ``max_links``; at most
    three times the mean number in view, which is the share of the shell in the cap of its mask, for the highest
    shell), and each stays about half a pass (the longest pass over the mask, for the lowest shell).
    """
    if station.handover != "all-in-range":
        return min(n_sat, station.max_links * (1 + duration_s / GSL_CHANGE_S))
    altitudes = [s.altitude_km for s in scenario.constellation.shells] or [35786.0]
    if scenario.constellation.element_files:
        altitudes.append(35786.0)
    e = math.radians(station.min_elevation_deg)
    r_earth = geometry.WGS84_A_KM

    def cap_angle(altitude_km):
        return max(0.0, math.acos(min(1.0, r_earth * math.cos(e) / (r_earth + altitude_km))) - e)

    in_view = min(station.max_links, n_sat, 3.0 * n_sat * (1 - math.cos(cap_angle(max(altitudes)))) / 2 + 1)
    r_low = r_earth + min(altitudes)
    rate = math.sqrt(MU_KM3_S2 / r_low ** 3) - geometry.EARTH_ROTATION_RAD_S
    half_pass_s = cap_angle(min(altitudes)) / rate if rate > 0 else math.inf
    return min(n_sat, in_view * (1 + duration_s / max(GSL_CHANGE_S, half_pass_s)))


def _mem_available_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.3g} {unit}" if n < 1000 * size else f"{n / size:,.0f} {unit}"
    return f"{n / 1e3:.3g} kB"


def _node_names(scenario: Scenario, sats: Satellites, stations: _Stations) -> tuple[str, ...]:
    return tuple(sats.names) + tuple(stations.names)  # check_node_names checks them


def _isl_states(scenario: Scenario, isl: LinkTable, pos: np.ndarray, sun: np.ndarray,
                lit: np.ndarray | None = None):
    """cause (Tc, L) before acquisition, and delay_s (Tc, L), of the candidate ISLs for a chunk of steps.

    ``lit`` (Tc, N): where any part of the Sun is visible from the satellite (computed here when not given).
    """
    term, cfg = scenario.isl_terminal, scenario.isl
    pa, pb = pos[:, isl.a], pos[:, isl.b]
    rng = geometry.range_km(pa, pb)
    cause = np.zeros(rng.shape, dtype=np.uint8)
    if len(isl) == 0:
        return cause, rng.astype(np.float32)
    if term.kind == "laser" and term.sun_exclusion_deg > 0:
        # The Earth hides the Sun from a satellite in the umbra; a hidden Sun blinds nothing, and any visible
        # part of it (penumbra) is taken to blind.
        sun_unit = (sun / geometry.norm_km(sun)[:, None])[:, None, :]
        if lit is None:
            lit = geometry.sunlit_fraction(pos, sun[:, None, :]) > 0
        cause[terminals.sun_blinded_both_ends(term, pa, pb, sun_unit, lit[:, isl.a], lit[:, isl.b])] = SUN
    cause[rng > term.max_range_km] = RANGE
    cause[geometry.earth_blocks(pa, pb, cfg.atmosphere_km, rng)] = EARTH
    if cfg.polar_cutoff_deg < 90:
        lat = np.abs(geometry.latitude_deg(pos))
        polar = (lat[:, isl.a] > cfg.polar_cutoff_deg) | (lat[:, isl.b] > cfg.polar_cutoff_deg)
        cause[polar & (isl.role == INTER)[None, :]] = POLAR
    cause[:, isl.role == SEAM] = SEAM_CAUSE
    return cause, geometry.light_delay_s(rng).astype(np.float32)


def _sight(scenario: Scenario, st: _Stations, pos: np.ndarray, sun: np.ndarray, step0: int, out: _Sightings):
    """Record every (step, station, satellite) that may be above a station's mask during a chunk of steps.

    A satellite at radius r can stand above elevation e of a station at radius R only within the Earth-central
    angle acos(R cos(e) / r) - e of it; one matrix product of unit vectors (satellites x stations) finds those
    few candidates, and exact elevations, ranges and Sun angles are computed for them alone.
    """
    Tc, N, _ = pos.shape
    flat = pos.reshape(-1, 3)
    r_sat = geometry.norm_km(flat)
    r_station = float(geometry.norm_km(st.pos_km).min())
    e = np.radians(float(st.mask_deg.min()))
    max_angle = np.arccos(min(1.0, r_station * np.cos(e) / float(r_sat.max()))) - e + np.radians(0.5)
    u_sat = (flat / r_sat[:, None]).astype(np.float32)
    u_station = (st.pos_km / geometry.norm_km(st.pos_km)[:, None]).astype(np.float32)
    rows = max(1, 4_000_000 // max(len(st.names), 1))
    ks, gs = [], []
    for i in range(0, len(flat), rows):
        hit = np.flatnonzero(u_sat[i:i + rows] @ u_station.T > np.cos(max_angle))
        ks.append(hit // len(st.names) + i)
        gs.append(hit % len(st.names))
    k = np.concatenate(ks).astype(np.int64)
    g = np.concatenate(gs).astype(np.int32)
    step_local, n = np.divmod(k, N)
    sat_km = flat[k]
    rng = geometry.range_km(st.pos_km[g], sat_km)
    el = geometry.elevation_deg(st.pos_km[g], st.up[g], sat_km)
    cause = np.zeros(len(g), dtype=np.uint8)
    term = scenario.gsl_terminal
    if term.kind == "laser" and term.sun_exclusion_deg > 0:
        sun_g = sun[step_local]
        sun_up = geometry.elevation_deg(st.pos_km[g], st.up[g], sun_g) > 0
        cause[terminals.sun_blinded(term, st.pos_km[g], sat_km, sun_g, sun_up)] = SUN
    cause[rng > term.max_range_km] = RANGE
    cause[el < st.mask_deg[g]] = ELEVATION
    out.add(step_local + step0, g, n, rng, cause)


def _ground_links(scenario: Scenario, st: _Stations, sats: Satellites, node_names, sightings: _Sightings,
                  T: int, step_s: float, ahead: int, carry: Carry | None):
    """Assign satellites to stations step by step; return the GSL table, its (T, P) up, delay and cause, and the
    ground part of the window's :class:`Carry`. Sightings reach ``ahead`` steps past the window (lookahead)."""
    N = len(sats)
    step, g, n, rng, cause = sightings.arrays()
    usable = cause == UP
    remaining = (np.minimum(_remaining_usable_s(step[usable], g[usable], n[usable], N, step_s), ahead * step_s)
                 if st.sticky.any() else np.zeros(int(usable.sum())))
    inside = step[usable] < T
    u_step, u_g, u_n = step[usable][inside], g[usable][inside], n[usable][inside]
    chosen, kept = _assign(u_step, u_g, u_n, rng[usable][inside], remaining[inside], st, T, N,
                           scenario.gsl_terminal.count,
                           np.zeros(0, np.int64) if carry is None else carry.gsl_kept)
    cu_step, cu_g, cu_n = u_step[chosen], u_g[chosen], u_n[chosen]
    # The window's ground links: the pairs it assigns, and those assigned just before it (so that their end,
    # and its cause, is part of this window even when the pair is never assigned in it).
    pair_keys = np.unique(np.concatenate([cu_g.astype(np.int64) * N + cu_n,
                                          np.zeros(0, np.int64) if carry is None else carry.gsl_keys]))
    P = len(pair_keys)
    table = LinkTable(node_names, (N + pair_keys // N).astype(int), (pair_keys % N).astype(int),
                      np.full(P, GSL, dtype=np.uint8), np.full(P, GROUND, dtype=np.uint8))
    delay = np.full((T, P), np.nan, dtype=np.float32)
    why = np.full((T, P), ELEVATION, dtype=np.uint8)
    inwin = step < T
    keys = g[inwin].astype(np.int64) * N + n[inwin]
    col = np.searchsorted(pair_keys, keys)
    known = (col < P) & (pair_keys[np.minimum(col, max(P - 1, 0))] == keys) if P else np.zeros(len(keys), bool)
    w_step, w_rng, w_cause = step[inwin][known], rng[inwin][known], cause[inwin][known]
    delay[w_step, col[known]] = geometry.light_delay_s(w_rng)
    why[w_step, col[known]] = np.where(w_cause == UP, HANDOVER, w_cause)
    assigned = np.zeros((T, P), dtype=bool)
    assigned[cu_step, np.searchsorted(pair_keys, cu_g.astype(np.int64) * N + cu_n)] = True
    why[assigned] = UP
    run_before = None
    if carry is not None:  # steps each pair had been assigned in a row before this window (0: it was not)
        run_before = np.zeros(P)
        at = np.searchsorted(carry.gsl_keys, pair_keys)
        hit = (at < len(carry.gsl_keys)) & (carry.gsl_keys[np.minimum(at, max(len(carry.gsl_keys) - 1, 0))]
                                            == pair_keys) if len(carry.gsl_keys) else np.zeros(P, bool)
        run_before[hit] = carry.gsl_run[at[hit]]
    up = terminals.acquired(assigned, step_s, scenario.gsl_terminal.acquisition_s, run_before)
    why[assigned & ~up] = ACQUISITION
    run = terminals.feasible_run(assigned, run_before)
    going = run > 0
    return table, up, delay, why, (pair_keys[going], run[going], np.sort(kept))


def _assign(step, g, n, rng, remaining, st: _Stations, T: int, N: int, sat_capacity: int,
            kept_before: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which usable (step, station, satellite) entries are chosen; stations propose, satellites accept.

    Per step, every station proposes its best ``max_links`` satellites not yet refused; every satellite keeps the
    closest ``sat_capacity`` proposals and refuses the rest; refused stations propose their next best, until no
    one is refused (deferred acceptance, vectorised over all stations at once). ``nearest`` and ``all-in-range``
    stations score by range. ``longest-visible`` stations keep what they hold while it stays usable and otherwise
    score by how long the satellite stays usable (``remaining``, capped at the lookahead), the closer first on a
    tie, which makes steps depend on each other. ``kept_before`` are the keys ``station * N + satellite`` that longest-visible
    stations held just before the first step. Returns the chosen entries and the keys held just before the last
    step (the next window's ``kept_before``).
    """
    chosen = np.zeros(len(step), dtype=bool)
    none = np.zeros(0, dtype=np.int64)
    if len(step) == 0 or sat_capacity == 0:
        return chosen, none
    sticky = st.sticky[g]
    if not sticky.any():  # every step independent: do them all at once
        return _defer_accept(step.astype(np.int64) * len(st.names) + g, step.astype(np.int64) * N + n,
                             rng.astype(float), rng, st.max_links[g], sat_capacity), none
    score = np.where(sticky, -remaining, rng).astype(float)
    order = np.argsort(step, kind="stable")
    bounds = np.searchsorted(step[order], np.arange(T + 1))
    held = np.asarray(kept_before, dtype=np.int64)  # keys station*N+sat held by sticky stations at the step before
    kept_out = held
    for k in range(T):
        if k == T - 1:
            kept_out = held
        idx = order[bounds[k]:bounds[k + 1]]
        if len(idx) == 0:
            held = held[:0]
            continue
        key = g[idx].astype(np.int64) * N + n[idx]
        s = score[idx].copy()
        s[np.isin(key, held) & sticky[idx]] = -np.inf  # keep what is still usable
        pick = _defer_accept(g[idx], n[idx], s, rng[idx], st.max_links[g[idx]], sat_capacity)
        chosen[idx[pick]] = True
        held = key[pick & sticky[idx]]
    return chosen, kept_out


def _defer_accept(proposer, acceptor, score, tie, quota, capacity) -> np.ndarray:
    """Deferred acceptance over entries (proposer, acceptor, score): lower score is better on both sides, then
    lower ``tie``.

    Entries are sorted once by (proposer, score, tie); a round then costs a cumulative sum over the entries plus a
    sort of the current proposals only, and rounds stop when no acceptor refuses anyone (usually the first).
    """
    E = len(proposer)
    o = np.lexsort((tie, score, proposer))
    prop_s, score_s, acc_s, tie_s = proposer[o], np.asarray(score)[o], acceptor[o], np.asarray(tie)[o]
    quota_s = np.asarray(quota)[o]
    starts = np.flatnonzero(np.r_[True, prop_s[1:] != prop_s[:-1]])
    group_start = np.repeat(starts, np.diff(np.r_[starts, E]))
    alive = np.ones(E, dtype=bool)
    while True:
        alive_before = np.cumsum(alive) - alive  # alive entries before each, overall
        rank = alive_before - alive_before[group_start]
        propose = np.flatnonzero(alive & (rank < quota_s))
        po = propose[np.lexsort((tie_s[propose], score_s[propose], acc_s[propose]))]
        acc = acc_s[po]
        first = np.r_[True, acc[1:] != acc[:-1]]
        pos = np.arange(len(po))
        acc_rank = pos - np.maximum.accumulate(np.where(first, pos, 0))
        refused = po[acc_rank >= capacity]
        if len(refused) == 0:
            chosen = np.zeros(E, dtype=bool)
            chosen[o[propose]] = True
            return chosen
        alive[refused] = False


def _remaining_usable_s(step, g, n, N: int, step_s: float) -> np.ndarray:
    """For each usable entry, how long (s) the same station-satellite pair stays usable from that step on."""
    if len(step) == 0:
        return np.zeros(0)
    key = g.astype(np.int64) * N + n
    o = np.lexsort((step, key))
    ks, ss = key[o], step[o].astype(np.int64)
    new_run = np.r_[True, (ks[1:] != ks[:-1]) | (ss[1:] != ss[:-1] + 1)]
    run_id = np.cumsum(new_run) - 1
    run_end = np.zeros(run_id[-1] + 1, dtype=np.int64)
    np.maximum.at(run_end, run_id, ss)
    out = np.empty(len(key), dtype=float)
    out[o] = (run_end[run_id] - ss) * step_s
    return out
