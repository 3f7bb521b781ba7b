"""What a run created, written down as it is created, and the teardown that removes exactly that.

Each run has a state file ``/run/lasernet/<run-id>.json`` (a copy sits in the run directory) listing the driver's
PID, every node's shell PID and the inode of its network namespace, the link backend's processes and files, and
the clock (so that another shell can convert times). It is rewritten atomically whenever something is added.

:func:`teardown` is what ``lasernet down`` runs. It never matches processes by name: it signals the PIDs it
recorded (after checking that each PID still belongs to the same process, by its start time), then every
process whose network namespace is one of the run's (software started in a node with ``lasernet exec`` or
``node.popen``; the routing daemons' PIDs are recorded too) and the workload's jobs it recorded, waits
for them to exit so that the namespaces and their interfaces go away, and removes the backend's files and
the routing daemons' directories. It is idempotent and works after the driver was killed with SIGKILL.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time
from pathlib import Path

from ..net.delayline.table import RUN_ID_MAX_LEN

STATE_DIR = Path(os.environ.get("LASERNET_STATE_DIR", "/run/lasernet"))


def new_run_id(scenario_name: str) -> str:
    """``<UTC date>-<time>-<scenario name>-<pid>``, the name shortened so that the id fits RUN_ID_MAX_LEN.

    A run id names the delay line's table and control socket, whose rule (``[a-z0-9-]``, at most RUN_ID_MAX_LEN
    characters) lives with them in :mod:`lasernet.net.delayline.table`; scenario names are ``[a-z0-9-]`` already.
    """
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    pid = str(os.getpid() % 100000)
    name = scenario_name[:RUN_ID_MAX_LEN - len(stamp) - len(pid) - 2].rstrip("-")
    return f"{stamp}-{name}-{pid}"


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(raw[raw.rindex(")") + 2:].split()[19])


def _netns_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


class RunState:
    """The state file of one run (see the module docstring)."""

    def __init__(self, path: Path, data: dict):
        self.path, self.data = path, data

    @classmethod
    def create(cls, run_id: str, run_dir: Path, scenario) -> "RunState":
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        data = {"run_id": run_id, "run_dir": str(run_dir.resolve()), "scenario": str(scenario.source),
                "scenario_name": scenario.name, "driver": {"pid": os.getpid(), "start": _start_time(os.getpid())},
                "nodes": {}, "links": {}, "backend": {}, "clock": None,
                "created_utc": dt.datetime.now(dt.timezone.utc).isoformat()}
        state = cls(STATE_DIR / f"{run_id}.json", data)
        state.save()
        return state

    def add_node(self, node) -> None:
        self.data["nodes"][node.name] = {"pid": node.pid, "start": _start_time(node.pid),
                                         "netns_inode": _netns_inode(node.pid), "loopback": node.loopback,
                                         "role": node.role, "index": node.index}

    def add_link(self, link, name: str) -> None:
        self.data["links"][name] = {"slot": link.slot, "ifname_a": link.ifname_a, "ifname_b": link.ifname_b,
                                    "ip_a": link.ip_a, "ip_b": link.ip_b}

    def set_backend(self, name: str, resources: dict) -> None:
        res = dict(resources)
        res.pop("taps", None)  # they live in the nodes' namespaces and go with them
        res["relays"] = [dict(shard) for shard in res.get("relays", [])]
        for entry in [res, *res["relays"]]:
            if entry.get("relay_pid"):
                entry["relay_start"] = _start_time(entry["relay_pid"])
        self.data["backend"] = {"name": name, **res}
        self.save()

    def add_helpers(self, pids) -> None:
        """Record helper processes that live outside the nodes (e.g. the CPU spinners of ``awake``)."""
        self.data.setdefault("helpers", []).extend({"pid": pid, "start": _start_time(pid)} for pid in pids)
        self.save()

    def set_clock(self, wall0_monotonic: float, speed: float, start_utc: dt.datetime) -> None:
        self.data["clock"] = {"wall0_monotonic": wall0_monotonic, "speed": speed,
                              "start_utc": start_utc.isoformat()}
        self.save()

    def save(self) -> None:
        text = json.dumps(self.data, indent=1)
        for path in (self.path, Path(self.data["run_dir"]) / "state.json"):
            tmp = path.with_name(path.name + ".part")
            tmp.write_text(text)
            tmp.replace(path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def list_runs() -> list[dict]:
    """The state of every run on this machine (newest last)."""
    if not STATE_DIR.is_dir():
        return []
    runs = []
    for path in sorted(STATE_DIR.glob("*.json")):
        try:
            runs.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return runs


def find_run(run_id: str | None = None) -> dict | None:
    runs = list_runs()
    if run_id is None:
        return runs[-1] if runs else None
    for run in runs:
        if run["run_id"] == run_id or run["run_id"].startswith(run_id):
            return run
    return None


def _same_process(pid: int | None, start: int | None) -> bool:
    return bool(pid) and start is not None and _start_time(pid) == start


def _processes_in(inodes: set[int]) -> list[int]:
    """PIDs of all processes whose network namespace is one of ``inodes`` (one scan of /proc)."""
    pids = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me:
            ino = _netns_inode(int(entry))
            if ino in inodes:
                pids.append(int(entry))
    return pids


def _signal_all(pids, sig) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _wait_gone(pids, timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        for pid in alive:
            try:  # reap our own children; others disappear from /proc when their parent reaps them
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        alive = [p for p in alive if _start_time(p) is not None and not _is_zombie(p)]
        if alive:
            time.sleep(0.02)
    return alive


def _is_zombie(pid: int) -> bool:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return raw[raw.rindex(")") + 2] == "Z"


def _stop_all(pids, grace_s: float) -> None:
    """SIGTERM the processes, SIGKILL those still there after ``grace_s``, and wait (5 s more at most)."""
    _signal_all(pids, signal.SIGTERM)
    left = _wait_gone(pids, grace_s)
    _signal_all(left, signal.SIGKILL)
    _wait_gone(left, 5.0)


def teardown(data: dict, quiet: bool = False) -> dict:
    """Remove everything a run's state lists; return counts of what was removed."""
    removed = {"driver": 0, "processes": 0, "relay": 0, "files": 0}
    driver = data.get("driver", {})
    if driver.get("pid") != os.getpid() and _same_process(driver.get("pid"), driver.get("start")):
        _stop_all([driver["pid"]], grace_s=10.0)
        removed["driver"] = 1
    inodes = {n["netns_inode"] for n in data.get("nodes", {}).values() if n.get("netns_inode")}
    shells = [n["pid"] for n in data.get("nodes", {}).values() if _same_process(n.get("pid"), n.get("start"))]
    shells += [j["pid"] for j in data.get("workload", []) if _same_process(j.get("pid"), j.get("start"))]
    inside = _processes_in(inodes) if inodes else []
    routing = data.get("routing") or {}
    daemons = [p["pid"] for p in routing.get("processes", []) if _same_process(p.get("pid"), p.get("start"))]
    victims = sorted(set(inside) | set(shells) | set(daemons))
    if victims:
        _stop_all(victims, grace_s=2.0)
        removed["processes"] = len(victims)
    helpers = [h["pid"] for h in data.get("helpers", []) if _same_process(h.get("pid"), h.get("start"))]
    if helpers:
        _signal_all(helpers, signal.SIGKILL)
        _wait_gone(helpers, 5.0)
        removed["processes"] += len(helpers)
    backend = data.get("backend", {})
    shards = backend.get("relays") or [backend]  # the delay line's relays (one per range of link slots)
    relays = [r["relay_pid"] for r in shards if _same_process(r.get("relay_pid"), r.get("relay_start"))]
    if relays:
        _stop_all(relays, grace_s=5.0)
        removed["relay"] = len(relays)
    if routing:  # routing daemons' directories (sockets, configs) and FRR's per-process crash-log directories
        from ..routing.daemons import remove_leftovers

        removed["files"] += remove_leftovers(routing)
    for path in {r.get("table_path") for r in shards}:
        if path and os.path.exists(path):
            os.unlink(path)
            removed["files"] += 1
    state_file = STATE_DIR / f"{data.get('run_id', '')}.json"
    if data.get("run_id") and state_file.exists():
        state_file.unlink()
        removed["files"] += 1
    return removed
