"""Routes under residency rules: the oracle's shortest-delay paths, with a governed pair kept on the nodes its
rule allows.

A residency rule (:mod:`lasernet.spec.policy`) governs the traffic between two of its *members* (the sites of
one jurisdiction) and allows that traffic to cross only some nodes (its operators' satellites, its ground
sites). Routing under it is source-dependent, as a VRF per rule would be: a packet between two members follows
the shortest-delay path over the allowed nodes, any other packet the plain oracle's. :func:`compute` therefore
returns a :class:`PolicyRoutes` holding

* ``base``: the oracle's table over every node (:func:`lasernet.routing.oracle.compute`), and
* one :class:`RuleTable` per rule: the oracle over the rule's allowed nodes and its members only (a link
  touching any other node counts as down), with the same stub stations (``transit``) as the base table, and the
  members the rule does not allow (a site outside its ``land_at``) as stubs too: ends of their own traffic only.

A governed pair with no allowed path is unreachable: it is never routed through a forbidden node, however much
shorter that would be. The difference between a governed pair's allowed and unconstrained delay is the delay cost
of sovereignty (:mod:`lasernet.routing.query` reports it). Rules are given as arrays over the nodes, as a plan
keeps them (``Timeline.residency_members`` and ``residency_allowed``, (R, N) bool): a node is a member of one
rule at most (a site answers to one jurisdiction), so a pair is governed by the rule of its source when its
destination is a member of the same rule.

Beside routing, two judgements on arrays: :func:`violations` counts the governed pairs whose path (or walk along
a next-hop table, such as the FIBs a watcher reads) crosses a forbidden node, and :func:`check_plan` refuses a
scenario whose rule cuts members apart for the whole start of its plan (a rule that can never be met is a
mistake in the scenario, better said before a run than found in its results).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from ..errors import ScenarioError
from . import oracle

#: How far into a plan :func:`check_plan` looks for a moment at which a rule's members can reach each other.
CHECK_HORIZON_S = 120.0


@dataclass(frozen=True)
class RuleTable:
    """The oracle over the nodes one rule allows: ``routes`` is indexed by position in ``nodes`` (the allowed
    nodes' indices, ascending), ``position[N]`` maps a node to it (-1: forbidden), ``link_ids`` maps the table's
    link indices back to the caller's."""

    rule: str
    nodes: np.ndarray  # (M,) int64
    position: np.ndarray  # (N,) int64, -1 = forbidden
    routes: oracle.Routes  # over the M allowed nodes
    link_ids: np.ndarray  # (links given to it,) int64: the caller's link index

    def reachable(self, s: int, d: int) -> bool:
        ps, pd = self.position[s], self.position[d]
        return bool(ps >= 0 and pd >= 0 and (ps == pd or self.routes.next_hop[ps, pd] >= 0))

    def path(self, s: int, d: int) -> list[int]:
        """The nodes from ``s`` to ``d`` over the allowed nodes (both included); [] if there is no such path."""
        if not self.reachable(s, d):
            return []
        return [int(self.nodes[i]) for i in oracle.path(self.routes, int(self.position[s]), int(self.position[d]))]

    def links(self, s: int, d: int) -> list[int]:
        """The caller's indices of the links the path from ``s`` to ``d`` takes ([] if none)."""
        if not self.reachable(s, d):
            return []
        ps, pd = int(self.position[s]), int(self.position[d])
        return [int(self.link_ids[self.routes.link[u, pd]]) for u in oracle.path(self.routes, ps, pd)[:-1]]


@dataclass(frozen=True)
class PolicyRoutes:
    """The base oracle table and one table per residency rule (see the module docstring)."""

    base: oracle.Routes
    rules: tuple[RuleTable, ...]
    member_rule: np.ndarray  # (N,) int64: the rule a node is a member of, -1 = none

    def rule_of(self, s: int, d: int) -> int:
        """The rule governing traffic from ``s`` to ``d`` (both its members), or -1."""
        k = int(self.member_rule[s])
        return k if k >= 0 and s != d and int(self.member_rule[d]) == k else -1

    def governed(self) -> np.ndarray:
        """(N, N) int: the rule governing each (source, destination) pair, -1 where none does."""
        k = self.member_rule
        out = np.where((k[:, None] == k[None, :]) & (k[:, None] >= 0), k[:, None], -1)
        np.fill_diagonal(out, -1)
        return out

    def path(self, s: int, d: int) -> list[int]:
        """The nodes from ``s`` to ``d``: over the governing rule's allowed nodes, else the base table's."""
        k = self.rule_of(s, d)
        return self.rules[k].path(s, d) if k >= 0 else oracle.path(self.base, s, d)

    def links(self, s: int, d: int) -> list[int]:
        """The caller's indices of the links :meth:`path` takes."""
        k = self.rule_of(s, d)
        if k >= 0:
            return self.rules[k].links(s, d)
        nodes = oracle.path(self.base, s, d)
        return [int(self.base.link[u, d]) for u in nodes[:-1]]

    def next_hop(self, s: int, d: int) -> int:
        """The neighbour ``s`` hands a packet for ``d`` to (-1: unreachable, or ``s == d``)."""
        nodes = self.path(s, d) if s != d else []
        return nodes[1] if len(nodes) > 1 else -1

    def unsatisfiable(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rule, source, destination), source < destination, of the governed pairs with no allowed path."""
        out = []
        for k, table in enumerate(self.rules):
            members = np.flatnonzero(self.member_rule == k)
            pos = table.position[members]
            reach = np.zeros((len(members), len(members)), dtype=bool)
            ok = pos >= 0
            reach[np.ix_(ok, ok)] = table.routes.reachable[np.ix_(pos[ok], pos[ok])]
            i, j = np.nonzero(~reach & np.triu(np.ones_like(reach), 1))
            out.append((np.full(len(i), k), members[i], members[j]))
        if not out:
            return tuple(np.zeros(0, dtype=np.int64) for _ in range(3))
        return tuple(np.concatenate(parts).astype(np.int64) for parts in zip(*out))


def compute(n_nodes: int, a: np.ndarray, b: np.ndarray, up: np.ndarray, delay_s: np.ndarray,
            transit: np.ndarray | None = None, members: np.ndarray | None = None, allowed: np.ndarray | None = None,
            names: tuple[str, ...] = ()) -> PolicyRoutes:
    """The base oracle table over links ``a[L] -- b[L]`` (as :func:`lasernet.routing.oracle.compute` takes them)
    and one table per rule over its ``allowed[k]`` nodes (``members`` and ``allowed``: (R, N) bool; ``names``:
    the rules' names). Returns :class:`PolicyRoutes`."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    up, delay_s = np.asarray(up, dtype=bool), np.asarray(delay_s, dtype=np.float64)
    members, allowed = _rules(n_nodes, members, allowed)
    transit = np.ones(n_nodes, dtype=bool) if transit is None else np.asarray(transit, dtype=bool)
    base = oracle.compute(n_nodes, a, b, up, delay_s, transit=transit)
    tables = []
    for k in range(len(members)):
        keep = allowed[k] | members[k]
        nodes = np.flatnonzero(keep)
        position = np.full(n_nodes, -1, dtype=np.int64)
        position[nodes] = np.arange(len(nodes))
        ids = np.flatnonzero(up & keep[a] & keep[b])
        routes = oracle.compute(len(nodes), position[a[ids]], position[b[ids]], np.ones(len(ids), dtype=bool),
                                delay_s[ids], transit=(transit & allowed[k])[nodes])
        tables.append(RuleTable(names[k] if k < len(names) else str(k), nodes, position, routes, ids))
    return PolicyRoutes(base, tuple(tables), _member_rule(members))


def of_timeline(timeline, up: np.ndarray, delay_s: np.ndarray) -> PolicyRoutes:
    """:func:`compute` over a plan's links in the state ``up[L]``, ``delay_s[L]`` (NaN delays of down links
    allowed), with the plan's stub stations and residency rules."""
    links = timeline.links
    return compute(len(timeline.node_names), links.a, links.b, up, np.where(np.isnan(delay_s), 0.0, delay_s),
                   transit=timeline.transit, members=timeline.residency_members,
                   allowed=timeline.residency_allowed, names=timeline.residency)


def violating_pairs(next_hop: np.ndarray, members: np.ndarray, allowed: np.ndarray):
    """(rule, source, destination) of the governed pairs whose walk along ``next_hop[N, N]`` (the neighbour each
    node hands a packet for each destination to, -1: none) crosses a node the rule forbids on the way (the two
    ends are the pair's own).

    A walk that ends without arriving (no next hop, or a loop) is judged on the nodes it crossed. All pairs of a
    rule walk at once, one hop per numpy step."""
    next_hop = np.asarray(next_hop)
    n = next_hop.shape[0]
    members, allowed = _rules(n, members, allowed)
    out = []
    for k in range(len(members)):
        m = np.flatnonzero(members[k])
        s, d = np.repeat(m, len(m)), np.tile(m, len(m))
        s, d = s[s != d], d[s != d]
        here, bad, walking = s.copy(), np.zeros(len(s), dtype=bool), np.ones(len(s), dtype=bool)
        for _ in range(n):
            if not walking.any():
                break
            hop = np.where(walking, next_hop[here, d], -1)
            walking &= hop >= 0
            here = np.where(walking, hop, here)
            arrived = here == d
            bad |= walking & ~arrived & ~allowed[k, here]
            walking &= ~bad & ~arrived
        out.append((np.full(int(bad.sum()), k), s[bad], d[bad]))
    if not out:
        return tuple(np.zeros(0, dtype=np.int64) for _ in range(3))
    return tuple(np.concatenate(parts).astype(np.int64) for parts in zip(*out))


def violations(route, members: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """(R,) int: per rule, how many governed pairs cross a node it forbids along ``route``, which is either a
    next-hop table ``[N, N]`` (every governed pair walked, :func:`violating_pairs`) or one path, a sequence of
    node indices from its source to its destination (0 or 1 for the rule governing its two ends, judged on the
    nodes between them)."""
    route = np.asarray(route)
    members, allowed = np.asarray(members, dtype=bool), np.asarray(allowed, dtype=bool)
    counts = np.zeros(len(members), dtype=np.int64)
    if route.ndim == 2:
        rule, _, _ = violating_pairs(route, members, allowed)
        return counts + np.bincount(rule, minlength=len(members))
    if len(route) < 2:
        return counts
    s, d = int(route[0]), int(route[-1])
    governs = members[:, s] & members[:, d] & (s != d)
    counts[governs & ~allowed[:, route[1:-1]].all(axis=1)] = 1
    return counts


def check_plan(timeline, source: str, horizon_s: float = CHECK_HORIZON_S) -> None:
    """Raise :class:`ScenarioError` naming ``policy.residency[k]`` (in scenario file ``source``) when two of rule
    k's members are joined at some step of the plan's first ``horizon_s`` seconds without the rule, but at none
    under it: only nodes the rule forbids join them. Connectivity over up links and relaying nodes only, every
    step (one sparse connected-components labelling per step and rule)."""
    if not timeline.residency or not len(timeline.offsets_s):
        return
    steps = np.flatnonzero(timeline.offsets_s <= timeline.offsets_s[0] + horizon_s + 1e-9)
    n, links = len(timeline.node_names), timeline.links
    everything = np.ones(n, dtype=bool)
    for k, name in enumerate(timeline.residency):
        m = np.flatnonzero(timeline.residency_members[k])
        allowed = timeline.residency_allowed[k]
        keep = allowed | timeline.residency_members[k]
        ruled = np.zeros((len(m), len(m)), dtype=bool)
        free = np.zeros((len(m), len(m)), dtype=bool)
        for t in steps:
            up = timeline.up[t]
            ruled |= _joined(n, links.a, links.b, up, keep, timeline.transit & allowed, m)
            free |= _joined(n, links.a, links.b, up, everything, timeline.transit, m)
        cut = free & ~ruled
        if cut.any():
            i, j = (int(x[0]) for x in np.nonzero(np.triu(cut, 1)))
            names = timeline.node_names
            span = float(timeline.offsets_s[steps[-1]] - timeline.offsets_s[0])
            raise ScenarioError(Path(source).name, f"policy.residency[{k}]",
                                f"{names[m[i]]} and {names[m[j]]} (jurisdiction {name}) are joined without the "
                                f"rule but never under it in the plan's first {span:g} s: only nodes it forbids "
                                f"join them; allow more operators (operators) or ground sites (land_at)")


# ---------------------------------------------------------------------------------------------------------------
def _rules(n_nodes: int, members, allowed) -> tuple[np.ndarray, np.ndarray]:
    members = np.zeros((0, n_nodes), dtype=bool) if members is None else np.asarray(members, dtype=bool)
    allowed = np.ones(members.shape, dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    if members.ndim != 2 or members.shape[1] != n_nodes or allowed.shape != members.shape:
        raise ValueError(f"members and allowed must be (rules, {n_nodes}) arrays, got {members.shape} and "
                         f"{allowed.shape}")
    return members, allowed


def _member_rule(members: np.ndarray) -> np.ndarray:
    if not len(members):
        return np.full(members.shape[1], -1, dtype=np.int64)
    if (members.sum(axis=0) > 1).any():
        raise ValueError("a node is a member of two residency rules; a site answers to one jurisdiction")
    return np.where(members.any(axis=0), members.argmax(axis=0), -1).astype(np.int64)


def _joined(n: int, a, b, up, keep, relay, members) -> np.ndarray:
    """(M, M) bool: which of the ``members`` (node indices) reach each other over up links among ``keep`` nodes,
    relaying only through ``keep`` nodes that may ``relay`` (a member may start or end a path whatever it is)."""
    edge = up & (a != b) & keep[a] & keep[b]
    u, v = a[edge], b[edge]
    relay = keep & np.asarray(relay, dtype=bool)
    inner = relay[u] & relay[v]
    graph = csr_matrix((np.ones(int(inner.sum())), (u[inner], v[inner])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    pos = np.full(n, -1, dtype=np.int64)
    pos[members] = np.arange(len(members))
    # each member touches the relay components it is in or next to
    rows = [pos[members][relay[members]], pos[u][(pos[u] >= 0) & relay[v]], pos[v][(pos[v] >= 0) & relay[u]]]
    cols = [label[members][relay[members]], label[v][(pos[u] >= 0) & relay[v]], label[u][(pos[v] >= 0) & relay[u]]]
    r, c = np.concatenate(rows), np.concatenate(cols)
    touch = csr_matrix((np.ones(len(r)), (r, c)), shape=(len(members), n))
    joined = (touch @ touch.T).toarray() > 0
    direct = (pos[u] >= 0) & (pos[v] >= 0)  # two members linked to each other
    joined[pos[u][direct], pos[v][direct]] = True
    joined[pos[v][direct], pos[u][direct]] = True
    np.fill_diagonal(joined, False)
    return joined
