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
(``iss-zarya``) for element files.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sgp4.api import WGS72, Satrec, SatrecArray

from .scenario import Constellation, ElementsFile, Scenario, ScenarioError, Shell

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
        jd = np.atleast_1d(t.whole).astype(float)
        fr = np.atleast_1d(t.tai_fraction - t._leap_seconds() / 86400.0).astype(float)
        err, r, _ = _satrec_array(self.satrecs).sgp4(jd, fr)
        if np.any(err):
            bad = int(np.argwhere(err)[0][0])
            raise ValueError(f"SGP4 failed for satellite {self.names[bad]} (error code {int(err[bad].max())}: "
                             f"decayed or invalid elements)")
        return np.ascontiguousarray(np.swapaxes(r, 0, 1))

    def positions_km(self, t) -> np.ndarray:
        """Earth-fixed (ITRS) positions (T, N, 3) in km at Skyfield times ``t``."""
        return teme_to_itrs_km(self.teme_km(t), t)


def _satrec_array(satrecs: tuple[Satrec, ...]) -> SatrecArray:
    # Cached on the tuple's identity: building a SatrecArray of thousands of satellites costs milliseconds.
    key = id(satrecs)
    cached = _ARRAYS.get(key)
    if cached is None or cached[0] is not satrecs:
        cached = (satrecs, SatrecArray(list(satrecs)))
        _ARRAYS[key] = cached
    return cached[1]


_ARRAYS: dict[int, tuple] = {}


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


def walker_satrecs(shell: Shell, epoch: dt.datetime, first_satnum: int = 1) -> list[Satrec]:
    """SGP4 records for a Walker shell: circular orbits, no drag, elements at ``epoch``."""
    epoch_days = _julian_date(epoch) - SGP4_EPOCH0_JD
    n = mean_motion_rad_min(shell.altitude_km)
    incl = math.radians(shell.inclination_deg)
    _, _, raan, anomaly = walker_elements(shell)
    satrecs = []
    for k, (node_deg, m_deg) in enumerate(zip(raan, anomaly)):
        sat = Satrec()
        sat.sgp4init(WGS72, "i", first_satnum + k, epoch_days, 0.0, 0.0, 0.0, 1e-7, 0.0, incl,
                     math.radians(m_deg), n, math.radians(node_deg))
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
        for name, sat, _place, _raw in _records(ef):
            names.append(name)
            shell_idx.append(-1)
            planes.append(-1)
            slots.append(-1)
            satrecs.append(sat)
    if len(set(names)) < len(names):  # two satellites of one name are an error, never renamed
        satellite_names(scenario.constellation)
    return Satellites(tuple(names), np.array(shell_idx, dtype=int), np.array(planes, dtype=int),
                      np.array(slots, dtype=int), tuple(satrecs))


def walker_names(shell: Shell) -> list[str]:
    """``{shell}-{plane}-{slot}`` for every satellite of ``shell``, in the order of :func:`walker_elements`."""
    return [f"{shell.name}-{p}-{s}" for p in range(shell.planes) for s in range(shell.sats_per_plane)]


def satellite_names(constellation: Constellation) -> tuple[str, ...]:
    """Every satellite's node name, in build order, without building its orbit (element files are read).

    Two satellites whose names come out the same (two catalogue names that sanitise alike, ``ISS (ZARYA)`` and
    ``ISS ZARYA``, or a catalogue name equal to a Walker satellite's) raise :class:`ScenarioError` naming both.
    """
    origin: dict[str, str] = {}
    for shell in constellation.shells:
        for name in walker_names(shell):
            origin[name] = f"a satellite of shell {shell.name!r}"
    for ef in constellation.element_files:
        for name, _sat, place, raw in _records(ef):
            if name in origin:
                raise ScenarioError(ef.path.name, place, f"object {raw!r} becomes node name {name!r}, as does "
                                                         f"{origin[name]}; rename one of them or give the file a "
                                                         f"prefix")
            origin[name] = f"{raw!r} ({ef.path.name} {place})"
    return tuple(origin)


def sanitise_name(text: str) -> str:
    """A satellite catalogue name as a lasernet node name: lowercase ``[a-z0-9-]``, ``ISS (ZARYA)`` -> ``iss-zarya``."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", text.lower())).strip("-")


def read_elements(ef: ElementsFile) -> list[tuple[str, Satrec]]:
    """(name, Satrec) for each satellite in a TLE or OMM file; a malformed record raises ScenarioError."""
    return [(name, sat) for name, sat, _place, _raw in _records(ef)]


def _records(ef: ElementsFile) -> list[tuple[str, Satrec, str, str]]:
    """(node name, Satrec, place, catalogue name) per satellite; place is ``line N`` or ``record N``."""
    if ef.format == "tle":
        records = _read_tle(ef.path)
    else:
        records = _read_omm(ef.path)
    if not records:
        raise ScenarioError(ef.path.name, "", f"no satellites found in this {ef.format.upper()} file")
    prefix = f"{ef.prefix}-" if ef.prefix else ""
    return [(prefix + name, sat, place, raw) for name, sat, place, raw in records]


def _tle_checksum(line: str) -> int:
    return sum(int(c) if c.isdigit() else (1 if c == "-" else 0) for c in line[:68]) % 10


def _read_tle(path: Path) -> list[tuple[str, Satrec, str, str]]:
    lines = [(i + 1, ln.rstrip()) for i, ln in enumerate(path.read_text(errors="replace").splitlines())
             if ln.strip()]
    records, name, k = [], None, 0
    while k < len(lines):
        lineno, line = lines[k]
        if line.startswith("1 ") and k + 1 < len(lines) and lines[k + 1][1].startswith("2 "):
            l1, (lineno2, l2) = line, lines[k + 1]
            for no, text in ((lineno, l1), (lineno2, l2)):
                if len(text) < 69:
                    raise ScenarioError(path.name, f"line {no}", f"TLE line must be 69 characters, got {len(text)}")
                if not text[68].isdigit() or _tle_checksum(text) != int(text[68]):
                    raise ScenarioError(path.name, f"line {no}",
                                        f"TLE checksum is {_tle_checksum(text)}, the line says {text[68]!r}")
            try:
                sat = Satrec.twoline2rv(l1, l2)
            except Exception as exc:  # sgp4 raises ValueError with long text; keep it one line
                raise ScenarioError(path.name, f"line {lineno}", f"not a valid TLE: {str(exc).splitlines()[0]}")
            if sat.error:
                raise ScenarioError(path.name, f"line {lineno}", f"SGP4 rejects these elements (error {sat.error})")
            default = f"sat-{sat.satnum}"
            records.append(((sanitise_name(name) if name else "") or default, sat,
                            f"line {name_line if name else lineno}", name or default))
            name, k = None, k + 2
        elif line.startswith(("1 ", "2 ")):
            raise ScenarioError(path.name, f"line {lineno}", "TLE line 1 must be followed by its line 2")
        else:
            if name is not None:
                raise ScenarioError(path.name, f"line {lineno}",
                                    f"expected TLE line 1 after the name line {name!r}, got {line[:30]!r}")
            name, name_line = (line[2:] if line.startswith("0 ") else line), lineno
            k += 1
    if name is not None:
        raise ScenarioError(path.name, f"line {lines[-1][0]}", f"name line {name!r} has no TLE lines after it")
    return records


def _read_omm(path: Path) -> list[tuple[str, Satrec, str, str]]:
    import json
    from sgp4 import omm

    try:
        if path.suffix.lower() == ".xml":
            with path.open() as f:
                rows = list(omm.parse_xml(f))
        elif path.suffix.lower() == ".json":
            rows = json.loads(path.read_text())
            rows = rows if isinstance(rows, list) else [rows]
            for i, row in enumerate(rows):
                if not isinstance(row, dict):
                    raise ScenarioError(path.name, f"record {i + 1}", f"must be an OMM object (a JSON mapping of "
                                        f"OBJECT_NAME, EPOCH, MEAN_MOTION, ...), got {type(row).__name__}")
        else:
            with path.open() as f:
                rows = list(omm.parse_csv(f))
    except ScenarioError:
        raise
    except Exception as exc:
        raise ScenarioError(path.name, "", f"cannot parse OMM ({type(exc).__name__}: {exc}); expected CelesTrak "
                                           f"OMM as .xml, .csv or .json") from None
    records = []
    for i, fields in enumerate(rows):
        sat = Satrec()
        try:
            omm.initialize(sat, {k: str(v) for k, v in fields.items()})
        except (KeyError, ValueError, TypeError) as exc:
            raise ScenarioError(path.name, f"record {i + 1}", f"missing or invalid OMM field {exc}") from None
        raw = str(fields.get("OBJECT_NAME", ""))
        name = sanitise_name(raw) or f"sat-{sat.satnum}"
        records.append((name, sat, f"record {i + 1}", raw or name))
    return records
