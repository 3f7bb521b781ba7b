"""Control groups for the servers of a run: a CPU quota, a memory limit and a freezer per server.

A Linux control group (cgroup) is a directory in a cgroup file system; the processes listed in its
``cgroup.procs`` share the limits written into its files, and a process's children are born in its group. Two
layouts exist:

* **v1** (Debian 12 here, older systems): one hierarchy per controller, each mounted at ``<root>/<controller>``.
  A server's group is the same path in three of them: ``cpu`` (``cpu.cfs_quota_us`` microseconds of CPU time per
  ``cpu.cfs_period_us``: quota/period is the number of cores it may use), ``memory`` (``memory.limit_in_bytes``,
  and ``memory.memsw.limit_in_bytes`` where swap accounting exists, so that the limit cannot be dodged by
  swapping) and ``freezer`` (``freezer.state``: ``FROZEN`` stops every process of the group, ``THAWED`` lets
  them go on where they were);
* **v2** (Ubuntu 24.04, the QEMU guest): one unified hierarchy at ``<root>``, a group's controllers enabled by its
  parent's ``cgroup.subtree_control``: ``cpu.max`` (``"<quota> <period>"`` or ``"max <period>"``),
  ``memory.max`` (bytes or ``max``; ``memory.swap.max`` 0) and ``cgroup.freeze`` (``1`` frozen, ``0`` thawed).

:class:`ServerCgroups` names the run's groups ``lasernet-<run-id>/<server>`` directly under each hierarchy's
root (in v2 only the root may hold processes beside child groups that have controllers enabled, so the parent
goes there, not beside the driver), creates them, moves a server's shell into its group before the shell starts
anything (so every later child is born inside), and changes quota and freezer state on request. Its
:meth:`~ServerCgroups.paths` are what a run's state file records; :func:`remove_groups` removes such paths
after the processes are gone (thawing first: a frozen v1 task does not act on SIGKILL until thawed).

This module knows nothing of lasernet's other modules; it writes files only, no shell commands.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000  # the CFS period: quotas are microseconds of CPU per 100 ms
MIN_QUOTA_US = 1_000  # the kernel's smallest cfs quota (1 ms per period)
V1_CONTROLLERS = ("cpu", "memory", "freezer")


class CgroupError(RuntimeError):
    """The machine's cgroups cannot do what was asked (controller missing, not root, ...)."""


def detect_version(root: Path = CGROUP_ROOT) -> int:
    """2 for a unified (v2) hierarchy at ``root``, 1 for v1 controllers mounted under it; else CgroupError."""
    root = Path(root)
    if (root / "cgroup.controllers").exists():
        return 2
    missing = [c for c in V1_CONTROLLERS if not (root / c / "cgroup.procs").exists()]
    if not missing:
        return 1
    raise CgroupError(f"no cgroup v2 at {root} and v1 controller(s) {', '.join(missing)} not mounted under it: "
                      f"server cpus/memory_mb and power states need them")


def quota_us(cpus: float) -> int:
    """CFS quota (us per PERIOD_US) for ``cpus`` cores, never below the kernel's minimum."""
    return max(MIN_QUOTA_US, int(round(cpus * PERIOD_US)))


def _write(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _read_pids(path: Path) -> list[int]:
    try:
        return [int(x) for x in path.read_text().split()]
    except OSError:
        return []


class ServerCgroups:
    """The cgroups of one run's servers (see the module docstring); ``root`` may be a fake directory in tests."""

    def __init__(self, run_id: str, root: Path = CGROUP_ROOT, version: int | None = None):
        self.root = Path(root)
        self.version = detect_version(self.root) if version is None else version
        self.parent = f"lasernet-{run_id}"
        self.cpus: dict[str, float | None] = {}  # server -> its cpus: (None: unlimited)
        self.frozen: dict[str, bool] = {}
        self.applied_cpus: dict[str, float | None] = {}  # server -> the quota in force (cores; None unlimited)

    # ------------------------------------------------------------------------------------------------ layout
    def _dirs(self, name: str | None = None) -> list[Path]:
        """The directories of a server's group (or of the run's parent), one per hierarchy."""
        rel = self.parent if name is None else f"{self.parent}/{name}"
        if self.version == 2:
            return [self.root / rel]
        return [self.root / c / rel for c in V1_CONTROLLERS]

    def _dir(self, name: str, controller: str) -> Path:
        return self.root / f"{self.parent}/{name}" if self.version == 2 else self.root / controller / self.parent / name

    def paths(self) -> list[str]:
        """Every directory this run's groups use, children before parents (what the state file records)."""
        out = [str(d) for name in self.cpus for d in self._dirs(name)]
        return out + [str(d) for d in self._dirs()]

    # ------------------------------------------------------------------------------------------------ making
    def create(self, name: str, cpus: float | None = None, memory_mb: int | None = None) -> None:
        """Make server ``name``'s group with ``cpus`` cores (None: no CPU limit) and ``memory_mb`` MiB (None: none)."""
        if self.version == 2:
            self._enable_v2(self.root)
            self.root.joinpath(self.parent).mkdir(exist_ok=True)
            self._enable_v2(self.root / self.parent)
        self.cpus[name], self.frozen[name] = cpus, False  # listed in paths() from now on, made or not
        for d in self._dirs():
            d.mkdir(exist_ok=True)
        for d in self._dirs(name):
            d.mkdir(exist_ok=True)
        self.set_cpus(name, cpus)
        if memory_mb is not None:
            limit = str(int(memory_mb) * 1024 * 1024)
            if self.version == 2:
                _write(self._dir(name, "memory") / "memory.max", limit)
                swap = self._dir(name, "memory") / "memory.swap.max"
                if swap.exists():
                    _write(swap, "0")
            else:
                mem = self._dir(name, "memory")
                _write(mem / "memory.limit_in_bytes", limit)
                if (mem / "memory.memsw.limit_in_bytes").exists():  # after limit_in_bytes: memsw >= limit
                    _write(mem / "memory.memsw.limit_in_bytes", limit)

    def _enable_v2(self, group: Path) -> None:
        """Enable the cpu and memory controllers for the children of ``group`` (v2)."""
        control = group / "cgroup.subtree_control"
        have = set(control.read_text().split()) if control.exists() else set()
        available = set((group / "cgroup.controllers").read_text().split()) if (group / "cgroup.controllers").exists() \
            else {"cpu", "memory"}
        want = [c for c in ("cpu", "memory") if c not in have]
        lacking = [c for c in want if c not in available]
        if lacking:
            raise CgroupError(f"cgroup v2 at {group}: controller(s) {', '.join(lacking)} not available")
        if want:
            _write(control, " ".join(f"+{c}" for c in want))

    def procs_files(self, name: str) -> list[str]:
        """The ``cgroup.procs`` files a process writes its PID into to join server ``name``'s group."""
        return [str(d / "cgroup.procs") for d in self._dirs(name)]

    def add_process(self, name: str, pid: int) -> None:
        """Move process ``pid`` (a server's shell, before it starts anything) into server ``name``'s group."""
        for d in self._dirs(name):
            _write(d / "cgroup.procs", str(pid))

    # ------------------------------------------------------------------------------------------------ power
    def set_cpus(self, name: str, cpus: float | None) -> None:
        """Let server ``name`` use ``cpus`` cores (None: no limit)."""
        cpu = self._dir(name, "cpu")
        if self.version == 2:
            _write(cpu / "cpu.max", f"{'max' if cpus is None else quota_us(cpus)} {PERIOD_US}")
        else:
            _write(cpu / "cpu.cfs_period_us", str(PERIOD_US))
            _write(cpu / "cpu.cfs_quota_us", str(-1 if cpus is None else quota_us(cpus)))
        self.applied_cpus[name] = cpus

    def freeze(self, name: str, frozen: bool) -> None:
        """Stop (``frozen``) or resume every process of server ``name``'s group where it was."""
        if self.version == 2:
            _write(self._dir(name, "freezer") / "cgroup.freeze", "1" if frozen else "0")
        else:
            _write(self._dir(name, "freezer") / "freezer.state", "FROZEN" if frozen else "THAWED")
        self.frozen[name] = frozen

    def pids(self, name: str) -> list[int]:
        """The processes of server ``name``'s group."""
        return _read_pids(self._dir(name, "cpu") / "cgroup.procs")

    def kill_except(self, name: str, keep: int) -> list[int]:
        """SIGKILL every process of server ``name``'s group but ``keep`` (its shell): a restart of what it ran.
        In a frozen v1 group the kill takes effect when the group is thawed. Answers the PIDs signalled."""
        killed = []
        for pid in self.pids(name):
            if pid == keep:
                continue
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        return killed

    # ------------------------------------------------------------------------------------------------ removal
    def remove(self) -> int:
        """Thaw and remove every group of the run (their processes must be gone or going). Answers how many
        directories were removed."""
        return remove_groups(self.paths())


def join_group(paths, name: str, pid: int) -> int:
    """Move process ``pid`` into server ``name``'s group among a run's recorded ``paths`` (its directories end in
    ``/<name>``), as ``lasernet exec`` does for itself. Answers how many hierarchies it joined."""
    joined = 0
    for path in map(Path, paths):
        if path.name == name and (path / "cgroup.procs").exists():
            _write(path / "cgroup.procs", str(pid))
            joined += 1
    return joined


def thaw_groups(paths) -> None:
    """Thaw cgroup directories ``paths`` (missing ones skipped): a frozen v1 task acts on no signal until then."""
    for path in map(Path, paths):
        for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            if (path / name).exists():
                try:
                    _write(path / name, value)
                except OSError:
                    pass


def remove_groups(paths, wait_s: float = 5.0) -> int:
    """Remove cgroup directories ``paths`` (children listed before parents): thaw each, SIGKILL what is left in
    it, then ``rmdir`` once empty (a group whose last process is exiting is busy for a moment). Missing ones are
    skipped. Answers how many were removed."""
    removed = 0
    for path in map(Path, paths):
        if not path.is_dir():
            continue
        thaw_groups([path])
        for pid in _read_pids(path / "cgroup.procs"):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while True:
            try:
                path.rmdir()
                removed += 1
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
    return removed
