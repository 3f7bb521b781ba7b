"""FRR's isisd: IS-IS level 2 over point-to-point circuits; the NET is derived from the loopback.

A router's NET is ``49.0001.<loopback as 12 digits in 3 groups>.00`` (10.255.0.5 -> 49.0001.0102.5500.0005.00),
so every system id is unique and readable. IS-IS has no dead interval: the hello multiplier is dead_s / hello_s
rounded up (at least 2). A link's interface block is the macro of ``templates/isisd.link.j2``; a link created
after start gets the same lines as vtysh commands (:meth:`Isisd.link_commands`).
"""

from __future__ import annotations

import math

from ...spec.routing import RoutingConfig
from .base import LinkSpec, NodeSpec, commands, link_macros
from .frr import FrrDaemon


def hello_multiplier(cfg: RoutingConfig) -> int:
    """How many hellos may be missed before the adjacency goes down: dead_s / hello_s, at least 2."""
    return max(2, math.ceil(cfg.dead_s / cfg.hello_s))


def net_of(loopback: str) -> str:
    """The IS-IS NET of the router with ``loopback``."""
    octets = "".join(f"{int(x):03d}" for x in loopback.split("."))  # 10.255.0.5 -> 010255000005
    return f"49.0001.{octets[0:4]}.{octets[4:8]}.{octets[8:12]}.00"


class Isisd(FrrDaemon):
    """isisd (template ``isisd.conf.j2``); uses bfdd's sessions with ``bfd: true``."""

    name = "isisd"

    def extra(self, node: NodeSpec, cfg: RoutingConfig) -> dict:
        return {"hello_multiplier": hello_multiplier(cfg), "net": net_of(node.loopback)}

    def link_commands(self, cfg: RoutingConfig, link: LinkSpec, node: NodeSpec | None, plan) -> list[str]:
        return ["configure terminal", *commands(link_macros(self.name).link(link, cfg, hello_multiplier(cfg)))]
