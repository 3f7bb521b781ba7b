"""What the browser view draws at one instant: the nodes and their places, the links a run has and their state.

A view of a constellation needs two kinds of data. Some never change during a run: the node names, which are
satellites and which ground sites (and of what kind), where the sites are, the run's start time. That is the
:class:`Scene`, sent to a page once. The rest is a *frame*: emulated time, every satellite's subpoint (geocentric
latitude and longitude, from SGP4 at ``start + t``, exactly as the plan computes them), its visible fraction of the
solar disc (1 sunlit, 0 in the umbra, between in the penumbra), the subsolar point (the Earth's night side is the
hemisphere facing away from it), and the state of every link the run has: up or down, and the one-way delay of
each link that is up.

"The links a run has" are the links the driver created (a link is created the first time it comes up), in the
order it created them: a :class:`LinkList` (node index pairs) that only grows, so that a page keeps it and hears
only about additions (its ``version`` is its length). A frame then names the up links by their index in that list.

Live, the driver sends the link list's additions and each frame's arrays (:mod:`lasernet.emulation.webfeed`);
replayed, :class:`ReplayRun` rebuilds both from a run directory: the links from the copy of the run's state file
(``state.json``: every link the driver created, by slot), their states from ``events.csv`` (what it applied, outages
injected by a workload or a test included, so the replay shows what happened, not just the plan) and ``plan.npz``
(the delays and illumination between events), with the satellites propagated anew from the run's copy of its
scenario. The oracle paths a replay shows are computed on the replayed state (:func:`lasernet.routing.oracle.compute`).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import geometry, skydata
from ..errors import LasernetError
from ..measure.plots import lonlat_deg
from ..orbits import build_satellites

#: Frames carry angles rounded to this many decimals (1e-3 deg is ~110 m on the ground, a fraction of a pixel).
ANGLE_DECIMALS = 3


class ReplayError(LasernetError):
    """The directory cannot be replayed (the CLI prints it on one line, exit code 2)."""


@dataclass
class LinkList:
    """The links a run has, in creation order: node indices ``a[i]``, ``b[i]``; ``isl[i]``: between satellites."""

    a: list[int] = field(default_factory=list)
    b: list[int] = field(default_factory=list)
    isl: list[bool] = field(default_factory=list)

    @property
    def version(self) -> int:
        return len(self.a)

    def extend(self, pairs, n_satellites: int) -> None:
        for a, b in pairs:
            self.a.append(int(a))
            self.b.append(int(b))
            self.isl.append(max(int(a), int(b)) < n_satellites)

    def message(self, since: int = 0) -> dict:
        """The page's ``links`` message: the links from index ``since`` on."""
        return {"type": "links", "version": self.version, "since": since, "a": self.a[since:],
                "b": self.b[since:], "isl": self.isl[since:]}


class Scene:
    """The constant part of a view (see the module docstring) and the satellites to place in every frame."""

    def __init__(self, scenario, start_utc: dt.datetime, node_names, n_satellites: int):
        self.scenario_name = scenario.name
        self.start_utc = start_utc
        self.node_names = tuple(node_names)
        self.n_satellites = int(n_satellites)
        self.satellites = build_satellites(scenario)
        if tuple(self.satellites.names) != self.node_names[:self.n_satellites]:
            raise ValueError("the scene's satellites are not the run's first nodes in the same order")
        sites = {g.name: g for g in scenario.ground}
        self.nodes = [{"name": n, "kind": "satellite"} for n in self.node_names[:self.n_satellites]]
        for name in self.node_names[self.n_satellites:]:
            g = sites[name]
            self.nodes.append({"name": name, "kind": g.kind, "lat": g.lat_deg, "lon": g.lon_deg})

    def message(self, live: bool, duration_s: float | None, speed: float) -> dict:
        """The page's ``scene`` message."""
        return {"type": "scene", "scenario": self.scenario_name, "start_utc": self.start_utc.isoformat(),
                "n_satellites": self.n_satellites, "nodes": self.nodes, "live": live,
                "duration_s": duration_s, "speed": speed}

    def frame(self, t_s: float, up_index: np.ndarray, up_delay_s: np.ndarray,
              illumination: np.ndarray | None, links_version: int) -> dict:
        """The page's ``frame`` message at emulated ``t_s``: ``up_index`` (indices into the link list of the links
        up) and their one-way delays; ``illumination`` per satellite (None: unknown, drawn as sunlit)."""
        when = self.start_utc + dt.timedelta(seconds=float(t_s))
        t = skydata.times(when, np.zeros(1))
        lon, lat = lonlat_deg(self.satellites.positions_km(t)[0])  # geocentric, as the static maps draw them
        sun_lat, sun_lon = geometry.subsolar_point_deg(geometry.sun_itrs_km(t)[0])
        illum = (np.ones(self.n_satellites) if illumination is None else np.asarray(illumination, dtype=float))
        return {"type": "frame", "t_s": round(float(t_s), 3),
                "utc": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "subsolar": [round(float(sun_lat), 2), round(float(sun_lon), 2)],
                "lat": np.round(lat, ANGLE_DECIMALS).tolist(), "lon": np.round(lon, ANGLE_DECIMALS).tolist(),
                "sunlit": np.round(illum, 2).tolist(), "links_version": int(links_version),
                "up": np.asarray(up_index, dtype=int).tolist(),
                "delay_ms": np.round(np.asarray(up_delay_s, dtype=float) * 1e3, 3).tolist()}


class ReplayRun:
    """A finished run, read back from its directory for the view: the scene, the link list and the state at any
    instant (see the module docstring). Raises :class:`ReplayError` for a directory that is not a run's."""

    def __init__(self, run_dir: str | Path):
        from ..spec.scenario import load_scenario
        from ..timeline import Timeline

        self.run_dir = Path(run_dir)
        info_path = self.run_dir / "run.json"
        if not info_path.is_file():
            raise ReplayError(f"{self.run_dir}: no run.json: not a lasernet run directory (give the directory "
                              f"`lasernet up` printed, e.g. runs/<run-id>)")
        info = json.loads(info_path.read_text())
        scenario = None
        for candidate in (self.run_dir / "scenario.yaml", info.get("scenario")):
            if candidate and Path(candidate).is_file():
                scenario = load_scenario(candidate)
                break
        if scenario is None:
            raise ReplayError(f"{self.run_dir}: scenario.yaml is missing: the run directory is incomplete")
        if not (self.run_dir / "plan.npz").is_file():
            raise ReplayError(f"{self.run_dir}: plan.npz is missing: the run directory is incomplete")
        self.timeline = Timeline.load(self.run_dir / "plan.npz")
        self.speed = float(info.get("speed", 1.0) or 1.0)
        self.scene = Scene(scenario, self.timeline.start_utc, self.timeline.node_names, self.timeline.n_satellites)
        self._index = {name: i for i, name in enumerate(self.timeline.node_names)}
        self._plan_index = {name: i for i, name in enumerate(self.timeline.links.names)}
        self.links = LinkList()
        self._by_name: dict[str, int] = {}
        self._changes: list[tuple[float, int, bool, float]] = []  # (t_s, link, up, delay_s) in time order
        self._read_events()
        self.duration_s = self._duration()

    def _add_link(self, name: str, a: str, b: str) -> int:
        k = self._by_name.get(name)
        if k is None:
            k = self._by_name[name] = self.links.version
            self.links.extend([(self._index[a], self._index[b])], self.scene.n_satellites)
        return k

    def _read_events(self) -> None:
        path = self.run_dir / "events.csv"
        if not path.is_file():
            raise ReplayError(f"{path}: missing: the run directory is incomplete")
        state = self.run_dir / "state.json"  # the links the driver created, by slot (down ones have no event)
        if state.is_file():
            links = json.loads(state.read_text()).get("links", {})
            for name, link in sorted(links.items(), key=lambda item: item[1]["slot"]):
                a, _, b = name.partition("~")
                if a in self._index and b in self._index:
                    self._add_link(name, a, b)
        with path.open(newline="") as f:
            for r in csv.DictReader(f):
                if r["kind"] not in ("isl", "gsl") or r["event"] not in ("up", "down"):
                    continue
                k = self._add_link(r["what"], r["a"], r["b"])
                delay = float(r["delay_ms"]) / 1e3 if r["delay_ms"] else math.nan
                self._changes.append((float(r["t_s"]), k, r["event"] == "up", delay))
        self._changes.sort(key=lambda c: c[0])
        self._times = np.array([c[0] for c in self._changes])
        self._link = np.array([c[1] for c in self._changes], dtype=np.int64)
        self._up = np.array([c[2] for c in self._changes], dtype=bool)
        self._delay = np.array([c[3] for c in self._changes])
        # each link's index in the plan (-1: not a plan link), for the plan's delays between events
        self._plan_of = np.array([self._plan_index.get(name, -1) for name in self._by_name], dtype=np.int64)

    def _duration(self) -> float:
        """The run's length in emulated seconds: its last tick (ticks.csv), else its last event."""
        last = float(self._times[-1]) if len(self._times) else 0.0
        path = self.run_dir / "ticks.csv"
        if path.is_file():
            with path.open(newline="") as f:
                for r in csv.DictReader(f):
                    last = max(last, float(r["t_s"]))
        return last

    def state_at(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the links up at ``t_s`` as the driver applied them, and their one-way delays (the plan's at
        ``t_s`` where the plan covers it, else the delay at the link's last event)."""
        up = np.zeros(self.links.version, dtype=bool)
        delay = np.full(self.links.version, np.nan)
        n = int(np.searchsorted(self._times, t_s, side="right"))
        links, last = np.unique(self._link[:n][::-1], return_index=True)  # each link's last event up to t_s
        last = n - 1 - last
        up[links], delay[links] = self._up[last], self._delay[last]
        tl = self.timeline
        if 0.0 <= t_s <= tl.offsets_s[-1] + tl.step_s:
            _, plan_delay = tl.state_at(min(t_s, float(tl.offsets_s[-1])))
            li = self._plan_of
            better = up & (li >= 0)
            better[better] = np.isfinite(plan_delay[li[better]])
            delay[better] = plan_delay[li[better]]
        index = np.flatnonzero(up)
        return index, delay[index]

    def illumination_at(self, t_s: float) -> np.ndarray | None:
        tl = self.timeline
        return tl.illumination_at(min(max(t_s, 0.0), float(tl.offsets_s[-1])))

    def frame(self, t_s: float) -> dict:
        index, delay = self.state_at(t_s)
        return self.scene.frame(t_s, index, delay, self.illumination_at(t_s), self.links.version)


def node_routes(routes, node_names, node: int, limit: int = 2000) -> list[list]:
    """A node's forwarding table from an oracle table: ``[destination, next hop, one-way delay ms]`` per reachable
    destination (at most ``limit``, nearest first). The delay is ``None`` where the table keeps none (a run whose
    routes come from the background oracle keeps next hops only): JSON has no infinity."""
    nh = routes.next_hop[node]
    delay = routes.delay_s[node]
    reach = np.flatnonzero(nh >= 0)
    reach = reach[np.argsort(delay[reach], kind="stable")][:limit]
    return [[node_names[d], node_names[int(nh[d])],
             round(float(delay[d]) * 1e3, 3) if np.isfinite(delay[d]) else None] for d in reach]


def replay_routes(replay: ReplayRun, t_s: float):
    """The oracle's table over the links up in ``replay`` at ``t_s`` (as the run's own oracle would compute it)."""
    from ..routing import oracle

    index, delay = replay.state_at(t_s)
    links = replay.links
    up = np.zeros(links.version, dtype=bool)
    up[index] = True
    d = np.zeros(links.version)
    d[index] = np.nan_to_num(delay)
    return oracle.compute(len(replay.scene.node_names), np.asarray(links.a, dtype=np.int64),
                          np.asarray(links.b, dtype=np.int64), up, d, transit=replay.timeline.transit)


def path_message(routes, node_names, a: int, b: int) -> dict:
    """The page's answer to the path tool: the oracle path from ``a`` to ``b`` (node names) and its RTT (twice the
    one-way light time along it; ``None`` when unreachable)."""
    from ..routing import oracle

    nodes = oracle.path(routes, a, b) if routes is not None else []
    delay = float(routes.delay_s[a, b]) if nodes else math.inf
    return {"path": [node_names[i] for i in nodes],
            "rtt_ms": round(2e3 * delay, 3) if math.isfinite(delay) else None}
