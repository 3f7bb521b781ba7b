"""The live emulation: a coordinator keeps the routers of one or more machines in step with the orbit, tick by tick.

:class:`Emulation` runs one scenario and owns what the *run* does: the clock and the ticks, the plan windows,
the link state applied so far (:attr:`Emulation.applied`, a public read view the FIB watcher and the workload
use), the oracle's routes and the budget that spreads their installation over ticks, overrides, probes and the
recorder. What one *machine* does (its namespaces and shells, the link backend, route installation, servers,
daemons, its share of the state file) belongs to a host (:mod:`lasernet.emulation.host`), which the coordinator
drives with plain-data messages: one :class:`~lasernet.emulation.host.LocalHost`, or with ``cluster=ADDRESS`` a
:class:`~lasernet.emulation.cluster.group.HostGroup` over one agent per machine of a Ray cluster, which sends
each machine its share of every tick as one message (:mod:`lasernet.emulation.cluster`).

``start()`` plans the first window of link states (the offline pipeline), has the host start one
:class:`~lasernet.emulation.network.Router` per satellite and ground station and the link backend, creates every
link that is up at some time in the window (with its /31 addresses and permanent neighbour entries), then
installs the first routes. ``run()`` ticks until a duration or a stop request; ``stop()`` removes exactly what
was created, in reverse order. It is a context manager::

    with lasernet.Emulation(scenario, duration_s=60) as emu:
        emu.nodes["ashburn"].cmd("ping -c 3", emu.nodes["frankfurt"].IP())
        emu.run(30)

Emulated time is ``t = t0 + speed * (wall - wall0)`` (CLOCK_MONOTONIC, :class:`Clock`). Each tick reads the link
states at t from the plan (up from the step in force, delay interpolated between steps), overlays any overrides
set with :meth:`Emulation.override` (failure injection, loss, rate), sends only the differences to the host in
one batch, then recomputes shortest-delay routes and has the host install only the changed ones. Each tick's
cost goes to ``ticks.csv``; a tick that overruns its slot is counted and logged, never silently skipped. Plans
are computed in windows (default 10 minutes of emulated time, :mod:`lasernet.emulation.windows`) that join into
one continuous plan, the next one in a child process.

At scale (see ``routing``): node shells are spawned together and configured by netlink rather than one shell
round trip each (:func:`~lasernet.emulation.network.finish_shells`), link ends are addressed with one link dump
per node, and with ``routing="background"`` (the default above ``BACKGROUND_ABOVE_NODES`` nodes) the oracle runs
in a separate process (:mod:`lasernet.routing.background`): ticks install its finished diffs within a budget,
so routes lag the link states by one computation (``route_lags``); the first table goes in as aggregated
prefixes. Routes go through Linux nexthop objects that :mod:`lasernet.emulation.nexthops` assigns (``NEXTHOPS``),
so that routes moving to another link together, as a station's do when it hands over, move in one write.
``start_timings`` and ``stop_timings`` record how long each phase of ``start()`` and ``stop()`` took.

With a routing daemon protocol in the scenario (``routing: {protocol: ospf|isis|babel|bgp}``) the coordinator
installs no routes: ``start()`` has the host start the daemons on every router once the links exist
(:mod:`lasernet.routing.daemons`; ``daemon_config_hook`` lets tests alter a generated config), each tick still
computes the oracle as the reference for probes and path stretch, and a
:class:`~lasernet.routing.convergence.FibWatcher` judges the daemons' FIBs after every change
(``convergence.csv``, ``fib.csv``, ``summary["routing"]``); :meth:`Emulation.run_until_converged` ticks until
they deliver every connected pair.

Servers (``hosts:``) run in cgroups of their own (:mod:`lasernet.net.cgroups`, limits ``cpus`` and
``memory_mb``). Each tick the servers of a satellite get its planned power state (:meth:`Timeline.power_at`):
``throttled`` multiplies their CPU quota by the plan's quota factor, ``off`` freezes them until power returns;
an upset (:meth:`Timeline.upsets_between`) kills what they run (their shells stay). Only changes are sent, as the
host's ``power`` message with the tick's others; each is an event (kind ``server``) in ``events.csv``, and a
scenario with a ``power:`` section gets ``power.csv``, the plan's power columns per satellite and step beside the
quota its servers ran with (:mod:`lasernet.measure.powerlog`).

A scenario's ``capture:`` section runs tcpdump in the nodes it names on emulated time, writing pcap files and
the wall-to-emulated clock mapping into the run directory (:mod:`lasernet.emulation.capture`). With ``web=``
(``lasernet up --web``) a browser view is served while the run is up (:mod:`lasernet.emulation.webfeed`).

What the run created (node PIDs and their namespace inodes, the relay, routing daemons, captures, files) is
written to a state file as it is created, so that ``lasernet down`` can remove exactly that even after the driver
was killed with SIGKILL.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import gc
import json
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..addressing import LINK_POOL, LinkAddress, lan_network, link_ips, loopback_ip
from ..errors import OptionError
from ..measure.powerlog import PowerLog
from ..spec.scenario import Scenario
from ..timeline import CAUSES, Timeline
from . import state as run_state
from ..net.libc import limit_malloc_arenas
from .host import LocalHost, pin_to_last_cpu
from .windows import PlanWindows
from .links import choose_backend
from .network import SYSCTLS
from .webfeed import WebFeed, parse_bind

log = logging.getLogger("lasernet")

Progress = Callable[[str, int, int], None]

#: How the oracle's routes are computed: ``tick`` (in every tick, exact: routes follow the link states of the
#: tick that installs them), ``background`` (in a separate process, see :mod:`lasernet.routing.background`:
#: the tick stays cheap and routes lag by one computation), ``auto`` (``tick`` up to
#: ``BACKGROUND_ABOVE_NODES`` nodes, where a full recompute fits inside a tick, else ``background``).
ROUTING_MODES = ("auto", "tick", "background")
BACKGROUND_ABOVE_NODES = 400


@dataclasses.dataclass
class Override:
    """A forced state for one link, laid over the plan until ``until_s`` (emulated seconds) if given."""

    up: bool | None = None
    loss: float | None = None
    rate_bps: float | None = None
    delay_s: float | None = None
    until_s: float | None = None
    for_s: float | None = None


@dataclasses.dataclass
class TickReport:
    index: int
    t_s: float  # emulated seconds since the run's start
    cost_s: float
    overrun: bool
    link_changes: int
    route_changes: int
    links_s: float = 0.0  # of cost_s: state at t, creating links and applying their parameters
    routes_s: float = 0.0  # of cost_s: oracle routes (computing, or taking a background result) and installing
    machine_apply_s: tuple = ()  # a cluster run: each machine's own time for its tick message


class Clock:
    """Emulated time: ``speed * (CLOCK_MONOTONIC - wall0)`` seconds since the run's start (0 until it starts)."""

    def __init__(self, speed: float):
        self.speed = speed
        self.wall0: float | None = None  # CLOCK_MONOTONIC (s) at emulated time 0

    def now_s(self) -> float:
        return 0.0 if self.wall0 is None else self.speed * (time.monotonic() - self.wall0)

    def realtime_to_s(self, wall_s):
        """Emulated seconds of a CLOCK_REALTIME stamp (s), e.g. taken on another machine of a cluster (as true
        as the two machines' clocks agree)."""
        return self.speed * (wall_s - time.time() + time.monotonic() - self.wall0)

    def mono_to_s(self, mono_ns: np.ndarray) -> np.ndarray:
        """Emulated seconds of CLOCK_MONOTONIC stamps (ns), as probes record them."""
        return self.speed * (np.asarray(mono_ns, dtype=float) * 1e-9 - self.wall0)


class AppliedLinks:
    """The state the coordinator has sent to the host for every link created, by slot (a read view).

    ``valid``, ``up``, ``delay_s``, ``loss`` and ``rate_bps`` are arrays by slot, possibly longer than the number
    of links (``valid`` is False beyond what was ever applied); ``links`` are the created links by slot
    (:class:`~lasernet.addressing.LinkAddress`: node indices ``a`` and ``b``, interface names, /31
    addresses) and ``by_pair`` the same keyed by ``(a, b)``. Only the coordinator writes them.
    """

    FIELDS = (("valid", bool), ("up", bool), ("delay_s", float), ("loss", float), ("rate_bps", float))

    def __init__(self):
        for key, dtype in self.FIELDS:
            setattr(self, key, np.zeros(0, dtype=dtype))
        self.links: list[LinkAddress] = []
        self.by_pair: dict[tuple[int, int], LinkAddress] = {}

    def __len__(self) -> int:
        return len(self.links)

    def grow(self, n: int) -> None:
        """Make the arrays hold at least ``n`` slots (doubling, so that growth is rare)."""
        if len(self.up) >= n:
            return
        size = max(n, 2 * len(self.up), 256)
        for key, dtype in self.FIELDS:
            grown = np.zeros(size, dtype=dtype)
            old = getattr(self, key)
            grown[:len(old)] = old
            setattr(self, key, grown)


class TickLog:
    """Every tick's :class:`TickReport`, kept as one row of numbers per tick (a run of days holds millions of
    ticks), with the overrun count kept as it goes; indexing and iterating give TickReports."""

    FIELDS = ("t_s", "cost_s", "overrun", "link_changes", "route_changes", "links_s", "routes_s")

    def __init__(self):
        self._rows = np.zeros((1024, len(self.FIELDS)))
        self._n = 0
        self.overruns = 0

    def append(self, report: TickReport) -> None:
        if self._n == len(self._rows):
            self._rows = np.concatenate([self._rows, np.zeros_like(self._rows)])
        self._rows[self._n] = [getattr(report, f) for f in self.FIELDS]
        self._n += 1
        self.overruns += int(report.overrun)

    def clear(self) -> None:
        self._n, self.overruns = 0, 0

    def column(self, name: str) -> np.ndarray:
        """One field over every tick, e.g. ``column("cost_s")``."""
        return self._rows[:self._n, self.FIELDS.index(name)]

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(self._n))]
        if k < 0:
            k += self._n
        if not 0 <= k < self._n:
            raise IndexError(k)
        t_s, cost, over, links, routes, links_s, routes_s = self._rows[k]
        return TickReport(k, float(t_s), float(cost), bool(over), int(links), int(routes), float(links_s),
                          float(routes_s))

    def __iter__(self):
        return (self[i] for i in range(self._n))


def mem_available_kib() -> int:
    """The machine's ``MemAvailable`` (KiB): what processes and the kernel's objects together have left."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def _daemon_sysctls(scenario: Scenario) -> tuple[str, ...]:
    """Sysctls routing daemons need besides SYSCTLS: Babel speaks over IPv6 link-local addresses, so links get
    IPv6 (without duplicate-address detection, which would hold a new link's address back for a second)."""
    if scenario.routing.protocol != "babel":
        return ()
    return ("net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.default.disable_ipv6=0",
            "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")


#: glibc malloc arenas of the coordinator's process (see ``Emulation.start``).
MALLOC_ARENAS = 1


class Emulation:
    """A running (or ready to run) emulation of one scenario (see the module docstring)."""

    #: Background routing: the share of a tick that taking in a result and installing routes may take (counted from
    #: the start of the routes part); what does not fit waits for later ticks.
    ROUTE_BUDGET = 0.13
    ROUTE_CHUNK = 128  # most routes of one node installed in one go (a handover changes all of a station's)
    #: Routes through nexthop objects (:mod:`lasernet.emulation.nexthops`): a router whose routes move from one
    #: link to another together changes in one write. False: one /32 route write per changed entry, as before.
    NEXTHOPS = True
    #: Background mode with nexthop objects: a router with at least this many changed routes that cost one write
    #: each (withdrawn, or newly reachable) has its whole row rewritten as aggregated prefixes when that is fewer
    #: writes (a station handing over between shells that no link joins).
    REAGGREGATE_MIN = 128
    #: Route items whose cost does not follow their length, left out of the learnt costs: a nexthop object
    #: replaced under thousands of routes (the kernel announces each), a row whose rewrite deletes old routes.
    UNLEARNT_ITEMS = ("nexthops", "nhrow")

    def __init__(self, scenario: Scenario, *, links: str = "auto", speed: float = 1.0, tick_s: float = 0.1,
                 start: dt.datetime | None = None, duration_s: float | None = None, window_s: float = 600.0,
                 plan_step_s: float | None = None, run_dir: str | Path | None = None,
                 progress: Progress | None = None, routing: str = "auto", keep_awake: bool | None = None,
                 daemon_config_hook=None, cluster: str | None = None, web: str | None = None):
        for name, value in (("speed", speed), ("tick_s", tick_s), ("window_s", window_s)):
            if not (math.isfinite(value) and value > 0):
                raise OptionError(name, f"must be a finite number > 0, got {value}")
        if routing not in ROUTING_MODES:
            raise OptionError("routing", f"must be one of {', '.join(ROUTING_MODES)}, got {routing!r}")
        self.scenario = scenario
        self.routing = routing
        self.web_bind = None if web is None else parse_bind(web)  # lasernet up --web [HOST:]PORT
        self.web = None  # the WebFeed serving the browser view while up (lasernet.emulation.webfeed)
        self.cluster = cluster  # a Ray cluster's address (lasernet.emulation.cluster): routers spread over its machines
        self.cluster_report: dict | None = None  # a cluster run: machines, their routers, links that cross them
        if keep_awake is None:  # one SCHED_IDLE spinner per CPU while up (see lasernet.net.awake)
            keep_awake = os.environ.get("LASERNET_KEEP_AWAKE", "1") != "0"
        self.keep_awake = keep_awake
        self.links_kind = links
        self.clock = Clock(speed)
        self.speed = speed
        self.tick_s = tick_s
        self.start_utc = start or scenario.epoch
        self.duration_s = duration_s
        self.window_s = window_s if duration_s is None else max(window_s, duration_s * speed + 2 * tick_s + 5)
        self.plan_step_s = plan_step_s or scenario.plan.step_s
        self.run_id = run_state.new_run_id(scenario.name)
        base = Path(run_dir) if run_dir else Path.cwd() / "runs" / self.run_id
        self.run_dir = base
        self.progress = progress or (lambda what, done, total: None)
        self.host: LocalHost | None = None  # the machine's kernel side (see lasernet.emulation.host)
        self.state: run_state.RunState | None = None
        self.overrides: dict[int, Override] = {}
        self.windows = PlanWindows(scenario, self.start_utc, self.window_s, self.plan_step_s,
                                   on_release=self._release_window)
        self.applied = AppliedLinks()  # what the host was told every created link's state is, by slot
        self._slots = self.applied.by_pair
        self._slot_maps: dict[int, np.ndarray] = {}
        self._site_serving: dict[str, int] = {}  # diversity group -> node index of the station serving it (-1: none)
        self._slot_ends: list[tuple[int, str, str]] = []  # per slot: node a, interface at a, interface at b
        self._slot_end_cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._route_queue: collections.deque = collections.deque()  # host route items not installed yet
        self._lans: dict[int, list[str]] = {}  # router -> LAN prefixes of the servers attached to it
        self._sat_servers: list[tuple] = []  # (server, satellite name, satellite index, cpus) of satellites' servers
        self.server_quota: dict[str, float] = {}  # server -> CPU quota factor applied (its satellite's power state)
        self._upsets_to_s, self._upsets_tl = -1e-9, None  # upsets restarted up to this t_s; the window it was in
        self._uses_daemons = scenario.routing.uses_daemons
        self.recorder = None  # the Recorder of the run's CSV files and summary, from start() to stop()
        self.power_log: PowerLog | None = None  # power.csv, for a scenario with a power: section
        self._event_listeners: list = []  # on_event callbacks, handed to the recorder
        self.routes = None  # the oracle's table now installed (or, with daemons, the reference)
        self.nexthops = None  # the NexthopPlan: which nexthop objects every router's routes use (NEXTHOPS)
        self.rows_rewritten = 0  # background mode: routers' rows rewritten whole as aggregated prefixes
        self.oracle_process = None  # background mode: the OracleProcess
        self.route_lags: list[float] = []  # background mode: emulated s from the states used to the install
        # Background mode: what installing one queued item costs (per item + per route, learnt as it goes), so
        # that the drain stops before an item that would not fit in the tick's budget rather than after it.
        self._item_cost_s, self._route_cost_s = 40e-6, 3e-6
        self._lag_from = None
        self.route_prefixes = None  # background mode: how many aggregated routes the first install used
        self._residency_installed = None  # oracle routing under residency rules: {(node, member): hop} per rule
        self._residency_tables = None  # and the rules' tables of the last tick (lasernet.routing.policy.RuleTable)
        self._route_tl = None
        self.probes = None
        self.workload = None  # the WorkloadRunner of the scenario's `workload:` section, if it has one
        self.workload_summary: dict = {}
        self._workload_plan = None
        self.captures = None  # the CaptureRunner of the scenario's `capture:` section, if it has one
        self._stop = threading.Event()
        self.ticks = TickLog()
        self.start_timings: dict[str, float] = {}  # seconds per phase of start(), for benchmarks
        self.stop_timings: dict[str, float] = {}  # and of stop()
        self.start_memory_kib: dict[str, int] = {}  # drop of the machine's MemAvailable per phase (kernel included)
        self.fib_watch = None  # with daemons: the FibWatcher measuring their convergence
        self._daemon_config_hook = daemon_config_hook  # tests: (node, daemon, config text) -> config text

    # ------------------------------------------------------------------------------------------------- the host
    @property
    def nodes(self) -> dict:
        """The routers (satellites and ground stations) by name: Mininet hosts (``cmd()``, ``popen()``, ``IP()``)."""
        return self.host.nodes if self.host is not None else {}

    @property
    def servers(self) -> dict:
        """The servers attached to routers (scenario ``hosts:``) by name."""
        return self.host.servers if self.host is not None else {}

    @property
    def net(self):
        """The host's Mininet network (for Mininet's CLI), None when not up."""
        return self.host.net if self.host is not None else None

    @property
    def backend(self):
        """The host's link backend (its relays, for tests and benchmarks), None when not up."""
        return self.host.backend if self.host is not None else None

    @property
    def daemons(self):
        """The routing daemons (a DaemonSet) with a daemon protocol, else None."""
        return self.host.daemons if self.host is not None else None

    # ------------------------------------------------------------------------------------------------- lifecycle
    def __enter__(self) -> "Emulation":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "Emulation":
        """Bring the run up, phase by phase (each timed in ``start_timings``), then start the clock."""
        t_start = time.monotonic()
        # One malloc arena: each thread that allocates (the one that takes in every planned window, the probes')
        # would otherwise leave one more arena's worth of pages resident now and then, a run of hours growing in
        # steps (see lasernet.net.libc). They allocate little concurrently (numpy's large arrays are mmapped),
        # so sharing one arena costs nothing seen.
        limit_malloc_arenas(MALLOC_ARENAS)
        self._mem_mark_kib = mem_available_kib()
        first = self._start_plan()
        mark = self._end_phase("plan", t_start)
        self._start_nodes(mark)
        self._start_links(first)
        if self._uses_daemons:
            mark = time.monotonic()
            self._start_daemons(first)
            self._end_phase("routing daemons", mark)
            self.fib_watch = self.fib_watcher()  # records link events from the first tick on; started below
        self._start_first_routes()
        if self.web_bind is not None:
            mark = time.monotonic()
            self.web = WebFeed(self, self.web_bind).start()
            self._end_phase("web", mark)
        self._start_clock()
        return self

    def _start_plan(self) -> Timeline:
        """Plan the first window (validating everything before anything is created), open the run's files, the
        background oracle and the host."""
        from ..measure import provenance
        from ..measure.recorder import Recorder

        first = self.windows.first()  # validates the scenario fully before anything is created
        if not self.scenario.policy.empty:  # and a residency rule its plan can never meet
            from ..routing.policy import check_plan

            check_plan(first, self.scenario.source.name)
        if not self.scenario.workload.empty:  # so are the workload's node selectors
            from ..spec import workload as workload_spec

            self._workload_plan = workload_spec.resolve(self.scenario, first.node_names, first.n_satellites)
        if self.scenario.capture:  # and the capture: section's links
            from .capture import check_links

            if self.cluster:
                raise OptionError("--cluster", "the scenario has a capture: section, and capture is not supported "
                                               "on a cluster run yet; run it on one machine")
            check_links(self.scenario, first.node_names, first.links.a, first.links.b)
        if not self.cluster:  # so does the link backend (BackendUnavailable); a cluster's machines choose theirs
            self.links_kind = choose_backend(self.links_kind)
        self.node_names = first.node_names
        self.n_satellites = first.n_satellites
        self.transit = first.transit  # which routers may relay (stations as the scenario's transit: says)
        self.residency = (first.residency_members, first.residency_allowed) if first.residency else None
        for j, host in enumerate(self.scenario.hosts):
            self._lans.setdefault(self.node_names.index(host.attach), []).append(lan_network(j))
        self._sat_servers = [(h.name, h.attach, self.node_names.index(h.attach), h.cpus) for h in self.scenario.hosts
                             if self.node_names.index(h.attach) < self.n_satellites]
        if self.routing == "auto":
            self.routing = "background" if len(self.node_names) > BACKGROUND_ABOVE_NODES else "tick"
        if self.residency is not None and self.routing == "background" and not self._uses_daemons:
            raise OptionError("--routing", f"the scenario's residency rules (policy:) are routed by the oracle in "
                                           f"the tick only, and this run would route in the background "
                                           f"({len(self.node_names)} routers); give --routing tick, or a routing "
                                           f"protocol whose configurations carry the rules (routing: bgp)")
        if self.routing == "background":
            from ..routing.background import OracleProcess

            self.oracle_process = OracleProcess(len(self.node_names))  # starts while the network comes up
            pin_to_last_cpu(self.oracle_process.proc.pid)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.state = run_state.RunState.create(self.run_id, self.run_dir, self.scenario)
        self.recorder = Recorder(self.run_dir, first, self._event_listeners)
        if first.power is not None:
            self.power_log = PowerLog(self.run_dir / "power.csv", self.start_utc, [s[2] for s in self._sat_servers])
        if self.cluster:
            from .cluster import start_group

            self.host = start_group(self.cluster, self, first)
            self.recorder.set_machines(self.host.n)
            self.links_kind = self.host.choose_links(self.links_kind)  # one backend every machine can run
        else:
            self.host = LocalHost(self.run_id, self.run_dir, self.state, progress=self.progress,
                                  daemon_config_hook=self._daemon_config_hook)
        provenance.record(self.run_dir, self.scenario, first, speed=self.speed, tick_s=self.tick_s,
                          links=self.links_kind, duration_s=self.duration_s)
        self.host.open(len(self.node_names), self.keep_awake)
        return first

    def _start_nodes(self, mark: float) -> None:
        """The routers' shells, then their configuration (sysctls, loopbacks) by netlink."""
        names, n_sat = self.node_names, self.n_satellites
        roles = ["satellite" if i < n_sat else self.scenario.ground[i - n_sat].kind for i in range(len(names))]
        self.host.start_nodes(list(names), roles)
        mark = self._end_phase("shells", mark)
        self.host.configure_nodes(list(SYSCTLS + _daemon_sysctls(self.scenario)))
        self._end_phase("node config", mark)

    def _start_links(self, first: Timeline) -> None:
        """The link backend, the servers, then every link the first window ever has up (down until the first tick)."""
        self.host.start_links(self.links_kind, self.scenario.seed, max(4096, 2 * len(first.links)),
                              pin_helpers=self.oracle_process is not None)
        self.host.add_servers([{"name": host.name, "router": self.node_names.index(host.attach), "index": j,
                                "cpus": host.cpus, "memory_mb": host.memory_mb}
                               for j, host in enumerate(self.scenario.hosts)])
        mark = time.monotonic()
        self._create_links(first, np.flatnonzero(first.up.any(axis=0)), bulk=True)
        self._end_phase("links", mark)

    def _start_daemons(self, tl: Timeline) -> None:
        """Have the host start the scenario's routing daemons, configured for the links created so far."""
        costs = np.full(len(self.applied), 10, np.int64)
        for li in range(len(tl.links)):
            link = self._slots.get(self._pair(tl, li))
            if link is not None:
                costs[link.slot] = self._link_cost(tl, li)
        stubs = [name for name, relays in zip(self.node_names, self.transit) if not relays]
        names = self.node_names
        residency = [(rule, [names[i] for i in np.flatnonzero(members)], [names[i] for i in np.flatnonzero(allowed)])
                     for rule, members, allowed in zip(tl.residency, tl.residency_members, tl.residency_allowed)]
        lans = {names[i]: list(prefixes) for i, prefixes in self._lans.items()}
        self.host.start_daemons(self.scenario.routing, self.scenario.name, self.n_satellites, costs, stubs,
                                residency=residency, lans=lans)

    def _start_first_routes(self) -> None:
        """The probes' pairs, then the first tick: it installs the first state and all routes (set-up work, so
        the clock starts after it)."""
        from ..measure.probeset import ProbeSet

        pairs = [(p.src, p.dst, p.rate_hz) for p in self.scenario.probes]
        if self._workload_plan and self.scenario.workload.ping_mesh:  # the ping mesh rides the probe pairs
            probed = {frozenset(pair[:2]) for pair in pairs}
            pairs += [(a, b, self.scenario.workload.ping_mesh.rate_hz) for a, b in self._workload_plan["mesh"]
                      if frozenset((a, b)) not in probed]
        if pairs:
            self.probes = ProbeSet(pairs, self)
        self.clock.wall0 = time.monotonic()
        mark = time.monotonic()
        self.tick()
        self._end_phase("first routes", mark)
        if self.probes:
            self.probes.start_responders(self)

    def _start_clock(self) -> None:
        """Emulated time 0: the clock starts, then what runs on it (FIB watcher, probers, the workload)."""
        # The network's hundreds of thousands of long-lived objects (nodes, interfaces, sockets) would make every
        # full garbage collection walk them all, a long pause in a tick at constellation size: they are frozen
        # out of the collector (gc.freeze); what ticks allocate is still collected.
        gc.collect()
        gc.freeze()
        self.clock.wall0 = time.monotonic()
        self.state.set_clock(self.clock.wall0, self.speed, self.start_utc)
        if self.fib_watch is not None:
            if self.cluster:  # each machine reads its own routers' FIBs and answers their changes every tick
                self.host.watch_fibs()
            self.fib_watch.start()
        if self.probes:
            self.probes.start_probers(self, self.duration_s if self.duration_s is not None else 3600.0)
        if self.scenario.capture:
            from .capture import CaptureRunner

            self.captures = CaptureRunner(self)
            self.captures.start()
        if self._workload_plan:
            from .workload import WorkloadRunner

            self.workload = WorkloadRunner(self, self._workload_plan)
            self.workload.start()

    def fib_watcher(self):
        """A :class:`~lasernet.routing.convergence.FibWatcher` over this run's routers (not started)."""
        from ..routing.convergence import FibWatcher

        bgp = getattr(self.daemons, "bgp", None)  # BGP landing policies: links that carry nothing by design
        pids = None if self.cluster else [self.nodes[name].pid for name in self.node_names]  # a cluster's: fed
        return FibWatcher(self.node_names, self.n_satellites, pids,
                          self.clock.now_s, self.applied, routes=lambda: self.routes,
                          allowed=None if bgp is None else bgp.allowed, transit=self.transit,
                          residency=self.residency)

    def stop(self) -> None:
        """Stop ticking and remove everything this run created; safe to call twice or after a failed start."""
        self._stop.set()
        mark = time.monotonic()
        self._thaw_servers()  # before the workload: a frozen job acts on no signal, its wait would never end
        if self.workload is not None:  # first: its jobs are stopped and their exit codes read while nodes exist
            try:
                self.workload_summary = self.workload.stop()
            except Exception as exc:  # a results problem must not leave namespaces behind
                log.error("stopping the workload failed: %s", exc)
            self.workload = None
        mark = self._end_stop_phase("workload", mark)
        if self.captures is not None:  # while the nodes exist: tcpdump writes its last packets and counts
            try:
                files = self.captures.stop()["files"]
                if self.recorder:
                    self.recorder.summary["capture"] = {
                        "files": len(files), "packets": sum(f.get("captured", 0) for f in files),
                        "dropped_by_kernel": sum(f.get("dropped_by_kernel", 0) for f in files),
                        "failed": [f"{f['file']}: {f['error']}" for f in files if f.get("error")]}
            except Exception as exc:
                log.error("stopping the captures failed: %s", exc)
            self.captures = None
        mark = self._end_stop_phase("captures", mark)
        if self.web is not None:
            self.web.stop()
            self.web = None
        if self.probes and not self.recorder:
            self.probes.stop()
        if self.fib_watch is not None:
            self.fib_watch.stop()  # before the daemons go: their withdrawals are not convergence
        if self.host is not None:
            self.host.stop_daemons()
        mark = self._end_stop_phase("probes and daemons", mark)
        self.windows.close()
        mark = self._end_stop_phase("planner", mark)
        if self.power_log is not None:
            try:
                self.power_log.close(self.windows.windows, self.ticks[-1].t_s if len(self.ticks) else 0.0)
            except Exception as exc:  # a results problem must not leave namespaces behind
                log.error("writing power.csv failed: %s", exc)
            self.power_log = None
        if self.recorder:
            try:
                if self.cluster and self.host is not None:
                    self.recorder.summary["cluster"] = self.host.summary()
                self.recorder.close(self)
                if self.fib_watch is not None:
                    self.recorder.summary["routing"] = {
                        "protocol": self.scenario.routing.protocol, "daemon": self.scenario.routing.daemon,
                        **self.fib_watch.finish(self.run_dir, self.run_dir / "probes.csv")}
            except Exception as exc:  # a report problem must not leave namespaces behind
                log.error("writing the run's results failed: %s", exc)
            self.recorder = None
        mark = self._end_stop_phase("results", mark)
        if self.oracle_process is not None:  # after the results: probes' predictions read path() in its mode
            self.oracle_process.close()
            self.oracle_process = None
        mark = self._end_stop_phase("oracle", mark)
        if self.host is not None:
            self.host.stop()
            self.stop_timings.update({f"host {k}": v for k, v in self.host.stop_timings.items()})
        mark = self._end_stop_phase("host", mark)
        if self.state is not None and (self.host is None or self.cluster):  # no local host owns the state file
            run_state.teardown(self.state.data, quiet=True)
            self.state.remove()
        self.state = None
        self._end_stop_phase("state", mark)

    def _end_stop_phase(self, name: str, mark: float) -> float:
        """Add the time one phase of stop() took to ``stop_timings`` (s; a second stop() adds its own)."""
        now = time.monotonic()
        self.stop_timings[name] = self.stop_timings.get(name, 0.0) + now - mark
        return now

    def _thaw_servers(self) -> None:
        """Thaw the servers whose satellite's power state froze them (``off``), so that stopping their jobs and
        processes can end; nothing is recorded (the run is over)."""
        frozen = [name for name, factor in self.server_quota.items() if factor <= 0]
        if not frozen or self.host is None:
            return
        try:
            self.host.power([(name, 1.0, False) for name in frozen])
            if self.cluster:
                self.host.flush(wait=True)
        except Exception as exc:  # teardown goes on: the state file's teardown thaws every group again
            log.error("thawing the frozen servers failed: %s", exc)
        for name in frozen:
            self.server_quota[name] = 1.0

    # ------------------------------------------------------------------------------------------------- the clock
    def now_s(self) -> float:
        """Emulated seconds since the run's start time."""
        return self.clock.now_s()

    def realtime_to_s(self, wall_s):
        """Emulated seconds of a CLOCK_REALTIME stamp (s), e.g. taken on another machine of a cluster (as true
        as the two machines' clocks agree)."""
        return self.speed * (wall_s - time.time() + time.monotonic() - self.wall0)

    def mono_to_s(self, mono_ns: np.ndarray) -> np.ndarray:
        """Emulated seconds of CLOCK_MONOTONIC stamps (ns) taken on this machine, as probes record them."""
        return self.clock.mono_to_s(mono_ns)

    def machine_of(self, node: int) -> int:
        """The cluster machine that holds router ``node`` (0 on one machine)."""
        return int(self.host.placement.machine[node]) if self.cluster else 0

    def stamps_to_s(self, mono_ns, realtime_minus_monotonic_ns: int | None = None) -> np.ndarray:
        """Emulated seconds of CLOCK_MONOTONIC stamps (ns) taken in a node: directly on one machine; on a cluster
        through the CLOCK_REALTIME - CLOCK_MONOTONIC of the node's machine, which the stamps' process
        reported (as true as the machines' wall clocks agree: NTP keeps a LAN within about a millisecond)."""
        if not self.cluster or realtime_minus_monotonic_ns is None:
            return self.clock.mono_to_s(mono_ns)
        return self.clock.realtime_to_s((np.asarray(mono_ns, dtype=np.int64) + int(realtime_minus_monotonic_ns)) * 1e-9)

    def run(self, duration_s: float | None = None, stop: threading.Event | None = None) -> None:
        """Tick every ``tick_s`` of wall time until ``duration_s`` wall seconds, a stop request or stop()."""
        end = None if duration_s is None else time.monotonic() + duration_s
        next_at = time.monotonic()
        while not self._stop.is_set() and not (stop and stop.is_set()):
            next_at += self.tick_s
            now = time.monotonic()
            if end is not None and now >= end:
                break
            if next_at > now:
                wait = min(next_at, end or next_at) - now
                if self._stop.wait(wait) or (stop and stop.is_set()):
                    break
            else:
                next_at = now  # overrun: the next tick starts now; the overrun was recorded by tick()
            if end is not None and time.monotonic() >= end:
                break
            self.tick()

    def _end_phase(self, name: str, mark: float) -> float:
        """Record the time and the memory (MemAvailable drop: kernel objects too) one phase of start() took."""
        now_kib = mem_available_kib()
        self.start_memory_kib[name] = self._mem_mark_kib - now_kib
        self._mem_mark_kib = now_kib
        self.start_timings[name] = time.monotonic() - mark
        return time.monotonic()

    # ------------------------------------------------------------------------------------------------- one tick
    def tick(self) -> TickReport:
        t0 = time.monotonic()
        t_s = self.now_s()
        tl, offset = self.windows.at(t_s)
        up, delay = tl.state_at(t_s - offset)
        loss = np.zeros(len(up))
        rate = tl.rate_at(t_s - offset)  # a ground link on its station's RF fallback runs at the RF rate
        k = min(int((t_s - offset) / tl.step_s), len(tl.offsets_s) - 1)
        cause = tl.cause[k]
        self._apply_overrides(tl, t_s, up, delay, loss, rate)
        slots = self._tl_slots(tl)
        new = np.flatnonzero(up & (slots < 0))
        if len(new):
            self._create_links(tl, new)
        link_changes = self._apply_links(tl, t_s, slots, up, delay, loss, rate, cause,
                                         None if tl.rf_cause is None else tl.rf_cause[k])
        self._apply_power(tl, offset, t_s)
        if tl.serving is not None:
            self._record_sites(tl, t_s, tl.serving[k])
        t1 = time.monotonic()
        route_changes = self._update_routes(tl, slots, up, delay)
        machine_apply_s = ()
        if self.cluster:  # one message per machine: this tick's link states and routes
            self._learn_from_hosts(self.host.flush())
            machine_apply_s = tuple(self.host.apply_s.tolist())
        t2 = time.monotonic()
        if self.probes:
            self.probes.observe(t_s, self._pair_delay_s, self._path_text)
        if self.workload is not None:
            self.workload.tick(t_s)
        if self.captures is not None:
            self.captures.tick(t_s)
        if self.web is not None:
            self.web.publish(t_s, tl.illumination_at(t_s - offset))
        cost = time.monotonic() - t0
        report = TickReport(len(self.ticks), t_s, cost, bool(self.ticks) and cost > self.tick_s, link_changes,
                            route_changes, links_s=t1 - t0, routes_s=t2 - t1, machine_apply_s=machine_apply_s)
        if report.overrun:
            log.warning("tick %d at t=%.1f s took %.1f ms (> %.0f ms)", report.index, t_s, cost * 1e3,
                        self.tick_s * 1e3)
        self.ticks.append(report)
        self.recorder.tick(report)
        self.windows.plan_ahead(t_s)
        if report.index % max(1, int(round(1.0 / self.tick_s))) == 0:
            self._write_status(report)
            if self._uses_daemons:
                self.host.daemon_exits()  # a daemon that died mid-run is logged (with its log), once
        return report

    def _rule_table(self, src: int, dst: int):
        """The table of the residency rule governing ``src`` -> ``dst`` in this run's oracle routing, or None."""
        if self._residency_tables is None or src == dst:
            return None
        members = self.residency[0]
        for k, table in enumerate(self._residency_tables):
            if members[k][src] and members[k][dst]:
                return table
        return None

    def _pair_delay_s(self, src: int, dst: int) -> float:
        """The oracle's one-way delay from node ``src`` to ``dst`` now (its residency rule's path if one governs)."""
        table = self._rule_table(src, dst)
        if table is not None:
            return float(table.routes.delay_s[table.position[src], table.position[dst]])
        return float(self.routes.delay_s[src, dst])

    def _path_text(self, src: int, dst: int) -> str:
        from ..routing import oracle

        table = self._rule_table(src, dst)
        nodes = table.path(src, dst) if table is not None else oracle.path(self.routes, src, dst)
        return ">".join(self.node_names[i] for i in nodes)

    def _write_status(self, report: TickReport) -> None:
        a = self.applied
        status = {"t_s": report.t_s, "tick": report.index, "links_created": len(self._slots),
                  "links_up": int((a.valid & a.up).sum()), "last_tick_ms": report.cost_s * 1e3,
                  "overruns": self.ticks.overruns,
                  "utc": (self.start_utc + dt.timedelta(seconds=report.t_s)).isoformat()}
        if self.cluster:
            status["cluster"] = self.host.summary()
        path = self.run_dir / "status.json"
        tmp = path.with_name("status.json.part")
        tmp.write_text(json.dumps(status))
        tmp.replace(path)

    def _tl_slots(self, tl: Timeline) -> np.ndarray:
        """Slot of each of the timeline's links (-1 where not created yet), kept up to date by _create_links."""
        slots = self._slot_maps.get(id(tl))
        if slots is None:
            slots = np.full(len(tl.links), -1, dtype=np.int64)
            for li in range(len(tl.links)):
                link = self._slots.get(self._pair(tl, li))
                if link is not None:
                    slots[li] = link.slot
            self._slot_maps[id(tl)] = slots
        return slots

    def _apply_links(self, tl, t_s, slots, up, delay, loss, rate, cause, rf_cause=None) -> int:
        """Send the host the links whose state differs from what it holds, in one batch; record up/down events
        and the switches of ground links between their optical and RF terminals (``rf_cause``: the plan's, this
        step)."""
        li = np.flatnonzero(slots >= 0)
        s = slots[li]
        a = self.applied
        a.grow(int(s.max()) + 1 if len(s) else 0)
        d = np.where(np.isnan(delay[li]), 0.0, delay[li])
        flipped = ~a.valid[s] | (a.up[s] != up[li])
        changed = (flipped | (np.abs(a.delay_s[s] - d) > 1e-7) | (a.loss[s] != loss[li])
                   | (a.rate_bps[s] != rate[li]))
        for k in np.flatnonzero(flipped & (a.valid[s] | up[li])):
            is_up = bool(up[li[k]])
            why = "" if is_up else (CAUSES[int(cause[li[k]])] if cause[li[k]] else "override")
            self.recorder.link_event(t_s, tl, int(li[k]), is_up, why, float(d[k]))
            if self.fib_watch is not None:
                self.fib_watch.link_event(t_s, "~".join(tl.node_names[x] for x in self._pair(tl, int(li[k]))), is_up)
        if rf_cause is not None:  # a link up before and now whose rate moved to or from its RF rate
            rf_rate = tl.rf_rate_bps[li]
            moved = a.valid[s] & ~flipped & up[li] & (a.rate_bps[s] != rate[li]) & np.isfinite(rf_rate) & (
                (rate[li] == rf_rate) | (a.rate_bps[s] == rf_rate))
            for k in np.flatnonzero(moved):
                on_rf = bool(rf_cause[li[k]])
                self.recorder.bearer_event(t_s, tl, int(li[k]), on_rf, CAUSES[int(rf_cause[li[k]])] if on_rf else "",
                                           float(d[k]))
        if not changed.any():
            return 0
        ch = np.flatnonzero(changed)
        a.valid[s[ch]] = True
        a.up[s[ch]] = up[li[ch]]
        a.delay_s[s[ch]] = d[ch]
        a.loss[s[ch]] = loss[li[ch]]
        a.rate_bps[s[ch]] = rate[li[ch]]
        two = lambda x: np.repeat(np.asarray(x)[:, None], 2, axis=1)  # noqa: E731
        self.host.apply(s[ch], two(up[li[ch]]), two(d[ch]), two(loss[li[ch]]), two(rate[li[ch]]))
        return int(flipped.sum())

    def _record_sites(self, tl, t_s: float, serving: np.ndarray) -> None:
        """Record each diversity group's serving station when it changes (the plan took the others' links
        down with cause standby: nothing to apply)."""
        for d, name in enumerate(tl.site_names):
            now = int(serving[d])
            before = self._site_serving.get(name)
            if now != before:
                self.recorder.site_event(t_s, name, tl.node_names[now] if now >= 0 else "",
                                         tl.node_names[before] if before is not None and before >= 0 else "")
                self._site_serving[name] = now

    def _release_window(self, tl: Timeline) -> None:
        """The clock left plan window ``tl``: drop its slot map, hand it to power.csv's writer."""
        self._slot_maps.pop(id(tl), None)
        if self.power_log is not None:
            self.power_log.released(tl)

    def _apply_power(self, tl, offset: float, t_s: float) -> int:
        """The power state of each server's satellite (only where its quota factor changed) and the restarts of
        upsets since the last tick, as one host ``power`` message riding the tick's; events are recorded."""
        if not self._sat_servers:
            return 0
        from ..power import POWER_STATES

        state, quota = tl.power_at(t_s - offset)
        hit = set(self._upset_hits(tl, offset, t_s).tolist())
        items = []
        for name, attach, sat, cpus in self._sat_servers:
            factor, before = round(float(quota[sat]), 6), self.server_quota.get(name)  # float32 in the plan
            restart = sat in hit
            if factor != before:
                self.server_quota[name] = factor
                if self.power_log is not None:
                    self.power_log.applied(t_s, sat, factor)
                if before is not None or factor != 1.0:  # a first nominal is what the server started with
                    detail = f"cpus {cpus * factor:g}" if cpus is not None else f"cpu factor {factor:g}"
                    self.recorder.server_event(t_s, name, attach, POWER_STATES[int(state[sat])], "power", detail)
            if restart:
                self.recorder.server_event(t_s, name, attach, "restart", "upset", "")
            if restart or (factor != before and before is not None) or (before is None and factor != 1.0):
                items.append((name, factor, restart))
        if items:
            self.host.power(items)
        return len(items)

    def _upset_hits(self, tl, offset: float, t_s: float) -> np.ndarray:
        """Satellites hit by upsets in (the last tick's t_s, t_s], across a change of plan window."""
        t_from = self._upsets_to_s
        if t_s <= t_from:
            return np.zeros(0, np.int64)
        hits = []
        if self._upsets_tl is not None and self._upsets_tl[0] is not tl and t_from < offset:
            prev, prev_offset = self._upsets_tl
            hits.append(prev.upsets_between(t_from - prev_offset, offset - prev_offset))
            t_from = offset
        hits.append(tl.upsets_between(t_from - offset, t_s - offset))
        self._upsets_to_s, self._upsets_tl = t_s, (tl, offset)
        return np.concatenate(hits)

    def _update_routes(self, tl, slots, up, delay) -> int:
        """Recompute the oracle's shortest-delay routes over the created, up links; install only the changes.

        In ``background`` mode: install the changes of a computation that has finished (if any), then hand the
        process this tick's link states if it is idle; the first table (start-up) is waited for.
        """
        from ..routing import oracle

        usable = up & (slots >= 0)
        d = np.where(np.isnan(delay), 0.0, delay)
        if self.oracle_process is None:
            routes = oracle.compute(len(self.node_names), tl.links.a, tl.links.b, usable, d, transit=tl.transit)
            if self._uses_daemons:  # the daemons route; the oracle is the reference for probes and stretch
                self.routes, self._route_tl = routes, tl
                return 0
            src, dst = oracle.diff(self.routes, routes)
            self.routes = routes
            self._route_tl = tl
            li = routes.link[src, dst]
            changes = self._install_routes(src, dst, np.where(li >= 0, slots[np.maximum(li, 0)], -1))
            if self.residency is not None:
                changes += self._install_residency_routes(tl, usable, d, slots)
            self._drain_routes()
            return changes
        entered = time.monotonic()  # the budget covers taking the result in and queueing it, not only installing
        proc, t_s = self.oracle_process, self.now_s()
        result = proc.poll(timeout_s=600.0 if self.routes is None else 0.0)
        if result is None and not proc.busy:
            proc.submit(t_s, tl.links.a, tl.links.b, usable, d, slots, tl.transit)
            if self.routes is None:
                result = proc.poll(timeout_s=600.0)
        first = self.routes is None
        deadline = None if first else entered + self.ROUTE_BUDGET * self.tick_s
        if result is None:
            self._drain_routes(deadline)
            return 0
        if self.routes is None:
            n = len(self.node_names)
            self.routes = oracle.Routes(next_hop=np.full((n, n), -1, np.int32), link=np.full((n, n), -1, np.int32),
                                        delay_s=np.full((n, n), np.inf), hops=np.full((n, n), -1, np.int32))
        elif self._lag_from is None:
            self._lag_from = result.t_s  # recorded when its last change is installed (_drain_routes)
        self.routes.next_hop[result.src, result.dst] = result.next_hop
        self.routes.link[result.src, result.dst] = result.slot  # slots, not link indices, in this mode
        if not proc.busy:  # start the next computation at once, from this tick's states
            proc.submit(t_s, tl.links.a, tl.links.b, usable, d, slots, tl.transit)
        if first:
            changes = self._install_aggregated()
        else:
            changes = self._install_routes(result.src, result.dst, result.slot)
        self._drain_routes(deadline)
        return changes

    #: Kernel routing table of residency rule k (``RESIDENCY_TABLE + k``) and the priority of its policy rules.
    RESIDENCY_TABLE = 100
    RESIDENCY_PRIORITY = 1000

    def _install_residency_routes(self, tl, usable, delay, slots) -> int:
        """Route the pairs residency rules govern as the rules' tables say (oracle routing, tick mode).

        Routing under a residency rule is by source (:mod:`lasernet.routing.policy`), which the kernel does with
        policy routing: every node a rule allows (and each of its members) gets the rule's table, holding its
        routes to the rule's members over the allowed nodes (``unreachable`` where the rule leaves no path), and
        policy rules that send packets from the members' addresses, and those a member originates to another
        member, to that table first. Other packets find no route there and go on to the main table. Only the
        entries that changed since the last tick are installed. Returns the number of route changes.
        """
        from ..routing import policy

        members, allowed = self.residency
        tables = policy.compute(len(self.node_names), tl.links.a, tl.links.b, usable, delay, transit=tl.transit,
                                members=members, allowed=allowed).rules
        self._residency_tables = tables  # for path() and the probes' predictions
        if self._residency_installed is None:
            self._residency_installed = [dict() for _ in tables]
            for k, table in enumerate(tables):
                addresses = [(loopback_ip(int(m)), 32) for m in np.flatnonzero(members[k])]
                addresses += [(lan.split("/")[0], 24) for m in np.flatnonzero(members[k])
                              for lan in self._lans.get(int(m), ())]
                for x in table.nodes:
                    own = addresses if members[k][x] else []  # a member's own traffic to the others
                    self._route_queue.append(("residency-rules", int(x), addresses, own, self.RESIDENCY_TABLE + k,
                                              self.RESIDENCY_PRIORITY + k))
        changes = 0
        for k, table in enumerate(tables):
            installed = self._residency_installed[k]
            targets = np.flatnonzero(members[k])
            for x in table.nodes:
                entries = []
                for m in targets:
                    if m == x:
                        continue
                    ps, pd = table.position[x], table.position[m]
                    hop = None
                    if table.routes.next_hop[ps, pd] >= 0:
                        slot = int(slots[table.link_ids[table.routes.link[ps, pd]]])
                        if slot >= 0:
                            a_end, ifname_a, ifname_b = self._slot_ends[slot]
                            ip_a, ip_b = link_ips(slot)
                            link = self.applied.links[slot]
                            hop = (ip_b, ifname_a, link.b) if a_end == x else (ip_a, ifname_b, link.a)
                    if installed.get((int(x), int(m)), "none") != hop:
                        installed[(int(x), int(m))] = hop
                        entries.append((int(m), hop))
                if entries:
                    self._route_queue.append(("table-entries", int(x), entries, self.RESIDENCY_TABLE + k))
                    changes += len(entries)
        return changes

    def _install_aggregated(self) -> int:
        """The first table of background mode as aggregated prefixes (:func:`oracle.aggregate`), ~4x fewer routes.

        Later changes are /32 routes (or /32 ``unreachable`` routes for withdrawals) over these, so forwarding
        to every node is exactly the table's. Addresses of the loopback pool that belong to no node may fall
        under an aggregate. Destinations with server LANs behind them keep their own /32 and /24 routes.
        """
        from ..routing import oracle

        if self._uses_daemons:  # routing daemons install the routes
            return 0
        n = len(self.node_names)
        bits = max(1, int(n).bit_length())  # offsets 1..n of the loopback pool
        values = np.full((n, 1 << bits), oracle.DONT_CARE, np.int64)
        lans = np.fromiter(self._lans, np.int64) if self._lans else np.zeros(0, np.int64)
        made = None
        if self.NEXTHOPS:  # aggregated over each router's nexthop objects, one per link it uses
            self.nexthops = self._nexthop_plan()
            made = self.nexthops.first(self.routes.link, skip=lans)
            values[:, 1:n + 1] = np.where(self.nexthops.label >= 0, self.nexthops.label, -1)
        else:
            values[:, 1:n + 1] = self.routes.link  # slots; -1 where unreachable
        values[np.arange(n), np.arange(n) + 1] = oracle.DONT_CARE  # a node's own loopback is local
        values[:, lans + 1] = -10 - lans  # unique: never merged, never emitted
        row, first, host_bits, slot = oracle.aggregate(values, bits)
        order = np.argsort(row, kind="stable")
        row, first, host_bits, slot = row[order], first[order], host_bits[order], slot[order]
        if made is not None:
            self._queue_nexthop_rows(made, (row, first, host_bits, slot))
            self._row_prefixes = np.bincount(row, minlength=n)
            if len(lans):
                src, dst = np.nonzero(np.isin(np.arange(n), lans)[None, :] & (self.routes.link >= 0))
                self._install_routes(src, dst, self.routes.link[src, dst])
            self.route_prefixes = len(row)
            return int((self.routes.link >= 0).sum())
        end_a, ifname_a, ifname_b = self._slot_end_arrays()
        at_a = end_a[slot] == row
        via = (int(LINK_POOL.network_address) + 2 * slot + np.where(at_a, 1, 0)).astype(np.uint32)
        dev = np.where(at_a, ifname_a[slot], ifname_b[slot])
        bounds = np.flatnonzero(np.diff(row)) + 1
        for lo, hi in zip(np.concatenate([[0], bounds]), np.concatenate([bounds, [len(row)]])):
            self._route_queue.append(("prefixes", int(row[lo]), first[lo:hi], host_bits[lo:hi], via[lo:hi],
                                      dev[lo:hi]))
        if len(lans):
            src, dst = np.nonzero(np.isin(np.arange(n), lans)[None, :] & (self.routes.link >= 0))
            self._install_routes(src, dst, self.routes.link[src, dst])
        self.route_prefixes = len(row)
        return int((self.routes.link >= 0).sum())

    def _install_routes(self, src, dst, slot) -> int:
        """Install the routes from nodes ``src`` to ``dst`` over link slots ``slot`` (-1: withdraw the route).

        With ``NEXTHOPS`` the :class:`~lasernet.emulation.nexthops.NexthopPlan` decides the writes: per source
        node ``nexthops`` items (objects made, reused or retargeted) and ``nhroutes`` items (at most ROUTE_CHUNK
        routes each), in the order its module gives; in background mode a row cheaper rewritten whole goes as
        one ``nhrow`` item. Without, one numpy-packed ``routes`` item per source node. Either way withdrawals
        (``unreachable`` items over an aggregate) and destinations with server LANs behind them (``entries``
        items, one route at a time on the host) keep routes of their own.
        """
        if len(src) == 0 or self._uses_daemons:
            return 0
        changed = len(src)
        special = slot < 0
        lan = np.isin(dst, np.fromiter(self._lans, np.int64)) if self._lans else np.zeros(len(dst), bool)
        special |= lan
        if self.NEXTHOPS and self.oracle_process is not None and self.nexthops is not None:
            rows = self._reaggregate_rows(src, dst, slot, lan)
            if len(rows):  # those rows' routes are rewritten whole (their LAN destinations keep their own)
                rest = ~np.isin(src, rows) | lan
                src, dst, slot, special = src[rest], dst[rest], slot[rest], special[rest]
        per_node: dict[int, list] = {}
        lan_dsts = self._lans
        unreachable: dict[int, list] = {}
        for k in np.flatnonzero(special):
            s_, d_ = int(src[k]), int(dst[k])
            if slot[k] < 0:
                if self.oracle_process is not None and d_ not in lan_dsts:  # over an aggregate: /32 unreachable
                    unreachable.setdefault(s_, []).append(d_)
                else:
                    per_node.setdefault(s_, []).append((d_, None))
                continue
            a, ifname_a, ifname_b = self._slot_ends[int(slot[k])]
            ip_a, ip_b = link_ips(int(slot[k]))
            link = self.applied.links[int(slot[k])]
            hop = (ip_b, ifname_a, link.b) if a == s_ else (ip_a, ifname_b, link.a)
            per_node.setdefault(s_, []).append((d_, hop))
        queue, chunk = self._route_queue, self.ROUTE_CHUNK
        for node, entries in per_node.items():
            queue.extend(("entries", node, entries[c:c + chunk]) for c in range(0, len(entries), chunk))
        for node, dsts in unreachable.items():
            queue.extend(("unreachable", node, dsts[c:c + chunk]) for c in range(0, len(dsts), chunk))
        keep = np.flatnonzero(~special)
        if self.NEXTHOPS:
            from .nexthops import DIRECT, NONE

            if self.nexthops is None:
                self.nexthops = self._nexthop_plan()
            plan = self.nexthops
            if special.any():  # withdrawn, or routed with their own gateway (LAN destinations)
                k = np.flatnonzero(special)
                plan.clear(src[k], dst[k], NONE)
                k = k[slot[k] >= 0]
                plan.clear(src[k], dst[k], DIRECT)
            if len(keep):
                writes = plan.assign(src[keep], dst[keep], slot[keep])
                self._queue_nexthop_writes(writes)
            if unreachable:
                for node, dsts in unreachable.items():
                    self._row_singles[node] += len(dsts)
            self.recorder.route_changes(self.now_s(), changed)
            return changed
        if len(keep):
            s_arr, d_arr, slot = src[keep], dst[keep], slot[keep].astype(np.int64)
            end_a, ifname_a, ifname_b = self._slot_end_arrays()
            at_a = end_a[slot] == s_arr
            link_base = int(LINK_POOL.network_address)
            via = (link_base + 2 * slot + np.where(at_a, 1, 0)).astype(np.uint32)
            dev = np.where(at_a, ifname_a[slot], ifname_b[slot])
            bounds = np.flatnonzero(np.diff(s_arr)) + 1
            for lo, hi in zip(np.concatenate([[0], bounds]), np.concatenate([bounds, [len(s_arr)]])):
                for c in range(lo, hi, self.ROUTE_CHUNK):  # bounded work items, so the tick budget holds
                    e = min(hi, c + self.ROUTE_CHUNK)
                    queue.append(("routes", int(s_arr[lo]), d_arr[c:e], via[c:e], dev[c:e]))
        self.recorder.route_changes(self.now_s(), len(src))
        return int(len(src))

    @property
    def install_cost_s(self) -> tuple[float, float]:
        """What the route budget reckons installing costs: (per item, per further route), learnt as it goes."""
        return self._item_cost_s, self._route_cost_s

    @property
    def pending_route_items(self) -> int:
        """Route items decided and not yet handed to the host (background mode spreads them over ticks)."""
        return len(self._route_queue)

    def _nexthop_plan(self):
        from .nexthops import NexthopPlan

        n = len(self.node_names)
        self._row_singles = np.zeros(n, np.int64)  # per router: /32 routes queued since its last aggregation
        self._row_prefixes = np.zeros(n, np.int64)  # per router: prefixes of its last aggregation
        return NexthopPlan(n)

    def _label_hops(self, node: np.ndarray, slot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gateway (uint32, the other end's /31 address) and interface name of routers ``node`` over ``slot``."""
        end_a, ifname_a, ifname_b = self._slot_end_arrays()
        slot = np.asarray(slot, np.int64)
        at_a = end_a[slot] == node
        via = (int(LINK_POOL.network_address) + 2 * slot + np.where(at_a, 1, 0)).astype(np.uint32)
        return via, np.where(at_a, ifname_a[slot], ifname_b[slot])

    def _queue_nexthop_writes(self, writes) -> None:
        """Queue a :class:`~lasernet.emulation.nexthops.Writes` as host items, per router in the order its
        docstring gives: labels made, routes to other labels, retargets, routes to retargeted labels."""
        made_s, made_l, made_y = writes.made
        rs, rd, rl = writes.routes
        ts, tl_, ty = writes.retargeted
        queue, chunk = self._route_queue, self.ROUTE_CHUNK
        np.add.at(self._row_singles, rs, 1)
        ids = rl + 1
        special = set(made_s.tolist()) | set(ts.tolist())  # routers with objects to set: ordered items
        if special:
            made_via, made_dev = self._label_hops(made_s, made_y)
            t_via, t_dev = self._label_hops(ts, ty)
        bounds = np.flatnonzero(np.diff(rs)) + 1
        starts, ends = np.concatenate([[0], bounds]).tolist(), np.concatenate([bounds, [len(rs)]]).tolist()
        routed = set()
        for lo, hi in zip(starts, ends):  # the common case: route writes only, one item per chunk
            if hi <= lo:
                continue
            node = int(rs[lo])
            if node in special:
                continue
            routed.add(node)
            for c in range(lo, hi, chunk):
                e = min(hi, c + chunk)
                queue.append(("nhroutes", node, rd[c:e], ids[c:e]))
        late = writes.late
        for node in sorted(special):
            m = made_s == node
            if m.any():
                queue.append(("nexthops", node, made_l[m] + 1, made_y[m], made_via[m], made_dev[m]))
            r = rs == node
            dsts, labels, lates = rd[r], ids[r], late[r]
            t = ts == node
            if t.any():
                early = ~lates
                for c in range(0, int(early.sum()), chunk):
                    queue.append(("nhroutes", node, dsts[early][c:c + chunk], labels[early][c:c + chunk]))
                queue.append(("nexthops", node, tl_[t] + 1, ty[t], t_via[t], t_dev[t]))
                dsts, labels = dsts[lates], labels[lates]
            for c in range(0, len(dsts), chunk):
                queue.append(("nhroutes", node, dsts[c:c + chunk], labels[c:c + chunk]))

    def _reaggregate_rows(self, src, dst, slot, lan) -> np.ndarray:
        """Rows whose changes cost fewer writes as the whole row in aggregated prefixes: queue them (their
        labels from :meth:`NexthopPlan.rebuild_row`, unreachable destinations as unreachable prefixes) and
        answer their routers. Counted against it: the prefixes, and the row's /32 routes and prefixes now in
        the kernel (each deleted), bounded by what was queued since its last aggregation."""
        from .nexthops import NONE, UNREACHABLE, row_prefixes

        plan = self.nexthops
        sure = ~lan & ((slot < 0) | (plan.label[src, dst] == NONE))  # one write each if done one by one
        counts = np.bincount(src[sure], minlength=plan.n)
        rows = np.flatnonzero(counts >= self.REAGGREGATE_MIN)
        if not len(rows):
            return rows
        lans = np.fromiter(self._lans, np.int64) if self._lans else np.zeros(0, np.int64)
        done = []
        for s in rows.tolist():
            link_row = self.routes.link[s].astype(np.int64)
            first, host_bits, value = row_prefixes(s, link_row, lans)
            if len(first) + self._row_singles[s] + self._row_prefixes[s] >= counts[s]:
                continue
            made = plan.rebuild_row(s, link_row, skip=lans)
            if len(made[0]):
                via, dev = self._label_hops(made[0], made[2])
                self._route_queue.append(("nexthops", s, made[1] + 1, made[2], via, dev))
            on = np.flatnonzero(plan.label[s] >= 0)
            label_of = dict(zip(link_row[on].tolist(), plan.label[s, on].tolist()))
            ids = np.array([0 if v == UNREACHABLE else label_of[v] + 1 for v in value.tolist()], np.int64)
            self._route_queue.append(("nhrow", s, first, host_bits, ids))
            self._row_singles[s], self._row_prefixes[s] = 0, len(first)
            self.rows_rewritten += 1
            done.append(s)
        return np.array(done, np.int64)

    def _queue_nexthop_rows(self, made, prefixes) -> None:
        """The first table with nexthop objects: per router its objects, then its aggregated prefixes."""
        made_s, made_l, made_y = made
        row, first, host_bits, label = prefixes
        via, dev = self._label_hops(made_s, made_y)
        m_bounds = np.flatnonzero(np.diff(made_s)) + 1
        p_nodes, p_lo = np.unique(row, return_index=True)
        p_hi = np.append(p_lo[1:], len(row))
        p_at = dict(zip(p_nodes.tolist(), zip(p_lo.tolist(), p_hi.tolist())))
        for lo, hi in zip(np.concatenate([[0], m_bounds]), np.concatenate([m_bounds, [len(made_s)]])):
            if hi <= lo:
                continue
            node = int(made_s[lo])
            self._route_queue.append(("nexthops", node, made_l[lo:hi] + 1, made_y[lo:hi], via[lo:hi], dev[lo:hi]))
            if node in p_at:
                a, b = p_at[node]
                self._route_queue.append(("nhprefixes", node, first[a:b], host_bits[a:b], label[a:b] + 1))

    def _slot_end_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per link slot: node at end a, interface name at a, at b (numpy; rebuilt only when links were added)."""
        if self._slot_end_cache is None or len(self._slot_end_cache[0]) != len(self._slot_ends):
            a, ifa, ifb = zip(*self._slot_ends) if self._slot_ends else ((), (), ())
            self._slot_end_cache = (np.array(a, np.int64), np.array(ifa, object), np.array(ifb, object))
        return self._slot_end_cache

    def _drain_routes(self, deadline: float | None = None) -> None:
        """Have the host install queued per-node route items, one namespace at a time, until done or ``deadline``
        (monotonic).

        Background mode spreads a large update over ticks this way (the rest waits for the next tick, in order,
        so a node's newer changes never overtake older ones); tick mode drains everything at once.
        """
        queue, install = self._route_queue, self.host.install_routes
        # A cluster's hosts take route items with the tick's one message (flush), so installing costs nothing
        # here: the budget is then spent on the cost learnt from what the machines answer (_learn_from_hosts).
        deferred = self.cluster is not None
        done, spent = 0, 0.0
        while queue:
            item = queue[0]
            n = len(item[2])  # routes in the item
            began = time.monotonic() + spent
            if deadline is not None and done and began + self._item_cost_s + n * self._route_cost_s > deadline:
                break  # would not fit: the next tick starts with it
            install((queue.popleft(),))
            done += 1
            if deferred:
                spent += self._item_cost_s + n * self._route_cost_s
            elif deadline is not None and item[0] not in self.UNLEARNT_ITEMS:
                self._learn_item_cost(n, time.monotonic() - began)
        if not queue and self._lag_from is not None:
            self.route_lags.append(self.now_s() - self._lag_from)
            self._lag_from = None

    def _learn_from_hosts(self, answers: dict) -> None:
        """A cluster tick: each machine's apply time for the route items it got (its own clock) teaches the
        per-route cost that the route budget spends (the slowest machine's, as they install in parallel); the
        FIB changes the machines read go to the FIB watcher, stamped in emulated time."""
        if self.fib_watch is not None:
            self.fib_watch.feed([(self.clock.realtime_to_s(wall_s), changes)
                                 for wall_s, changes in self.host.take_fib()])
        worst = max((a["apply_s"] / a["route_ops"] for a in answers.values() if a.get("route_ops", 0) > 16),
                    default=None)
        if worst is not None:
            self._route_cost_s += (worst - self._route_cost_s) / 16

    def _learn_item_cost(self, routes: int, took_s: float) -> None:
        """Moving averages of an item's fixed cost (from items of a few routes) and of each further route."""
        if routes <= 4:
            self._item_cost_s += (took_s - self._item_cost_s) / 16
        else:
            self._route_cost_s += (max(took_s - self._item_cost_s, 0.0) / routes - self._route_cost_s) / 16

    # ------------------------------------------------------------------------------------------------- links
    @staticmethod
    def _pair(tl: Timeline, li: int) -> tuple[int, int]:
        return int(tl.links.a[li]), int(tl.links.b[li])

    def _create_links(self, tl: Timeline, lis, bulk: bool = False) -> list[LinkAddress]:
        """Create links ``lis`` (indices into ``tl``) that do not exist yet: give each the next slot, and have the
        host make them (down until the next apply). ``bulk``: start-up, one link dump per node."""
        new, made = [], []
        for li in lis:
            pair = self._pair(tl, int(li))
            if pair in self._slots:
                continue
            made.append(int(li))
            link = LinkAddress.plan(len(self._slots), pair[0], pair[1], self.node_names)
            self._slots[pair] = link
            for _, window in self.windows.windows:
                slots = self._slot_maps.get(id(window))
                if slots is not None:
                    hit = np.flatnonzero((window.links.a == pair[0]) & (window.links.b == pair[1]))
                    slots[hit] = link.slot
            self._slot_ends.append((link.a, link.ifname_a, link.ifname_b))
            self.applied.links.append(link)
            new.append(link)
        costs = None
        if self._uses_daemons and not bulk:  # links made after the daemons started get configured in them
            costs = [self._link_cost(tl, li) for li in made]
        self.host.add_links(new, costs, bulk=bulk)
        return new

    # ------------------------------------------------------------------------------------------------- daemons
    def _link_cost(self, tl: Timeline, li: int) -> int:
        """A link's metric for the daemons: 10 per hop, or its mean light time over the window in 10 us units."""
        if self.scenario.routing.cost == "hops":
            return 10
        d = tl.delay_s[:, li]
        d = d[np.isfinite(d)]
        return max(1, int(round(float(d.mean()) * 1e5))) if len(d) else 1000

    def run_until_converged(self, timeout_s: float, settle_s: float = 0.0) -> float | None:
        """Tick until the daemons' FIBs deliver every connected pair (for ``settle_s`` in a row); return the
        emulated time it took, or None after ``timeout_s`` wall seconds."""
        if self.fib_watch is None:
            raise RuntimeError("run_until_converged needs routing daemons (scenario routing.protocol)")
        t0, end = self.now_s(), time.monotonic() + timeout_s
        since = None
        while time.monotonic() < end:
            self.run(0.25)
            if self.fib_watch.converged():
                since = self.now_s() if since is None else since
                if self.now_s() - since >= settle_s:
                    return since - t0
            else:
                since = None
            self.host.check_daemons()
        return None

    # ------------------------------------------------------------------------------------------------- overrides
    def override(self, a: str, b: str, *, up: bool | None = None, loss: float | None = None,
                 rate_bps: float | None = None, delay_s: float | None = None, for_s: float | None = None) -> None:
        """Force a link's state over the plan (both directions), for ``for_s`` emulated seconds or until cleared."""
        key = self._node_pair(a, b)
        # The window starts at the tick that applies it, so that a 1 s outage lasts 1 s of applied state.
        self.overrides[key] = Override(up, loss, rate_bps, delay_s, None, for_s)

    def on_event(self, callback) -> None:
        """Call ``callback(event)`` with every row of ``events.csv`` as the run writes it (a
        :class:`lasernet.measure.recorder.Event`: ``t_s``, ``kind``, ``what``, ``a``, ``b``, ``event``, ``cause``,
        ``delay_ms``, ``detail``): links going down and up with their cause (``manoeuvre``, ``reboot``, ``sun``,
        ``override`` ...), servers' power states and upset restarts (kind ``server``), route changes. It runs on
        the ticking thread right after the row is written, so it must be quick (hand longer work to a thread of
        your own); one that raises is logged and gets no more events. Give it before or after start()."""
        self._event_listeners.append(callback)

    def clear_override(self, a: str, b: str) -> None:
        self.overrides.pop(self._node_pair(a, b), None)

    def node(self, name: str):
        """A router (satellite, ground station) or a server by name."""
        node = self.nodes.get(name) or self.servers.get(name)
        if node is None:
            raise KeyError(f"unknown node {name!r}")
        return node

    def router_index(self, name: str) -> int:
        """Index of the router a node is (or, for a server, is attached to): where routes to it lead."""
        if name in self.servers:
            return self.servers[name].attach
        return self.node_names.index(name)

    def _node_pair(self, a: str, b: str) -> tuple[int, int]:
        for name in (a, b):
            if name not in self.nodes:
                raise KeyError(f"unknown node {name!r}")
        ia, ib = self.node_names.index(a), self.node_names.index(b)
        return (ia, ib)

    def _apply_overrides(self, tl, t_s, up, delay, loss, rate) -> None:
        if not self.overrides:
            return
        for (ia, ib), ov in list(self.overrides.items()):
            if ov.for_s is not None and ov.until_s is None:
                ov.until_s = t_s + ov.for_s
            if ov.until_s is not None and t_s >= ov.until_s - 0.5 * self.tick_s * self.speed:  # tick jitter
                del self.overrides[(ia, ib)]
                continue
            hit = np.flatnonzero(((tl.links.a == ia) & (tl.links.b == ib)) | ((tl.links.a == ib) & (tl.links.b == ia)))
            for li in hit:
                if ov.up is not None:
                    up[li] = ov.up
                if ov.loss is not None:
                    loss[li] = ov.loss
                if ov.rate_bps is not None:
                    rate[li] = ov.rate_bps
                if ov.delay_s is not None:
                    delay[li] = ov.delay_s

    # ------------------------------------------------------------------------------------------------- queries
    def timeline_at(self, t_s: float | None = None) -> tuple[Timeline, float]:
        return self.windows.at(self.now_s() if t_s is None else t_s)

    def path(self, a: str, b: str) -> tuple[list[str], float]:
        """The current oracle path from node ``a`` to ``b`` (node names) and its one-way light time (inf if none)."""
        from ..routing import oracle

        ia, ib = self._node_pair(a, b)
        if self.routes is None:
            return [], math.inf
        table = self._rule_table(ia, ib)
        if table is not None:  # a pair a residency rule governs: its rule's path (tick mode)
            nodes = table.path(ia, ib)
            return [self.node_names[i] for i in nodes], self._pair_delay_s(ia, ib) if nodes else math.inf
        nodes = oracle.path(self.routes, ia, ib)
        if self.oracle_process is None:
            return [self.node_names[i] for i in nodes], float(self.routes.delay_s[ia, ib])
        # background mode: the table holds link slots; add up the delays the backend has now
        slots = [int(self.routes.link[u, ib]) for u in nodes[:-1]]
        delay = float(self.applied.delay_s[slots].sum()) if nodes else math.inf
        return [self.node_names[i] for i in nodes], delay

    def link_table(self) -> list[dict]:
        """Live state of every created link: names, up, delay, loss, rate."""
        out = []
        a = self.applied
        for link in a.links:
            ia, ib = link.a, link.b
            ok = link.slot < len(a.valid) and a.valid[link.slot]
            out.append({"link": f"{self.node_names[ia]}~{self.node_names[ib]}", "slot": link.slot,
                        "kind": "isl" if max(ia, ib) < self.n_satellites else "gsl",
                        "up": bool(ok and a.up[link.slot]),
                        "delay_ms": float(a.delay_s[link.slot]) * 1e3 if ok else math.nan,
                        "loss": float(a.loss[link.slot]) if ok else 0.0,
                        "rate_bps": float(a.rate_bps[link.slot]) if ok else 0.0})
        return out
