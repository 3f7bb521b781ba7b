"""Shortest-path trees towards every node, repaired in place when the link weights change (compiled by Numba).

The oracle (:mod:`lasernet.routing.oracle`) needs, at every step, the shortest path from every node to every other.
Between two steps of an orbit every link's delay changes a little and a few links come or go, but most of the
trees rooted at the destinations stay right, or are wrong only in a small part: of the 2.8 million next hops at
``starlink-shell1`` size a few thousand change per second, spread over most of the 1,684 trees. A fresh Dijkstra
per tree redoes all of it; :func:`repair` redoes only what changed, and is exact:

1. **Re-weigh the old tree.** Walking the previous tree from its root in an order where parents come first (by
   hop count), each node's label becomes its parent's plus the *new* weight of its tree link (infinite if the
   link is down). Every label is then the length of a real path under the new weights: an upper bound.
2. **Find what is wrong.** Every link is checked once: where ``label[u] + w(u, v) < label[v]`` the tree is no
   longer shortest at ``v``. If no link is, the re-weighed tree *is* a shortest-path tree (its reduced costs
   are all >= 0), and nothing else is done.
3. **Correct from there.** The improved nodes go into a binary heap and a label-correcting search (Dijkstra's
   loop started from upper bounds instead of from infinity) runs until no link improves any label. Labels only
   decrease, every label is a path's length, and the search stops only when no link improves any: the labels
   are then the shortest distances, and the parents a shortest-path tree.

Weights are integers (the oracle's ``delay_ns * 2**h + 1``: delay first, then hop count), so the comparisons are
exact and a label's low ``h`` bits are its hop count, which gives step 1's order by a counting sort. A path equal
in both to the old one never replaces it (``<``, not ``<=``): between two exactly equal paths the tree keeps the one
it had, so ties cost no route changes. A node that may not relay (a *stub*: a ground station with ``transit:
false``) is never left except when it is the tree's root.

Arrays are indexed ``[root, node]``: ``parent[r, v]`` is the next node from ``v`` towards ``r``, which is the next
hop of ``v`` towards destination ``r`` (links are symmetric). The kernels are compiled on first use and cached on
disk (Numba's ``cache=True``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: A label no path has: the node is unreachable.
INF = np.int64(2 ** 62)


@njit(cache=True, nogil=True)
def _push(heap_key, heap_node, size, key, node):
    i = size
    heap_key[i], heap_node[i] = key, node
    while i > 0:
        up = (i - 1) >> 1
        if heap_key[up] <= heap_key[i]:
            break
        heap_key[i], heap_key[up] = heap_key[up], heap_key[i]
        heap_node[i], heap_node[up] = heap_node[up], heap_node[i]
        i = up
    return size + 1


@njit(cache=True, nogil=True)
def _pop(heap_key, heap_node, size):
    key, node = heap_key[0], heap_node[0]
    size -= 1
    heap_key[0], heap_node[0] = heap_key[size], heap_node[size]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        child = left
        if left + 1 < size and heap_key[left + 1] < heap_key[left]:
            child = left + 1
        if heap_key[i] <= heap_key[child]:
            break
        heap_key[i], heap_key[child] = heap_key[child], heap_key[i]
        heap_node[i], heap_node[child] = heap_node[child], heap_node[i]
        i = child
    return key, node, size


@njit(cache=True, nogil=True)
def _compact(heap_key, heap_node, size, lab):
    """Drop the heap's stale entries (a node pushed again with a lower label) and rebuild it: at most one entry
    per node is left, as labels only decrease and a node is pushed only when its label does."""
    keys, nodes = heap_key[:size].copy(), heap_node[:size].copy()
    size = 0
    for i in range(len(keys)):
        if keys[i] == lab[nodes[i]]:
            size = _push(heap_key, heap_node, size, keys[i], nodes[i])
    return size


@njit(cache=True, nogil=True)
def repair(indptr, target, edge_weight, edge_link, link_weight, stub, hop_bits, label, parent, parent_link,
           order, n_order, first_root, change_root, change_node, change_old_parent, change_old_link, n_changes):
    """Repair the trees of roots ``first_root``.. in place (see the module docstring); returns the next root to do.

    The graph is CSR: node ``u``'s links go to ``target[indptr[u]:indptr[u + 1]]`` with integer weights
    ``edge_weight`` and the caller's link ids ``edge_link``; ``link_weight[l]`` is link ``l``'s weight now (``INF``
    where it is down or not the lightest of its node pair). Per root ``r`` (rows of the (R, N) arrays):
    ``label`` (int64, ``INF`` = unreachable), ``parent`` and ``parent_link`` (int32, -1 = none), and ``order``
    with ``n_order[r]`` entries, the reachable nodes parents first. A call with every label ``INF``, every
    parent -1 and ``n_order`` 0 computes the trees from scratch.

    Every (root, node) whose parent or parent link ends different from what it was is appended to the
    ``change_*`` arrays (with its old parent and link) from position ``n_changes[0]``, which is advanced. When
    they are full the call stops before the root that might not fit and returns it; the caller grows them and
    calls again from there. Returns R when every root is done.
    """
    n_roots, n = label.shape
    mask = (np.int64(1) << hop_bits) - 1
    capacity = len(change_root)
    heap_key = np.empty(len(target) + n + 1, np.int64)
    heap_node = np.empty(len(target) + n + 1, np.int32)
    stamp = np.full(n, -1, np.int32)  # the root for which a node's old parent was saved
    saved_parent = np.empty(n, np.int32)
    saved_link = np.empty(n, np.int32)
    touched = np.empty(n, np.int32)
    count = np.zeros(2 * n + 2, np.int64)
    for r in range(first_root, n_roots):
        if capacity - n_changes[0] < n:
            return r
        lab, par, plink, ordr = label[r], parent[r], parent_link[r], order[r]
        n_touched = 0
        # 1. re-weigh the old tree, parents first
        lab[r] = 0
        for k in range(n_order[r]):
            v = ordr[k]
            if v == r:
                continue
            p = par[v]
            w = link_weight[plink[v]]
            if lab[p] >= INF or w >= INF:
                lab[v] = INF
            else:
                lab[v] = lab[p] + w
        # 2. every link once: where the re-weighed tree is not shortest
        size = 0
        for k in range(n_order[r]):
            u = ordr[k]
            du = lab[u]
            if du >= INF or (stub[u] and u != r):
                continue
            for e in range(indptr[u], indptr[u + 1]):
                v = target[e]
                nd = du + edge_weight[e]
                if nd < lab[v]:
                    if stamp[v] != r:
                        stamp[v] = r
                        saved_parent[v], saved_link[v] = par[v], plink[v]
                        touched[n_touched] = v
                        n_touched += 1
                    lab[v], par[v], plink[v] = nd, u, edge_link[e]
                    size = _push(heap_key, heap_node, size, nd, v)
                    if size == len(heap_key):
                        size = _compact(heap_key, heap_node, size, lab)
        if n_order[r] == 0:  # from scratch: the root is the only seed
            size = _push(heap_key, heap_node, size, np.int64(0), np.int32(r))
        # 3. label-correcting search from the improved nodes (the relaxation is written out again rather than
        #    called: a call per node, with its arrays, made the whole repair 7x slower under Numba)
        while size > 0:
            du, u, size = _pop(heap_key, heap_node, size)
            if du > lab[u] or (stub[u] and u != r):
                continue
            for e in range(indptr[u], indptr[u + 1]):
                v = target[e]
                nd = du + edge_weight[e]
                if nd < lab[v]:
                    if stamp[v] != r:
                        stamp[v] = r
                        saved_parent[v], saved_link[v] = par[v], plink[v]
                        touched[n_touched] = v
                        n_touched += 1
                    lab[v], par[v], plink[v] = nd, u, edge_link[e]
                    size = _push(heap_key, heap_node, size, nd, v)
                    if size == len(heap_key):
                        size = _compact(heap_key, heap_node, size, lab)
        # nodes whose tree link went down and that nothing reached again
        structure = n_touched > 0
        for k in range(n_order[r]):
            v = ordr[k]
            if lab[v] >= INF and par[v] >= 0:
                if stamp[v] != r:
                    stamp[v] = r
                    saved_parent[v], saved_link[v] = par[v], plink[v]
                    touched[n_touched] = v
                    n_touched += 1
                par[v], plink[v] = -1, -1
                structure = True
        par[r], plink[r] = -1, -1
        # what changed, against the values before this step
        c = n_changes[0]
        for k in range(n_touched):
            v = touched[k]
            if par[v] != saved_parent[v] or plink[v] != saved_link[v]:
                change_root[c], change_node[c] = r, v
                change_old_parent[c], change_old_link[c] = saved_parent[v], saved_link[v]
                c += 1
        n_changes[0] = c
        # 4. the order for the next step: reachable nodes by hop count (a parent has one hop fewer)
        if structure or n_order[r] == 0:
            max_hops = 0
            count[:] = 0
            for v in range(n):
                if lab[v] < INF:
                    h = lab[v] & mask
                    count[h + 1] += 1
                    if h > max_hops:
                        max_hops = h
            for h in range(max_hops + 1):
                count[h + 1] += count[h]
            for v in range(n):
                if lab[v] < INF:
                    h = lab[v] & mask
                    ordr[count[h]] = v
                    count[h] += 1
            n_order[r] = count[max_hops]
    return n_roots


@njit(cache=True, nogil=True)
def tables(label, hop_bits, ns_per_s, delay_s, hops):
    """Fill ``delay_s`` (float64, ``inf`` unreachable, 0 at the root) and ``hops`` (int32, -1 unreachable) from the
    labels, row by row (``[root, node]``)."""
    n_roots, n = label.shape
    mask = (np.int64(1) << hop_bits) - 1
    for r in range(n_roots):
        for v in range(n):
            x = label[r, v]
            if x >= INF:
                delay_s[r, v] = np.inf
                hops[r, v] = -1
            else:
                delay_s[r, v] = (x >> hop_bits) / ns_per_s
                hops[r, v] = x & mask
