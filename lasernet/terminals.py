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


def acquired(feasible: np.ndarray, step_s: float, acquisition_s: float) -> np.ndarray:
    """Which feasible link-steps carry traffic once acquisition time is honoured; ``feasible`` is (T, L).

    A link that turns feasible between steps k-1 and k is taken to have become reachable at step k (the
    conservative reading of a sampled timeline) and carries traffic from the first step at least
    ``acquisition_s`` later. A link feasible at the first step counts as already acquired.
    """
    feasible = np.asarray(feasible, dtype=bool)
    if acquisition_s <= 0 or feasible.size == 0:
        return feasible.copy()
    steps = np.arange(feasible.shape[0], dtype=np.int32)[:, None]
    last_off = np.where(feasible, np.int32(-1), steps)
    np.maximum.accumulate(last_off, axis=0, out=last_off)
    waited_s = (steps - last_off - 1) * step_s
    return feasible & ((last_off < 0) | (waited_s >= acquisition_s - 1e-9))
