"""Who is which AS under BGP, and which sessions exchange routes: the operators of ``routing.operators``.

Each operator (:mod:`lasernet.spec.routing`) owns a range of planes and is one AS to the outside, a BGP
confederation inside: satellite i of operator O is member AS ``MEMBER_ASN_BASE + i`` of the confederation
``O.asn``. Ground station k is AS ``ground_asn + k``. An operator with ``land_at`` lands only at those stations:
a session between one of its satellites and a station it does not list is kept up but exchanges no routes.
A station that carries no transit (``stubs``) exports only the prefixes it originates: a route it learnt from
one satellite never reaches another through it.
"""

from __future__ import annotations

from ...errors import ScenarioError
from ...spec.routing import MEMBER_ASN_BASE, RoutingConfig, operator_of, operators_uncovered
from .base import LinkSpec, NodeSpec


class BgpPlan:
    """The AS plan of one run (see the module docstring); nodes are the satellites first, then the stations."""

    def __init__(self, cfg: RoutingConfig, node_names, n_satellites: int, source: str = "routing", stubs=()):
        self.cfg, self.names, self.n_sat = cfg, list(node_names), n_satellites
        self.stubs = frozenset(stubs)
        self.index = {name: i for i, name in enumerate(node_names)}
        self.operator = {name: operator_of(cfg, name) for name in node_names[:n_satellites]}
        uncovered = operators_uncovered(cfg.operators, node_names[:n_satellites])  # load_scenario checked it too
        if uncovered:
            raise ScenarioError(source, "routing.operators", uncovered)
        self.member = {name: MEMBER_ASN_BASE + i for i, name in enumerate(node_names[:n_satellites])}

    def is_sat(self, name: str) -> bool:
        return self.index[name] < self.n_sat

    def asn(self, name: str) -> int:
        """The node's own AS (a satellite's member AS inside its confederation)."""
        return self.member[name] if self.is_sat(name) else self.cfg.ground_asn + self.index[name] - self.n_sat

    def asn_seen_from(self, me: str, peer: str) -> int:
        """The AS ``me`` configures for ``peer``: outside the confederation a satellite is its operator's AS."""
        if self.is_sat(peer) and not (self.is_sat(me) and self.operator[me] is self.operator[peer]):
            return self.operator[peer].asn
        return self.asn(peer)

    def allowed(self, me: str, peer: str) -> bool:
        """Whether the session between ``me`` and ``peer`` exchanges routes (landing policy)."""
        sat, station = (me, peer) if self.is_sat(me) else (peer, me)
        if not self.is_sat(sat) or self.is_sat(station):
            return True
        land = self.operator[sat].land_at
        return not land or station in land

    def neighbor(self, me: str, link: LinkSpec) -> dict:
        """The session over ``link`` as bgpd's template and link commands need it: ``export`` is the route map
        of what ``me`` sends (nothing where landing is not allowed, only its own prefixes from a stub station)."""
        allowed = self.allowed(me, link.peer)
        export = "lasernet-deny" if not allowed else "lasernet-own" if me in self.stubs else "lasernet-accept"
        return {"ip": link.peer_ip, "asn": self.asn_seen_from(me, link.peer), "name": link.peer,
                "allowed": allowed, "export": export}

    def node(self, spec: NodeSpec) -> dict:
        """``NodeSpec.bgp`` of a router: its AS, confederation and peers, sessions and LAN prefixes."""
        me = spec.name
        op = self.operator.get(me) if self.is_sat(me) else None
        peers = sorted(self.member[n] for n, o in self.operator.items() if o is op and n != me) if op else []
        return {"asn": self.asn(me), "confed": op.asn if op else None, "confed_peers": peers,
                "neighbors": [self.neighbor(me, link) for link in spec.links], "lan_prefixes": spec.lan_prefixes}
