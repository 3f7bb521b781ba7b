"""What a run needs to be repeated: the scenario, the plan it followed, the options and every version involved.

:func:`record` writes into the run directory ``scenario.yaml`` (a byte-for-byte copy of the scenario file, but
for a routers' key written in it, shown as ``********``; with the files it names by relative paths, ground site
lists and element files, copied to the same relative places, so that the copy loads on its own),
``plan.npz`` (the first planned window, :meth:`lasernet.Timeline.load` reads it; the report takes predicted
delays and link counts from it) and ``run.json``: the run's options (start, speed, tick, link backend,
duration, seed), the versions of lasernet, Python, Skyfield, sgp4, numpy and the kernel, and a SHA-256 digest of
the scenario and of the plan's event sequence. The plan is a pure function of the scenario (its seed included)
and the start time, so the same scenario and start give the same digest: :func:`plan_digest` is what a repeat
run (or a test) compares.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import sys
from pathlib import Path

import numpy as np


def versions() -> dict:
    """Versions of everything that decides a run's numbers."""
    from importlib import metadata

    from ..version import __version__

    out = {"lasernet": __version__, "python": platform.python_version(), "kernel": os.uname().release,
           "machine": platform.machine()}
    for dist in ("skyfield", "sgp4", "numpy", "scipy", "networkx", "skyfield-data", "mininet"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    if out["mininet"] is None:
        try:
            import mininet.net

            out["mininet"] = getattr(mininet.net, "VERSION", None)
        except ImportError:
            pass
    return out


def plan_digest(timeline) -> str:
    """SHA-256 of a timeline's event sequence (step, link endpoints, up, cause, delay to the microsecond)."""
    ev = timeline.events()
    h = hashlib.sha256()
    h.update(timeline.start_utc.isoformat().encode())
    h.update(np.asarray(timeline.links.a, np.int64).tobytes() + np.asarray(timeline.links.b, np.int64).tobytes())
    for key in ("step", "link", "up", "cause"):
        h.update(np.asarray(ev[key], np.int64).tobytes())
    h.update(np.round(np.nan_to_num(np.asarray(ev["delay_s"], float)) * 1e6).astype(np.int64).tobytes())
    return h.hexdigest()


def record(run_dir: Path, scenario, timeline, **options) -> dict:
    """Write scenario.yaml, plan.npz and run.json into ``run_dir``; return what run.json holds."""
    run_dir = Path(run_dir)
    source = Path(scenario.source)
    copied = []
    if source.is_file():
        key = scenario.routing.auth_key if scenario.routing.auth_inline else ""
        if key:  # the routers' key written in the scenario: the run directory's copy hides it
            (run_dir / "scenario.yaml").write_bytes(source.read_bytes().replace(key.encode(), b"********"))
        else:
            shutil.copyfile(source, run_dir / "scenario.yaml")
        copied = _copy_referenced(source, run_dir)
    timeline.save(run_dir / "plan.npz")
    info = {"scenario": str(source.resolve()) if source.exists() else str(source), "scenario_name": scenario.name,
            "scenario_sha256": hashlib.sha256(source.read_bytes()).hexdigest() if source.is_file() else None,
            "seed": scenario.seed, "start_utc": timeline.start_utc.isoformat(),
            "plan_events_sha256": plan_digest(timeline), "plan_window_s": float(timeline.offsets_s[-1]),
            "plan_step_s": timeline.step_s, "scenario_files": copied, "argv": sys.argv,
            "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(), "versions": versions(),
            **{k: v for k, v in options.items()}}
    (run_dir / "run.json").write_text(json.dumps(info, indent=1, default=str))
    return info


def _copy_referenced(source: Path, run_dir: Path) -> list[str]:
    """Copy the files the scenario names by relative paths inside its directory; return those paths."""
    import yaml

    try:
        doc = yaml.safe_load(source.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []
    refs = list(((doc.get("ground") or {}).get("include")) or [])
    for fmt in ("tle", "omm"):
        for item in (doc.get("constellation") or {}).get(fmt) or []:
            refs.append(item if isinstance(item, str) else (item or {}).get("file"))
    copied = []
    for ref in refs:
        if not isinstance(ref, str) or Path(ref).is_absolute() or ".." in Path(ref).parts:
            continue
        src = source.parent / ref
        if src.is_file():
            (run_dir / ref).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, run_dir / ref)
            copied.append(ref)
    return copied
