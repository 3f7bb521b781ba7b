"""Run a scenario's workload inside a live emulation: start and stop its commands on emulated time, record them.

The :class:`WorkloadRunner` is driven by :class:`~lasernet.emulation.coordinator.Emulation`: ``start()`` right after
the clock starts, ``tick(t_s)`` every tick, ``stop()`` first thing at teardown (while the nodes still exist). One
*job* is one command on one node (or one side of an iperf3 flow). A job is started in the node's namespace with
``sh -c`` as the leader of its own process group (Mininet's ``mnexec -d``), so that stopping it (SIGTERM to the
group, SIGKILL 5 s later) also stops what it started. Its PID and start time go into the run's state file as it
starts, so ``lasernet down`` stops it even after the driver was killed.

Every job gets, in its environment: ``LASERNET_NODE`` (its node), ``LASERNET_IP`` (the node's address),
``LASERNET_GROUP`` (``name=ip`` of every node of the command, space-separated, in node order),
``LASERNET_INDEX`` (the node's position in that group), ``LASERNET_RUN_DIR``, ``LASERNET_SCENARIO_DIR``,
``LASERNET_PYTHON`` (this Python, which imports lasernet), ``LASERNET_NODES`` (a JSON file: every node's address
and role, and for a server the router it is attached to, ``attach``), ``LASERNET_T0_MONOTONIC`` and
``LASERNET_SPEED`` (emulated seconds since the start are ``speed * (CLOCK_MONOTONIC - t0)``) and
``LASERNET_METRICS``: a CSV file (``t_s,metric,value``) where an application may record its own metrics
(:class:`lasernet.measure.appmetrics.Metrics` writes it); the report plots them. ``LASERNET_EVENTS`` is the run's
``events.csv``, written a row at a time as the run applies them (a link down for a manoeuvre, a server's power
state, an upset's restart): a job that follows it (``tail -F``) reacts to what space does to the system.

Files in the run directory: ``workload/<node>.<command>.out`` and ``.err`` (stdout and stderr),
``workload.csv`` (one row per job: node, command, pid, start and end in emulated seconds, status, exit code),
``app-metrics.csv`` (every job's metrics: ``t_s,node,command,metric,value``), ``iperf3.csv`` (throughput per
interval: ``flow,t_s,bits_per_second,retransmits,rtt_ms``) and each flow's raw iperf3 JSON. A job's status is
``exited`` (exit code 0), ``failed`` (it exited by itself with non-zero, or could not start), ``stopped`` (still
running at its ``stop_s`` or at the end of the run, and stopped then: its exit code is recorded, whatever it is)
or ``not-started`` (the run ended first).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..net.procs import start_time
from ..spec import workload as spec

log = logging.getLogger("lasernet")

IPERF3_PORT = 5201
STOP_GRACE_S = 5.0


@dataclass
class Job:
    node: str
    command: str  # the command's name (iperf3 flows: iperf3-N-server / iperf3-N)
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    start_s: float
    stop_s: float | None
    out_path: Path
    err_path: Path
    proc: subprocess.Popen | None = None
    started_s: float | None = None
    ended_s: float | None = None
    status: str = "not-started"
    exit_code: int | None = None
    stopped: bool = False
    metrics_path: Path | None = None
    files: list = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.ended_s is None


class WorkloadRunner:
    """The jobs of one run's workload (see the module docstring)."""

    def __init__(self, emulation, resolved: dict):
        self.emu = emulation
        self.run_dir = Path(emulation.run_dir).resolve()
        self.scenario = emulation.scenario
        self.workload: spec.Workload = emulation.scenario.workload
        self.roles: dict[str, str] = resolved["roles"]
        self.jobs: list[Job] = []
        self.flows: list[tuple[int, spec.IperfFlow, Job, Job]] = []
        self.summary: dict = {}
        (self.run_dir / "workload").mkdir(parents=True, exist_ok=True)
        self.nodes_file = self.run_dir / "workload" / "nodes.json"
        nodes = {name: {"ip": emulation.node(name).IP(), "role": role} for name, role in self.roles.items()}
        for host in self.scenario.hosts:  # a server's router: where its traffic enters the constellation
            nodes[host.name]["attach"] = host.attach
        self.nodes_file.write_text(json.dumps(nodes, indent=1))
        for command, members in resolved["commands"]:
            group = " ".join(f"{n}={emulation.node(n).IP()}" for n in members)
            for k, name in enumerate(members):
                cwd = self.run_dir / command.cwd.replace("{node}", name)
                env = {"LASERNET_INDEX": str(k), "LASERNET_GROUP": group, **dict(command.env)}
                self._add(name, command.name, ["sh", "-c", command.run], cwd, env, command.start_s, command.stop_s)
        for i, flow in enumerate(self.workload.iperf3):
            port = str(IPERF3_PORT + i)
            server = self._add(flow.dst, f"iperf3-{i}-server", ["iperf3", "-s", "-1", "--forceflush", "-p", port],
                               self.run_dir / "workload", {}, 0.0, None)
            args = ["iperf3", "-c", emulation.node(flow.dst).IP(), "-p", port, "-t", f"{flow.duration_s:g}",
                    "-i", f"{flow.interval_s:g}", "-P", str(flow.parallel), "-J"]
            if flow.protocol == "udp":
                args.append("-u")
            if flow.bitrate_bps:
                args += ["-b", f"{flow.bitrate_bps:.0f}"]
            client = self._add(flow.src, f"iperf3-{i}", args, self.run_dir / "workload", {}, flow.start_s, None)
            self.flows.append((i, flow, server, client))
        self.jobs.sort(key=lambda j: (j.start_s, j.command.endswith("-server") is False))
        self.outages = [[o, False] for o in self.workload.outages]  # (outage, applied)

    def _add(self, node, command, argv, cwd, extra_env, start_s, stop_s) -> Job:
        base = self.run_dir / "workload" / f"{node}.{command}"
        env = dict(os.environ)
        env.update({"LASERNET_NODE": node, "LASERNET_IP": self.emu.node(node).IP(),
                    "LASERNET_RUN_DIR": str(self.run_dir), "LASERNET_EVENTS": str(self.run_dir / "events.csv"),
                    "LASERNET_SCENARIO_DIR": str(Path(self.scenario.source).resolve().parent),
                    "LASERNET_PYTHON": sys.executable, "LASERNET_NODES": str(self.nodes_file),
                    "LASERNET_SPEED": repr(self.emu.speed), "LASERNET_METRICS": str(base) + ".metrics.csv",
                    "LASERNET_COMMAND": command})
        env.update(extra_env)
        job = Job(node, command, argv, cwd, env, start_s, stop_s, Path(str(base) + ".out"), Path(str(base) + ".err"),
                  metrics_path=Path(str(base) + ".metrics.csv"))
        self.jobs.append(job)
        return job

    # ------------------------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Called once the emulation's clock runs: iperf3 servers first (they must listen before clients)."""
        t0 = repr(self.emu.clock.wall0)
        for job in self.jobs:
            job.env["LASERNET_T0_MONOTONIC"] = t0
        for _, _, server, _ in self.flows:
            self._launch(server, 0.0)
            self._wait_listening(server)
        self.tick(self.emu.now_s())

    def tick(self, t_s: float) -> None:
        """Start the jobs that are due, stop those past their ``stop_s``, notice those that have exited."""
        for entry in self.outages:
            if not entry[1] and t_s >= entry[0].start_s:
                self._outage(entry[0], t_s)
                entry[1] = True
        for job in self.jobs:
            if job.proc is None and job.status == "not-started" and t_s >= job.start_s:
                self._launch(job, t_s)
            elif job.running:
                code = job.proc.poll()
                if code is not None:
                    self._ended(job, t_s, code)
                elif job.stop_s is not None and t_s >= job.stop_s and not job.stopped:
                    self._signal(job, signal.SIGTERM)
                    job.stopped = True

    def stop(self) -> dict:
        """Stop every job still running (SIGTERM, then SIGKILL), write workload.csv and the parsed results."""
        t_s = self.emu.now_s()
        for job in self.jobs:  # those that ended by themselves since the last tick keep their own status
            if job.running and (code := job.proc.poll()) is not None:
                self._ended(job, t_s, code)
        running = [j for j in self.jobs if j.running]
        for job in running:  # marked first: a job that exits because another was stopped (a ring member whose
            job.stopped = True  # neighbour closed its connection) exits by the stop, not by itself
        for job in running:
            self._signal(job, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for job in running:
            try:
                code = job.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._signal(job, signal.SIGKILL)
                code = job.proc.wait()
            self._ended(job, t_s if job.ended_s is None else job.ended_s, code)
        for job in self.jobs:
            for f in job.files:
                f.close()
        self._write_jobs()
        flows = self._write_iperf3()
        metrics = self._write_metrics()
        failed = [{"node": j.node, "command": j.command, "exit_code": j.exit_code, "stderr": _tail(j.err_path)}
                  for j in self.jobs if j.status == "failed"]
        self.summary = {"jobs": len(self.jobs), "failed": failed, "iperf3": flows, "app_metrics": metrics,
                        "by_status": {s: sum(j.status == s for j in self.jobs)
                                      for s in ("exited", "failed", "stopped", "not-started")}}
        return self.summary

    # ------------------------------------------------------------------------------------------------- jobs
    def _launch(self, job: Job, t_s: float) -> None:
        job.cwd.mkdir(parents=True, exist_ok=True)
        out, err = job.out_path.open("wb"), job.err_path.open("wb")
        job.files = [out, err]
        try:
            job.proc = self.emu.node(job.node).popen(job.argv, cwd=str(job.cwd), env=job.env, stdin=subprocess.DEVNULL,
                                                     stdout=out, stderr=err)
        except OSError as exc:
            err.write(f"lasernet: could not start: {exc}\n".encode())
            job.started_s, job.ended_s, job.status, job.exit_code = t_s, t_s, "failed", 127
            return
        job.started_s, job.status = t_s, "running"
        state = self.emu.state
        if state is not None:
            state.data.setdefault("workload", []).append(
                {"pid": job.proc.pid, "start": start_time(job.proc.pid), "node": job.node,
                 "command": job.command})
            state.save()

    def _ended(self, job: Job, t_s: float, code: int) -> None:
        job.ended_s, job.exit_code = t_s, code
        if job.stopped:  # we signalled it: however it exits then (iperf3 exits 1 on SIGTERM), it was stopped
            job.status = "stopped"
        else:
            job.status = "exited" if code == 0 else "failed"
        if job.status == "failed":
            log.warning("workload: %s on %s exited with %d at t=%.1f s", job.command, job.node, code, t_s)

    @staticmethod
    def _signal(job: Job, sig: int) -> None:
        try:
            os.killpg(job.proc.pid, sig)  # mnexec -d made the job the leader of its own group
        except (ProcessLookupError, PermissionError):
            try:
                job.proc.send_signal(sig)
            except ProcessLookupError:
                pass

    def _wait_listening(self, job: Job, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and job.proc is not None and job.proc.poll() is None:
            job.files[0].flush()
            if b"listening" in job.out_path.read_bytes():
                return
            time.sleep(0.02)

    def _outage(self, outage: spec.Outage, t_s: float) -> None:
        """Force the outage's links down for its duration (the driver records their down and up events)."""
        if outage.link:
            pairs = [outage.link]
        else:
            tl, _ = self.emu.timeline_at(t_s)
            me = self.emu.node_names.index(outage.node)
            names = self.emu.node_names
            pairs = {tuple(sorted((names[a], names[b]))) for a, b in zip(tl.links.a.tolist(), tl.links.b.tolist())
                     if me in (a, b)}
        for a, b in sorted(pairs):
            self.emu.override(a, b, up=False, for_s=outage.duration_s)
        log.info("workload: outage of %s from t=%.1f s for %g s", outage.node or "~".join(outage.link), t_s,
                 outage.duration_s)

    # ------------------------------------------------------------------------------------------------- results
    def _write_jobs(self) -> None:
        with (self.run_dir / "workload.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["node", "command", "pid", "start_s", "end_s", "status", "exit_code", "stdout", "stderr"])
            for j in sorted(self.jobs, key=lambda j: (j.start_s, j.command, j.node)):
                w.writerow([j.node, j.command, j.proc.pid if j.proc else "", _num(j.started_s), _num(j.ended_s),
                            j.status, "" if j.exit_code is None else j.exit_code,
                            j.out_path.relative_to(self.run_dir), j.err_path.relative_to(self.run_dir)])

    def _write_iperf3(self) -> dict:
        rows, out = [], {}
        for i, flow, _server, client in self.flows:
            name = f"{flow.src}>{flow.dst}"
            try:
                report = json.loads(client.out_path.read_text() or "{}")
            except ValueError:
                report = {}
            (self.run_dir / f"iperf3-{i}.json").write_text(json.dumps(report, indent=1))
            start = client.started_s or flow.start_s
            for iv in report.get("intervals", []):
                s = iv.get("sum", {})
                rtts = [st.get("rtt") for st in iv.get("streams", []) if st.get("rtt")]
                rows.append([name, f"{start + self.emu.speed * float(s.get('end', 0.0)):.3f}",
                             f"{float(s.get('bits_per_second', 0.0)):.0f}", s.get("retransmits", ""),
                             f"{sum(rtts) / len(rtts) / 1e3:.3f}" if rtts else ""])
            end = report.get("end", {})
            recv = end.get("sum_received") or end.get("sum") or {}
            out[name] = {"intervals": len(report.get("intervals", [])),
                         "received_bps": float(recv.get("bits_per_second", 0.0)),
                         "error": report.get("error", "") or ("" if report else "no JSON output")}
        if self.flows:
            with (self.run_dir / "iperf3.csv").open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["flow", "t_s", "bits_per_second", "retransmits", "rtt_ms"])
                w.writerows(rows)
        return out

    def _write_metrics(self) -> int:
        rows = []
        for job in self.jobs:
            path = job.metrics_path
            if path is None or not path.exists():
                continue
            with path.open(newline="") as f:
                for row in csv.DictReader(f):
                    try:
                        rows.append((float(row["t_s"]), job.node, job.command, row["metric"], float(row["value"])))
                    except (KeyError, TypeError, ValueError):
                        continue
        if not rows:
            return 0
        rows.sort()
        with (self.run_dir / "app-metrics.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["t_s", "node", "command", "metric", "value"])
            for t, node, command, metric, value in rows:
                w.writerow([f"{t:.4f}", node, command, metric, repr(value)])
        return len(rows)


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])[-300:]
