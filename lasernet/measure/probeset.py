"""The scenario's probe pairs during a live run: UDP echo probes between nodes, compared with the plan.

For every pair ``{from: A, to: B, rate_hz: 20}`` an echo responder runs in B's namespace and a prober in A's,
both with CLOCK_MONOTONIC timestamps (:mod:`lasernet.measure.probes`). Each tick the driver tells the set the
oracle's current path and its one-way delays both ways; at the end every probe is matched with the prediction in
force when it was sent: predicted RTT = delay(A->B at send) + delay(B->A at send + forward delay). ``probes.csv``
gets one row per probe and the summary the median and p99 of measured - predicted.
"""

from __future__ import annotations

import json
from array import array
import signal
import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np

from .probes import terminate

PORT = 7777
RT_PRIORITY = 5  # below the relay's 10: probes measure the network, so the scheduler must not add to it


@dataclass
class _Pair:
    name: str
    src_name: str
    dst_name: str
    src: int  # router whose routes lead to src (the node itself, or a server's router)
    dst: int
    rate_hz: float
    responder: subprocess.Popen | None = None
    prober: subprocess.Popen | None = None
    # The prediction at every tick, compact (a run of hours has tens of thousands of ticks): times and one-way
    # delays as C doubles, the path as an index into the distinct paths seen.
    t_s: array = field(default_factory=lambda: array("d"))
    fwd_s: array = field(default_factory=lambda: array("d"))
    rev_s: array = field(default_factory=lambda: array("d"))
    path_ids: array = field(default_factory=lambda: array("i"))
    paths: list = field(default_factory=list)
    path_index: dict = field(default_factory=dict)


class ProbeSet:
    def __init__(self, pairs: list[tuple[str, str, float]], emulation):
        self.pairs = [_Pair(f"{s}>{d}", s, d, emulation.router_index(s), emulation.router_index(d), r)
                      for s, d, r in pairs]
        self.summary: dict = {}
        self.errors: dict[str, str] = {}

    def start(self, emulation, duration_s: float) -> None:
        """Start responders (waiting until they listen), then probers; both steps can be called apart."""
        self.start_responders(emulation)
        self.start_probers(emulation, duration_s)

    def start_responders(self, emulation) -> None:
        for k, p in enumerate(self.pairs):
            dst = emulation.node(p.dst_name)
            p.responder = dst.popen([sys.executable, "-m", "lasernet.measure.probes", "echo", "--port", str(PORT + k),
                                     "--rt-priority", str(RT_PRIORITY)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            line = p.responder.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"probe responder on {dst.name} did not start: {p.responder.stderr.read()[:300]}")

    def start_probers(self, emulation, duration_s: float) -> None:
        for k, p in enumerate(self.pairs):
            src, dst = emulation.node(p.src_name), emulation.node(p.dst_name)
            count = max(1, int(duration_s * p.rate_hz))
            p.prober = src.popen([sys.executable, "-m", "lasernet.measure.probes", "probe", "--target", dst.IP(),
                                  "--port", str(PORT + k), "--count", str(count), "--interval-s", str(1.0 / p.rate_hz),
                                  "--wait-s", "1.0", "--rt-priority", str(RT_PRIORITY)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def observe(self, t_s: float, delay_fn, path_fn) -> None:
        """Record the oracle's prediction for every pair at emulated time ``t_s``: ``delay_fn(src, dst)`` its
        one-way delay, ``path_fn(src, dst)`` its path as text."""
        for p in self.pairs:
            p.t_s.append(t_s)
            p.fwd_s.append(delay_fn(p.src, p.dst))
            p.rev_s.append(delay_fn(p.dst, p.src))
            path = path_fn(p.src, p.dst)
            pid = p.path_index.get(path)
            if pid is None:
                pid = p.path_index[path] = len(p.paths)
                p.paths.append(path)
            p.path_ids.append(pid)

    def finish(self, emulation, recorder) -> None:
        rows = []
        diffs_all = []
        for p in self.pairs:
            result = self._collect(p)
            if result is None:
                continue
            send_s = emulation.stamps_to_s(result["send_ns"], result.get("realtime_minus_monotonic_ns"))
            one_clock = emulation.machine_of(p.src) == emulation.machine_of(p.dst)
            send_ns, echo_ns, reply_ns, recv_ns = (np.asarray(result[k])
                                                   for k in ("send_ns", "echo_ns", "reply_ns", "recv_ns"))
            # The round trip without the responder's turnaround (see lasernet.measure.probes).
            rtt = np.where((recv_ns > 0) & (send_ns > 0), ((recv_ns - send_ns) - (reply_ns - echo_ns)) * 1e-9, np.nan)
            # One way: both stamps come from CLOCK_MONOTONIC, shared by every namespace of one machine (between
            # machines of a cluster there is no common clock fine enough: only the round trip is measured).
            fwd_meas = np.where((echo_ns > 0) & (send_ns > 0) & one_clock, (echo_ns - send_ns) * 1e-9, np.nan)
            t = np.asarray(p.t_s)
            fwd, rev = np.asarray(p.fwd_s), np.asarray(p.rev_s)
            diffs = []
            for seq, (ts, m) in enumerate(zip(send_s, rtt)):
                if result["send_ns"][seq] <= 0 or not len(t):
                    continue
                k = max(0, int(np.searchsorted(t, ts, side="right")) - 1)
                k2 = max(0, int(np.searchsorted(t, ts + fwd[k], side="right")) - 1)
                pred = fwd[k] + rev[k2]
                pred = None if not np.isfinite(pred) else float(pred)
                meas = None if np.isnan(m) else float(m)
                rows.append({"t_s": float(ts), "pair": p.name, "seq": seq, "measured_rtt_s": meas,
                             "predicted_rtt_s": pred, "path": p.paths[p.path_ids[k]],
                             "measured_fwd_s": None if np.isnan(fwd_meas[seq]) else float(fwd_meas[seq]),
                             "predicted_fwd_s": float(fwd[k]) if np.isfinite(fwd[k]) else None,
                             "predicted_fwd_prev_tick_s": float(fwd[max(k - 1, 0)]) if np.isfinite(fwd[max(k - 1, 0)])
                             else None})
                if meas is not None and pred is not None:
                    diffs.append(meas - pred)
            diffs_all += diffs
            sent = int(np.sum(np.asarray(result["send_ns"]) > 0))
            lost = int(np.sum(np.isnan(rtt) & (np.asarray(result["send_ns"]) > 0)))
            self.summary[p.name] = _stats(diffs) | {"sent": sent, "lost": lost}
        for name, why in self.errors.items():
            self.summary[name] = {"n": 0, "error": why}
        rows.sort(key=lambda r: (r["t_s"], r["pair"]))
        recorder.write_probes(rows)
        if diffs_all:
            self.summary["all"] = _stats(diffs_all)

    def _collect(self, p: _Pair):
        out = None
        if p.prober is not None:
            # A run that ends at its duration finds the prober finishing its last probes by itself. Its output is
            # read while waiting: a result longer than the pipe's 64 KiB would otherwise block the prober in its
            # write, and the SIGINT below would cut the line it is writing.
            try:
                stdout, stderr = p.prober.communicate(timeout=1.5)
            except subprocess.TimeoutExpired:
                p.prober.send_signal(signal.SIGINT)
                stdout = stderr = None
            try:
                if stdout is None:  # communicate again: what was read before the timeout is not lost
                    stdout, stderr = p.prober.communicate(timeout=30)
                lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
                out = json.loads(lines[-1]) if lines else None
                if out is None:
                    self.errors[p.name] = (stderr.strip().splitlines() or [f"exit {p.prober.returncode}"])[-1]
            except subprocess.TimeoutExpired:
                p.prober.kill()
                p.prober.wait()
                self.errors[p.name] = "prober did not finish within 30 s of the end"
        if p.responder is not None:
            terminate(p.responder)
        return out

    def stop(self) -> None:
        for p in self.pairs:
            for proc in (p.prober, p.responder):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()


def _stats(diffs: list[float]) -> dict:
    if not diffs:
        return {"n": 0}
    d = np.asarray(diffs) * 1e3
    return {"n": int(len(d)), "median_ms": float(np.median(d)), "p99_ms": float(np.percentile(d, 99)),
            "median_abs_ms": float(np.median(np.abs(d)))}
