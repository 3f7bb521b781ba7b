"""Read a scenario YAML file, validate every field, and return it as frozen dataclasses.

A scenario says what to emulate: the constellation (Walker shells built from their parameters, or real
satellites from TLE / OMM files), the laser terminals on board, the pattern of inter-satellite links (ISLs),
the ground stations with their elevation masks and handover policy, and the random seed. Everything later in
lasernet reads these dataclasses, never the YAML.

Validation is strict and speaks to a person: each problem raises :class:`ScenarioError` whose text names the
file, the field path and what is allowed, for example::

    starlink.yaml: constellation.shells[0].altitude_km: must be between 160 and 40000, got -5

Names of satellites, shells and ground stations become network namespace and interface names later, so they
must match ``[a-z0-9-]+``. The full format is documented in ``docs/scenario.md``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .routing.config import RoutingConfig, parse_routing

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
MAX_NAME_LEN = 12
SHELL_TYPES = ("delta", "star", "formation")
ISL_PATTERNS = ("plus-grid", "ring", "explicit", "none")
HANDOVER_POLICIES = ("nearest", "longest-visible")
TERMINAL_KINDS = ("laser", "rf")
SITE_KINDS = ("ground-station", "data-centre", "city")
#: SGP4 catalogue numbers (Alpha-5) stop at 339,999, and Walker satellites are numbered 1, 2, ... in build order.
MAX_WALKER_SATELLITES = 339_999
MAX_YAML_DEPTH = 64  # no scenario nests deeper than ~6; the YAML composer recurses once per level


class ScenarioError(ValueError):
    """A scenario that cannot be used; the message is one line: ``file: field.path: what is wrong``."""

    def __init__(self, source: str, path: str, message: str):
        self.source, self.path, self.message = source, path, message
        super().__init__(f"{source}: {path}: {message}" if path else f"{source}: {message}")


@dataclass(frozen=True)
class Shell:
    """One Walker shell: ``planes`` orbital planes of ``sats_per_plane`` satellites each.

    ``delta`` spreads the ascending nodes over 360 degrees (Starlink, Kuiper), ``star`` over 180 degrees so that
    neighbouring planes co-rotate except across the seam (Iridium). ``formation`` keeps all satellites within a
    few kilometres of each other (a compute cluster flying in formation): planes are ``spacing_km`` apart
    across track and slots ``spacing_km`` apart along track.
    """

    name: str
    type: str
    planes: int
    sats_per_plane: int
    phasing: int
    altitude_km: float
    inclination_deg: float
    raan0_deg: float = 0.0
    spacing_km: float = 0.0

    @property
    def size(self) -> int:
        return self.planes * self.sats_per_plane


@dataclass(frozen=True)
class ElementsFile:
    """Real satellites from a TLE file (2- or 3-line) or an OMM file (.xml, .csv, .json)."""

    path: Path
    format: str  # "tle" | "omm"
    prefix: str = ""  # prepended to each satellite's name


@dataclass(frozen=True)
class Constellation:
    shells: tuple[Shell, ...] = ()
    element_files: tuple[ElementsFile, ...] = ()


@dataclass(frozen=True)
class Terminal:
    """An optical (or RF fallback) terminal type: how many per satellite, how far, how fast, and its limits."""

    kind: str = "laser"
    count: int = 4
    max_range_km: float = 5000.0
    acquisition_s: float = 2.0
    sun_exclusion_deg: float = 5.0
    data_rate_bps: float = 10e9


@dataclass(frozen=True)
class IslConfig:
    """Which satellite pairs may be linked and the geometric limits on those links."""

    pattern: str = "plus-grid"
    polar_cutoff_deg: float = 90.0  # inter-plane links are off above this |latitude|; 90 = never
    atmosphere_km: float = 80.0  # a link must clear the Earth's surface by this much
    links: tuple[tuple[str, str], ...] = ()  # for pattern "explicit"


@dataclass(frozen=True)
class GroundStation:
    name: str
    lat_deg: float
    lon_deg: float
    alt_m: float = 0.0
    min_elevation_deg: float = 25.0
    max_links: int = 1
    handover: str = "nearest"
    kind: str = "ground-station"


@dataclass(frozen=True)
class Server:
    """A server (an orbital rack or a ground data centre) attached to node ``attach`` over a local /24 LAN."""

    name: str
    attach: str


@dataclass(frozen=True)
class ProbePair:
    """UDP echo probes from node ``src`` to node ``dst`` at ``rate_hz`` during a live run."""

    src: str
    dst: str
    rate_hz: float = 20.0


@dataclass(frozen=True)
class PlanDefaults:
    duration_s: float = 600.0
    step_s: float = 1.0


@dataclass(frozen=True)
class Scenario:
    name: str
    source: Path
    epoch: dt.datetime  # UTC; epoch of the Walker elements and default start of a plan
    seed: int
    constellation: Constellation
    isl_terminal: Terminal
    gsl_terminal: Terminal
    isl: IslConfig
    ground: tuple[GroundStation, ...]
    plan: PlanDefaults = field(default_factory=PlanDefaults)
    probes: tuple[ProbePair, ...] = ()
    hosts: tuple[Server, ...] = ()
    routing: RoutingConfig = field(default_factory=RoutingConfig)  # lasernet.routing.config
    workload: Any = field(default_factory=lambda: _workload_section(None))  # lasernet.workload.Workload

    def error(self, path: str, message: str) -> ScenarioError:
        return ScenarioError(self.source.name, path, message)


# --------------------------------------------------------------------------------------------------------------
# A small typed reader that remembers where it is in the document, so every error names its field path.

class _Node:
    def __init__(self, source: str, path: str, value: Any):
        self.source, self.path, self.value = source, path, value

    def fail(self, message: str) -> ScenarioError:
        return ScenarioError(self.source, self.path, message)

    def child(self, key: str | int, value: Any) -> "_Node":
        path = f"{self.path}[{key}]" if isinstance(key, int) else (f"{self.path}.{key}" if self.path else key)
        return _Node(self.source, path, value)

    def mapping(self, allowed: tuple[str, ...]) -> dict:
        if self.value is None:
            return {}
        if not isinstance(self.value, dict):
            raise self.fail(f"must be a mapping with keys {', '.join(allowed)}, got {type(self.value).__name__}")
        for key in self.value:
            if key not in allowed:
                raise self.child(str(key), None).fail(f"unknown field; allowed here: {', '.join(allowed)}")
        return self.value

    def get(self, key: str, default: Any = ..., allowed: tuple[str, ...] | None = None) -> "_Node":
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

    def text(self) -> str:
        if not isinstance(self.value, str) or not self.value:
            raise self.fail(f"must be a non-empty string, got {self.value!r}")
        return self.value

    def items(self) -> list["_Node"]:
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


# --------------------------------------------------------------------------------------------------------------

def load_scenario(path: str | Path) -> Scenario:
    """Read and validate the scenario at ``path``; raise :class:`ScenarioError` naming the first problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError(str(path), "", f"cannot read the file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ScenarioError(str(path), "", "is not a text file (not UTF-8); a scenario is a YAML file") from None
    return parse_scenario(read_yaml(text, path.name), path)


def parse_scenario(doc: Any, path: Path) -> Scenario:
    """Validate an already-parsed YAML document ``doc`` that came from ``path`` (used for relative files)."""
    root = _Node(path.name, "", doc)
    if not isinstance(doc, dict):
        raise root.fail("must be a YAML mapping with at least 'name', 'epoch' and 'constellation'")
    root.mapping(("name", "description", "epoch", "seed", "constellation", "terminals", "isl", "ground", "plan",
                  "hosts", "probes", "routing", "workload"))
    name = root.get("name").name(max_len=40)
    epoch = _epoch(root.get("epoch"))
    seed = root.get("seed", 1).number(0, 2**32 - 1, integer=True)
    constellation = _constellation(root.get("constellation"), path.parent)
    terms = root.get("terminals", {})
    terms.mapping(("isl", "gsl"))
    isl_terminal = _terminal(terms.get("isl", {}), Terminal())
    gsl_terminal = _terminal(terms.get("gsl", {}), Terminal(kind="laser", count=1, max_range_km=2500.0,
                                                            acquisition_s=2.0, sun_exclusion_deg=5.0,
                                                            data_rate_bps=10e9))
    isl = _isl(root.get("isl", {}), constellation, isl_terminal)
    ground = _ground(root.get("ground", {}), path.parent)
    plan_node = root.get("plan", {})
    plan_node.mapping(("duration_s", "step_s"))
    plan = PlanDefaults(duration_s=plan_node.get("duration_s", 600.0).number(1, 30 * 86400),
                        step_s=plan_node.get("step_s", 1.0).number(0.01, 3600))
    probes = tuple(_probe(n) for n in root.get("probes", []).items())
    hosts = tuple(_server(n) for n in root.get("hosts", []).items())
    from .orbits import satellite_names  # reads the element files; orbits imports this module

    satellites = satellite_names(constellation)
    scenario = Scenario(name=name, source=path, epoch=epoch, seed=seed, constellation=constellation,
                        isl_terminal=isl_terminal, gsl_terminal=gsl_terminal, isl=isl, ground=ground, plan=plan,
                        probes=probes, hosts=hosts,
                        routing=parse_routing(root.get("routing", {}), tuple(g.name for g in ground), satellites),
                        workload=_workload_section(root.get("workload", None)))
    _check_unique_names(root, scenario)
    check_node_names(scenario, satellites + tuple(g.name for g in ground))
    return scenario


def _workload_section(node: _Node | None):
    """The ``workload:`` section, read by :mod:`lasernet.workload` (its own module: it imports this one)."""
    from .workload import Workload, parse_workload

    return Workload() if node is None else parse_workload(node)


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


def _probe(node: _Node) -> ProbePair:
    node.mapping(("from", "to", "rate_hz"))
    src, dst = node.get("from").name(max_len=64), node.get("to").name(max_len=64)
    if src == dst:
        raise node.get("to").fail(f"probes from a node to itself ({src!r}) measure nothing")
    return ProbePair(src, dst, node.get("rate_hz", 20.0).number(0.1, 1000))


def _server(node: _Node) -> Server:
    node.mapping(("name", "attach"))
    return Server(node.get("name").name(), node.get("attach").name(max_len=64))


def check_node_names(scenario: "Scenario", node_names: tuple[str, ...]) -> None:
    """Raise if a node name is taken twice, or a probe, a host or the workload names a node the scenario does not
    have. ``node_names`` are the routers: the satellites, then the ground stations. `lasernet up` rejects
    nothing about the nodes that this (run by :func:`load_scenario` and by the plan) does not."""
    n_satellites = len(node_names) - len(scenario.ground)
    satellites = set(node_names[:n_satellites])
    for i, station in enumerate(scenario.ground):
        if station.name in satellites:
            raise ScenarioError(scenario.source.name, f"ground.stations[{i}].name",
                                f"{station.name!r} is also a satellite's name; rename the station")
    for k, (x, y) in enumerate(scenario.isl.links):
        for end in (x, y):
            if end not in satellites:
                raise ScenarioError(scenario.source.name, f"isl.links[{k}]",
                                    f"unknown satellite {end!r}; satellites are named like {node_names[0]!r}")
        if x == y:
            raise ScenarioError(scenario.source.name, f"isl.links[{k}]", f"links {x!r} to itself")
    routers = set(node_names)
    for i, host in enumerate(scenario.hosts):
        if host.name in routers:
            raise ScenarioError(scenario.source.name, f"hosts[{i}].name", f"{host.name!r} is already a node's name")
        if host.attach not in routers:
            raise ScenarioError(scenario.source.name, f"hosts[{i}].attach",
                                f"unknown node {host.attach!r}; attach to a satellite like {node_names[0]!r} or a "
                                f"ground station")
    names = [h.name for h in scenario.hosts]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ScenarioError(scenario.source.name, f"hosts[{i}].name", f"{name!r} is used twice")
    known = routers | set(names)
    for i, pair in enumerate(scenario.probes):
        for key, name in (("from", pair.src), ("to", pair.dst)):
            if name not in known:
                stations = ", ".join(g.name for g in scenario.ground[:6]) or "none"
                raise ScenarioError(scenario.source.name, f"probes[{i}].{key}",
                                    f"unknown node {name!r}; nodes are satellites like {node_names[0]!r} and "
                                    f"ground stations ({stations})")
    if not scenario.workload.empty:
        from .workload import resolve  # the workload's module imports this one

        resolve(scenario, node_names, n_satellites)


def _epoch(node: _Node) -> dt.datetime:
    moment = parse_time(node.value)
    if moment is None:
        raise node.fail(f"must be an ISO 8601 UTC time like 2026-01-01T00:00:00Z, got {node.value!r}")
    if not 1960 <= moment.year <= 2050:
        raise node.fail(f"must be between 1960 and 2050 (the bundled ephemeris de421 covers 1900-2053), "
                        f"got {moment.year}")
    return moment


def _constellation(node: _Node, base: Path) -> Constellation:
    node.mapping(("shells", "tle", "omm"))
    shells, total = [], 0
    for n in node.get("shells", []).items():
        shells.append(_shell(n))
        total += shells[-1].size
        if total > MAX_WALKER_SATELLITES:
            raise n.fail(f"{shells[-1].planes} planes x {shells[-1].sats_per_plane} satellites make "
                         f"{total:,} Walker satellites in all; at most {MAX_WALKER_SATELLITES:,} (SGP4's catalogue "
                         f"numbers end there): use fewer planes or sats_per_plane")
    shells = tuple(shells)
    files = []
    for fmt in ("tle", "omm"):
        for n in node.get(fmt, []).items():
            files.append(_elements_file(n, fmt, base))
    if not shells and not files:
        raise node.fail("needs at least one of 'shells' (Walker parameters), 'tle' or 'omm' (element files)")
    return Constellation(shells=shells, element_files=tuple(files))


def _shell(node: _Node) -> Shell:
    node.mapping(("name", "type", "planes", "sats_per_plane", "phasing", "altitude_km", "inclination_deg",
                  "raan0_deg", "spacing_km", "source"))
    shell_type = node.get("type", "delta").choice(SHELL_TYPES)
    planes = node.get("planes").number(1, 1000, integer=True)
    per_plane = node.get("sats_per_plane").number(1, 1000, integer=True)
    phasing = node.get("phasing", 0).number(0, max(planes - 1, 0), integer=True)
    spacing_km = 0.0
    if shell_type == "formation":
        spacing_km = node.get("spacing_km").number(0.001, 100)
    elif "spacing_km" in (node.value or {}):
        raise node.child("spacing_km", None).fail("only applies to type: formation")
    return Shell(name=node.get("name", "sat").name(), type=shell_type, planes=planes, sats_per_plane=per_plane,
                 phasing=phasing, altitude_km=node.get("altitude_km").number(160, 40000),
                 inclination_deg=node.get("inclination_deg").number(0, 180),
                 raan0_deg=node.get("raan0_deg", 0.0).number(-360, 360), spacing_km=spacing_km)


def _elements_file(node: _Node, fmt: str, base: Path) -> ElementsFile:
    if isinstance(node.value, str):
        node = _Node(node.source, node.path, {"file": node.value})
    node.mapping(("file", "prefix"))
    file_node = node.get("file")
    path = (base / file_node.text()).resolve()
    if not path.is_file():
        raise file_node.fail(f"no such file {str(path)!r} (paths are relative to the scenario file)")
    prefix = node.get("prefix", "").value
    if prefix:
        prefix = node.get("prefix").name()
    return ElementsFile(path=path, format=fmt, prefix=prefix or "")


def _terminal(node: _Node, default: Terminal) -> Terminal:
    node.mapping(("kind", "count", "max_range_km", "acquisition_s", "sun_exclusion_deg", "data_rate_bps",
                  "source"))
    return Terminal(
        kind=node.get("kind", default.kind).choice(TERMINAL_KINDS),
        count=node.get("count", default.count).number(0, 16, integer=True),
        max_range_km=node.get("max_range_km", default.max_range_km).number(0.001, 100000),
        acquisition_s=node.get("acquisition_s", default.acquisition_s).number(0, 3600),
        sun_exclusion_deg=node.get("sun_exclusion_deg", default.sun_exclusion_deg).number(0, 90),
        data_rate_bps=node.get("data_rate_bps", default.data_rate_bps).number(1e3, 1e13),
    )


def _isl(node: _Node, constellation: Constellation, terminal: Terminal) -> IslConfig:
    node.mapping(("pattern", "polar_cutoff_deg", "atmosphere_km", "links"))
    pattern = node.get("pattern", "plus-grid").choice(ISL_PATTERNS)
    links = []
    for item in node.get("links", []).items():
        pair = item.value
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise item.fail(f"must be a pair of satellite names like [sat-0-0, sat-0-1], got {pair!r}")
        links.append((pair[0], pair[1]))
    if pattern == "explicit" and not links:
        raise node.get("links", None).fail("pattern explicit needs a list of satellite name pairs")
    if pattern != "explicit" and links:
        raise node.get("links").fail(f"only applies to pattern: explicit (pattern is {pattern})")
    if pattern in ("plus-grid", "ring") and constellation.element_files and not constellation.shells:
        raise node.get("pattern").fail(f"{pattern} needs Walker shells (planes and slots); satellites from TLE/OMM "
                                       f"files can use pattern: explicit or none")
    needed = {"plus-grid": 4, "ring": 2}.get(pattern, 1)
    if pattern != "none" and terminal.count < needed:
        raise ScenarioError(node.source, "terminals.isl.count",
                            f"pattern {pattern} needs {needed} ISL terminals per satellite, got {terminal.count}")
    return IslConfig(pattern=pattern,
                     polar_cutoff_deg=node.get("polar_cutoff_deg", 90.0).number(0, 90),
                     atmosphere_km=node.get("atmosphere_km", 80.0).number(0, 1000),
                     links=tuple(links))


_STATION_FIELDS = ("name", "site", "kind", "lat_deg", "lon_deg", "alt_m", "min_elevation_deg", "max_links",
                   "handover", "source")


def _ground(node: _Node, base: Path) -> tuple[GroundStation, ...]:
    node.mapping(("include", "defaults", "stations"))
    sites: dict[str, dict] = {}
    for inc in node.get("include", []).items():
        sites.update(_read_sites(inc, base))
    defaults = node.get("defaults", {})
    defaults.mapping(("min_elevation_deg", "max_links", "handover"))
    stations = []
    listed = node.get("stations", [])
    if listed.value == "all":  # every site of the included files, in file order
        listed = _Node(listed.source, listed.path, list(sites))
        if not sites:
            raise listed.fail("'all' needs ground.include with at least one sites file")
    for item in listed.items():
        value = item.value
        if isinstance(value, str):  # a bare site name from an included file
            value = {"site": value}
            item = _Node(item.source, item.path, value)
        item.mapping(_STATION_FIELDS)
        merged = {}
        if "site" in value:
            site_name = item.get("site").text()
            if site_name not in sites:
                known = ", ".join(sorted(sites)[:8]) or "none: add ground.include with a sites file"
                raise item.get("site").fail(f"unknown site {site_name!r}; known sites include {known}")
            merged.update(sites[site_name])
            merged.setdefault("name", site_name)
        merged.update({k: v for k, v in value.items() if k != "site"})
        for key in ("min_elevation_deg", "max_links", "handover"):
            if key not in merged and key in (defaults.value or {}):
                merged[key] = defaults.value[key]
        stations.append(_station(_Node(item.source, item.path, merged)))
    return tuple(stations)


def _station(node: _Node) -> GroundStation:
    return GroundStation(
        name=node.get("name").name(),
        lat_deg=node.get("lat_deg").number(-90, 90),
        lon_deg=node.get("lon_deg").number(-180, 180),
        alt_m=node.get("alt_m", 0.0).number(-500, 9000),
        min_elevation_deg=node.get("min_elevation_deg", 25.0).number(0, 90),
        max_links=node.get("max_links", 1).number(1, 64, integer=True),
        handover=node.get("handover", "nearest").choice(HANDOVER_POLICIES),
        kind=node.get("kind", "ground-station").choice(SITE_KINDS),
    )


def _read_sites(node: _Node, base: Path) -> dict[str, dict]:
    path = (base / node.text()).resolve()
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise node.fail(f"cannot read sites file {str(path)!r} ({getattr(exc, 'strerror', None) or exc}); paths "
                        f"are relative to the scenario file") from None
    doc = read_yaml(text, path.name)
    sites_node = _Node(path.name, "sites", (doc or {}).get("sites") if isinstance(doc, dict) else None)
    if not isinstance(sites_node.value, list):
        raise sites_node.fail("must be a list of sites with name, lat_deg, lon_deg")
    sites = {}
    for item in sites_node.items():
        item.mapping(_STATION_FIELDS)
        sites[item.get("name").name()] = dict(item.value)
    return sites


def _check_unique_names(root: _Node, scenario: Scenario) -> None:
    seen: dict[str, str] = {}
    for i, shell in enumerate(scenario.constellation.shells):
        path = f"constellation.shells[{i}].name"
        if shell.name in seen:
            raise ScenarioError(root.source, path, f"shell name {shell.name!r} is already used by {seen[shell.name]}")
        seen[shell.name] = path
    for i, station in enumerate(scenario.ground):
        path = f"ground.stations[{i}].name"
        if station.name in seen:
            raise ScenarioError(root.source, path,
                                f"name {station.name!r} is already used by {seen[station.name]}; names must be unique")
        seen[station.name] = path
