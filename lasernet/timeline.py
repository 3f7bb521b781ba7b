"""Link states over a time window: which links are up at each step, their light delay, and why the others are down.

:func:`plan` samples the scenario every ``step_s`` seconds over ``[start, start + duration_s]`` and returns a
:class:`Timeline` with, for T steps and L links:

* ``up[T, L]`` (bool): the link carries traffic;
* ``delay_s[T, L]`` (float32): one-way light time over the straight-line range (NaN where a ground link's pair is
  far out of view and its range was not computed);
* ``cause[T, L]`` (uint8): 0 when up, else the reason it is down, one of :data:`CAUSES`; when several hold, the
  most fundamental one is reported (seam, polar, earth, elevation, cloud, range, fov, slew, sun, handover,
  acquisition; ``standby`` last, for a diversity station not serving its site);
* ``rate_bps[L]``: the terminal data rate; with stations' RF fallbacks, ``rf_cause[T, L]`` (on RF: what keeps
  the laser from the link, else 0) and ``rf_rate_bps[L]``, so that :meth:`Timeline.rate_at` gives each link's
  rate at an instant (the RF link is the same link slot at another rate);
* with ``ground.diversity``, ``serving[T, D]``: the station serving each group's site (node index, -1: none);
* ``illumination[T, N]`` (float32): the fraction of the solar disc each satellite sees past the Earth (1 sunlit,
  0 umbra, between: penumbra; :func:`lasernet.geometry.sunlit_fraction`), and ``planes[N]`` the orbital plane
  each satellite belongs to, for the summary's sunlight per plane;
* with the scenario's ``power:`` section, ``power`` (:class:`lasernet.power.PowerPlan`): each satellite's
  battery state of charge, power state (nominal, throttled, off) and CPU quota factor per step, driven by that
  illumination; :attr:`Timeline.power_state`, :attr:`Timeline.cpu_quota` and :meth:`Timeline.power_at` are what
  the live half reads;
* with ``upsets:``, ``upsets`` (:class:`lasernet.upsets.UpsetPlan`): radiation upsets, whose router reboots take
  the satellite's links down (cause ``reboot``); with ``collision:``, ``conjunctions``
  (:class:`lasernet.conjunctions.Conjunctions`): close approaches and the manoeuvres they call, which take the
  manoeuvring satellite's links down (cause ``manoeuvre``). Both then re-acquire. Geometric causes win over
  these, and these over ``handover`` and ``acquisition``;
* ``transit[nodes]`` (bool): which nodes may relay traffic (every satellite; a station as its ``transit:`` says),
  what the oracle needs to route over these links (:func:`lasernet.routing.oracle.compute`);
* with the scenario's ``policy:`` section, its residency rules over the nodes (:mod:`lasernet.spec.policy`):
  ``residency`` (R,) the rules' names, ``residency_members[R, nodes]`` the sites whose traffic between each other
  each rule governs and ``residency_allowed[R, nodes]`` the nodes that traffic may cross, what
  :mod:`lasernet.routing.policy` routes by.

Inter-satellite links are the topology's candidates (for the ``nearest`` pattern, the pairs among each
satellite's nearest, found over the window, then planned in a second pass; with ``isl.between_shells``, beside a
+Grid's, the pairs among each satellite's nearest in the other shells, planned the same way on their own
terminals), down where the partner is out of a
terminal's field of regard or moves faster than its slew rate (``fov``, ``slew``: :mod:`lasernet.terminals`).
Ground links are chosen step by step: each station holds up
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
shortest win (:func:`lasernet.terminals.within_budget`; ``nearest`` lets a held link give way to one shorter
by ``isl.switch_margin``); a candidate left without a terminal is down with cause ``handover``, like a ground
link its station did not choose. A terminal moved to a new partner (``nearest``, or a satellite with more
candidate links than terminals) slews to it before it acquires (:func:`lasernet.terminals.retarget_s`). With ``ground.clouds``, a cloud over a station takes its laser ground
links down (cause ``cloud``, :mod:`lasernet.weather`). A station with an ``rf:`` terminal keeps the satellite it
chose on RF while the laser cannot close the link (cloud, Sun, the optical mask or range) and the RF geometry
allows, and its laser acquires again before the link returns to it; a station with a spare optical terminal
acquires the satellite it takes next before it takes it (make before break; the plan assigns satellites that many
steps past the window to know); a diversity group's site is served by one of its stations at a time
(:mod:`lasernet.groundsegment`).

A run of any length is planned in windows that join into one continuous plan: each :class:`Timeline` ends with
a :class:`Carry`, the state its last step inherits from the steps before it (satellites kept by
``longest-visible`` stations, links holding terminals, how long each link has been acquiring, the partners
terminals last released, the clouds, the station serving each diversity group), and
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
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np

from . import geometry, groundsegment, skydata, terminals, topology, weather
from .power import NOMINAL, POWER_CAUSES, POWER_STATES, PowerPlan
from .power import simulate as simulate_power
from .power import systems as power_systems
from .upsets import UpsetPlan, in_saa as saa_flags, plan_upsets
from .conjunctions import Conjunctions, catalogue_satellites, plan_conjunctions
from .orbits import MU_KM3_S2, Satellites, build_satellites
from .errors import OptionError
from .spec.fields import parse_time
from .spec.policy import masks as policy_masks
from .spec.scenario import Scenario, check_node_names
from .topology import BETWEEN_SHELLS, GROUND, GSL, INTER, INTRA, KINDS, SEAM, LinkTable, isl_candidates

CAUSES = ("up", "acquisition", "range", "earth", "sun", "polar", "seam", "elevation", "handover", "fov", "slew",
          "cloud", "manoeuvre", "reboot", "standby", "jamming")
(UP, ACQUISITION, RANGE, EARTH, SUN, POLAR, SEAM_CAUSE, ELEVATION, HANDOVER, FOV, SLEW, CLOUD, MANOEUVRE,
 REBOOT, STANDBY, JAMMING) = range(len(CAUSES))
#: Added to the score of a satellite only a station's RF terminal can reach, so that it prefers one its optical
#: terminal can (km of range, for nearest and all-in-range; seconds of pass, for longest-visible).
RF_ONLY_PENALTY = 1e7

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Carry:
    """What a plan window starting at ``start_utc`` inherits from the steps before it (see the module docstring).

    All of it is the state just before that step: ISLs holding terminals and, per ISL, the steps it had been feasible in
    a row (acquisition); ground pairs (``station * N + satellite`` keys) assigned, acquiring or up, those kept by
    ``longest-visible`` stations, and the steps each one's optical link had been feasible in a row (assigned or
    acquired ahead on a spare terminal, and the laser unblocked: RF needs no acquisition); the member serving each
    diversity group. Then, per satellite, what the power, upset and collision models hand on (None when the scenario
    has no such section): the battery's SoC at the step's start and the power state before it (plus 8 where the
    supply limit held it down), the upset hazard and count, and until when (seconds after the step) a reboot or a
    manoeuvre already begun lasts.
    """

    start_utc: dt.datetime
    step_s: float
    isl_held: np.ndarray  # (L_isl,) bool
    isl_run: np.ndarray  # (L_isl,) float steps
    gsl_keys: np.ndarray  # (K,) int64, sorted
    gsl_run: np.ndarray  # (K,) float steps
    gsl_kept: np.ndarray  # (J,) int64: keys held by longest-visible stations
    soc: np.ndarray | None = None  # (N,) battery state of charge at this step's start (power.simulate)
    power_state: np.ndarray | None = None  # (N,) power state of the step before (hysteresis)
    upset_hazard: np.ndarray | None = None  # (N,) cumulative upset hazard at this step's start (upsets.plan_upsets)
    upset_count: np.ndarray | None = None  # (N,) upsets drawn so far (this step's included)
    reboot_until_s: np.ndarray | None = None  # (2, N) from and until when after this step router reboots last
    manoeuvre_until_s: np.ndarray | None = None  # (N,) until when after this step a manoeuvre lasts
    isl_keys: np.ndarray | None = None  # (L_isl,) int64: lo * N + hi of the ISLs isl_held and isl_run are of
    isl_wait_s: np.ndarray | None = None  # (L_isl,) slew wait of the run each ISL is in (terminals that move)
    isl_released: np.ndarray | None = None  # (N,) the partner each satellite last released (-1: none)
    cloud_step: int = 0  # steps since the run's start of this window's first step (the clouds' random numbers)
    cloud_before: np.ndarray | None = None  # (G,) bool: stations clouded just before it
    site_serving: np.ndarray | None = None  # (D,) member of each diversity group serving it just before (-1: none)
    gsl_up_keys: np.ndarray | None = None  # ground pairs up just before, as held (make before break)
    gsl_hold_keys: np.ndarray | None = None  # ground pairs held and up, or kept up after release, just before


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
    power: PowerPlan | None = None  # battery SoC, power state and CPU quota per step and satellite
    upsets: UpsetPlan | None = None  # radiation upsets of the window (the upsets: section)
    conjunctions: Conjunctions | None = None  # close approaches and manoeuvres (the collision: section)
    transit: np.ndarray | None = None  # (nodes,) bool: may relay (None: every node, as plans saved before it)
    residency: tuple[str, ...] = ()  # (R,) names of the policy's residency rules (lasernet.spec.policy)
    residency_members: np.ndarray | None = None  # (R, nodes) bool: the sites each rule governs the traffic of
    residency_allowed: np.ndarray | None = None  # (R, nodes) bool: the nodes each rule's traffic may cross
    rf_cause: np.ndarray | None = None  # (T, L) uint8: on the RF fallback, what blocks the optical link (0: not)
    rf_rate_bps: np.ndarray | None = None  # (L,) float64: the RF fallback's rate (NaN: the link has none)
    site_names: tuple[str, ...] = ()  # (D,) the diversity groups (ground.diversity)
    serving: np.ndarray | None = None  # (T, D) int32: node index of the station serving each group (-1: none)

    def __post_init__(self):
        n = len(self.links.node_names)
        if self.transit is None:
            self.transit = np.ones(n, dtype=bool)
        if self.residency_members is None:  # no rules (and plans saved before them)
            self.residency_members = np.zeros((len(self.residency), n), dtype=bool)
        if self.residency_allowed is None:
            self.residency_allowed = np.ones((len(self.residency), n), dtype=bool)

    @property
    def node_names(self) -> tuple[str, ...]:
        return self.links.node_names

    @property
    def on_rf(self) -> np.ndarray:
        """(T, L) bool: the link carries traffic on its station's RF fallback terminal (at ``rf_rate_bps``)."""
        if self.rf_cause is None:
            return np.zeros(self.up.shape, bool)
        return self.rf_cause > 0

    def on_rf_at(self, offset_s: float) -> np.ndarray:
        """(L,) bool: the links on their station's RF fallback in the step in force at ``offset_s``."""
        if self.rf_cause is None or not len(self.offsets_s):
            return np.zeros(len(self.links), bool)
        return self.rf_cause[self._step_at(offset_s)] > 0

    def rate_at(self, offset_s: float) -> np.ndarray:
        """(L,) the data rate of every link at ``offset_s`` after the start (the step in force): the terminal's
        ``rate_bps``, or the RF fallback's where the link is on RF. What the live half applies."""
        rate = self.rate_bps.astype(float).copy()
        if self.rf_cause is not None and len(self.offsets_s):
            on = self.rf_cause[self._step_at(offset_s)] > 0
            rate[on] = self.rf_rate_bps[on]
        return rate

    @property
    def station_names(self) -> tuple[str, ...]:
        return self.node_names[self.n_satellites:]

    @property
    def power_state(self) -> np.ndarray:
        """(T, N) uint8 codes into :data:`lasernet.power.POWER_STATES` (off, throttled, nominal); all nominal
        for a scenario without a ``power:`` section. What the live half applies to each satellite's servers."""
        if self.power is None:
            return np.full((len(self.offsets_s), self.n_satellites), NOMINAL, dtype=np.uint8)
        return self.power.state

    @property
    def cpu_quota(self) -> np.ndarray:
        """(T, N) float32 CPU quota factor of each satellite's servers: 1 nominal, the group's
        ``throttle_factor`` throttled, 0 off (freeze). All ones without a ``power:`` section."""
        if self.power is None:
            return np.ones((len(self.offsets_s), self.n_satellites), dtype=np.float32)
        return self.power.quota

    def power_at(self, offset_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(power_state[N], cpu_quota[N]) of the step in force at ``offset_s`` after start (as :meth:`state_at`)."""
        k = self._step_at(offset_s)
        return self.power_state[k].copy(), self.cpu_quota[k].copy()

    def illumination_at(self, offset_s: float) -> np.ndarray | None:
        """(N,) visible solar fraction of each satellite at the step in force at ``offset_s`` (as :meth:`state_at`);
        None for a timeline without illumination."""
        if self.illumination is None:
            return None
        return self.illumination[self._step_at(offset_s)].copy()

    def upsets_between(self, from_s: float, to_s: float) -> np.ndarray:
        """Indices of the satellites hit by an upset in ``(from_s, to_s]`` (seconds after the start; one entry per
        upset, in time order): whose servers the live half restarts in the tick that reaches ``to_s``."""
        if self.upsets is None:
            return np.zeros(0, dtype=np.int64)
        hit = (self.upsets.offset_s > from_s) & (self.upsets.offset_s <= to_s)
        return self.upsets.satellite[hit].copy()

    def _step_at(self, offset_s: float) -> int:
        if not len(self.offsets_s):
            raise ValueError("empty timeline")
        return int(np.clip(math.floor((offset_s - self.offsets_s[0]) / self.step_s), 0, len(self.offsets_s) - 1))

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

    def bearer_events(self) -> dict[str, np.ndarray]:
        """Switches of ground links between their optical and RF terminals while up: ``rf`` (the link moves to,
        or comes up on, the station's RF fallback) and ``optical`` (back on the laser, once acquired).

        Columns ``step``, ``link``, ``rf`` (bool: the new bearer is RF) and ``cause`` (with ``rf``, the code of
        what blocks the optical link: cloud, sun, elevation, range or acquisition; 0 with ``optical``), ordered
        by step then link; a link on RF at the first step has a row there. Empty without RF terminals.
        """
        if self.rf_cause is None or not len(self.offsets_s):
            none = np.zeros(0, dtype=int)
            return {"step": none, "link": none, "rf": none.astype(bool), "cause": none.astype(np.uint8)}
        on = self.rf_cause > 0
        first = np.flatnonzero(on[0])
        steps_c, links_c = np.nonzero((on[1:] != on[:-1]) & self.up[1:])
        steps = np.concatenate([np.zeros(len(first), dtype=int), steps_c + 1])
        links = np.concatenate([first, links_c])
        return {"step": steps, "link": links, "rf": on[steps, links], "cause": self.rf_cause[steps, links]}

    def site_events(self) -> dict[str, np.ndarray]:
        """Which station serves each diversity group (``ground.diversity``): the one at the start, then every
        change. Columns ``step``, ``site`` (index into ``site_names``), ``station`` and ``previous`` (node
        indices, -1: none) and ``cause`` (the code of why the previous station lost its links: the cause then of
        a link it had up at the step before; 0 at the start or when there was none)."""
        none = np.zeros(0, dtype=int)
        if self.serving is None or not len(self.offsets_s):
            return {"step": none, "site": none, "station": none, "previous": none, "cause": none.astype(np.uint8)}
        sv = self.serving
        steps_c, sites_c = np.nonzero(sv[1:] != sv[:-1])
        steps = np.concatenate([np.zeros(sv.shape[1], dtype=int), steps_c + 1])
        sites = np.concatenate([np.arange(sv.shape[1]), sites_c])
        o = np.lexsort((sites, steps))
        steps, sites = steps[o], sites[o]
        station = sv[steps, sites].astype(int)
        previous = np.where(steps > 0, sv[np.maximum(steps - 1, 0), sites], -1).astype(int)
        cause = np.zeros(len(steps), np.uint8)
        gsl = self.links.kind == GSL
        for k in np.flatnonzero(previous >= 0).tolist():  # one per switch: few
            cols = np.flatnonzero(gsl & (self.links.a == previous[k]) & self.up[steps[k] - 1])
            if len(cols):
                cause[k] = self.cause[steps[k], cols[0]]
        return {"step": steps, "site": sites, "station": station, "previous": previous, "cause": cause}

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

    def power_events(self) -> dict[str, np.ndarray]:
        """Power-state events of satellites with a power model: the state at the start, then every change.

        Columns ``step``, ``satellite``, ``state`` (code into :data:`lasernet.power.POWER_STATES`) and ``cause``
        (code into :data:`lasernet.power.POWER_CAUSES`; 0 for the rows of the first step), ordered by step then
        satellite; empty without a ``power:`` section.
        """
        none = np.zeros(0, dtype=int)
        if self.power is None or not len(self.offsets_s) or not np.isfinite(self.power.soc[0]).any():
            return {"step": none, "satellite": none, "state": none.astype(np.uint8), "cause": none.astype(np.uint8)}
        state = self.power.state
        first = np.flatnonzero(np.isfinite(self.power.soc[0]))
        steps_c, sats_c = np.nonzero(state[1:] != state[:-1])
        steps = np.concatenate([np.zeros(len(first), dtype=int), steps_c + 1])
        sats = np.concatenate([first, sats_c])
        cause = self.power.cause[steps, sats]
        cause[:len(first)] = 0
        return {"step": steps, "satellite": sats, "state": state[steps, sats], "cause": cause}

    def fault_events(self) -> dict[str, np.ndarray]:
        """Faults of satellites, ordered by step then time: radiation upsets (event ``restart``, or ``reboot``
        when the router reboots too; cause ``upset``, or ``upset-saa`` inside the South Atlantic Anomaly) and
        collision avoidance (event ``manoeuvre``, cause ``conjunction``, at the manoeuvre's start; ``other`` names
        the object it avoids).

        Columns ``step``, ``satellite``, ``offset_s`` (exact instant after the start), ``event``, ``cause`` and
        ``other``.
        """
        steps, sats, offs, events, causes, others = [], [], [], [], [], []
        if self.upsets is not None and len(self.upsets.step):
            u = self.upsets
            reboot = bool(self.meta.get("router_reboot_s", 0))
            steps.append(u.step)
            sats.append(u.satellite)
            offs.append(u.offset_s)
            events.append(np.full(len(u.step), "reboot" if reboot else "restart"))
            causes.append(np.where(u.in_saa, "upset-saa", "upset"))
            others.append(np.full(len(u.step), ""))
        c = self.conjunctions
        if c is not None and c.reported.any():
            at = np.maximum(c.start_s[c.reported], 0.0)
            steps.append(np.minimum((at / self.step_s).astype(int), len(self.offsets_s) - 1))
            sats.append(c.manoeuvres[c.reported])
            offs.append(at)
            events.append(np.full(len(at), "manoeuvre"))
            causes.append(np.full(len(at), "conjunction"))
            others.append(np.where(c.manoeuvres[c.reported] == c.a[c.reported], c.b_name[c.reported],
                                   np.array(self.node_names)[c.a[c.reported]]))
        if not steps:
            none = np.zeros(0, dtype=int)
            return {"step": none, "satellite": none, "offset_s": np.zeros(0), "event": np.zeros(0, dtype=str),
                    "cause": np.zeros(0, dtype=str), "other": np.zeros(0, dtype=str)}
        out = {"step": np.concatenate(steps), "satellite": np.concatenate(sats), "offset_s": np.concatenate(offs),
               "event": np.concatenate(events), "cause": np.concatenate(causes), "other": np.concatenate(others)}
        order = np.lexsort((out["offset_s"], out["step"]))
        return {k: v[order] for k, v in out.items()}

    def write_events_csv(self, path: str | Path) -> int:
        """Write ``time_utc,link,a,b,kind,event,cause,delay_ms`` rows; returns the number of events.

        Link rows (kind ``isl``/``gsl``, :meth:`events`; then a ground link's switches between its optical and
        RF terminals, event ``rf`` with the optical link's cause or ``optical``, :meth:`bearer_events`, whose
        ``delay_ms`` is that of the link), rows of diversity groups (kind ``site``, link = the group, a = the
        station now serving it or empty, b = the one before, event ``serve`` or ``unserved``, cause why the one
        before lost its links, :meth:`site_events`) and, after those of the same step, rows of satellites
        (kind ``node``, link and a = the satellite): illumination (event ``umbra``/``penumbra``/``sunlit``,
        :meth:`node_events`), power states (event ``nominal``/``throttled``/``off``, cause ``low-battery``,
        ``supply``, ``recharged`` or ``supply-restored``, :meth:`power_events`), then faults (upsets and
        manoeuvres, :meth:`fault_events`; their time is the exact instant, not the step's, and b is the object a
        manoeuvre avoids).
        """
        ev = self.events()
        bev = self.bearer_events()
        sev = self.site_events()
        nev = self.node_events()
        pev = self.power_events()
        fev = self.fault_events()
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
        rows += [[when[step], names[link], nodes[self.links.a[link]], nodes[self.links.b[link]], "gsl",
                  "rf" if rf else "optical", CAUSES[cause] if rf else "",
                  "" if math.isnan(delay) else f"{delay * 1e3:.3f}"]
                 for step, link, rf, cause, delay in zip(bev["step"].tolist(), bev["link"].tolist(),
                                                         bev["rf"].tolist(), bev["cause"].tolist(),
                                                         self.delay_s[bev["step"], bev["link"]].tolist())]
        rows += [[when[step], self.site_names[site], nodes[sta] if sta >= 0 else "",
                  nodes[prev] if prev >= 0 else "", "site", "serve" if sta >= 0 else "unserved",
                  CAUSES[cause] if cause else "", ""]
                 for step, site, sta, prev, cause in zip(sev["step"].tolist(), sev["site"].tolist(),
                                                         sev["station"].tolist(), sev["previous"].tolist(),
                                                         sev["cause"].tolist())]
        rows += [[when[step], nodes[sat], nodes[sat], "", "node", geometry.ILLUMINATION[state], "", ""]
                 for step, sat, state in zip(nev["step"].tolist(), nev["satellite"].tolist(),
                                             nev["state"].tolist())]
        rows += [[when[step], nodes[sat], nodes[sat], "", "node", POWER_STATES[state], POWER_CAUSES[cause], ""]
                 for step, sat, state, cause in zip(pev["step"].tolist(), pev["satellite"].tolist(),
                                                    pev["state"].tolist(), pev["cause"].tolist())]
        rows += [[_iso(self.start_utc + dt.timedelta(seconds=float(off))), nodes[sat], nodes[sat], other, "node",
                  event, cause, ""]
                 for sat, off, event, cause, other in zip(fev["satellite"].tolist(), fev["offset_s"].tolist(),
                                                          fev["event"].tolist(), fev["cause"].tolist(),
                                                          fev["other"].tolist())]
        # Every stream is ordered by step: merge them, links first within a step, then the node streams in turn.
        order = np.argsort(np.concatenate([ev["step"] * 6, bev["step"] * 6 + 1, sev["step"] * 6 + 2,
                                           nev["step"] * 6 + 3, pev["step"] * 6 + 4, fev["step"] * 6 + 5]),
                           kind="stable")
        with tmp.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["time_utc", "link", "a", "b", "kind", "event", "cause", "delay_ms"])
            w.writerows(rows[k] for k in order.tolist())
        tmp.replace(path)
        return len(rows)

    #: The columns of :meth:`power_rows`, and of ``lasernet plan --power``'s CSV.
    POWER_COLUMNS = ("time_utc", "satellite", "illumination", "soc", "state", "cpu_quota", "solar_w", "load_w")

    def power_satellites(self) -> np.ndarray:
        """The satellites a power model covers (indices), or every satellite without a ``power:`` section."""
        if self.power is None or not len(self.offsets_s):
            return np.arange(self.n_satellites)
        sats = np.flatnonzero(np.isfinite(self.power.soc[0]))
        return sats if len(sats) else np.arange(self.n_satellites)

    def power_rows(self, steps, sats) -> list[list[str]]:
        """Rows of :attr:`POWER_COLUMNS` for steps ``steps`` and satellites ``sats`` (indices), step-major.

        ``soc`` is the state of charge (fraction of the battery) at the step's start, ``state`` and ``cpu_quota``
        what the live half applies to the satellite's servers during the step, ``solar_w`` and ``load_w`` the
        array's output and the load drawn during it (empty without a power model).
        """
        T = len(self.offsets_s)
        lit = self.illumination if self.illumination is not None else np.ones((T, self.n_satellites), np.float32)
        nodes, state, quota, modelled = self.node_names, self.power_state, self.cpu_quota, self.power is not None
        sats = np.asarray(sats, dtype=np.int64)
        fmt = lambda x, spec: "" if not math.isfinite(x) else format(x, spec)  # noqa: E731
        rows = []
        for k in np.asarray(steps, dtype=np.int64).tolist():
            when = _iso(self.start_utc + dt.timedelta(seconds=float(self.offsets_s[k])))
            soc = self.power.soc[k, sats].tolist() if modelled else [math.nan] * len(sats)
            solar = self.power.solar_w[k, sats].tolist() if modelled else [math.nan] * len(sats)
            load = self.power.load_w[k, sats].tolist() if modelled else [math.nan] * len(sats)
            lit_k, state_k, quota_k = (x[k, sats].tolist() for x in (lit, state, quota))  # no numpy scalars
            rows += [[when, nodes[n], f"{lit_k[j]:.4f}", fmt(soc[j], ".5f"), POWER_STATES[state_k[j]],
                      f"{quota_k[j]:.3g}", fmt(solar[j], ".1f"), fmt(load[j], ".1f") if math.isfinite(soc[j]) else ""]
                     for j, n in enumerate(sats.tolist())]
        return rows

    def write_power_csv(self, path: str | Path) -> int:
        """Write :attr:`POWER_COLUMNS` (:meth:`power_rows`) per satellite with a power model (every satellite,
        SoC and powers empty, without a ``power:`` section) and step; returns the number of rows."""
        sats = self.power_satellites()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        with tmp.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(self.POWER_COLUMNS)
            for k in range(len(self.offsets_s)):
                w.writerows(self.power_rows([k], sats))
        tmp.replace(path)
        return len(self.offsets_s) * len(sats)

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
        out["gsl"]["rf"] = self.rf_summary()
        out["coverage"] = self.ground_coverage()
        out["sites"] = self.site_summary()
        out["sunlight"] = self.sunlight()
        out["power"] = self.power_summary()
        out["faults"] = self.fault_summary()
        return out

    def rf_summary(self) -> dict:
        """Ground links on their stations' RF fallback: link-steps on RF by what blocked the optical link, and
        the switches to RF (by that cause) and back to optical after the start. Empty without RF terminals."""
        if self.rf_cause is None:
            return {}
        on = self.rf_cause > 0
        bev = self.bearer_events()
        later = bev["step"] > 0
        to_rf = later & bev["rf"]
        return {"link_steps": int(on.sum()),
                "link_steps_by_optical_cause": {CAUSES[c]: int(n) for c, n in
                                                zip(*np.unique(self.rf_cause[on], return_counts=True))},
                "switches_to_rf_by_cause": {CAUSES[c]: int(n) for c, n in
                                            zip(*np.unique(bev["cause"][to_rf], return_counts=True))},
                "returns_to_optical": int((later & ~bev["rf"]).sum())}

    def site_summary(self) -> dict:
        """Per diversity group: the share of steps some station served it, the switches between stations
        after the start, and each station's share of the steps. Empty without ``ground.diversity``."""
        if self.serving is None or not len(self.offsets_s):
            return {}
        sev = self.site_events()
        out = {}
        for d, name in enumerate(self.site_names):
            col = self.serving[:, d]
            stations, counts = np.unique(col[col >= 0], return_counts=True)
            later = (sev["site"] == d) & (sev["step"] > 0)
            out[name] = {"served": float((col >= 0).mean()),
                         "switches": int((later & (sev["station"] >= 0) & (sev["previous"] >= 0)).sum()),
                         "share_by_station": {self.node_names[s]: float(c / len(col))
                                              for s, c in zip(stations.tolist(), counts.tolist())}}
        return out

    def fault_summary(self) -> dict:
        """Upsets (how many, how many inside the SAA, how many the rate integral expected, the most on one
        satellite, the share of time over the SAA) and conjunctions (approaches below the threshold with their
        TCA in the window, the closest, the manoeuvres reported, and the closest approach screened at any
        distance). Empty without ``upsets:`` and ``collision:`` sections."""
        out: dict = {}
        if self.upsets is not None:
            u = self.upsets
            per_sat = np.bincount(u.satellite, minlength=self.n_satellites) if len(u.satellite) else np.zeros(1, int)
            out["upsets"] = {"count": int(len(u.step)), "in_saa": int(u.in_saa.sum()),
                             "expected": float(u.expected), "max_per_satellite": int(per_sat.max()),
                             "saa_time_share": float(u.saa_share)}
        c = self.conjunctions
        if c is not None:
            end = float(self.offsets_s[-1]) + self.step_s if len(self.offsets_s) else 0.0
            inside = (c.tca_s >= 0) & (c.tca_s < end)
            first = np.flatnonzero(inside)[:10]
            out["conjunctions"] = {
                "below_threshold": int(inside.sum()), "manoeuvres": int(c.reported.sum()),
                "min_miss_m": float(c.miss_km[inside].min() * 1e3) if inside.any() else None,
                "closest_screened_m": float(c.closest_km * 1e3) if np.isfinite(c.closest_km) else None,
                "closest_pair": list(c.closest_pair),
                "first": [{"a": self.node_names[c.a[k]], "b": str(c.b_name[k]),
                           "tca_utc": _iso(self.start_utc + dt.timedelta(seconds=float(c.tca_s[k]))),
                           "miss_m": round(float(c.miss_km[k]) * 1e3, 2)} for k in first]}
        return out

    def power_summary(self) -> dict:
        """Satellites with a power model and how they fared: SoC range (min over the window, median at its end),
        the share of satellite-steps in each power state, how many satellites were ever throttled or off, state
        changes by cause and the bus energy the batteries could not serve. Empty without a ``power:`` section."""
        if self.power is None or not len(self.offsets_s):
            return {}
        sats = np.flatnonzero(np.isfinite(self.power.soc[0]))
        if not len(sats):
            return {}
        soc, state = self.power.soc[:, sats], self.power.state[:, sats]
        pev = self.power_events()
        later = pev["step"] > 0
        counts = np.bincount(state.ravel(), minlength=len(POWER_STATES))
        return {"satellites": int(len(sats)), "soc_min": float(soc.min()), "soc_end_median": float(np.median(soc[-1])),
                "state_share": {name: float(counts[c] / state.size) for c, name in enumerate(POWER_STATES)},
                "ever": {name: int((state == c).any(axis=0).sum()) for c, name in enumerate(POWER_STATES)
                         if name != "nominal"},
                "changes_by_cause": {POWER_CAUSES[c]: int(n) for c, n in
                                     zip(*np.unique(pev["cause"][later], return_counts=True))},
                "deficit_wh": float(self.power.deficit_wh[sats].sum())}

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
            **({} if not self.residency else {"residency": np.array(self.residency, dtype=str),
                                              "residency_members": np.asarray(self.residency_members, dtype=bool),
                                              "residency_allowed": np.asarray(self.residency_allowed, dtype=bool)}),
            **({} if self.rf_cause is None else {"rf_cause": self.rf_cause, "rf_rate_bps": self.rf_rate_bps}),
            **({} if self.serving is None else {"serving": self.serving,
                                                "site_names": np.array(self.site_names, dtype=str)}),
            **({} if self.illumination is None else {"illumination": self.illumination,
                                                     "planes": np.array(self.planes, dtype=str)}),
            **({} if self.power is None else {f"power_{k}": v for k, v in self.power.__dict__.items()}),
            **({} if self.upsets is None else {f"upsets_{k}": np.asarray(v) for k, v in self.upsets.__dict__.items()}),
            **({} if self.conjunctions is None else {f"conj_{k}": np.asarray(v)
                                                     for k, v in self.conjunctions.__dict__.items()}))
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
                       power=PowerPlan(**{f.name: z[f"power_{f.name}"] for f in fields(PowerPlan)})
                       if "power_soc" in z.files else None,
                       upsets=UpsetPlan(**{f.name: (z[f"upsets_{f.name}"] if f.name not in ("expected", "saa_share")
                                                    else float(z[f"upsets_{f.name}"])) for f in fields(UpsetPlan)})
                       if "upsets_step" in z.files else None,
                       conjunctions=Conjunctions(**{
                           f.name: (float(z[f"conj_{f.name}"]) if f.name == "closest_km" else
                                    tuple(str(x) for x in z[f"conj_{f.name}"]) if f.name == "closest_pair" else
                                    z[f"conj_{f.name}"]) for f in fields(Conjunctions)})
                       if "conj_a" in z.files else None,
                       transit=z["transit"] if "transit" in z.files else None,
                       **({} if "residency" not in z.files else {  # absent: no rules, or saved before them
                           "residency": tuple(str(r) for r in z["residency"]),
                           "residency_members": z["residency_members"], "residency_allowed": z["residency_allowed"]}),
                       rf_cause=z["rf_cause"] if "rf_cause" in z.files else None,
                       rf_rate_bps=z["rf_rate_bps"] if "rf_cause" in z.files else None,
                       serving=z["serving"] if "serving" in z.files else None,
                       site_names=tuple(str(x) for x in z["site_names"]) if "serving" in z.files else ())


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
    spare: np.ndarray | None = None  # (G,) bool: more optical terminals than links (make before break)
    rf_mask_deg: np.ndarray | None = None  # (G,) the RF fallback's elevation mask (inf: no RF terminal)
    rf_range_km: np.ndarray | None = None  # (G,) its range (0: none)
    rf_rate_bps: np.ndarray | None = None  # (G,) its rate (NaN: none)

    @classmethod
    def of(cls, scenario: Scenario) -> "_Stations":
        gs = scenario.ground
        lat = np.array([g.lat_deg for g in gs], dtype=float)
        lon = np.array([g.lon_deg for g in gs], dtype=float)
        alt = np.array([g.alt_m for g in gs], dtype=float)
        return cls(tuple(g.name for g in gs), geometry.geodetic_to_itrs_km(lat, lon, alt).reshape(-1, 3),
                   geometry.up_unit(lat, lon).reshape(-1, 3), np.array([g.min_elevation_deg for g in gs]),
                   np.array([g.max_links for g in gs], dtype=int),
                   np.array([g.handover == "longest-visible" for g in gs], dtype=bool),
                   np.array([g.terminal_count > g.max_links for g in gs], dtype=bool),
                   np.array([g.rf.min_elevation_deg if g.rf else np.inf for g in gs], dtype=float),
                   np.array([g.rf.max_range_km if g.rf else 0.0 for g in gs], dtype=float),
                   np.array([g.rf.rate_bps if g.rf else np.nan for g in gs], dtype=float))

    @property
    def any_rf(self) -> bool:
        return self.rf_range_km is not None and bool((self.rf_range_km > 0).any())


@dataclass
class _Sightings:
    """Sparse (step, station, satellite) entries near each station: range and why unusable (0 = usable)."""

    step: list = field(default_factory=list)
    station: list = field(default_factory=list)
    sat: list = field(default_factory=list)
    range_km: list = field(default_factory=list)
    cause: list = field(default_factory=list)
    rf_ok: list = field(default_factory=list)  # the station's RF fallback could carry the link there

    def add(self, step, station, sat, range_km, cause, rf_ok=None):
        for name, arr in zip(("step", "station", "sat", "range_km", "cause"), (step, station, sat, range_km, cause)):
            getattr(self, name).append(arr)
        self.rf_ok.append(np.zeros(len(step), bool) if rf_ok is None else rf_ok)

    def arrays(self):
        cat = lambda xs, dt_: np.concatenate(xs).astype(dt_) if xs else np.zeros(0, dt_)  # noqa: E731
        return (cat(self.step, np.int32), cat(self.station, np.int32), cat(self.sat, np.int32),
                cat(self.range_km, np.float32), cat(self.cause, np.uint8), cat(self.rf_ok, bool))


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
    run_step0 = 0 if carry is None else carry.cloud_step  # this window's first step, counted from the run's start
    T, N = len(offsets), len(sats)
    # longest-visible stations rank satellites by how long they stay usable: sight that far past the window
    ahead = int(math.ceil(lookahead_s(scenario, sats, start) / step_s)) if stations.sticky.any() else 0
    # stations with a spare terminal acquire the satellite they take next before they take it: plan that far on
    acq_s = scenario.gsl_terminal.acquisition_s
    lead = int(math.ceil(acq_s / step_s - 1e-9)) if stations.spare.any() and acq_s > 0 else 0
    T_sight = T + ahead + lead
    sight_offsets = np.arange(T_sight) * step_s

    nearest = scenario.isl.pattern == "nearest"
    near_keys = [] if carry is None or carry.isl_keys is None else [carry.isl_keys[carry.isl_held]]
    between = scenario.isl.between_shells
    if between and near_keys:  # the between-shell links held before the window: those joining two shells
        near_keys = [near_keys[0][sats.shell[near_keys[0] // N] != sats.shell[near_keys[0] % N]]]
    isl_cause = np.zeros((T, len(isl)), dtype=np.uint8)
    isl_delay = np.zeros((T, len(isl)), dtype=np.float32)
    illumination = np.ones((T, N), dtype=np.float32)
    upset_cfg = scenario.upsets if scenario.upsets is not None and scenario.upsets.active else None
    in_saa = np.zeros((T, N), dtype=bool)
    sightings = _Sightings()
    chunk = max(1, min(T_sight, 120_000 // max(N, 1)))
    for lo in range(0, T_sight, chunk):
        hi = min(T_sight, lo + chunk)
        t = skydata.times(start, sight_offsets[lo:hi])
        if scenario.isl_terminal.points:  # pointing needs the orbital frame, hence the velocities
            pos, vel = sats.positions_and_velocities(t)
        else:
            pos, vel = sats.positions_km(t), None
        sun = geometry.sun_itrs_km(t)
        if lo < T:
            h = min(hi, T)
            illumination[lo:h] = geometry.sunlit_fraction(pos[:h - lo], sun[:h - lo, None, :])
            if upset_cfg is not None:
                in_saa[lo:h] = saa_flags(pos[:h - lo], upset_cfg)
            isl_cause[lo:h], isl_delay[lo:h] = _isl_states(scenario, isl, pos[:h - lo], sun[:h - lo],
                                                           illumination[lo:h] > 0,
                                                           None if vel is None else vel[:h - lo])
            if nearest or between:
                near_keys.append(_near_pairs(scenario, sats, pos[:h - lo]))
        if len(stations.names):
            _sight(scenario, stations, pos, sun, lo, sightings, run_step0 * step_s, step_s)
        if progress:
            progress(min(hi, T), T)

    if nearest:  # the candidates are known only now: their states over the window, in a second pass
        isl = topology.pair_table(node_names, np.unique(np.concatenate(near_keys)) if near_keys else
                                  np.zeros(0, np.int64), N)
        isl_cause, isl_delay = _isl_window_states(scenario, sats, isl, start, offsets, illumination, nearest=True)
    if between:  # the same for the links between shells, beside the grid's
        cross = topology.pair_table(node_names, np.unique(np.concatenate(near_keys)), N, topology.BETWEEN_SHELLS)
        cross_cause, cross_delay = _isl_window_states(scenario, sats, cross, start, offsets, illumination,
                                                      nearest=True)
    # Satellites whose router reboots after an upset or which manoeuvre: their links are down (where nothing
    # geometric already holds them down), then acquire again.
    upset_plan, upset_carry = None, None
    blocked = np.zeros((T, N), dtype=np.uint8)
    if upset_cfg is not None:
        upset_plan, upset_carry = plan_upsets(
            upset_cfg, in_saa, step_s, scenario.seed, None if carry is None else carry.upset_hazard,
            None if carry is None else carry.upset_count, None if carry is None else carry.reboot_until_s)
        blocked[upset_plan.rebooting] = REBOOT
    conj, manoeuvre_until = None, None
    if scenario.collision is not None:
        conj = plan_conjunctions(scenario.collision, sats,
                                 catalogue_satellites(scenario.collision.catalogue, sats.names), start, T, step_s,
                                 None if carry is None else carry.manoeuvre_until_s)
        blocked[conj.manoeuvring & (blocked == 0)] = MANOEUVRE
        t_last = float(offsets[-1])
        # the next window, screening from its start (this last step), finds again every approach from there on:
        # it inherits the manoeuvres of the approaches before it only (they all began before it)
        manoeuvre_until = np.full(N, -np.inf) if carry is None or carry.manoeuvre_until_s is None else \
            carry.manoeuvre_until_s.copy()
        done = conj.tca_s < t_last
        if done.any():
            np.maximum.at(manoeuvre_until, conj.manoeuvres[done], conj.end_s[done])
        manoeuvre_until = manoeuvre_until - t_last
    if blocked.any():
        why = np.maximum(blocked[:, isl.a], blocked[:, isl.b])
        isl_cause[(isl_cause == UP) & (why > 0)] = why[(isl_cause == UP) & (why > 0)]
    term = scenario.isl_terminal
    # A terminal moved to a new partner slews before it acquires: in the nearest pattern, and at satellites with
    # more candidate links than terminals (an explicit pattern's budget); a +Grid has a terminal per link.
    shared = (np.ones(N, bool) if nearest else
              np.bincount(np.concatenate([isl.a, isl.b]).astype(np.int64), minlength=N) > term.count)
    isl, isl_cause, isl_delay, isl_up, isl_held, isl_run, isl_wait, released = _hold(
        scenario, sats, isl, isl_cause, isl_delay, carry, term.count,
        scenario.isl.switch_margin if nearest else 1.0, shared, nearest, start, offsets, step_s)
    if between:  # the between-shell terminals, chosen by the nearest rule apart from the grid's
        if blocked.any():
            why = np.maximum(blocked[:, cross.a], blocked[:, cross.b])
            cross_cause[(cross_cause == UP) & (why > 0)] = why[(cross_cause == UP) & (why > 0)]
        cross, c_cause, c_delay, c_up, c_held, c_run, c_wait, released = _hold(
            scenario, sats, cross, cross_cause, cross_delay, carry, between, scenario.isl.switch_margin,
            np.ones(N, bool), True, start, offsets, step_s)
        if isl_wait is not None or c_wait is not None:
            isl_wait = np.concatenate([np.zeros(len(isl)) if isl_wait is None else isl_wait,
                                       np.zeros(len(cross)) if c_wait is None else c_wait])
        isl = isl.concat(cross)
        isl_cause, isl_delay = np.concatenate([isl_cause, c_cause], 1), np.concatenate([isl_delay, c_delay], 1)
        isl_up = np.concatenate([isl_up, c_up], 1)
        isl_held, isl_run = np.concatenate([isl_held, c_held]), np.concatenate([isl_run, c_run])

    systems = power_systems(scenario.power, sats.names, servers_per_satellite(scenario, sats.names))
    power_plan, soc_next, state_next = simulate_power(systems, illumination, step_s,
                                                      None if carry is None else carry.soc,
                                                      None if carry is None else carry.power_state)

    clouds = weather.of(scenario) if scenario.gsl_terminal.kind == "laser" else None
    cloud_step = 0 if carry is None else carry.cloud_step
    cloudy, cloud_before = None, None
    if clouds is not None:  # the lead past the window too (make before break); the carry is still at T - 2
        before_w = None if carry is None else carry.cloud_before
        cloudy, _ = weather.clouded(clouds, T + lead, step_s, cloud_step, before_w)
        cloud_before = (cloudy[T - 2] if T >= 2 else
                        (np.zeros(len(stations.names), bool) if before_w is None else before_w)).copy()
    gsl, gsl_up, gsl_delay, gsl_cause, gsl_rf, gsl_carry, gsl_hold = _ground_links(
        scenario, stations, sats, node_names, sightings, T, step_s, ahead, carry, blocked, cloudy, lead)
    serving, site_serving = None, None
    if scenario.diversity:
        serving, site_serving = _serve_sites(scenario, gsl, gsl_up, gsl_cause, gsl_rf, N,
                                             None if carry is None else carry.site_serving)
    links = isl.concat(gsl)
    rate = np.concatenate([np.full(len(isl), scenario.isl_terminal.data_rate_bps),
                           np.full(len(gsl), scenario.gsl_terminal.data_rate_bps)])
    rf_cause = rf_rate = None
    if gsl_rf is not None:
        rf_cause = np.concatenate([np.zeros((T, len(isl)), np.uint8), gsl_rf], axis=1)
        rf_rate = np.concatenate([np.full(len(isl), np.nan), stations.rf_rate_bps[gsl.a - N]])
    return Timeline(
        scenario_name=scenario.name, start_utc=start, step_s=step_s, offsets_s=offsets, links=links,
        n_satellites=N, up=np.concatenate([isl_up, gsl_up], axis=1),
        delay_s=np.concatenate([isl_delay, gsl_delay], axis=1),
        cause=np.concatenate([isl_cause, gsl_cause], axis=1), rate_bps=rate,
        meta={"scenario": str(scenario.source), "seed": scenario.seed,
              **({} if upset_cfg is None else {"router_reboot_s": upset_cfg.router_reboot_s})},
        carry=Carry(start + dt.timedelta(seconds=float(offsets[-1])), step_s, isl_held, isl_run, *gsl_carry,
                    isl_keys=topology.pair_keys(isl, N), isl_wait_s=isl_wait, isl_released=released,
                    cloud_step=cloud_step + T - 1, cloud_before=cloud_before, site_serving=site_serving, **gsl_hold,
                    soc=soc_next, power_state=state_next, manoeuvre_until_s=manoeuvre_until,
                    **({} if upset_carry is None else dict(zip(("upset_hazard", "upset_count", "reboot_until_s"),
                                                               upset_carry)))),
        illumination=illumination, planes=_plane_labels(scenario, sats),
        power=power_plan if systems.any else None, upsets=upset_plan, conjunctions=conj,
        transit=np.array([True] * N + [g.transit for g in scenario.ground], dtype=bool),
        **dict(zip(("residency", "residency_members", "residency_allowed"),
                   policy_masks(scenario.policy, node_names, N, scenario.routing.operators))),
        rf_cause=rf_cause, rf_rate_bps=rf_rate, site_names=tuple(d.name for d in scenario.diversity),
        serving=serving)


def _serve_sites(scenario: Scenario, gsl: LinkTable, up: np.ndarray, cause: np.ndarray, rf_cause, N: int,
                 before: np.ndarray | None):
    """Site diversity (:mod:`lasernet.groundsegment`): ``(serving (T, D) node indices or -1, the members serving
    just before the last step)``. The ground links of a group's stations that do not serve it are taken down in
    place (``up``, ``cause`` and ``rf_cause``), with cause ``standby``."""
    T, D = up.shape[0], len(scenario.diversity)
    G = len(scenario.ground)
    index = {g.name: i for i, g in enumerate(scenario.ground)}
    station = (gsl.a - N).astype(int)  # (P,) station of each ground link
    onehot = np.zeros((len(station), G), np.int32)
    onehot[np.arange(len(station)), station] = 1
    linked_all = (up.astype(np.int32) @ onehot) > 0  # (T, G): the station has a ground link up
    group_of = np.full(G, -1)
    serving = np.full((T, D), -1, np.int32)
    carry_out = np.full(D, -1, np.int64)
    for d, group in enumerate(scenario.diversity):  # a pass over each group's switches, not its steps
        members = np.array([index[m] for m in group.stations])
        group_of[members] = d
        pick = groundsegment.serving(linked_all[:, members], -1 if before is None else int(before[d]))
        serving[:, d] = np.where(pick >= 0, N + members[np.maximum(pick, 0)], -1)
        carry_out[d] = pick[T - 2] if T >= 2 else (-1 if before is None else before[d])
    cols = np.flatnonzero(group_of[station] >= 0)  # the links of stations in a group, all at once
    standby = np.zeros(up.shape, bool)
    standby[:, cols] = up[:, cols] & (serving[:, group_of[station[cols]]] != gsl.a[cols][None, :])
    up[standby] = False
    cause[standby] = STANDBY
    if rf_cause is not None:
        rf_cause[standby] = 0
    return serving, carry_out


def servers_per_satellite(scenario: Scenario, names: tuple[str, ...]) -> np.ndarray:
    """(N,) how many servers of ``hosts:`` are attached to each satellite (their compute draws ``server_w``)."""
    index = {n: i for i, n in enumerate(names)}
    count = np.zeros(len(names))
    for host in scenario.hosts:
        if host.attach in index:
            count[index[host.attach]] += 1
    return count


def _isl_carried(isl: LinkTable, N: int, carry: Carry | None):
    """``(held_before, run_before, wait_before)`` (L,) of the window's ISLs from the carry, matched by satellite pair
    (a pair the carry does not know was not held and had no run), or Nones at the start of a run."""
    if carry is None:
        return None, None, None
    keys = topology.pair_keys(isl, N)
    if carry.isl_keys is None:
        return carry.isl_held, carry.isl_run, carry.isl_wait_s
    held, run, wait = np.zeros(len(keys), bool), np.zeros(len(keys)), np.zeros(len(keys))
    order = np.argsort(carry.isl_keys, kind="stable")
    known = carry.isl_keys[order]
    at = np.searchsorted(known, keys)
    if len(known):
        hit = (at < len(known)) & (known[np.minimum(at, len(known) - 1)] == keys)
        held[hit], run[hit] = carry.isl_held[order[at[hit]]], carry.isl_run[order[at[hit]]]
        if carry.isl_wait_s is not None:
            wait[hit] = carry.isl_wait_s[order[at[hit]]]
    return held, run, (wait if carry.isl_wait_s is not None else None)


def _hold(scenario: Scenario, sats: Satellites, isl: LinkTable, cause: np.ndarray, delay: np.ndarray,
          carry: Carry | None, count: int, margin: float, shared: np.ndarray, chosen: bool,
          start: dt.datetime, offsets: np.ndarray, step_s: float):
    """Which of the usable candidate ISLs (``cause`` UP) the satellites' ``count`` terminals hold and when they
    carry traffic: the budget (:func:`lasernet.terminals.within_budget`, hysteresis ``margin``), a slew to a new
    partner at ``shared`` satellites, then acquisition, continuing the carry. A usable link left without a
    terminal is down with cause ``handover``, one still acquiring with ``acquisition``. With ``chosen`` (links
    picked step by step, as in ``nearest``) only the pairs held in the window or just before it are kept.
    Returns ``(isl, cause, delay, up, held at the second-to-last step, run, wait, released)``, ``cause`` updated
    in place."""
    N, term = len(sats), scenario.isl_terminal
    held_before, run_before, wait_before = _isl_carried(isl, N, carry)
    up_raw = cause == UP
    held, held_last = terminals.within_budget(up_raw, delay, isl.a, isl.b, N, count, held_before, margin)
    cause[up_raw & ~held] = HANDOVER
    extra = released = None
    if term.slew_rate_deg_s > 0 and shared.any():
        extra, released = terminals.retarget_s(
            held, held_before, isl.a, isl.b, N, lambda k: sats.positions_km(skydata.times(start, offsets[k])),
            term.slew_rate_deg_s, None if carry is None else carry.isl_released, shared)
    up = terminals.acquired(held, step_s, term.acquisition_s, run_before, extra, wait_before)
    cause[held & ~up] = ACQUISITION
    run = terminals.feasible_run(held, run_before)
    wait = None if extra is None else terminals.run_extra_s(extra, run, wait_before)
    if chosen:  # the window's ISLs: the pairs it holds, and those held just before it (their end is in it)
        keep = held.any(axis=0) | (held_before if held_before is not None else False)
        isl = LinkTable(isl.node_names, isl.a[keep], isl.b[keep], isl.kind[keep], isl.role[keep])
        cause, delay, up = cause[:, keep], delay[:, keep], up[:, keep]
        held_last, run = held_last[keep], run[keep]
        wait = None if wait is None else wait[keep]
    return isl, cause, delay, up, held_last, run, wait, released


def _isl_window_states(scenario: Scenario, sats: Satellites, isl: LinkTable, start: dt.datetime,
                       offsets: np.ndarray, illumination: np.ndarray, nearest: bool = False):
    """cause and delay_s (T, L) of ISLs over the window's steps, chunk by chunk (the ``nearest`` pattern's second
    pass, once its candidates are known). With ``nearest``, a usable pair that is not among either end's nearest
    at a step is not offered then (cause ``handover``, like a candidate left without a terminal)."""
    T, N = len(offsets), len(sats)
    cause = np.zeros((T, len(isl)), dtype=np.uint8)
    delay = np.zeros((T, len(isl)), dtype=np.float32)
    keys = topology.pair_keys(isl, N)
    chunk = max(1, min(T, 120_000 // max(N, 1)))
    for lo in range(0, T, chunk):
        t = skydata.times(start, offsets[lo:lo + chunk])
        if scenario.isl_terminal.points:
            pos, vel = sats.positions_and_velocities(t)
        else:
            pos, vel = sats.positions_km(t), None
        c, delay[lo:lo + chunk] = _isl_states(scenario, isl, pos, geometry.sun_itrs_km(t),
                                              illumination[lo:lo + chunk] > 0, vel)
        if nearest:
            step, key = _near_pairs(scenario, sats, pos, per_step=True)
            offered = np.zeros(c.shape, bool)
            offered[step, np.searchsorted(keys, key)] = True  # every near pair is a column (keys are sorted)
            c[(c == UP) & ~offered] = HANDOVER
        cause[lo:lo + chunk] = c
    return cause, delay


def _near_pairs(scenario: Scenario, sats: Satellites, pos: np.ndarray, per_step: bool = False):
    """The candidate pairs of the nearest rule at the steps of ``pos``: among all satellites (pattern
    ``nearest``) or between shells (``isl.between_shells``), as :func:`lasernet.topology.nearest_pairs` gives."""
    rng_km = scenario.isl_terminal.max_range_km
    if scenario.isl.pattern == "nearest":
        return topology.nearest_pairs(pos, rng_km, topology.nearest_per_satellite(scenario.isl_terminal.count),
                                      per_step)
    return topology.between_shell_pairs(pos, sats.shell, rng_km,
                                        topology.nearest_per_satellite(scenario.isl.between_shells), per_step)


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
    e = math.radians(min(min(g.min_elevation_deg, g.rf.min_elevation_deg if g.rf else 90.0)
                         for g in scenario.ground)) if scenario.ground else 0.0
    theta = math.acos(min(1.0, r_station * math.cos(e) / r_sat)) - e
    rate = math.sqrt(MU_KM3_S2 / r_sat ** 3) - geometry.EARTH_ROTATION_RAD_S
    return MAX_LOOKAHEAD_S if rate <= 0 else min(MAX_LOOKAHEAD_S, 2 * theta / rate)


#: The most ``longest-visible`` stations look ahead (above ~10,000 km a pass lasts hours).
MAX_LOOKAHEAD_S = 3 * 3600.0


#: Bytes per link and time step at the plan's peak: cause, delay and up (6) twice (per kind, then the whole
#: timeline), the acquisition pass's temporaries (int32 + float64 + bools) and numpy's copies, with a margin.
PLAN_BYTES_PER_LINK_STEP = 40
#: Bytes per satellite and step of a power plan: SoC, quota, solar, load (float32) and state, cause (uint8) kept,
#: and the simulation's float64 SoC, load and solar working arrays.
PLAN_BYTES_PER_POWER_STEP = 42
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

    T steps times, per step: the ISL candidates of the pattern (2 per satellite for a plus-grid, 1 for a ring, for
    nearest each satellite's nearest, and with ``between_shells`` those between shells),
    the ground links (:func:`_gsl_pairs_estimate`: each station's ``max_links``
    satellites, a new one every :data:`GSL_CHANGE_S`, or for ``all-in-range`` those in view, each held about half a
    pass), and the sightings: the satellites within reach of each station's mask (the share of the sphere a cap of
    the mask's Earth-central angle covers, for the highest shell, or GEO with element files); per satellite, its
    illumination, the power plan (:data:`PLAN_BYTES_PER_POWER_STEP`) and the upset, reboot and manoeuvre masks.
    """
    steps = math.floor(duration_s / step_s + 1e-9) + 1
    shells = scenario.constellation.shells
    n_walker = sum(s.size for s in shells)
    n_sat = n_walker + 64 * len(scenario.constellation.element_files)  # element files: a guess, read later
    isl = {"plus-grid": 2 * n_walker, "ring": n_walker, "explicit": len(scenario.isl.links),
           # nearest: the pairs among each satellite's nearest, once more every 10 minutes as neighbours change
           # (shell1: 38,744 candidates in 600 s against 31,680 nearest at one step)
           "nearest": min(n_sat * (n_sat - 1) / 2, n_sat * topology.nearest_per_satellite(
               scenario.isl_terminal.count) * (1 + duration_s / 600.0))
           }.get(scenario.isl.pattern, 0)
    if scenario.isl.between_shells:  # the cross-shell pairs among each satellite's nearest in the other shells,
        # which change fast (shells at other inclinations): starlink-phase1 with 1, 4.6 per satellite at one step,
        # 6.3 found in 60 s, 21.3 in 600 s
        isl += n_walker * topology.nearest_per_satellite(scenario.isl.between_shells) * (0.6 + 2.5 * duration_s / 600)
    gsl = sum(_gsl_pairs_estimate(scenario, g, duration_s, n_sat) for g in scenario.ground)
    sightings = 0.0
    if scenario.ground:
        r_earth, r_sat = geometry.WGS84_A_KM, geometry.WGS84_A_KM + max(
            [s.altitude_km for s in shells] + ([35786.0] if scenario.constellation.element_files else []))
        e = math.radians(min(g.min_elevation_deg for g in scenario.ground))
        angle = min(math.pi, math.acos(min(1.0, r_earth * math.cos(e) / r_sat)) - e + math.radians(0.5))
        sightings = len(scenario.ground) * n_sat * (1 - math.cos(angle)) / 2
    per_sat = 4 + PLAN_BYTES_PER_POWER_STEP * bool(scenario.power) + 3 * (scenario.upsets is not None or
                                                                           scenario.collision is not None)
    return float(steps) * (8 + PLAN_BYTES_PER_LINK_STEP * (isl + gsl) + PLAN_BYTES_PER_SIGHTING * sightings
                           + per_sat * n_sat)


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
                lit: np.ndarray | None = None, vel: np.ndarray | None = None):
    """cause (Tc, L) before acquisition, and delay_s (Tc, L), of the candidate ISLs for a chunk of steps.

    ``lit`` (Tc, N): where any part of the Sun is visible from the satellite (computed here when not given).
    ``vel`` (Tc, N, 3): inertial velocities, needed when the terminals have pointing limits.
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
    if term.points:
        # +Grid and ring: fore and aft terminals serve the intra-plane links, port and starboard the inter-plane
        # and seam links; a between-shell terminal (like those of the other patterns) may point anywhere
        sector = (np.where(isl.role == INTRA, terminals.ALONG,
                           np.where(isl.role == BETWEEN_SHELLS, terminals.ANY, terminals.CROSS))
                  if cfg.pattern in ("plus-grid", "ring") else terminals.ANY)
        out_of_field, too_fast = terminals.pointing_limits(term, pos, vel, isl.a, isl.b, sector)
        cause[too_fast] = SLEW
        cause[out_of_field] = FOV
    cause[rng > term.max_range_km] = RANGE
    cause[geometry.earth_blocks(pa, pb, cfg.atmosphere_km, rng)] = EARTH
    if cfg.polar_cutoff_deg < 90:
        lat = np.abs(geometry.latitude_deg(pos))
        polar = (lat[:, isl.a] > cfg.polar_cutoff_deg) | (lat[:, isl.b] > cfg.polar_cutoff_deg)
        cause[polar & (isl.role == INTER)[None, :]] = POLAR
    cause[:, isl.role == SEAM] = SEAM_CAUSE
    return cause, geometry.light_delay_s(rng).astype(np.float32)


def _sight(scenario: Scenario, st: _Stations, pos: np.ndarray, sun: np.ndarray, step0: int, out: _Sightings,
           window_t0_s: float = 0.0, step_s: float = 1.0):
    """Record every (step, station, satellite) that may be above a station's mask during a chunk of steps.

    A satellite at radius r can stand above elevation e of a station at radius R only within the Earth-central
    angle acos(R cos(e) / r) - e of it; one matrix product of unit vectors (satellites x stations) finds those
    few candidates, and exact elevations, ranges and Sun angles are computed for them alone. A jammer
    (``jamming:``) blinds the laser links of the satellites above its own mask while it is on (the window starts
    ``window_t0_s`` after the run's).
    """
    Tc, N, _ = pos.shape
    flat = pos.reshape(-1, 3)
    r_sat = geometry.norm_km(flat)
    r_station = float(geometry.norm_km(st.pos_km).min())
    e = np.radians(float(st.mask_deg.min() if not st.any_rf else min(st.mask_deg.min(), st.rf_mask_deg.min())))
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
    if term.kind == "laser" and scenario.jamming:
        cause[_jammed(scenario.jamming, sat_km, window_t0_s + (step_local + step0) * step_s)] = JAMMING
    cause[rng > term.max_range_km] = RANGE
    cause[el < st.mask_deg[g]] = ELEVATION
    rf_ok = (el >= st.rf_mask_deg[g]) & (rng <= st.rf_range_km[g]) if st.any_rf else None
    out.add(step_local + step0, g, n, rng, cause, rf_ok)


def _jammed(jammers, sat_km: np.ndarray, t_s: np.ndarray) -> np.ndarray:
    """(K,) bool: the satellite at ``sat_km[k]`` (ITRS) is above a jammer's mask while that jammer is on at
    ``t_s[k]`` (seconds since the run's start)."""
    out = np.zeros(len(sat_km), dtype=bool)
    for j in jammers:
        on = (t_s >= j.start_s) & (t_s < j.stop_s)
        if on.any():
            site = geometry.geodetic_to_itrs_km(j.lat_deg, j.lon_deg, j.alt_m)
            up = geometry.up_unit(j.lat_deg, j.lon_deg)
            out[on] |= geometry.elevation_deg(site[None, :], up[None, :], sat_km[on]) >= j.min_elevation_deg
    return out


def _ground_links(scenario: Scenario, st: _Stations, sats: Satellites, node_names, sightings: _Sightings,
                  T: int, step_s: float, ahead: int, carry: Carry | None, blocked: np.ndarray | None = None,
                  cloudy: np.ndarray | None = None, lead: int = 0):
    """Assign satellites to stations step by step; return the GSL table, its (T, P) up, delay, cause and RF
    cause (None without RF terminals), and the ground part of the window's :class:`Carry`. Sightings reach
    ``ahead + lead`` steps past the window (lookahead), and satellites are assigned ``lead`` steps past it, so
    that a station with a spare terminal acquires the satellite it takes next before it takes it
    (:func:`lasernet.groundsegment.pre_acquisition`).

    ``cloudy`` (T + lead, G): stations under a cloud (:mod:`lasernet.weather`); their optical links are down
    with cause ``cloud``. ``longest-visible`` stations rank satellites by how long they stay in view, clouds
    aside (nobody forecasts them to the second). A station with an RF fallback (``rf:``) may also take a
    satellite only its RF terminal reaches (one its optical terminal reaches first): the link is then up on RF
    (its cause in the RF cause array is the optical link's: cloud, sun, elevation, range, or acquisition while
    the laser acquires again), at the RF rate.
    """
    N = len(sats)
    T_plan = T + lead
    step, g, n, rng, cause, rf_ok = sightings.arrays()
    usable = (cause == UP) | (cause == JAMMING) | rf_ok  # for the ranking; an attack is not foreseen, nor a cloud
    remaining = (np.minimum(_remaining_usable_s(step[usable], g[usable], n[usable], N, step_s), ahead * step_s)
                 if st.sticky.any() else np.zeros(int(usable.sum())))
    if cloudy is not None:  # a cloud blocks a link the satellite's elevation allows
        clouded = (step < T_plan) & (cause != ELEVATION)
        clouded[clouded] = cloudy[step[clouded], g[clouded]]
        cause = np.where(clouded, np.uint8(CLOUD), cause)
    lit = cause == UP  # the optical terminal can close the link
    inside = (step[usable] < T_plan) & (lit[usable] | rf_ok[usable])
    u_step, u_g, u_n = step[usable][inside], g[usable][inside], n[usable][inside]
    chosen, kept = _assign(u_step, u_g, u_n, rng[usable][inside], remaining[inside], st, T_plan, N,
                           scenario.gsl_terminal.count,
                           np.zeros(0, np.int64) if carry is None else carry.gsl_kept, last=T - 1,
                           rf_only=~lit[usable][inside])
    cu_step, cu_g, cu_n = u_step[chosen], u_g[chosen], u_n[chosen]
    # Candidate pairs: those assigned (in the window or the lead past it) and those assigned just before it (so
    # that their end, and its cause, is part of this window even when the pair is never assigned in it).
    cand = np.unique(np.concatenate([cu_g.astype(np.int64) * N + cu_n,
                                     np.zeros(0, np.int64) if carry is None else carry.gsl_keys]))
    plan_in = step < T_plan
    keys_all = g[plan_in].astype(np.int64) * N + n[plan_in]
    col_all = np.searchsorted(cand, keys_all)
    known_all = ((col_all < len(cand)) & (cand[np.minimum(col_all, max(len(cand) - 1, 0))] == keys_all)
                 if len(cand) else np.zeros(len(keys_all), bool))
    s_step, s_col = step[plan_in][known_all], col_all[known_all]
    assigned_all = np.zeros((T_plan, len(cand)), dtype=bool)
    assigned_all[cu_step, np.searchsorted(cand, cu_g.astype(np.int64) * N + cu_n)] = True
    lit_all = np.zeros((T_plan, len(cand)), dtype=bool)
    lit_all[s_step, s_col] = lit[plan_in][known_all]
    pre_all = groundsegment.pre_acquisition(assigned_all, lit_all, lead, st.spare[(cand // N).astype(int)])
    keep = (assigned_all[:T].any(axis=0) | pre_all[:T].any(axis=0)) | (
        np.isin(cand, carry.gsl_keys) if carry is not None else False)
    pair_keys = cand[keep]
    P = len(pair_keys)
    assigned, pre, optical_ok = assigned_all[:T, keep], pre_all[:T, keep], lit_all[:T, keep]
    table = LinkTable(node_names, (N + pair_keys // N).astype(int), (pair_keys % N).astype(int),
                      np.full(P, GSL, dtype=np.uint8), np.full(P, GROUND, dtype=np.uint8))
    delay = np.full((T, P), np.nan, dtype=np.float32)
    why = np.full((T, P), ELEVATION, dtype=np.uint8)
    rf_grid = np.zeros((T, P), dtype=bool)
    inwin = step < T
    keys = g[inwin].astype(np.int64) * N + n[inwin]
    col = np.searchsorted(pair_keys, keys)
    known = (col < P) & (pair_keys[np.minimum(col, max(P - 1, 0))] == keys) if P else np.zeros(len(keys), bool)
    w_step, w_rng, w_cause = step[inwin][known], rng[inwin][known], cause[inwin][known]
    delay[w_step, col[known]] = geometry.light_delay_s(w_rng)
    why[w_step, col[known]] = np.where(w_cause == UP, HANDOVER, w_cause)
    if st.any_rf:
        rf_grid[w_step, col[known]] = rf_ok[inwin][known]
    optical_why = why.copy()  # what keeps the optical link down where it is not assigned or blocked
    why[assigned] = UP
    run_before = None
    if carry is not None:  # steps each pair's optical link had been feasible in a row before this window
        run_before = np.zeros(P)
        at = np.searchsorted(carry.gsl_keys, pair_keys)
        hit = (at < len(carry.gsl_keys)) & (carry.gsl_keys[np.minimum(at, max(len(carry.gsl_keys) - 1, 0))]
                                            == pair_keys) if len(carry.gsl_keys) else np.zeros(P, bool)
        run_before[hit] = carry.gsl_run[at[hit]]
    free = np.ones((T, P), dtype=bool)
    if blocked is not None and blocked.any():  # the station keeps its choice; the satellite's end is down a while
        sat_blocked = blocked[:, table.b]
        free = sat_blocked == 0
    feasible = (assigned | pre) & optical_ok & free  # the optical link, acquiring or up
    on_optical = terminals.acquired(feasible, step_s, scenario.gsl_terminal.acquisition_s, run_before)
    on_rf = assigned & rf_grid & free & ~on_optical
    up_held = on_optical | on_rf  # up as held; then links a station with a spare terminal keeps a little longer
    up = up_held
    hold = None
    if st.spare.any():
        up_before = held_before = None
        if carry is not None and carry.gsl_up_keys is not None:
            up_before, held_before = np.isin(pair_keys, carry.gsl_up_keys), np.isin(pair_keys, carry.gsl_hold_keys)
        hold = groundsegment.hold_over(assigned, up_held, (optical_ok | rf_grid) & free, (pair_keys // N).astype(int),
                                       st.spare[(pair_keys // N).astype(int)], up_before, held_before)
        up = up_held | hold
        on_rf = on_rf | (hold & ~optical_ok)
        why[hold] = UP
    why[feasible & ~up] = ACQUISITION
    if not free.all():
        why[(assigned | pre) & ~free] = sat_blocked[(assigned | pre) & ~free]
    rf_cause = None
    if st.any_rf:
        rf_cause = np.where(on_rf, np.where(feasible, np.uint8(ACQUISITION), optical_why), 0).astype(np.uint8)
    run = terminals.feasible_run(feasible, run_before)
    going = run > 0
    if T >= 2:  # and those up at the step before the last (on RF, their optical run may be none)
        going |= up[-2]
    extra = {}
    if hold is not None:  # what hold_over needs of the step before the next window's first
        k = max(T - 2, 0)
        if T >= 2:
            extra = {"gsl_up_keys": pair_keys[up_held[k]], "gsl_hold_keys": pair_keys[(assigned[k] & up_held[k])
                                                                                     | hold[k]]}
        else:
            extra = {"gsl_up_keys": pair_keys[up_before] if up_before is not None else pair_keys[:0],
                     "gsl_hold_keys": pair_keys[held_before] if held_before is not None else pair_keys[:0]}
    return table, up, delay, why, rf_cause, (pair_keys[going], run[going], np.sort(kept)), extra


def _assign(step, g, n, rng, remaining, st: _Stations, T: int, N: int, sat_capacity: int,
            kept_before: np.ndarray, last: int | None = None,
            rf_only: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Which usable (step, station, satellite) entries are chosen; stations propose, satellites accept.

    Per step, every station proposes its best ``max_links`` satellites not yet refused; every satellite keeps the
    closest ``sat_capacity`` proposals and refuses the rest; refused stations propose their next best, until no
    one is refused (deferred acceptance, vectorised over all stations at once). ``nearest`` and ``all-in-range``
    stations score by range. ``longest-visible`` stations keep what they hold while it stays usable and otherwise
    score by how long the satellite stays usable (``remaining``, capped at the lookahead), the closer first on a
    tie, which makes steps depend on each other. ``rf_only`` entries (a satellite only a station's RF fallback
    reaches) score :data:`RF_ONLY_PENALTY` worse. ``kept_before`` are the keys ``station * N + satellite`` that
    longest-visible stations held just before the first step. Returns the chosen entries and the keys held just
    before step ``last`` (default T - 1: the next window's ``kept_before``).
    """
    last = T - 1 if last is None else last
    chosen = np.zeros(len(step), dtype=bool)
    none = np.zeros(0, dtype=np.int64)
    if len(step) == 0 or sat_capacity == 0:
        return chosen, none
    penalty = 0.0 if rf_only is None or not rf_only.any() else np.where(rf_only, RF_ONLY_PENALTY, 0.0)
    sticky = st.sticky[g]
    if not sticky.any():  # every step independent: do them all at once
        return _defer_accept(step.astype(np.int64) * len(st.names) + g, step.astype(np.int64) * N + n,
                             rng.astype(float) + penalty, rng, st.max_links[g], sat_capacity), none
    score = np.where(sticky, -remaining, rng).astype(float) + penalty
    order = np.argsort(step, kind="stable")
    bounds = np.searchsorted(step[order], np.arange(T + 1))
    held = np.asarray(kept_before, dtype=np.int64)  # keys station*N+sat held by sticky stations at the step before
    kept_out = held
    for k in range(T):
        if k == last:
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
