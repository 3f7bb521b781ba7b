"""What every routing daemon is: a program with a configuration template, a command line and a control socket.

A :class:`Daemon` subclass (one per program, as IPMininet has them) knows its name, the template its
configuration is rendered from (``templates/<name>.conf.j2``, Jinja2, with the node's :class:`NodeSpec`, the
scenario's routing config and the node's directory; a daemon that configures links by name keeps one link's
text in a macro of ``templates/<name>.link.j2``, which also yields the commands for a link made after start),
the command line that runs it in the foreground with
everything (config, PID file, sockets, log) in the node's own directory, the control socket whose existence means
it is up, and what it leaves behind when killed (:meth:`Daemon.leftovers`). The specs are what the emulation tells
the daemons about a router: its loopback, its link ends (interface, peer, metric), its LANs, and whether it may
relay (a station with ``transit: false`` is configured as a stub in each protocol's own way: see the templates).

A started daemon is a :class:`Running`. Start-up is health-checked (:func:`wait_ready`): a daemon counts as
started when its control socket exists while its process still runs; one that exits, or does not come up within
``START_TIMEOUT_S``, raises :class:`RoutingDaemonError`, one line naming the node and the daemon with the tail of
its log. :func:`stop_processes` stops them: SIGTERM, a grace period, SIGKILL.
"""

from __future__ import annotations

import dataclasses
import functools
import signal
import subprocess
import time
from pathlib import Path

import jinja2

from ...spec.routing import RoutingConfig

TEMPLATES = Path(__file__).resolve().parent / "templates"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
LOG_TAIL_LINES = 6


@functools.cache
def environment() -> jinja2.Environment:
    """The Jinja2 environment of the templates; a variable a template uses but is not given is an error."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), trim_blocks=True, lstrip_blocks=True,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def link_macros(daemon: str):
    """The macros of ``templates/<daemon>.link.j2`` (one link's configuration text), as callables."""
    return environment().get_template(f"{daemon}.link.j2").module


def commands(text: str) -> list[str]:
    """Configuration text as shell commands, one a line (vtysh ``-c``: the indentation is only for reading)."""
    return [line.strip() for line in text.splitlines() if line.strip()]


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
    transit: bool = True  # False: a stub station, configured so that no route passes through it


class Daemon:
    """One routing daemon program (see the module docstring); subclasses set the class attributes."""

    name = ""
    template = ""
    ready_name = ""  # control socket in the node's directory

    def config(self, env, node: NodeSpec, cfg: RoutingConfig, d: Path, scenario: str) -> str:
        """The configuration text for ``node``, rendered from the daemon's template."""
        return env.get_template(self.template).render(node=node, cfg=cfg, dir=str(d), scenario=scenario,
                                                      **self.extra(node, cfg))

    def extra(self, node: NodeSpec, cfg: RoutingConfig) -> dict:
        """Template variables of this daemon besides node, cfg, dir and scenario."""
        return {}

    def argv(self, d: Path) -> list[str]:
        """The command line that runs the daemon in the foreground with its files in the node directory ``d``."""
        raise NotImplementedError

    def log(self, d: Path) -> Path:
        return d / f"{self.name}.log"

    def link_commands(self, cfg: RoutingConfig, link: LinkSpec, node: NodeSpec | None, plan) -> list[str] | None:
        """Shell commands that configure a link created after start; None when the configuration covers it."""
        return None

    def leftovers(self, pid: int) -> list[Path]:
        """Paths outside its node directory that the daemon's process ``pid`` leaves when killed."""
        return []


@dataclasses.dataclass
class Running:
    """One started daemon process in one node."""

    node: str
    daemon: str  # the daemon's name
    proc: subprocess.Popen
    ready: Path  # the control socket that exists once the daemon runs
    out: Path  # its stdout/stderr
    log: Path

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last non-empty lines of its output and log, joined by `` | ``."""
        text = []
        for path in (self.out, self.log):
            try:
                text += [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
            except OSError:
                continue
        return " | ".join(text[-lines:]) or "(its log is empty)"


def spawn(node, daemon: Daemon, d: Path) -> Running:
    """Start ``daemon`` in the namespace of ``node`` (a Mininet node: ``node.popen``), output to ``d``."""
    out = d / f"{daemon.name}.out"
    with out.open("w") as f:
        proc = node.popen(daemon.argv(d), stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
    return Running(node.name, daemon.name, proc, d / daemon.ready_name, out, daemon.log(d))


def wait_ready(stage: list[Running], timeout_s: float = START_TIMEOUT_S) -> None:
    """Wait until every daemon of ``stage`` has opened its control socket; RoutingDaemonError if one exits first
    or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    pending = list(stage)
    while pending:
        for run in list(pending):
            code = run.proc.poll()
            if code is not None:
                time.sleep(0.1)  # let it finish writing its log
                raise RoutingDaemonError(f"{run.node}: {run.daemon} did not start (exit code {code}); its log "
                                         f"ends: {run.tail()}")
            if run.ready.exists():
                pending.remove(run)
        if pending and time.monotonic() > deadline:
            run = pending[0]
            raise RoutingDaemonError(f"{run.node}: {run.daemon} did not open {run.ready.name} within "
                                     f"{timeout_s:g} s ({len(pending)} daemons late); its log ends: {run.tail()}")
        if pending:
            time.sleep(0.02)


def stop_processes(procs: list[subprocess.Popen], grace_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM every process, SIGKILL those still running after ``grace_s``; each is waited for (reaped)."""
    for proc in procs:
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.01, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
