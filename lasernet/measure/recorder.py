"""The run directory's record of what happened: events, tick costs and probe results, as CSV files.

``events.csv`` (``time_utc,t_s,kind,what,a,b,event,cause,delay_ms,detail``) holds link up/down changes as the
driver applied them, route-change counts per tick and the servers' power states and restarts (kind ``server``,
detail the CPU quota applied); ``ticks.csv`` holds each tick's cost (and the part of it spent on links and on
routes) and whether it overran; ``probes.csv`` (written at the end) holds every probe: send time, pair, measured
RTT, the RTT the plan predicts along the oracle path at that time, the path, and the one-way forward delay
measured (both stamps on CLOCK_MONOTONIC) and predicted at that tick and at the tick before. Rows are flushed as
they are written, so that a run killed half-way still leaves what it recorded, and a process may follow
``events.csv`` as it grows. Each event row is also handed, as an :class:`Event`, to the callbacks a program gave
:meth:`lasernet.Emulation.on_event`: an upset, a manoeuvre's links going down, a server frozen, as it is applied.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..topology import KINDS

log = logging.getLogger("lasernet")


class Event(NamedTuple):
    """One row of ``events.csv`` as it is written, for :meth:`lasernet.Emulation.on_event` callbacks: ``t_s``
    emulated seconds since the start; ``kind`` (``isl``, ``gsl``, ... for links, ``server``, ``site``, ``route``),
    ``what``, ``a``, ``b``, ``event``, ``cause``, ``delay_ms`` and ``detail`` as in the file (text, "" if none)."""

    t_s: float
    kind: str
    what: str
    a: str
    b: str
    event: str
    cause: str
    delay_ms: str
    detail: str


class Recorder:
    def __init__(self, run_dir: Path, first_timeline, listeners: list | None = None):
        self.run_dir = Path(run_dir)
        self.start_utc = first_timeline.start_utc
        self.listeners = listeners if listeners is not None else []  # called with each Event as it is written
        self._events_f = (self.run_dir / "events.csv").open("w", newline="")
        self._events = csv.writer(self._events_f)
        self._events.writerow(["time_utc", "t_s", "kind", "what", "a", "b", "event", "cause", "delay_ms", "detail"])
        self._ticks_f = (self.run_dir / "ticks.csv").open("w", newline="")
        self._ticks = csv.writer(self._ticks_f)
        self._machines = 0  # a cluster run: each machine's apply time per tick (set_machines)
        self._ticks.writerow(["tick", "t_s", "cost_ms", "overrun", "link_changes", "route_changes", "links_ms",
                              "routes_ms"])
        self.summary: dict = {}

    def _when(self, t_s: float) -> str:
        moment = self.start_utc + dt.timedelta(seconds=t_s)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def _event(self, t_s: float, *fields) -> None:
        """Write one row of events.csv (flushed: a run killed half-way keeps it) and hand it to the listeners;
        a listener that raises is logged and dropped, never the tick's problem."""
        self._events.writerow([self._when(t_s), f"{t_s:.3f}", *fields])
        self._events_f.flush()
        if self.listeners:
            event = Event(t_s, *(str(f) for f in fields))
            for fn in list(self.listeners):
                try:
                    fn(event)
                except Exception as exc:
                    log.error("an on_event callback raised %s: %s; it gets no more events", type(exc).__name__, exc)
                    self.listeners.remove(fn)

    def link_event(self, t_s: float, tl, li: int, up: bool, cause: str, delay_s: float) -> None:
        a, b = tl.node_names[tl.links.a[li]], tl.node_names[tl.links.b[li]]
        self._event(t_s, KINDS[tl.links.kind[li]], f"{a}~{b}", a, b, "up" if up else "down", cause,
                    "" if math.isnan(delay_s) else f"{delay_s * 1e3:.3f}", "")

    def bearer_event(self, t_s: float, tl, li: int, rf: bool, cause: str, delay_s: float) -> None:
        """A ground link that stays up moved to its station's RF fallback (event ``rf``, cause what blocks the
        optical link) or back to the laser (event ``optical``)."""
        a, b = tl.node_names[tl.links.a[li]], tl.node_names[tl.links.b[li]]
        self._event(t_s, KINDS[tl.links.kind[li]], f"{a}~{b}", a, b, "rf" if rf else "optical", cause,
                    "" if math.isnan(delay_s) else f"{delay_s * 1e3:.3f}", "")

    def site_event(self, t_s: float, site: str, station: str, previous: str) -> None:
        """The station serving a diversity group changed (event ``serve``, a the station, b the one before) or
        none serves it (event ``unserved``)."""
        self._event(t_s, "site", site, station, previous, "serve" if station else "unserved", "", "", "")

    def server_event(self, t_s: float, name: str, attach: str, event: str, cause: str, detail: str) -> None:
        """A server's power state applied (event ``nominal``/``throttled``/``off``, cause ``power``, detail the CPU
        quota) or its restart by an upset (event ``restart``, cause ``upset``)."""
        self._event(t_s, "server", name, name, attach, event, cause, "", detail)

    def route_changes(self, t_s: float, count: int) -> None:
        self._event(t_s, "route", "", "", "", "change", "", "", count)

    def set_machines(self, n: int) -> None:
        """A cluster run over ``n`` machines: ``ticks.csv`` gets ``apply_ms_m<k>``, each machine's own time for
        its tick message (before the first tick is written)."""
        self._machines = n
        self._ticks_f.seek(0)
        self._ticks_f.truncate()
        self._ticks.writerow(["tick", "t_s", "cost_ms", "overrun", "link_changes", "route_changes", "links_ms",
                              "routes_ms"] + [f"apply_ms_m{k}" for k in range(n)])

    def tick(self, report) -> None:
        row = [report.index, f"{report.t_s:.3f}", f"{report.cost_s * 1e3:.3f}", int(report.overrun),
               report.link_changes, report.route_changes, f"{report.links_s * 1e3:.3f}", f"{report.routes_s * 1e3:.3f}"]
        if self._machines:
            row += [f"{x * 1e3:.3f}" for x in report.machine_apply_s]
        self._ticks.writerow(row)
        if report.index % 10 == 0:
            self._ticks_f.flush()

    def write_probes(self, rows: list[dict]) -> Path:
        path = self.run_dir / "probes.csv"
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["time_utc", "t_s", "pair", "seq", "measured_rtt_ms", "predicted_rtt_ms", "path",
                        "measured_fwd_ms", "predicted_fwd_ms", "predicted_fwd_prev_tick_ms"])
            ms = lambda x: "" if x is None else f"{x * 1e3:.4f}"  # noqa: E731
            for r in rows:
                w.writerow([self._when(r["t_s"]), f"{r['t_s']:.4f}", r["pair"], r["seq"], ms(r["measured_rtt_s"]),
                            ms(r["predicted_rtt_s"]), r["path"], ms(r.get("measured_fwd_s")),
                            ms(r.get("predicted_fwd_s")), ms(r.get("predicted_fwd_prev_tick_s"))])
        return path

    def close(self, emulation=None) -> None:
        if emulation is not None and getattr(emulation, "probes", None):
            emulation.probes.finish(emulation, self)
        for f in (self._events_f, self._ticks_f):
            if not f.closed:
                f.close()
        costs = np.array([t.cost_s for t in emulation.ticks]) if emulation is not None and emulation.ticks else None
        if costs is not None and len(costs):
            self.summary["ticks"] = {"count": int(len(costs)), "p50_ms": float(np.percentile(costs, 50) * 1e3),
                                     "p99_ms": float(np.percentile(costs, 99) * 1e3),
                                     "max_ms": float(costs.max() * 1e3),
                                     "overruns": int(sum(t.overrun for t in emulation.ticks))}
