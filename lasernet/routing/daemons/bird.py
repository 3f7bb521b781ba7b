"""BIRD 2: one process per router that runs OSPF or Babel (plus BFD) and installs the routes itself.

Unlike FRR it needs no zebra: ``bird`` talks to the kernel's FIB directly. Its configuration ends with the
interface pattern ``"*"``, so links created after start need no commands (an OSPF link made later gets cost 10).
Babel's hello interval is in milliseconds; OSPF's routing table recalculation period (``tick``) follows the
scenario's SPF hold time, in whole seconds.
"""

from __future__ import annotations

from pathlib import Path

from ...spec.routing import RoutingConfig
from .base import Daemon, NodeSpec


class Bird(Daemon):
    """BIRD 2: one process per node for OSPF or Babel (+ BFD), control socket ``bird.ctl``."""

    name, template, ready_name = "bird", "bird.conf.j2", "bird.ctl"

    def argv(self, d: Path) -> list[str]:
        return ["bird", "-f", "-c", str(d / "bird.conf"), "-s", str(d / "bird.ctl"), "-P", str(d / "bird.pid")]

    def extra(self, node: NodeSpec, cfg: RoutingConfig) -> dict:
        return {"tick_s": max(1, round(cfg.spf_hold_ms / 1000)), "babel_hello_ms": int(round(cfg.hello_s * 1000))}
