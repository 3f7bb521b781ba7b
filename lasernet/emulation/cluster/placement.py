"""Which machine of a cluster holds which router: neighbours together, so that few links cross machines.

A +Grid constellation links each satellite to the next and previous one in its orbital plane and to the
satellites of the neighbouring planes. Giving each machine a contiguous block of whole planes (planes in their
order, so plane p sits beside p+1) puts all intra-plane links inside a machine and cuts only the inter-plane
links between two blocks: with P planes of S satellites on M machines, about 2 x (M - 1) x S links cross
(x 2 again if the last plane closes the ring back to the first), against nearly all of them for a random
placement. Blocks are balanced by satellite count; a plane is split only when there are more machines than
planes. Satellites from element files (no plane) are blocked in their file order.

A ground station goes to the machine that holds the satellites it links to most in the first plan window
(counted in link-steps up), so that its ground links cross machines as rarely as the orbit allows; a server
(``hosts:``) sits with its router. Everything here is numpy over the plan; no machine is touched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Placement:
    """``machine[i]`` is the machine index of router ``i`` (satellites first, then ground stations)."""

    machine: np.ndarray  # (N,) int

    @property
    def n_machines(self) -> int:
        return int(self.machine.max()) + 1 if len(self.machine) else 0

    def share(self, n_machines: int) -> np.ndarray:
        """Routers per machine."""
        return np.bincount(self.machine, minlength=n_machines)

    def crossing(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Which of the links (ends ``a``, ``b``: node indices) join routers on two different machines."""
        return self.machine[np.asarray(a)] != self.machine[np.asarray(b)]


def plane_blocks(planes: tuple[str, ...] | list[str], n_machines: int) -> np.ndarray:
    """Machine of each satellite: contiguous blocks of whole planes, balanced by satellite count.

    ``planes`` is each satellite's plane label in the plan's order (plane-major; "" for a satellite of an
    element file, which then is its own group). A plane goes to the machine its middle satellite falls on when
    the satellites are cut into ``n_machines`` equal runs, so blocks stay whole and near equal.
    """
    n = len(planes)
    if n_machines < 1:
        raise ValueError(f"n_machines must be >= 1, got {n_machines}")
    if n == 0:
        return np.zeros(0, np.int64)
    labels = np.asarray([p if p else f"#{i}" for i, p in enumerate(planes)], dtype=object)
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
    sizes = np.diff(np.r_[starts, n])
    if len(starts) < n_machines:  # more machines than planes: cut inside planes, by satellite
        return np.minimum((np.arange(n) * n_machines) // n, n_machines - 1)
    middle = starts + sizes / 2.0
    group_machine = np.minimum((middle * n_machines / n).astype(np.int64), n_machines - 1)
    return np.repeat(group_machine, sizes)


def place(planes, n_satellites: int, n_stations: int, link_a: np.ndarray, link_b: np.ndarray, up: np.ndarray,
          n_machines: int) -> Placement:
    """Place every router of a plan on ``n_machines`` machines (see the module docstring).

    ``link_a``/``link_b`` are the plan's link ends (node indices), ``up`` its (T, L) link states.
    """
    machine = np.zeros(n_satellites + n_stations, np.int64)
    machine[:n_satellites] = plane_blocks(list(planes)[:n_satellites] or [""] * n_satellites, n_machines)
    link_a, link_b = np.asarray(link_a, np.int64), np.asarray(link_b, np.int64)
    steps_up = np.asarray(up).sum(axis=0)  # (L,) link-steps up over the window
    votes = np.zeros((n_stations, n_machines))
    for station_end, sat_end in ((link_a, link_b), (link_b, link_a)):
        pick = (station_end >= n_satellites) & (sat_end < n_satellites)
        np.add.at(votes, (station_end[pick] - n_satellites, machine[sat_end[pick]]), steps_up[pick])
    machine[n_satellites:] = np.argmax(votes, axis=1) if n_stations else []
    return Placement(machine)
