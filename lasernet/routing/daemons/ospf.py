"""FRR's ospfd: OSPFv2 in one backbone area over point-to-point links; the loopback is the router id.

Every link is a point-to-point network with the scenario's hello and dead intervals and the link's cost as
metric; LAN interfaces are passive (advertised, never peered over). A link created after start is configured by
vtysh commands (:meth:`Ospfd.link_commands`), since FRR configures interfaces by name.
"""

from __future__ import annotations

from ..config import RoutingConfig
from .base import LinkSpec, NodeSpec
from .frr import FrrDaemon


class Ospfd(FrrDaemon):
    """ospfd (template ``ospfd.conf.j2``); uses bfdd's sessions with ``bfd: true``."""

    name = "ospfd"

    def link_commands(self, cfg: RoutingConfig, link: LinkSpec, node: NodeSpec | None, plan) -> list[str]:
        lines = ["ip ospf network point-to-point", f"ip ospf hello-interval {int(cfg.hello_s)}",
                 f"ip ospf dead-interval {int(cfg.dead_s)}", f"ip ospf retransmit-interval {cfg.retransmit_s}",
                 f"ip ospf cost {link.cost}"]
        lines += ["ip ospf bfd", "ip ospf bfd profile lasernet"] if cfg.bfd else []
        return ["configure terminal", f"interface {link.name}", *lines]
