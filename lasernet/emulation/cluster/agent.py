"""The lasernet host agent: one machine's :class:`~lasernet.emulation.host.LocalHost`, driven from afar by Ray.

On a cluster every machine runs one agent, a Ray actor pinned to that machine's Ray node (Ray's own
``node:<ip>`` resource), so that it runs there as the user who started ``ray start`` (root: lasernet needs
network namespaces). The agent holds that machine's share of the run: its routers, the halves of the links that
cross to other machines, routes, servers and daemons, built by the same bulk code as a one-machine run. It
takes the host messages (:mod:`lasernet.emulation.host`) as plain data through :meth:`HostAgent.call`, plus
what a coordinator needs of a machine it cannot reach by PID:

* processes inside its nodes (:meth:`popen` and :meth:`proc`, for probes, the workload, ``lasernet exec``);
* a UDP echo on its cluster address (:meth:`echo_port`) and a measurement of the one-way delay to the other
  machines' echoes, less what a round trip to its own echo costs (:meth:`measure`): the substrate the
  cross-machine links ride on, which the coordinator subtracts from their emulated delay;
* its own state file ``/run/lasernet/<run-id>-m<k>.json``, so that :func:`cleanup` (what ``lasernet down`` runs
  on each machine through Ray) removes exactly what this machine created, even after the coordinator or the
  agent was killed.

The actor is threaded (``max_concurrency``): a blocking read of a process's output does not hold up the tick.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import threading
import time

from .. import state as run_state
from ..host import LocalHost

#: Actor threads: a tick, a few blocking process reads, a measurement, at once.
MAX_CONCURRENCY = 16


class HostAgent:
    """One machine's host (see the module docstring); wrapped by ``ray.remote`` when a cluster run starts it."""

    def __init__(self, machine: int, bind_ip: str):
        self.machine, self.bind_ip = machine, bind_ip
        self.host: LocalHost | None = None
        self._procs: dict[int, subprocess.Popen] = {}
        self._next = 0
        self._lock = threading.Lock()
        self._echo: socket.socket | None = None

    # ------------------------------------------------------------------------------------------------ the host
    def create(self, run_id: str, coordinator_run_id: str, run_dir: str, scenario_name: str) -> dict:
        """Make this machine's host and its state file (``run_id`` is this machine's share's id)."""
        from pathlib import Path

        run_state.STATE_DIR.mkdir(parents=True, exist_ok=True)
        data = {"run_id": run_id, "cluster_of": coordinator_run_id, "machine": self.machine,
                "run_dir": run_dir, "scenario": scenario_name, "scenario_name": scenario_name,
                "driver": {"pid": os.getpid(), "start": None}, "nodes": {}, "links": {}, "backend": {},
                "clock": None, "created_utc": dt.datetime.now(dt.timezone.utc).isoformat()}
        state = run_state.RunState(run_state.STATE_DIR / f"{run_id}.json", data)
        state.save()
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        self.host = LocalHost(run_id, Path(run_dir), state, bind_ip=self.bind_ip,
                              files_tag="" if self.machine == 0 else f"-m{self.machine}")
        return {"pid": os.getpid(), "ip": self.bind_ip, "hostname": socket.gethostname()}

    def call(self, method: str, *args, **kwargs):
        """One host message (:mod:`lasernet.emulation.host`), its answer returned as it is."""
        with self._lock:  # the host is not thread-safe; processes and echoes are
            return getattr(self.host, method)(*args, **kwargs)

    def nodes(self) -> dict:
        """This machine's routers and servers: ``{name: {"pid", "ip", "index", "role"}}``."""
        out = {}
        for name, node in {**self.host.nodes, **self.host.servers}.items():
            out[name] = {"pid": node.pid, "ip": node.IP(), "index": node.index, "role": getattr(node, "role", "server")}
        return out

    @staticmethod
    def netem_available() -> bool:
        """Whether this machine's kernel can shape links with sch_netem."""
        from ..links import netem_available

        return netem_available()

    def release_late_s(self) -> float:
        """This machine's relays' mean release lateness (s; :meth:`DelaylineLinks.release_late_s`)."""
        late = getattr(self.host.backend, "release_late_s", None)
        return late() if late is not None else 0.0

    def links(self, node: str) -> str:
        """``ip -br link`` inside a node: its interfaces and whether each has a carrier."""
        return self._node(node).cmd("ip -br link")

    def stop(self) -> None:
        for proc in list(self._procs.values()):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self._procs.clear()
        if self._echo is not None:
            self._echo.close()
            self._echo = None
        if self.host is not None:
            with self._lock:
                self.host.stop()
            self.host = None

    # ------------------------------------------------------------------------------------------- processes
    def _node(self, name: str):
        node = self.host.nodes.get(name) or self.host.servers.get(name)
        if node is None:
            raise KeyError(f"no node {name!r} on machine {self.machine}")
        return node

    def cmd(self, node: str, command: str) -> str:
        """Run a shell command in a node's shell and return its output (Mininet's ``cmd``)."""
        with self._lock:
            return self._node(node).cmd(command)

    def popen(self, node: str, argv: list[str], kwargs: dict) -> tuple[int, int]:
        """Start ``argv`` inside a node; answers (handle, PID). ``kwargs`` are plain ``Popen`` options."""
        proc = self._node(node).popen(argv, **kwargs)
        with self._lock:
            self._next += 1
            self._procs[self._next] = proc  # in a node's namespace: teardown finds it there
        return self._next, proc.pid

    def proc(self, handle: int, op: str, *args):
        """An operation on a process started by :meth:`popen`: ``readline``/``read`` of ``stdout``/``stderr``,
        ``poll``, ``wait`` and ``communicate`` (with a timeout: answers ``{"timeout": True}`` when it passes),
        ``send_signal``, ``terminate``, ``kill``. Answers the result and the return code."""
        proc = self._procs[handle]
        try:
            if op in ("readline", "read"):
                stream = getattr(proc, args[0])
                result = getattr(stream, op)()
            elif op == "wait":
                result = proc.wait(timeout=args[0] if args else None)
            elif op == "communicate":
                result = proc.communicate(timeout=args[0] if args else None)
            elif op == "send_signal":
                result = proc.send_signal(args[0])
            elif op in ("poll", "terminate", "kill"):
                result = getattr(proc, op)()
            else:
                raise ValueError(f"unknown process operation {op!r}")
        except subprocess.TimeoutExpired:
            return {"timeout": True, "returncode": proc.returncode}
        return {"result": result, "returncode": proc.returncode}

    # ------------------------------------------------------------------------------------------- substrate
    def echo_port(self) -> int:
        """Start (once) a UDP echo on this machine's cluster address; answers its port."""
        if self._echo is None:
            self._echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._echo.bind((self.bind_ip, 0))
            threading.Thread(target=self._serve_echo, args=(self._echo,), daemon=True).start()
        return self._echo.getsockname()[1]

    @staticmethod
    def _serve_echo(sock: socket.socket) -> None:
        while True:
            try:
                data, peer = sock.recvfrom(2048)
                sock.sendto(data, peer)
            except OSError:
                return

    def measure(self, peers: dict, count: int = 100, gap_s: float = 0.005, timeout_s: float = 0.5) -> dict:
        """One-way delay to each peer machine's echo ``{machine: (ip, port)}`` (s), and the fraction lost.

        Each of ``count`` rounds times one UDP round trip to the peer's echo and, right after, one to this
        machine's own echo; the estimate is half the difference of the fastest of each. The echo's turnaround
        and both ends' wake-ups (user-space costs that frames between two halves do not pay: netem's halves
        never leave the kernel) are in both and cancel; what is left is the path between the machines (stacks,
        NICs, wire). The fastest, because load only ever adds to a round trip: under a loaded QEMU guest the
        median of paired differences came out at 1.07 ms for a 2 ms substrate, the fastest pair stays on it.
        The rounds are ``gap_s`` apart, so that they span half a second or more: a burst of load on the machine
        that covers every round makes even the fastest one slow (40 rounds back to back in a loaded guest came
        out 0.53 ms high). Never below 0.
        """
        out = {}
        mine = (self.bind_ip, self.echo_port())
        for machine, (ip, port) in peers.items():
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((self.bind_ip, 0))
            sock.settimeout(timeout_s)
            remotes, locals_, lost = [], [], 0
            try:
                for k in range(count):
                    remote = _round_trip_ns(sock, 2 * k, (ip, int(port)))
                    local = _round_trip_ns(sock, 2 * k + 1, mine)
                    if remote is None:
                        lost += 1
                    else:
                        remotes.append(remote)
                    if local is not None:
                        locals_.append(local)
                    time.sleep(gap_s)
            finally:
                sock.close()
            out[machine] = {"one_way_s": max(min(remotes) - min(locals_), 0) / 2e9 if remotes and locals_ else None,
                            "lost": lost / count}
        return out


def _round_trip_ns(sock: socket.socket, seq: int, to: tuple) -> int | None:
    """One UDP round trip of datagram ``seq`` to an echo (ns), or None if it did not come back in time."""
    tag = seq.to_bytes(4, "big")
    t0 = time.monotonic_ns()
    sock.sendto(tag, to)
    try:
        while True:
            data, _ = sock.recvfrom(64)
            if data == tag:
                return time.monotonic_ns() - t0
    except socket.timeout:
        return None


def node_exec(run_id: str, node: str, argv: list[str], timeout_s: float = 600.0) -> tuple[int, str, str]:
    """Run ``argv`` inside ``node``'s namespace on this machine, for ``lasernet exec``/``ping`` on a cluster run
    (``run_id``: this machine's share). ``vtysh``/``birdc`` get the node's daemon socket as on one machine.
    Answers (exit code, stdout, stderr)."""
    data = run_state.find_run(run_id)
    if data is None or node not in data.get("nodes", {}):
        return 2, "", f"lasernet: node {node!r} is not in run {run_id} on this machine\n"
    routing = data.get("routing") or {}
    argv = list(argv)
    if routing.get("dir") and argv and argv[0] == routing.get("shell"):
        from ...routing.daemons import make_shell_args

        argv[1:1] = make_shell_args(routing, node)
    proc = subprocess.run(["mnexec", "-a", str(data["nodes"][node]["pid"]), *argv], capture_output=True, text=True,
                          timeout=timeout_s)
    return proc.returncode, proc.stdout, proc.stderr


def cleanup(run_id: str) -> list[str]:
    """Remove what this machine's share of a run created (its state file's record); what ``lasernet down`` runs
    on each machine. Answers one line per thing removed (empty when nothing of it was left)."""
    data = run_state.find_run(run_id)
    if data is None:
        return []
    report = run_state.teardown(data, quiet=True)
    path = run_state.STATE_DIR / f"{run_id}.json"
    if path.exists():
        path.unlink()
    return [f"{k}: {v}" for k, v in report.items() if v] if isinstance(report, dict) else []
