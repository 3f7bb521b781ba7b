"""Earth observation through the network: what was captured over land, what reached the ground, and how old it was.

An Earth-observation satellite images what is under it. Most of the value is over land (cities, crops, floods,
fires), so the `in-orbit-processing` experiment captures only while a satellite's subpoint is over land: one
satellite in a 53 degree orbit spends about a quarter to a third of its time there. Imagery piles up faster than
a satellite can send it unless it has a way down. Classically it stores the data and downlinks it when it passes
a ground station, minutes to hours later: the data's *age* at the ground (capture to arrival) is set by the gaps
between contacts, and the *backlog* onboard grows over land and drains over stations. With laser crosslinks the
data can instead go to an orbital compute node that reduces it (detections instead of pixels, a lower resolution,
a compressed product) and sends the result down through the mesh via whichever station is in contact: fewer
bytes, and an age set by the mesh's paths rather than by the satellite's own passes.

Functions here read a run directory of that experiment (the files ``scripts/experiments/eo_pipeline.py`` writes in
each job's directory ``workload/<node>/``); :func:`over_land` is also what the producers use to decide when to
capture:

* :func:`over_land`: (T, N) whether each satellite's subpoint is over land at each instant, from its SGP4
  position (:mod:`lasernet.orbits`) and the shipped 1-degree land mask (:func:`lasernet.measure.plots.land_mask`,
  geocentric latitude, as the report's maps draw it);
* :func:`read_run`: the chunks produced, acknowledged and received at the ground, each producer's backlog over
  time and the roles' totals;
* :func:`summary`: bytes produced and downlinked, the age at the ground (p50, p99), backlog at the end, per
  producer and in all; :func:`write_csv` one row per chunk at the ground; :func:`figure` the report's figure.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["over_land", "land_intervals", "EORun", "read_run", "summary", "write_csv", "figure"]


def over_land(scenario, start_utc, names, offsets_s) -> np.ndarray:
    """(T, N) bool: the subpoint of each satellite ``names`` is over land at ``start_utc + offsets_s``."""
    from .. import skydata
    from ..orbits import build_satellites
    from .plots import land_mask, lonlat_deg

    sats = build_satellites(scenario)
    sats = sats.subset(np.array([sats.index(n) for n in names]))
    pos = sats.positions_km(skydata.times(start_utc, np.asarray(offsets_s, float)))
    lon, lat = lonlat_deg(pos)
    row = np.clip(np.floor(lat + 90.0).astype(int), 0, 179)
    col = np.floor(lon + 180.0).astype(int) % 360
    return land_mask()[row, col]


def land_intervals(flags: np.ndarray, offsets_s: np.ndarray, step_s: float = 1.0) -> list[tuple[float, float]]:
    """[start, end) intervals where ``flags`` (sampled at ``offsets_s``, each holding for ``step_s``) is True."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(float(offsets_s[a]), float(offsets_s[b - 1] + step_s)) for a, b in zip(starts, ends)]


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@dataclass
class EORun:
    """What the experiment's programs left in one run directory."""

    producers: dict[str, dict] = field(default_factory=dict)  # node -> eo-producer.json (totals at the end)
    produced: dict[str, np.ndarray] = field(default_factory=dict)  # node -> (seq, start_s, end_s, bytes) rows
    backlog: dict[str, np.ndarray] = field(default_factory=dict)  # node -> (t_s, backlog_bytes) rows (compute too)
    ground: list[dict] = field(default_factory=list)  # chunks at the ground (every sink), in arrival order
    compute: dict[str, dict] = field(default_factory=dict)  # node -> eo-compute.json
    sinks: dict[str, dict] = field(default_factory=dict)  # node -> eo-ground.json

    @property
    def mode(self) -> str:
        modes = sorted({p.get("mode", "?") for p in self.producers.values()})
        return "+".join(modes) if modes else "-"

    def age_s(self, source: str | None = None) -> np.ndarray:
        return np.array([r["arrival_s"] - r["capture_end_s"] for r in self.ground
                         if source is None or r["source"] == source])


def read_run(run_dir: str | Path) -> EORun | None:
    """The experiment's files under ``run_dir/workload/*/``, or None when the run has none."""
    root = Path(run_dir) / "workload"
    if not root.is_dir():
        return None
    run = EORun()
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        node = d.name
        if (d / "eo-chunks.csv").exists():
            rows = _rows(d / "eo-chunks.csv")
            run.produced[node] = np.array([[float(r["seq"]), float(r["capture_start_s"]), float(r["capture_end_s"]),
                                            float(r["bytes"])] for r in rows]).reshape(-1, 4)
            run.producers[node] = _json(d / "eo-producer.json")
        if (d / "eo-backlog.csv").exists():
            rows = _rows(d / "eo-backlog.csv")
            run.backlog[node] = np.array([[float(r["t_s"]), float(r["backlog_bytes"])] for r in rows]).reshape(-1, 2)
        if (d / "eo-compute.csv").exists():
            run.compute[node] = _json(d / "eo-compute.json")
        if (d / "eo-ground.csv").exists():
            run.sinks[node] = _json(d / "eo-ground.json")
            for r in _rows(d / "eo-ground.csv"):
                run.ground.append({"source": r["source"], "seq": int(r["seq"]),
                                   "capture_start_s": float(r["capture_start_s"]),
                                   "capture_end_s": float(r["capture_end_s"]), "arrival_s": float(r["arrival_s"]),
                                   "bytes": int(r["bytes"]), "factor": int(r["factor"]), "sender": r["sender"],
                                   "station": r["station"]})
    if not run.produced and not run.ground:
        return None
    run.ground.sort(key=lambda r: r["arrival_s"])
    return run


def _pct(a: np.ndarray, q: float) -> float | None:
    return float(np.percentile(a, q)) if len(a) else None


def summary(run: EORun) -> dict:
    """Per producer and in all: bytes produced, acknowledged by the first hop, downlinked (at the ground), the
    backlog at the end (the producer's, and the compute node's), and the age at the ground (p50, p99, max)."""
    out = {"mode": run.mode, "producers": {}}
    for node, rows in run.produced.items():
        age = run.age_s(node)
        got = [r for r in run.ground if r["source"] == node]
        p = run.producers.get(node, {})
        out["producers"][node] = {
            "produced_bytes": int(rows[:, 3].sum()), "produced_chunks": len(rows),
            "captured_s": float((rows[:, 2] - rows[:, 1]).sum()),
            "backlog_end_bytes": p.get("backlog_bytes"),
            "downlinked_bytes": sum(r["bytes"] for r in got), "downlinked_chunks": len(got),
            "age_p50_s": _pct(age, 50), "age_p99_s": _pct(age, 99)}
    age = run.age_s()
    out["produced_bytes"] = sum(p["produced_bytes"] for p in out["producers"].values())
    out["downlinked_bytes"] = sum(r["bytes"] for r in run.ground)
    out["downlinked_chunks"] = len(run.ground)
    out["chunks_produced"] = sum(p["produced_chunks"] for p in out["producers"].values())
    out["backlog_end_bytes"] = sum(p.get("backlog_bytes") or 0 for p in run.producers.values())
    out["compute_backlog_end_bytes"] = sum(c.get("backlog_bytes") or 0 for c in run.compute.values())
    out["age_p50_s"], out["age_p99_s"] = _pct(age, 50), _pct(age, 99)
    out["age_max_s"] = float(age.max()) if len(age) else None
    out["duplicates"] = sum(s.get("duplicates", 0) for s in run.sinks.values())
    return out


def write_csv(run: EORun, path: str | Path) -> Path:
    """One row per chunk at the ground: source, seq, capture interval, arrival, age, bytes, factor, station."""
    path = Path(path)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source", "seq", "capture_start_s", "capture_end_s", "arrival_s", "age_s", "bytes", "factor",
                    "sender", "station"])
        for r in run.ground:
            w.writerow([r["source"], r["seq"], r["capture_start_s"], r["capture_end_s"], r["arrival_s"],
                        f"{r['arrival_s'] - r['capture_end_s']:.3f}", r["bytes"], r["factor"], r["sender"],
                        r["station"]])
    return path


def figure(run: EORun):
    """Three panels over emulated time: each producer's capture (bars) and backlog, the bytes at the ground
    (cumulative, per source), and each chunk's age at arrival."""
    from . import plots

    return plots.eo_pipeline(run.produced, run.backlog, run.ground, run.mode)
