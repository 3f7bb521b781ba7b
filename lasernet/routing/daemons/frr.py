"""What all FRR daemons share: one process per protocol, all talking to the node's zebra, which owns the FIB.

Each FRR daemon of a node reads ``<node dir>/<name>.conf``, writes its PID file there, reaches zebra over the
node's ``zserv.api`` socket and opens its vty socket in the node directory (``vtysh --vty_socket DIR`` reaches all
of them at once). They run as user ``frr``. FRR keeps a per-process crash-log directory ``/var/tmp/frr/<name>.<pid>``
that it removes when it stops cleanly but not when it is killed: :meth:`FrrDaemon.leftovers` names it.
"""

from __future__ import annotations

from pathlib import Path

from .base import Daemon

FRR_BIN = Path("/usr/lib/frr")
FRR_TMP = Path("/var/tmp/frr")  # FRR keeps a per-process crash-log directory <daemon>.<pid> here


class FrrDaemon(Daemon):
    """An FRR daemon: per-node config, PID file, zebra socket and vty socket directory; runs as user frr.
    Subclasses set ``name``."""

    def __init__(self):
        self.template, self.ready_name = f"{self.name}.conf.j2", f"{self.name}.vty"

    def argv(self, d: Path) -> list[str]:
        return [str(FRR_BIN / self.name), "-f", str(d / f"{self.name}.conf"), "-i", str(d / f"{self.name}.pid"),
                "-z", str(d / "zserv.api"), "--vty_socket", str(d), "-u", "frr", "-g", "frr", "-P", "0"]

    def leftovers(self, pid: int) -> list[Path]:
        return [FRR_TMP / f"{self.name}.{pid}"]
