"""The few C library calls Python's ``os`` lacks, loaded once: setns, unshare, prctl, timerfd, SCHED_FIFO.

Why here: namespaces, parent-death signals, timer slack and absolute-deadline timers are plain system calls that
``os`` does not wrap (Python 3.11), so they go through ``ctypes`` on the already-loaded C library. Each is
declared with its argument types once, and every failure raises an ``OSError`` carrying errno and naming what
was attempted, instead of returning -1 to a caller that might not look.

* :func:`setns` moves the *calling thread* into a namespace (``setns(2)``); :func:`unshare_net` gives it a new,
  empty network namespace. Other threads of the process stay where they are.
* :func:`die_with_parent` asks the kernel to signal this process when the thread that started it exits
  (``PR_SET_PDEATHSIG``), so that helper processes never outlive their controller; :func:`set_timer_slack_ns`
  stops the kernel from coalescing this process's timer wake-ups (the default slack is 50 us).
* :class:`TimerFd` is a ``CLOCK_MONOTONIC`` timer armed at absolute nanosecond deadlines, which an epoll
  timeout (whole milliseconds) cannot express.
* :func:`take_realtime_priority` puts the process in ``SCHED_FIFO``, so that a wake-up preempts ordinary work.
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_SET_TIMERSLACK = 29
CLOCK_MONOTONIC = 1
TFD_TIMER_ABSTIME = 1

libc = ctypes.CDLL(None, use_errno=True)
libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
libc.unshare.argtypes = (ctypes.c_int,)
libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def setns(fd: int, what: str, nstype: int = CLONE_NEWNET) -> None:
    """Move the calling thread into the namespace open as ``fd``; ``what`` names it in the error."""
    _check(libc.setns(fd, nstype), f"setns({what})")


def unshare_net() -> None:
    """Give the calling thread a new, empty network namespace of its own."""
    _check(libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")


def die_with_parent(signum: int) -> None:
    """Have the kernel send ``signum`` to this process when its parent (the thread that forked it) exits."""
    _check(libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def set_timer_slack_ns(slack_ns: int) -> None:
    """How late the kernel may fire this thread's timers to batch wake-ups (1: as exactly as it can)."""
    _check(libc.prctl(PR_SET_TIMERSLACK, slack_ns, 0, 0, 0), "prctl(PR_SET_TIMERSLACK)")


def take_realtime_priority(priority: int) -> OSError | None:
    """Run this process ``SCHED_FIFO`` at ``priority`` (``<= 0``: leave it ``SCHED_OTHER``).

    Returns the kernel's refusal (no CAP_SYS_NICE, or an RT budget of 0 in a container), None otherwise: the
    caller reports it, since timing without the priority is noisier and a user must be able to tell.
    """
    if priority <= 0:
        return None
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as exc:
        return exc
    return None


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
libc.timerfd_settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p]


class TimerFd:
    """A CLOCK_MONOTONIC timerfd armed at absolute nanosecond deadlines (what epoll's ms timeout cannot do)."""

    def __init__(self):
        self.fd = _check(libc.timerfd_create(CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC), "timerfd_create")
        self._spec = _Itimerspec()
        self._ref = ctypes.byref(self._spec)

    def arm_at_ns(self, deadline_ns: int) -> None:
        """Fire once when CLOCK_MONOTONIC reaches ``deadline_ns`` (``time.monotonic_ns()``'s clock)."""
        self._spec.it_value.tv_sec, self._spec.it_value.tv_nsec = divmod(deadline_ns, 1_000_000_000)
        if libc.timerfd_settime(self.fd, TFD_TIMER_ABSTIME, self._ref, None) != 0:  # the relay's hot path
            _check(-1, "timerfd_settime")

    def drain(self) -> None:
        """Read the expiry count, so that the fd stops being readable until the next expiry."""
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self.fd)


def malloc_trim() -> None:
    """Give the C allocator's free pages back to the kernel (glibc's ``malloc_trim(0)``, every arena): a thread
    that allocated and freed large arrays otherwise leaves them resident. A no-op where the call is missing."""
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


M_ARENA_MAX = -8  # glibc's mallopt parameter


def limit_malloc_arenas(n: int) -> bool:
    """Cap glibc's malloc arenas for this process at ``n`` (``mallopt(M_ARENA_MAX, n)``); False where missing.

    glibc gives a thread that allocates while another holds an arena's lock an arena of its own, up to 8 per CPU,
    and keeps each one's freed memory for re-use: a long-lived process whose threads come and go (a planner
    thread per plan window) grows by an arena's worth of resident pages at a time although nothing leaks.
    """
    mallopt = getattr(libc, "mallopt", None)
    return bool(mallopt is not None and mallopt(M_ARENA_MAX, int(n)) == 1)
