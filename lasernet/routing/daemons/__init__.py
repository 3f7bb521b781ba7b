"""Real routing daemons on every router: FRR (zebra + ospfd / isisd, bfdd) or BIRD 2, one set per node.

A :class:`DaemonSet` runs the scenario's ``routing:`` protocol (:mod:`lasernet.spec.routing`) on every router
of an emulation. For each node it writes the daemons' configuration from templates (``templates/*.j2``, Jinja2)
into the node's own directory ``/run/lasernet/<run-id>/<node>/``, which also holds its sockets, PID files and
logs (Unix socket paths must stay under 108 bytes, so not the run directory; ``<run dir>/routing`` links there
while the run is up and becomes a copy of it when the run ends). Every daemon is started in the node's network
namespace (``mnexec -da <pid>``, the way Mininet's ``popen`` does), in the foreground, so that its PID is the
process we started; PIDs go to the run's state file, so ``lasernet down`` removes them even after a crash.

Start-up is health-checked: a daemon counts as started when its control socket exists while its process still
runs. One that exits or does not come up within ``START_TIMEOUT_S`` raises :class:`RoutingDaemonError`, one line
naming the node and the daemon, with the tail of its log; the caller tears everything down.

The classes follow IPMininet: a :class:`Daemon` knows its name, its template, its command line and its control
socket; a suite (:class:`FrrSuite`, :class:`BirdSuite`) knows which daemons a protocol needs and how an operator
reaches them (``vtysh --vty_socket DIR``, ``birdc -s SOCKET``; ``lasernet exec NODE -- vtysh`` adds the option).
"""

from __future__ import annotations

import dataclasses
import math
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

from ...spec.routing import RoutingConfig

TEMPLATES = Path(__file__).resolve().parent / "templates"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
FRR_BIN = Path("/usr/lib/frr")
FRR_TMP = Path("/var/tmp/frr")  # FRR keeps a per-process crash-log directory <daemon>.<pid> here
LOG_TAIL_LINES = 6
CONFIG_READ_S = 0.5

ConfigHook = Callable[[str, str, str], str]  # (node, daemon, config text) -> config text; for tests


class RoutingDaemonError(RuntimeError):
    """A routing daemon that did not start (or died): one line naming node, daemon and the end of its log."""


@dataclasses.dataclass(frozen=True)
class LinkSpec:
    """One link end as a daemon sees it: the interface in this node, the node at the other end, its metric."""

    name: str
    peer: str
    cost: int
    peer_ip: str = ""  # the peer's address on the link's /31 (BGP sessions)


@dataclasses.dataclass
class NodeSpec:
    """What a router's daemon configuration is built from."""

    name: str
    index: int
    role: str
    loopback: str
    links: list[LinkSpec]
    lans: list[str]  # interfaces towards attached servers (advertised, never peered over)
    lan_prefixes: list[str] = dataclasses.field(default_factory=list)  # their /24s
    bgp: dict = dataclasses.field(default_factory=dict)  # BGP: asn, confed, confed_peers, neighbors


class BgpPlan:
    """Who is which AS (see :mod:`lasernet.spec.routing`): satellite i of operator O is member AS
    MEMBER_ASN_BASE + i of the confederation O.asn; ground station k is AS ground_asn + k. A session between a
    satellite of an operator with ``land_at`` and a ground station it does not list exchanges no routes."""

    def __init__(self, cfg: RoutingConfig, node_names, n_satellites: int, source: str = "routing"):
        from ...spec.routing import MEMBER_ASN_BASE, operator_of, operators_uncovered

        self.cfg, self.names, self.n_sat = cfg, list(node_names), n_satellites
        self.index = {name: i for i, name in enumerate(node_names)}
        self.operator = {name: operator_of(cfg, name) for name in node_names[:n_satellites]}
        uncovered = operators_uncovered(cfg.operators, node_names[:n_satellites])  # load_scenario checked it too
        if uncovered:
            from ...errors import ScenarioError

            raise ScenarioError(source, "routing.operators", uncovered)
        self.member = {name: MEMBER_ASN_BASE + i for i, name in enumerate(node_names[:n_satellites])}

    def is_sat(self, name: str) -> bool:
        return self.index[name] < self.n_sat

    def asn(self, name: str) -> int:
        return self.member[name] if self.is_sat(name) else self.cfg.ground_asn + self.index[name] - self.n_sat

    def asn_seen_from(self, me: str, peer: str) -> int:
        if self.is_sat(peer) and not (self.is_sat(me) and self.operator[me] is self.operator[peer]):
            return self.operator[peer].asn  # outside the confederation it is the operator's AS
        return self.asn(peer)

    def allowed(self, me: str, peer: str) -> bool:
        sat, station = (me, peer) if self.is_sat(me) else (peer, me)
        if not self.is_sat(sat) or self.is_sat(station):
            return True
        land = self.operator[sat].land_at
        return not land or station in land

    def neighbor(self, me: str, link: LinkSpec) -> dict:
        return {"ip": link.peer_ip, "asn": self.asn_seen_from(me, link.peer), "name": link.peer,
                "allowed": self.allowed(me, link.peer)}

    def node(self, spec: NodeSpec) -> dict:
        me = spec.name
        op = self.operator.get(me) if self.is_sat(me) else None
        peers = sorted(self.member[n] for n, o in self.operator.items() if o is op and n != me) if op else []
        return {"asn": self.asn(me), "confed": op.asn if op else None, "confed_peers": peers,
                "neighbors": [self.neighbor(me, link) for link in spec.links], "lan_prefixes": spec.lan_prefixes}


@dataclasses.dataclass
class Running:
    node: str
    daemon: str
    proc: subprocess.Popen
    ready: Path  # the control socket that exists once the daemon runs
    out: Path  # its stdout/stderr
    log: Path


class Daemon:
    """One routing daemon program (see the module docstring); subclasses set the class attributes."""

    name = ""
    template = ""
    ready_name = ""  # control socket in the node's directory

    def config(self, env, node: NodeSpec, cfg: RoutingConfig, d: Path, scenario: str) -> str:
        return env.get_template(self.template).render(node=node, cfg=cfg, dir=str(d), scenario=scenario,
                                                      **self.extra(node, cfg))

    def extra(self, node: NodeSpec, cfg: RoutingConfig) -> dict:
        return {}

    def argv(self, d: Path) -> list[str]:
        raise NotImplementedError

    def log(self, d: Path) -> Path:
        return d / f"{self.name}.log"


class FrrDaemon(Daemon):
    """An FRR daemon: per-node config, PID file, zebra socket and vty socket directory; runs as user frr."""

    def __init__(self, name: str):
        self.name, self.template, self.ready_name = name, f"{name}.conf.j2", f"{name}.vty"

    def argv(self, d: Path) -> list[str]:
        return [str(FRR_BIN / self.name), "-f", str(d / f"{self.name}.conf"), "-i", str(d / f"{self.name}.pid"),
                "-z", str(d / "zserv.api"), "--vty_socket", str(d), "-u", "frr", "-g", "frr", "-P", "0"]

    def extra(self, node: NodeSpec, cfg: RoutingConfig) -> dict:
        octets = "".join(f"{int(x):03d}" for x in node.loopback.split("."))  # 10.255.0.5 -> 010255000005
        return {"protocol": cfg.protocol, "hello_multiplier": max(2, math.ceil(cfg.dead_s / cfg.hello_s)),
                "net": f"49.0001.{octets[0:4]}.{octets[4:8]}.{octets[8:12]}.00", "bgp": node.bgp}


class BirdDaemon(Daemon):
    """BIRD 2: one process per node for OSPF or Babel (+ BFD), control socket ``bird.ctl``."""

    name, template, ready_name = "bird", "bird.conf.j2", "bird.ctl"

    def argv(self, d: Path) -> list[str]:
        return ["bird", "-f", "-c", str(d / "bird.conf"), "-s", str(d / "bird.ctl"), "-P", str(d / "bird.pid")]

    def extra(self, node: NodeSpec, cfg: RoutingConfig) -> dict:
        return {"tick_s": max(1, round(cfg.spf_hold_ms / 1000)), "babel_hello_ms": int(round(cfg.hello_s * 1000))}


class FrrSuite:
    """FRR: zebra (the FIB) plus the protocol's daemon, and bfdd with ``bfd: true``."""

    name = "frr"
    owner = "frr"
    shell = "vtysh"
    rejects = (" on config line ",)  # libfrr: "%s on config line %u: %s" (no such command, ambiguous, ...)

    def __init__(self, cfg: RoutingConfig):
        protocol_daemon = {"ospf": "ospfd", "isis": "isisd", "bgp": "bgpd"}[cfg.protocol]
        self.daemons = [FrrDaemon("zebra")] + ([FrrDaemon("bfdd")] if cfg.bfd else []) + [FrrDaemon(protocol_daemon)]

    @staticmethod
    def shell_args(d: Path) -> list[str]:
        return ["--vty_socket", str(d)]

    def link_commands(self, cfg: RoutingConfig, link: LinkSpec, node: NodeSpec | None = None,
                      plan: "BgpPlan | None" = None) -> list[str] | None:
        """vtysh commands that configure a link created after start (FRR configures interfaces by name)."""
        if cfg.protocol == "bgp":
            n = plan.neighbor(node.name, link)
            policy = "lasernet-accept" if n["allowed"] else "lasernet-deny"
            return ["configure terminal", f"router bgp {plan.asn(node.name)}",
                    f"neighbor {n['ip']} remote-as {n['asn']}", f"neighbor {n['ip']} advertisement-interval 0",
                    f"neighbor {n['ip']} timers connect 1", "address-family ipv4 unicast",
                    f"neighbor {n['ip']} next-hop-self", f"neighbor {n['ip']} route-map {policy} in",
                    f"neighbor {n['ip']} route-map {policy} out"]
        if cfg.protocol == "ospf":
            lines = ["ip ospf network point-to-point", f"ip ospf hello-interval {int(cfg.hello_s)}",
                     f"ip ospf dead-interval {int(cfg.dead_s)}", f"ip ospf retransmit-interval {cfg.retransmit_s}",
                     f"ip ospf cost {link.cost}"]
            lines += ["ip ospf bfd", "ip ospf bfd profile lasernet"] if cfg.bfd else []
        else:
            lines = ["ip router isis lasernet", "isis network point-to-point", "isis circuit-type level-2-only",
                     f"isis hello-interval {int(cfg.hello_s)}",
                     f"isis hello-multiplier {max(2, math.ceil(cfg.dead_s / cfg.hello_s))}",
                     f"isis metric {link.cost}"]
            lines += ["isis bfd", "isis bfd profile lasernet"] if cfg.bfd else []
        return ["configure terminal", f"interface {link.name}", *lines]


class BirdSuite:
    """BIRD 2: one ``bird`` per node; interface patterns cover links created later."""

    name = "bird"
    owner = None
    shell = "birdc"
    rejects = ()  # BIRD exits on a configuration error

    def __init__(self, cfg: RoutingConfig):
        self.daemons = [BirdDaemon()]

    @staticmethod
    def shell_args(d: Path) -> list[str]:
        return ["-s", str(d / "bird.ctl")]

    def link_commands(self, cfg: RoutingConfig, link: LinkSpec, node=None, plan=None) -> list[str] | None:
        return None


def make_suite(cfg: RoutingConfig):
    return {"frr": FrrSuite, "bird": BirdSuite}[cfg.daemon](cfg)


def make_shell_args(routing: dict, node: str) -> list[str]:
    """The options that point a run's daemon shell (``routing["shell"]``: vtysh or birdc) at ``node``'s daemons,
    from the ``routing`` entry of the run's state file."""
    suite = {"frr": FrrSuite, "bird": BirdSuite}[routing["daemon"]]
    return suite.shell_args(Path(routing["dir"]) / node)


def _tail(*paths: Path, lines: int = LOG_TAIL_LINES) -> str:
    text = []
    for path in paths:
        try:
            text += [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            continue
    return " | ".join(text[-lines:]) or "(its log is empty)"


class DaemonSet:
    """The routing daemons of one emulation run (see the module docstring)."""

    def __init__(self, cfg: RoutingConfig, run_id: str, run_dir: Path, scenario_name: str, state=None,
                 config_hook: ConfigHook | None = None, base_dir: Path | None = None):
        from ...emulation.state import STATE_DIR

        self.cfg, self.run_id, self.run_dir, self.scenario_name = cfg, run_id, Path(run_dir), scenario_name
        self.suite = make_suite(cfg)
        self.base = Path(base_dir or STATE_DIR) / run_id
        self.state = state
        self.config_hook = config_hook
        self.running: list[Running] = []
        self.nodes: dict[str, object] = {}  # name -> Router
        self.specs: dict[str, NodeSpec] = {}
        self._helpers: list[subprocess.Popen] = []  # vtysh runs configuring links made after start
        self._stopped = False
        self.bgp: BgpPlan | None = None
        self._reported: list[Running] = []

    def node_dir(self, name: str) -> Path:
        return self.base / name

    # ---------------------------------------------------------------------------------------------- start
    def start(self, nodes: dict, specs: dict[str, NodeSpec], n_satellites: int = 0) -> None:
        """Write every node's configs, start its daemons (dependency order) and wait until all are up."""
        import jinja2

        self.nodes, self.specs = nodes, specs
        if self.cfg.protocol == "bgp":
            self.bgp = BgpPlan(self.cfg, list(specs), n_satellites, self.scenario_name)
            for spec in specs.values():
                spec.bgp = self.bgp.node(spec)
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), trim_blocks=True,
                                 lstrip_blocks=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
        self.base.mkdir(parents=True, exist_ok=True)
        if self.state is not None:
            self.state.data["routing"] = {"protocol": self.cfg.protocol, "daemon": self.cfg.daemon,
                                          "dir": str(self.base), "shell": self.suite.shell, "processes": []}
            self.state.save()
        link = self.run_dir / "routing"
        if not link.exists() and not link.is_symlink():
            link.symlink_to(self.base, target_is_directory=True)
        owner = pwd.getpwnam(self.suite.owner) if self.suite.owner else None
        for name, spec in specs.items():
            d = self.node_dir(name)
            d.mkdir(exist_ok=True)
            for daemon in self.suite.daemons:
                text = daemon.config(env, spec, self.cfg, d, self.scenario_name)
                if self.config_hook is not None:
                    text = self.config_hook(name, daemon.name, text)
                (d / f"{daemon.name}.conf").write_text(text)
            if owner is not None:
                for path in [d, *d.iterdir()]:
                    os.chown(path, owner.pw_uid, owner.pw_gid)
        os.chmod(self.base, 0o755)
        for daemon in self.suite.daemons:  # stage by stage: zebra everywhere first
            stage = [self._spawn(name, daemon) for name in specs]
            self._wait_ready(stage)
        self._check_configs()

    def _check_configs(self) -> None:
        """FRR daemons keep running with configuration lines they rejected: read their output for that.

        They read their configuration as the first thing their event loop does once their sockets exist, so their
        output and log are read after CONFIG_READ_S."""
        if not self.suite.rejects:
            return
        time.sleep(CONFIG_READ_S)
        for run in self.running:
            text = ""
            for path in (run.out, run.log):
                try:
                    text += path.read_text(errors="replace")
                except OSError:
                    continue
            for line in text.splitlines():
                if any(marker in line for marker in self.suite.rejects):
                    raise self._error(f"{run.node}: {run.daemon} rejected its configuration "
                                             f"({run.out.with_suffix('.conf')}): {line.strip()}")

    def _spawn(self, name: str, daemon: Daemon) -> Running:
        d = self.node_dir(name)
        out = d / f"{daemon.name}.out"
        with out.open("w") as f:
            proc = self.nodes[name].popen(daemon.argv(d), stdin=subprocess.DEVNULL, stdout=f,
                                          stderr=subprocess.STDOUT)
        run = Running(name, daemon.name, proc, d / daemon.ready_name, out, daemon.log(d))
        self.running.append(run)
        if self.state is not None:
            from ...emulation.state import _start_time

            self.state.data["routing"]["processes"].append({"node": name, "daemon": daemon.name, "pid": proc.pid,
                                                            "start": _start_time(proc.pid)})
        return run

    def _wait_ready(self, stage: list[Running]) -> None:
        if self.state is not None:
            self.state.save()
        deadline = time.monotonic() + START_TIMEOUT_S
        pending = list(stage)
        while pending:
            for run in list(pending):
                code = run.proc.poll()
                if code is not None:
                    time.sleep(0.1)  # let it finish writing its log
                    raise self._error(f"{run.node}: {run.daemon} did not start (exit code {code}); its log "
                                             f"ends: {_tail(run.out, run.log)}")
                if run.ready.exists():
                    pending.remove(run)
            if pending and time.monotonic() > deadline:
                run = pending[0]
                raise self._error(f"{run.node}: {run.daemon} did not open {run.ready.name} within "
                                         f"{START_TIMEOUT_S:g} s ({len(pending)} daemons late); its log ends: "
                                         f"{_tail(run.out, run.log)}")
            if pending:
                time.sleep(0.02)

    def _error(self, message: str) -> RoutingDaemonError:
        """The error, with paths pointing where the files are kept after the run (``<run dir>/routing``)."""
        return RoutingDaemonError(message.replace(str(self.base), str(self.run_dir / "routing")))

    def report_exits(self) -> list[str]:
        """Log (once each) the daemons that have exited since they started; return their one-line reports."""
        import logging

        reports = []
        for run in self.running:
            if run.proc.poll() is not None and run not in self._reported:
                self._reported.append(run)
                text = (f"{run.node}: {run.daemon} exited (code {run.proc.returncode}); its log ends: "
                        f"{_tail(run.out, run.log)}")
                logging.getLogger("lasernet").error("%s", text)
                reports.append(text)
        return reports

    def check(self) -> None:
        """Raise RoutingDaemonError if any daemon has exited since it started."""
        for run in self.running:
            code = run.proc.poll()
            if code is not None:
                raise self._error(f"{run.node}: {run.daemon} exited (code {code}); its log ends: "
                                         f"{_tail(run.out, run.log)}")

    # ---------------------------------------------------------------------------------------------- runtime
    def link_added(self, node: str, link: LinkSpec) -> None:
        """A link created after start: configure it in the node's daemons if the suite needs that (FRR)."""
        commands = self.suite.link_commands(self.cfg, link, self.specs.get(node), self.bgp)
        if not commands or node not in self.nodes:
            return
        argv = [self.suite.shell, *self.suite.shell_args(self.node_dir(node))]
        for c in commands:
            argv += ["-c", c]
        self._helpers = [p for p in self._helpers if p.poll() is None]
        self._helpers.append(self.nodes[node].popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                    stderr=subprocess.DEVNULL))

    def shell(self, node: str, *args: str) -> str:
        """Run the suite's shell (vtysh / birdc) in ``node`` with ``args``; return its output."""
        argv = [self.suite.shell, *self.suite.shell_args(self.node_dir(node))]
        if self.suite.shell == "vtysh":
            for a in args:
                argv += ["-c", a]
        else:
            argv += list(args)
        proc = self.nodes[node].popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)
        out, _ = proc.communicate(timeout=30)
        return out

    # ---------------------------------------------------------------------------------------------- stop
    def stop(self) -> None:
        """SIGTERM every daemon (FRR then removes its crash-log directory), SIGKILL what remains; keep the files."""
        if self._stopped:
            return
        self._stopped = True
        procs = [p for p in self._helpers if p.poll() is None] + [r.proc for r in self.running]
        for proc in procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in procs:
            try:
                proc.wait(timeout=max(0.01, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for run in self.running:  # what FRR leaves when killed
            shutil.rmtree(FRR_TMP / f"{run.daemon}.{run.proc.pid}", ignore_errors=True)
        self._keep_files()

    def _keep_files(self) -> None:
        """Replace ``<run dir>/routing`` (a link to the live directory) by a copy of configs and logs."""
        link = self.run_dir / "routing"
        if self.base.is_dir():
            if link.is_symlink():
                link.unlink()
            try:
                shutil.copytree(self.base, link, ignore=shutil.ignore_patterns("*.vty", "*.ctl", "*.api", "*.pid"),
                                dirs_exist_ok=True)
            except (OSError, shutil.Error):
                pass
            shutil.rmtree(self.base, ignore_errors=True)


def remove_leftovers(routing: dict) -> int:
    """What ``lasernet down`` removes of a run's daemons besides their processes: FRR's crash-log directories of
    the recorded PIDs and the run's daemon directory. Returns how many paths were removed."""
    from ...emulation.state import STATE_DIR

    removed = 0
    for entry in routing.get("processes", []):
        path = FRR_TMP / f"{entry.get('daemon')}.{entry.get('pid')}"
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    d = Path(routing.get("dir", ""))
    if d.is_dir() and d.parent == STATE_DIR:  # only a directory of ours
        shutil.rmtree(d, ignore_errors=True)
        removed += 1
    return removed
