"""The reading machinery every part of a scenario shares: a strict YAML reader and a typed, path-aware node.

A scenario is YAML. :func:`read_yaml` parses it strictly (a key given twice is an error naming the key and both
lines; nesting deeper than :data:`MAX_YAML_DEPTH` is refused). :class:`Node` wraps one value of the parsed
document together with where it is (``constellation.shells[0].planes``), so that every check of a field raises a
:class:`~lasernet.errors.ScenarioError` naming the file, the field path and what is allowed::

    starlink.yaml: constellation.shells[0].altitude_km: must be between 160 and 40000, got -5

The scenario, workload and routing sections (:mod:`lasernet.spec.scenario`, :mod:`~lasernet.spec.workload`,
:mod:`~lasernet.spec.routing`) are all read through it. Names that become network namespaces and interfaces
must match :data:`NAME_RE`.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

import yaml

from ..errors import ScenarioError

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
MAX_NAME_LEN = 12
#: A jurisdiction is a short lowercase token naming whose law a site or an operator answers to: ``eu``, ``us``,
#: ``in``, ``uk``, ``eu-de``; compared as written (no registry of countries behind it).
JURISDICTION_RE = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")
MAX_JURISDICTION_LEN = 16
MAX_YAML_DEPTH = 64  # no scenario nests deeper than ~6; the YAML composer recurses once per level


# --------------------------------------------------------------------------------------------------------------
# A small typed reader that remembers where it is in the document, so every error names its field path.

class Node:
    """One value of a parsed document and its field path; the checks return the value or raise ScenarioError."""

    def __init__(self, source: str, path: str, value: Any):
        self.source, self.path, self.value = source, path, value

    def fail(self, message: str) -> ScenarioError:
        return ScenarioError(self.source, self.path, message)

    def child(self, key: str | int, value: Any) -> "Node":
        path = f"{self.path}[{key}]" if isinstance(key, int) else (f"{self.path}.{key}" if self.path else key)
        return Node(self.source, path, value)

    def mapping(self, allowed: tuple[str, ...]) -> dict:
        if self.value is None:
            return {}
        if not isinstance(self.value, dict):
            raise self.fail(f"must be a mapping with keys {', '.join(allowed)}, got {type(self.value).__name__}")
        for key in self.value:
            if key not in allowed:
                raise self.child(str(key), None).fail(f"unknown field; allowed here: {', '.join(allowed)}")
        return self.value

    def get(self, key: str, default: Any = ..., allowed: tuple[str, ...] | None = None) -> "Node":
        values = self.value if isinstance(self.value, dict) else {}
        if key not in values:
            if default is ...:
                raise self.child(key, None).fail("is required")
            return self.child(key, default)
        return self.child(key, values[key])

    def number(self, lo: float | None = None, hi: float | None = None, integer: bool = False) -> float:
        v = self.value
        kind = "a whole number" if integer else "a number"
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not math.isfinite(v)):
            raise self.fail(f"must be {kind}{_range_text(lo, hi)}, got {v!r}")
        if integer and not float(v).is_integer():
            raise self.fail(f"must be {kind}{_range_text(lo, hi)}, got {v!r}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.fail(f"must be between {_fmt(lo)} and {_fmt(hi)}, got {v!r}" if lo is not None and hi is not None
                            else f"must be {kind}{_range_text(lo, hi)}, got {v!r}")
        return int(v) if integer else float(v)

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.fail(f"must be true or false, got {self.value!r}")
        return self.value

    def choice(self, options: tuple[str, ...]) -> str:
        if self.value not in options:
            raise self.fail(f"must be one of {', '.join(options)}, got {self.value!r}")
        return self.value

    def name(self, max_len: int = MAX_NAME_LEN) -> str:
        v = self.value
        if not isinstance(v, str) or not NAME_RE.match(v) or len(v) > max_len:
            raise self.fail(f"must match [a-z0-9-]+ (at most {max_len} characters, no leading or trailing -), "
                            f"got {v!r}")
        return v

    def jurisdiction(self) -> str:
        """A jurisdiction token (see :data:`JURISDICTION_RE`), or "" where the field is absent or null (none)."""
        v = self.value
        if v is None:
            return ""
        if not isinstance(v, str) or not JURISDICTION_RE.match(v) or len(v) > MAX_JURISDICTION_LEN:
            raise self.fail(f"must be a jurisdiction: a lowercase token like eu, us or in ([a-z][a-z0-9-]*, at most "
                            f"{MAX_JURISDICTION_LEN} characters), got {v!r}")
        return v

    def text(self) -> str:
        if not isinstance(self.value, str) or not self.value:
            raise self.fail(f"must be a non-empty string, got {self.value!r}")
        return self.value

    def items(self) -> list["Node"]:
        if self.value is None:
            return []
        if not isinstance(self.value, list):
            raise self.fail(f"must be a list, got {type(self.value).__name__}")
        return [self.child(i, v) for i, v in enumerate(self.value)]


def _fmt(x: float | None) -> str:
    if x is None:
        return ""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def _range_text(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f" between {_fmt(lo)} and {_fmt(hi)}"
    if lo is not None:
        return f" >= {_fmt(lo)}"
    if hi is not None:
        return f" <= {_fmt(hi)}"
    return ""


# --------------------------------------------------------------------------------------------------------------
# YAML reading: a key given twice and a document nested too deep are errors, never silently accepted.

class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (naming it and both lines) and
    nesting deeper than :data:`MAX_YAML_DEPTH` (which would exhaust the recursion of the composer)."""

    _depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first_line: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in first_line:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"key {key!r} is given twice (first at line {first_line[key]}); the second "
                                        f"would silently win: keep one", key_node.start_mark)
                    first_line[key] = key_node.start_mark.line + 1
                except TypeError:  # an unhashable key: SafeLoader's own error follows
                    pass
        return super().construct_mapping(node, deep)


def read_yaml(text: str, source: str) -> Any:
    """Parse YAML ``text`` with :class:`StrictLoader`; raise ScenarioError ``source: not valid YAML at line L...``."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ScenarioError(source, "", f"not valid YAML at {where}: {problem}") from None


def node_or_link(node: Node, values: dict, needs: str) -> tuple[str | None, tuple[str, str] | None]:
    """The ``node: NAME`` or ``link: [A, B]`` of a section entry (exactly one of them; ``needs`` says what the
    error asks for): ``(name, None)`` or ``(None, (a, b))``."""
    if ("node" in values) == ("link" in values):
        raise node.fail(f"needs exactly one of {needs}")
    if "node" in values:
        return node.get("node").name(max_len=64), None
    pair = node.get("link")
    if not (isinstance(pair.value, list) and len(pair.value) == 2 and all(isinstance(x, str) for x in pair.value)):
        raise pair.fail(f"must be a pair of node names like [sat-0-0, sat-0-1], got {pair.value!r}")
    if pair.value[0] == pair.value[1]:
        raise pair.fail(f"links {pair.value[0]!r} to itself; give the two ends of a link")
    return None, (pair.value[0], pair.value[1])


def parse_time(value: Any) -> dt.datetime | None:
    """An ISO 8601 instant (``2026-01-01T00:00:00Z``) or a datetime, as an aware UTC datetime; None if invalid."""
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc)
