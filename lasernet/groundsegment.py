"""What a ground segment does beyond one optical terminal per link: make-before-break handover on a spare
terminal, and site diversity (one user site served by whichever of several stations has a link).

Make before break. A station holds ``max_links`` ground links; with more optical terminals than that
(``terminals: max_links + 1``) the spare one points at the satellite the station will take next and acquires
it while the current link still carries traffic, so the new link is up at the step of the handover and the old
one is released then: no gap. With as many terminals as links the station breaks before it makes: it releases
the old satellite at the handover and the new link waits its acquisition time (``terminals.gsl.acquisition_s``),
a gap of that length. Handovers are scheduled from ephemerides, so the plan looks ahead: for every link the
station takes at step k (chosen there, not at k-1), the spare terminal acquires it over the ``lead`` steps
before k (``ceil(acquisition_s / step_s)``) during which the satellite is already usable to the optical
terminal (above its mask, in range, no Sun or cloud in the way). :func:`pre_acquisition` marks those steps,
vectorised over links: ``lead`` shifted ANDs of the (T, P) arrays. And the station releases the old satellite
only once the new link carries traffic (:func:`hold_over`): the old link stays up through the step the new one
first carries traffic (so that routes move to the new link before the old one goes down), and longer where the
new satellite became usable too late to be acquired ahead, as long as the old one stays usable. The spare
terminal's steps are not counted against the satellite's ``terminals.gsl.count`` (the overlap lasts about one
acquisition time).

Site diversity. Optical ground stations are spread far apart because clouds are local: a user site backed by
two or three stations some hundreds of kilometres apart (``ground.diversity``) is reachable while any one of
them has a clear link. At each step the site is served by one of its stations: the one serving it at the step
before, as long as that station has a ground link up (hysteresis: no switch while it works); otherwise the first
station in the group's list (the primary) that has one, else the next, in order; none when no station has one.
The other stations are hot standby: they keep tracking (so a switch needs no acquisition) but carry no traffic
(their links are down with cause ``standby``). :func:`serving` computes the choice for a whole window with one
pass over the switches, not over the steps: for every station the next step it loses its links is found once
(a reversed running minimum), and each switch jumps there.
"""

from __future__ import annotations

import numpy as np


def pre_acquisition(assigned: np.ndarray, usable: np.ndarray, lead: int, spare: np.ndarray) -> np.ndarray:
    """(T, P) bool: the steps a spare terminal acquires a link before the station takes it.

    ``assigned`` (T, P): the links the station holds at each step; ``usable`` (T, P): the optical terminal could
    acquire the link there; ``spare`` (P,): the link's station has a spare terminal. A link taken at step k
    (assigned at k, not at k - 1; k >= 1) is acquired at steps k - j for j = 1 .. ``lead`` as long as it is
    usable at every step from k - j to k - 1.
    """
    assigned = np.asarray(assigned, bool)
    out = np.zeros(assigned.shape, bool)
    if lead <= 0 or not assigned.size or not np.asarray(spare).any():
        return out
    reach = np.zeros_like(out)
    reach[1:] = assigned[1:] & ~assigned[:-1]
    reach &= np.asarray(spare, bool)[None, :]
    for _ in range(lead):  # reach[t]: a link taken at t + j, usable over t .. t + j - 1
        reach = np.vstack([reach[1:], np.zeros((1, reach.shape[1]), bool)]) & usable
        if not reach.any():
            break
        out |= reach
    return out


def serving(linked: np.ndarray, before: int = -1) -> np.ndarray:
    """(T,) the member serving a site at each step (-1: none), from ``linked`` (T, M): member m has a ground
    link up at step t, members in the group's order (the primary first). ``before``: the member serving the site
    just before the first step (-1: none, or the start of a run). See the module docstring for the rule."""
    linked = np.asarray(linked, bool)
    T, M = linked.shape
    out = np.full(T, -1, np.int64)
    if T == 0 or M == 0:
        return out
    steps = np.arange(T)
    # next_off[t, m]: the first step >= t at which member m has no link (T: none); next_any[t]: the first step
    # >= t at which some member has one (T: none).
    next_off = np.where(linked, T, steps[:, None])[::-1]
    next_off = np.minimum.accumulate(next_off, axis=0)[::-1]
    anyone = linked.any(axis=1)
    next_any = np.minimum.accumulate(np.where(anyone, steps, T)[::-1])[::-1]
    t, cur = 0, int(before)
    while t < T:
        if cur < 0 or not linked[t, cur]:
            cur = int(np.argmax(linked[t])) if anyone[t] else -1
        if cur < 0:
            t = int(next_any[t])
            continue
        end = int(next_off[t, cur])
        out[t:end] = cur
        t = end
    return out


def hold_over(assigned: np.ndarray, up: np.ndarray, usable: np.ndarray, station: np.ndarray, spare: np.ndarray,
              up_before: np.ndarray | None = None, held_before: np.ndarray | None = None) -> np.ndarray:
    """(T, P) bool: the steps a station with a spare terminal keeps a link it released carrying traffic, because
    a link it took has not carried traffic yet (make before break: release only once the new one is up).

    ``assigned`` (T, P): the links the stations hold; ``up`` (T, P): the links up as held (before any hold);
    ``usable`` (T, P): the link could carry traffic there; ``station`` (P,) the station of each link and
    ``spare`` (P,) whether it has a spare terminal. A link held and up at step k - 1 and released at k is kept
    up from k on as long as it stays usable and the station holds some link that did not carry traffic at the
    step before (a new link still acquiring; the step the new link first carries traffic included, so that
    routes move to it before the old one goes down). ``up_before`` (P,): ``up`` just before the first step;
    ``held_before`` (P,): held and up, or kept, just before it (a hold that continues).
    """
    assigned = np.asarray(assigned, bool)
    T, P = assigned.shape
    if T == 0 or P == 0 or not np.asarray(spare).any():
        return np.zeros((T, P), bool)
    zeros = np.zeros((1, P), bool)
    carried = np.vstack([zeros if held_before is None else np.asarray(held_before, bool)[None, :],
                         (assigned & up)[:-1]])
    start = carried & ~assigned
    was_up = np.vstack([zeros if up_before is None else np.asarray(up_before, bool)[None, :], up[:-1]])
    newly = assigned & ~was_up  # links held now that carried no traffic at the step before
    G = int(np.max(station)) + 1
    onehot = np.zeros((P, G), np.int32)
    onehot[np.arange(P), station] = 1
    waiting = (newly.astype(np.int32) @ onehot)[:, station] > 0  # the station holds such a link
    keep = ~assigned & usable & waiting & np.asarray(spare, bool)[None, :]
    # kept where a run of `keep` began with a release (a run cannot begin mid-way: a release follows a held step)
    steps = np.arange(T)[:, None]
    last_off = np.where(keep, -1, steps)
    np.maximum.accumulate(last_off, axis=0, out=last_off)
    first = np.minimum(last_off + 1, T - 1)
    return keep & start[first, np.arange(P)[None, :]]
