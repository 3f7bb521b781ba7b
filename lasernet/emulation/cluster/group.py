"""The coordinator's side of a cluster run: one host interface over the agents of several machines.

:class:`HostGroup` offers the coordinator exactly the messages of one :class:`~lasernet.emulation.host.LocalHost`
(:mod:`lasernet.emulation.host`), and fans each out to the machines it concerns, through Ray actor calls to
their :class:`~lasernet.emulation.cluster.agent.HostAgent`\\ s, in parallel:

* a router lives on one machine (:mod:`lasernet.emulation.cluster.placement`); its start-up, its route items and its
  processes go there;
* a link goes to the machine(s) of its two ends. A link whose ends are on two machines is made in two halves,
  one on each (``add_links`` answers each half's UDP port, ``connect_links`` aims each at the other), and gets
  every state change on both, so that both ends show NO-CARRIER when it is down. With the delay line a half is
  a TAP and a UDP socket in the machine's relay; with netem it is a veth end shaped by netem, bridged to a
  kernel VXLAN device (:class:`~lasernet.emulation.links.NetemLinks`). ``auto`` picks netem only if every
  machine's kernel has it (:meth:`HostGroup.choose_links`);
* **one message per machine per tick**: ``apply``, ``install_routes`` and ``power`` are held and sent with
  :meth:`flush` at the end of the tick as one ``step`` per machine carrying only that machine's changes (new
  links, link states, route items, the power items of the servers of its routers), and each machine answers with
  what its kernel took and how long that took there (``apply_s``, recorded per machine in ``ticks.csv``). The
  answers are collected at the next tick: a machine applies its message on arrival, so the tick need not wait
  for the slowest machine;
* **substrate compensation**: each machine's agent measures the one-way delay to every other machine's UDP echo
  at start and every :data:`MEASURE_EVERY_S` seconds (in the background, collected when ready); the halves of
  each cross-machine link take that off the delay they apply. A link whose emulated delay is below the
  substrate's cannot be emulated faithfully: it is counted and named in ``summary.json`` (never silently fast).

A machine whose agent dies (or whose Ray node is lost) fails the next call with :class:`MachineLost`, naming the
machine; the coordinator then stops the run and the other machines clean up.
"""

from __future__ import annotations

import logging
import subprocess
import time

import numpy as np

from ...errors import LasernetError
from ..links import BackendUnavailable

log = logging.getLogger("lasernet")

#: Seconds (wall) between two measurements of the substrate's one-way delays.
MEASURE_EVERY_S = 60.0


class MachineLost(LasernetError):
    """A machine of the cluster stopped answering (its agent died, or its Ray node was lost)."""


def _ray():
    import ray

    return ray


class RemoteProcess:
    """A process inside a node on another machine, with the parts of ``subprocess.Popen`` lasernet uses."""

    class _Stream:
        def __init__(self, proc: "RemoteProcess", name: str):
            self.proc, self.name = proc, name

        def readline(self) -> str:
            return self.proc._op("readline", self.name)["result"]

        def read(self) -> str:
            return self.proc._op("read", self.name)["result"]

    def __init__(self, group: "HostGroup", machine: int, handle: int, pid: int, args):
        self.group, self.machine, self.handle, self.pid, self.args = group, machine, handle, pid, args
        self.returncode = None
        self.stdout, self.stderr = self._Stream(self, "stdout"), self._Stream(self, "stderr")

    def _op(self, op: str, *args) -> dict:
        answer = self.group.call_machine(self.machine, "proc", self.handle, op, *args)
        self.returncode = answer["returncode"]
        return answer

    def poll(self):
        return self._op("poll")["result"]

    def wait(self, timeout: float | None = None):
        answer = self._op("wait", timeout)
        if answer.get("timeout"):
            raise subprocess.TimeoutExpired(self.args, timeout)
        return answer["result"]

    def communicate(self, timeout: float | None = None):
        answer = self._op("communicate", timeout)
        if answer.get("timeout"):
            raise subprocess.TimeoutExpired(self.args, timeout)
        return tuple(answer["result"])

    def send_signal(self, sig) -> None:
        self._op("send_signal", int(sig))

    def terminate(self) -> None:
        self._op("terminate")

    def kill(self) -> None:
        self._op("kill")


class RemoteNode:
    """A router or server on another machine: ``name``, ``pid`` (on its machine), ``IP()``, ``cmd()``, ``popen()``."""

    def __init__(self, group: "HostGroup", machine: int, name: str, info: dict):
        self.group, self.machine, self.name = group, machine, name
        self.pid, self.index, self.role, self._ip = info["pid"], info["index"], info["role"], info["ip"]

    def IP(self, intf=None) -> str:  # noqa: N802 (Mininet's name)
        return self._ip

    def cmd(self, *args) -> str:
        return self.group.call_machine(self.machine, "cmd", self.name, " ".join(str(a) for a in args))

    def popen(self, argv, **kwargs) -> RemoteProcess:
        plain = {k: v for k, v in kwargs.items() if k in ("stdin", "stdout", "stderr", "text", "cwd", "env")}
        if "cwd" in plain:
            plain["cwd"] = str(plain["cwd"])
        unsupported = set(kwargs) - set(plain)
        if unsupported or any(not isinstance(plain.get(k, -1), int) for k in ("stdin", "stdout", "stderr")):
            raise ValueError(f"popen on {self.name} (machine {self.machine}): only pipes and DEVNULL cross "
                             f"machines, not {sorted(unsupported) or 'file objects'}")
        handle, pid = self.group.call_machine(self.machine, "popen", self.name, [str(a) for a in argv], plain)
        return RemoteProcess(self.group, self.machine, handle, pid, argv)

    def __repr__(self) -> str:
        return f"<RemoteNode {self.name} on machine {self.machine}>"


class HostGroup:
    """The hosts of a cluster run behind one host interface (see the module docstring)."""

    def __init__(self, agents: list, machines: list[dict], placement, run_ids: list[str], state=None):
        self.stop_timings: dict[str, float] = {}  # as a local Host's (phases of stop(); none measured here)
        self.agents, self.machines, self.placement, self.run_ids = agents, machines, placement, run_ids
        self.state = state  # the coordinator's state file: where each node is, for lasernet nodes/exec/ping
        self.n = len(agents)
        self.node_names: tuple[str, ...] = ()
        self.nodes: dict = {}
        self.servers: dict = {}
        self.net = None  # no Mininet network spans machines (no --cli)
        self.backend = None
        self.daemons = None
        self._link_machines = np.zeros((0, 2), np.int64)  # by slot: machine of end a, end b
        self._pending: list[dict] = [dict() for _ in agents]
        self._inflight = None  # (refs, machines) of the step message sent and not yet answered
        self.apply_s = np.zeros(len(agents))  # the last step's time on each machine
        self.substrate_s = np.zeros((len(agents), len(agents)))  # one-way delay between machines
        self.substrate_history: list[dict] = []
        self.below_substrate: dict[int, float] = {}  # slot -> emulated delay below the substrate's (s)
        self._measuring = None
        self._measured_at = -np.inf
        self._echo_ports: list[int] = []
        self.bytes_sent = np.zeros(len(agents))  # message bytes sent per machine over the run
        self.unapplied_max = np.zeros(len(agents), np.int64)  # most link generations a machine's relays lagged
        self.watching_fibs = False  # with watch_fibs: every machine gets a step each tick, answering its FIB changes
        self._fib_batches: list[tuple[float, list]] = []  # (wall_s, changes) from the machines, not yet taken

    # ---------------------------------------------------------------------------------------------- calls
    def _get(self, refs, machines):
        ray = _ray()
        try:
            return ray.get(refs)
        except ray.exceptions.RayTaskError as exc:  # a message failed on a machine: its own error, one line
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception) and type(cause).__module__.startswith("lasernet."):
                raise cause from None  # e.g. RoutingDaemonError, LasernetError: what a local run raises
            raise
        except ray.exceptions.RayActorError:
            machines = list(machines)
            lost = "?"
            for m, ref in zip(machines, refs if isinstance(refs, list) else [refs]):
                try:
                    ray.get(ref, timeout=5)
                except ray.exceptions.RayActorError:
                    lost = f"m{m} ({self.machines[m]['ip']})"
                    break
                except Exception:
                    continue
            raise MachineLost(f"cluster machine {lost} stopped answering (its lasernet agent died or its Ray node "
                              f"was lost); the run stopped and every machine was cleaned") from None

    def call_machine(self, m: int, method: str, *args):
        """Call an agent method on machine ``m`` and wait for the answer."""
        return self._get(getattr(self.agents[m], method).remote(*args), [m])

    def _all(self, method: str, per_machine, machines=None):
        """Call host message ``method`` on ``machines`` (default all), ``per_machine(m)`` its (args, kwargs)."""
        machines = list(range(self.n)) if machines is None else list(machines)
        refs = []
        for m in machines:
            args, kwargs = per_machine(m)
            refs.append(self.agents[m].call.remote(method, *args, **kwargs))
        return dict(zip(machines, self._get(refs, machines)))

    # ---------------------------------------------------------------------------------------------- start-up
    def open(self, n_nodes: int, keep_awake: bool) -> dict:
        share = self.placement.share(self.n)
        answers = self._all("open", lambda m: ((int(share[m]), keep_awake), {}))
        return {"pid": answers[0]["pid"]}

    def start_nodes(self, names: list[str], roles: list[str]) -> dict:
        self.node_names = tuple(names)
        machine = self.placement.machine
        self._all("start_nodes", lambda m: ((names, roles), {"mine": np.flatnonzero(machine == m).tolist()}))
        self._refresh_nodes()
        return {"pids": [self.nodes[name].pid for name in names]}

    def _refresh_nodes(self) -> None:
        infos = self._get([agent.nodes.remote() for agent in self.agents], range(self.n))
        self.nodes, self.servers = {}, {}
        for m, info in enumerate(infos):
            for name, node in info.items():
                target = self.servers if node["role"] == "server" else self.nodes
                target[name] = RemoteNode(self, m, name, node)
        self.nodes = {name: self.nodes[name] for name in self.node_names if name in self.nodes}
        if self.state is not None and "cluster" in self.state.data:
            from ...addressing import loopback_ip

            listed = {name: {"machine": node.machine, "pid": node.pid, "role": node.role, "index": node.index,
                             "loopback": loopback_ip(node.index) if node.role != "server" else node.IP()}
                      for name, node in {**self.nodes, **self.servers}.items()}
            self.state.data["cluster"]["nodes"] = listed
            self.state.save()

    def configure_nodes(self, sysctls: list[str]) -> int:
        return sum(self._all("configure_nodes", lambda m: ((sysctls,), {})).values())

    def choose_links(self, kind: str) -> str:
        """The link backend for every machine: ``auto`` is netem if every machine's kernel has it, else the
        delay line; ``netem`` needs it on every machine (one line naming the first that lacks it)."""
        if kind == "delayline":
            return kind
        can = self._get([agent.netem_available.remote() for agent in self.agents], range(self.n))
        lacking = [m for m in range(self.n) if not can[m]]
        if kind == "netem" and lacking:
            m = lacking[0]
            raise BackendUnavailable(f"--links netem: cluster machine m{m} ({self.machines[m]['ip']}) cannot make "
                                     f"a netem qdisc (no sch_netem); use --links delayline (or auto)")
        return "delayline" if lacking else "netem"

    def start_links(self, kind: str, seed: int, n_slots: int, pin_helpers: bool = False) -> dict:
        answers = self._all("start_links", lambda m: ((kind, seed, n_slots), {"pin_helpers": pin_helpers}))
        self._echo_ports = self._get([agent.echo_port.remote() for agent in self.agents], range(self.n))
        self.measure_substrate(wait=True)
        return answers[0]

    def add_servers(self, servers: list[dict]) -> dict:
        machine = self.placement.machine
        self._all("add_servers", lambda m: ([s for s in servers if machine[int(s["router"])] == m],), {})
        self._refresh_nodes()
        return {"servers": list(self.servers)}

    def start_daemons(self, routing, scenario_name: str, n_satellites: int, costs, stubs=(), residency=(),
                      lans=None) -> dict:
        answers = self._all("start_daemons", lambda m: ((routing, scenario_name, n_satellites, costs, stubs),
                                                        {"residency": residency, "lans": lans}))
        return {"daemons": sum(a["daemons"] for a in answers.values())}

    def watch_fibs(self) -> dict:
        """Every machine reads its own routers' FIBs; their changes come back with each tick's answers
        (:meth:`take_fib`)."""
        answers = self._all("watch_fibs", lambda m: ((), {}))
        self.watching_fibs = True
        return {"routers": sum(a["routers"] for a in answers.values())}

    def take_fib(self) -> list[tuple[float, list]]:
        """The FIB changes the machines answered since the last call, ``(wall_s, changes)`` in time order."""
        out, self._fib_batches = sorted(self._fib_batches, key=lambda b: b[0]), []
        return out

    # ---------------------------------------------------------------------------------------------- links
    def add_links(self, links, costs=None, bulk: bool = False) -> dict:
        """Create links on the machines of their ends (two halves for a cross-machine link), then join halves."""
        if not links:
            return {"created": 0, "ports": {}}
        self.flush(wait=True)  # what was held for this tick goes first, and is applied before the links come
        machine = self.placement.machine
        ends = np.array([(machine[link.a], machine[link.b]) for link in links], np.int64)
        top = max(link.slot for link in links) + 1
        if top > len(self._link_machines):
            grown = np.full((max(top, 2 * len(self._link_machines)), 2), -1, np.int64)
            grown[:len(self._link_machines)] = self._link_machines
            self._link_machines = grown
        for link, (ma, mb) in zip(links, ends):
            self._link_machines[link.slot] = (ma, mb)

        def share(m):
            pick = [k for k, (ma, mb) in enumerate(ends) if m in (ma, mb)]
            return (([links[k] for k in pick], None if costs is None else [costs[k] for k in pick]),
                    {"bulk": bulk})

        machines = sorted(set(ends.ravel().tolist()))
        answers = self._all("add_links", share, machines)
        peers: dict[int, dict] = {}
        for link, (ma, mb) in zip(links, ends):
            if ma != mb:
                peers.setdefault(int(ma), {})[link.slot] = (self.machines[mb]["ip"], answers[mb]["ports"][link.slot])
                peers.setdefault(int(mb), {})[link.slot] = (self.machines[ma]["ip"], answers[ma]["ports"][link.slot])
        if peers:
            self._all("connect_links", lambda m: ((peers[m],), {}), sorted(peers))
            self._send_substrate(sorted(peers))
        return {"created": len(links), "ports": {}}

    def cross_slots(self) -> np.ndarray:
        lm = self._link_machines
        return np.flatnonzero((lm[:, 0] >= 0) & (lm[:, 0] != lm[:, 1]))

    def apply(self, slots, up, delay_s, loss, rate_bps) -> int:
        """Hold each machine's share of the link states for :meth:`flush` (the newest state of a slot wins)."""
        slots = np.asarray(slots, np.int64)
        lm = self._link_machines[slots]
        cross = lm[:, 0] != lm[:, 1]
        if cross.any():
            sub = self.substrate_s[lm[cross, 0], lm[cross, 1]]
            d = np.asarray(delay_s)[cross]
            below = (d < sub[:, None]).any(axis=1) & np.asarray(up)[cross].any(axis=1)
            for slot, dd, ss in zip(slots[cross][below], d[below].min(axis=1), sub[below]):
                self.below_substrate[int(slot)] = float(ss - dd)
        for m in range(self.n):
            pick = (lm[:, 0] == m) | (lm[:, 1] == m)
            if pick.any():
                held = self._pending[m].setdefault("apply", [])
                held.append(tuple(np.asarray(x)[pick] for x in (slots, up, delay_s, loss, rate_bps)))
        return len(slots)

    def install_routes(self, items) -> int:
        """Hold each route item for the machine of its router, for :meth:`flush`."""
        machine = self.placement.machine
        for item in items:
            self._pending[int(machine[item[1]])].setdefault("routes", []).append(item)
        return 0

    def power(self, items) -> dict:
        """Hold each server power item ``(name, factor, restart)`` for the machine of its router, for :meth:`flush`."""
        for item in items:
            self._pending[self.servers[item[0]].machine].setdefault("power", []).append(tuple(item))
        return {"applied": len(items), "killed": 0}

    def flush(self, wait: bool = False) -> dict:
        """Send every machine its held changes as one ``step`` message, without waiting for the answers: they
        are collected at the next flush (a machine applies its message as soon as it arrives, so waiting would
        only add the round trip and the slowest machine's apply time to the tick). Returns the answers of the
        message before (``wait``: of this one too). A machine still busy with the last message is waited for
        first, so messages are applied in order."""
        answers = self._collect()
        refs, machines = [], []
        for m, held in enumerate(self._pending):
            if not held and not self.watching_fibs:
                continue
            apply = None
            if held.get("apply"):
                parts = held["apply"]
                apply = parts[0] if len(parts) == 1 else tuple(np.concatenate([p[k] for p in parts])
                                                               for k in range(5))
            kwargs = {"apply": apply, "routes": held.get("routes", ()), "power": held.get("power", ())}
            self.bytes_sent[m] += _payload_bytes(kwargs)
            refs.append(self.agents[m].call.remote("step", **kwargs))
            machines.append(m)
        self._pending = [dict() for _ in self.agents]
        if refs:
            self._inflight = (refs, machines)
        if wait:
            answers.update(self._collect())
        self._collect_substrate()
        return answers

    def _collect(self) -> dict:
        """The answers of the step message in flight (waiting for it if need be); records each machine's time."""
        if self._inflight is None:
            return {}
        refs, machines = self._inflight
        self._inflight = None
        answers = dict(zip(machines, self._get(refs, machines)))
        self.apply_s[:] = 0.0
        for m, answer in answers.items():
            self.apply_s[m] = answer["apply_s"]
            self.unapplied_max[m] = max(self.unapplied_max[m], answer.get("unapplied_generations", 0))
            self._fib_batches.extend(answer.get("fib", ()))
        return answers

    # ---------------------------------------------------------------------------------------------- substrate
    def measure_substrate(self, wait: bool = False) -> None:
        """Start measuring every machine's one-way delay to the others (``wait``: and take the result now)."""
        peers = {m: (self.machines[m]["ip"], self._echo_ports[m]) for m in range(self.n)}
        self._measuring = [agent.measure.remote({k: v for k, v in peers.items() if k != m})
                           for m, agent in enumerate(self.agents)]
        self._measured_at = time.monotonic()
        if wait:
            self._collect_substrate(block=True)

    def _collect_substrate(self, block: bool = False) -> None:
        ray = _ray()
        if self._measuring is None:
            if time.monotonic() - self._measured_at >= MEASURE_EVERY_S and self.n > 1:
                self.measure_substrate()
            return
        if not block:
            ready, _ = ray.wait(self._measuring, num_returns=len(self._measuring), timeout=0)
            if len(ready) < len(self._measuring):
                return
        results = self._get(self._measuring, range(self.n))
        self._measuring = None
        sub = np.zeros((self.n, self.n))
        for m, res in enumerate(results):
            for peer, r in res.items():
                sub[m, int(peer)] = r["one_way_s"] if r["one_way_s"] is not None else np.nan
        sub = np.where(np.isnan(sub), sub.T, sub)
        # Both ends measure the same thing, half the round trip between them, each as the fastest of its probes;
        # load only adds to a round trip, so the lower of the two is the closer to the substrate's own delay.
        self.substrate_s = np.nan_to_num(np.minimum(sub, sub.T))
        self.substrate_history.append({"wall_s": time.time(), "one_way_ms": (self.substrate_s * 1e3).round(4).tolist()})
        self._send_substrate(range(self.n))

    def _send_substrate(self, machines) -> None:
        cross = self.cross_slots()
        if not len(cross):
            return
        lm = self._link_machines[cross]
        one_way = self.substrate_s[lm[:, 0], lm[:, 1]]
        self._all("set_substrate", lambda m: ((cross[(lm == m).any(axis=1)], one_way[(lm == m).any(axis=1)]), {}),
                  [m for m in machines if (lm == m).any()])

    def release_late_s(self) -> list[float]:
        """Each machine's relays' mean release lateness (s): the substrate's cost per hop there."""
        return self._get([agent.release_late_s.remote() for agent in self.agents], range(self.n))

    def summary(self) -> dict:
        """The cluster's part of ``summary.json``."""
        cross = self.cross_slots()
        return {"machines": [{"name": f"m{m}", "ip": self.machines[m]["ip"], "run_id": self.run_ids[m],
                              "routers": int(self.placement.share(self.n)[m]),
                              "bytes_sent": int(self.bytes_sent[m]),
                              "most_unapplied_link_generations": int(self.unapplied_max[m])} for m in range(self.n)],
                "cross_machine_links": int(len(cross)),
                "substrate_one_way_ms": (self.substrate_s * 1e3).round(4).tolist(),
                "substrate_measurements": len(self.substrate_history),
                "below_substrate_links": len(self.below_substrate),
                "below_substrate_worst_ms": round(max(self.below_substrate.values(), default=0.0) * 1e3, 4)}

    # ---------------------------------------------------------------------------------------------- daemons, end
    def daemon_exits(self) -> list[str]:
        return [line for lines in self._all("daemon_exits", lambda m: ((), {})).values() for line in lines]

    def check_daemons(self) -> None:
        self._all("check_daemons", lambda m: ((), {}))

    def stop_daemons(self) -> None:
        """Stop every machine's daemons; a machine that does not answer is left to :meth:`stop` (never raises:
        this runs while a run that lost a machine is being taken down)."""
        ray = _ray()
        refs = [agent.call.remote("stop_daemons") for agent in self.agents]
        for m, ref in enumerate(refs):
            try:
                ray.get(ref, timeout=60)
            except Exception as exc:
                log.debug("cluster machine m%d: stopping its daemons failed (%s)", m, type(exc).__name__)

    def stop(self) -> None:
        """Every machine removes what it created; a lost machine is reported, the others still clean up."""
        if not self.agents:
            return
        ray = _ray()
        try:
            self._collect()
        except MachineLost:
            pass  # each machine is stopped (or cleaned) below
        refs = [agent.stop.remote() for agent in self.agents]
        for m, ref in enumerate(refs):
            try:
                ray.get(ref, timeout=120)
            except Exception:  # its agent is gone: clean its share from its state file there, by a Ray task
                self._clean_machine(m)
        for agent in self.agents:
            try:
                ray.kill(agent)
            except Exception:
                pass
        self.agents = []


    def _clean_machine(self, m: int) -> None:
        from .agent import cleanup

        ray = _ray()
        try:
            task = ray.remote(cleanup).options(resources={f"node:{self.machines[m]['ip']}": 0.001}, num_cpus=0)
            ray.get(task.remote(self.run_ids[m]), timeout=120)
        except Exception as exc:
            log.error("cluster machine m%d (%s) could not be cleaned (%s): run `lasernet down %s` there", m,
                      self.machines[m]["ip"], type(exc).__name__, self.run_ids[m])


def _payload_bytes(obj) -> int:
    """Roughly what a message weighs on the wire (numpy payloads and item tuples)."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(_payload_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_payload_bytes(v) for v in obj) + 8
    if isinstance(obj, str):
        return len(obj)
    return 8
