"""Satellites from Walker parameters or element files, and their positions over time in the Earth-fixed frame.

A Walker shell is ``planes`` circular orbits of equal altitude and inclination whose ascending nodes are spread
evenly (over 360 degrees for a *delta* shell such as Starlink, over 180 degrees for a *star* shell such as
Iridium), each holding ``sats_per_plane`` satellites evenly spaced in mean anomaly. The phasing factor F shifts
plane p's satellites forward by ``360 * F * p / (planes * sats_per_plane)`` degrees so that satellites of
neighbouring planes do not cross the equator together.

Like Hypatia and Celestial, lasernet turns these parameters into SGP4 element sets with ``sgp4init`` (circular,
no drag) at the scenario's epoch, so that Walker shells and real satellites from TLE or OMM files are propagated
by the same SGP4 code. Propagation is vectorised over satellites and time with ``sgp4.api.SatrecArray``.

SGP4 gives positions in the TEME frame; :func:`teme_to_itrs_km` rotates them about the Earth's axis by the
Greenwich mean sidereal angle into the Earth-fixed ITRS frame (as Skyfield does, polar motion neglected: about
10 m). All positions are in km with shape ``(T, N, 3)``: T instants, N satellites.

Satellite names are ``{shell}-{plane}-{slot}`` (``sat-3-7``) for Walker shells and the sanitised object name
(``iss-zarya``) for element files (:mod:`lasernet.spec.elements` reads those files and names the satellites).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
from sgp4.api import WGS72, Satrec, SatrecArray

from typing import TYPE_CHECKING

from .spec.elements import element_records, satellite_names, walker_names

if TYPE_CHECKING:
    from .spec.scenario import Scenario, Shell

MU_KM3_S2 = 398600.8  # WGS72 gravitational parameter, as SGP4 uses
EARTH_RADIUS_KM = 6378.135  # WGS72 equatorial radius
SGP4_EPOCH0_JD = 2433281.5  # sgp4init counts its epoch in days since 1949-12-31 00:00 UT


@dataclass(frozen=True)
class Satellites:
    """N satellites: names, where they come from (shell, plane, slot; -1 for element files) and SGP4 records."""

    names: tuple[str, ...]
    shell: np.ndarray  # (N,) index into scenario.constellation.shells, -1 for element files
    plane: np.ndarray  # (N,) plane index within the shell, -1 for element files
    slot: np.ndarray  # (N,) slot index within the plane, -1 for element files
    satrecs: tuple[Satrec, ...]

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(name) from None

    def subset(self, idx: np.ndarray) -> "Satellites":
        idx = np.asarray(idx, dtype=int)
        return Satellites(tuple(self.names[i] for i in idx), self.shell[idx], self.plane[idx], self.slot[idx],
                          tuple(self.satrecs[i] for i in idx))

    def teme_km(self, t) -> np.ndarray:
        """TEME positions (T, N, 3) in km at Skyfield times ``t`` (an array Time)."""
        return self.teme_state(t)[0]

    def teme_state(self, t) -> tuple[np.ndarray, np.ndarray]:
        """TEME positions (T, N, 3) in km and velocities (T, N, 3) in km/s at Skyfield times ``t``."""
        jd = np.atleast_1d(t.whole).astype(float)
        fr = np.atleast_1d(t.tai_fraction - t._leap_seconds() / 86400.0).astype(float)
        err, r, v = _satrec_array(self.satrecs).sgp4(jd, fr)
        if np.any(err):
            bad = int(np.argwhere(err)[0][0])
            raise ValueError(f"SGP4 failed for satellite {self.names[bad]} (error code {int(err[bad].max())}: "
                             f"decayed or invalid elements)")
        return np.ascontiguousarray(np.swapaxes(r, 0, 1)), np.ascontiguousarray(np.swapaxes(v, 0, 1))

    def positions_km(self, t) -> np.ndarray:
        """Earth-fixed (ITRS) positions (T, N, 3) in km at Skyfield times ``t``."""
        return teme_to_itrs_km(self.teme_km(t), t)

    def positions_and_velocities(self, t) -> tuple[np.ndarray, np.ndarray]:
        """ITRS positions (T, N, 3) in km, and the *inertial* velocities (T, N, 3) in km/s in ITRS axes.

        The velocity is SGP4's TEME velocity turned by the same rotation as the position, without the Earth's
        rotation taken off: it is the velocity that defines a satellite's orbital (LVLH) frame, expressed in the
        axes every other position of the plan is in (:func:`lasernet.terminals.pointing`).
        """
        r, v = self.teme_state(t)
        return teme_to_itrs_km(r, t), teme_to_itrs_km(v, t)


def _satrec_array(satrecs: tuple[Satrec, ...]) -> SatrecArray:
    # Cached on the tuple's identity: building a SatrecArray of thousands of satellites costs milliseconds. Only
    # the last few are kept: every plan window builds its satellites anew, and a run has windows without end.
    key = id(satrecs)
    cached = _ARRAYS.get(key)
    if cached is None or cached[0] is not satrecs:
        cached = (satrecs, SatrecArray(list(satrecs)))
        _ARRAYS[key] = cached
        while len(_ARRAYS) > _ARRAYS_KEPT:
            del _ARRAYS[next(iter(_ARRAYS))]
    return cached[1]


_ARRAYS: dict[int, tuple] = {}
_ARRAYS_KEPT = 4


def teme_to_itrs_km(r_teme_km: np.ndarray, t) -> np.ndarray:
    """Rotate TEME positions (T, N, 3) into ITRS by the Greenwich mean sidereal angle (GMST 1982) at each time."""
    from skyfield.sgp4lib import theta_GMST1982

    theta, _ = theta_GMST1982(np.atleast_1d(t.whole), np.atleast_1d(t.ut1_fraction))
    c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
    x, y, z = r_teme_km[..., 0], r_teme_km[..., 1], r_teme_km[..., 2]
    return np.stack((c * x + s * y, -s * x + c * y, z), axis=-1)


def mean_motion_rad_min(altitude_km: float) -> float:
    """Keplerian mean motion of a circular orbit at ``altitude_km`` above the WGS72 equator, in rad/min."""
    a_km = EARTH_RADIUS_KM + altitude_km
    return math.sqrt(MU_KM3_S2 / a_km**3) * 60.0


def kepler_period_s(altitude_km: float) -> float:
    """Period of a circular Keplerian orbit at ``altitude_km``: 2 pi sqrt(a^3 / mu)."""
    a_km = EARTH_RADIUS_KM + altitude_km
    return 2 * math.pi * math.sqrt(a_km**3 / MU_KM3_S2)


def walker_elements(shell: Shell) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Plane, slot, RAAN (deg) and mean anomaly (deg) of every satellite of ``shell``, plane-major order."""
    plane, slot = np.divmod(np.arange(shell.size), shell.sats_per_plane)
    P, S = shell.planes, shell.sats_per_plane
    if shell.type == "formation":
        r_km = EARTH_RADIUS_KM + shell.altitude_km
        sin_i = max(math.sin(math.radians(shell.inclination_deg)), 1e-3)
        # Across track: planes whose nodes differ by dRAAN are r * dRAAN * sin(i) apart at the equator.
        raan = shell.raan0_deg + np.degrees((plane - (P - 1) / 2) * shell.spacing_km / (r_km * sin_i))
        anomaly = np.degrees((slot - (S - 1) / 2) * shell.spacing_km / r_km) % 360.0
    else:
        spread = 360.0 if shell.type == "delta" else 180.0
        raan = shell.raan0_deg + spread * plane / P
        anomaly = (360.0 * slot / S + 360.0 * shell.phasing * plane / (P * S)) % 360.0
    return plane, slot, raan % 360.0, anomaly


def formation_eccentricity(shell: Shell) -> tuple[np.ndarray, np.ndarray]:
    """Eccentricity and argument of perigee (deg) of every satellite of ``shell`` (1e-7 and 0 but for formations
    with ``radial_separation_km``).

    Planes of a formation differ in node only, so each pair of them crosses near the latitude extremes (argument
    of latitude u = 90 and 270 deg), where their cross-track separation r dOmega sin(i) cos(u) vanishes: there
    satellites of equal anomaly are only r dOmega |cos i| apart (28 m for suncatcher), and those of planes k
    apart and one slot off k times that less the spacing (3 m for planes 7 apart). E/i-vector separation, as
    flown by TanDEM-X and PRISMA, makes the relative eccentricity vector parallel to the relative inclination
    vector: plane q (counted from the middle) gets eccentricity |q| d / r with its perigee at u = 90 deg (270 for
    q < 0), so its radial offset -q d sin(u) is largest where the cross-track one is zero (d:
    ``radial_separation_km``). Satellites of one plane share it: their separations do not change; across planes
    the along-track separation gains an oscillation of 2 q d cos(u).
    """
    ecc = np.full(shell.size, 1e-7)
    argp = np.zeros(shell.size)
    if shell.type == "formation" and shell.radial_separation_km > 0:
        plane, _ = np.divmod(np.arange(shell.size), shell.sats_per_plane)
        q = plane - (shell.planes - 1) / 2
        e = np.abs(q) * shell.radial_separation_km / (EARTH_RADIUS_KM + shell.altitude_km)
        ecc = np.where(q != 0, e, 1e-7)
        argp = np.where(q > 0, 90.0, np.where(q < 0, 270.0, 0.0))
    return ecc, argp


def walker_satrecs(shell: Shell, epoch: dt.datetime, first_satnum: int = 1) -> list[Satrec]:
    """SGP4 records for a Walker shell: circular orbits (but see :func:`formation_eccentricity`), no drag,
    elements at ``epoch``. The anomaly of :func:`walker_elements` is the argument of latitude at the epoch."""
    epoch_days = _julian_date(epoch) - SGP4_EPOCH0_JD
    n = mean_motion_rad_min(shell.altitude_km)
    incl = math.radians(shell.inclination_deg)
    _, _, raan, anomaly = walker_elements(shell)
    ecc, argp = formation_eccentricity(shell)
    satrecs = []
    for k, (node_deg, u_deg) in enumerate(zip(raan, anomaly)):
        sat = Satrec()
        sat.sgp4init(WGS72, "i", first_satnum + k, epoch_days, 0.0, 0.0, 0.0, float(ecc[k]),
                     math.radians(argp[k]), incl, math.radians((u_deg - argp[k]) % 360.0), n,
                     math.radians(node_deg))
        satrecs.append(sat)
    return satrecs


def _julian_date(moment: dt.datetime) -> float:
    moment = moment.astimezone(dt.timezone.utc)
    days = (moment - dt.datetime(2000, 1, 1, 12, tzinfo=dt.timezone.utc)).total_seconds() / 86400.0
    return 2451545.0 + days


def build_satellites(scenario: Scenario) -> Satellites:
    """All satellites of the scenario: its Walker shells in order, then the satellites of its element files."""
    names, shell_idx, planes, slots, satrecs = [], [], [], [], []
    for k, shell in enumerate(scenario.constellation.shells):
        plane, slot, _, _ = walker_elements(shell)
        names += walker_names(shell)
        shell_idx += [k] * shell.size
        planes += list(plane)
        slots += list(slot)
        satrecs += walker_satrecs(shell, scenario.epoch, first_satnum=len(satrecs) + 1)
    for ef in scenario.constellation.element_files:
        for name, sat, _place, _raw in element_records(ef):
            names.append(name)
            shell_idx.append(-1)
            planes.append(-1)
            slots.append(-1)
            satrecs.append(sat)
    if len(set(names)) < len(names):  # two satellites of one name are an error, never renamed
        satellite_names(scenario.constellation)
    return Satellites(tuple(names), np.array(shell_idx, dtype=int), np.array(planes, dtype=int),
                      np.array(slots, dtype=int), tuple(satrecs))
