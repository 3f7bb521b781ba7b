"""A live run's ``power.csv``: each power-modelled satellite's plan, step by step, beside the CPU quota applied.

A satellite with a ``power:`` model has, at every plan step, an illumination (sunlit 1, penumbra between, umbra
0), a battery state of charge, a power state (``nominal``, ``throttled``, ``off``) and the CPU quota factor that
state gives its servers (:mod:`lasernet.power`). ``lasernet plan --power`` writes those columns for a plan
(:meth:`lasernet.timeline.Timeline.write_power_csv`); a live run writes the same ones for the steps it covered,
with ``t_s`` (emulated seconds since the run's start) after ``time_utc`` and ``cpu_quota_applied`` last: the
factor the run's servers on that satellite were running with at the end of the step, as the coordinator last
sent it to their cgroups (empty for a satellite that carries no server). Where ``cpu_quota`` and
``cpu_quota_applied`` differ, the run did not apply its plan (a tick overran past a whole step, say).

A run's plan comes in windows (:mod:`lasernet.emulation.windows`). A window's rows are written when the clock
leaves it, by a thread of this module, so that formatting thousands of rows never lands inside a tick; the
windows still in force at the end are written by :meth:`PowerLog.close`, up to the last tick. A window starts at
the last step of the one before, so that step is written once, from the later window. A run killed without its
teardown keeps the rows of the windows it had left (``events.csv`` has every applied power state as it came).
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import queue
import threading
from pathlib import Path

import numpy as np

log = logging.getLogger("lasernet")

COLUMNS = ("time_utc", "t_s", "satellite", "illumination", "soc", "state", "cpu_quota", "solar_w", "load_w",
           "cpu_quota_applied")


class PowerLog:
    """Writes ``power.csv`` for one run: :meth:`applied` as the ticks set quotas, :meth:`released` per window
    the clock left, :meth:`close` at the end."""

    def __init__(self, path: str | Path, start_utc: dt.datetime, served_satellites):
        self.path = Path(path)
        self.start_utc = start_utc
        self.served = sorted({int(s) for s in served_satellites})
        self._changes: dict[int, tuple[list[float], list[float]]] = {s: ([], []) for s in self.served}
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._file = None
        self.rows = 0

    def applied(self, t_s: float, satellite: int, factor: float) -> None:
        """The servers of ``satellite`` run at CPU quota ``factor`` from emulated time ``t_s`` on."""
        times, factors = self._changes[int(satellite)]  # a satellite that carries servers (served_satellites)
        if not factors or factors[-1] != factor:
            times.append(float(t_s))
            factors.append(float(factor))

    def released(self, tl) -> None:
        """The clock left window ``tl``: write its steps but the last (the next window's first)."""
        self._put(tl, None, drop_last=True)

    def close(self, windows, until_s: float) -> int:
        """Write the windows still held (``(offset, timeline)`` pairs, in order: the one in force, perhaps the next
        already planned) up to emulated time ``until_s`` (each but the last without its last step), wait for the
        writer and close the file; returns the number of rows written."""
        for i, (_, tl) in enumerate(windows):
            self._put(tl, until_s, drop_last=i < len(windows) - 1)
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._file is not None:
            self._file.close()
            self._file = None
        return self.rows

    # ---------------------------------------------------------------------------------------------------------
    def _put(self, tl, until_s: float | None, drop_last: bool) -> None:
        snapshot = {s: (np.array(t), np.array(f)) for s, (t, f) in self._changes.items()}  # the ticks go on
        self._queue.put((tl, until_s, drop_last, snapshot))
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="lasernet-power-csv", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._write(*item)
            except Exception as exc:  # a results problem must not stop the run
                log.error("writing %s failed: %s", self.path, exc)

    def _write(self, tl, until_s: float | None, drop_last: bool, changes: dict) -> None:
        offset = (tl.start_utc - self.start_utc).total_seconds()
        t = offset + np.asarray(tl.offsets_s, dtype=float)
        keep = np.ones(len(t), dtype=bool) if until_s is None else t <= until_s + 1e-9
        if drop_last:  # the next window's first step
            keep[-1:] = False
        steps = np.flatnonzero(keep)
        if self._file is None:
            self._file = self.path.open("w", newline="")
            self._csv = csv.writer(self._file)
            self._csv.writerow(COLUMNS)
        if not len(steps):
            return
        sats = tl.power_satellites()
        rows = tl.power_rows(steps, sats)
        t_end = t[steps] + tl.step_s
        n, names = len(sats), sats.tolist()
        none = [""] * len(steps)
        applied = dict.fromkeys(names, none)  # a satellite without servers: nothing applied
        for s in self.served:  # the factor in force at each step's end: the last change before it
            times, factors = changes[s]
            if s in applied and len(times):
                k = np.searchsorted(times, t_end, side="left") - 1
                applied[s] = [f"{factors[i]:.3g}" if i >= 0 else "" for i in k.tolist()]
        t_steps = t[steps].tolist()
        self._csv.writerows([r[0], f"{t_steps[i // n]:.3f}", *r[1:], applied[names[i % n]][i // n]]
                            for i, r in enumerate(rows))
        self._file.flush()
        self.rows += len(rows)
