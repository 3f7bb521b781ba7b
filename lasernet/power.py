"""Each satellite's battery and power state over a window: sunlight in, bus and compute out, compute shed when low.

Energy balance per satellite and time step of ``step_s`` seconds (the scenario's ``power:`` section,
:mod:`lasernet.spec.power`, gives the figures):

* supply: the solar array's ``solar_w`` times the visible fraction of the solar disc (the plan's
  ``illumination``: 1 sunlit, between 0 and 1 in the penumbra, 0 in the umbra). The array tracks the Sun, so
  there is no cosine loss; degradation and temperature are ignored;
* load: ``bus_w`` always, plus the compute (``compute_w`` + ``server_w`` per attached server) times the power
  state's CPU quota factor: 1 ``nominal``, ``throttle_factor`` ``throttled``, 0 ``off``;
* battery: the difference charges it (at most ``max_charge_w``, nothing once at ``soc_max``: the surplus is
  shed) or discharges it (at most ``max_discharge_w``). The battery is lossless. Its state of charge stays in
  ``[soc_min, soc_max]``; what the bus would have drawn below ``soc_min`` is counted as unserved energy
  (``deficit_wh``), the bus itself is never switched off in this model.

The power state at a step follows the SoC at its start with hysteresis (thresholds in
:mod:`lasernet.spec.power`): it drops to ``throttled`` below ``throttle_below`` and to ``off`` below
``off_below``, and rises only above ``on_above`` (off to throttled) and ``resume_above`` (to nominal). A state
whose load the array and the battery's discharge limit cannot carry (or the array alone, with the battery at
``soc_min``) is lowered to the highest one they can.

Why a loop over time steps (vectorised over satellites) and not a cumulative sum: the load depends on the power
state, the state on the SoC and the SoC on the past load, so step k+1 needs step k; and the SoC is clipped at
both ends, which a cumulative sum cannot express. Each step is a dozen numpy operations over the N satellites.

A plan window starts from the SoC and state its :class:`~lasernet.timeline.Carry` holds, so windows chain into
one continuous plan. Satellites of no power group are always ``nominal`` with quota 1 and SoC NaN.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import numpy as np

from .spec.power import NOMINAL, OFF, POWER_STATES, THROTTLED, PowerGroup

__all__ = ["POWER_STATES", "POWER_CAUSES", "NOMINAL", "THROTTLED", "OFF", "PowerSystems", "PowerPlan", "systems",
           "simulate"]

#: Why a power state changed: down because the SoC crossed a falling threshold (``low-battery``) or because the
#: array and the battery's discharge limit could not carry the load (``supply``); up because the SoC rose past a
#: rising threshold (``recharged``) or because the supply that had held the state down came back
#: (``supply-restored``, typically the Sun rising with the battery still above its thresholds).
POWER_CAUSES = ("", "low-battery", "supply", "recharged", "supply-restored")
_LOW, _SUPPLY, _RECHARGED, _RESTORED = 1, 2, 3, 4
#: Added to a carried power state when the supply limit held it down (so its rise is told ``supply-restored``).
_LIMITED = 8


@dataclass(frozen=True)
class PowerSystems:
    """Per-satellite (N,) arrays of the power figures; ``modelled`` is False for satellites of no group."""

    modelled: np.ndarray  # bool
    solar_w: np.ndarray
    capacity_wh: np.ndarray
    bus_w: np.ndarray
    compute_w: np.ndarray  # at quota 1: compute_w + server_w * attached servers
    charge_limit_w: np.ndarray
    discharge_limit_w: np.ndarray
    soc_min: np.ndarray
    soc_max: np.ndarray
    soc_start: np.ndarray
    off_below: np.ndarray
    on_above: np.ndarray
    throttle_below: np.ndarray
    resume_above: np.ndarray
    throttle_factor: np.ndarray

    @property
    def any(self) -> bool:
        return bool(self.modelled.any())


@dataclass(frozen=True)
class PowerPlan:
    """(T, N) arrays of one window: SoC (fraction; NaN unmodelled), state (codes into :data:`POWER_STATES`),
    CPU quota factor, solar and load power (W), the unserved bus energy per satellite (N,) in Wh and the cause of
    each change of state."""

    soc: np.ndarray  # float32
    state: np.ndarray  # uint8
    quota: np.ndarray  # float32
    solar_w: np.ndarray  # float32
    load_w: np.ndarray  # float32
    deficit_wh: np.ndarray  # (N,) float64
    cause: np.ndarray  # (T, N) uint8: why the state changed at that step, code into POWER_CAUSES (0: no change)


def systems(groups: tuple[PowerGroup, ...], names: tuple[str, ...], servers_per_satellite: np.ndarray) -> PowerSystems:
    """Per-satellite arrays from the scenario's groups (a satellite's group is the one whose globs match it)."""
    N = len(names)
    f = {key: np.zeros(N) for key in ("solar_w", "capacity_wh", "bus_w", "compute_w", "charge_limit_w",
                                      "discharge_limit_w", "soc_min", "soc_max", "soc_start", "off_below",
                                      "on_above", "throttle_below", "resume_above")}
    f["throttle_factor"] = np.ones(N)
    f["capacity_wh"][:] = 1.0
    modelled = np.zeros(N, dtype=bool)
    for g in groups:
        hit = np.array([any(fnmatch.fnmatchcase(n, glob) for glob in g.satellites) for n in names], dtype=bool)
        modelled |= hit
        for key, value in (("solar_w", g.solar_w), ("capacity_wh", g.battery_wh), ("bus_w", g.bus_w),
                           ("charge_limit_w", g.charge_limit_w), ("discharge_limit_w", g.discharge_limit_w),
                           ("soc_min", g.soc_min), ("soc_max", g.soc_max), ("soc_start", g.start_soc),
                           ("off_below", g.off_below), ("on_above", g.on_above),
                           ("throttle_below", g.throttle_below), ("resume_above", g.resume_above),
                           ("throttle_factor", g.throttle_factor)):
            f[key][hit] = value
        f["compute_w"][hit] = g.compute_w + g.server_w * servers_per_satellite[hit]
    return PowerSystems(modelled=modelled, **f)


def quota_factor(ps: PowerSystems, state: np.ndarray, satellites: np.ndarray | None = None) -> np.ndarray:
    """CPU quota factor of power states (..., n) of ``satellites`` (default all): 1 nominal, the group's
    ``throttle_factor`` throttled, 0 off."""
    factor = ps.throttle_factor if satellites is None else ps.throttle_factor[satellites]
    return np.where(state == NOMINAL, 1.0, np.where(state == THROTTLED, factor, 0.0))


def simulate(ps: PowerSystems, illumination: np.ndarray, step_s: float, soc0: np.ndarray | None = None,
             state0: np.ndarray | None = None) -> tuple[PowerPlan, np.ndarray, np.ndarray]:
    """Step the energy balance over a window (see the module docstring).

    ``illumination`` (T, N) is the visible solar fraction at each step; ``soc0`` and ``state0`` (N,) the SoC and
    state at the first step's start (default: each group's ``soc_start``, nominal) and the state the step before
    (hysteresis). Returns the window's :class:`PowerPlan` and the SoC and state its last step hands on (those at
    the last step: a next window starting there recomputes that step from them identically).
    """
    T, N = illumination.shape
    soc = ps.soc_start.copy() if soc0 is None else np.asarray(soc0, dtype=float).copy()
    prev = np.full(N, NOMINAL, dtype=np.int8) if state0 is None else np.asarray(state0, dtype=np.int8).copy()
    out_soc = np.full((T, N), np.nan, dtype=np.float32)
    out_state = np.full((T, N), NOMINAL, dtype=np.uint8)
    out_quota = np.ones((T, N), dtype=np.float32)
    out_solar = np.zeros((T, N), dtype=np.float32)
    out_load = np.zeros((T, N), dtype=np.float32)
    deficit = np.zeros(N)
    m = ps.modelled
    if not m.any() or T == 0:
        return (PowerPlan(out_soc, out_state, out_quota, out_solar, out_load, deficit,
                          np.zeros((T, N), dtype=np.uint8)), soc, prev)
    idx = np.flatnonzero(m)
    sub = {k: getattr(ps, k)[idx] for k in ("solar_w", "capacity_wh", "bus_w", "compute_w", "charge_limit_w",
                                            "discharge_limit_w", "soc_min", "soc_max", "off_below", "on_above",
                                            "throttle_below", "resume_above", "throttle_factor")}
    s, state = soc[idx], (prev[idx] % _LIMITED).astype(np.int8)
    limited = prev[idx] >= _LIMITED
    wh_per_step = step_s / 3600.0
    cap = sub["capacity_wh"]
    # Load of each state (off, throttled, nominal): (3, n)
    level_load = np.stack([sub["bus_w"], sub["bus_w"] + sub["throttle_factor"] * sub["compute_w"],
                           sub["bus_w"] + sub["compute_w"]])
    cols = np.arange(len(idx))
    solar_all = illumination[:, idx].astype(float) * sub["solar_w"]
    soc_at_last, state_before_last = s.copy(), prev[idx].copy()
    w_soc, w_state, w_load = np.empty((T, len(idx))), np.empty((T, len(idx)), np.uint8), np.empty((T, len(idx)))
    w_cause = np.zeros((T, len(idx)), dtype=np.uint8)
    for k in range(T):
        if k == T - 1:
            soc_at_last, state_before_last = s.copy(), state + _LIMITED * limited
        solar = solar_all[k]
        # hysteresis: fall to the level the falling thresholds allow, rise to the one the rising ones allow
        down = np.where(s < sub["off_below"], OFF, np.where(s < sub["throttle_below"], THROTTLED, NOMINAL))
        up = np.where(s >= sub["resume_above"], NOMINAL, np.where(s >= sub["on_above"], THROTTLED, OFF))
        before = state
        state = np.maximum(np.minimum(state, down), up).astype(np.int8)
        why = np.where(state < before, _LOW, np.where(state > before, np.where(limited, _RESTORED, _RECHARGED), 0))
        # feasibility: the array plus what the battery may give (nothing at soc_min) must carry the load
        supply = solar + np.where(s > sub["soc_min"], sub["discharge_limit_w"], 0.0) + 1e-9
        highest = np.where(level_load[2] <= supply, NOMINAL, np.where(level_load[1] <= supply, THROTTLED, OFF))
        limited = highest < state
        why = np.where(limited & (highest < before), _SUPPLY, why)
        state = np.minimum(state, highest).astype(np.int8)
        why = np.where(state == before, 0, why)
        load = level_load[state, cols]
        net = solar - load
        net = np.where(net > 0, np.minimum(net, sub["charge_limit_w"]), np.maximum(net, -sub["discharge_limit_w"]))
        w_soc[k], w_state[k], w_load[k], w_cause[k] = s, state, load, why
        new = s + net * wh_per_step / cap
        deficit[idx] += np.maximum(sub["soc_min"] - new, 0.0) * cap
        s = np.clip(new, sub["soc_min"], sub["soc_max"])
    out_soc[:, idx], out_state[:, idx], out_solar[:, idx], out_load[:, idx] = w_soc, w_state, solar_all, w_load
    out_quota[:, idx] = quota_factor(ps, w_state, idx)
    # Hand on the SoC at the last step's start (float64) and the state of the step before it: the next window
    # begins with that step and recomputes it identically.
    soc_last, state_last = soc.copy(), prev.copy()
    soc_last[idx], state_last[idx] = soc_at_last, state_before_last
    cause = np.zeros((T, N), dtype=np.uint8)
    cause[:, idx] = w_cause
    return PowerPlan(out_soc, out_state, out_quota, out_solar, out_load, deficit, cause), soc_last, state_last
