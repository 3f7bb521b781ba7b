"""Read a scenario YAML file, validate every field, and return it as frozen dataclasses.

A scenario says what to emulate: the constellation (Walker shells built from their parameters, or real
satellites from TLE / OMM files), the laser terminals on board, the pattern of inter-satellite links (ISLs),
the ground stations with their elevation masks, handover policy and whether they relay traffic (``transit``), and
the random seed. Everything later in lasernet reads these dataclasses, never the YAML.

Validation is strict and speaks to a person: each problem raises :class:`ScenarioError` whose text names the
file, the field path and what is allowed, for example::

    starlink.yaml: constellation.shells[0].altitude_km: must be between 160 and 40000, got -5

Names of satellites, shells and ground stations become network namespace and interface names later, so they
must match ``[a-z0-9-]+``. Stations (and BGP operators) may carry a ``jurisdiction`` (``eu``), which the
``policy:`` section's residency rules read. The ``routing:``, ``workload:``, ``power:``, ``upsets:``,
``collision:``, ``capture:`` and ``policy:`` sections and the element files are read by their own modules of
:mod:`lasernet.spec` with the same :class:`~lasernet.spec.fields.Node`. Once the nodes are known,
:func:`check_node_names` checks everything about them that a live run would (probes, hosts, workload selectors,
explicit ISLs, capture nodes): a scenario that loads is one `lasernet up` accepts. The full format is in ``docs/scenario.md``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ScenarioError
from . import capture as capture_spec
from .capture import Capture, parse_capture
from .elements import satellite_names
from .fields import Node, parse_time, read_yaml
from .faults import Collision, Jammer, Upsets, parse_collision, parse_jamming, parse_upsets
from .policy import Policy, parse_policy
from .power import PowerGroup, parse_power
from .routing import RoutingConfig, parse_routing
from .workload import Workload, parse_workload, resolve

SHELL_TYPES = ("delta", "star", "formation")
ISL_PATTERNS = ("plus-grid", "ring", "explicit", "nearest", "none")
#: How a station picks its satellites among those usable (above its mask, in range): ``nearest``, the closest
#: ``max_links`` at every step; ``all-in-range``, every one of them, up to ``max_links`` (its terminals), the
#: closest first when more are in view (Hypatia's rule); ``longest-visible``, keep one while it stays usable.
HANDOVER_POLICIES = ("nearest", "longest-visible", "all-in-range")
TERMINAL_KINDS = ("laser", "rf")
SITE_KINDS = ("ground-station", "data-centre", "city")
#: Whether a station of each kind relays traffic between two of its ground links unless it says ``transit:``.
#: A ground station or a city is an end of traffic, not a bent pipe between satellites; a data centre is an
#: operator's own site, which may forward between its ground terminals as a gateway does.
TRANSIT_BY_KIND = {"ground-station": False, "data-centre": True, "city": False}
#: Placeholder cloud figures (no published source behind them) for stations without their own, when
#: ``ground.clouds`` does not say: a sky clear half of the time, correlated over 3 hours and across 300 km.
DEFAULT_CLOUD_FREE = 0.5
DEFAULT_CORRELATION_S = 3 * 3600.0
DEFAULT_CORRELATION_KM = 300.0
#: SGP4 catalogue numbers (Alpha-5) stop at 339,999, and Walker satellites are numbered 1, 2, ... in build order.
MAX_WALKER_SATELLITES = 339_999


@dataclass(frozen=True)
class Shell:
    """One Walker shell: ``planes`` orbital planes of ``sats_per_plane`` satellites each.

    ``delta`` spreads the ascending nodes over 360 degrees (Starlink, Kuiper), ``star`` over 180 degrees so that
    neighbouring planes co-rotate except across the seam (Iridium). ``formation`` keeps all satellites within a
    few kilometres of each other (a compute cluster flying in formation): planes are ``spacing_km`` apart
    across track and slots ``spacing_km`` apart along track. Planes that differ in node alone meet where they
    cross, near the latitude extremes; ``radial_separation_km`` > 0 gives neighbouring planes eccentricities that
    many km apart (e/i-vector separation), so that they are apart radially there (see :mod:`lasernet.orbits`).
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
    radial_separation_km: float = 0.0

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
class FieldOfRegard:
    """Where a satellite's terminals can point, as limits on the partner's direction in the body frame.

    The body frame is the local vertical, local horizontal (LVLH) frame of the satellite's inertial orbit: z
    towards the nadir, y against the orbit normal (-(r x v)), x = y x z (along the velocity for a circular orbit).
    A direction has a *nadir angle* (from +z: 0 straight down, 90 horizontal, 180 zenith) and an *azimuth* in the
    horizontal plane (from +x towards +y: 0 ahead, 90 and -90 across track, 180 behind). The satellite's
    terminals are taken to be mounted two along track (fore, aft) and two across track (port, starboard), each
    sweeping ``along_track_deg`` or ``cross_track_deg`` of azimuth either side of its axis: the defaults, 45 and
    45, tile the whole horizon. A partner is in the field when its nadir angle is within ``nadir_deg`` and its
    azimuth within the sweep of a terminal that may serve it: in a +Grid (and a ring) the fore and aft terminals
    serve the intra-plane links and the port and starboard ones the inter-plane and seam links; in other
    patterns any terminal serves any link (which one is not modelled).
    """

    along_track_deg: float = 45.0
    cross_track_deg: float = 45.0
    nadir_deg: tuple[float, float] = (0.0, 180.0)


@dataclass(frozen=True)
class Terminal:
    """An optical (or RF fallback) terminal type: how many per satellite, how far, how fast, and its limits.

    ``field_of_regard`` (None: anywhere) and ``slew_rate_deg_s`` (0: unlimited) are the pointing limits of ISL
    terminals (:mod:`lasernet.terminals`)."""

    kind: str = "laser"
    count: int = 4
    max_range_km: float = 5000.0
    acquisition_s: float = 2.0
    sun_exclusion_deg: float = 5.0
    data_rate_bps: float = 10e9
    field_of_regard: FieldOfRegard | None = None
    slew_rate_deg_s: float = 0.0

    @property
    def points(self) -> bool:
        """True when the terminal has pointing limits (a field of regard or a slew rate) to check."""
        return self.field_of_regard is not None or self.slew_rate_deg_s > 0


@dataclass(frozen=True)
class IslConfig:
    """Which satellite pairs may be linked and the geometric limits on those links."""

    pattern: str = "plus-grid"
    polar_cutoff_deg: float = 90.0  # inter-plane links are off above this |latitude|; 90 = never
    atmosphere_km: float = 80.0  # a link must clear the Earth's surface by this much
    links: tuple[tuple[str, str], ...] = ()  # for pattern "explicit"
    switch_margin: float = 0.2  # pattern "nearest": a held link gives way only to one this fraction shorter
    between_shells: int = 0  # +Grid / ring: links per satellite to satellites of other shells (nearest rule)


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
    cloud_free: float | None = None  # long-run clear share of its sky (None: ground.clouds' or the default)
    cloud_correlation_s: float | None = None  # correlation time of its clear/clouded state (used with ground.clouds)
    transit: bool = False  # relays between its ground links (see TRANSIT_BY_KIND); False: a stub, an end only
    jurisdiction: str = ""  # whose law it answers to, e.g. "eu" (residency rules: lasernet.spec.policy); "": none
    terminals: int = 0  # optical ground terminals (0: max_links); one more than max_links makes before it breaks
    rf: "RfTerminal | None" = None  # an RF terminal that carries its link while the optical one is blocked

    @property
    def terminal_count(self) -> int:
        """Optical terminals at the station: ``terminals``, or ``max_links`` when it does not say."""
        return self.terminals or self.max_links


@dataclass(frozen=True)
class RfTerminal:
    """A station's RF fallback terminal (``rf:``): it carries the station's ground link to the satellite it has
    chosen, at ``rate_bps``, while the optical link is blocked (cloud, Sun, its own mask or range, acquisition)
    and the satellite is above ``min_elevation_deg`` and within ``max_range_km``; no cloud or Sun outage."""

    rate_bps: float
    min_elevation_deg: float
    max_range_km: float


@dataclass(frozen=True)
class DiversityGroup:
    """``ground.diversity``: one user site served by whichever of its ``stations`` has a ground link up, the one
    serving it kept while it does (hysteresis), else the first listed (the primary) that does, else the next."""

    name: str
    stations: tuple[str, ...]


@dataclass(frozen=True)
class CloudDefaults:
    """``ground.clouds``: the cloud model's values for stations without their own (:mod:`lasernet.weather`)."""

    cloud_free: float
    correlation_s: float
    correlation_km: float


@dataclass(frozen=True)
class Server:
    """A server (an orbital rack or a ground data centre) attached to node ``attach`` over a local /24 LAN."""

    name: str
    attach: str
    cpus: float | None = None  # cores its processes may use (a CPU quota; None: no limit)
    memory_mb: int | None = None  # memory its processes may use, MiB (None: no limit)


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
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    workload: Workload = field(default_factory=Workload)
    power: tuple[PowerGroup, ...] = ()  # the power: section (lasernet.spec.power)
    upsets: Upsets | None = None  # the upsets: section (lasernet.spec.faults)
    collision: Collision | None = None  # the collision: section (lasernet.spec.faults)
    clouds: CloudDefaults | None = None  # ground.clouds
    diversity: tuple[DiversityGroup, ...] = ()  # ground.diversity
    capture: tuple[Capture, ...] = ()  # the capture: section (lasernet.spec.capture)
    policy: Policy = field(default_factory=Policy)  # the policy: section (lasernet.spec.policy); empty without it
    jamming: tuple[Jammer, ...] = ()  # the jamming: section, adversary sites (lasernet.spec.faults)

    def error(self, path: str, message: str) -> ScenarioError:
        return ScenarioError(self.source.name, path, message)


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
    root = Node(path.name, "", doc)
    if not isinstance(doc, dict):
        raise root.fail("must be a YAML mapping with at least 'name', 'epoch' and 'constellation'")
    root.mapping(("name", "description", "epoch", "seed", "constellation", "terminals", "isl", "ground", "plan",
                  "hosts", "probes", "routing", "workload", "power", "upsets", "collision", "capture",
                  "policy", "jamming"))
    name = root.get("name").name(max_len=40)
    epoch = _epoch(root.get("epoch"))
    seed = root.get("seed", 1).number(0, 2**32 - 1, integer=True)
    constellation = _constellation(root.get("constellation"), path.parent)
    terms = root.get("terminals", {})
    terms.mapping(("isl", "gsl"))
    isl_terminal = _terminal(terms.get("isl", {}), Terminal(), pointing=True)
    gsl_terminal = _terminal(terms.get("gsl", {}), Terminal(kind="laser", count=1, max_range_km=2500.0,
                                                            acquisition_s=2.0, sun_exclusion_deg=5.0,
                                                            data_rate_bps=10e9))
    isl = _isl(root.get("isl", {}), constellation, isl_terminal)
    ground = _ground(root.get("ground", {}), path.parent)
    clouds = _clouds(root.get("ground", {}), ground, gsl_terminal)
    diversity = _diversity(root.get("ground", {}), ground)
    for i, station in enumerate(ground):
        if station.rf is not None and gsl_terminal.kind != "laser":
            raise ScenarioError(path.name, f"ground.stations[{i}].rf", "an RF fallback backs up laser ground "
                                "links and terminals.gsl.kind is rf already: remove rf or make the ground "
                                "terminals laser")
    plan_node = root.get("plan", {})
    plan_node.mapping(("duration_s", "step_s"))
    plan = PlanDefaults(duration_s=plan_node.get("duration_s", 600.0).number(1, 30 * 86400),
                        step_s=plan_node.get("step_s", 1.0).number(0.01, 3600))
    probes = tuple(_probe(n) for n in root.get("probes", []).items())
    hosts = tuple(_server(n) for n in root.get("hosts", []).items())
    satellites = satellite_names(constellation)
    routing = parse_routing(root.get("routing", {}), tuple(g.name for g in ground), satellites, base=path.parent)
    scenario = Scenario(name=name, source=path, epoch=epoch, seed=seed, constellation=constellation,
                        isl_terminal=isl_terminal, gsl_terminal=gsl_terminal, isl=isl, ground=ground, plan=plan,
                        probes=probes, hosts=hosts,
                        routing=routing, policy=parse_policy(root.get("policy", None), routing.operators, ground),
                        workload=parse_workload(root.get("workload", None)),
                        power=parse_power(root.get("power", []), satellites),
                        upsets=parse_upsets(root.get("upsets", None)),
                        collision=parse_collision(root.get("collision", None),
                                                  lambda n, fmt: _elements_file(n, fmt, path.parent)),
                        clouds=clouds, diversity=diversity, capture=parse_capture(root.get("capture", [])),
                        jamming=parse_jamming(root.get("jamming", [])))
    _check_unique_names(root, scenario)
    check_node_names(scenario, satellites + tuple(g.name for g in ground))
    return scenario


def _probe(node: Node) -> ProbePair:
    node.mapping(("from", "to", "rate_hz"))
    src, dst = node.get("from").name(max_len=64), node.get("to").name(max_len=64)
    if src == dst:
        raise node.get("to").fail(f"probes from a node to itself ({src!r}) measure nothing")
    return ProbePair(src, dst, node.get("rate_hz", 20.0).number(0.1, 1000))


def _server(node: Node) -> Server:
    node.mapping(("name", "attach", "cpus", "memory_mb"))
    cpus, memory = node.get("cpus", None), node.get("memory_mb", None)
    return Server(node.get("name").name(), node.get("attach").name(max_len=64),
                  cpus=None if cpus.value is None else cpus.number(0.01, 1024),
                  memory_mb=None if memory.value is None else memory.number(16, 1 << 24, integer=True))


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
        resolve(scenario, node_names, n_satellites)
    capture_spec.check(scenario.capture, routers, set(names), scenario.source.name)


def _epoch(node: Node) -> dt.datetime:
    moment = parse_time(node.value)
    if moment is None:
        raise node.fail(f"must be an ISO 8601 UTC time like 2026-01-01T00:00:00Z, got {node.value!r}")
    if not 1960 <= moment.year <= 2050:
        raise node.fail(f"must be between 1960 and 2050 (the bundled ephemeris de421 covers 1900-2053), "
                        f"got {moment.year}")
    return moment


def _constellation(node: Node, base: Path) -> Constellation:
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


def _shell(node: Node) -> Shell:
    node.mapping(("name", "type", "planes", "sats_per_plane", "phasing", "altitude_km", "inclination_deg",
                  "raan0_deg", "spacing_km", "radial_separation_km", "source"))
    shell_type = node.get("type", "delta").choice(SHELL_TYPES)
    planes = node.get("planes").number(1, 1000, integer=True)
    per_plane = node.get("sats_per_plane").number(1, 1000, integer=True)
    phasing = node.get("phasing", 0).number(0, max(planes - 1, 0), integer=True)
    spacing_km, radial_km = 0.0, 0.0
    if shell_type == "formation":
        spacing_km = node.get("spacing_km").number(0.001, 100)
        radial_km = node.get("radial_separation_km", 0.0).number(0, 100)
    else:
        for key in ("spacing_km", "radial_separation_km"):
            if key in (node.value or {}):
                raise node.child(key, None).fail("only applies to type: formation")
    return Shell(name=node.get("name", "sat").name(), type=shell_type, planes=planes, sats_per_plane=per_plane,
                 phasing=phasing, altitude_km=node.get("altitude_km").number(160, 40000),
                 inclination_deg=node.get("inclination_deg").number(0, 180),
                 raan0_deg=node.get("raan0_deg", 0.0).number(-360, 360), spacing_km=spacing_km,
                 radial_separation_km=radial_km)


def _elements_file(node: Node, fmt: str, base: Path) -> ElementsFile:
    if isinstance(node.value, str):
        node = Node(node.source, node.path, {"file": node.value})
    node.mapping(("file", "prefix"))
    file_node = node.get("file")
    path = (base / file_node.text()).resolve()
    if not path.is_file():
        raise file_node.fail(f"no such file {str(path)!r} (paths are relative to the scenario file)")
    prefix = node.get("prefix", "").value
    if prefix:
        prefix = node.get("prefix").name()
    return ElementsFile(path=path, format=fmt, prefix=prefix or "")


def _terminal(node: Node, default: Terminal, pointing: bool = False) -> Terminal:
    values = node.mapping(("kind", "count", "max_range_km", "acquisition_s", "sun_exclusion_deg", "data_rate_bps",
                           "field_of_regard", "slew_rate_deg_s", "source"))
    if not pointing:
        for key in ("field_of_regard", "slew_rate_deg_s"):
            if key in values:
                raise node.child(key, None).fail("only applies to terminals.isl (ground links have no pointing "
                                                 "limits yet)")
    fov_node = node.get("field_of_regard", None)
    return Terminal(
        field_of_regard=None if fov_node.value is None else _field_of_regard(fov_node),
        slew_rate_deg_s=node.get("slew_rate_deg_s", default.slew_rate_deg_s).number(0, 360),
        kind=node.get("kind", default.kind).choice(TERMINAL_KINDS),
        count=node.get("count", default.count).number(0, 16, integer=True),
        max_range_km=node.get("max_range_km", default.max_range_km).number(0.001, 100000),
        acquisition_s=node.get("acquisition_s", default.acquisition_s).number(0, 3600),
        sun_exclusion_deg=node.get("sun_exclusion_deg", default.sun_exclusion_deg).number(0, 90),
        data_rate_bps=node.get("data_rate_bps", default.data_rate_bps).number(1e3, 1e13),
    )


def _field_of_regard(node: Node) -> FieldOfRegard:
    node.mapping(("along_track_deg", "cross_track_deg", "nadir_deg"))
    nadir = node.get("nadir_deg", [0.0, 180.0])
    pair = nadir.value
    if not (isinstance(pair, list) and len(pair) == 2):
        raise nadir.fail(f"must be a pair [min, max] of angles from the nadir (0-180, 90 = horizontal), got {pair!r}")
    lo, hi = (nadir.child(i, v).number(0, 180) for i, v in enumerate(pair))
    if lo >= hi:
        raise nadir.fail(f"the minimum {lo:g} must be below the maximum {hi:g}")
    return FieldOfRegard(along_track_deg=node.get("along_track_deg", 45.0).number(0, 90),
                         cross_track_deg=node.get("cross_track_deg", 45.0).number(0, 90), nadir_deg=(lo, hi))


def _isl(node: Node, constellation: Constellation, terminal: Terminal) -> IslConfig:
    values = node.mapping(("pattern", "polar_cutoff_deg", "atmosphere_km", "links", "switch_margin", "between_shells"))
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
    between = 0
    if "between_shells" in values:
        spec = node.get("between_shells")
        spec.mapping(("count",))
        if pattern not in ("plus-grid", "ring"):
            raise spec.fail(f"only applies to pattern: plus-grid or ring (pattern is {pattern}; nearest already "
                            f"links across shells)")
        if len(constellation.shells) < 2:
            raise spec.fail(f"needs two or more Walker shells to link, the constellation has "
                            f"{len(constellation.shells)}")
        between = int(spec.get("count", 1).number(1, 64, integer=True))
    if pattern != "nearest" and not between and "switch_margin" in values:
        raise node.child("switch_margin", None).fail(f"only applies to pattern: nearest or with between_shells "
                                                     f"(pattern is {pattern})")
    needed = {"plus-grid": 4, "ring": 2}.get(pattern, 1)
    if pattern != "none" and terminal.count < needed + between:
        extra = f" + {between} between shells" if between else ""
        raise ScenarioError(node.source, "terminals.isl.count",
                            f"pattern {pattern}{extra} needs {needed + between} ISL terminals per satellite, got "
                            f"{terminal.count}: raise terminals.isl.count"
                            + (" or lower isl.between_shells.count" if between else ""))
    return IslConfig(pattern=pattern,
                     polar_cutoff_deg=node.get("polar_cutoff_deg", 90.0).number(0, 90),
                     atmosphere_km=node.get("atmosphere_km", 80.0).number(0, 1000),
                     links=tuple(links), switch_margin=node.get("switch_margin", 0.2).number(0, 1),
                     between_shells=between)


_STATION_FIELDS = ("name", "site", "kind", "lat_deg", "lon_deg", "alt_m", "min_elevation_deg", "max_links",
                   "handover", "transit", "cloud_free", "cloud_correlation_s", "jurisdiction", "terminals", "rf",
                   "source")
_DEFAULTS = ("min_elevation_deg", "max_links", "handover", "transit", "jurisdiction", "terminals", "rf")


def _ground(node: Node, base: Path) -> tuple[GroundStation, ...]:
    node.mapping(("include", "defaults", "stations", "clouds", "diversity"))
    sites: dict[str, dict] = {}
    for inc in node.get("include", []).items():
        sites.update(_read_sites(inc, base))
    defaults = node.get("defaults", {})
    defaults.mapping(_DEFAULTS)
    stations = []
    listed = node.get("stations", [])
    if listed.value == "all":  # every site of the included files, in file order
        listed = Node(listed.source, listed.path, list(sites))
        if not sites:
            raise listed.fail("'all' needs ground.include with at least one sites file")
    for item in listed.items():
        value = item.value
        if isinstance(value, str):  # a bare site name from an included file
            value = {"site": value}
            item = Node(item.source, item.path, value)
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
        for key in _DEFAULTS:
            if key not in merged and key in (defaults.value or {}):
                merged[key] = defaults.value[key]
        stations.append(_station(Node(item.source, item.path, merged)))
    return tuple(stations)


def _station(node: Node) -> GroundStation:
    name = node.get("name").name()
    lat_deg, lon_deg = node.get("lat_deg").number(-90, 90), node.get("lon_deg").number(-180, 180)
    alt_m = node.get("alt_m", 0.0).number(-500, 9000)
    min_elevation_deg = node.get("min_elevation_deg", 25.0).number(0, 90)
    max_links = node.get("max_links", 1).number(1, 64, integer=True)
    handover = node.get("handover", "nearest").choice(HANDOVER_POLICIES)
    if handover == "all-in-range" and max_links < 2:
        raise node.get("max_links", 1).fail("handover all-in-range with max_links 1 is nearest: give the station's "
                                            "terminal count, the most satellites it may use at once (2..64)")
    kind = node.get("kind", "ground-station").choice(SITE_KINDS)
    terminals = max_links
    if "terminals" in (node.value or {}):
        terminals = node.get("terminals").number(1, 64, integer=True)
        if terminals < max_links:
            raise node.get("terminals").fail(f"a station holding max_links {max_links} needs at least that many "
                                             f"terminals, got {terminals}; give max_links + 1 to make before break")
    return GroundStation(terminals=terminals, rf=_rf(node.get("rf", None), min_elevation_deg),
                         name=name, lat_deg=lat_deg, lon_deg=lon_deg, alt_m=alt_m,
                         min_elevation_deg=min_elevation_deg, max_links=max_links, handover=handover, kind=kind,
                         transit=node.get("transit", TRANSIT_BY_KIND[kind]).boolean(),
                         cloud_free=_optional(node.get("cloud_free", None), 0, 1),
                         cloud_correlation_s=_optional(node.get("cloud_correlation_s", None), 1, 365 * 86400),
                         jurisdiction=node.get("jurisdiction", None).jurisdiction())


def _rf(node: Node, optical_mask_deg: float) -> RfTerminal | None:
    """A station's ``rf:`` fallback terminal (None without one); its mask defaults to the optical one's."""
    if node.value is None:
        return None
    node.mapping(("rate_mbps", "min_elevation_deg", "max_range_km"))
    return RfTerminal(rate_bps=node.get("rate_mbps").number(0.001, 1e6) * 1e6,
                      min_elevation_deg=node.get("min_elevation_deg", optical_mask_deg).number(0, 90),
                      max_range_km=node.get("max_range_km", 2500.0).number(1, 100000))


def _diversity(node: Node, stations: tuple[GroundStation, ...]) -> tuple[DiversityGroup, ...]:
    """``ground.diversity``: groups of two or more listed stations, each station in one group at most."""
    known = {g.name for g in stations}
    member_of: dict[str, str] = {}
    groups = []
    for item in node.get("diversity", []).items():
        item.mapping(("name", "stations"))
        name = item.get("name").name(max_len=64)
        if any(name == g.name for g in groups):
            raise item.get("name").fail(f"diversity group {name!r} is given twice; names must be unique")
        listed = item.get("stations")
        members = [m.name(max_len=64) for m in listed.items()]
        if len(members) < 2 or len(set(members)) != len(members):
            raise listed.fail(f"must list two or more different stations (the primary first), got {members!r}")
        for k, member in enumerate(members):
            if member not in known:
                raise listed.child(k, member).fail(f"unknown station {member!r}; list stations of ground.stations")
            if member in member_of:
                raise listed.child(k, member).fail(f"{member!r} already serves site {member_of[member]!r}; a "
                                                   f"station serves one site")
            member_of[member] = name
        groups.append(DiversityGroup(name, tuple(members)))
    return tuple(groups)


def _optional(node: Node, lo: float, hi: float) -> float | None:
    return None if node.value is None else node.number(lo, hi)


def _clouds(node: Node, stations: tuple[GroundStation, ...], gsl_terminal: Terminal) -> CloudDefaults | None:
    """``ground.clouds`` (None without it: no clouds, whatever figures sites carry); it needs laser ground
    terminals."""
    clouds = node.get("clouds", None)
    if clouds.value is None:
        return None
    clouds.mapping(("cloud_free", "correlation_s", "correlation_km"))
    if gsl_terminal.kind != "laser":
        raise clouds.fail("clouds only block laser ground links (terminals.gsl.kind is rf); remove ground.clouds "
                          "or make the ground terminals laser")
    return CloudDefaults(cloud_free=clouds.get("cloud_free", DEFAULT_CLOUD_FREE).number(0, 1),
                         correlation_s=clouds.get("correlation_s", DEFAULT_CORRELATION_S).number(1, 365 * 86400),
                         correlation_km=clouds.get("correlation_km", DEFAULT_CORRELATION_KM).number(0, 20000))


def _read_sites(node: Node, base: Path) -> dict[str, dict]:
    path = (base / node.text()).resolve()
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise node.fail(f"cannot read sites file {str(path)!r} ({getattr(exc, 'strerror', None) or exc}); paths "
                        f"are relative to the scenario file") from None
    doc = read_yaml(text, path.name)
    sites_node = Node(path.name, "sites", (doc or {}).get("sites") if isinstance(doc, dict) else None)
    if not isinstance(sites_node.value, list):
        raise sites_node.fail("must be a list of sites with name, lat_deg, lon_deg")
    sites = {}
    for item in sites_node.items():
        item.mapping(_STATION_FIELDS)
        sites[item.get("name").name()] = dict(item.value)
    return sites


def _check_unique_names(root: Node, scenario: Scenario) -> None:
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
