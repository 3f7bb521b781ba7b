"""The live emulation: a Mininet network of routers kept in step with the orbit, tick by tick.

:class:`Emulation` owns everything a run creates. ``start()`` plans the first window of link states (the offline
pipeline), starts one :class:`~lasernet.emulation.network.Router` per satellite and ground station, starts the
link backend and creates every link that is up at some time in the window, with its /31 addresses and permanent
neighbour entries, then installs the first routes. ``run()`` ticks until a duration or a stop request;
``stop()`` removes exactly what was created, in reverse order. It is a context manager::

    with lasernet.Emulation(scenario, duration_s=60) as emu:
        emu.nodes["ashburn"].cmd("ping -c 3", emu.nodes["frankfurt"].IP())
        emu.run(30)

Emulated time is ``t = t0 + speed * (wall - wall0)`` (CLOCK_MONOTONIC). Each tick reads the link states at t
from the plan (up from the step in force, delay interpolated between steps), overlays any overrides set with
:meth:`Emulation.override` (failure injection, loss, rate), sends only the differences to the backend in one
batch, then recomputes shortest-delay routes and installs only the changed ones. Each tick's cost goes to
``ticks.csv``; a tick that overruns its slot is counted and logged, never silently skipped. Plans are computed
in windows (default 10 minutes of emulated time), the next one in a background thread.

At scale (see ``routing``): node shells are spawned together and configured by netlink rather than one shell
round trip each (:func:`~lasernet.emulation.network.finish_shells`), link ends are addressed with one link dump
per node, and with ``routing="background"`` (the default above ``BACKGROUND_ABOVE_NODES`` nodes) the oracle runs
in a separate process (:mod:`lasernet.routing.background`): ticks install its finished diffs within a budget,
so routes lag the link states by one computation (``route_lags``); the first table goes in as aggregated
prefixes. ``start_timings`` records how long each phase of ``start()`` took.

With a routing daemon protocol in the scenario (``routing: {protocol: ospf|isis|babel|bgp}``) the driver installs
no routes: ``start()`` starts the daemons on every router once the links exist (:mod:`lasernet.routing.daemons`;
``daemon_config_hook`` lets tests alter a generated config), each tick still computes the oracle as the
reference for probes and path stretch, and a :class:`~lasernet.routing.convergence.FibWatcher` judges the
daemons' FIBs after every change (``convergence.csv``, ``fib.csv``, ``summary["routing"]``);
:meth:`Emulation.run_until_converged` ticks until they deliver every connected pair.

What the run created (node PIDs and their namespace inodes, the relay, routing daemons, files) is written to a
state file as it is created, so that ``lasernet down`` can remove exactly that even after the driver was killed
with SIGKILL.
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

from .. import timeline as tl_mod
from ..errors import ScenarioError
from ..spec.scenario import Scenario
from ..timeline import CAUSES, Timeline
from . import state as run_state
from .awake import CpuAwake
from .addressing import LINK_POOL, LinkAddress, ifname_for, lan_network, link_ips
from .kernel import Kernel
from .links import LinkBackend, choose_backend, make_backend
from .network import SYSCTLS, Router, Server, finish_shells, terminate_all

log = logging.getLogger("lasernet")

Progress = Callable[[str, int, int], None]

#: How the oracle's routes are computed: ``tick`` (in every tick, exact: routes follow the link states of the
#: tick that installs them), ``background`` (in a separate process, see :mod:`lasernet.routing.background`:
#: the tick stays cheap and routes lag by one computation), ``auto`` (``tick`` up to
#: ``BACKGROUND_ABOVE_NODES`` nodes, where a full recompute fits well inside a 0.1 s tick, else ``background``).
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


def _pin_to_last_cpu(pid: int | None) -> None:
    """Confine a helper process (relay, background oracle) to the last CPU when there are two or more.

    The relay runs SCHED_FIFO: woken by the driver's per-tick commit it would preempt the driver on the driver's
    own core for as long as it takes to apply the table (several ms at shell1 size). On a core of its own (shared
    with the background oracle, which runs niced) it never stalls the tick.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if pid and len(cpus) >= 2:
        try:
            os.sched_setaffinity(pid, {cpus[-1]})
        except OSError as exc:
            log.warning("could not pin process %s to CPU %d: %s", pid, cpus[-1], exc)


def mem_available_kib() -> int:
    """The machine's ``MemAvailable`` (KiB): what processes and the kernel's objects together have left."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def _raise_fd_limit(pid: int | None, wanted: int) -> None:
    """Raise a process's open-file limit to at least ``wanted`` (a large run needs more than a login's default)."""
    import resource

    if not pid:
        return
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    try:
        if soft < wanted:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (OSError, ValueError) as exc:  # e.g. no CAP_SYS_RESOURCE to pass the hard limit (as on CI here)
        log.warning("could not raise the open-file limit of process %s to %d (%s): it stays %d, so a relay holds "
                    "at most ~%d links", pid, wanted, exc, soft, soft // 2 - 8)


def _daemon_sysctls(scenario: Scenario) -> tuple[str, ...]:
    """Sysctls routing daemons need besides SYSCTLS: Babel speaks over IPv6 link-local addresses, so links get
    IPv6 (without duplicate-address detection, which would hold a new link's address back for a second)."""
    if scenario.routing.protocol != "babel":
        return ()
    return ("net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.default.disable_ipv6=0",
            "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")


class Emulation:
    """A running (or ready to run) emulation of one scenario (see the module docstring)."""

    #: Background routing: the share of a tick that taking in a result and installing routes may take (counted from
    #: the start of the routes part); what does not fit waits for later ticks.
    ROUTE_BUDGET = 0.13
    ROUTE_CHUNK = 128  # most routes of one node installed in one go (a handover changes all of a station's)

    def __init__(self, scenario: Scenario, *, links: str = "auto", speed: float = 1.0, tick_s: float = 0.1,
                 start: dt.datetime | None = None, duration_s: float | None = None, window_s: float = 600.0,
                 plan_step_s: float | None = None, run_dir: str | Path | None = None,
                 progress: Progress | None = None, routing: str = "auto", keep_awake: bool | None = None,
                 daemon_config_hook=None):
        if speed <= 0 or tick_s <= 0:
            raise ScenarioError("lasernet up", "", f"needs speed > 0 and tick_s > 0, got {speed} and {tick_s}")
        if routing not in ROUTING_MODES:
            raise ScenarioError("lasernet up", "", f"routing must be one of {', '.join(ROUTING_MODES)}, got {routing!r}")
        self.scenario = scenario
        self.routing = routing
        if keep_awake is None:  # one SCHED_IDLE spinner per CPU while up (see lasernet.emulation.awake)
            keep_awake = os.environ.get("LASERNET_KEEP_AWAKE", "1") != "0"
        self.keep_awake = keep_awake
        self._awake: CpuAwake | None = None
        self.links_kind = links
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
        self.nodes: dict[str, Router] = {}  # routers: satellites and ground stations
        self.servers: dict[str, Server] = {}  # hosts attached to routers (scenario `hosts:`)
        self.net = None
        self.backend: LinkBackend | None = None
        self.kernel: Kernel | None = None
        self.state: run_state.RunState | None = None
        self.overrides: dict[int, Override] = {}
        self._windows: list[tuple[float, Timeline]] = []
        self._next_window: threading.Thread | None = None
        self._slots: dict[tuple[int, int], LinkAddress] = {}
        self._applied_state = {k: np.zeros(0, dtype=t) for k, t in (("valid", bool), ("up", bool),
                               ("delay_s", float), ("loss", float), ("rate_bps", float))}
        self._slot_maps: dict[int, np.ndarray] = {}
        self._slot_ends: list[tuple[int, str, str]] = []  # per slot: node a, interface at a, interface at b
        self._slots_by_index: list[LinkAddress] = []
        self._slot_end_cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._route_queue: collections.deque = collections.deque()  # (node, changes) not installed yet
        self._recorder = None
        self._routes = None  # the oracle's table now installed
        self._oracle_proc = None  # background mode: the OracleProcess
        self.route_lags: list[float] = []  # background mode: emulated s from the states used to the install
        # Background mode: what installing one queued item costs (per item + per route, learnt as it goes), so
        # that the drain stops before an item that would not fit in the tick's budget rather than after it.
        self._item_cost_s, self._route_cost_s = 40e-6, 3e-6
        self._lag_from = None
        self.route_prefixes = None  # background mode: how many aggregated routes the first install used
        self._route_tl = None
        self.probes = None
        self.workload = None  # the WorkloadRunner of the scenario's `workload:` section, if it has one
        self.workload_summary: dict = {}
        self._workload_plan = None
        self._stop = threading.Event()
        self._wall0 = None
        self.ticks: list[TickReport] = []
        self._started = False
        self.start_timings: dict[str, float] = {}  # seconds per phase of start(), for benchmarks
        self.start_memory_kib: dict[str, int] = {}  # drop of the machine's MemAvailable per phase (kernel included)
        self.daemons = None  # routing daemons (scenario routing.protocol other than oracle): a DaemonSet
        self.fib_watch = None  # with daemons: the FibWatcher measuring their convergence
        self._daemon_config_hook = daemon_config_hook  # tests: (node, daemon, config text) -> config text

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
        from mininet.net import Mininet

        from ..measure.probeset import ProbeSet
        from ..measure.recorder import Recorder

        t_start = time.monotonic()
        self._mem_mark_kib = mem_available_kib()
        first = self._plan_window(0.0)  # validates the scenario fully before anything is created
        if not self.scenario.workload.empty:  # so are the workload's node selectors
            from ..spec import workload as workload_spec

            self._workload_plan = workload_spec.resolve(self.scenario, first.node_names, first.n_satellites)
        self.links_kind = choose_backend(self.links_kind)  # so does the link backend (BackendUnavailable)
        # The driver holds per node a pty, its netlink socket and namespace fd: ~4 fds a node.
        _raise_fd_limit(os.getpid(), 8 * len(first.node_names) + 4096)
        self._windows.append((0.0, first))
        self.node_names = first.node_names
        self.n_satellites = first.n_satellites
        if self.routing == "auto":
            self.routing = "background" if len(self.node_names) > BACKGROUND_ABOVE_NODES else "tick"
        if self.routing == "background":
            from ..routing.background import OracleProcess

            self._oracle_proc = OracleProcess(len(self.node_names))  # starts while the network comes up
            _pin_to_last_cpu(self._oracle_proc.proc.pid)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.state = run_state.RunState.create(self.run_id, self.run_dir, self.scenario)
        self._recorder = Recorder(self.run_dir, first)
        from ..measure import provenance

        provenance.record(self.run_dir, self.scenario, first, speed=self.speed, tick_s=self.tick_s,
                          links=self.links_kind, duration_s=self.duration_s)
        if self.keep_awake:
            self._awake = CpuAwake().start()
            self.state.add_helpers(self._awake.pids)
        self.net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False, autoStaticArp=False)
        mark = self._end_phase("plan", t_start)
        names = self.node_names
        for i, name in enumerate(names):  # spawns every shell; finish_shells waits for them together
            role = "satellite" if i < self.n_satellites else self.scenario.ground[i - self.n_satellites].kind
            node = self.net.addHost(name, cls=Router, index=i, role=role, ip=None, mac=None, bulk=True)
            self.nodes[name] = node
            self.progress("starting nodes", i + 1, len(names))
        finish_shells(list(self.nodes.values()))
        for node in self.nodes.values():
            self.state.add_node(node)
        self.state.save()
        mark = self._end_phase("shells", mark)
        self.kernel = Kernel(self.nodes, names)
        self.kernel.configure_routers(range(len(names)), SYSCTLS + _daemon_sysctls(self.scenario))
        self.kernel.commit()
        self._end_phase("node config", mark)
        self.backend = make_backend(self.links_kind, self.run_id, self.scenario.seed,
                                    n_slots=max(4096, 2 * len(first.links)), log_dir=self.run_dir)
        self.backend.on_process = self._backend_process
        self.backend.start()
        self.state.set_backend(self.backend.name, self.backend.resources())
        for j, host in enumerate(self.scenario.hosts):
            router = names.index(host.attach)
            server = self.net.addHost(host.name, cls=Server, index=j, attach=router, lan=lan_network(j), ip=None,
                                      mac=None)
            self.servers[host.name] = server
            self.state.add_node(server)
            server.configDefault()
            ifname_r, ifname_s = ifname_for(host.name, 0), ifname_for(host.attach, 0)
            self.kernel.attach_server(router, server, ifname_r, ifname_s)
            self.nodes[host.attach].record_intf(ifname_r, server.gateway, 24, "")
            server.record_intf(ifname_s, server.loopback, 24)
        self.state.save()
        mark = time.monotonic()
        ever_up = np.flatnonzero(first.up.any(axis=0))
        created = []
        for k, li in enumerate(ever_up):
            created.append(self._ensure_link(first, int(li), bulk=True))
            self.progress("creating links", k + 1, len(ever_up))
        self.kernel.link_ends_bulk(created)
        self.kernel.commit()
        if created:  # new links start down until the first tick says otherwise
            slots = np.array([link.slot for link, _, _ in created])
            zeros = np.zeros((len(slots), 2))
            self.backend.apply(slots, zeros.astype(bool), zeros, zeros, zeros)
        self.state.save()
        self._end_phase("links", mark)
        self.state.set_backend(self.backend.name, self.backend.resources())
        if self.scenario.routing.uses_daemons:
            mark = time.monotonic()
            self._start_daemons(first)
            self._end_phase("routing daemons", mark)
            from ..routing.convergence import FibWatcher

            self.fib_watch = FibWatcher(self)  # records link events from the first tick on; started below
        self._started = True
        pairs = [(p.src, p.dst, p.rate_hz) for p in self.scenario.probes]
        if self._workload_plan and self.scenario.workload.ping_mesh:  # the ping mesh rides the probe pairs
            probed = {frozenset(pair[:2]) for pair in pairs}
            pairs += [(a, b, self.scenario.workload.ping_mesh.rate_hz) for a, b in self._workload_plan["mesh"]
                      if frozenset((a, b)) not in probed]
        if pairs:
            self.probes = ProbeSet(pairs, self)
        self._wall0 = time.monotonic()
        mark = time.monotonic()
        self.tick()  # installs the first state and all routes: set-up work, so the clock starts after it
        self._end_phase("first routes", mark)
        if self.probes:
            self.probes.start_responders(self)
        # The network's hundreds of thousands of long-lived objects (nodes, interfaces, sockets) would make every
        # full garbage collection walk them all, a 100 ms pause in a tick at shell1 size: they are frozen out of
        # the collector (gc.freeze); what ticks allocate is still collected.
        gc.collect()
        gc.freeze()
        self._wall0 = time.monotonic()
        self.state.set_clock(self._wall0, self.speed, self.start_utc)
        if self.fib_watch is not None:
            self.fib_watch.start()
        if self.probes:
            self.probes.start_probers(self, self.duration_s if self.duration_s is not None else 3600.0)
        if self._workload_plan:
            from .workload import WorkloadRunner

            self.workload = WorkloadRunner(self, self._workload_plan)
            self.workload.start()
        return self

    def stop(self) -> None:
        """Stop ticking and remove everything this run created; safe to call twice or after a failed start."""
        self._stop.set()
        if self.workload is not None:  # first: its jobs are stopped and their exit codes read while nodes exist
            try:
                self.workload_summary = self.workload.stop()
            except Exception as exc:  # a results problem must not leave namespaces behind
                log.error("stopping the workload failed: %s", exc)
            self.workload = None
        if self.probes and not self._recorder:
            self.probes.stop()
        if self.fib_watch is not None:
            self.fib_watch.stop()  # before the daemons go: their withdrawals are not convergence
        if self.daemons is not None:
            self.daemons.stop()
        if self._next_window and self._next_window.is_alive():
            self._next_window.join(timeout=30)
        if self._recorder:
            try:
                self._recorder.close(self)
                if self.fib_watch is not None:
                    self._recorder.summary["routing"] = {
                        "protocol": self.scenario.routing.protocol, "daemon": self.scenario.routing.daemon,
                        **self.fib_watch.finish(self.run_dir, self.run_dir / "probes.csv")}
            except Exception as exc:  # a report problem must not leave namespaces behind
                log.error("writing the run's results failed: %s", exc)
            self._recorder = None
        if self._oracle_proc is not None:
            self._oracle_proc.close()
            self._oracle_proc = None
        if self.kernel:
            self.kernel.close()
            self.kernel = None
        if self.net is not None:
            terminate_all(list(self.nodes.values()) + list(self.servers.values()))
            self.net = None
        if self.backend:
            self.backend.stop()
            self.backend = None
        if self._awake is not None:
            self._awake.stop()
            self._awake = None
        if self.state:
            run_state.teardown(self.state.data, quiet=True)
            self.state.remove()
            self.state = None

    # ------------------------------------------------------------------------------------------------- the clock
    def now_s(self) -> float:
        """Emulated seconds since the run's start time."""
        return 0.0 if self._wall0 is None else self.speed * (time.monotonic() - self._wall0)

    def mono_to_s(self, mono_ns: np.ndarray) -> np.ndarray:
        """Emulated seconds of CLOCK_MONOTONIC stamps (ns), as probes record them."""
        return self.speed * (np.asarray(mono_ns, dtype=float) * 1e-9 - self._wall0)

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

    def request_stop(self) -> None:
        self._stop.set()

    def _backend_process(self, pid: int, open_files: int) -> None:
        """A process the link backend started (a relay): its open-file limit, its CPU, the run's state file."""
        _raise_fd_limit(pid, open_files)
        if self._oracle_proc is not None:  # at scale: relays and oracle share a core, the driver has the others
            _pin_to_last_cpu(pid)
        self.state.set_backend(self.backend.name, self.backend.resources())

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
        tl, offset = self._window_at(t_s)
        up, delay = tl.state_at(t_s - offset)
        loss = np.zeros(len(up))
        rate = tl.rate_bps.astype(float).copy()
        cause = tl.cause[min(int((t_s - offset) / tl.step_s), len(tl.offsets_s) - 1)]
        self._apply_overrides(tl, t_s, up, delay, loss, rate)
        slots = self._tl_slots(tl)
        for li in np.flatnonzero(up & (slots < 0)):
            self._ensure_link(tl, int(li))
        self.kernel.commit()
        link_changes = self._apply_links(tl, t_s, slots, up, delay, loss, rate, cause)
        t1 = time.monotonic()
        route_changes = self._update_routes(tl, slots, up, delay)
        t2 = time.monotonic()
        if self.probes:
            self.probes.observe(t_s, self._routes, self._path_text)
        if self.workload is not None:
            self.workload.tick(t_s)
        cost = time.monotonic() - t0
        report = TickReport(len(self.ticks), t_s, cost, bool(self.ticks) and cost > self.tick_s, link_changes,
                            route_changes, links_s=t1 - t0, routes_s=t2 - t1)
        if report.overrun:
            log.warning("tick %d at t=%.1f s took %.1f ms (> %.0f ms)", report.index, t_s, cost * 1e3,
                        self.tick_s * 1e3)
        self.ticks.append(report)
        self._recorder.tick(report)
        self._maybe_plan_ahead(t_s)
        if report.index % max(1, int(round(1.0 / self.tick_s))) == 0:
            self._write_status(report)
            if self.daemons is not None:
                self.daemons.report_exits()  # a daemon that died mid-run is logged (with its log), once
        return report

    def _path_text(self, src: int, dst: int) -> str:
        from ..routing import oracle

        return ">".join(self.node_names[i] for i in oracle.path(self._routes, src, dst))

    def _write_status(self, report: TickReport) -> None:
        a = self._applied_state
        status = {"t_s": report.t_s, "tick": report.index, "links_created": len(self._slots),
                  "links_up": int((a["valid"] & a["up"]).sum()), "last_tick_ms": report.cost_s * 1e3,
                  "overruns": int(sum(t.overrun for t in self.ticks)),
                  "utc": (self.start_utc + dt.timedelta(seconds=report.t_s)).isoformat()}
        path = self.run_dir / "status.json"
        tmp = path.with_name("status.json.part")
        tmp.write_text(json.dumps(status))
        tmp.replace(path)

    def _tl_slots(self, tl: Timeline) -> np.ndarray:
        """Slot of each of the timeline's links (-1 where not created yet), kept up to date by _ensure_link."""
        slots = self._slot_maps.get(id(tl))
        if slots is None:
            slots = np.full(len(tl.links), -1, dtype=np.int64)
            for li in range(len(tl.links)):
                link = self._slots.get(self._pair(tl, li))
                if link is not None:
                    slots[li] = link.slot
            self._slot_maps[id(tl)] = slots
        return slots

    def _apply_links(self, tl, t_s, slots, up, delay, loss, rate, cause) -> int:
        """Send the links whose state differs from what the backend holds, in one batch; record up/down events."""
        li = np.flatnonzero(slots >= 0)
        s = slots[li]
        self._grow_applied(int(s.max()) + 1 if len(s) else 0)
        d = np.where(np.isnan(delay[li]), 0.0, delay[li])
        a = self._applied_state
        flipped = ~a["valid"][s] | (a["up"][s] != up[li])
        changed = (flipped | (np.abs(a["delay_s"][s] - d) > 1e-7) | (a["loss"][s] != loss[li])
                   | (a["rate_bps"][s] != rate[li]))
        for k in np.flatnonzero(flipped & (a["valid"][s] | up[li])):
            is_up = bool(up[li[k]])
            why = "" if is_up else (CAUSES[int(cause[li[k]])] if cause[li[k]] else "override")
            self._recorder.link_event(t_s, tl, int(li[k]), is_up, why, float(d[k]))
            if self.fib_watch is not None:
                self.fib_watch.link_event(t_s, "~".join(tl.node_names[x] for x in self._pair(tl, int(li[k]))), is_up)
        if not changed.any():
            return 0
        ch = np.flatnonzero(changed)
        a["valid"][s[ch]] = True
        a["up"][s[ch]] = up[li[ch]]
        a["delay_s"][s[ch]] = d[ch]
        a["loss"][s[ch]] = loss[li[ch]]
        a["rate_bps"][s[ch]] = rate[li[ch]]
        two = lambda x: np.repeat(np.asarray(x)[:, None], 2, axis=1)  # noqa: E731
        self.backend.apply(s[ch], two(up[li[ch]]), two(d[ch]), two(loss[li[ch]]), two(rate[li[ch]]))
        return int(flipped.sum())

    def _grow_applied(self, n: int) -> None:
        a = self._applied_state
        if len(a["up"]) >= n:
            return
        size = max(n, 2 * len(a["up"]), 256)
        for key, dtype in (("valid", bool), ("up", bool), ("delay_s", float), ("loss", float),
                           ("rate_bps", float)):
            grown = np.zeros(size, dtype=dtype)
            grown[:len(a[key])] = a[key]
            a[key] = grown

    def _update_routes(self, tl, slots, up, delay) -> int:
        """Recompute the oracle's shortest-delay routes over the created, up links; install only the changes.

        In ``background`` mode: install the changes of a computation that has finished (if any), then hand the
        process this tick's link states if it is idle; the first table (start-up) is waited for.
        """
        from ..routing import oracle

        usable = up & (slots >= 0)
        d = np.where(np.isnan(delay), 0.0, delay)
        if self._oracle_proc is None:
            routes = oracle.compute(len(self.node_names), tl.links.a, tl.links.b, usable, d)
            if self.daemons is not None:  # the daemons route; the oracle is the reference for probes and stretch
                self._routes, self._route_tl = routes, tl
                return 0
            src, dst = oracle.diff(self._routes, routes)
            self._routes = routes
            self._route_tl = tl
            li = routes.link[src, dst]
            changes = self._install_routes(src, dst, np.where(li >= 0, slots[np.maximum(li, 0)], -1))
            self._drain_routes()
            return changes
        entered = time.monotonic()  # the budget covers taking the result in and queueing it, not only installing
        proc, t_s = self._oracle_proc, self.now_s()
        result = proc.poll(timeout_s=600.0 if self._routes is None else 0.0)
        if result is None and not proc.busy:
            proc.submit(t_s, tl.links.a, tl.links.b, usable, d, slots)
            if self._routes is None:
                result = proc.poll(timeout_s=600.0)
        first = self._routes is None
        deadline = None if first else entered + self.ROUTE_BUDGET * self.tick_s
        if result is None:
            self._drain_routes(deadline)
            return 0
        if self._routes is None:
            n = len(self.node_names)
            self._routes = oracle.Routes(next_hop=np.full((n, n), -1, np.int32), link=np.full((n, n), -1, np.int32),
                                         delay_s=np.full((n, n), np.inf), hops=np.full((n, n), -1, np.int32))
        elif self._lag_from is None:
            self._lag_from = result.t_s  # recorded when its last change is installed (_drain_routes)
        self._routes.next_hop[result.src, result.dst] = result.next_hop
        self._routes.link[result.src, result.dst] = result.slot  # slots, not link indices, in this mode
        if not proc.busy:  # start the next computation at once, from this tick's states
            proc.submit(t_s, tl.links.a, tl.links.b, usable, d, slots)
        if first:
            changes = self._install_aggregated()
        else:
            changes = self._install_routes(result.src, result.dst, result.slot)
        self._drain_routes(deadline)
        return changes

    def _install_aggregated(self) -> int:
        """The first table of background mode as aggregated prefixes (:func:`oracle.aggregate`), ~4x fewer routes.

        Later changes are /32 routes (or /32 ``unreachable`` routes for withdrawals) over these, so forwarding
        to every node is exactly the table's. Addresses of the loopback pool that belong to no node may fall
        under an aggregate. Destinations with server LANs behind them keep their own /32 and /24 routes.
        """
        from ..routing import oracle

        if self.daemons is not None:  # routing daemons install the routes
            return 0
        n = len(self.node_names)
        bits = max(1, int(n).bit_length())  # offsets 1..n of the loopback pool
        values = np.full((n, 1 << bits), oracle.DONT_CARE, np.int64)
        values[:, 1:n + 1] = self._routes.link  # slots; -1 where unreachable
        values[np.arange(n), np.arange(n) + 1] = oracle.DONT_CARE  # a node's own loopback is local
        lans = np.fromiter(self.kernel.lans, np.int64) if self.kernel.lans else np.zeros(0, np.int64)
        values[:, lans + 1] = -10 - lans  # unique: never merged, never emitted
        row, first, host_bits, slot = oracle.aggregate(values, bits)
        order = np.argsort(row, kind="stable")
        row, first, host_bits, slot = row[order], first[order], host_bits[order], slot[order]
        end_a, ifname_a, ifname_b = self._slot_end_arrays()
        at_a = end_a[slot] == row
        via = (int(LINK_POOL.network_address) + 2 * slot + np.where(at_a, 1, 0)).astype(np.uint32)
        dev = np.where(at_a, ifname_a[slot], ifname_b[slot])
        bounds = np.flatnonzero(np.diff(row)) + 1
        for lo, hi in zip(np.concatenate([[0], bounds]), np.concatenate([bounds, [len(row)]])):
            self._route_queue.append((int(row[lo]), ("prefixes", first[lo:hi], host_bits[lo:hi], via[lo:hi],
                                                     dev[lo:hi])))
        if len(lans):
            src, dst = np.nonzero(np.isin(np.arange(n), lans)[None, :] & (self._routes.link >= 0))
            self._install_routes(src, dst, self._routes.link[src, dst])
        self.route_prefixes = len(row)
        return int((self._routes.link >= 0).sum())

    def _install_routes(self, src, dst, slot) -> int:
        """Install the routes from nodes ``src`` to ``dst`` over link slots ``slot`` (-1: withdraw the route).

        One numpy-packed batch per source node; withdrawals and destinations with server LANs behind them go
        entry by entry (:meth:`Kernel.routes`).
        """
        if len(src) == 0 or self.daemons is not None:
            return 0
        special = slot < 0
        if self.kernel.lans:
            special |= np.isin(dst, np.fromiter(self.kernel.lans, np.int64))
        per_node: dict[int, list] = {}
        lan_dsts = self.kernel.lans
        unreachable: dict[int, list] = {}
        for k in np.flatnonzero(special):
            s_, d_ = int(src[k]), int(dst[k])
            if slot[k] < 0:
                if self._oracle_proc is not None and d_ not in lan_dsts:  # over an aggregate: /32 unreachable
                    unreachable.setdefault(s_, []).append(d_)
                else:
                    per_node.setdefault(s_, []).append((d_, None))
                continue
            a, ifname_a, ifname_b = self._slot_ends[int(slot[k])]
            ip_a, ip_b = link_ips(int(slot[k]))
            link = self._slots_by_index[int(slot[k])]
            hop = (ip_b, ifname_a, link.b) if a == s_ else (ip_a, ifname_b, link.a)
            per_node.setdefault(s_, []).append((d_, hop))
        queue, chunk = self._route_queue, self.ROUTE_CHUNK
        for node, entries in per_node.items():
            queue.extend((node, entries[c:c + chunk]) for c in range(0, len(entries), chunk))
        for node, dsts in unreachable.items():
            queue.extend((node, ("unreachable", dsts[c:c + chunk])) for c in range(0, len(dsts), chunk))
        keep = np.flatnonzero(~special)
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
                    queue.append((int(s_arr[lo]), ("routes", d_arr[c:e], via[c:e], dev[c:e])))
        self._recorder.route_changes(self.now_s(), len(src))
        return int(len(src))

    def _slot_end_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per link slot: node at end a, interface name at a, at b (numpy; rebuilt only when links were added)."""
        if self._slot_end_cache is None or len(self._slot_end_cache[0]) != len(self._slot_ends):
            a, ifa, ifb = zip(*self._slot_ends) if self._slot_ends else ((), (), ())
            self._slot_end_cache = (np.array(a, np.int64), np.array(ifa, object), np.array(ifb, object))
        return self._slot_end_cache

    def _drain_routes(self, deadline: float | None = None) -> None:
        """Install queued per-node route changes, one namespace at a time, until done or ``deadline`` (monotonic).

        Background mode spreads a large update over ticks this way (the rest waits for the next tick, in order,
        so a node's newer changes never overtake older ones); tick mode drains everything at once.
        """
        queue = self._route_queue
        done = 0
        while queue:
            node, work = queue[0]
            n = len(work) if isinstance(work, list) else len(work[1])
            began = time.monotonic()
            if deadline is not None and done and began + self._item_cost_s + n * self._route_cost_s > deadline:
                break  # would not fit: the next tick starts with it
            queue.popleft()
            if isinstance(work, list):
                self.kernel.routes(node, work)
            elif work[0] == "prefixes":
                self.kernel.prefixes_bulk(node, *work[1:])
            elif work[0] == "unreachable":
                self.kernel.unreachable(node, work[1])
            else:
                self.kernel.routes_bulk(node, *work[1:])
            self.kernel.commit()
            done += 1
            if deadline is not None:
                self._learn_item_cost(n, time.monotonic() - began)
        if not queue and self._lag_from is not None:
            self.route_lags.append(self.now_s() - self._lag_from)
            self._lag_from = None

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

    def _ensure_link(self, tl: Timeline, li: int, bulk: bool = False):
        """Create link ``li`` of ``tl`` if it does not exist yet; return its LinkAddress.

        With ``bulk`` (start-up) its addresses, neighbours and initial state are left to the caller, and the
        return value is ``(link, mac_a, mac_b)`` for :meth:`Kernel.link_ends_bulk`.
        """
        pair = self._pair(tl, li)
        link = self._slots.get(pair)
        if link is not None:
            return link
        link = LinkAddress.plan(len(self._slots), pair[0], pair[1], self.node_names)
        na, nb = self.nodes[self.node_names[pair[0]]], self.nodes[self.node_names[pair[1]]]
        mac_a, mac_b = self.backend.add(link, na.pid, nb.pid)
        self._slots[pair] = link
        for _, window in self._windows:
            slots = self._slot_maps.get(id(window))
            if slots is not None:
                hit = np.flatnonzero((window.links.a == pair[0]) & (window.links.b == pair[1]))
                slots[hit] = link.slot
        na.record_intf(link.ifname_a, link.ip_a, 31, mac_a)
        nb.record_intf(link.ifname_b, link.ip_b, 31, mac_b)
        self.state.add_link(link, f"{self.node_names[pair[0]]}~{self.node_names[pair[1]]}")
        self._slot_ends.append((link.a, link.ifname_a, link.ifname_b))
        self._slots_by_index.append(link)
        if bulk:
            return link, mac_a, mac_b
        self.kernel.link_ends(link, mac_a, mac_b)
        if self.daemons is not None:
            self._daemons_link_added(link, tl, li)
        # A new link starts down until the next apply says otherwise.
        self.backend.apply(np.array([link.slot]), np.zeros((1, 2), bool), np.zeros((1, 2)), np.zeros((1, 2)),
                           np.zeros((1, 2)))
        return link

    # ------------------------------------------------------------------------------------------------- daemons
    def _link_cost(self, tl: Timeline, li: int) -> int:
        """A link's metric for the daemons: 10 per hop, or its mean light time over the window in 10 us units."""
        if self.scenario.routing.cost == "hops":
            return 10
        d = tl.delay_s[:, li]
        d = d[np.isfinite(d)]
        return max(1, int(round(float(d.mean()) * 1e5))) if len(d) else 1000

    def _start_daemons(self, tl: Timeline) -> None:
        """Start the scenario's routing daemons on every router, configured for the links created so far."""
        from ..routing.daemons import DaemonSet, LinkSpec, NodeSpec

        cfg = self.scenario.routing
        self.daemons = DaemonSet(cfg, self.run_id, self.run_dir, self.scenario.name, state=self.state,
                                 config_hook=self._daemon_config_hook)
        specs = {name: NodeSpec(name, i, self.nodes[name].role, self.nodes[name].loopback, [], [])
                 for i, name in enumerate(self.node_names)}
        for host in self.scenario.hosts:
            specs[host.attach].lans.append(ifname_for(host.name, 0))
            specs[host.attach].lan_prefixes.append(self.servers[host.name].lan)
        costs = {}
        for li in range(len(tl.links)):
            costs[self._pair(tl, li)] = self._link_cost(tl, li)
        for (ia, ib), link in sorted(self._slots.items(), key=lambda kv: kv[1].slot):
            cost = costs.get((ia, ib), 10)
            specs[self.node_names[ia]].links.append(LinkSpec(link.ifname_a, self.node_names[ib], cost, link.ip_b))
            specs[self.node_names[ib]].links.append(LinkSpec(link.ifname_b, self.node_names[ia], cost, link.ip_a))
        self.daemons.start(self.nodes, specs, self.n_satellites)

    def _daemons_link_added(self, link, tl: Timeline, li: int) -> None:
        from ..routing.daemons import LinkSpec

        cost = self._link_cost(tl, li)
        na, nb = self.node_names[link.a], self.node_names[link.b]
        self.daemons.link_added(na, LinkSpec(link.ifname_a, nb, cost, link.ip_b))
        self.daemons.link_added(nb, LinkSpec(link.ifname_b, na, cost, link.ip_a))

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
            if self.daemons is not None:
                self.daemons.check()
        return None

    # ------------------------------------------------------------------------------------------------- overrides
    def override(self, a: str, b: str, *, up: bool | None = None, loss: float | None = None,
                 rate_bps: float | None = None, delay_s: float | None = None, for_s: float | None = None) -> None:
        """Force a link's state over the plan (both directions), for ``for_s`` emulated seconds or until cleared."""
        key = self._node_pair(a, b)
        # The window starts at the tick that applies it, so that a 1 s outage lasts 1 s of applied state.
        self.overrides[key] = Override(up, loss, rate_bps, delay_s, None, for_s)

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

    # ------------------------------------------------------------------------------------------------- plans
    def _plan_window(self, offset_s: float) -> Timeline:
        start = self.start_utc + dt.timedelta(seconds=offset_s)
        return tl_mod.plan(self.scenario, start=start, duration_s=self.window_s, step_s=self.plan_step_s)

    def _window_at(self, t_s: float) -> tuple[Timeline, float]:
        for offset, tl in reversed(self._windows):
            if offset <= t_s:
                if t_s - offset <= tl.offsets_s[-1] or self._next_window is None:
                    return tl, offset
                break
        if self._next_window is not None:
            self._next_window.join()
            self._next_window = None
            return self._window_at(t_s)
        return self._windows[-1][1], self._windows[-1][0]

    def _maybe_plan_ahead(self, t_s: float) -> None:
        offset, tl = self._windows[-1]
        if self._next_window is None and t_s > offset + 0.7 * tl.offsets_s[-1]:
            nxt = offset + tl.offsets_s[-1]

            def work():
                self._windows.append((nxt, self._plan_window(nxt)))

            self._next_window = threading.Thread(target=work, name="lasernet-plan", daemon=True)
            self._next_window.start()

    # ------------------------------------------------------------------------------------------------- queries
    def timeline_at(self, t_s: float | None = None) -> tuple[Timeline, float]:
        return self._window_at(self.now_s() if t_s is None else t_s)

    def path(self, a: str, b: str) -> tuple[list[str], float]:
        """The current oracle path from node ``a`` to ``b`` (node names) and its one-way light time (inf if none)."""
        from ..routing import oracle

        ia, ib = self._node_pair(a, b)
        if self._routes is None:
            return [], math.inf
        nodes = oracle.path(self._routes, ia, ib)
        if self._oracle_proc is None:
            return [self.node_names[i] for i in nodes], float(self._routes.delay_s[ia, ib])
        # background mode: the table holds link slots; add up the delays the backend has now
        slots = [int(self._routes.link[u, ib]) for u in nodes[:-1]]
        delay = float(self._applied_state["delay_s"][slots].sum()) if nodes else math.inf
        return [self.node_names[i] for i in nodes], delay

    def link_table(self) -> list[dict]:
        """Live state of every created link: names, up, delay, loss, rate."""
        out = []
        a = self._applied_state
        for (ia, ib), link in sorted(self._slots.items(), key=lambda kv: kv[1].slot):
            ok = link.slot < len(a["valid"]) and a["valid"][link.slot]
            out.append({"link": f"{self.node_names[ia]}~{self.node_names[ib]}", "slot": link.slot,
                        "kind": "isl" if max(ia, ib) < self.n_satellites else "gsl",
                        "up": bool(ok and a["up"][link.slot]),
                        "delay_ms": float(a["delay_s"][link.slot]) * 1e3 if ok else math.nan,
                        "loss": float(a["loss"][link.slot]) if ok else 0.0,
                        "rate_bps": float(a["rate_bps"][link.slot]) if ok else 0.0})
        return out
