"""What ``lasernet down`` removes of a run's routing daemons besides their processes, from the state file alone.

The run's state records the daemons' directory (``/run/lasernet/<run-id>``: configs, sockets, logs) and every
daemon process (name, PID, start time). After a crash the processes are stopped by the teardown like any other;
what they leave outside their directory is each daemon class's to name (:meth:`Daemon.leftovers`: FRR's crash-log
directory ``/var/tmp/frr/<name>.<pid>``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ...net.procs import RUN_ROOT
from .suite import DAEMONS


def remove_leftovers(routing: dict) -> int:
    """Remove the recorded daemons' leftovers and the run's daemon directory (the ``routing`` entry of a run's
    state); return how many paths were removed."""
    removed = 0
    for entry in routing.get("processes", []):
        cls = DAEMONS.get(entry.get("daemon"))
        for path in cls().leftovers(entry.get("pid")) if cls and entry.get("pid") else []:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
    d = Path(routing.get("dir", ""))
    if d.is_dir() and d.parent == RUN_ROOT:  # only a directory of ours
        shutil.rmtree(d, ignore_errors=True)
        removed += 1
    return removed
