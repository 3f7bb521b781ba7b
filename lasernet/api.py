"""The names a Python user or the CLI needs, gathered in one place (lasernet's ``skyfield.api``)."""

from __future__ import annotations

from pathlib import Path

import yaml

from . import __version__
from .scenario import Scenario, ScenarioError, load_scenario, parse_time
from .timeline import CAUSES, Timeline, plan

class UserError(RuntimeError):
    """A problem the user can fix (bad option, missing backend); the CLI prints it on one line, exit code 2."""


TOPOLOGIES_DIR = Path(__file__).resolve().parent.parent / "topologies"

__all__ = ["__version__", "CAUSES", "Scenario", "ScenarioError", "Timeline", "load_scenario", "plan",
           "resolve_scenario", "shipped_topologies"]


def shipped_topologies() -> dict[str, Path]:
    """Scenario files shipped in ``topologies/``, by name."""
    return {p.stem: p for p in sorted(TOPOLOGIES_DIR.glob("*.yaml"))}


def resolve_scenario(name_or_path: str) -> Path:
    """A scenario path from a file path or the name of a shipped topology (``mini``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_topologies()
    if name_or_path in shipped:
        return shipped[name_or_path]
    raise ScenarioError(name_or_path, "", f"no such scenario file, and not a shipped topology "
                                          f"(known: {', '.join(shipped) or 'none'})")


def describe(path: Path) -> str:
    """The scenario's one-line description, if it has one."""
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return "(unreadable)"
    return str(doc.get("description", "")).strip().splitlines()[0] if doc.get("description") else ""
