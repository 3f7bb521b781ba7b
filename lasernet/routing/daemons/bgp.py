"""FRR's bgpd: eBGP on every link, one session per /31, with the ASes and landing policies of the BGP plan.

Who is which AS, and which sessions exchange routes, is :class:`~lasernet.routing.daemons.bgp_plan.BgpPlan`'s
decision (written into ``NodeSpec.bgp`` before the configurations are rendered). A session that exchanges routes
uses the route map ``lasernet-accept`` both ways, one that must not (a station an operator does not land at)
``lasernet-deny``; residency rules and the defences against a hijack add route maps, prefix lists and prefix
limits per session (the plan's module docstring says which). A session's lines are the macros of ``templates/bgpd.link.j2``; a link created after start
gets its session from the same lines as vtysh commands (:meth:`Bgpd.link_commands`).
"""

from __future__ import annotations

from ...spec.routing import RoutingConfig
from .base import LinkSpec, NodeSpec, commands, link_macros
from .frr import FrrDaemon


class Bgpd(FrrDaemon):
    """bgpd (template ``bgpd.conf.j2``); uses bfdd's sessions with ``bfd: true``."""

    name = "bgpd"

    def extra(self, node: NodeSpec, cfg: RoutingConfig) -> dict:
        return {"bgp": node.bgp}

    def link_commands(self, cfg: RoutingConfig, link: LinkSpec, node: NodeSpec | None, plan) -> list[str]:
        n, macros = plan.neighbor(node.name, link), link_macros(self.name)
        return ["configure terminal", *commands(macros.definitions(n)), f"router bgp {plan.asn(node.name)}",
                *commands(macros.session(n, cfg)),
                "address-family ipv4 unicast", *commands(macros.session_af(n))]
