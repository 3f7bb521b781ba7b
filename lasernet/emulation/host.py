"""One machine's share of an emulation: the kernel side that the coordinator keeps in step with the orbit.

The coordinator (:mod:`lasernet.emulation.coordinator`) decides *what* the network should be at every tick: which
links exist and their state, which routes every router should hold. A host makes it so on one machine: it owns
that machine's node namespaces and their shells (Mininet hosts of class
:class:`~lasernet.emulation.network.Router`), the servers behind them, the link backend (delay line or netem,
:mod:`lasernet.emulation.links`) and its helper processes, the batched netlink configuration of the namespaces
(:class:`~lasernet.emulation.kernel.Kernel`: link addresses, permanent neighbours, routes), the routing daemons,
the CPU keep-awake spinners and its share of the run's state file (so that ``lasernet down`` removes exactly
what it created, even after a SIGKILL). :class:`LocalHost` is the host of the machine the coordinator runs on.

The interface is a small set of messages whose arguments and answers are plain data (numpy arrays, lists of
``int``/``str``, dicts, and :class:`~lasernet.addressing.LinkAddress` records of ints and strings), so
that a host on another machine can implement it behind a remote call. No Mininet object or callback crosses it.
Node indices are the scenario's (satellites first, then ground stations); a link is named by its *slot*, which
the coordinator assigns (and from which its /31 follows, :mod:`lasernet.addressing`).

Start-up, in this order (each answers once it is done):

* ``open(n_nodes, keep_awake)``: raise this process's open-file limit for ``n_nodes`` namespaces, start the
  keep-awake spinners, make the (empty) Mininet network. Answers ``{"pid": int}``.
* ``start_nodes(names, roles, mine=None)``: spawn one router shell per node, together, and wait for them;
  ``names``/``roles`` are every router's, ``mine`` the indices this machine holds (default all: one machine).
  Answers ``{"pids": [int]}`` (each shell of this machine, in node order).
* ``configure_nodes(sysctls)``: the routers' ``key=value`` sysctls, ``lo`` up, each loopback /32. Answers the
  number of netlink operations applied.
* ``start_links(kind, seed, n_slots, pin_helpers)``: start the link backend ``kind`` (``delayline`` or
  ``netem``) for up to ``n_slots`` links; with ``pin_helpers`` its helper processes share the last CPU. Answers
  ``{"backend": name}``.
* ``add_servers(servers)``: servers (``hosts:``), a list of ``{"name", "router", "index", "cpus", "memory_mb"}``
  dicts: each joined to router ``router`` by a veth carrying LAN ``index``'s /24, its shell in a cgroup of its own
  (:mod:`lasernet.net.cgroups`) limited to ``cpus`` cores and ``memory_mb`` MiB (None: no limit). Answers
  ``{"servers": [name]}``.
* ``start_daemons(routing, scenario_name, n_satellites, costs, stubs, residency, lans)``: the routing daemons of ``routing`` (a
  :class:`~lasernet.spec.routing.RoutingConfig`, frozen plain fields) on every router, configured for the
  links created so far; ``costs`` is each slot's metric (int array by slot), ``stubs`` the names of the
  stations that carry no transit (configured as stubs). Answers ``{"daemons": int}`` (daemon processes running).

Every tick, only what changed (none of these needs the answer of another, so a remote host can take the
tick's four as one message):

* ``add_links(links, costs=None, bulk=False)``: create links (``LinkAddress`` records): both interfaces,
  their /31 addresses and permanent neighbour entries, configured in the daemons if there are any (``costs``:
  their metrics). A new link starts down. ``bulk`` (start-up) addresses many links with one link dump per
  node. A link with only one end on this machine gets this machine's half (its interface, and a UDP socket
  towards the other machine's half). Answers ``{"created": n, "ports": {slot: UDP port of each half}}``.
* ``apply(slots, up, delay_s, loss, rate_bps)``: the state of many links in one batch, per direction arrays of
  shape (n, 2) (index 0 is a->b); the nexthop objects over a link going down become black holes before it does,
  and get their gateways back when it is up again (:mod:`lasernet.emulation.kernel`). Answers the number of
  links written.
* ``install_routes(items)``: route changes, each item ``(kind, node, ...)`` for one router, installed in order
  with one netlink batch per item: ``("routes", node, dst, via, dev)`` (/32 routes to the loopbacks of nodes
  ``dst``, int array, via ``via``, uint32 host-order addresses, out of interfaces ``dev``, names),
  ``("prefixes", node, first, host_bits, via, dev)`` (aggregated loopback prefixes),
  ``("unreachable", node, dst)`` (/32 unreachable routes over an aggregate) and ``("entries", node, entries)``
  (one by one: ``entries`` of ``(dst, (via ip, dev, peer) or None)``, None withdrawing; LAN routes follow the
  loopback's); through nexthop objects (:mod:`lasernet.emulation.nexthops`): ``("nexthops", node, ids, slots,
  via, dev)`` (set objects ``ids`` to send over link ``slots``, via and out of the interfaces as above),
  ``("nhroutes", node, dst, ids)`` (/32 routes to nodes ``dst`` through objects ``ids``), ``("nhprefixes",
  node, first, host_bits, ids)`` and ``("nhrow", node, first, host_bits, ids)`` (the node's whole loopback
  table as these prefixes, id 0 unreachable; every other /32 and prefix it held deleted). Residency rules (oracle
  routing): ``("residency-rules", node, sources, destinations, table, priority)`` (policy-routing rules: packets
  from ``sources``, and those the node originates to ``destinations``, both ``(address, prefix length)`` pairs,
  look ``table`` up first) and ``("table-entries", node, entries, table)`` (as ``entries``, in that table; None
  makes the destination unreachable there). The coordinator decides how many items fit in a tick's budget.
  Answers the number of netlink operations applied.
* ``power(items)``: the servers whose satellite's power state changed or that an upset restarts, each item
  ``(name, factor, restart)``: CPU quota times ``factor``, frozen at 0, processes but the shell killed with
  ``restart``. Answers ``{"applied": n, "killed": n}``.

On a cluster (:mod:`lasernet.emulation.cluster`) also: ``connect_links({slot: (ip, port)})`` (aim each half at the
other machine's), ``set_substrate(slots, one_way_s)`` (the measured machine-to-machine delay each half takes
off its link's) and ``step(add, apply, routes, power)``: a tick's ``add_links``, ``apply``, ``install_routes``
and ``power`` in one message, answered with what each did and ``apply_s``, this machine's own time for it.

With routing daemons on a cluster: ``watch_fibs()`` starts a reader of this machine's routers' FIBs
(:class:`~lasernet.routing.convergence.FibReader`, in a thread of its own), and from then on every ``step`` answer
carries ``fib``: the next-hop changes read since the last one, as ``(wall_s, [(node, destination, slot), ...])``
batches stamped with this machine's wall clock (the coordinator's FIB watcher judges the whole network from them).

And: ``daemon_exits()`` (one-line reports of daemons that died since the last call), ``check_daemons()``
(raises :class:`~lasernet.routing.daemons.RoutingDaemonError` if one died), ``stop_daemons()``, ``stop()``
(remove everything this host created, in reverse order, then its state file).

On the local host, ``nodes``, ``servers`` and ``net`` (Mininet objects: ``cmd()``, ``popen()``, the CLI) are
also there for what runs commands inside nodes (probes, the workload, tests); they are not part of the messages.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from ..net.awake import CpuAwake
from ..net.cgroups import CgroupError, ServerCgroups
from . import state as run_state
from ..addressing import LinkAddress, ifname_for, lan_network
from .kernel import Kernel
from .links import LinkBackend, make_backend
from .network import Router, Server, finish_shells, terminate_all

log = logging.getLogger("lasernet")


def pin_to_last_cpu(pid: int | None) -> None:
    """Confine a helper process (relay, background oracle) to the last CPU when there are two or more.

    The relay runs SCHED_FIFO: woken by the driver's per-tick commit it would preempt the driver on the driver's
    own core for as long as it takes to apply the table (milliseconds at constellation size). On a core of its
    own (shared with the background oracle, which runs niced) it never stalls the tick.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if pid and len(cpus) >= 2:
        try:
            os.sched_setaffinity(pid, {cpus[-1]})
        except OSError as exc:
            log.warning("could not pin process %s to CPU %d: %s", pid, cpus[-1], exc)


def raise_fd_limit(pid: int | None, wanted: int) -> None:
    """Raise a process's open-file limit to at least ``wanted`` (a large run needs more than a login's default)."""
    import resource

    if not pid:
        return
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    try:
        if soft < wanted:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (OSError, ValueError) as exc:  # e.g. no CAP_SYS_RESOURCE to pass the hard limit (as on CI here)
        log.warning("could not raise the open-file limit of process %s to %d (%s): it stays %d, so a relay holds "
                    "at most ~%d links", pid, wanted, exc, soft, soft // 2 - 8)


class LocalHost:
    """The host of the coordinator's own machine (see the module docstring for its messages).

    ``state`` is the run's state file (this host writes its nodes, links, backend, helpers and daemons into it);
    ``progress(what, done, total)`` and ``daemon_config_hook(node, daemon, text) -> text`` (tests) are local
    options, not messages.
    """

    def __init__(self, run_id: str, run_dir, state: run_state.RunState, *, progress=None,
                 daemon_config_hook=None, bind_ip: str | None = None, files_tag: str = ""):
        self.run_id, self.run_dir, self.state = run_id, run_dir, state
        # appended to the names of the files this host writes into the run directory (``routing``, ``relay.log``):
        # a cluster machine's share other than the first's, so that machines sharing one directory never collide
        self.files_tag = files_tag
        self.bind_ip = bind_ip  # this machine's address in a cluster: the halves of cross-machine links use it
        self.progress = progress or (lambda what, done, total: None)
        self.daemon_config_hook = daemon_config_hook
        self.node_names: tuple[str, ...] = ()
        self.nodes: dict[str, Router] = {}  # routers: satellites and ground stations
        self.servers: dict[str, Server] = {}  # hosts attached to routers (scenario `hosts:`)
        self.links: list[LinkAddress] = []  # the links created, by slot
        self.net = None
        self.backend: LinkBackend | None = None
        self.kernel: Kernel | None = None
        self.stop_timings: dict[str, float] = {}  # seconds per phase of stop(), for benchmarks
        self.daemons = None  # the DaemonSet, with a routing daemon protocol
        self._awake: CpuAwake | None = None
        self._pin_helpers = False
        self.cgroups: ServerCgroups | None = None  # the servers' cgroups (lasernet.net.cgroups), with servers
        self._server_cpus: dict[str, float | None] = {}  # server -> its cpus: (None: no limit)
        self.fib_reader = None  # with watch_fibs: a FibReaderThread over this machine's routers

    # --------------------------------------------------------------------------------------------- start-up
    def open(self, n_nodes: int, keep_awake: bool) -> dict:
        from mininet.net import Mininet

        # This process holds per node a pty, its netlink socket and namespace fd: ~4 fds a node.
        raise_fd_limit(os.getpid(), 8 * n_nodes + 4096)
        if keep_awake:  # one SCHED_IDLE spinner per CPU while up (see lasernet.net.awake)
            self._awake = CpuAwake().start()
            self.state.add_helpers(self._awake.pids)
        self.net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False, autoStaticArp=False)
        return {"pid": os.getpid()}

    def start_nodes(self, names: list[str], roles: list[str], mine=None) -> dict:
        self.node_names = tuple(names)
        mine = range(len(names)) if mine is None else [int(i) for i in mine]
        for k, i in enumerate(mine):  # spawns every shell; finish_shells waits for them
            node = self.net.addHost(names[i], cls=Router, index=i, role=roles[i], ip=None, mac=None, bulk=True)
            self.nodes[names[i]] = node
            self.progress("starting nodes", k + 1, len(mine))
        finish_shells(list(self.nodes.values()))
        for node in self.nodes.values():
            self.state.add_node(node)
        self.state.save()
        return {"pids": [node.pid for node in self.nodes.values()]}

    def configure_nodes(self, sysctls: list[str]) -> int:
        self.kernel = Kernel(self.nodes, self.node_names)
        self.kernel.configure_routers([node.index for node in self.nodes.values()], tuple(sysctls))
        return self.kernel.commit()

    def start_links(self, kind: str, seed: int, n_slots: int, pin_helpers: bool = False) -> dict:
        self._pin_helpers = pin_helpers
        self.backend = make_backend(kind, self.run_id, seed, n_slots=n_slots, log_dir=self.run_dir,
                                    log_name=f"relay{self.files_tag}.log")
        self.backend.on_process = self._backend_process
        self.backend.start()
        self.kernel.wait_carrier = self.backend.settle  # a nexthop object needs its link's carrier on
        self.state.set_backend(self.backend.name, self.backend.resources())
        return {"backend": self.backend.name}

    def _backend_process(self, pid: int, open_files: int) -> None:
        """A process the link backend started (a relay): its open-file limit, its CPU, the run's state file."""
        raise_fd_limit(pid, open_files)
        if self._pin_helpers:  # at scale: relays and oracle share a core, the driver has the others
            pin_to_last_cpu(pid)
        self.state.set_backend(self.backend.name, self.backend.resources())

    def add_servers(self, servers: list[dict]) -> dict:
        if servers and self.cgroups is None:
            self._open_cgroups(any(s.get("cpus") is not None or s.get("memory_mb") is not None for s in servers))
        for spec in servers:
            name, router, j = spec["name"], int(spec["router"]), int(spec["index"])
            attach = self.node_names[router]
            server = self.net.addHost(name, cls=Server, index=j, attach=router, lan=lan_network(j), ip=None,
                                      mac=None)
            self.servers[name] = server
            if self.cgroups is not None:  # the shell has run nothing yet: all it starts is born in the group
                try:
                    self.cgroups.create(name, spec.get("cpus"), spec.get("memory_mb"))
                finally:  # recorded even if making it failed half-way: teardown removes what exists
                    self.state.set_cgroups(self.cgroups.paths())
                self.cgroups.add_process(name, server.pid)
                server.cgroup_procs = self.cgroups.procs_files(name)
                self._server_cpus[name] = spec.get("cpus")
            self.state.add_node(server)
            server.configDefault()
            ifname_r, ifname_s = ifname_for(name, 0), ifname_for(attach, 0)
            self.kernel.attach_server(router, server, ifname_r, ifname_s)
            self.nodes[attach].record_intf(ifname_r, server.gateway, 24, "")
            server.record_intf(ifname_s, server.loopback, 24)
        self.state.save()
        return {"servers": list(self.servers)}

    def _open_cgroups(self, required: bool) -> None:
        """The run's server cgroups (:mod:`lasernet.net.cgroups`); without cgroups on this machine a run whose
        servers set no limits goes on (its power states and upsets then do nothing to them, said once)."""
        try:
            self.cgroups = ServerCgroups(self.run_id)
        except CgroupError as exc:
            if required:
                raise
            log.warning("%s; servers run without power states or restarts", exc)

    def start_daemons(self, routing, scenario_name: str, n_satellites: int, costs, stubs=(), residency=(),
                      lans=None) -> dict:
        from ..routing.daemons import DaemonSet, LinkSpec, NodeSpec

        self.daemons = DaemonSet(routing, self.run_id, self.run_dir, scenario_name, state=self.state,
                                 config_hook=self.daemon_config_hook, files_name=f"routing{self.files_tag}")
        names = self.node_names
        stubs = set(stubs)
        specs = {name: NodeSpec(name, i, self.nodes[name].role, self.nodes[name].loopback, [], [],
                                transit=name not in stubs)
                 for i, name in enumerate(names) if name in self.nodes}
        for server in self.servers.values():
            attach = names[server.attach]
            specs[attach].lans.append(ifname_for(server.name, 0))
            specs[attach].lan_prefixes.append(server.lan)
        for link in self.links:
            cost = int(costs[link.slot])
            if names[link.a] in specs:
                specs[names[link.a]].links.append(LinkSpec(link.ifname_a, names[link.b], cost, link.ip_b))
            if names[link.b] in specs:
                specs[names[link.b]].links.append(LinkSpec(link.ifname_b, names[link.a], cost, link.ip_a))
        self.daemons.start(self.nodes, specs, n_satellites, residency=residency, lans=lans)
        return {"daemons": len(self.daemons.running)}

    # --------------------------------------------------------------------------------------------- every tick
    def add_links(self, links: list[LinkAddress], costs=None, bulk: bool = False) -> dict:
        """Create ``links``; a link with one end on another machine gets this machine's half (see
        :meth:`~lasernet.emulation.links.DelaylineLinks.add_half`). Answers ``{"created": n, "ports": {slot:
        UDP port}}`` (ports of the halves, for :meth:`connect_links` on the other machine)."""
        names = self.node_names
        created, ports = [], {}
        for k, link in enumerate(links):
            here_a, here_b = names[link.a] in self.nodes, names[link.b] in self.nodes
            if here_a and here_b:
                na, nb = self.nodes[names[link.a]], self.nodes[names[link.b]]
                mac_a, mac_b = self.backend.add(link, na.pid, nb.pid)
                na.record_intf(link.ifname_a, link.ip_a, 31, mac_a)
                nb.record_intf(link.ifname_b, link.ip_b, 31, mac_b)
            elif here_a or here_b:
                end = 0 if here_a else 1
                node = self.nodes[names[link.a if here_a else link.b]]
                mine, peer, ports[link.slot] = self.backend.add_half(link, end, node.pid, self.bind_ip)
                mac_a, mac_b = (mine, peer) if here_a else (peer, mine)
                node.record_intf(link.ifname_a if here_a else link.ifname_b, link.ip_a if here_a else link.ip_b,
                                 31, mine)
            else:
                raise ValueError(f"link slot {link.slot} has no end on this machine")
            self.state.add_link(link, f"{names[link.a]}~{names[link.b]}")
            self.links.append(link)
            if bulk:
                created.append((link, mac_a, mac_b))
                self.progress("creating links", k + 1, len(links))
                continue
            self.kernel.link_ends(link, mac_a, mac_b)
            if self.daemons is not None:
                self._daemons_link_added(link, int(costs[k]) if costs is not None else 10)
        if bulk:
            self.kernel.link_ends_bulk(created)
        self.kernel.commit()
        if links:  # a new link starts down until the next apply says otherwise
            zeros = np.zeros((len(links), 2))
            self.backend.apply(np.array([link.slot for link in links]), zeros.astype(bool), zeros, zeros, zeros)
        if bulk:  # saves the state file: the links, and the relays they started
            self.state.set_backend(self.backend.name, self.backend.resources())
        return {"created": len(links), "ports": ports}

    def connect_links(self, peers: dict) -> int:
        """Aim the halves of cross-machine links at the other machine's: ``{slot: (ip, port)}``."""
        for slot, (ip, port) in peers.items():
            self.backend.connect_half(int(slot), ip, int(port))
        return len(peers)

    def set_substrate(self, slots, one_way_s) -> int:
        """The measured one-way delay to the other machine of each cross-machine slot (taken off its delay)."""
        self.backend.set_substrate(slots, one_way_s)
        return len(slots)

    def step(self, add=None, apply=None, routes=(), power=()) -> dict:
        """A tick's work in one message: new links (``(links, costs)``), link states (``apply``'s arguments),
        route items, server power items (:meth:`power`), in that order. Answers what each did and how long this
        machine took, as measured here."""
        t0 = time.monotonic()
        answer = {"created": 0, "ports": {}, "applied": 0, "route_ops": 0, "killed": 0}
        if add is not None:
            answer.update(self.add_links(*add))
        if apply is not None:
            answer["applied"] = self.apply(*apply)
        if routes:
            answer["route_ops"] = self.install_routes(routes)  # netlink operations the kernel acknowledged
        if power:
            answer["killed"] = self.power(power)["killed"]
        # Read back, not assumed: link generations committed that the relays have not applied yet (delay line).
        unapplied = getattr(self.backend, "unapplied_generations", None)
        answer["unapplied_generations"] = unapplied() if unapplied is not None else 0
        if self.fib_reader is not None:
            answer["fib"] = self.fib_reader.take()
            if self.fib_reader.error:
                raise RuntimeError(self.fib_reader.error)
        answer["apply_s"] = time.monotonic() - t0
        return answer

    def watch_fibs(self) -> dict:
        """Start reading this machine's routers' FIBs; ``step`` answers carry the changes from now on."""
        from ..routing.convergence import FibReader, FibReaderThread

        if self.fib_reader is None:
            index = {name: i for i, name in enumerate(self.node_names)}
            mine = [name for name in self.node_names if name in self.nodes]
            reader = FibReader([index[name] for name in mine], [self.nodes[name].pid for name in mine],
                               len(self.node_names))
            self.fib_reader = FibReaderThread(reader).start()
        return {"routers": len(self.fib_reader.reader.nodes)}

    def _daemons_link_added(self, link: LinkAddress, cost: int) -> None:
        from ..routing.daemons import LinkSpec

        na, nb = self.node_names[link.a], self.node_names[link.b]
        if na in self.nodes:
            self.daemons.link_added(na, LinkSpec(link.ifname_a, nb, cost, link.ip_b))
        if nb in self.nodes:
            self.daemons.link_added(nb, LinkSpec(link.ifname_b, na, cost, link.ip_a))

    def apply(self, slots, up, delay_s, loss, rate_bps) -> int:
        """The links' state; the nexthop objects over a link going down become black holes first, and those
        over a link coming up get their gateway back once its carrier is on (:mod:`lasernet.emulation.kernel`)."""
        kernel = self.kernel
        both_up = np.asarray(up, bool).all(axis=1)
        down, came_up = kernel.links_changed(slots, both_up)
        if down:
            kernel.park(down)
            kernel.commit()
        self.backend.apply(slots, up, delay_s, loss, rate_bps)
        kernel.carrier_pending(came_up, self.backend.applied_mark())
        if came_up and kernel.restore(came_up):  # once their carrier is on (a relay sets it when it takes it in)
            kernel.commit()
        return len(slots)

    def power(self, items) -> dict:
        """Servers' power: each item ``(name, factor, restart)``. ``factor`` is the plan's CPU quota factor of the
        satellite's power state: the server's cgroup gets ``factor`` times its ``cpus`` (times this machine's
        CPU count for a server without ``cpus``), and 0 freezes it until a later item's factor is above 0
        (thawed, its processes go on where they were). ``restart`` kills every process of the server's cgroup
        but its shell (a radiation upset restarted what it ran). Answers ``{"applied": n, "killed": n}``; no-op
        where this machine has no cgroups."""
        killed = 0
        groups = self.cgroups
        if groups is None:
            return {"applied": 0, "killed": 0}
        for name, factor, restart in items:
            factor = float(factor)
            if factor > 0:
                base = self._server_cpus.get(name)
                groups.set_cpus(name, None if base is None and factor >= 1 else
                                (base if base is not None else float(os.cpu_count() or 1)) * factor)
            if groups.frozen.get(name, False) != (factor <= 0):
                groups.freeze(name, factor <= 0)
            if restart:
                killed += len(groups.kill_except(name, self.servers[name].pid))
        return {"applied": len(items), "killed": killed}

    def install_routes(self, items) -> int:
        kernel, done = self.kernel, 0
        for kind, node, *args in items:
            if kind == "routes":
                kernel.routes_bulk(node, *args)
            elif kind == "prefixes":
                kernel.prefixes_bulk(node, *args)
            elif kind == "unreachable":
                kernel.unreachable(node, *args)
            elif kind == "entries":
                kernel.routes(node, *args)
            elif kind == "residency-rules":
                kernel.residency_rules(node, *args)
            elif kind == "table-entries":
                kernel.table_routes(node, *args)
            elif kind == "nexthops":
                kernel.nexthops(node, *args)
            elif kind == "nhroutes":
                kernel.nh_routes(node, *args)
            elif kind == "nhprefixes":
                kernel.nh_prefixes(node, *args)
            elif kind == "nhrow":
                kernel.nh_row(node, *args)
            else:
                raise ValueError(f"unknown route item {kind!r}")
            done += kernel.commit()
        return done

    # --------------------------------------------------------------------------------------------- daemons
    def daemon_exits(self) -> list[str]:
        return self.daemons.report_exits() if self.daemons is not None else []

    def check_daemons(self) -> None:
        if self.daemons is not None:
            self.daemons.check()

    def stop_daemons(self) -> None:
        if self.daemons is not None:
            self.daemons.stop()

    # --------------------------------------------------------------------------------------------- teardown
    def stop(self) -> None:
        """Remove everything this host created, in reverse order; safe to call twice or after a failed start."""
        mark = time.monotonic()
        if self.fib_reader is not None:
            self.fib_reader.stop()
            self.fib_reader = None
        self.stop_daemons()
        mark = self._end_stop_phase("daemons", mark)
        if self.kernel:
            self.kernel.close()
            self.kernel = None
        mark = self._end_stop_phase("netlink", mark)
        if self.cgroups is not None:  # a frozen server would not act on the hangup below
            for name, frozen in self.cgroups.frozen.items():
                if frozen:
                    self.cgroups.freeze(name, False)
        if self.net is not None:
            terminate_all(list(self.nodes.values()) + list(self.servers.values()))
            self.net = None
        mark = self._end_stop_phase("nodes", mark)
        if self.backend:
            self.backend.stop()
            self.backend = None
        mark = self._end_stop_phase("links", mark)
        if self._awake is not None:
            self._awake.stop()
            self._awake = None
        self.cgroups = None  # the state file lists its groups: teardown removes them
        if self.state:
            run_state.teardown(self.state.data, quiet=True)
            self.state.remove()
            self.state = None
        self._end_stop_phase("state", mark)

    def _end_stop_phase(self, name: str, mark: float) -> float:
        now = time.monotonic()
        self.stop_timings[name] = self.stop_timings.get(name, 0.0) + now - mark
        return now
