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

What the run created (node PIDs and their namespace inodes, the relay, files) is written to a state file as it
is created, so that ``lasernet down`` can remove exactly that even after the driver was killed with SIGKILL.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .. import timeline as tl_mod
from ..scenario import Scenario, ScenarioError
from ..timeline import CAUSES, Timeline
from . import state as run_state
from .addressing import LinkAddress, ifname_for, lan_network
from .kernel import Kernel
from .links import LinkBackend, choose_backend, make_backend
from .network import Router, Server

log = logging.getLogger("lasernet")

Progress = Callable[[str, int, int], None]


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


class Emulation:
    """A running (or ready to run) emulation of one scenario (see the module docstring)."""

    def __init__(self, scenario: Scenario, *, links: str = "auto", speed: float = 1.0, tick_s: float = 0.1,
                 start: dt.datetime | None = None, duration_s: float | None = None, window_s: float = 600.0,
                 plan_step_s: float | None = None, run_dir: str | Path | None = None,
                 progress: Progress | None = None):
        if speed <= 0 or tick_s <= 0:
            raise ScenarioError("lasernet up", "", f"needs speed > 0 and tick_s > 0, got {speed} and {tick_s}")
        self.scenario = scenario
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
        self._recorder = None
        self._routes = None  # the oracle's table now installed
        self._route_tl = None
        self.probes = None
        self._stop = threading.Event()
        self._wall0 = None
        self.ticks: list[TickReport] = []
        self._started = False

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

        first = self._plan_window(0.0)  # validates the scenario fully before anything is created
        self.links_kind = choose_backend(self.links_kind)  # so does the link backend (BackendUnavailable)
        self._windows.append((0.0, first))
        self.node_names = first.node_names
        self.n_satellites = first.n_satellites
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.state = run_state.RunState.create(self.run_id, self.run_dir, self.scenario)
        self._recorder = Recorder(self.run_dir, first)
        self.net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False, autoStaticArp=False)
        names = self.node_names
        for i, name in enumerate(names):
            role = "satellite" if i < self.n_satellites else self.scenario.ground[i - self.n_satellites].kind
            node = self.net.addHost(name, cls=Router, index=i, role=role, ip=None, mac=None)
            self.nodes[name] = node
            self.state.add_node(node)
            self.progress("starting nodes", i + 1, len(names))
        self.state.save()
        for node in self.nodes.values():
            node.configDefault()
        self.backend = make_backend(self.links_kind, self.run_id, self.scenario.seed,
                                    n_slots=max(4096, 2 * len(first.links)), log_dir=self.run_dir)
        self.backend.start()
        self.state.set_backend(self.backend.name, self.backend.resources())
        self.kernel = Kernel(self.nodes, names)
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
        ever_up = np.flatnonzero(first.up.any(axis=0))
        for k, li in enumerate(ever_up):
            self._ensure_link(first, int(li))
            self.progress("creating links", k + 1, len(ever_up))
        self.kernel.commit()
        self.state.set_backend(self.backend.name, self.backend.resources())
        self._started = True
        if self.scenario.probes:
            self.probes = ProbeSet([(p.src, p.dst, p.rate_hz) for p in self.scenario.probes], self)
        self._wall0 = time.monotonic()
        self.tick()  # installs the first state and all routes: set-up work, so the clock starts after it
        if self.probes:
            self.probes.start_responders(self)
        self._wall0 = time.monotonic()
        self.state.set_clock(self._wall0, self.speed, self.start_utc)
        if self.probes:
            self.probes.start_probers(self, self.duration_s if self.duration_s is not None else 3600.0)
        return self

    def stop(self) -> None:
        """Stop ticking and remove everything this run created; safe to call twice or after a failed start."""
        self._stop.set()
        if self.probes and not self._recorder:
            self.probes.stop()
        if self._next_window and self._next_window.is_alive():
            self._next_window.join(timeout=30)
        if self._recorder:
            try:
                self._recorder.close(self)
            except Exception as exc:  # a report problem must not leave namespaces behind
                log.error("writing the run's results failed: %s", exc)
            self._recorder = None
        if self.kernel:
            self.kernel.close()
            self.kernel = None
        if self.net is not None:
            for node in list(self.nodes.values()) + list(self.servers.values()):
                node.terminate()
            self.net = None
        if self.backend:
            self.backend.stop()
            self.backend = None
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
        route_changes = self._update_routes(tl, slots, up, delay)
        if self.probes:
            self.probes.observe(t_s, self._routes, self._path_text)
        cost = time.monotonic() - t0
        report = TickReport(len(self.ticks), t_s, cost, bool(self.ticks) and cost > self.tick_s, link_changes,
                            route_changes)
        if report.overrun:
            log.warning("tick %d at t=%.1f s took %.1f ms (> %.0f ms)", report.index, t_s, cost * 1e3,
                        self.tick_s * 1e3)
        self.ticks.append(report)
        self._recorder.tick(report)
        self._maybe_plan_ahead(t_s)
        if report.index % max(1, int(round(1.0 / self.tick_s))) == 0:
            self._write_status(report)
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
        """Recompute the oracle's shortest-delay routes over the created, up links; install only the changes."""
        from ..routing import oracle

        usable = up & (slots >= 0)
        d = np.where(np.isnan(delay), 0.0, delay)
        routes = oracle.compute(len(self.node_names), tl.links.a, tl.links.b, usable, d)
        src, dst = oracle.diff(self._routes, routes)
        self._routes = routes
        self._route_tl = tl
        if len(src) == 0:
            return 0
        per_node: dict[int, list] = {}
        for s_, d_ in zip(src.tolist(), dst.tolist()):
            li = int(routes.link[s_, d_])
            if li < 0:
                per_node.setdefault(s_, []).append((d_, None))
                continue
            link = self._slots[self._pair(tl, li)]
            if link.a == s_:
                hop = (link.ip_b, link.ifname_a, link.b)
            else:
                hop = (link.ip_a, link.ifname_b, link.a)
            per_node.setdefault(s_, []).append((d_, hop))
        for node, entries in per_node.items():
            self.kernel.routes(node, entries)
        self.kernel.commit()
        self._recorder.route_changes(self.now_s(), len(src))
        return int(len(src))

    # ------------------------------------------------------------------------------------------------- links
    @staticmethod
    def _pair(tl: Timeline, li: int) -> tuple[int, int]:
        return int(tl.links.a[li]), int(tl.links.b[li])

    def _ensure_link(self, tl: Timeline, li: int) -> LinkAddress:
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
        self.kernel.link_ends(link, mac_a, mac_b)
        self.state.add_link(link, tl.links.names[li])
        # A new link starts down until the next apply says otherwise.
        self.backend.apply(np.array([link.slot]), np.zeros((1, 2), bool), np.zeros((1, 2)), np.zeros((1, 2)),
                           np.zeros((1, 2)))
        return link

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
        return [self.node_names[i] for i in nodes], float(self._routes.delay_s[ia, ib])

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
