"""Element files (TLE and OMM) read into SGP4 records, and the node name of every satellite of a constellation.

A TLE file holds 2-line element sets, each optionally preceded by a name line (3-line form); every line's last
digit is a checksum (the sum of its digits, minus signs counting 1, modulo 10). An OMM file holds the same mean
elements as CCSDS Orbit Mean-elements Messages: CelesTrak's XML, CSV or JSON (a list of records).

A satellite's node name is ``{shell}-{plane}-{slot}`` (``sat-3-7``) for a Walker shell and its catalogue name made
a network name for an element file (``ISS (ZARYA)`` becomes ``iss-zarya``), with the file's prefix. Two satellites
of one name are an error naming both, never renamed: names are identities in the emulated network.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sgp4.api import Satrec

from ..errors import ScenarioError

if TYPE_CHECKING:
    from .scenario import Constellation, ElementsFile, Shell


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
        for name, _sat, place, raw in element_records(ef):
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
    return [(name, sat) for name, sat, _place, _raw in element_records(ef)]


def element_records(ef: ElementsFile) -> list[tuple[str, Satrec, str, str]]:
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
