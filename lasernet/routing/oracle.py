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
