"""The routing daemons of one emulation run: a suite's daemons on every router, started, watched and stopped.

A :class:`DaemonSet` runs the scenario's ``routing:`` protocol (:mod:`lasernet.spec.routing`) on every router
of an emulation. For each node it writes the daemons' configurations (:meth:`Daemon.config`) into the node's own
directory ``/run/lasernet/<run-id>/<node>/``, which also holds its sockets, PID files and logs (Unix socket paths
must stay under 108 bytes, so not the run directory; ``<run dir>/routing`` links there while the run is up and
becomes a copy of it when the run ends; on a cluster, machine ``k`` > 0 uses ``routing-m<k>``, since machines
may share one run directory). Every daemon is started in the node's network namespace (``mnexec -da
<pid>``, the way Mininet's ``popen`` does), in the foreground, so that its PID is the process we started; PIDs
and start times go to the run's state file, so ``lasernet down`` removes them even after a crash
(:func:`~lasernet.routing.daemons.leftovers.remove_leftovers` removes what they leave).

Every configuration file is written readable by root and the daemons' own user only (mode 0600), since with
``auth:`` it holds the routers' key; a link created after start is configured from a command file of the same
mode (``vtysh -f``) rather than command-line arguments, which any local user can read in ``/proc``. The key is
replaced by ``********`` wherever it could leave those files: the copy kept in the run directory, and every error
message (which quotes daemons' logs and configuration lines).

Daemons start stage by stage in the suite's order (zebra everywhere first) and each stage is health-checked
(:func:`~lasernet.routing.daemons.base.wait_ready`); FRR daemons that keep running with a configuration line
they rejected are caught from their output. Errors are :class:`RoutingDaemonError`, one line with paths where
the files are kept after the run; the caller tears everything down.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

from ...net.procs import RUN_ROOT, start_time
from ...spec.routing import RoutingConfig
from .base import Daemon, LinkSpec, NodeSpec, Running, RoutingDaemonError, environment, spawn, stop_processes, \
    wait_ready
from .bgp_plan import BgpPlan
from .suite import make_suite

CONFIG_READ_S = 0.5
HIDDEN = "********"  # what the routers' key reads as outside the daemons' own files

ConfigHook = Callable[[str, str, str], str]  # (node, daemon, config text) -> config text; for tests


class DaemonSet:
    """The routing daemons of one emulation run (see the module docstring)."""

    def __init__(self, cfg: RoutingConfig, run_id: str, run_dir: Path, scenario_name: str, state=None,
                 config_hook: ConfigHook | None = None, base_dir: Path | None = None, files_name: str = "routing"):
        self.cfg, self.run_id, self.run_dir, self.scenario_name = cfg, run_id, Path(run_dir), scenario_name
        self.files = self.run_dir / files_name  # the link to the live directory, then the copy kept
        self.suite = make_suite(cfg)
        self.base = Path(base_dir or RUN_ROOT) / run_id
        self.state = state
        self.config_hook = config_hook
        self.running: list[Running] = []
        self.nodes: dict[str, object] = {}  # name -> Router
        self.specs: dict[str, NodeSpec] = {}
        self._programs: dict[str, Daemon] = {d.name: d for d in self.suite.daemons}
        self._helpers: list[subprocess.Popen] = []  # vtysh runs configuring links made after start
        self._commands = 0  # command files written for them (with a key)
        self._stopped = False
        self.bgp: BgpPlan | None = None
        self._reported: list[Running] = []

    def node_dir(self, name: str) -> Path:
        return self.base / name

    # ---------------------------------------------------------------------------------------------- start
    def start(self, nodes: dict, specs: dict[str, NodeSpec], n_satellites: int = 0, residency=(),
              lans=None) -> None:
        """Write every node's configs, start its daemons (dependency order) and wait until all are up.
        BGP also takes the residency rules (``[(name, member names, allowed names)]``) and every node's server
        LANs by name (``lans``; default: those of ``specs``)."""
        self.nodes, self.specs = nodes, specs
        if self.cfg.protocol == "bgp":
            if lans is None:
                lans = {name: spec.lan_prefixes for name, spec in specs.items()}
            self.bgp = BgpPlan(self.cfg, list(specs), n_satellites, self.scenario_name,
                               stubs=[name for name, spec in specs.items() if not spec.transit],
                               residency=residency, lans=lans)
            for spec in specs.values():
                spec.bgp = self.bgp.node(spec)
        env = environment()
        self.base.mkdir(parents=True, exist_ok=True)
        if self.state is not None:
            self.state.data["routing"] = {"protocol": self.cfg.protocol, "daemon": self.cfg.daemon,
                                          "dir": str(self.base), "shell": self.suite.shell, "processes": []}
            self.state.save()
        link = self.files
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
                write_private(d / f"{daemon.name}.conf", text)
            if owner is not None:
                for path in [d, *d.iterdir()]:
                    os.chown(path, owner.pw_uid, owner.pw_gid)
        os.chmod(self.base, 0o755)
        for daemon in self.suite.daemons:  # stage by stage: zebra everywhere first
            stage = [self._spawn(name, daemon) for name in specs]
            if self.state is not None:
                self.state.save()
            try:
                wait_ready(stage)
            except RoutingDaemonError as err:
                raise self._error(str(err)) from None
        self._check_configs()

    def _spawn(self, name: str, daemon: Daemon) -> Running:
        run = spawn(self.nodes[name], daemon, self.node_dir(name))
        self.running.append(run)
        if self.state is not None:
            self.state.data["routing"]["processes"].append({"node": name, "daemon": daemon.name, "pid": run.proc.pid,
                                                            "start": start_time(run.proc.pid)})
        return run

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

    def _error(self, message: str) -> RoutingDaemonError:
        """The error, with paths pointing where the files are kept after the run (``<run dir>/routing``) and the
        routers' key hidden (a rejected configuration line may hold it)."""
        return RoutingDaemonError(self.hide(message.replace(str(self.base), str(self.files))))

    def hide(self, text: str) -> str:
        """``text`` with the routers' key replaced by ``HIDDEN``."""
        return text.replace(self.cfg.auth_key, HIDDEN) if self.cfg.auth_key else text

    # ---------------------------------------------------------------------------------------------- health
    def report_exits(self) -> list[str]:
        """Log (once each) the daemons that have exited since they started; return their one-line reports."""
        reports = []
        for run in self.running:
            if run.proc.poll() is not None and run not in self._reported:
                self._reported.append(run)
                text = self.hide(f"{run.node}: {run.daemon} exited (code {run.proc.returncode}); its log ends: "
                                 f"{run.tail()}")
                logging.getLogger("lasernet").error("%s", text)
                reports.append(text)
        return reports

    def check(self) -> None:
        """Raise RoutingDaemonError if any daemon has exited since it started."""
        for run in self.running:
            code = run.proc.poll()
            if code is not None:
                raise self._error(f"{run.node}: {run.daemon} exited (code {code}); its log ends: {run.tail()}")

    # ---------------------------------------------------------------------------------------------- runtime
    def link_added(self, node: str, link: LinkSpec) -> None:
        """A link created after start: configure it in the node's daemons if the suite needs that (FRR)."""
        commands = self.suite.link_commands(self.cfg, link, self.specs.get(node), self.bgp)
        if not commands or node not in self.nodes:
            return
        if self.config_hook is not None:  # a test's hook sees every configuration text a daemon is given
            commands = [c.strip() for c in self.config_hook(node, self.suite.protocol.name,
                                                            "\n".join(commands)).splitlines() if c.strip()]
        argv = [self.suite.shell, *self.suite.shell_args(self.node_dir(node))]
        if self.cfg.auth_key:  # the key must not be on a command line: vtysh reads the lines from a private file
            self._commands += 1
            path = self.node_dir(node) / f"link-{self._commands}.vtysh"
            write_private(path, "\n".join(c for c in commands if c != "configure terminal") + "\n")
            if self.suite.owner:
                owner = pwd.getpwnam(self.suite.owner)
                os.chown(path, owner.pw_uid, owner.pw_gid)
            argv += ["-f", str(path)]
        else:
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
        stop_processes([p for p in self._helpers if p.poll() is None] + [r.proc for r in self.running])
        for run in self.running:  # what a daemon leaves when killed
            for path in self._programs[run.daemon].leftovers(run.proc.pid):
                shutil.rmtree(path, ignore_errors=True)
        self._keep_files()

    def _keep_files(self) -> None:
        """Replace ``<run dir>/routing`` (a link to the live directory) by a copy of configs and logs."""
        link = self.files
        if self.base.is_dir():
            if link.is_symlink():
                link.unlink()
            try:
                shutil.copytree(self.base, link, ignore=shutil.ignore_patterns("*.vty", "*.ctl", "*.api", "*.pid"),
                                dirs_exist_ok=True)
            except (OSError, shutil.Error):
                pass
            if self.cfg.auth_key:  # the run directory is the user's to read and share: no key in it
                for path in link.rglob("*"):
                    if path.is_file() and not path.is_symlink():
                        try:
                            data = path.read_bytes()
                            if self.cfg.auth_key.encode() in data:
                                path.write_bytes(data.replace(self.cfg.auth_key.encode(), HIDDEN.encode()))
                        except OSError:
                            pass
            shutil.rmtree(self.base, ignore_errors=True)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable and writable by its owner only (0600), from the first byte on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
    with os.fdopen(fd, "w") as f:
        f.write(text)
