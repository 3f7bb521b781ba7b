"""What an optical terminal can do: how far it reaches, where it can point, when the Sun blinds it, how long it takes
to lock on.

A laser terminal is a small telescope on a gimbal. It can close a link only to a partner within ``max_range_km``;
it cannot point within ``sun_exclusion_deg`` of the Sun (the detector saturates); and after the partner becomes
reachable it needs ``acquisition_s`` to point, acquire and track (tens of seconds for today's terminals, a few
seconds for the next generation) before the link carries traffic. A satellite carries ``count`` terminals of a
kind, which bounds how many links of that kind it holds at once. RF terminals (``kind: rf``) have no Sun
exclusion.

Pointing. The terminals are fixed to the satellite's body, which flies in its local vertical, local horizontal
(LVLH) frame: z towards the nadir, y against the orbit normal, x = y x z (along the velocity on a circular
orbit). A gimbal turns the line of sight within a *field of regard* (:class:`~lasernet.spec.scenario.FieldOfRegard`:
limits on the partner's nadir angle and azimuth, :func:`pointing` computes both; in a +Grid the fore and aft
terminals serve the intra-plane links and the port and starboard ones the others) and at most ``slew_rate_deg_s``:
a link is usable only while the partner stays in the field of *both* terminals (cause ``fov``) and the line of
sight turns, in both bodies, no faster than the slew rate (cause ``slew``). The line of sight u = d / |d| from a
satellite to its partner (d = r_b - r_a) turns in inertial space at du/dt = (d' - u (u . d')) / |d|, with
d' = v_b - v_a the inertial relative velocity; the body frame itself turns at the orbital rate
omega = (r x v) / |r|^2 (exact for a Keplerian orbit; SGP4's perturbations turn it slightly more, well within
what tests/unit/test_pointing.py allows against finite differences), so the gimbal must track du/dt - omega x u.
Neighbours in the same plane sit still in the body frame (rate ~0); neighbours in the next plane of a delta shell
swing from one side to the other each time the planes cross, and fastest near the turning latitudes: the
geometry a latitude cut-off (``isl.polar_cutoff_deg``) only stands in for. A terminal moved to a new partner (the
``nearest`` pattern, or a satellite with more candidate links than terminals) first turns to it at the slew
rate, then acquires (:func:`retarget_s`); a +Grid keeps a terminal on each of its links.

These functions are vectorised over time and links like the rest of the offline pipeline.
"""

from __future__ import annotations

import numpy as np

from . import geometry
from .spec.scenario import FieldOfRegard, Terminal


def pointing(a_km: np.ndarray, a_vel_km_s: np.ndarray, b_km: np.ndarray, b_vel_km_s: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where satellite a must point to see b, in a's body (LVLH) frame: ``(nadir_deg, azimuth_deg, rate_deg_s)``.

    Positions (..., 3) in km and *inertial* velocities (..., 3) in km/s, all in the same axes (ITRS axes, for the
    plan: :meth:`lasernet.orbits.Satellites.positions_and_velocities`). ``nadir_deg`` is the angle of the line of
    sight from the nadir (0-180, 90 horizontal), ``azimuth_deg`` its direction in the horizontal plane from the
    velocity towards -orbit normal (-180..180: 0 ahead, 180 behind), ``rate_deg_s`` how fast it turns in the body
    frame (see the module docstring).
    """
    r2 = np.einsum("...i,...i->...", a_km, a_km)
    h = np.cross(a_km, a_vel_km_s)
    z = -a_km / np.sqrt(r2)[..., None]
    y = -h / geometry.norm_km(h)[..., None]
    x = np.cross(y, z)
    d = b_km - a_km
    dist = geometry.norm_km(d)
    u = d / dist[..., None]
    ux, uy, uz = (np.einsum("...i,...i->...", u, e) for e in (x, y, z))
    nadir = np.degrees(np.arccos(np.clip(uz, -1.0, 1.0)))
    azimuth = np.degrees(np.arctan2(uy, ux))
    dv = b_vel_km_s - a_vel_km_s
    du = (dv - u * np.einsum("...i,...i->...", u, dv)[..., None]) / dist[..., None]
    omega = h / r2[..., None]
    rate = np.degrees(geometry.norm_km(du - np.cross(omega, u)))
    return nadir, azimuth, rate


#: Which of a satellite's terminals may serve a link (:func:`in_field`): the fore/aft pair, the port/starboard
#: pair, or any of them.
ALONG, CROSS, ANY = "along", "cross", "any"


def in_field(field: FieldOfRegard, nadir_deg: np.ndarray, azimuth_deg: np.ndarray, sector=ANY) -> np.ndarray:
    """True where a direction (:func:`pointing`) lies in the field of regard of a terminal that may serve it.

    Its nadir angle must be within ``field.nadir_deg`` and its azimuth within ``along_track_deg`` of ahead or
    behind (``sector`` ALONG: the fore and aft terminals), within ``cross_track_deg`` of either side (CROSS: port
    and starboard), or either (ANY). ``sector`` may be an array of those, broadcast against the angles.
    """
    lo, hi = field.nadir_deg
    az = np.abs(azimuth_deg)
    along = (az <= field.along_track_deg) | (az >= 180.0 - field.along_track_deg)
    cross = np.abs(az - 90.0) <= field.cross_track_deg
    sector = np.asarray(sector)
    seen = np.where(sector == ALONG, along, np.where(sector == CROSS, cross, along | cross))
    return (nadir_deg >= lo) & (nadir_deg <= hi) & seen


def pointing_limits(terminal: Terminal, pos_km: np.ndarray, vel_km_s: np.ndarray, a: np.ndarray, b: np.ndarray,
                    sector=ANY) -> tuple[np.ndarray, np.ndarray]:
    """``(out_of_field, too_fast)`` (T, L) bool of links a-b between satellites at ``pos_km`` (T, N, 3) with
    inertial velocities ``vel_km_s``: the partner outside the field of regard of the ``sector``'s terminals
    (:func:`in_field`) at either end, or the line of sight turning faster than ``slew_rate_deg_s`` at either end
    (all False for a limit not set).

    The same quantities as :func:`pointing` at both ends, with each satellite's body frame built once and the
    line of sight's inertial turn shared by the two ends (seen from b it is -u, turning at -du/dt).
    """
    shape = pos_km.shape[:-2] + (len(a),)
    out, fast = np.zeros(shape, bool), np.zeros(shape, bool)
    if not terminal.points:
        return out, fast
    # float32 (angles to ~1e-5 deg, rates to ~1e-6 deg/s), with the cross products written out: half the memory
    # traffic of float64 and np.cross's axis shuffles, which dominated this step.
    pos = np.asarray(pos_km, np.float32)
    vel = np.asarray(vel_km_s, np.float32)
    r2 = _dot(pos, pos)
    h = _cross(pos, vel)
    z = -pos / np.sqrt(r2)[..., None]
    y = -h / np.sqrt(_dot(h, h))[..., None]
    x = _cross(y, z)
    omega = h / r2[..., None]
    d = pos[..., b, :] - pos[..., a, :]
    dist = np.sqrt(_dot(d, d))
    u = d / dist[..., None]
    dv = vel[..., b, :] - vel[..., a, :]
    du = (dv - u * _dot(u, dv)[..., None]) / dist[..., None]
    limit = np.float32(terminal.slew_rate_deg_s)
    for end, sign in ((a, 1.0), (b, -1.0)):
        if terminal.field_of_regard is not None:
            ux, uy, uz = (sign * _dot(u, e[..., end, :]) for e in (x, y, z))
            nadir = np.degrees(np.arccos(np.clip(uz, -1.0, 1.0)))
            out |= ~in_field(terminal.field_of_regard, nadir, np.degrees(np.arctan2(uy, ux)), sector)
        if terminal.slew_rate_deg_s > 0:
            turn = du - _cross(omega[..., end, :], u)
            fast |= np.degrees(np.sqrt(_dot(turn, turn))) > limit
    return out, fast


def _dot(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u[..., 0] * v[..., 0] + u[..., 1] * v[..., 1] + u[..., 2] * v[..., 2]


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    out = np.empty(np.broadcast_shapes(u.shape, v.shape), np.result_type(u, v))
    out[..., 0] = u[..., 1] * v[..., 2] - u[..., 2] * v[..., 1]
    out[..., 1] = u[..., 2] * v[..., 0] - u[..., 0] * v[..., 2]
    out[..., 2] = u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]
    return out


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
             run_before: np.ndarray | None = None, extra_s: np.ndarray | None = None,
             extra_before_s: np.ndarray | None = None) -> np.ndarray:
    """Which feasible link-steps carry traffic once acquisition time is honoured; ``feasible`` is (T, L).

    A link that turns feasible between steps k-1 and k is taken to have become reachable at step k (the
    conservative reading of a sampled timeline) and carries traffic from the first step at least
    ``acquisition_s`` later. ``run_before`` (L,) says for how many steps each link had already been feasible, in a
    row, just before the first step (what a plan window inherits from the one before it, see :func:`feasible_run`);
    without it a link feasible at the first step counts as already acquired (the start of a run).

    ``extra_s`` (T, L) adds a wait to a run of feasible steps that begins at that step (a terminal's slew to a
    new partner, :func:`retarget_s`); ``extra_before_s`` (L,) is that of runs begun before the first step.
    """
    feasible = np.asarray(feasible, dtype=bool)
    if feasible.size == 0 or (acquisition_s <= 0 and extra_s is None):
        return feasible.copy()
    runs = _runs(feasible, run_before)
    if extra_s is None:
        return feasible & (runs * step_s >= acquisition_s - 1e-9)
    T, L = feasible.shape
    steps = np.arange(T)[:, None]
    start = np.where(np.isfinite(runs), steps - runs, -1.0).astype(np.int64)  # the step the run began at
    before = np.zeros(L) if extra_before_s is None else np.asarray(extra_before_s, float)
    wait = np.where(start >= 0, np.asarray(extra_s)[np.maximum(start, 0), np.arange(L)[None, :]], before[None, :])
    return feasible & (runs * step_s >= acquisition_s + wait - 1e-9)


def retarget_s(held: np.ndarray, held_before: np.ndarray | None, a: np.ndarray, b: np.ndarray, n_nodes: int,
               positions_at, slew_rate_deg_s: float, released_before: np.ndarray | None = None,
               shared: np.ndarray | None = None):
    """The slew time of terminals moved to a new partner: ``(extra_s (T, L), released (n_nodes,))``.

    A link taken at step k (held there, not at the step before) is served at each end by a terminal freed from
    another partner: one of the links that end released last, at k or before (``released_before`` (n_nodes,): the
    partner each node last released before the window, -1 for none), the one whose partner is nearest in
    direction to the new one when several were released in that step. The freed terminal is taken to have kept
    following its old partner, so it turns through the angle between the two partners as seen from the
    satellite at step k; at ``slew_rate_deg_s`` that takes angle / rate seconds, and the link waits the longer
    of its two ends on top of its acquisition time (:func:`acquired`). A terminal that never held a link is
    taken to be pointed already. Two links taken at one end in the same step may count from the same release.
    ``positions_at(steps)`` gives positions (K, N, 3) at those window steps. ``released`` is each node's last
    released partner before the last step (the next window's ``released_before``). ``shared`` (n_nodes,) says
    which satellites move terminals between partners (None: all); the others have a terminal for each of their
    candidate links, which follows its partner while the link is down, so that taking it again needs no slew.
    """
    held = np.asarray(held, bool)
    T, L = held.shape
    extra = np.zeros((T, L), np.float32)
    prev = np.vstack([np.zeros((1, L), bool) if held_before is None else np.asarray(held_before, bool)[None, :],
                      held[:-1]])
    before = np.full(n_nodes, -1, np.int64) if released_before is None else np.asarray(released_before, np.int64)
    r_step, r_link = np.nonzero(prev & ~held)
    # release events per end: (node, step, partner), with each node's release before the window at step -1
    has = np.flatnonzero(before >= 0)
    node = np.concatenate([a[r_link], b[r_link], has]).astype(np.int64)
    partner = np.concatenate([b[r_link], a[r_link], before[has]]).astype(np.int64)
    step = np.concatenate([r_step, r_step, np.full(len(has), -1)]).astype(np.int64)
    key = node * (T + 1) + (step + 1)
    o = np.argsort(key, kind="stable")
    key, node, partner, step = key[o], node[o], partner[o], step[o]

    def last_release(nodes, steps):
        """Index of each node's most recent release event at or before each step (-1: none)."""
        at = np.searchsorted(key, nodes * (T + 1) + (steps + 1), side="right") - 1
        ok = (at >= 0) & (node[np.maximum(at, 0)] == nodes) if len(key) else np.zeros(len(nodes), bool)
        return np.where(ok, at, -1)

    last = last_release(np.arange(n_nodes), np.full(n_nodes, T - 2)) if T >= 2 else np.full(n_nodes, -1)
    released = (np.where(last >= 0, partner[np.maximum(last, 0)], -1) if len(partner) else
                np.full(n_nodes, -1, np.int64)) if T >= 2 else before.copy()
    if slew_rate_deg_s <= 0:
        return extra, released
    t_step, t_link = np.nonzero(held & ~prev)
    if len(t_step) == 0:
        return extra, released
    uniq, where = np.unique(t_step, return_inverse=True)
    pos = positions_at(uniq)  # (K, N, 3)
    wait = np.zeros(len(t_step))
    for end, other in ((a[t_link], b[t_link]), (b[t_link], a[t_link])):
        at = last_release(end.astype(np.int64), t_step.astype(np.int64))
        here, there = pos[where, end], pos[where, other] - pos[where, end]
        # Several terminals freed at that step: the one whose old partner is nearest in direction turns.
        angle = np.full(len(at), np.inf)
        for back in range(int(np.unique(key, return_counts=True)[1].max()) if len(key) else 0):
            i = at - back
            same = (at >= 0) & (i >= 0) & (key[np.maximum(i, 0)] == key[np.maximum(at, 0)])
            if not same.any():
                break
            turn = geometry.angle_deg(pos[where, partner[np.maximum(i, 0)]] - here, there)
            angle = np.where(same, np.minimum(angle, turn), angle)
        turned = np.isfinite(angle) & (True if shared is None else np.asarray(shared, bool)[end])
        wait = np.maximum(wait, np.where(turned, angle, 0.0) / slew_rate_deg_s)
    extra[t_step, t_link] = wait
    return extra, released


def run_extra_s(extra_s: np.ndarray, run_last: np.ndarray, extra_before_s: np.ndarray | None = None) -> np.ndarray:
    """(L,) the :func:`acquired` extra wait of the run each link is in just before the last step (``run_last``
    from :func:`feasible_run`; 0 where it is in none): the next window's ``extra_before_s``."""
    T, L = extra_s.shape
    before = np.zeros(L) if extra_before_s is None else np.asarray(extra_before_s, float)
    start = np.where(np.isfinite(run_last), T - 1 - run_last, -1.0).astype(np.int64)
    out = np.where(start >= 0, extra_s[np.clip(start, 0, max(T - 1, 0)), np.arange(L)], before)
    return np.where(run_last > 0, out, 0.0)


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
                  count: int, held_before: np.ndarray | None = None,
                  margin: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Which feasible links (T, L) a satellite's ``count`` terminals hold, step by step.

    A satellite never holds more links than it has terminals. Where more candidates are feasible than an end
    has terminals, the links are taken greedily in this order: a link held at the step before first (an
    established link keeps its terminals while it stays feasible), then the lower ``score`` (range: shortest
    first), then the lower link index; a link is taken when both its ends still have a free terminal. With
    ``margin`` below 1 (the ``nearest`` pattern's hysteresis) a held link is ranked as if its score were
    ``(1 - margin)`` times its own: it keeps its terminals while it stays feasible unless a new candidate is
    shorter by more than that fraction (0.2: 20 % shorter), so two partners at nearly the same range never make
    a terminal flip between them. Steps
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
        if margin >= 1:
            order = idx[np.lexsort((idx, score[k, idx], ~prev[idx]))]
        else:
            order = idx[np.lexsort((idx, np.where(prev[idx], (1 - margin) * score[k, idx], score[k, idx])))]
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
