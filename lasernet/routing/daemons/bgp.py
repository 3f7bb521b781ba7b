"""FRR's bgpd: eBGP on every link, one session per /31, with the ASes and landing policies of the BGP plan.

Who is which AS, and which sessions exchange routes, is :class:`~lasernet.routing.daemons.bgp_plan.BgpPlan`'s
decision (written into ``NodeSpec.bgp`` before the configurations are rendered). A session that exchanges routes
uses the route map ``lasernet-accept`` both ways, one that must not (a station an operator does not land at)
``lasernet-deny``. A link created after start gets its session by vtysh commands (:meth:`Bgpd.link_commands`).
"""

from __future__ import annotations

from ..config import RoutingConfig
from .base import LinkSpec, NodeSpec
from .frr import FrrDaemon


class Bgpd(FrrDaemon):
    """bgpd (template ``bgpd.conf.j2``); uses bfdd's sessions with ``bfd: true``."""

    name = "bgpd"

    def extra(self, node: NodeSpec, cfg: RoutingConfig) -> dict:
        return {"bgp": node.bgp}

    def link_commands(self, cfg: RoutingConfig, link: LinkSpec, node: NodeSpec | None, plan) -> list[str]:
        n = plan.neighbor(node.name, link)
        policy = "lasernet-accept" if n["allowed"] else "lasernet-deny"
        return ["configure terminal", f"router bgp {plan.asn(node.name)}",
                f"neighbor {n['ip']} remote-as {n['asn']}", f"neighbor {n['ip']} advertisement-interval 0",
                f"neighbor {n['ip']} timers connect 1", "address-family ipv4 unicast",
                f"neighbor {n['ip']} next-hop-self", f"neighbor {n['ip']} route-map {policy} in",
                f"neighbor {n['ip']} route-map {policy} out"]
