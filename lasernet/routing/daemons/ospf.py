"""FRR's ospfd: OSPFv2 in one backbone area over point-to-point links; the loopback is the router id.

Every link is a point-to-point network with the scenario's hello and dead intervals and the link's cost as
metric; LAN interfaces are passive (advertised, never peered over). A link's interface block is the macro of
``templates/ospfd.link.j2``; a link created after start gets the same lines as vtysh commands
(:meth:`Ospfd.link_commands`), since FRR configures interfaces by name.
"""

from __future__ import annotations

from ...spec.routing import RoutingConfig
from .base import LinkSpec, NodeSpec, commands, link_macros
from .frr import FrrDaemon


class Ospfd(FrrDaemon):
    """ospfd (template ``ospfd.conf.j2``); uses bfdd's sessions with ``bfd: true``."""

    name = "ospfd"

    def link_commands(self, cfg: RoutingConfig, link: LinkSpec, node: NodeSpec | None, plan) -> list[str]:
        return ["configure terminal", *commands(link_macros(self.name).link(link, cfg))]
