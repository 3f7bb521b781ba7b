"""The numbers behind the report's orbital data-centre figures: shadow, power states, compute and faults per plane.

A data centre in orbit runs on sunlight. Once per orbit most satellites cross the Earth's shadow: the penumbra
(part of the solar disc hidden, a few seconds) then the umbra (all of it, up to ~35 minutes in low orbit; none at
all in a dawn-dusk sun-synchronous orbit outside its eclipse season). In the umbra the array gives nothing and
the battery carries the bus and the compute; when it runs low the satellite's power state (:mod:`lasernet.power`)
throttles its compute, then switches it off, and its servers' CPU quota follows. The satellites of one orbital
plane follow each other around the same orbit, so they enter the shadow one after another: a plane is the
natural unit to show, and the figures draw one row per plane.

Everything here reads the run's plan (``plan.npz``, a :class:`lasernet.timeline.Timeline`) and, for what the
driver applied, the rows of its ``events.csv``; the scenario (``scenario.yaml``) only gives each satellite's
compute. Functions return arrays; :mod:`lasernet.measure.plots` draws them:

* :func:`plane_index`: the plane of each satellite (``<shell>-<plane>``; satellites of element files form one
  group, ``elements``);
* :func:`plane_shares`: per step and plane, the share of satellites in each illumination state (umbra, penumbra,
  sunlit) or power state (off, throttled, nominal), from the plan's (T, N) codes;
* :func:`compute_weights` and :func:`compute_allowed`: the compute the power states allow, the sum over
  satellites of each one's configured compute power (the power group's ``compute_w`` plus ``server_w`` per
  server attached, the load of its compute at quota 1) times the CPU quota factor of its state at each step;
* :func:`server_cpus_planned` and :func:`server_cpus_applied`: the same for the scenario's servers, in CPUs
  (each server's ``cpus``, or 1 where it sets no limit, times its satellite's quota factor), as planned and as
  the driver applied it (``events.csv`` rows of kind ``server``, cause ``power``);
* :func:`fault_events`: radiation upsets and collision-avoidance manoeuvres per plane, from the plan, and the
  server restarts the driver applied.
"""

from __future__ import annotations

import numpy as np

from ..geometry import ILLUMINATION
from ..power import POWER_STATES, systems
from ..timeline import servers_per_satellite

__all__ = ["ILLUMINATION", "POWER_STATES", "FAULT_CAUSES", "plane_index", "plane_shares", "modelled",
           "compute_weights", "compute_allowed", "server_cpus_planned", "server_cpus_applied",
           "fault_events"]

#: The plan's fault causes (:meth:`lasernet.timeline.Timeline.fault_events`) in the order they are drawn, with
#: the label each gets in the report.
FAULT_CAUSES = {"upset": "radiation upset (restart or router reboot)",
                "upset-saa": "radiation upset in the South Atlantic Anomaly",
                "conjunction": "collision-avoidance manoeuvre"}


def plane_index(timeline) -> tuple[list[str], np.ndarray]:
    """(labels of the planes, (N,) index of each satellite's plane into them), planes in order of appearance."""
    planes = timeline.planes or ("",) * timeline.n_satellites
    labels: list[str] = []
    index = np.empty(len(planes), dtype=np.int64)
    seen: dict[str, int] = {}
    for n, label in enumerate(planes):
        label = label or "elements"
        if label not in seen:
            seen[label] = len(labels)
            labels.append(label)
        index[n] = seen[label]
    return labels, index


def plane_shares(codes: np.ndarray, plane: np.ndarray, n_planes: int, n_codes: int) -> np.ndarray:
    """(T, P, K) share of each plane's satellites whose code at each step is k (rows sum to 1 over k).

    ``codes`` (T, N) are the plan's state codes (illumination or power state), ``plane`` (N,) each satellite's
    plane; a plane with no satellite among the columns gives NaN. One matrix product per code: no loop over
    satellites or steps.
    """
    onehot = np.zeros((len(plane), n_planes), dtype=np.float32)  # float32 counts are exact below 2**24
    onehot[np.arange(len(plane)), plane] = 1.0
    size = onehot.sum(axis=0, dtype=np.float64)
    counts = np.stack([(codes == k).astype(np.float32) @ onehot for k in range(n_codes)], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts / size[None, :, None]


def modelled(timeline) -> np.ndarray:
    """(N,) True for the satellites with a power model (all False without a ``power:`` section)."""
    if timeline.power is None or not len(timeline.offsets_s):
        return np.zeros(timeline.n_satellites, dtype=bool)
    return np.isfinite(timeline.power.soc[0])


def compute_weights(timeline, scenario=None) -> tuple[np.ndarray, str]:
    """(N,) compute of each satellite at quota 1 and its unit: ``"W"``, or ``"satellites"`` (see below).

    From the scenario's power groups (``compute_w`` + ``server_w`` per attached server, what the plan's load
    model draws); without a scenario (a run directory whose scenario no longer loads), 1 per satellite with a
    power model: the compute available is then counted in satellites' worth of compute.
    """
    names = timeline.node_names[:timeline.n_satellites]
    if scenario is not None and scenario.power:
        ps = systems(scenario.power, names, servers_per_satellite(scenario, names))
        return np.where(ps.modelled, ps.compute_w, 0.0), "W"
    return modelled(timeline).astype(float), "satellites"


def compute_allowed(quota: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(T,) compute the power states allow, in the unit of ``weights`` (N,): their sum over satellites, each
    times its CPU quota factor ``quota`` (T, N) at the step."""
    return quota.astype(np.float64) @ weights


def _satellite_servers(timeline, scenario) -> list[tuple[str, int, float]]:
    """(server, satellite index, CPUs at quota 1: its ``cpus``, 1 without a limit) of servers on satellites."""
    index = {n: i for i, n in enumerate(timeline.node_names[:timeline.n_satellites])}
    if scenario is None:
        return []
    return [(h.name, index[h.attach], 1.0 if h.cpus is None else float(h.cpus)) for h in scenario.hosts
            if h.attach in index]


def server_cpus_planned(timeline, scenario) -> np.ndarray | None:
    """(T,) CPUs the plan lets the satellites' servers use: each server's CPUs times its satellite's quota
    factor, summed. None when no server is attached to a satellite."""
    servers = _satellite_servers(timeline, scenario)
    if not servers:
        return None
    sat = np.array([s[1] for s in servers])
    cpus = np.array([s[2] for s in servers])
    return timeline.cpu_quota[:, sat].astype(np.float64) @ cpus


def server_cpus_applied(timeline, scenario, events: list[dict], end_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(t_s, CPUs) step function of the servers' CPUs as the driver applied them (``events.csv`` rows of kind
    ``server`` and cause ``power``; their ``detail`` is ``cpus X`` or ``cpu factor F``). Servers start at their
    full CPUs (a first nominal state is not recorded). Empty arrays when no server is on a satellite."""
    servers = _satellite_servers(timeline, scenario)
    if not servers:
        return np.zeros(0), np.zeros(0)
    full = {name: cpus for name, _, cpus in servers}
    now = dict(full)
    t, total = [0.0], [sum(now.values())]
    for r in events:
        if r.get("kind") != "server" or r.get("cause") != "power" or r.get("what") not in full:
            continue
        words = (r.get("detail") or "").split()
        try:
            value = float(words[-1])
        except (IndexError, ValueError):
            continue
        now[r["what"]] = value if words[0] == "cpus" else value * full[r["what"]]
        t.append(float(r["t_s"]))
        total.append(sum(now.values()))
    t.append(max(end_s, t[-1]))
    total.append(total[-1])
    return np.array(t), np.array(total)


def fault_events(timeline, plane: np.ndarray, events: list[dict], end_s: float) -> dict:
    """Faults to draw on the timeline, up to ``end_s``.

    ``planned[cause] = (t_s, plane index)`` for each cause of :data:`FAULT_CAUSES` the plan has (upsets at their
    exact instant, manoeuvres at their start); ``applied = (t_s, plane index)`` of the server restarts the
    driver applied (``events.csv`` kind ``server``, event ``restart``; the server's satellite is column ``b``).
    """
    fev = timeline.fault_events()
    keep = fev["offset_s"] <= end_s
    planned = {}
    for cause in FAULT_CAUSES:
        sel = keep & (fev["cause"] == cause)
        if sel.any():
            planned[cause] = (fev["offset_s"][sel].astype(float), plane[fev["satellite"][sel]])
    index = {n: i for i, n in enumerate(timeline.node_names[:timeline.n_satellites])}
    rows = [(float(r["t_s"]), plane[index[r["b"]]]) for r in events
            if r.get("kind") == "server" and r.get("event") == "restart" and r.get("b") in index]
    applied = (np.array([r[0] for r in rows]), np.array([r[1] for r in rows], dtype=np.int64))
    return {"planned": planned, "applied": applied}

