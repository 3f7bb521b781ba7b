"""Metrics an application records from inside a workload job, on the emulation's clock, for the report.

A workload job finds in its environment ``LASERNET_METRICS`` (a CSV path), ``LASERNET_T0_MONOTONIC`` and
``LASERNET_SPEED`` (see :mod:`lasernet.emulation.workload`). :class:`Metrics` appends ``t_s,metric,value`` rows
there, ``t_s`` in emulated seconds since the run's start, flushed at once so that a job stopped with SIGTERM keeps
what it recorded. Outside a run (no such variables) it writes to ``metrics.csv`` and counts from its creation::

    from lasernet.measure.appmetrics import Metrics
    metrics = Metrics()
    metrics.record("put_latency_ms", 12.3)
"""

from __future__ import annotations

import os
import threading
import time


class Metrics:
    def __init__(self, path: str | None = None):
        self.path = path or os.environ.get("LASERNET_METRICS", "metrics.csv")
        self.t0 = float(os.environ.get("LASERNET_T0_MONOTONIC", time.monotonic()))
        self.speed = float(os.environ.get("LASERNET_SPEED", "1.0"))
        new = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
        self._f = open(self.path, "a", buffering=1)
        self._lock = threading.Lock()  # rows from several threads stay whole
        if new:
            self._f.write("t_s,metric,value\n")

    def now_s(self, monotonic_s: float | None = None) -> float:
        """Emulated seconds since the run's start (of ``monotonic_s``, CLOCK_MONOTONIC seconds, or now)."""
        return self.speed * ((time.monotonic() if monotonic_s is None else monotonic_s) - self.t0)

    def record(self, metric: str, value: float, t_s: float | None = None) -> None:
        line = f"{self.now_s() if t_s is None else t_s:.4f},{metric},{float(value)!r}\n"
        with self._lock:
            self._f.write(line)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "Metrics":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
