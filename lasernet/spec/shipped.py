"""The topologies shipped in ``topologies/``: their names, their one-line descriptions, and finding a scenario by
file path or by one of those names (``lasernet plan mini``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import LasernetError, ScenarioError
from .fields import read_yaml

TOPOLOGIES_DIR = Path(__file__).resolve().parent.parent.parent / "topologies"


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
    """The scenario's one-line description (its ``description:`` field's first line), "" if none."""
    try:
        doc = read_yaml(path.read_text(), path.name)
    except (OSError, UnicodeDecodeError, LasernetError):
        return "(unreadable)"
    text = str(doc.get("description") or "").strip() if isinstance(doc, dict) else ""
    return text.splitlines()[0] if text else ""
