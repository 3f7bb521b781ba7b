"""Processes by identity, not by name: which PID is still the process we started, and how to stop a list of them.

A PID alone does not name a process for long: once the process exits, Linux may give the number to another one.
A process is therefore recorded as its PID plus its start time (field 22 of ``/proc/PID/stat``, in clock ticks
since boot), and a recorded process is only signalled while both still match (:func:`same_process`). Its network
namespace is named by the inode of ``/proc/PID/ns/net``, so that every process inside a namespace can be found
(:func:`processes_in`) without matching command lines.

:func:`stop_all` stops a list of PIDs the way a clean shutdown should: SIGTERM, a grace period for them to exit,
then SIGKILL for the rest. A process whose parent has not reaped it yet (a zombie) counts as gone.

:data:`RUN_ROOT` is the root of what lives only while runs are up (state files, daemon sockets);
``LASERNET_STATE_DIR`` moves it, for tests.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

RUN_ROOT = Path(os.environ.get("LASERNET_STATE_DIR", "/run/lasernet"))
KILL_WAIT_S = 5.0  # how long stop_all waits for SIGKILLed processes to go


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(raw[raw.rindex(")") + 2:].split()[19])


def netns_inode(pid: int) -> int | None:
    """The inode of the process's network namespace, None if gone."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def same_process(pid: int | None, start: int | None) -> bool:
    """Whether ``pid`` is still the process that had start time ``start`` when it was recorded."""
    return bool(pid) and start is not None and start_time(pid) == start


def is_zombie(pid: int) -> bool:
    """Whether the process has exited (gone, or a zombie its parent has not reaped)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return raw[raw.rindex(")") + 2] == "Z"


def processes_in(inodes: set[int]) -> list[int]:
    """PIDs of all processes (but this one) whose network namespace is one of ``inodes`` (one scan of /proc)."""
    pids = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me:
            ino = netns_inode(int(entry))
            if ino in inodes:
                pids.append(int(entry))
    return pids


def signal_all(pids, sig) -> None:
    """Send ``sig`` to every PID; one that is gone already is skipped."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def wait_gone(pids, timeout_s: float) -> list[int]:
    """Wait up to ``timeout_s`` for the processes to exit (reaping our own children); return those still alive."""
    deadline = time.monotonic() + timeout_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        for pid in alive:
            try:  # reap our own children; others disappear from /proc when their parent reaps them
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        alive = [p for p in alive if start_time(p) is not None and not is_zombie(p)]
        if alive:
            time.sleep(0.02)
    return alive


def stop_all(pids, grace_s: float) -> None:
    """SIGTERM the processes, SIGKILL those still there after ``grace_s``, and wait (KILL_WAIT_S more at most)."""
    signal_all(pids, signal.SIGTERM)
    left = wait_gone(pids, grace_s)
    signal_all(left, signal.SIGKILL)
    wait_gone(left, KILL_WAIT_S)
