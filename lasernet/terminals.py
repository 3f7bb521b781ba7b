"""What an optical terminal can do: how far it reaches, when the Sun blinds it, and how long it takes to lock on.

A laser terminal is a small telescope on a gimbal. It can close a link only to a partner within ``max_range_km``;
it cannot point within ``sun_exclusion_deg`` of the Sun (the detector saturates); and after the partner becomes
reachable it needs ``acquisition_s`` to point, acquire and track (tens of seconds for today's terminals, a few
seconds for the next generation) before the link carries traffic. A satellite carries ``count`` terminals of a
kind, which bounds how many links of that kind it holds at once. RF terminals (``kind: rf``) have no Sun
exclusion.

These functions are vectorised over time and links like the rest of the offline pipeline.
"""

from __future__ import annotations

import numpy as np

from . import geometry
from .spec.scenario import Terminal


def sun_blinded(terminal: Terminal, from_km: np.ndarray, to_km: np.ndarray, sun_km: np.ndarray,
                sun_visible: np.ndarray | bool = True) -> np.ndarray:
    """True where a terminal at ``from_km`` pointing at ``to_km`` has the Sun inside its exclusion cone.

    ``sun_visible`` is False where the Earth hides the Sun from the terminal (eclipse, or below the horizon of a
    ground station): a hidden Sun blinds nothing.
    """
    if terminal.kind != "laser" or terminal.sun_exclusion_deg <= 0:
        return np.zeros(np.broadcast_shapes(from_km.shape[:-1], to_km.shape[:-1]), dtype=bool)
    return (geometry.sun_angle_deg(from_km, to_km, sun_km) < terminal.sun_exclusion_deg) & sun_visible


def sun_blinded_both_ends(terminal: Terminal, a_km: np.ndarray, b_km: np.ndarray, sun_unit: np.ndarray,
                          sun_visible_a: np.ndarray | bool = True, sun_visible_b: np.ndarray | bool = True):
    """Either end of links a-b blinded, with the Sun's direction ``sun_unit`` taken as the same everywhere.

    Seen from low orbit the Sun's direction differs from the geocentric one by at most 7,000 km / 1 AU, under
    0.003 degrees, so one unit vector per instant serves every satellite: then the test is one dot product per
    link (``cos(angle) > cos(exclusion)``), and the same dot product with its sign flipped serves the far end.
    """
    if terminal.kind != "laser" or terminal.sun_exclusion_deg <= 0:
        return np.zeros(np.broadcast_shapes(a_km.shape[:-1], b_km.shape[:-1]), dtype=bool)
    d = b_km - a_km
    along = np.einsum("...i,...i->...", d, sun_unit)
    limit = geometry.norm_km(d) * np.cos(np.radians(terminal.sun_exclusion_deg))
    return ((along > limit) & sun_visible_a) | ((-along > limit) & sun_visible_b)


def acquired(feasible: np.ndarray, step_s: float, acquisition_s: float,
             run_before: np.ndarray | None = None) -> np.ndarray:
    """Which feasible link-steps carry traffic once acquisition time is honoured; ``feasible`` is (T, L).

    A link that turns feasible between steps k-1 and k is taken to have become reachable at step k (the
    conservative reading of a sampled timeline) and carries traffic from the first step at least
    ``acquisition_s`` later. ``run_before`` (L,) says for how many steps each link had already been feasible, in a
    row, just before the first step (what a plan window inherits from the one before it, see :func:`feasible_run`);
    without it a link feasible at the first step counts as already acquired (the start of a run).
    """
    feasible = np.asarray(feasible, dtype=bool)
    if acquisition_s <= 0 or feasible.size == 0:
        return feasible.copy()
    return feasible & (_runs(feasible, run_before) * step_s >= acquisition_s - 1e-9)


def feasible_run(feasible: np.ndarray, run_before: np.ndarray | None = None) -> np.ndarray:
    """(L,) steps each link was feasible in a row just before the *last* step of ``feasible`` (T, L): the
    ``run_before`` of a window that starts at that step (inf: since before the first step of a run)."""
    feasible = np.asarray(feasible, dtype=bool)
    if feasible.shape[0] == 0:
        return np.full(feasible.shape[1], np.inf) if run_before is None else np.asarray(run_before, float).copy()
    return _runs(feasible, run_before)[-1].copy()


def _runs(feasible: np.ndarray, run_before: np.ndarray | None) -> np.ndarray:
    """(T, L) float: feasible steps in a row just before each step (``run_before`` added where the run reaches
    back past the first step; inf there without it)."""
    T, L = feasible.shape
    before = np.full(L, np.inf) if run_before is None else np.asarray(run_before, dtype=float)
    steps = np.arange(T, dtype=np.int32)[:, None]
    last_off = np.where(feasible, np.int32(-1), steps)
    np.maximum.accumulate(last_off, axis=0, out=last_off)
    prev_off = np.vstack([np.full((1, L), -1, np.int32), last_off[:-1]])  # last infeasible step before k
    run = (steps - prev_off - 1).astype(float)
    return np.where(prev_off < 0, run + before[None, :], run)


def within_budget(feasible: np.ndarray, score: np.ndarray, a: np.ndarray, b: np.ndarray, n_nodes: int,
                  count: int, held_before: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Which feasible links (T, L) a satellite's ``count`` terminals hold, step by step.

    A satellite never holds more links than it has terminals. Where more candidates are feasible than an end
    has terminals, the links are taken greedily in this order: a link held at the step before first (an
    established link keeps its terminals while it stays feasible), then the lower ``score`` (range: shortest
    first), then the lower link index; a link is taken when both its ends still have a free terminal. Steps
    where no satellite is over its budget need no choice and are passed through at once; only the others are
    decided one by one (they depend on the step before). ``held_before`` (L,) is what was held just before the
    first step (a window's inheritance). Returns ``(held (T, L), held at the second-to-last step)``.
    """
    feasible = np.asarray(feasible, dtype=bool)
    T, L = feasible.shape
    held = feasible.copy()
    prev0 = np.zeros(L, bool) if held_before is None else np.asarray(held_before, bool)
    if T == 0 or L == 0:
        return held, prev0.copy()
    step, link = np.nonzero(feasible)  # candidate links at each step, counted at both ends
    ends = np.concatenate([step * n_nodes + np.asarray(a)[link], step * n_nodes + np.asarray(b)[link]])
    degree = np.bincount(ends, minlength=T * n_nodes).reshape(T, n_nodes)
    for k in np.flatnonzero((degree > count).any(axis=1)):
        prev = held[k - 1] if k > 0 else prev0
        idx = np.flatnonzero(feasible[k])
        order = idx[np.lexsort((idx, score[k, idx], ~prev[idx]))]
        held[k] = False
        held[k, order[_greedy_matching(a[order], b[order], n_nodes, count)]] = True
    return held, (held[-2] if T >= 2 else prev0).copy()


def _greedy_matching(a: np.ndarray, b: np.ndarray, n_nodes: int, count: int) -> np.ndarray:
    """Links (given best first) taken greedily while both ends have one of ``count`` terminals free.

    Vectorised in rounds: a link is taken once fewer than its ends' free terminals are wanted by better links
    still open at each end; a link with a full end is dropped. The best open link always qualifies, so every
    round takes one or more, and the result is that of taking the links one by one in order.
    """
    free = np.full(n_nodes, count, np.int64)
    open_ = np.ones(len(a), bool)
    taken = np.zeros(len(a), bool)
    while open_.any():
        idx = np.flatnonzero(open_)
        ends = np.concatenate([a[idx], b[idx]])
        pos = np.concatenate([np.arange(len(idx)), np.arange(len(idx))])
        o = np.lexsort((pos, ends))
        first = np.r_[True, ends[o][1:] != ends[o][:-1]]
        i = np.arange(len(o))
        rank = np.empty(len(o), np.int64)
        rank[o] = i - np.maximum.accumulate(np.where(first, i, 0))
        ok = (rank[:len(idx)] < free[a[idx]]) & (rank[len(idx):] < free[b[idx]])
        take = idx[ok]
        taken[take] = True
        open_[take] = False
        np.subtract.at(free, a[take], 1)
        np.subtract.at(free, b[take], 1)
        open_ &= (free[a] > 0) & (free[b] > 0)
    return taken
