"""The plan of a live run, in windows that join into one continuous plan: the window in force now, and the next.

A run of any length cannot be planned in one piece (an hour of ``starlink-shell1`` at 1 s steps is 3,600 x 9,400
link states), so the coordinator plans it in windows of ``window_s`` emulated seconds: the first before anything
is built (it validates the scenario), each next one in a background thread once 70% of the last has passed.
Every window continues the one before it exactly (:func:`lasernet.timeline.plan_next` from its
:class:`~lasernet.timeline.Carry`: kept satellites, terminals held, acquisition clocks), so that the states a run
applies are those of one plan over its whole span, whatever the window. A window starts at the last step of the
one before, so delays interpolate across the boundary as inside a window.

Windows the clock has left are released (``on_release`` lets the owner drop what it keyed on them). A window
that failed to plan raises its error in the next call, never leaving the run on a frozen last state.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Callable

from .. import timeline as tl_mod
from ..net.libc import malloc_trim
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
                    self.windows.append((nxt, tl_mod.plan_next(self.scenario, tl, self.window_s)))
                except BaseException as exc:  # raised by the next call, never a silently frozen plan
                    self._error = exc
                malloc_trim()  # planning's temporaries: back to the kernel, not kept resident by this thread

            self._next = threading.Thread(target=work, name="lasernet-plan", daemon=True)
            self._next.start()

    def close(self, timeout_s: float = 30.0) -> None:
        """Wait (at most ``timeout_s``) for a window being planned."""
        if self._next is not None and self._next.is_alive():
            self._next.join(timeout=timeout_s)

    def _join(self) -> None:
        self._next.join()
        self._next = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error
