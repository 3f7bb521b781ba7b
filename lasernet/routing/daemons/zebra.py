"""FRR's zebra: the daemon that owns a router's FIB; every other FRR daemon hands it its routes.

It starts first on every node (the protocol daemons connect to its ``zserv.api`` socket). Its configuration
gives the routes the protocol installs the node's loopback as preferred source, as the oracle's routes have.
"""

from __future__ import annotations

from ...spec.routing import RoutingConfig
from .base import NodeSpec
from .frr import FrrDaemon


class Zebra(FrrDaemon):
    """zebra: the FIB owner (template ``zebra.conf.j2``)."""

    name = "zebra"

    def extra(self, node: NodeSpec, cfg: RoutingConfig) -> dict:
        return {"protocol": cfg.protocol}  # whose routes get the loopback as source
