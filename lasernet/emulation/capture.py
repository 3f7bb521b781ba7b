"""Packet capture in a live run: tcpdump inside a node's namespace writes pcap, on the run's emulated time.

A pcap file stamps every packet with the kernel's wall clock (CLOCK_REALTIME) when the packet crossed the
interface: on the way out as it is handed to the interface, on the way in as it arrives. A run's emulated time
is ``speed * (CLOCK_MONOTONIC - wall0)`` (:class:`~lasernet.emulation.coordinator.Clock`), so what turns a pcap
stamp into emulated seconds is the wall time at emulated t=0 and the speed: :func:`clock_mapping` reads the
offset between the two clocks (the tightest of a few paired reads, error well under a microsecond) and
:func:`emulated_s` applies it. Both clocks tick at the same rate; the offset moves only if the wall clock is
stepped (NTP), which is why ``capture.json`` records it at the start and at the end of the run.

On a delay-line link (a TAP at each end, a relay in between) a packet leaves A's interface when A's kernel writes
it into the TAP and enters B's when the relay writes it out after the link's delay, so the two ends' stamps of
one packet differ by the link's one-way delay. (With the netem backend the delay is applied on the sender's
egress queue, before tcpdump sees the packet leave: there the difference shows at the next hop's arrival.)

:class:`Tcpdump` is one tcpdump process (``-U``: every packet is written as it comes, so a file is whole up to the
last packet even after SIGKILL; SIGINT or SIGTERM ends it cleanly with its counts on stderr). It runs with ``-Z
root`` (Debian's tcpdump would otherwise drop to its own user, who may not write the run directory).
:class:`CaptureRunner` runs a scenario's ``capture:`` section (:mod:`lasernet.spec.capture`) for
:class:`~lasernet.emulation.coordinator.Emulation`: ``start()`` once the clock runs, ``tick(t_s)`` every tick
(captures start and stop at the first tick at or after their ``start_s`` and ``stop_s``; a ``link:`` capture whose
link is not created yet starts at the tick that creates it), ``stop()`` before the nodes go. Every tcpdump's PID
and start time go into the run's state file as it starts, so ``lasernet down`` stops it after a SIGKILL of the
driver (it is also one of the processes in the run's namespaces, which ``lasernet down`` stops anyway).

Files in the run directory: ``capture/<name>.pcap`` (a node capture) or ``capture/<name>.<node>.pcap`` (each end
of a link), tcpdump's stderr beside each as ``.log``, and ``capture.json``: the clock mapping and, per file, the
node, interface, filter, the emulated times tcpdump was started and stopped, and its packet counts.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ScenarioError
from ..net.procs import start_time
from ..spec.capture import Capture

log = logging.getLogger("lasernet")

STOP_GRACE_S = 3.0  # after SIGTERM, how long tcpdump may take to write its last packets before SIGKILL
COUNTS_RE = re.compile(r"^(\d+) packets? (captured|received by filter|dropped by kernel)", re.M)


def tcpdump_argv(interface: str, path: Path | str, filter_text: str = "", snaplen: int = 262144) -> list[str]:
    """tcpdump writing pcap with nanosecond stamps, each packet as it comes (``-U``), no name look-ups."""
    argv = ["tcpdump", "-i", interface, "-w", str(path), "-U", "-n", "--immediate-mode",
            "--time-stamp-precision=nano", "-s", str(snaplen), "-Z", "root"]
    return argv + ([filter_text] if filter_text else [])


def clock_mapping(wall0_monotonic: float, speed: float, start_utc: dt.datetime) -> dict:
    """What converts pcap stamps (CLOCK_REALTIME) to emulated seconds: ``speed * (stamp - wall0_unix_ns / 1e9)``."""
    best = None
    for _ in range(7):  # the pair of reads that brackets the wall-clock read tightest
        m0 = time.monotonic_ns()
        r = time.time_ns()
        m1 = time.monotonic_ns()
        if best is None or m1 - m0 < best[0]:
            best = (m1 - m0, r - (m0 + m1) // 2)
    offset_ns = best[1]
    return {"speed": speed, "start_utc": start_utc.isoformat(), "wall0_monotonic_s": wall0_monotonic,
            "realtime_minus_monotonic_ns": offset_ns, "wall0_unix_ns": round(wall0_monotonic * 1e9) + offset_ns,
            "emulated_s": "speed * (pcap_stamp_s - wall0_unix_ns / 1e9)"}


def emulated_s(stamp_s, mapping: dict) -> float:
    """Emulated seconds of a pcap stamp (UNIX seconds; a float, or scapy's exact ``pkt.time``) under ``mapping``."""
    whole = int(stamp_s)
    return mapping["speed"] * ((whole * 1_000_000_000 - mapping["wall0_unix_ns"]) * 1e-9 + float(stamp_s - whole))


def read_counts(log_text: str) -> dict:
    """tcpdump's closing counts (``captured``, ``received_by_filter``, ``dropped_by_kernel``) from its stderr."""
    return {what.replace(" ", "_"): int(n) for n, what in COUNTS_RE.findall(log_text)}


@dataclass
class Tcpdump:
    """One tcpdump process on ``interface`` of ``node`` writing ``path`` (see the module docstring)."""

    node: str
    interface: str
    path: Path
    filter: str = ""
    snaplen: int = 262144
    proc: subprocess.Popen | None = None
    log_file: object = None

    @property
    def log_path(self) -> Path:
        return self.path.with_suffix(".log")

    def start(self, popen) -> int:
        """Start it with ``popen(argv, **kwargs)``, which runs argv in the node's namespace; return its PID."""
        self.log_file = self.log_path.open("wb")
        self.proc = popen(tcpdump_argv(self.interface, self.path, self.filter, self.snaplen),
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log_file)
        return self.proc.pid

    def stop(self) -> int | None:
        """SIGTERM (tcpdump writes what it holds and its counts, as on SIGINT, which a process started in the
        background inherits ignored), SIGKILL after STOP_GRACE_S; its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None
        return self.proc.returncode

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class _Job:
    capture: Capture
    index: int  # in the scenario's capture: list
    node: str
    peer: str | None  # link captures: the other end (the interface is the link's, towards it)
    dump: Tcpdump
    started_s: float | None = None
    stopped_s: float | None = None
    exit_code: int | None = None
    extra: dict = field(default_factory=dict)


def check_links(scenario, node_names, links_a, links_b) -> None:
    """Raise ScenarioError (``capture[i].link``) for a link capture whose ends share no link in the plan window
    (``links_a``, ``links_b``: its candidate links' node indices)."""
    pairs = {frozenset((int(a), int(b))) for a, b in zip(links_a, links_b)}
    for i, c in enumerate(scenario.capture):
        if c.link is not None and frozenset(node_names.index(x) for x in c.link) not in pairs:
            raise ScenarioError(scenario.source.name, f"capture[{i}].link",
                                f"{c.link[0]} and {c.link[1]} have no link in the plan's first window; capture a "
                                f"node: (with interface:) instead, or name two nodes the plan links")


class CaptureRunner:
    """The tcpdump processes of a scenario's ``capture:`` section in one run (see the module docstring)."""

    def __init__(self, emulation):
        self.emu = emulation
        self.run_dir = Path(emulation.run_dir).resolve()
        self.dir = self.run_dir / "capture"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.jobs: list[_Job] = []
        self.mapping: dict | None = None
        for i, c in enumerate(emulation.scenario.capture):
            if c.node is not None:
                self._add(c, i, c.node, None, c.interface, self.dir / f"{c.name}.pcap")
            else:
                for me, peer in (c.link, c.link[::-1]):
                    self._add(c, i, me, peer, None, self.dir / f"{c.name}.{me}.pcap")

    def _add(self, c: Capture, i: int, node: str, peer: str | None, interface: str | None, path: Path) -> None:
        self.jobs.append(_Job(c, i, node, peer, Tcpdump(node, interface or "", path, c.filter, c.snaplen)))

    def start(self) -> None:
        clock = self.emu.clock
        self.mapping = clock_mapping(clock.wall0, clock.speed, self.emu.start_utc)
        self._write()
        self.tick(self.emu.now_s())

    def tick(self, t_s: float) -> None:
        """Start the captures that are due (and whose link exists), stop those past their ``stop_s``."""
        for job in self.jobs:
            c = job.capture
            if job.started_s is None and t_s >= c.start_s and (c.stop_s is None or t_s < c.stop_s):
                self._launch(job, t_s)
            elif job.started_s is not None and job.stopped_s is None and c.stop_s is not None and t_s >= c.stop_s:
                self._end(job, t_s)

    def stop(self) -> dict:
        """Stop every capture still running; write capture.json; return it."""
        t_s = self.emu.now_s()
        for job in self.jobs:
            if job.started_s is not None and job.stopped_s is None:
                self._end(job, t_s)
        return self._write(final=True)

    def _launch(self, job: _Job, t_s: float) -> None:
        if job.peer is not None:  # the link's interface at this end, once the link exists
            names = self.emu.node_names
            me, peer = names.index(job.node), names.index(job.peer)
            link = self.emu.applied.by_pair.get((me, peer)) or self.emu.applied.by_pair.get((peer, me))
            if link is None:
                return
            job.dump.interface = link.ifname_a if link.a == me else link.ifname_b
        try:
            pid = job.dump.start(self.emu.node(job.node).popen)
        except OSError as exc:
            job.started_s, job.stopped_s, job.exit_code = t_s, t_s, 127
            job.extra["error"] = f"could not start tcpdump: {exc}"
            log.error("capture %s on %s: %s", job.capture.name, job.node, job.extra["error"])
            return
        job.started_s = t_s
        state = self.emu.state
        if state is not None:
            state.data.setdefault("captures", []).append(
                {"pid": pid, "start": start_time(pid), "node": job.node, "file": str(job.dump.path)})
            state.save()

    def _end(self, job: _Job, t_s: float) -> None:
        job.stopped_s = t_s
        job.exit_code = job.dump.stop()
        text = job.dump.log_text()
        job.extra.update(read_counts(text))
        if job.exit_code not in (0, None) and "error" not in job.extra:
            lines = [ln for ln in text.splitlines() if ln.strip()]
            job.extra["error"] = lines[-1] if lines else f"tcpdump exited with {job.exit_code}"
            log.error("capture %s on %s:%s: %s", job.capture.name, job.node, job.dump.interface, job.extra["error"])

    def _write(self, final: bool = False) -> dict:
        if final and self.mapping is not None:  # a wall-clock step during the run shows as a changed offset
            self.mapping["realtime_minus_monotonic_ns_at_end"] = clock_mapping(
                self.mapping["wall0_monotonic_s"], self.mapping["speed"],
                self.emu.start_utc)["realtime_minus_monotonic_ns"]
        doc = {"clock": self.mapping, "files": [{
            "file": str(job.dump.path.relative_to(self.run_dir)), "name": job.capture.name, "node": job.node,
            "interface": job.dump.interface or None, "link": list(job.capture.link) if job.capture.link else None,
            "filter": job.capture.filter, "snaplen": job.capture.snaplen, "start_s": job.capture.start_s,
            "stop_s": job.capture.stop_s, "started_s": job.started_s, "stopped_s": job.stopped_s,
            "exit_code": job.exit_code, **job.extra} for job in self.jobs]}
        path = self.run_dir / "capture.json"
        tmp = path.with_name("capture.json.part")
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(path)
        return doc
