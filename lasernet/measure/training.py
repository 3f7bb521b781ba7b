"""A training run's numbers: round time and compute time by power state, and how long training was held back.

Data-parallel training in orbit (``scripts/experiments/allreduce.py`` with a compute phase, ``COMPUTE_ITERS``)
runs on servers of satellites whose power state (:mod:`lasernet.power`) throttles or freezes them. A ring
all-reduce moves at the pace of its slowest member, so the *ring's* power state at an instant is the lowest of
its members' satellites' states (off < throttled < nominal): one throttled member throttles the whole step, one
frozen member stops it. A member on a ground station or a satellite without a power model counts as nominal.

What a run directory gives, and what is read from it:

* member 0's ``workload/<node>/rounds.csv``: per round its start (emulated s), ``round_s`` (wall s: compute
  phase plus all-reduce) and member 0's ``compute_s``; found as the ``rounds.csv`` whose ``compute_s`` column is
  filled;
* ``app-metrics.csv``: every member's ``compute_s`` and ``compute_cpu_s`` at the start of its compute phase (the
  members are the nodes that recorded ``compute_s`` for member 0's command, in ``workload.csv`` order);
* ``workload/nodes.json``: the router each server is attached to (``attach``);
* ``plan.npz``: each satellite's power state per step (what :func:`analyse` calls *planned*), and
  ``events.csv``: the states the driver applied to the servers (kind ``server``, cause ``power``; *applied*);
* ``run.json``: the speed (wall seconds of a round times the speed are its emulated seconds).

:func:`analyse` classifies each round by the ring's planned state at its start and calls it *steady* when that
state held until the round ended; the round times by state are over steady rounds, the others are counted apart
(``changed``: a member changed state while the round ran, an off stretch included). Each member's compute phases
are classified by its own satellite's state the same way. The time shares are over the run's emulated span
``[0, end_s]`` (the last tick); at a constant speed they are the shares of wall time too. :func:`write_csv`
writes them to ``training.csv``; the report (:mod:`lasernet.measure.report`) draws and tabulates them.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..power import NOMINAL, OFF, POWER_STATES, THROTTLED

__all__ = ["Ring", "find_ring", "ring_state", "applied_states", "analyse", "write_csv", "CSV_COLUMNS"]

CSV_COLUMNS = ["kind", "state", "n", "p50_s", "p90_s", "cpu_share_p50", "share_planned", "share_applied"]


@dataclass
class Ring:
    """The ring of one training command: members in ring order (member 0 first) and what they recorded."""

    command: str
    members: list[str]
    routers: list[str]  # each member's satellite or station (a server's ``attach``)
    rounds: dict[str, np.ndarray]  # member 0's rounds.csv columns: t_start_s, round_s, compute_s, ...
    compute: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # member -> (t_s, compute_s, compute_cpu_s)
    speed: float


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _num(values) -> np.ndarray:
    return np.array([float(v) if v not in (None, "") else np.nan for v in values], dtype=float)


def find_ring(run_dir) -> Ring | None:
    """The training ring of the run in ``run_dir``, or None when no rounds.csv has a compute phase."""
    run_dir = Path(run_dir)
    for path in sorted((run_dir / "workload").glob("*/rounds.csv")):
        rows = _rows(path)
        if not rows or not rows[0].get("compute_s"):
            continue
        node = path.parent.name
        metrics = _rows(run_dir / "app-metrics.csv")
        commands = {r["command"] for r in metrics if r["node"] == node and r["metric"] == "round_s"}
        if len(commands) != 1:
            continue
        command = commands.pop()
        recorded = {r["node"] for r in metrics if r["command"] == command and r["metric"] == "compute_s"}
        order = [r["node"] for r in _rows(run_dir / "workload.csv") if r["command"] == command] or sorted(recorded)
        members = [node] + [n for n in order if n in recorded and n != node]
        nodes_file = run_dir / "workload" / "nodes.json"
        nodes = json.loads(nodes_file.read_text()) if nodes_file.exists() else {}
        routers = [nodes.get(m, {}).get("attach", m) for m in members]
        compute = {}
        for m in members:
            sel = [r for r in metrics if r["node"] == m and r["command"] == command]
            wall = sorted((float(r["t_s"]), float(r["value"])) for r in sel if r["metric"] == "compute_s")
            cpu = dict((float(r["t_s"]), float(r["value"])) for r in sel if r["metric"] == "compute_cpu_s")
            t = np.array([w[0] for w in wall])
            compute[m] = (t, np.array([w[1] for w in wall]), np.array([cpu.get(x, np.nan) for x in t]))
        info = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {}
        rounds = {k: _num(r[k] for r in rows) for k in rows[0] if k in (
            "round", "t_start_s", "round_s", "token_ring_ms", "predicted_ring_ms", "ok", "compute_s",
            "compute_cpu_s", "barrier_ms")}
        return Ring(command, members, routers, rounds, compute, float(info.get("speed", 1.0)))
    return None


def ring_state(timeline, routers: list[str]) -> np.ndarray:
    """(T, M) planned power state codes of each member's router (nominal for a station or an unmodelled
    satellite) and, as the last column, the ring's: the lowest of them."""
    index = {n: i for i, n in enumerate(timeline.node_names[:timeline.n_satellites])}
    state = timeline.power_state
    cols = [state[:, index[r]] if r in index else np.full(len(timeline.offsets_s), NOMINAL, np.uint8)
            for r in routers]
    members = np.stack(cols, axis=1)
    return np.concatenate([members, members.min(axis=1, keepdims=True)], axis=1)


def applied_states(events: list[dict], servers: list[str], end_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(t_s (E,), codes (E, M+1)) step function of the power states the driver applied to ``servers``
    (``events.csv`` kind ``server``, cause ``power``; a server starts nominal), the ring's as the last column."""
    code = {name: k for k, name in enumerate(POWER_STATES)}
    now = {s: NOMINAL for s in servers}
    t, rows = [0.0], [[NOMINAL] * len(servers)]
    for r in events:
        if r.get("kind") == "server" and r.get("cause") == "power" and r.get("what") in now \
                and r.get("event") in code:
            now[r["what"]] = code[r["event"]]
            t.append(float(r["t_s"]))
            rows.append([now[s] for s in servers])
    t.append(max(end_s, t[-1]))
    rows.append(rows[-1])
    codes = np.array(rows, dtype=np.uint8)
    return np.array(t), np.concatenate([codes, codes.min(axis=1, keepdims=True)], axis=1)


def _step(timeline, t_s: np.ndarray) -> np.ndarray:
    k = np.floor((np.asarray(t_s, float) - timeline.offsets_s[0]) / timeline.step_s)
    return np.clip(np.nan_to_num(k), 0, len(timeline.offsets_s) - 1).astype(np.int64)


def _classify(timeline, codes: np.ndarray, t0: np.ndarray, t1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(state at t0, steady: the state held over [t0, t1]) of each interval, from a (T,) code series."""
    k0, k1 = _step(timeline, t0), _step(timeline, t1)
    at = codes[k0]
    # a change inside [k0, k1]: the running count of changes differs between the two ends
    changes = np.concatenate([[0], np.cumsum(codes[1:] != codes[:-1])])
    return at, changes[k1] == changes[k0]


def _pct(x: np.ndarray) -> tuple[float, float]:
    x = x[np.isfinite(x)]
    return (float(np.percentile(x, 50)), float(np.percentile(x, 90))) if len(x) else (np.nan, np.nan)


def analyse(run_dir, timeline=None, events: list[dict] | None = None, end_s: float | None = None) -> dict | None:
    """Round and compute times by power state and the ring's time shares of the run in ``run_dir`` (None when it
    has no training ring). ``timeline``, ``events`` and ``end_s`` may be given (the report has them read)."""
    from ..timeline import Timeline

    run_dir = Path(run_dir)
    ring = find_ring(run_dir)
    if ring is None or (timeline is None and not (run_dir / "plan.npz").exists()):
        return None
    timeline = timeline if timeline is not None else Timeline.load(run_dir / "plan.npz")
    events = events if events is not None else _rows(run_dir / "events.csv")
    if end_s is None:
        end_s = max((float(r["t_s"]) for r in _rows(run_dir / "ticks.csv")), default=float(timeline.offsets_s[-1]))
    planned = ring_state(timeline, ring.routers)
    r = ring.rounds
    t0, wall = r["t_start_s"], r["round_s"]
    at, steady = _classify(timeline, planned[:, -1], t0, t0 + wall * ring.speed)
    rows = []
    for c in (NOMINAL, THROTTLED, OFF):  # no steady round is off: a frozen member holds the ring up
        sel = (at == c) & steady
        p50, p90 = _pct(wall[sel])
        rows.append({"kind": "round", "state": POWER_STATES[c], "n": int(sel.sum()), "p50_s": p50, "p90_s": p90})
        p50, p90 = _pct(r["compute_s"][sel])
        rows.append({"kind": "round-compute", "state": POWER_STATES[c], "n": int(sel.sum()), "p50_s": p50,
                     "p90_s": p90})
    changed = ~steady
    p50, p90 = _pct(wall[changed])
    rows.append({"kind": "round-changed", "state": "", "n": int(changed.sum()), "p50_s": p50, "p90_s": p90})
    per_member = {}
    for m, (t, cs, cpu) in ring.compute.items():
        own = planned[:, ring.members.index(m)]
        m_at, m_steady = _classify(timeline, own, t, t + cs * ring.speed)
        per_member[m] = (m_at, m_steady)
    for c in (NOMINAL, THROTTLED, OFF):
        cs = np.concatenate([ring.compute[m][1][(a == c) & s] for m, (a, s) in per_member.items()] or [[]])
        cpu = np.concatenate([ring.compute[m][2][(a == c) & s] for m, (a, s) in per_member.items()] or [[]])
        p50, p90 = _pct(cs)
        share = float(np.nanmedian(cpu / cs)) if len(cs) else np.nan
        rows.append({"kind": "compute", "state": POWER_STATES[c], "n": len(cs), "p50_s": p50, "p90_s": p90,
                     "cpu_share_p50": share})
    keep = (timeline.offsets_s >= 0) & (timeline.offsets_s < end_s)
    ring_planned = planned[keep, -1]
    t_app, codes_app = applied_states(events, ring.members, end_s)
    span = np.diff(np.clip(t_app, 0, end_s))
    for c in (NOMINAL, THROTTLED, OFF):
        planned_share = float(np.mean(ring_planned == c)) if len(ring_planned) else np.nan
        applied_share = float(span[codes_app[:-1, -1] == c].sum() / end_s) if end_s > 0 else np.nan
        rows.append({"kind": "time", "state": POWER_STATES[c], "share_planned": planned_share,
                     "share_applied": applied_share})
    return {"ring": ring, "rows": rows, "end_s": end_s, "planned": planned, "round_state": at, "steady": steady,
            "member_compute": per_member, "applied": (t_app, codes_app),
            "t_s": timeline.offsets_s, "step_s": timeline.step_s}


def write_csv(result: dict, path) -> Path:
    """``training.csv``: one row per (kind, state) of :func:`analyse` (columns :data:`CSV_COLUMNS`)."""
    path = Path(path)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, CSV_COLUMNS)
        w.writeheader()
        for row in result["rows"]:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) and np.isfinite(v) else
                            "" if isinstance(v, float) else v) for k, v in row.items()})
    return path
