"""Clouds over optical ground stations: a seeded, time-correlated cloud state per station, correlated by distance.

A laser beam does not cross a cloud: while a cloud stands over an optical ground station, none of its ground
links carries traffic (cause ``cloud``). Clouds come and go on time scales of hours and extend over hundreds of
kilometres, so neighbouring stations tend to be clouded together (which is why operators spread optical ground
stations far apart: site diversity).

Each station's sky is a two-state Markov chain, clear or clouded, with two parameters: the long-run share of
time it is clear, ``cloud_free`` (p), and the correlation time of its state, ``correlation_s`` (tau): the
autocorrelation of the clear/clouded indicator is exp(-lag / tau) exactly. It is built as a *renewal*: at each
step of ``step_s``, with probability r = 1 - exp(-step_s / tau), the state is drawn afresh (clouded with
probability 1 - p), and otherwise it stays. That is the Markov chain with P(clear -> clouded) = r (1 - p) and
P(clouded -> clear) = r p, whose stationary clear share is p and whose lag-k correlation is (1 - r)^k; mean
spells last tau / (1 - p) clear and tau / p clouded. Because the state at any step is the draw of the last
renewal, the whole window is computed with a running maximum over time, vectorised over stations.

Nearby stations share weather. What a station draws at a renewal is decided by thresholding a standard normal
number, and those numbers are correlated between stations as exp(-d / L) (d the straight-line distance between
the stations, L = ``correlation_km``: a Gaussian copula, so each station keeps its own p and tau); whether a
station renews at a step is decided by one uniform number per step shared by all stations (renew where it is
below the station's r), so that stations with the same tau renew together and their skies differ only by what
they draw. Two stations at one place with the same figures have the same sky; stations many L apart have
independent skies (their draws are; shared renewal instants alone correlate nothing); in between, the
correlation of their clear/clouded states is that of two thresholded normals of correlation exp(-d / L) (for
p = 0.5: (2 / pi) asin(exp(-d / L)), 0.51 where exp(-d / L) is 0.72).

Randomness is seeded by the scenario's seed and by step count since the start of the run, in blocks of
:data:`BLOCK_STEPS` steps, so the same scenario and start give the same clouds, and plan windows that continue
one another (:class:`lasernet.timeline.Carry`: the state just before a window and its step count) give the clouds
of one long plan. Clouds are planned only for a scenario with a ``ground.clouds`` section; stations without
figures of their own (``cloud_free``, ``cloud_correlation_s``, from the scenario or a sites file) take its
values, whose defaults (:data:`~lasernet.spec.scenario.DEFAULT_CLOUD_FREE` 0.5, ``DEFAULT_CORRELATION_S`` 3 h,
``DEFAULT_CORRELATION_KM`` 300 km) are placeholders, not climatology: give real figures per site where you have
them. Only laser ground links are blocked (the scenario refuses ``ground.clouds`` with RF ground terminals).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from . import geometry
from .spec.scenario import Scenario

#: Steps per block of random numbers (each block has its own seed: any window draws only the blocks it spans).
BLOCK_STEPS = 4096
_SEED_TAG = 0x636C6F7564  # "cloud"


@dataclass(frozen=True)
class Clouds:
    """The cloud processes of a scenario's G stations (the plan applies them to laser ground links only)."""

    cloud_free: np.ndarray  # (G,) long-run clear share p
    correlation_s: np.ndarray  # (G,) correlation time tau of the clear/clouded state
    mixing: np.ndarray  # (G, G) factor F with F F^T = exp(-d / L)
    seed: int


def of(scenario: Scenario) -> Clouds | None:
    """The scenario's clouds, or None when it has none (no ``ground.clouds``: the figures sites carry are then
    unused, so that a scenario plans as before until it asks for clouds)."""
    stations, defaults = scenario.ground, scenario.clouds
    if defaults is None:
        return None
    p = np.array([g.cloud_free if g.cloud_free is not None else defaults.cloud_free for g in stations], float)
    tau = np.array([g.cloud_correlation_s if g.cloud_correlation_s is not None else defaults.correlation_s
                    for g in stations], float)
    length_km = defaults.correlation_km
    pos = geometry.geodetic_to_itrs_km([g.lat_deg for g in stations], [g.lon_deg for g in stations],
                                       [g.alt_m for g in stations]).reshape(-1, 3)
    d_km = geometry.norm_km(pos[:, None, :] - pos[None, :, :])
    corr = np.exp(-d_km / length_km) if length_km > 0 else np.eye(len(stations))
    w, v = np.linalg.eigh(corr)  # symmetric, positive semi-definite (exp(-d/L) is a valid covariance in 3-D)
    mixing = v * np.sqrt(np.clip(w, 0.0, None))[None, :]
    return Clouds(p, tau, mixing, scenario.seed)


def _thresholds(clouds: Clouds, step_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal thresholds per station: renew below the first, and a renewal is clouded below the second."""
    inv = NormalDist().inv_cdf

    def z(prob):
        return -math.inf if prob <= 0 else (math.inf if prob >= 1 else inv(prob))

    renew = [z(-math.expm1(-step_s / tau)) for tau in clouds.correlation_s]
    clouded = [z(1.0 - p) for p in clouds.cloud_free]
    return np.array(renew), np.array(clouded)


def _normals(clouds: Clouds, first: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Standard normals of steps ``first .. first + count - 1`` since the run's start: (count,) for the renewal
    instants, shared by all stations, and (count, G) for the draws, correlated between stations."""
    G = len(clouds.cloud_free)
    out = np.empty((count, 1 + G))
    b0, b1 = first // BLOCK_STEPS, (first + count - 1) // BLOCK_STEPS
    for block in range(b0, b1 + 1):
        raw = np.random.default_rng([clouds.seed, _SEED_TAG, G, block]).standard_normal((BLOCK_STEPS, 1 + G))
        lo = max(first, block * BLOCK_STEPS)
        hi = min(first + count, (block + 1) * BLOCK_STEPS)
        out[lo - first:hi - first] = raw[lo - block * BLOCK_STEPS:hi - block * BLOCK_STEPS]
    return out[:, 0], out[:, 1:] @ clouds.mixing.T


def clouded(clouds: Clouds, T: int, step_s: float, first_step: int = 0,
            before: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(T, G) bool: stations under a cloud at T steps of ``step_s``, the first being ``first_step`` steps after
    the start of the run, and the state (G,) just before the last step (the next window's ``before``).

    At the run's first step (``first_step`` 0) every station draws its state from the long-run share; later
    windows continue from ``before``, the state just before their first step.
    """
    G = len(clouds.cloud_free)
    if T == 0:
        return np.zeros((0, G), bool), (np.zeros(G, bool) if before is None else before.copy())
    renew_z, cloud_z = _thresholds(clouds, step_s)
    when, what = _normals(clouds, first_step, T)
    renew = when[:, None] < renew_z[None, :]
    draw = what < cloud_z[None, :]
    if first_step == 0 or before is None:
        renew[0] = True
    steps = np.where(renew, np.arange(T)[:, None], -1)
    np.maximum.accumulate(steps, axis=0, out=steps)
    prior = np.zeros(G, bool) if before is None else np.asarray(before, bool)
    state = np.where(steps >= 0, np.take_along_axis(draw, np.maximum(steps, 0), axis=0), prior[None, :])
    return state, (state[-2] if T >= 2 else prior).copy()
