"""What a run created, written down as it is created, and the teardown that removes exactly that.

Each run has a state file ``/run/lasernet/<run-id>.json`` (a copy sits in the run directory; a cluster
machine's share of a run has its own, ``<run-id>-m<k>.json``, copied as ``state-m<k>.json``) listing the driver's
PID, every node's shell PID and the inode of its network namespace, the link backend's processes and files, and
the clock (so that another shell can convert times). It is rewritten atomically whenever something is added.

:func:`teardown` is what ``lasernet down`` runs. It never matches processes by name: it signals the PIDs it
recorded (after checking that each PID still belongs to the same process, by its start time), then every
process whose network namespace is one of the run's (software started in a node with ``lasernet exec`` or
``node.popen``; the routing daemons' PIDs are recorded too) and the workload's jobs and captures (tcpdump) it
recorded, waits for them to exit so that the namespaces and their interfaces go away, and removes the backend's
files, the routing daemons' directories and the servers' cgroups (thawed first: a frozen process acts on no
signal). It is idempotent and works after the driver was killed with SIGKILL.
Process identity (PID plus start time) and stopping with a grace period are :mod:`lasernet.net.procs`'s; what
the routing daemons leave is :func:`lasernet.routing.daemons.remove_leftovers`'s to say.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
from pathlib import Path

from ..net.cgroups import remove_groups, thaw_groups
from ..net.delayline.table import RUN_ID_MAX_LEN
from ..net.procs import RUN_ROOT, netns_inode, processes_in, same_process, signal_all, start_time, stop_all, \
    wait_gone
from ..routing.daemons import remove_leftovers

STATE_DIR = RUN_ROOT  # the state files sit directly in lasernet's run root


def new_run_id(scenario_name: str) -> str:
    """``<UTC date>-<time>-<scenario name>-<pid>``, the name shortened so that the id fits RUN_ID_MAX_LEN.

    A run id names the delay line's table and control socket, whose rule (``[a-z0-9-]``, at most RUN_ID_MAX_LEN
    characters) lives with them in :mod:`lasernet.net.delayline.table`; scenario names are ``[a-z0-9-]`` already.
    """
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    pid = str(os.getpid() % 100000)
    name = scenario_name[:RUN_ID_MAX_LEN - len(stamp) - len(pid) - 2].rstrip("-")
    return f"{stamp}-{name}-{pid}"


class RunState:
    """The state file of one run (see the module docstring)."""

    def __init__(self, path: Path, data: dict):
        self.path, self.data = path, data

    @classmethod
    def create(cls, run_id: str, run_dir: Path, scenario) -> "RunState":
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        data = {"run_id": run_id, "run_dir": str(run_dir.resolve()), "scenario": str(scenario.source),
                "scenario_name": scenario.name, "driver": {"pid": os.getpid(), "start": start_time(os.getpid())},
                "nodes": {}, "links": {}, "backend": {}, "clock": None,
                "created_utc": dt.datetime.now(dt.timezone.utc).isoformat()}
        state = cls(STATE_DIR / f"{run_id}.json", data)
        state.save()
        return state

    def add_node(self, node) -> None:
        self.data["nodes"][node.name] = {"pid": node.pid, "start": start_time(node.pid),
                                         "netns_inode": netns_inode(node.pid), "loopback": node.loopback,
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
                entry["relay_start"] = start_time(entry["relay_pid"])
        self.data["backend"] = {"name": name, **res}
        self.save()

    def set_cgroups(self, paths) -> None:
        """Record the servers' cgroup directories (children before parents; :mod:`lasernet.net.cgroups`)."""
        self.data["cgroups"] = list(paths)
        self.save()

    def add_helpers(self, pids) -> None:
        """Record helper processes that live outside the nodes (e.g. the CPU spinners of ``awake``)."""
        self.data.setdefault("helpers", []).extend({"pid": pid, "start": start_time(pid)} for pid in pids)
        self.save()

    def set_clock(self, wall0_monotonic: float, speed: float, start_utc: dt.datetime) -> None:
        self.data["clock"] = {"wall0_monotonic": wall0_monotonic, "speed": speed,
                              "start_utc": start_utc.isoformat()}
        self.save()

    def save(self) -> None:
        text = json.dumps(self.data, indent=1)
        copy = "state.json" if not self.data.get("cluster_of") else f"state-m{self.data.get('machine', 0)}.json"
        for path in (self.path, Path(self.data["run_dir"]) / copy):
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
    """The run ``run_id`` names (exactly, else the first it is a prefix of); without one the newest run. A
    machine's share of a cluster run (``cluster_of``) is found by its own id only."""
    runs = list_runs()
    if run_id is None:
        runs = [run for run in runs if not run.get("cluster_of")]
        return runs[-1] if runs else None
    for run in runs:
        if run["run_id"] == run_id:
            return run
    for run in runs:
        if run["run_id"].startswith(run_id) and not run.get("cluster_of"):
            return run
    return None


def teardown(data: dict, quiet: bool = False) -> dict:
    """Remove everything a run's state lists; return counts of what was removed."""
    removed = {"driver": 0, "processes": 0, "relay": 0, "files": 0, "cgroups": 0}
    driver = data.get("driver", {})
    if driver.get("pid") != os.getpid() and same_process(driver.get("pid"), driver.get("start")):
        stop_all([driver["pid"]], grace_s=10.0)
        removed["driver"] = 1
    thaw_groups(data.get("cgroups", []))  # a server frozen by its power state would not act on the signals below
    inodes = {n["netns_inode"] for n in data.get("nodes", {}).values() if n.get("netns_inode")}
    shells = [n["pid"] for n in data.get("nodes", {}).values() if same_process(n.get("pid"), n.get("start"))]
    shells += [j["pid"] for j in data.get("workload", []) if same_process(j.get("pid"), j.get("start"))]
    shells += [c["pid"] for c in data.get("captures", []) if same_process(c.get("pid"), c.get("start"))]
    inside = processes_in(inodes) if inodes else []
    routing = data.get("routing") or {}
    daemons = [p["pid"] for p in routing.get("processes", []) if same_process(p.get("pid"), p.get("start"))]
    victims = sorted(set(inside) | set(shells) | set(daemons))
    if victims:
        stop_all(victims, grace_s=2.0)
        removed["processes"] = len(victims)
    helpers = [h["pid"] for h in data.get("helpers", []) if same_process(h.get("pid"), h.get("start"))]
    if helpers:
        signal_all(helpers, signal.SIGKILL)
        wait_gone(helpers, 5.0)
        removed["processes"] += len(helpers)
    backend = data.get("backend", {})
    shards = backend.get("relays") or [backend]  # the delay line's relays (one per range of link slots)
    relays = [r["relay_pid"] for r in shards if same_process(r.get("relay_pid"), r.get("relay_start"))]
    if relays:
        stop_all(relays, grace_s=5.0)
        removed["relay"] = len(relays)
    if data.get("cgroups"):  # the servers' cgroups, once their processes are gone
        removed["cgroups"] = remove_groups(data["cgroups"])
    if routing:  # routing daemons' directories (sockets, configs) and FRR's per-process crash-log directories
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
