"""Shortest-delay forwarding tables for every (source, destination) pair, and their per-tick differences.

The oracle is what an ideal link-state protocol with instant convergence would install: over the links that
are up, each with its one-way light delay, every node forwards towards every destination along a path of least
total delay. :func:`compute` returns a :class:`Routes` holding, for N nodes,

* ``next_hop[s, d]`` (int32): the neighbour ``s`` hands a packet for ``d`` to; -1 when ``d`` is unreachable
  from ``s`` and on the diagonal (a node does not route to itself);
* ``link[s, d]`` (int32): the index (into the caller's link arrays) of the link from ``s`` to that neighbour,
  the fastest one when several join the same pair; -1 where ``next_hop`` is -1;
* ``delay_s[s, d]`` (float64): the one-way delay of that path, ``inf`` when unreachable, 0 on the diagonal.

:func:`diff` lists the entries that changed between two tables, so that a driver installs only those routes;
:func:`path` walks a table from one node to another for reporting.

:class:`Oracle` gives the same tables step after step without computing them afresh: it keeps every
destination's shortest-path tree and repairs only where the new link states make it wrong
(:mod:`lasernet.routing.trees`), and lists the entries that changed. :func:`compute` (SciPy's Dijkstra from every
node) stays the reference it is tested against, and what one-off queries use.

How ties are broken
-------------------
Link delays are counted in whole nanoseconds (rounded; light travels 30 cm in 1 ns, far below orbit-model
error), and every link weighs ``delay_ns * 2**h + 1`` where ``2**h`` exceeds the longest possible path in hops.
Path weights are then integers below 2**53, added exactly in float64, and compare first by total delay
(ns) and then by hop count: among equal delays the path with fewer hops wins, with no epsilon that could ever
outweigh a real delay difference. Paths equal in both are left to the order in which SciPy's Dijkstra settles
nodes, which depends only on the input arrays, so the same input always gives the same table. ``delay_s`` is
the sum of the rounded link delays (exact to the nanosecond per hop).

Nodes that carry no transit
---------------------------
A ground station that must not relay (``transit: false`` in the scenario, the default for ground stations and
cities) may begin or end a path but never lie inside one: with two ground links up it would otherwise join two
satellites by a two-hop shortcut through the ground. :func:`compute` takes ``transit[N]`` and finds shortest
paths whose intermediate nodes all carry transit. A stub ``x`` is a node the search may reach but never leave, so
its outgoing edges are removed; as a destination it must be left, so it gets a twin, a node of its own that holds
``x``'s outgoing edges and roots the search towards ``x`` (the twin's tree is ``x``'s tree). One Dijkstra over
N + (number of stubs) nodes does it all.

Computation: one :func:`scipy.sparse.csgraph.dijkstra` over the symmetric graph from every destination; since
links are symmetric, the predecessor of ``s`` in the tree rooted at ``d`` is the next hop of ``s`` towards ``d``
(a path that avoids stubs inside it read backwards avoids them too).
Everything else is whole-array numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

NS_PER_S = 1e9
_FLOAT64_EXACT = 2.0 ** 53  # integers below this add exactly in float64


@dataclass(frozen=True)
class Routes:
    """The forwarding table of every node towards every other (see the module docstring)."""

    next_hop: np.ndarray  # (N, N) int32, -1 = none
    link: np.ndarray  # (N, N) int32, -1 = none
    delay_s: np.ndarray  # (N, N) float64, inf = unreachable
    hops: np.ndarray  # (N, N) int32, -1 = unreachable

    @property
    def n_nodes(self) -> int:
        return self.next_hop.shape[0]

    @property
    def reachable(self) -> np.ndarray:
        """(N, N) bool: ``d`` can be reached from ``s`` (False on the diagonal)."""
        return self.next_hop >= 0


def compute(n_nodes: int, a: np.ndarray, b: np.ndarray, up: np.ndarray, delay_s: np.ndarray,
            transit: np.ndarray | None = None) -> Routes:
    """Shortest-delay next hops of ``n_nodes`` nodes over links ``a[L] -- b[L]`` where ``up[L]``, each ``delay_s[L]``.

    Links are undirected and symmetric. Delays must be finite and >= 0 where up (a NaN delay on an up link is an
    error, not a silently missing link). ``transit[N]`` (bool; default: every node) says which nodes may relay:
    a path never passes through a node where it is False, though it may start or end there. Returns
    :class:`Routes`.
    """
    a, b, up, delay_s = _check_links(n_nodes, a, b, up, delay_s)
    stubs = _stubs(n_nodes, transit)
    ids = np.flatnonzero(up & (a != b))
    u, v = a[ids], b[ids]
    delay_ns = np.rint(delay_s[ids].astype(np.float64) * NS_PER_S)
    hop_bits = max(1, int(n_nodes).bit_length())  # 2**hop_bits > N - 1 >= any path's hop count
    scale = float(2 ** hop_bits)
    if (delay_ns.sum() + 1.0) * scale >= _FLOAT64_EXACT:
        raise ValueError(f"sum of link delays {delay_ns.sum() / NS_PER_S:.3f} s is too large for exact "
                         f"nanosecond path weights with {n_nodes} nodes")
    weight = delay_ns * scale + 1.0

    best = _fastest_link_per_pair(n_nodes, u, v, weight, ids)
    bu, bv, bw, bid = u[best], v[best], weight[best], ids[best]
    # Symmetric sparse graph (both directions), one entry per node pair.
    rows = np.concatenate([bu, bv])
    cols = np.concatenate([bv, bu])
    if len(stubs):
        dist, pred = _dijkstra_avoiding(n_nodes, rows, cols, np.concatenate([bw, bw]), stubs)
    else:
        graph = csr_matrix((np.concatenate([bw, bw]), (rows, cols)), shape=(n_nodes, n_nodes))
        dist, pred = dijkstra(graph, directed=True, return_predecessors=True)
    # dist[d, s] and pred[d, s] describe the tree rooted at destination d; transpose to [s, d].
    next_hop = pred.T.astype(np.int32, order="C")
    np.maximum(next_hop, -1, out=next_hop)  # SciPy marks "no predecessor" with -9999
    np.fill_diagonal(next_hop, -1)  # a stub's twin reaches the stub itself over a neighbour: not a route
    reach = next_hop >= 0
    weight_sd = np.where(reach, dist.T, 0.0).astype(np.int64)  # exact integers (see the module docstring)
    hops = np.where(reach, weight_sd & (2 ** hop_bits - 1), -1).astype(np.int32)
    delay = np.where(reach, (weight_sd >> hop_bits) / NS_PER_S, np.inf)
    np.fill_diagonal(hops, 0)
    np.fill_diagonal(delay, 0.0)
    link = _link_to_next_hop(n_nodes, bu, bv, bid, next_hop, reach)
    return Routes(next_hop=next_hop, link=link, delay_s=delay, hops=hops)


def diff(old: Routes | None, new: Routes) -> tuple[np.ndarray, np.ndarray]:
    """(source, destination) index arrays of the entries whose next hop or link differs from ``old`` to ``new``.

    With ``old=None`` every reachable entry of ``new`` is listed (the initial install). An entry whose new next
    hop is -1 is a route to withdraw; every other listed entry is a route to add or replace. Sorted by source,
    then destination, so that a driver can group them per node.
    """
    if old is None:
        changed = new.reachable
    else:
        if old.next_hop.shape != new.next_hop.shape:
            raise ValueError(f"tables of {old.n_nodes} and {new.n_nodes} nodes cannot be compared")
        changed = (old.next_hop != new.next_hop) | (old.link != new.link)
    src, dst = np.nonzero(changed)
    return src.astype(np.int32), dst.astype(np.int32)


def path(routes: Routes, source: int, destination: int) -> list[int]:
    """The nodes from ``source`` to ``destination`` (both included) along ``routes``; [] if unreachable."""
    if source == destination:
        return [source]
    if routes.next_hop[source, destination] < 0:
        return []
    nodes = [source]
    limit = routes.n_nodes
    while nodes[-1] != destination:
        nodes.append(int(routes.next_hop[nodes[-1], destination]))
        if len(nodes) > limit:
            raise RuntimeError(f"forwarding loop from {source} to {destination}: {nodes[:10]}...")
    return nodes


def aggregate(values: np.ndarray, address_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cover each row's per-address values with the fewest aligned prefixes of one value each (greedy, exact).

    ``values[s, x]`` is the next-hop identity (>= 0) of row ``s`` for address offset ``x`` (0 <= x <
    2**address_bits), ``DONT_CARE`` where any answer will do (no such address), and any other negative number
    where there must be no route (unreachable, or handled separately). A block of ``2**k`` addresses is emitted
    when all its cared-for addresses hold the same value >= 0 and its parent block does not; so every address
    with a value >= 0 is covered by exactly one emitted block carrying that value, and no other cared-for
    address is covered. Returns (row, first address offset, prefix length in bits of the host part k, value).
    """
    rows, width = values.shape
    if width != 1 << address_bits:
        raise ValueError(f"values must have 2**{address_bits} columns, got {width}")
    levels = [values.astype(np.int64)]
    for _ in range(address_bits):
        pair = levels[-1].reshape(rows, -1, 2)
        left, right = pair[:, :, 0], pair[:, :, 1]
        merged = np.where(left == DONT_CARE, right, np.where((right == DONT_CARE) | (right == left), left, MIXED))
        merged[(left == MIXED) | (right == MIXED)] = MIXED
        levels.append(merged)
    out = []
    for k, level in enumerate(levels):
        emit = level >= 0
        if k < address_bits:
            emit &= np.repeat(levels[k + 1] == MIXED, 2, axis=1)
        r, block = np.nonzero(emit)
        out.append((r, block << k, np.full(len(r), k), level[r, block]))
    return tuple(np.concatenate(parts) for parts in zip(*out))


DONT_CARE = -3
MIXED = -4


# ---------------------------------------------------------------------------------------------------------------
def _check_links(n_nodes, a, b, up, delay_s):
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    up = np.asarray(up, dtype=bool)
    delay_s = np.asarray(delay_s, dtype=np.float64)
    if not (a.shape == b.shape == up.shape == delay_s.shape) or a.ndim != 1:
        raise ValueError(f"a, b, up and delay_s must be 1-D of one length, got shapes "
                         f"{a.shape}, {b.shape}, {up.shape}, {delay_s.shape}")
    if len(a) and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n_nodes):
        raise ValueError(f"link endpoints must lie in 0..{n_nodes - 1}")
    bad = up & ~(np.isfinite(delay_s) & (delay_s >= 0))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{int(bad.sum())} up links have a delay that is not finite and >= 0, "
                         f"first: link {k} ({a[k]}-{b[k]}) delay_s={delay_s[k]}")
    return a, b, up, delay_s


def _stubs(n_nodes, transit) -> np.ndarray:
    """Indices of the nodes that carry no transit (``transit`` False), or none when ``transit`` is None."""
    if transit is None:
        return np.zeros(0, dtype=np.int64)
    transit = np.asarray(transit, dtype=bool)
    if transit.shape != (n_nodes,):
        raise ValueError(f"transit must have one entry per node ({n_nodes}), got shape {transit.shape}")
    return np.flatnonzero(~transit)


def _dijkstra_avoiding(n_nodes, rows, cols, weight, stubs):
    """dist and pred (N, N) of the trees rooted at every node, over paths with no stub inside them.

    The directed edges ``rows -> cols`` leaving a stub are moved to its twin (node N + k for the k-th stub): the
    search reaches a stub and stops there, and the tree of a stub destination grows from its twin. Predecessors
    that are twins are mapped back to their stubs.
    """
    twin = np.arange(n_nodes, dtype=np.int64)
    twin[stubs] = n_nodes + np.arange(len(stubs))
    size = n_nodes + len(stubs)
    graph = csr_matrix((weight, (twin[rows], cols)), shape=(size, size))
    dist, pred = dijkstra(graph, directed=True, indices=twin, return_predecessors=True)
    dist, pred = dist[:, :n_nodes], pred[:, :n_nodes]
    back = pred >= n_nodes
    pred[back] = stubs[pred[back] - n_nodes]
    return dist, pred


def _fastest_link_per_pair(n_nodes, u, v, weight, ids):
    """Positions (into u/v) of the lightest link of every unordered node pair; ties go to the lowest link id."""
    lo, hi = np.minimum(u, v), np.maximum(u, v)
    key = lo * n_nodes + hi
    order = np.lexsort((ids, weight, key))
    first = np.ones(len(order), bool)
    first[1:] = key[order][1:] != key[order][:-1]
    return order[first]


def _link_to_next_hop(n_nodes, u, v, link_ids, next_hop, reach):
    """(N, N) link id from every s to next_hop[s, d] (-1 where unreachable), by a dense node-pair lookup table."""
    table = np.full((n_nodes, n_nodes), -1, np.int32)
    table[u, v] = link_ids
    table[v, u] = link_ids
    index_type = np.int32 if n_nodes * n_nodes < 2 ** 31 else np.int64
    flat = np.arange(n_nodes, dtype=index_type)[:, None] * n_nodes + np.maximum(next_hop, 0).astype(index_type)
    return np.where(reach, np.take(table.ravel(), flat), -1).astype(np.int32)


class Oracle:
    """The oracle kept from step to step: :func:`compute`'s tables, repaired instead of recomputed.

    ``update(a, b, up, delay_s, transit)`` takes one step's link states (as :func:`compute` does) and returns the
    :class:`Routes` of that step, the same shortest delays and hop counts as :func:`compute` to the nanosecond,
    found by repairing the previous step's shortest-path trees where the new states make them wrong
    (:mod:`lasernet.routing.trees`). Between paths exactly equal in delay and hops the previous one is kept,
    where :func:`compute` picks by SciPy's settling order; both are shortest.

    The returned arrays are this object's own and change at the next ``update`` (copy what must be kept); they
    are transposed views of ``[destination, source]`` arrays. ``changed`` holds, after each update, the (source,
    destination) entries whose next hop or link differs from the previous update's (every reachable entry after
    the first), sorted by source then destination, as :func:`diff` gives them.
    """

    def __init__(self, n_nodes: int):
        self.n_nodes = n = int(n_nodes)
        self.hop_bits = max(1, n.bit_length())
        self._transit = None
        self.changed = (np.zeros(0, np.int32), np.zeros(0, np.int32))
        self._capacity = max(1 << 16, 4 * n)
        self._reset()

    def _reset(self) -> None:
        from .trees import INF

        n = self.n_nodes
        self._label = np.full((n, n), INF, np.int64)
        self._parent = np.full((n, n), -1, np.int32)
        self._parent_link = np.full((n, n), -1, np.int32)
        self._order = np.zeros((n, n), np.int32)
        self._n_order = np.zeros(n, np.int64)
        self._delay = np.empty((n, n), np.float64)
        self._hops = np.empty((n, n), np.int32)
        self._ends = None  # (L, 2): the two nodes of every link id seen up (-1: never)
        self._fresh = True

    def update(self, a, b, up, delay_s, transit=None, tables: bool = True) -> Routes:
        """The table of this step (see the class). With ``tables=False`` the returned :class:`Routes` has no
        ``delay_s`` and ``hops`` (None; filling them is a pass over all N**2 entries): :meth:`delay_s_at` gives
        the delays of chosen entries."""
        from . import trees

        n = self.n_nodes
        a, b, up, delay_s = _check_links(n, a, b, up, delay_s)
        stub = np.zeros(n, bool)
        stub[_stubs(n, transit)] = True
        if self._transit is not None and not np.array_equal(stub, self._transit):
            self._reset()  # a node that relayed in the old trees may not any more: start again
        self._transit = stub
        ids = np.flatnonzero(up & (a != b))
        if self._ends is not None:  # a link id must name the same two nodes from one update to the next
            known = ids[ids < len(self._ends)]
            seen = self._ends[known]
            if np.any((seen[:, 0] >= 0) & ((seen[:, 0] != a[known]) | (seen[:, 1] != b[known]))):
                self._reset()
        if self._ends is None:
            self._ends = np.full((len(a), 2), -1, np.int64)
        elif len(self._ends) < len(a):
            self._ends = np.concatenate([self._ends, np.full((len(a) - len(self._ends), 2), -1, np.int64)])
        self._ends[ids, 0], self._ends[ids, 1] = a[ids], b[ids]
        u, v = a[ids], b[ids]
        delay_ns = np.rint(delay_s[ids] * NS_PER_S)
        scale = float(2 ** self.hop_bits)
        if (delay_ns.sum() + 1.0) * scale >= _FLOAT64_EXACT:
            raise ValueError(f"sum of link delays {delay_ns.sum() / NS_PER_S:.3f} s is too large for exact "
                             f"nanosecond path weights with {n} nodes")
        weight = delay_ns.astype(np.int64) * (1 << self.hop_bits) + 1
        best = _fastest_link_per_pair(n, u, v, weight, ids)
        bu, bv, bw, bid = u[best], v[best], weight[best], ids[best]
        link_weight = np.full(len(self._ends), trees.INF, np.int64)  # ids of links gone are down
        link_weight[bid] = bw
        src = np.concatenate([bu, bv])
        order = np.argsort(src, kind="stable")
        target = np.concatenate([bv, bu])[order].astype(np.int32)
        indptr = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
        edge_weight = np.concatenate([bw, bw])[order]
        edge_link = np.concatenate([bid, bid])[order].astype(np.int32)
        fresh = self._fresh
        buffers = [np.empty(self._capacity, np.int32) for _ in range(4)]
        n_changes = np.zeros(1, np.int64)
        root = 0
        while root < n:
            root = trees.repair(indptr, target, edge_weight, edge_link, link_weight, stub, self.hop_bits,
                                self._label, self._parent, self._parent_link, self._order, self._n_order, root,
                                *buffers, n_changes)
            if root < n:  # the change lists are full: grow them and go on from that root
                self._capacity *= 2
                grown = [np.empty(self._capacity, np.int32) for _ in range(4)]
                for old, new in zip(buffers, grown):
                    new[:n_changes[0]] = old[:n_changes[0]]
                buffers = grown
        self._fresh = False
        if tables:
            trees.tables(self._label, self.hop_bits, NS_PER_S, self._delay, self._hops)
            routes = Routes(next_hop=self._parent.T, link=self._parent_link.T, delay_s=self._delay.T,
                            hops=self._hops.T)
        else:
            routes = Routes(next_hop=self._parent.T, link=self._parent_link.T, delay_s=None, hops=None)
        if fresh:
            s, d = np.nonzero(routes.reachable)
        else:
            k = n_changes[0]
            d, s = buffers[0][:k], buffers[1][:k]
            by = np.lexsort((d, s))
            s, d = s[by], d[by]
        self.changed = (s.astype(np.int32), d.astype(np.int32))
        return routes

    def delay_s_at(self, src, dst) -> np.ndarray:
        """One-way delays (s) of the shortest paths from ``src[k]`` to ``dst[k]`` of the last update (inf where
        unreachable, 0 from a node to itself)."""
        from .trees import INF

        label = self._label[np.asarray(dst), np.asarray(src)]
        return np.where(label >= INF, np.inf, (label >> self.hop_bits) / NS_PER_S)
