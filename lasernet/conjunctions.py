"""Collision avoidance: close approaches between satellites (and catalogue objects), and the manoeuvres they call.

A *conjunction* is a close approach of two objects; its *time of closest approach* (TCA) and *miss distance* are
what an operator screens for. When the miss distance falls below the scenario's ``collision.threshold_km``
(:mod:`lasernet.spec.faults`), the satellite manoeuvres ``lead_s`` before the TCA; while it slews to its burn
attitude and back (``manoeuvre_s``) its laser terminals cannot hold their links, which are down with cause
``manoeuvre`` and then acquire again. The burn itself is not modelled: the plan keeps the satellite on its orbit
(an avoidance burn of a few cm/s moves it by metres to hundreds of metres a few hours later, within the plan's
sampling but not nothing). In a pair of the constellation's own satellites the one later in the satellite order
manoeuvres; against a catalogue object, the constellation's satellite does.

Screening, vectorised: at every step, a k-d tree (``scipy.spatial.cKDTree``) of the positions finds the pairs
within ``threshold_km + v_max step_s / 2`` (``v_max``: twice the fastest object's speed, a bound on any pair's
relative speed), so that any pair closer than the threshold at some instant of a step is a candidate at one of
the step's ends. Each candidate's closest approach within the step is that of the straight segment between its
relative positions at the two ends (error: the relative acceleration times step_s^2 / 8, sub-metre at 1 s
steps); runs of steps below the threshold are one conjunction, whose TCA and miss distance are then refined by
propagating the two objects with SGP4 at step_s / 200 around the closest step. Screening reaches ``lead_s`` past
the window, so that a manoeuvre for an approach just after it starts inside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import skydata
from .orbits import Satellites

#: How many refinement samples per step around a conjunction's closest sampled step.
REFINE_PER_STEP = 200


@dataclass(frozen=True)
class Conjunctions:
    """Close approaches below the threshold found for one window, by TCA: the satellite index ``a``, the other
    object's ``b_name`` (a satellite of the constellation, or a catalogue object), ``tca_s`` (seconds after the
    window's start), ``miss_km``, which satellite ``manoeuvres`` and its manoeuvre's ``start_s``/``end_s``, and the
    (T, N) mask of steps each satellite is manoeuvring."""

    a: np.ndarray
    b_name: np.ndarray  # str
    tca_s: np.ndarray
    miss_km: np.ndarray
    manoeuvres: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    manoeuvring: np.ndarray  # (T, N) bool
    reported: np.ndarray  # bool: the manoeuvre starts in this window (or before the first window): report it
    closest_km: float = float("inf")  # the closest screened approach (any distance) inside the screening span
    closest_pair: tuple[str, str] = ("", "")


def segment_min_km(r0: np.ndarray, r1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closest approach of relative positions moving straight from ``r0`` to ``r1`` (..., 3): (distance, s in
    [0, 1] of the step at which it happens)."""
    d = r1 - r0
    dd = np.einsum("...i,...i->...", d, d)
    s = np.clip(-np.einsum("...i,...i->...", r0, d) / np.where(dd > 0, dd, 1.0), 0.0, 1.0)
    closest = r0 + s[..., None] * d
    return np.sqrt(np.einsum("...i,...i->...", closest, closest)), s


def screen(own: Satellites, others: Satellites | None, start, offsets_s: np.ndarray, step_s: float,
           threshold_km: float, own_pairs: bool = True, chunk_steps: int = 256):
    """Steps of close approaches: arrays (i, j, k, dmin_km, s) with ``i`` an own satellite, ``j`` an own
    satellite (j > i) or, offset by N, a catalogue object, ``k`` the step whose segment to ``k + 1`` comes closer
    than ``threshold_km``, that straight-segment minimum and where in the step it is. Also the closest screened
    approach at any distance (km, i, j).
    """
    from scipy.spatial import cKDTree

    N = len(own)
    M = 0 if others is None else len(others)
    I, J, K, D, S = [], [], [], [], []
    closest = (np.inf, -1, -1)
    T = len(offsets_s)
    for lo in range(0, T - 1, chunk_steps):
        hi = min(T, lo + chunk_steps + 1)  # one step of overlap: the segment from the chunk's last step
        t = skydata.times(start, offsets_s[lo:hi])
        pos = own.positions_km(t)
        both = np.concatenate([pos, others.positions_km(t)], axis=1) if M else pos
        radius = threshold_km + float(np.linalg.norm(np.diff(both, axis=0), axis=-1).max())  # + 2 v_max step / 2
        ci, cj, ck = [], [], []
        for k in range(hi - lo - 1):
            tree = cKDTree(pos[k])
            if own_pairs and N > 1:
                pairs = tree.query_pairs(radius, output_type="ndarray")
                ci.append(pairs[:, 0]), cj.append(pairs[:, 1]), ck.append(np.full(len(pairs), k))
            if M:
                near = tree.sparse_distance_matrix(cKDTree(both[k, N:]), radius, output_type="ndarray")
                ci.append(near["i"]), cj.append(near["j"] + N), ck.append(np.full(len(near), k))
        if not ci:
            continue
        i, j, k = (np.concatenate(x).astype(np.int64) for x in (ci, cj, ck))
        if not len(i):
            continue
        dmin, where = segment_min_km(both[k, j] - both[k, i], both[k + 1, j] - both[k + 1, i])
        m = int(np.argmin(dmin))
        if dmin[m] < closest[0]:
            closest = (float(dmin[m]), int(i[m]), int(j[m]))
        keep = dmin < threshold_km  # a formation's pairs are all candidates at every step: keep only the close
        I.append(i[keep]), J.append(j[keep]), K.append(k[keep] + lo), D.append(dmin[keep]), S.append(where[keep])
    cat_ = lambda xs, dtype: np.concatenate(xs).astype(dtype) if xs else np.zeros(0, dtype)  # noqa: E731
    return (cat_(I, np.int64), cat_(J, np.int64), cat_(K, np.int64), cat_(D, float), cat_(S, float)), closest


def refine(a: Satellites, b: Satellites, start, around_s: float, step_s: float) -> tuple[float, float]:
    """(TCA offset s, miss km) of one object of ``a`` and one of ``b`` within a step of ``around_s``, by SGP4
    at step_s / REFINE_PER_STEP."""
    fine = around_s + np.linspace(-step_s, step_s, 2 * REFINE_PER_STEP + 1)
    t = skydata.times(start, fine)
    d = np.linalg.norm(b.positions_km(t)[:, 0] - a.positions_km(t)[:, 0], axis=-1)
    m = int(np.argmin(d))
    return float(fine[m]), float(d[m])


def plan_conjunctions(cfg, own: Satellites, others: Satellites | None, start, T: int, step_s: float,
                      until_s: np.ndarray | None = None) -> Conjunctions:
    """Screen the window of T steps and ``cfg.lead_s`` past it, refine, and schedule the manoeuvres.

    ``until_s`` (N,): until when (seconds after the window's start) a manoeuvre begun before the window lasts.
    """
    N = len(own)
    ahead = int(np.ceil(cfg.lead_s / step_s)) if T else 0
    offsets = np.arange(T + ahead) * step_s
    (I, J, K, D, S), closest = screen(own, others, start, offsets, step_s, cfg.threshold_km, cfg.own)
    names = list(own.names) + (list(others.names) if others is not None else [])
    below = D < cfg.threshold_km
    I, J, K, D = I[below], J[below], K[below], D[below]
    # one conjunction per run of consecutive steps of one pair; its closest sampled step is refined
    order = np.lexsort((K, J, I))
    I, J, K, D = I[order], J[order], K[order], D[order]
    new = np.r_[True, (I[1:] != I[:-1]) | (J[1:] != J[:-1]) | (K[1:] != K[:-1] + 1)] if len(I) else np.zeros(0, bool)
    run = np.cumsum(new) - 1
    rows = []
    for r in range(int(run[-1]) + 1 if len(run) else 0):
        at = np.flatnonzero(run == r)
        best = at[np.argmin(D[at])]
        i, j = int(I[best]), int(J[best])
        a = own.subset(np.array([i]))
        b = own.subset(np.array([j])) if j < N else others.subset(np.array([j - N]))
        tca, miss = refine(a, b, start, float(K[best] * step_s + 0.5 * step_s), step_s)
        if miss < cfg.threshold_km:
            rows.append((i, names[j], tca, miss, j if j < N else i))
    rows.sort(key=lambda row: (row[2], row[0]))
    a = np.array([r[0] for r in rows], dtype=np.int64)
    b = np.array([r[1] for r in rows], dtype=str)
    tca = np.array([r[2] for r in rows], dtype=float)
    miss = np.array([r[3] for r in rows], dtype=float)
    who = np.array([r[4] for r in rows], dtype=np.int64)
    begin, end = tca - cfg.lead_s, tca - cfg.lead_s + cfg.manoeuvre_s
    manoeuvring = np.zeros((T, N), dtype=bool)
    steps = np.arange(T) * step_s
    if until_s is not None:
        manoeuvring |= steps[:, None] < np.asarray(until_s)[None, :]
    for n, s0, s1 in zip(who.tolist(), begin.tolist(), end.tolist()):
        manoeuvring[(steps + step_s > s0) & (steps < s1), n] = True  # steps overlapping [start, end)
    c_km, ci, cj = closest
    pair = (names[ci], names[cj]) if ci >= 0 else ("", "")
    reported = (begin < T * step_s) & ((begin >= 0) | (until_s is None))
    return Conjunctions(a, b, tca, miss, who, begin, end, manoeuvring, reported, c_km, pair)


def catalogue_satellites(catalogue, own_names: tuple[str, ...]) -> Satellites | None:
    """The objects of the ``collision.catalogue`` file (objects named like a satellite of the constellation are
    left out: they are the constellation's own)."""
    if catalogue is None:
        return None
    from .spec.elements import element_records

    rec = [(name, sat) for name, sat, _place, _raw in element_records(catalogue) if name not in set(own_names)]
    if not rec:
        return None
    n = len(rec)
    return Satellites(tuple(r[0] for r in rec), np.full(n, -1), np.full(n, -1), np.full(n, -1),
                      tuple(r[1] for r in rec))
