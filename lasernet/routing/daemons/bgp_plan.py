"""Who is which AS under BGP, and which routes each session takes and gives: operators, residency, defences.

Each operator (:mod:`lasernet.spec.routing`) owns a range of planes and is one AS to the outside, a BGP
confederation inside: satellite i of operator O is member AS ``MEMBER_ASN_BASE + i`` of the confederation
``O.asn``. Ground station k is AS ``ground_asn + k``. An operator with ``land_at`` lands only at those stations:
a session between one of its satellites and a station it does not list is kept up but exchanges no routes.
A station that carries no transit (``stubs``) exports only the prefixes it originates: a route it learnt from
one satellite never reaches another through it.

Residency rules (:mod:`lasernet.spec.policy`) become BGP communities. Rule k's members (the sites of its
jurisdiction J) tag the prefixes they originate (loopback, server LANs) with ``RESIDENCY_COMMUNITY_ASN:k+1``.
A router the rule binds (one it allows, or a member) accepts a route carrying that community only from a peer the
rule trusts (an allowed node, or a member sending its own prefixes): a satellite of an operator the rule does
not allow, or a station outside its ``land_at``, is never a next hop towards a J site at an allowed router or a
J site. By induction along the FIBs, traffic from a J site to a J site crosses only allowed nodes, or has no route
(unreachable, as the rule asks). A member outside ``land_at`` that relays exports only its own tagged prefixes.

What BGP cannot express: it routes by destination, not by source. The forbidden routers still learn the J
routes (from allowed neighbours) and use them, so traffic from anywhere else reaches J sites through them; but
traffic towards a J site that enters an allowed router stays on allowed routers whatever its source (an
Ashburn-to-Frankfurt packet handed to an EU satellite follows the EU-only path, or is dropped where the EU
satellites cannot reach Frankfurt on their own). The oracle routes such non-governed pairs unconstrained; the FIB
watcher's ``violating_pairs`` (which walks the kernels' FIBs) is the judge of what the daemons did.

Defences against a hijack (``prefix_filters``, ``max_prefixes``): each session's inbound prefix list is what its
peer may originate or carry (a stub station: its own prefixes exactly; a satellite or a transit station: any
loopback /32 or server-LAN /24 of lasernet's pools, nothing more specific), and its maximum-prefix limit what the
plan says that peer may send (``auto``) or the scenario's numbers; FRR counts every prefix the peer sends
(``force``) and tears the session down above the limit, until the run ends.
"""

from __future__ import annotations

import ipaddress

from ...addressing import LAN_POOL, LOOPBACK_POOL, loopback_ip
from ...errors import ScenarioError
from ...spec.routing import MEMBER_ASN_BASE, RoutingConfig, operator_of, operators_uncovered
from .base import LinkSpec, NodeSpec

#: Residency rule k's community is ``RESIDENCY_COMMUNITY_ASN:(k + 1)`` (64512: the first private 16-bit AS).
RESIDENCY_COMMUNITY_ASN = 64512
#: What a satellite or a transit station may carry: any node's loopback /32, any server LAN's /24.
CARRY = ((str(LOOPBACK_POOL), 32, 32), (str(LAN_POOL), 24, 24))


def residency_community(k: int) -> str:
    return f"{RESIDENCY_COMMUNITY_ASN}:{k + 1}"


class BgpPlan:
    """The AS plan of one run (see the module docstring); nodes are the satellites first, then the stations.

    ``residency``: the rules as ``[(name, members, allowed)]`` with node-name sets; ``lans``: every node's server
    LAN prefixes by name (for the prefix filters and limits; a node not listed has none)."""

    def __init__(self, cfg: RoutingConfig, node_names, n_satellites: int, source: str = "routing", stubs=(),
                 residency=(), lans=None):
        self.cfg, self.names, self.n_sat = cfg, list(node_names), n_satellites
        self.stubs = frozenset(stubs)
        self.index = {name: i for i, name in enumerate(node_names)}
        self.operator = {name: operator_of(cfg, name) for name in node_names[:n_satellites]}
        uncovered = operators_uncovered(cfg.operators, node_names[:n_satellites])  # load_scenario checked it too
        if uncovered:
            raise ScenarioError(source, "routing.operators", uncovered)
        self.member = {name: MEMBER_ASN_BASE + i for i, name in enumerate(node_names[:n_satellites])}
        self.rules = [(str(name), frozenset(members), frozenset(allowed)) for name, members, allowed in residency]
        self.lans = {name: list(p) for name, p in (lans or {}).items()}

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

    # ------------------------------------------------------------------------------------------ residency
    def tags(self, me: str) -> list[int]:
        """The rules whose community ``me`` tags its own prefixes with (those it is a member of)."""
        return [k for k, (_, members, _) in enumerate(self.rules) if me in members]

    def refused(self, me: str, peer: str) -> list[int]:
        """The rules whose routes ``me`` refuses from ``peer``: it is bound by them (allowed or a member) and
        the peer is neither allowed nor a member."""
        return [k for k, (_, members, allowed) in enumerate(self.rules)
                if (me in members or me in allowed) and peer not in members and peer not in allowed]

    def ends_only(self, me: str) -> list[int]:
        """The rules of which ``me`` is a member outside ``land_at``: it may not relay their routes."""
        return [k for k, (_, members, allowed) in enumerate(self.rules) if me in members and me not in allowed]

    # ------------------------------------------------------------------------------------------ defences
    def own_prefixes(self, name: str) -> list[str]:
        """What ``name`` originates: its loopback /32 and its server LANs."""
        return [f"{loopback_ip(self.index[name])}/32", *self.lans.get(name, [])]

    def carries_transit(self, name: str) -> bool:
        return self.is_sat(name) or name not in self.stubs

    def prefix_list(self, peer: str) -> dict:
        """The inbound prefix list of a session with ``peer``: name and ``(prefix, ge, le)`` entries."""
        if self.carries_transit(peer):
            return {"name": "lasernet-carry", "entries": list(CARRY)}
        return {"name": f"lasernet-from-{peer}",
                "entries": [(p, ipaddress.ip_network(p).prefixlen, None) for p in self.own_prefixes(peer)]}

    def max_prefixes(self, peer: str) -> int | None:
        """The session's limit on what ``peer`` sends (None: none)."""
        limits = self.cfg.max_prefixes
        if limits is None:
            return None
        if limits.auto:
            if self.carries_transit(peer):
                return len(self.names) + sum(len(p) for p in self.lans.values())
            return len(self.own_prefixes(peer))
        return limits.transit if self.carries_transit(peer) else limits.stub

    # ------------------------------------------------------------------------------------------ sessions
    def neighbor(self, me: str, link: LinkSpec) -> dict:
        """The session over ``link`` as bgpd's template and link commands need it: ``import``/``export`` are the
        route maps of what ``me`` takes and sends (nothing where landing is not allowed; no route of a rule from a
        peer it does not trust; only its own prefixes from a stub station), ``maps`` their definitions,
        ``prefix_list`` and ``max_prefixes`` the defences (None: off)."""
        peer = link.peer
        allowed = self.allowed(me, peer)
        refused, ends = self.refused(me, peer), self.ends_only(me)
        if not allowed:
            imp = exp = "lasernet-deny"
        else:
            imp = "lasernet-res-in-" + "-".join(map(str, refused)) if refused else "lasernet-accept"
            exp = ("lasernet-own" if me in self.stubs else
                   "lasernet-res-end-" + "-".join(map(str, ends)) if ends else "lasernet-accept")
        maps = []
        if imp.startswith("lasernet-res-in-"):
            maps.append({"name": imp, "own_first": False, "deny": refused})
        if exp.startswith("lasernet-res-end-"):
            maps.append({"name": exp, "own_first": True, "deny": ends})
        return {"ip": link.peer_ip, "asn": self.asn_seen_from(me, peer), "name": peer, "allowed": allowed,
                "import_map": imp, "export": exp, "maps": maps,
                "prefix_list": self.prefix_list(peer) if self.cfg.prefix_filters else None,
                "max_prefixes": self.max_prefixes(peer)}

    def node(self, spec: NodeSpec) -> dict:
        """``NodeSpec.bgp`` of a router: its AS, confederation and peers, sessions, LAN prefixes, the residency
        communities (``communities``, all rules; ``tags``, its own) and the route maps and prefix lists its
        sessions use (each once)."""
        me = spec.name
        op = self.operator.get(me) if self.is_sat(me) else None
        peers = sorted(self.member[n] for n, o in self.operator.items() if o is op and n != me) if op else []
        neighbors = [self.neighbor(me, link) for link in spec.links]
        maps = {m["name"]: m for n in neighbors for m in n["maps"]}
        lists = {n["prefix_list"]["name"]: n["prefix_list"] for n in neighbors if n["prefix_list"]}
        return {"asn": self.asn(me), "confed": op.asn if op else None, "confed_peers": peers,
                "neighbors": neighbors, "ends_only": bool(self.ends_only(me)), "lan_prefixes": spec.lan_prefixes,
                "communities": [{"k": k, "name": name, "value": residency_community(k)}
                                for k, (name, _, _) in enumerate(self.rules)],
                "tags": [residency_community(k) for k in self.tags(me)],
                "maps": list(maps.values()), "prefix_lists": list(lists.values())}
