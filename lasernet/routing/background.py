"""The oracle in a background process: shortest-delay routes for large networks without stalling the tick.

Even repaired rather than recomputed (:class:`lasernet.routing.oracle.Oracle`), a table of 1,684 nodes takes a
large share of a 0.1 s tick, and the first request's, built from scratch, several ticks; both hold the GIL, so a thread would stall the tick just the same. :class:`OracleProcess` runs the
computation in a separate process: the driver hands it the link states of one tick (``submit``) and goes on
ticking; when the process has finished, the next tick picks up (``poll``) only the entries that changed since the
table the process sent before, and installs them. The process keeps its :class:`~lasernet.routing.oracle.Oracle`
from request to request, with the driver's link *slots* as its link identities (link indices differ from one
planning window to the next; slots do not), so its trees carry over windows too.

What this costs in accuracy, and what is recorded: routes follow the link states of the tick they were computed
from, so they lag the emulated time by one computation plus up to one tick (``Result.t_s`` is the emulated time
of the states used; the driver records the lag at install). Link delays keep following the orbit every tick
(the backend is updated each tick); only the *choice* of path is late. A link that goes down keeps routes
pointing at it until the next result (packets over it are lost for that long), as with a real routing protocol
that has not converged yet. Small networks (``mini``) do not use this: the driver computes in the tick.

Hysteresis (``keep_within_s``, default 50 us): a next hop is changed only when the new path beats the old one
by more than that (see :func:`keep_near_best_at`: loop-free, at most ``hops * keep_within_s`` from the best),
which cuts the route churn of a +Grid's near-ties by orders of magnitude. The entries the table changed and the
entries kept against it are judged at each request; no other entry can have changed.

The wire between the two is a socket pair carrying :mod:`multiprocessing.connection` pickles; a request is the
link arrays of one tick (a few kilobytes), a result is the changed (source, destination) entries with their new next hop and link *slot* (the
driver's stable link identity, so that diffs stay right across planning windows whose link indices differ).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass
class Result:
    """Changed entries of the forwarding table: ``slot[k] == -1`` withdraws the route from src[k] to dst[k]."""

    t_s: float  # emulated time of the link states this was computed from
    src: np.ndarray
    dst: np.ndarray
    next_hop: np.ndarray
    slot: np.ndarray
    compute_s: float  # wall time the process spent


def _serve(conn, n_nodes: int, keep_within_s: float) -> None:
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.nice(10)  # the tick (and the relay) come first: a result a little later costs less than a late tick
    from . import oracle

    table = oracle.Oracle(n_nodes)  # repaired from request to request (lasernet.routing.trees)
    sent_next = np.full((n_nodes, n_nodes), -1, np.int32)  # what the driver holds: the table, or a kept next hop
    sent_slot = np.full((n_nodes, n_nodes), -1, np.int32)
    kept = (np.zeros(0, np.int64), np.zeros(0, np.int64))  # entries where that differs from the table
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        t_s, a, b, usable, delay, slots, transit = msg
        t0 = time.monotonic()
        # The oracle's links are the driver's slots, one identity per link for the whole run (link indices differ
        # from one planning window to the next), so that its trees carry over.
        have = np.flatnonzero(np.asarray(slots) >= 0)
        n_slots = int(slots[have].max()) + 1 if len(have) else 0
        sa, sb = np.zeros(n_slots, np.int64), np.ones(n_slots, np.int64)
        s_up, s_delay = np.zeros(n_slots, bool), np.zeros(n_slots)
        at = slots[have]
        sa[at], sb[at], s_up[at], s_delay[at] = a[have], b[have], usable[have], delay[have]
        routes = table.update(sa, sb, s_up, s_delay, transit=transit, tables=False)
        src, dst = table.changed
        if len(kept[0]):  # a kept next hop is judged again at every step, the table's entry changed or not
            key = np.union1d(src.astype(np.int64) * n_nodes + dst, kept[0] * n_nodes + kept[1])
            src, dst = key // n_nodes, key % n_nodes
        next_hop = routes.next_hop[src, dst]
        link = routes.link[src, dst]
        slot = np.where(link >= 0, link, -1).astype(np.int32)
        if keep_within_s > 0:
            keep, kept_slot = keep_near_best_at(n_nodes, table.delay_s_at, src, dst, next_hop, sent_next[src, dst],
                                                sa, sb, s_up, s_delay, keep_within_s, transit)
            next_hop = np.where(keep, sent_next[src, dst], next_hop)
            slot = np.where(keep, kept_slot, slot).astype(np.int32)
            kept = (src[keep], dst[keep])
        differs = (next_hop != sent_next[src, dst]) | (slot != sent_slot[src, dst])
        src, dst, next_hop, slot = src[differs], dst[differs], next_hop[differs], slot[differs]
        sent_next[src, dst], sent_slot[src, dst] = next_hop, slot
        try:
            conn.send((t_s, src.astype(np.int32), dst.astype(np.int32), next_hop.astype(np.int32),  # a Result
                       slot, time.monotonic() - t0))
        except (BrokenPipeError, OSError):  # the driver stopped while we computed
            return


def keep_near_best(n_nodes, routes, next_hop, slot, prev_next, a, b, usable, delay, slots, within_s,
                   transit=None) -> int:
    """Keep a previous next hop wherever its path is still within ``within_s`` of the best (in place).

    In a +Grid many paths are almost equally long, and as satellites move the best of them changes every few
    hundred milliseconds; without this, thousands of routes flip back and forth per second for microseconds of
    gain. ``next_hop`` and ``slot`` (N, N) are the new table's, changed in place; ``prev_next`` the previous one;
    see :func:`keep_near_best_at` for the rule. Returns how many entries were kept.
    """
    cand_s, cand_d = np.nonzero((next_hop != prev_next) & (prev_next >= 0) & (next_hop >= 0))
    keep, link = keep_near_best_at(n_nodes, lambda s, d: routes.delay_s[s, d], cand_s, cand_d,
                                   next_hop[cand_s, cand_d], prev_next[cand_s, cand_d], a, b, usable, delay, within_s,
                                   transit)
    ks, kd = cand_s[keep], cand_d[keep]
    next_hop[ks, kd] = prev_next[ks, kd]
    slot[ks, kd] = np.asarray(slots)[link[keep]]
    return int(keep.sum())


def keep_near_best_at(n_nodes, delay_s_at, src, dst, new_next, old_next, a, b, usable, delay, within_s,
                      transit=None) -> tuple[np.ndarray, np.ndarray]:
    """Which of the entries (``src[k]``, ``dst[k]``) keep their old next hop ``old_next[k]`` instead of the
    table's ``new_next[k]``, and over which link (the fastest up link to it; -1 where not kept).
    ``delay_s_at(sources, destinations)`` gives the shortest delays ``D`` of the new table.

    A kept next hop ``o`` of ``s`` towards ``d`` satisfies ``w(s, o) + D(o, d) <= D(s, d) + within_s`` with
    ``D`` the shortest delays of ``routes``; as long as ``within_s`` is below the smallest link delay,
    ``D(o, d) < D(s, d)`` along every hop, so forwarding stays loop-free. A path is then at most
    ``hops * within_s`` longer than the best. A previous next hop that carries no transit (``transit[o]``
    False) is kept only when it is the destination itself, so a kept path never relays through a stub station.
    """
    src, dst = np.asarray(src, np.int64), np.asarray(dst, np.int64)
    old = np.asarray(old_next, np.int64)
    none = (np.zeros(len(src), bool), np.full(len(src), -1, np.int64))
    a, b = np.asarray(a), np.asarray(b)
    up = np.flatnonzero(np.asarray(usable) & (a != b))
    if len(up) == 0 or len(src) == 0:
        return none
    d_up = np.asarray(delay, float)[up]
    within_s = min(within_s, 0.5 * float(d_up.min()))
    cand = (old != np.asarray(new_next)) & (old >= 0) & (np.asarray(new_next) >= 0)
    lo, hi = np.minimum(a[up], b[up]), np.maximum(a[up], b[up])
    key = lo.astype(np.int64) * n_nodes + hi
    order = np.lexsort((d_up, key))  # per node pair, the fastest link first
    key, first = key[order], np.ones(len(order), bool)
    first[1:] = key[1:] != key[:-1]
    pair_key, pair_delay, pair_link = key[first], d_up[order][first], up[order][first]
    o = np.maximum(old, 0)
    want = np.minimum(src, o) * n_nodes + np.maximum(src, o)
    pos = np.minimum(np.searchsorted(pair_key, want), len(pair_key) - 1)
    exists = pair_key[pos] == want
    cost = pair_delay[pos] + delay_s_at(o, dst)
    keep = cand & exists & (cost <= delay_s_at(src, dst) + within_s)
    if transit is not None:
        keep &= np.asarray(transit, bool)[o] | (o == dst)
    return keep, np.where(keep, pair_link[pos], -1)


class OracleProcess:
    """A process that computes oracle tables on request and answers with their differences (see the module).

    It is ``python -m lasernet.routing.background`` (a plain subprocess, not :mod:`multiprocessing`'s spawn,
    which would re-import the user's main script), joined to the driver by a socket pair carrying pickles. It
    exits when the driver closes its end or dies (end of file).
    """

    def __init__(self, n_nodes: int, keep_within_s: float = 50e-6):
        import socket
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        ours, theirs = socket.socketpair()
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "lasernet.routing.background", "--nodes",
                                          str(n_nodes), "--keep-within-s", repr(keep_within_s), "--fd",
                                          str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                                         stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self.busy = False

    def submit(self, t_s: float, a, b, usable, delay_s, slots, transit=None) -> None:
        """Ask for the table over these link states, relaying only through nodes where ``transit`` (call only when
        not ``busy``)."""
        self._conn.send((t_s, np.asarray(a), np.asarray(b), np.asarray(usable), np.asarray(delay_s),
                         np.asarray(slots, np.int32), None if transit is None else np.asarray(transit, bool)))
        self.busy = True

    def poll(self, timeout_s: float = 0.0) -> Result | None:
        """The finished result if there is one (waiting up to ``timeout_s``), else None."""
        if self.busy and self._conn.poll(timeout_s):
            self.busy = False
            return Result(*self._conn.recv())
        return None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        try:
            self._conn.send(None)
        except OSError:
            pass
        self._conn.close()
        try:
            self.proc.wait(timeout=5)
        except Exception:
            self.proc.kill()
            self.proc.wait()


def main(argv=None) -> int:
    import argparse
    from multiprocessing.connection import Connection

    parser = argparse.ArgumentParser(description="lasernet's background oracle (started by the driver)")
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--keep-within-s", type=float, default=50e-6)
    parser.add_argument("--fd", type=int, required=True)
    args = parser.parse_args(argv)
    _serve(Connection(args.fd), args.nodes, args.keep_within_s)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
