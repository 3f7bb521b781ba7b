"""Radiation upsets: when each satellite's computers are hit hard enough to restart, and its router's reboots.

Energetic protons and heavy ions flip bits in electronics (single-event upsets); most are corrected, some hang a
computer, which must restart. Their rate depends on where the satellite flies: in low orbit most hits come in the
South Atlantic Anomaly (SAA), where the inner Van Allen belt dips to a few hundred km because the geomagnetic
dipole is offset from the Earth's centre. The scenario's ``upsets:`` section (:mod:`lasernet.spec.faults`) gives a
rate per satellite and day outside the SAA and one inside it, and the SAA as a polygon in latitude and longitude
(by default Fermi GBM's boundary, :data:`lasernet.spec.faults.GBM_SAA_POLYGON`). The model has no altitude
dependence and no solar cycle: the rates are the scenario's.

Upsets are a Poisson process per satellite whose rate is piecewise constant: at each step it is the rate of
where the satellite is at the step's start. They are drawn by time rescaling: satellite n's j-th upset comes
when its cumulative hazard H_n(t) = integral of its rate reaches S_nj = E_n1 + ... + E_nj, with E_nj unit
exponentials. Each E_nj is a hash (SplitMix64) of the scenario's seed, n and j, not a draw from a stream, so the
same scenario gives the same upsets whatever the plan's windows, and a window needs only each satellite's
hazard and count so far (its :class:`~lasernet.timeline.Carry`) to continue.

An upset restarts the satellite's servers (the live half does that); with ``router_reboot_s`` > 0 it reboots
the router too: every link of the satellite is down from the upset for that long (cause ``reboot``), then
acquires again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import geometry
from .spec.faults import Upsets

def splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser (Steele, Lea and Flood 2014) of uint64 values, element-wise: a well-mixed hash."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def unit_exponential(seed: int, satellite: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The unit exponential E(seed, satellite, index), from a uniform (0, 1) made of 53 bits of their hash."""
    h = splitmix64(splitmix64(splitmix64(np.uint64(seed)) ^ np.asarray(satellite, dtype=np.uint64))
                   ^ np.asarray(index, dtype=np.uint64))
    u = ((h >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53
    return -np.log(u)


def inside_polygon(lat_deg: np.ndarray, lon_deg: np.ndarray, polygon: tuple[tuple[float, float], ...]) -> np.ndarray:
    """True where (lat, lon) lies inside the polygon of (lat, lon) vertices (even-odd rule on the plane of lon
    and lat, as the SAA polygons are drawn; they do not cross the antimeridian)."""
    lat, lon = np.asarray(lat_deg), np.asarray(lon_deg)
    inside = np.zeros(np.broadcast(lat, lon).shape, dtype=bool)
    v = list(polygon)
    if v[0] != v[-1]:
        v.append(v[0])
    for (y0, x0), (y1, x1) in zip(v[:-1], v[1:]):
        if y0 == y1:
            continue
        crosses = (lat >= min(y0, y1)) & (lat < max(y0, y1))
        x_at = x0 + (lat - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (lon < x_at)
    return inside


def in_saa(pos_km: np.ndarray, cfg: Upsets) -> np.ndarray:
    """(..., ) True where ITRS positions (..., 3) are over the scenario's SAA polygon (geocentric latitude)."""
    lon = np.degrees(np.arctan2(pos_km[..., 1], pos_km[..., 0]))
    return inside_polygon(geometry.latitude_deg(pos_km), lon, cfg.saa_polygon)


def rate_per_s(inside: np.ndarray, cfg: Upsets) -> np.ndarray:
    """Upset rate (per second) of satellites inside or outside the SAA."""
    return np.where(inside, cfg.saa_rate_per_day, cfg.rate_per_day) / 86400.0


@dataclass(frozen=True)
class UpsetPlan:
    """One window's upsets: ``step``, ``satellite``, exact ``offset_s`` after the window's start, ``in_saa``
    (sorted by time), and the (T, N) mask of steps whose router is rebooting."""

    step: np.ndarray
    satellite: np.ndarray
    offset_s: np.ndarray
    in_saa: np.ndarray
    rebooting: np.ndarray  # (T, N) bool
    expected: float = 0.0  # the rate integral over the window's steps (each lasting step_s), over satellites
    saa_share: float = 0.0  # share of satellite-steps inside the SAA


def plan_upsets(cfg: Upsets, inside: np.ndarray, step_s: float, seed: int, hazard0: np.ndarray | None = None,
                count0: np.ndarray | None = None, reboot_until_s: np.ndarray | None = None):
    """Upsets of a window whose (T, N) SAA flags are ``inside``.

    ``hazard0``, ``count0`` (N,): each satellite's cumulative hazard at the first step's start and its upsets
    before it (the threshold of the next is the sum of the count0 + 1 first exponentials); ``reboot_until_s``
    (2, N): from and until when (seconds after the window's start) the reboots a previous window drew last, the
    steps starting in that interval rebooting. Returns the
    :class:`UpsetPlan` and the carry of the window's last step: (hazard at its start, upsets before its end,
    threshold sum so far, reboot end relative to that step). Upsets within the last step belong to this window;
    the next one, which starts at that step, does not draw them again.
    """
    T, N = inside.shape
    hazard0 = np.zeros(N) if hazard0 is None else np.asarray(hazard0, dtype=float)
    count0 = np.zeros(N, dtype=np.int64) if count0 is None else np.asarray(count0, dtype=np.int64)
    rate = rate_per_s(inside, cfg)  # (T, N)
    inc = rate * step_s
    # one sequential sum from the carried hazard: the same additions, in the same order, as one long plan's
    H = np.cumsum(np.concatenate([hazard0[None, :], inc]), axis=0)
    sats = np.arange(N)
    # thresholds: S_j = sum of the first j exponentials; rebuild S_count0 from the hash (no float carried)
    threshold = _threshold_sum(seed, sats, count0)
    ev_sat, ev_thr, ev_idx = [], [], []
    count = count0.copy()
    nxt = threshold + unit_exponential(seed, sats, count + 1)
    live = nxt < H[T]
    while live.any():
        n = np.flatnonzero(live)
        ev_sat.append(n)
        ev_thr.append(nxt[n])
        count[n] += 1
        ev_idx.append(count[n].copy())
        nxt[n] = nxt[n] + unit_exponential(seed, n, count[n] + 1)
        live = nxt < H[T]
    sat = np.concatenate(ev_sat) if ev_sat else np.zeros(0, dtype=np.int64)
    thr = np.concatenate(ev_thr) if ev_thr else np.zeros(0)
    # the step holding each upset: H[k] <= S < H[k+1]; within it, H rises at the step's rate
    # one search over every satellite's hazard laid end to end, each shifted above the one before
    shift = float(H[T].max()) + 1.0
    lanes = (H + np.arange(N) * shift).T.ravel()
    step = np.searchsorted(lanes, thr + sat * shift, side="right") - 1 - sat * (T + 1)
    step = np.clip(step, 0, T - 1)
    r = rate[step, sat]
    offset = step * step_s + np.where(r > 0, (thr - H[step, sat]) / np.where(r > 0, r, 1.0), 0.0)
    order = np.lexsort((sat, offset))
    sat, step, offset = sat[order], step[order], offset[order]
    ins = inside[step, sat] if len(sat) else np.zeros(0, dtype=bool)
    # reboots: every step starting within [upset, upset + router_reboot_s)
    rebooting = np.zeros((T, N), dtype=bool)
    offsets = np.arange(T) * step_s
    t_last = (T - 1) * step_s
    since, until = np.full(N, np.inf), np.full(N, -np.inf)  # the reboots reaching past the last step's start
    if reboot_until_s is not None:
        since, until = (np.asarray(x, dtype=float).copy() for x in reboot_until_s)
        rebooting |= (offsets[:, None] >= since[None, :] - 1e-9 * step_s) & (offsets[:, None] < until[None, :])
    if cfg.router_reboot_s > 0 and len(sat):
        first = np.ceil(offset / step_s - 1e-9).astype(np.int64)  # first step starting at or after the upset
        last = np.ceil((offset + cfg.router_reboot_s) / step_s - 1e-9).astype(np.int64)  # first step after it
        for n, a, b in zip(sat.tolist(), first.tolist(), last.tolist()):
            rebooting[a:min(b, T), n] = True
        ends = offset + cfg.router_reboot_s
        going = ends > t_last
        since = np.where(until > t_last, since, np.inf)
        np.minimum.at(since, sat[going], offset[going])
        np.maximum.at(until, sat[going], ends[going])
    # Carry: the hazard at the last step's start; the count includes the last step's upsets (drawn here: the next
    # window, which starts at that step, continues after them); the reboots still to come or running, as one
    # interval per satellite relative to that step (two of them leave no step start between them).
    going = until > t_last
    carry = (H[T - 1].copy(), count, np.stack([np.where(going, since - t_last, np.inf),
                                               np.where(going, until - t_last, -np.inf)]))
    return UpsetPlan(step, sat, offset, ins, rebooting, float((H[T] - H[0]).sum()),
                     float(inside.mean()) if inside.size else 0.0), carry


def _threshold_sum(seed: int, sats: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Sum of the first ``count[n]`` exponentials of each satellite (vectorised over satellites)."""
    total = np.zeros(len(sats))
    top = int(count.max()) if len(count) else 0
    for j in range(1, top + 1):
        has = count >= j
        total[has] += unit_exponential(seed, sats[has], np.full(int(has.sum()), j))
    return total
