"""The scenario's ``workload:`` section: what software runs where and when, and which measurements are taken.

A workload says, in emulated seconds from the start of a run:

* ``commands``: shell commands started on a node or a group of nodes at ``start_s`` and stopped (SIGTERM to their
  process group) at ``stop_s`` or at the end of the run. Each runs in its own working directory inside the run
  directory, with its stdout and stderr in files there and its exit code recorded;
* ``ping_mesh``: UDP echo probes between every pair of a set of nodes (the probe pairs' machinery, compared with the
  RTT the plan predicts);
* ``iperf3``: TCP or UDP flows between two nodes, their throughput over time;
* ``outages``: failure injection: every link of a router (``node:``) or one link (``link: [a, b]``) forced down
  from ``start_s`` for ``duration_s`` (the driver's :meth:`~lasernet.emulation.coordinator.Emulation.override`);
* ``report``: the instants the report's constellation maps show.

Nodes are chosen by *selectors*: a node's name (``sat-0-1``, ``ashburn``, a server of ``hosts:``), a glob
(``sat-0-*``), a role (``role:satellite``, ``role:ground-station``, ``role:data-centre``, ``role:city``,
``role:server``) or ``hosts`` (every server of the scenario's ``hosts:``). They are resolved against the scenario's
nodes when a run starts (:func:`resolve`), before anything is created: a selector that matches nothing is an error.

This module only reads and checks the section (offline, no root); :mod:`lasernet.emulation.workload` runs it.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from ..errors import ScenarioError
from .fields import Node, node_or_link

ROLES = ("satellite", "ground-station", "data-centre", "city", "server")
PROTOCOLS = ("tcp", "udp")
ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_MESH_NODES = 12  # 66 pairs, two processes each


@dataclass(frozen=True)
class Command:
    """A shell command (``sh -c``) run on every node ``nodes`` selects, from ``start_s`` to ``stop_s``."""

    name: str
    nodes: tuple[str, ...]
    run: str
    start_s: float = 0.0
    stop_s: float | None = None
    env: tuple[tuple[str, str], ...] = ()
    cwd: str = "workload/{node}"  # relative to the run directory; {node} is the node's name


@dataclass(frozen=True)
class PingMesh:
    """UDP echo probes at ``rate_hz`` between every pair of the selected nodes (each pair once)."""

    nodes: tuple[str, ...] = ("role:ground-station", "role:data-centre", "role:city")
    rate_hz: float = 5.0


@dataclass(frozen=True)
class IperfFlow:
    """One iperf3 flow from ``src`` (client) to ``dst`` (server) for ``duration_s`` from ``start_s``."""

    src: str
    dst: str
    start_s: float = 1.0
    duration_s: float = 10.0
    interval_s: float = 1.0
    protocol: str = "tcp"
    bitrate_bps: float = 0.0  # 0: iperf3's default (unlimited for TCP, 1 Mbit/s for UDP)
    parallel: int = 1


@dataclass(frozen=True)
class Outage:
    """Links forced down from ``start_s`` for ``duration_s``: all of router ``node``'s, or the one ``link``."""

    start_s: float
    duration_s: float
    node: str | None = None
    link: tuple[str, str] | None = None


@dataclass(frozen=True)
class Workload:
    duration_s: float | None = None  # how long `lasernet run` runs (wall seconds) unless --duration says
    commands: tuple[Command, ...] = ()
    ping_mesh: PingMesh | None = None
    iperf3: tuple[IperfFlow, ...] = ()
    map_at_s: tuple[float, ...] = ()  # report maps at these emulated seconds (default: start, middle, end)
    outages: tuple[Outage, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.commands or self.ping_mesh or self.iperf3 or self.outages)


def parse_workload(node: Node) -> Workload:
    """Read the ``workload:`` mapping (``node``); raise :class:`ScenarioError` naming the first problem."""
    if node.value is None:
        return Workload()
    node.mapping(("duration_s", "commands", "ping_mesh", "iperf3", "outages", "report"))
    duration = node.get("duration_s", None)
    commands = tuple(_command(n) for n in node.get("commands", []).items())
    names = [c.name for c in commands]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise node.child("commands", None).child(i, None).child("name", None).fail(
                f"{name!r} is used twice; command names must be unique (they name the output files)")
    mesh_node = node.get("ping_mesh", None)
    mesh = None
    if mesh_node.value is not None:
        mesh_node.mapping(("nodes", "rate_hz"))
        mesh = PingMesh(nodes=_selectors(mesh_node.get("nodes", list(PingMesh.nodes))),
                        rate_hz=mesh_node.get("rate_hz", 5.0).number(0.1, 100))
    report = node.get("report", {})
    report.mapping(("map_at_s",))
    map_at = tuple(n.number(0, 30 * 86400) for n in report.get("map_at_s", []).items())
    return Workload(duration_s=None if duration.value is None else duration.number(1, 86400), commands=commands,
                    ping_mesh=mesh, iperf3=tuple(_flow(n) for n in node.get("iperf3", []).items()),
                    map_at_s=map_at, outages=tuple(_outage(n) for n in node.get("outages", []).items()))


def _selectors(node: Node) -> tuple[str, ...]:
    value = node.value
    if isinstance(value, str):
        node = Node(node.source, node.path, [value])
    items = node.items()
    if not items:
        raise node.fail("must name at least one node: a name, a glob like sat-0-*, role:ROLE or hosts")
    out = []
    for item in items:
        text = item.value
        if not isinstance(text, str) or not text:
            raise item.fail(f"must be a node name, a glob like sat-0-*, role:ROLE or hosts, got {text!r}")
        if text.startswith("role:"):
            if text[5:] not in ROLES:
                raise item.fail(f"unknown role {text[5:]!r}; roles are {', '.join(ROLES)}")
        elif text != "hosts" and not re.fullmatch(r"[a-z0-9*?\[\]!-]+", text):
            raise item.fail(f"must be a node name, a glob like sat-0-*, role:ROLE or hosts, got {text!r}")
        out.append(text)
    return tuple(out)


def _command(node: Node) -> Command:
    node.mapping(("name", "nodes", "run", "start_s", "stop_s", "env", "cwd"))
    name = node.get("name").name(max_len=32)
    start = node.get("start_s", 0.0).number(0, 30 * 86400)
    stop_node = node.get("stop_s", None)
    stop = None
    if stop_node.value is not None:
        stop = stop_node.number(0, 30 * 86400)
        if stop <= start:
            raise stop_node.fail(f"must be after start_s ({start:g}), got {stop:g}")
    env_node = node.get("env", {})
    env = []
    for key, value in (env_node.mapping(tuple(env_node.value or ())) or {}).items():
        child = env_node.child(str(key), value)
        if not isinstance(key, str) or not ENV_RE.match(key):
            raise child.fail("environment variable names must match [A-Za-z_][A-Za-z0-9_]*")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise child.fail(f"must be a string or a number, got {value!r}")
        env.append((key, str(value)))
    cwd_node = node.get("cwd", "workload/{node}")
    cwd = cwd_node.text()
    parts = PurePosixPath(cwd).parts
    if cwd.startswith("/") or ".." in parts:
        raise cwd_node.fail(f"must be a relative path inside the run directory (no leading / or ..), got {cwd!r}")
    return Command(name=name, nodes=_selectors(node.get("nodes")), run=node.get("run").text(), start_s=start,
                   stop_s=stop, env=tuple(env), cwd=cwd)


def _flow(node: Node) -> IperfFlow:
    node.mapping(("from", "to", "start_s", "duration_s", "interval_s", "protocol", "bitrate_bps", "parallel"))
    src, dst = node.get("from").name(max_len=64), node.get("to").name(max_len=64)
    if src == dst:
        raise node.get("to").fail(f"a flow from a node to itself ({src!r}) crosses no link")
    duration = node.get("duration_s", 10.0).number(1, 86400)
    return IperfFlow(src=src, dst=dst, start_s=node.get("start_s", 1.0).number(0, 30 * 86400), duration_s=duration,
                     interval_s=node.get("interval_s", 1.0).number(0.1, duration),
                     protocol=node.get("protocol", "tcp").choice(PROTOCOLS),
                     bitrate_bps=node.get("bitrate_bps", 0.0).number(0, 1e12),
                     parallel=node.get("parallel", 1).number(1, 16, integer=True))


def _outage(node: Node) -> Outage:
    node.mapping(("node", "link", "start_s", "duration_s"))
    values = node.value or {}
    target, link = node_or_link(node, values, "node: NAME (all its links) or link: [A, B]")
    return Outage(start_s=node.get("start_s").number(0, 30 * 86400),
                  duration_s=node.get("duration_s").number(0.1, 30 * 86400), node=target, link=link)


# --------------------------------------------------------------------------------------------------------------
# Resolving selectors once the nodes are known

def node_roles(scenario, node_names: tuple[str, ...], n_satellites: int) -> dict[str, str]:
    """Every node of a run (routers, then servers) with its role, in order."""
    roles = {}
    for i, name in enumerate(node_names):
        roles[name] = "satellite" if i < n_satellites else scenario.ground[i - n_satellites].kind
    for host in scenario.hosts:
        roles[host.name] = "server"
    return roles


def select(selectors: tuple[str, ...], roles: dict[str, str], where: str, source: str) -> list[str]:
    """The nodes ``selectors`` pick (in node order, each once); ScenarioError at ``where`` if one picks nothing."""
    servers = {n for n, r in roles.items() if r == "server"}
    picked: set[str] = set()
    for k, sel in enumerate(selectors):
        if sel == "hosts":
            hit = servers
        elif sel.startswith("role:"):
            hit = {n for n, r in roles.items() if r == sel[5:]}
        else:
            hit = {n for n in roles if fnmatch.fnmatchcase(n, sel)}
        if not hit and not (where.endswith("ping_mesh.nodes") and sel.startswith("role:")):
            some = ", ".join(list(roles)[:4])
            raise ScenarioError(source, f"{where}[{k}]", f"{sel!r} matches no node; nodes are e.g. {some} "
                                                        f"(names, globs, role:ROLE or hosts)")
        picked |= hit
    return [n for n in roles if n in picked]


def resolve(scenario, node_names: tuple[str, ...], n_satellites: int) -> dict:
    """Check every selector and endpoint of ``scenario.workload`` against the run's nodes.

    Returns ``{"commands": [(command, [nodes])], "mesh": [(a, b)], "roles": {...}}``; raises ScenarioError.
    """
    wl: Workload = scenario.workload
    src = scenario.source.name
    roles = node_roles(scenario, node_names, n_satellites)
    commands = [(c, select(c.nodes, roles, f"workload.commands[{i}].nodes", src))
                for i, c in enumerate(wl.commands)]
    mesh = []
    if wl.ping_mesh is not None:
        members = select(wl.ping_mesh.nodes, roles, "workload.ping_mesh.nodes", src)
        if len(members) < 2:
            raise ScenarioError(src, "workload.ping_mesh.nodes", f"selects {len(members)} node(s); a mesh needs "
                                                                 f"at least 2")
        if len(members) > MAX_MESH_NODES:
            raise ScenarioError(src, "workload.ping_mesh.nodes",
                                f"selects {len(members)} nodes; at most {MAX_MESH_NODES} (each pair is two "
                                f"processes): choose fewer nodes")
        mesh = [(a, b) for i, a in enumerate(members) for b in members[i + 1:]]
    for i, flow in enumerate(wl.iperf3):
        for key, name in (("from", flow.src), ("to", flow.dst)):
            if name not in roles:
                raise ScenarioError(src, f"workload.iperf3[{i}].{key}", f"unknown node {name!r}; nodes are e.g. "
                                                                        f"{', '.join(list(roles)[:4])}")
    for i, outage in enumerate(wl.outages):
        for k, name in enumerate([outage.node] if outage.node else outage.link):
            if roles.get(name) in (None, "server"):
                where = f"workload.outages[{i}]." + ("node" if outage.node else f"link[{k}]")
                raise ScenarioError(src, where, f"{name!r} is not a satellite or ground station; outages act on "
                                                f"the links between routers, e.g. {node_names[0]!r}")
    return {"commands": commands, "mesh": mesh, "roles": roles}
