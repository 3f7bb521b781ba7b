"""The plan of a live run, in windows that join into one continuous plan: the window in force now, and the next.

A run of any length cannot be planned in one piece (an hour of ``starlink-shell1`` at 1 s steps is 3,600 x 9,400
link states), so the coordinator plans it in windows of ``window_s`` emulated seconds: the first before anything
is built (it validates the scenario), each next one once 70% of the last has passed, by a child process
(``python -m lasernet.emulation.windows``, one per window) that a background thread waits for. Planning in a
child keeps its CPU off the ticking process's interpreter lock, and its thousands of temporary arrays out of the
long-lived driver's heap: planned in a thread, they left holes that the ticks' small allocations pinned, and the
driver's memory crept by ~1 MiB per 10 emulated minutes on ``mini``. The child gets the scenario and the last
window's :class:`~lasernet.timeline.Carry` and sends back the window, pickled (a 600 s ``starlink-shell1`` window
is ~20 MB); it ignores Ctrl-C, dies with the thread that started it, and is killed if the run stops first.
Every window continues the one before it exactly (:func:`lasernet.timeline.plan_next` from its
:class:`~lasernet.timeline.Carry`: kept satellites, terminals held, acquisition clocks), so that the states a run
applies are those of one plan over its whole span, whatever the window. A window starts at the last step of the
one before, so delays interpolate across the boundary as inside a window.

Windows the clock has left are released (``on_release`` lets the owner drop what it keyed on them). A window
that failed to plan raises its error in the next call, never leaving the run on a frozen last state.
"""

from __future__ import annotations

import datetime as dt
import os
import pickle
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

from .. import timeline as tl_mod
from ..net.libc import die_with_parent, malloc_trim
from ..spec.scenario import Scenario
from ..timeline import Timeline

#: How far into the last window the next one starts being planned.
PLAN_AHEAD_AT = 0.7


class PlanWindows:
    """The plan windows of one run: ``at(t_s)`` gives the one in force, ``plan_ahead(t_s)`` plans the next."""

    def __init__(self, scenario: Scenario, start_utc: dt.datetime, window_s: float, step_s: float,
                 on_release: Callable[[Timeline], None] | None = None):
        self.scenario, self.start_utc, self.window_s, self.step_s = scenario, start_utc, window_s, step_s
        self.on_release = on_release or (lambda tl: None)
        self.windows: list[tuple[float, Timeline]] = []  # (offset in emulated s since the start, window)
        self._next: threading.Thread | None = None
        self._error: BaseException | None = None  # what planning the next window raised
        self._child: subprocess.Popen | None = None  # the process planning the next window

    def first(self) -> Timeline:
        """Plan the first window (raises the scenario's errors before anything exists)."""
        first = tl_mod.plan(self.scenario, start=self.start_utc, duration_s=self.window_s, step_s=self.step_s)
        self.windows = [(0.0, first)]
        return first

    def at(self, t_s: float) -> tuple[Timeline, float]:
        """The window in force at ``t_s`` (emulated s since the start) and its offset; waits for it if need be."""
        for i in range(len(self.windows) - 1, -1, -1):
            offset, tl = self.windows[i]
            if offset <= t_s:
                if t_s - offset <= tl.offsets_s[-1] or self._next is None:
                    if i > 0:  # the clock has left the windows before this one: let them go
                        for _, old in self.windows[:i]:
                            self.on_release(old)
                        del self.windows[:i]
                        malloc_trim()  # and the pages their arrays held (freed here, on the ticking thread)
                    return tl, offset
                break
        if self._next is not None:  # past the last window: the next is being planned
            self._join()
            return self.at(t_s)
        return self.windows[-1][1], self.windows[-1][0]

    def plan_ahead(self, t_s: float) -> None:
        """Start planning the next window once ``PLAN_AHEAD_AT`` of the last has passed; raise what it raised."""
        if self._next is not None:
            if self._next.is_alive():
                return
            self._join()
        offset, tl = self.windows[-1]
        if t_s > offset + PLAN_AHEAD_AT * tl.offsets_s[-1]:
            nxt = offset + tl.offsets_s[-1]

            def work():  # continues the last window's plan exactly (its Carry), from its last step
                try:
                    self.windows.append((nxt, self._plan_in_child(tl)))
                except BaseException as exc:  # raised by the next call, never a silently frozen plan
                    self._error = exc
                malloc_trim()  # the pickle it came in: back to the kernel

            self._next = threading.Thread(target=work, name="lasernet-plan", daemon=True)
            self._next.start()

    def _plan_in_child(self, previous: Timeline) -> Timeline:
        """The window after ``previous``, planned by a child process (see the module docstring)."""
        package_root = str(Path(__file__).resolve().parents[2])  # this lasernet, whatever sys.path found it by
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [package_root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        child = subprocess.Popen([sys.executable, "-m", "lasernet.emulation.windows"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, env=env)
        self._child = child
        try:
            reply, _ = child.communicate(pickle.dumps((self.scenario, previous.carry, self.window_s), protocol=5))
        finally:
            self._child = None
        if child.returncode != 0 or not reply:
            raise RuntimeError(f"planning the window after {previous.start_utc.isoformat()} "
                               f"+ {previous.offsets_s[-1]:g} s: the planner process exited with {child.returncode}")
        ok, value = pickle.loads(reply)
        if not ok:
            raise value
        return value

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop planning: the window being planned, if any, is not waited for (its process is killed)."""
        child = self._child
        if child is not None and child.poll() is None:
            child.kill()
        if self._next is not None and self._next.is_alive():
            self._next.join(timeout=timeout_s)

    def _join(self) -> None:
        self._next.join()
        self._next = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def _serve() -> int:
    """The planner process: one (scenario, carry, window_s) pickled on stdin, (ok, window or error) on stdout."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's to handle; it kills this process
    die_with_parent(signal.SIGKILL)  # with the thread that started it, whatever ends the run
    if os.getppid() == 1:  # it ended before that took hold
        return 1
    scenario, carry, window_s = pickle.load(sys.stdin.buffer)
    try:
        reply = (True, tl_mod.plan(scenario, duration_s=window_s, carry=carry))
    except Exception as exc:  # the run raises it as the window's error
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:  # an error that does not survive the trip arrives as its type and text
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        reply = (False, exc)
    sys.stdout.buffer.write(pickle.dumps(reply, protocol=5))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_serve())
