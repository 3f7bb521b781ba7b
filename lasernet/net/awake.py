"""Keep every CPU out of its idle halt while a run is up, so that a timer or a packet wakes its process at once.

Why it exists: the emulator's fidelity is made of wake-ups. The delay-line relay sleeps until a frame is due, a
netem qdisc's hrtimer fires on a CPU that may be idle, a probe or an application sleeps in ``recv``. On a virtual
machine an idle vCPU executes ``HLT`` and leaves the host; the next interrupt has to get it scheduled again,
which makes a timer's wake-up several times slower and its tail (the 99th percentile) longer by orders of
magnitude than on a CPU kept busy, and every hop of a measured path pays it. (The README's Performance section
has the numbers.)

What it does: one process per CPU, pinned to it, running a busy loop under ``SCHED_IDLE`` (the scheduler's
lowest class: it runs only when nothing else at all wants that CPU, and any wake-up preempts it at once). This
is the user-space version of booting with ``idle=poll`` (or of the ``cpuidle-haltpoll`` driver), which a run
cannot change. The cost is the host CPU time of idle vCPUs, and ``top`` showing them 100 % busy; nothing in
the VM gets less CPU for it (turn it off with ``lasernet up --no-keep-awake`` or ``Emulation(keep_awake=False)``).

The spinners die with the process that started them (PR_SET_PDEATHSIG) and are listed in the run's state file,
so ``lasernet down`` removes them too. Run one by hand: ``python -m lasernet.net.awake --cpu 0``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

from . import libc


class CpuAwake:
    """One SCHED_IDLE spinner per CPU this process may run on: ``start()``, ``pids``, ``stop()``."""

    def __init__(self, cpus=None):
        self.cpus = sorted(cpus if cpus is not None else os.sched_getaffinity(0))
        self.procs: list[subprocess.Popen] = []

    def start(self) -> "CpuAwake":
        for cpu in self.cpus:
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "lasernet.net.awake", "--cpu", str(cpu), "--parent-pid", str(os.getpid())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, close_fds=True))
        return self

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()  # a busy loop holds nothing: SIGKILL is the clean way to end it
        for p in self.procs:
            p.wait()
        self.procs = []

    def __enter__(self) -> "CpuAwake":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m lasernet.net.awake", description=__doc__.split("\n")[0])
    p.add_argument("--cpu", type=int, required=True, help="the CPU to keep awake")
    p.add_argument("--parent-pid", type=int, default=0, help="exit at once if this process is already gone")
    args = p.parse_args(argv)
    libc.die_with_parent(signal.SIGKILL)
    if args.parent_pid and os.getppid() != args.parent_pid:
        return 1
    os.sched_setaffinity(0, {args.cpu})
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    while True:
        pass


if __name__ == "__main__":
    sys.exit(main())
