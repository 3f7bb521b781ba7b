"""The oracle in a background process: shortest-delay routes for large networks without stalling the tick.

At constellation scale one full recompute (:func:`lasernet.routing.oracle.compute`) takes longer than a tick
(0.4-0.6 s at 1,684 nodes against 0.1 s ticks), and SciPy's Dijkstra holds the GIL, so a thread would stall the
tick just the same. :class:`OracleProcess` runs the computation in a separate process: the driver hands it the
link states of one tick (``submit``) and goes on ticking; when the process has finished, the next tick picks up
(``poll``) only the entries that changed since the table the process computed before, and installs them.

What this costs in accuracy, and what is recorded: routes follow the link states of the tick they were computed
from, so they lag the emulated time by one computation plus up to one tick (``Result.t_s`` is the emulated time
of the states used; the driver records the lag at install). Link delays keep following the orbit every tick
(the backend is updated each tick); only the *choice* of path is late. A link that goes down keeps routes
pointing at it until the next result (packets over it are lost for that long), as with a real routing protocol
that has not converged yet. Small networks (``mini``) do not use this: the driver computes in the tick.

Hysteresis (``keep_within_s``, default 50 us): a next hop is changed only when the new path beats the old one
by more than that (see :func:`keep_near_best`: loop-free, at most ``hops * keep_within_s`` from the best),
which cuts the route churn of a +Grid's near-ties by orders of magnitude.

The wire between the two is a socket pair carrying :mod:`multiprocessing.connection` pickles; a request is the link arrays of one tick (a few
kilobytes), a result is the changed (source, destination) entries with their new next hop and link *slot* (the
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

    prev_next = np.full((n_nodes, n_nodes), -1, np.int32)
    prev_slot = np.full((n_nodes, n_nodes), -1, np.int32)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        t_s, a, b, usable, delay, slots, transit = msg
        t0 = time.monotonic()
        routes = oracle.compute(n_nodes, a, b, usable, delay, transit=transit)
        next_hop = routes.next_hop
        slot = np.where(routes.link >= 0, slots[np.maximum(routes.link, 0)], -1).astype(np.int32)
        if keep_within_s > 0:
            keep_near_best(n_nodes, routes, next_hop, slot, prev_next, a, b, usable, delay, slots, keep_within_s,
                           transit)
        changed = (next_hop != prev_next) | (slot != prev_slot)
        src, dst = np.nonzero(changed)
        prev_next, prev_slot = next_hop, slot
        try:
            conn.send((t_s, src.astype(np.int32), dst.astype(np.int32), next_hop[src, dst],  # a Result's fields
                       slot[src, dst], time.monotonic() - t0))
        except (BrokenPipeError, OSError):  # the driver stopped while we computed
            return


def keep_near_best(n_nodes, routes, next_hop, slot, prev_next, a, b, usable, delay, slots, within_s,
                   transit=None) -> int:
    """Keep a previous next hop wherever its path is still within ``within_s`` of the best (in place).

    In a +Grid many paths are almost equally long, and as satellites move the best of them changes every few
    hundred milliseconds; without this, thousands of routes flip back and forth per second for microseconds of
    gain. A kept next hop ``o`` of ``s`` towards ``d`` satisfies ``w(s, o) + D(o, d) <= D(s, d) + within_s``
    with ``D`` the shortest delays of this computation; as long as ``within_s`` is below the smallest link delay,
    ``D(o, d) < D(s, d)`` along every hop, so forwarding stays loop-free. A path is then at most
    ``hops * within_s`` longer than the best. A previous next hop that carries no transit (``transit[o]``
    False) is kept only when it is the destination itself, so a kept path never relays through a stub station.
    Returns how many entries were kept.
    """
    up = np.flatnonzero(np.asarray(usable) & (np.asarray(a) != np.asarray(b)))
    if len(up) == 0:
        return 0
    d_up = np.asarray(delay, float)[up]
    within_s = min(within_s, 0.5 * float(d_up.min()))
    cand_s, cand_d = np.nonzero((next_hop != prev_next) & (prev_next >= 0) & (next_hop >= 0))
    if len(cand_s) == 0:
        return 0
    lo, hi = np.minimum(a[up], b[up]), np.maximum(a[up], b[up])
    key = lo.astype(np.int64) * n_nodes + hi
    order = np.lexsort((d_up, key))  # per node pair, the fastest link first
    key, first = key[order], np.ones(len(order), bool)
    first[1:] = key[1:] != key[:-1]
    pair_key, pair_delay, pair_link = key[first], d_up[order][first], up[order][first]
    old = prev_next[cand_s, cand_d].astype(np.int64)
    want = np.minimum(cand_s, old) * n_nodes + np.maximum(cand_s, old)
    pos = np.minimum(np.searchsorted(pair_key, want), len(pair_key) - 1)
    exists = pair_key[pos] == want
    cost = pair_delay[pos] + routes.delay_s[old, cand_d]
    keep = exists & (cost <= routes.delay_s[cand_s, cand_d] + within_s)
    if transit is not None:
        keep &= np.asarray(transit, bool)[old] | (old == cand_d)
    ks, kd = cand_s[keep], cand_d[keep]
    next_hop[ks, kd] = old[keep]
    slot[ks, kd] = slots[pair_link[pos[keep]]]
    return int(keep.sum())


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
