"""Shared test helpers: writing small scenario files and finding the shipped topologies."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOPOLOGIES = REPO / "topologies"
DATA = Path(__file__).resolve().parent / "unit" / "data"


@pytest.fixture
def write_scenario(tmp_path):
    """Write YAML text (dedented) to a scenario file in a temporary directory and return its path."""

    def write(text: str, name: str = "scenario.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write
