"""Link backends: how an emulated link between two node namespaces gets its delay, loss, rate and up/down.

Every backend offers the same small interface, used by the driver once per tick with arrays over all links:

* ``start()`` / ``stop()``;
* ``add(link, ns_a, ns_b)``: create the link's two interfaces (named ``link.ifname_a`` in namespace ``ns_a`` and
  ``link.ifname_b`` in ``ns_b``) and return their MAC addresses;
* ``apply(slots, up, delay_s, loss, rate_bps)``: set the state of many links in one batch (per direction arrays of
  shape (n, 2): index 0 is a->b, 1 is b->a; a link down shows NO-CARRIER on both ends);
* ``applied_mark()`` and ``settle(mark)``: return once what ``apply`` had asked for at the mark shows in the
  kernel (the delay line's relay sets carrier on its own, a moment later; netem's is set in the call);
* ``resources()``: the processes and files it created, for ``lasernet down``;
* ``on_process``: if set, called as ``on_process(pid, open_files)`` for each helper process the backend starts
  (the driver raises its open-file limit, pins it to a CPU and records it in the run's state file).

Backends: ``delayline`` (TAPs plus a userspace relay; works on any kernel with tun/tap, and the only choice on
kernels without sch_netem such as this machine's) and ``netem`` (veth ends shaped by sch_netem, changed in place
by batched rtnetlink: the standard in a VM with a stock kernel). :func:`choose_backend` resolves ``auto`` by
probing once whether a netem qdisc can be created in a scratch namespace.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np

from ..addressing import LinkAddress
from ..net.netns import new_private_netns
from ..net.rtnl import Netlink


class LinkBackend:
    """The interface every link backend implements (see the module docstring)."""

    name = "abstract"
    on_process = None

    def start(self) -> "LinkBackend":
        return self

    def stop(self) -> None:
        pass

    def add(self, link: LinkAddress, ns_a: str, ns_b: str) -> tuple[str, str]:
        raise NotImplementedError

    def add_half(self, link: LinkAddress, end: int, ns, bind_ip: str) -> tuple[str, str, int]:
        raise NotImplementedError(f"the {self.name} backend cannot make links that cross machines")

    def apply(self, slots: np.ndarray, up: np.ndarray, delay_s: np.ndarray, loss: np.ndarray,
              rate_bps: np.ndarray) -> None:
        raise NotImplementedError

    def applied_mark(self):
        """A mark of what ``apply`` has asked for so far, for :meth:`settle` (None: nothing to wait for)."""
        return None

    def settle(self, mark=None) -> None:
        """Return once what ``apply`` asked for up to ``mark`` (default: so far) shows in the kernel (carrier
        included); at once if it already does."""

    def resources(self) -> dict:
        return {}


class _Halves:
    """Bookkeeping for the halves of links that cross machines (:mod:`lasernet.emulation.cluster`).

    Each machine holds one end of such a link: it records which (``hold_half``) and the measured one-way delay
    of the substrate between it and the other machine (``set_substrate``). :meth:`per_half` then says what
    this machine's half applies of each direction: the half that shapes a direction (``SHAPES``: the one that
    ``"delivers"`` it for the delay line, whose relay holds frames before writing them into the TAP; the one
    that ``"sends"`` it for netem, whose qdisc sits on the sender's egress) gets its delay less the substrate
    (never below 0), its loss and rate; the other half passes that direction through at once.
    """

    SHAPES = "delivers"

    def _init_halves(self) -> None:
        self._cross_end = np.zeros(0, np.int8)  # by slot: -1 local, 0/1 the end this machine holds
        self._substrate_s = np.zeros(0)  # by slot: measured one-way delay to the other half's machine

    def set_substrate(self, slots, one_way_s) -> None:
        """The measured one-way delay between this machine and the other end's, per cross-machine slot."""
        slots = np.asarray(slots, dtype=np.int64)
        if len(slots):
            self._grow_cross(int(slots.max()))
            self._substrate_s[slots] = one_way_s

    def hold_half(self, slot: int, end: int) -> None:
        """Record that this machine holds end ``end`` (0 = a, 1 = b) of cross-machine link ``slot``."""
        self._grow_cross(slot)
        self._cross_end[slot] = end

    def half_end(self, slot: int) -> int:
        """The end of ``slot`` this machine holds (0 or 1), or -1 for a link with both ends here."""
        return int(self._cross_end[slot]) if slot < len(self._cross_end) else -1

    def _grow_cross(self, slot: int) -> None:
        if slot >= len(self._cross_end):
            n = max(slot + 1, 2 * len(self._cross_end), 256)
            self._cross_end = np.concatenate([self._cross_end, np.full(n - len(self._cross_end), -1, np.int8)])
            self._substrate_s = np.concatenate([self._substrate_s, np.zeros(n - len(self._substrate_s))])

    def per_half(self, slots, delay_s, loss, rate_bps):
        """Per-direction parameters as each half applies them (see the class docstring); local links unchanged."""
        slots = np.asarray(slots, dtype=np.int64)
        inside = slots < len(self._cross_end)
        end = np.full(len(slots), -1, np.int8)
        end[inside] = self._cross_end[slots[inside]]
        cross = np.flatnonzero(end >= 0)
        if not len(cross):
            return delay_s, loss, rate_bps
        delay_s, loss, rate_bps = (np.array(x, dtype=float, copy=True) for x in (delay_s, loss, rate_bps))
        sends = end[cross].astype(np.int64)  # end a sends a->b (index 0), end b sends b->a (index 1)
        shaped, passed = (1 - sends, sends) if self.SHAPES == "delivers" else (sends, 1 - sends)
        for arr in (delay_s, loss, rate_bps):
            arr[cross, passed] = 0.0
        delay_s[cross, shaped] = np.maximum(delay_s[cross, shaped] - self._substrate_s[slots[cross]], 0.0)
        return delay_s, loss, rate_bps


class DelaylineLinks(_Halves, LinkBackend):
    """TAP pairs joined by the delay-line relay (:mod:`lasernet.net.delayline`).

    Every traversal of the relay costs a little time of its own on top of the delay it is asked for: the frame
    waits in the TAP's queue until the (single-threaded) relay reads it, and the write into the next node runs
    its forwarding (microseconds per traversal, a round trip crossing the relay twice per hop; the README's
    Performance section has the numbers). That stays in, like a real router's forwarding latency: a measured
    RTT is never below the light time. ``traversal_overhead_s`` (default 0) is taken off each direction's delay
    (never below zero) for a user who wants it calibrated out; set too high it makes paths faster than light.

    One relay process holds two TAP fds per link, within its hard open-file limit (:func:`links_per_relay`); a
    run with more links gets more relays, started as the slots they serve are first used (shard ``k`` serves
    slots ``[k * slots_per_relay, (k + 1) * slots_per_relay)``), each reported through ``on_process``.
    """

    name = "delayline"
    TRAVERSAL_OVERHEAD_S = 0.0

    def __init__(self, run_id: str, seed: int, n_slots: int, traversal_overhead_s: float | None = None,
                 log_path: str | None = None, slots_per_relay: int | None = None):
        self.run_id, self.seed, self.log_path = run_id, seed, log_path
        self.slots_per_relay = min(n_slots, slots_per_relay or links_per_relay())
        self.relays: list = []  # shard k serves slots [k * slots_per_relay, (k + 1) * slots_per_relay)
        self.traversal_overhead_s = (self.TRAVERSAL_OVERHEAD_S if traversal_overhead_s is None
                                     else traversal_overhead_s)
        self._sockets: dict = {}  # slot -> UDP socket of this machine's half of a cross-machine link
        self._init_halves()

    @property
    def relay(self):
        """The first relay (the only one unless the run has more links than one process can hold)."""
        return self.relays[0]

    def start(self) -> "DelaylineLinks":
        self._relay_for(0)
        return self

    def stop(self) -> None:
        for relay in reversed(self.relays):
            relay.stop()
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()

    def _relay_for(self, slot: int):
        """The relay serving ``slot`` (started on first use) and the slot's index in its table."""
        from ..net.delayline.client import Relay

        shard, local = divmod(int(slot), self.slots_per_relay)
        while len(self.relays) <= shard:
            k = len(self.relays)
            relay = Relay(self.run_id, n_slots=self.slots_per_relay, seed=self.seed, log_path=self.log_path,
                          shard=k, slot_base=k * self.slots_per_relay)
            relay.start()  # cleans up after itself if it fails
            self.relays.append(relay)
            if self.on_process is not None:
                self.on_process(relay.pid, 2 * self.slots_per_relay + RELAY_SPARE_FILES)
        return self.relays[shard], local

    def add(self, link: LinkAddress, ns_a: str, ns_b: str) -> tuple[str, str]:
        relay, local = self._relay_for(link.slot)
        ends = relay.add_link(ns_a, link.ifname_a, ns_b, link.ifname_b, local)
        return ends.a[2], ends.b[2]

    # ---- halves of links that cross machines (lasernet.emulation.cluster)
    def add_half(self, link: LinkAddress, end: int, ns, bind_ip: str) -> tuple[str, str, int]:
        """This machine's half of a link whose other end is on another machine (see :meth:`Relay.add_half`).

        Frames cross between the two machines' relays as UDP datagrams, one frame each, over a socket bound to
        ``bind_ip`` (this machine's address in the cluster) on a port the kernel picks; :meth:`connect_half`
        aims it at the other half once that machine has answered with its port. Each half delays, drops and
        rate-limits the direction it *delivers* (into its TAP), less the substrate's one-way delay between the
        two machines (:meth:`set_substrate`); the direction it sends leaves at once. Both halves follow the
        link's up/down, so both ends show NO-CARRIER when it is down. Returns (this end's MAC, the other end's
        MAC, the UDP port).
        """
        import socket

        relay, local = self._relay_for(link.slot)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
            sock.bind((bind_ip, 0))
            ifname = link.ifname_a if end == 0 else link.ifname_b
            ends = relay.add_half(ns, ifname, local, end, sock.fileno())
        except BaseException:
            sock.close()
            raise
        self._sockets[link.slot] = sock
        self.hold_half(link.slot, end)
        mine, peer = (ends.a, ends.b) if end == 0 else (ends.b, ends.a)
        return mine[2], peer[2], sock.getsockname()[1]

    def connect_half(self, slot: int, peer_ip: str, peer_port: int) -> None:
        """Send this half's frames to the other machine's half (and accept only its datagrams)."""
        self._sockets[slot].connect((peer_ip, int(peer_port)))

    def apply(self, slots, up, delay_s, loss, rate_bps) -> None:
        slots = np.asarray(slots, dtype=np.int64)
        delay_s, loss, rate_bps = self.per_half(slots, delay_s, loss, rate_bps)
        delay_s = np.maximum(np.asarray(delay_s, dtype=float) - self.traversal_overhead_s, 0.0)
        shard, local = np.divmod(np.asarray(slots, dtype=np.int64), self.slots_per_relay)
        for k in (range(1) if len(self.relays) == 1 else np.unique(shard)):
            pick = slice(None) if len(self.relays) == 1 else shard == k
            table = self.relays[k].table
            for d in (0, 1):
                table.set_many(local[pick], d, delay_s=delay_s[pick, d], loss=loss[pick, d],
                               rate_bps=rate_bps[pick, d], up=up[pick, d])
            self.relays[k].commit(wait=False)

    def applied_mark(self) -> tuple:
        """Every relay's generation committed so far."""
        return tuple(relay.table.generation for relay in self.relays)

    def settle(self, mark=None, timeout_s: float = 5.0) -> None:
        """Wait until every relay has taken in its commit of ``mark`` (default: the last): the carrier changes
        are then in the kernel."""
        mark = self.applied_mark() if mark is None else mark
        for relay, generation in zip(self.relays, mark):
            if relay.table.applied_generation < generation:
                relay.table.wait_applied(generation, timeout_s)

    def release_late_s(self) -> float:
        """How late the relays released frames after their due time, on average over every frame they delayed
        (s): their wake-up and scheduling latency, the substrate's own cost per hop (grows on a loaded machine)."""
        late = count = 0.0
        for relay in self.relays:
            for link in relay.stats().values():
                for d in link["dirs"]:
                    late += d["release_late_us_mean"] * d["tx"]
                    count += d["tx"]
        return late / count * 1e-6 if count else 0.0

    def backdate_max_s(self) -> float:
        """The most any relay back-dated a frame that woke it (s): its learnt wake-up latency at its largest. A
        frame crosses a link faster than light by at most this (the estimate minus that wake-up's true latency)."""
        return max((relay.timing()["wake_latency_us_max"] for relay in self.relays), default=0.0) * 1e-6

    def unapplied_generations(self) -> int:
        """How many committed generations the relays have not taken in yet (the most over all relays): what the
        kernel side holds, read back, not assumed. 0 or 1 in a healthy run (a commit is taken within
        microseconds; the last one may still be in flight)."""
        return max((r.table.generation - r.table.applied_generation for r in self.relays), default=0)

    def resources(self) -> dict:
        """Each relay's process, table and control socket (``relays``); the first one's also at the top level."""
        shards = [{k: v for k, v in relay.created().items() if k != "taps"} for relay in self.relays]
        return {**(shards[0] if shards else {}), "relays": shards}


#: Open files a relay needs besides its two TAP fds per link (epoll, timer, sockets, the interpreter's own).
RELAY_SPARE_FILES = 256


def links_per_relay() -> int:
    """How many links one relay process can hold: two TAP fds each, within the hard open-file limit.

    A process can raise its soft limit up to the hard one; past that it needs CAP_SYS_RESOURCE, which a container
    may not grant (a hard limit of 20,000 gives 9,872 links a relay). A run with more links than that gets more
    relays, each serving its own range of slots.
    """
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        return 1 << 30
    return max(64, (hard - RELAY_SPARE_FILES) // 2)


class NetemLinks(_Halves, LinkBackend):
    """Links shaped by sch_netem on veth ends, with carrier that follows the link's state on both ends.

    Each link is two veth pairs and a bridge: ``link.ifname_a`` in node a's namespace is peered with ``w<slot>a``
    in a *wire* namespace of this backend's own, ``link.ifname_b`` in b's with ``w<slot>b``, and the bridge
    ``w<slot>`` joins ``w<slot>a`` and ``w<slot>b``. Direction a->b is shaped by a root netem qdisc on
    ``ifname_a`` (its egress), b->a on ``ifname_b``; both are added once in :meth:`add` and afterwards only ever
    changed in place (``RTM_NEWQDISC`` without create flags: same handle, no reset, no artefacts).

    Why the wire namespace: a link that goes down must show NO-CARRIER on both node ends while both stay
    administratively up (their addresses, permanent neighbours and routes stay; routing daemons see a carrier
    loss, as with a terminal losing lock). On kernel 6.1 a veth has neither ``IFLA_PROTO_DOWN`` ("Protodown not
    supported by device") nor a writable carrier (``/sys/class/net/X/carrier``: I/O error), and taking one end of
    a plain pair admin-down shows NO-CARRIER only on its peer while the downed end loses its routes and
    neighbours. A veth end's carrier is on exactly when it and its peer are both admin-up, so setting the wire
    end ``w<slot>a`` down makes ``ifname_a`` NO-CARRIER, and ``w<slot>b`` down does the same to ``ifname_b``:
    direction d's up/down is the wire end on its sender's side (index 0: ``w<slot>a``). On carrier loss the
    kernel's link watcher (immediately for a veth) swaps the end's qdisc for noop and resets netem, so frames
    in flight (held by netem for their delay) are dropped, and sending stops until the carrier returns. The
    bridge's forward delay is 0: with STP off a port that comes up still waits in listening and learning for the
    forward delay each (15 s by default), which would turn every 1 s outage into a half-minute one.

    ``apply`` sends, per tick, one batch of qdisc changes to each node namespace concerned and one batch of
    link up/down messages to the wire namespace, and only for what differs from what it last sent. The wire
    namespace is held only by this process's file descriptors and sockets, so it and every wire device vanish
    when the backend stops or the driver dies (even by SIGKILL); the node ends vanish with the nodes.

    A link that crosses machines (:mod:`lasernet.emulation.cluster`) is two halves, one per machine: this
    machine's node end, its wire end and bridge as above, and a VXLAN device (VNI = slot + 1) in the bridge
    whose UDP socket stays in this machine's own namespace (:meth:`Netlink.add_vxlan`), so that frames leave
    for the other machine's half over its cluster address. Each half shapes the direction it sends (its node
    end's egress, as above) less the measured one-way delay between the machines, and takes its own wire end
    down when the link is down: both node ends go NO-CARRIER and netem drops what it holds. Every half of
    this machine listens on one UDP port (picked free at the first half) and sends to the other machine's;
    the node ends get a fixed MAC from the slot and end (each knows the other's without asking) and an MTU
    of the underlay's less the 50 bytes of VXLAN over IPv4.

    netem's queue limit is ``limit_packets`` (default 10,000; netem's own default of 1,000 caps a link at 1,000
    packets per one-way delay, e.g. 12 Mbit/s of 1,500-byte frames over a 1 s delay). Loss is drawn by the
    kernel's own random generator (netem on 6.1 takes no seed), so it is not reproducible from the scenario seed.
    """

    name = "netem"
    SHAPES = "sends"  # a half's netem is on its node end's egress
    LIMIT_PACKETS = 10_000

    def __init__(self, run_id: str, limit_packets: int | None = None):
        self.run_id = run_id
        self.limit_packets = limit_packets or self.LIMIT_PACKETS
        self.wire: Netlink | None = None
        self._nodes: dict[int, Netlink] = {}  # node PID -> netlink socket in its namespace
        self._ends: dict[int, tuple[int, int, int, int]] = {}  # slot -> (pid a, ifindex a, pid b, ifindex b)
        # What was last sent, by slot and direction: up (wire end), delay_s, loss, rate_bps; NaN = nothing yet.
        self._sent = np.full((0, 2, 4), np.nan)
        self._init_halves()
        self._here: Netlink | None = None  # this machine's own namespace: where the VXLAN sockets live
        self._vxlan_port = 0  # the UDP port every VXLAN half of this machine listens on
        self._half_mtu = 0
        self._bind_ip = ""

    # ------------------------------------------------------------------------------------------------- lifetime
    def start(self) -> "NetemLinks":
        netns = new_private_netns()
        try:  # closing the socket closes the namespace handle: the namespace goes
            self.wire = Netlink(netns, close_netns=True)
        except BaseException:
            netns.close()
            raise
        self.wire.netns.write_sysctls({"net.ipv6.conf.all.disable_ipv6": 1, "net.ipv6.conf.default.disable_ipv6": 1})
        return self

    def stop(self) -> None:
        for nl in self._nodes.values():
            nl.close()
        self._nodes.clear()
        if self._here is not None:  # the VXLAN devices are in the wire namespace: they go with it
            self._here.close()
            self._here = None
        if self.wire is not None:
            self.wire.close()
            self.wire = None

    def resources(self) -> dict:
        return {}  # node ends go with the nodes' namespaces, the wire namespace with this process

    # ------------------------------------------------------------------------------------------------- links
    def _node(self, pid: int) -> Netlink:
        nl = self._nodes.get(pid)
        if nl is None:
            nl = self._nodes[pid] = Netlink(pid)
        return nl

    def add(self, link: LinkAddress, ns_a, ns_b) -> tuple[str, str]:
        """Create the link (down: both node ends NO-CARRIER) with netem on each end; return the ends' MACs."""
        if self.wire is None:
            raise RuntimeError("NetemLinks.add before start()")
        pid_a, pid_b = int(ns_a), int(ns_b)
        wa, wb, br = f"w{link.slot}a", f"w{link.slot}b", f"w{link.slot}"
        wire = self.wire
        for pid, wire_end, ifname in ((pid_a, wa, link.ifname_a), (pid_b, wb, link.ifname_b)):
            node_ns = self._node(pid).netns
            wire.add_veth(wire_end, ifname, node_ns)
        wire.add_bridge(br)
        wire.commit()
        wire.set_master(wa, br)
        wire.set_master(wb, br)
        wire.commit()
        ends = []
        for pid, ifname in ((pid_a, link.ifname_a), (pid_b, link.ifname_b)):
            nl = self._node(pid)
            if nl.pending:
                nl.commit()
            index = nl.link(ifname).index  # a fresh dump: the interface was made by another socket
            nl.set_link(index, up=True)
            nl.netem(index, delay_s=0.0, limit_packets=self.limit_packets, create=True)
            nl.commit()
            ends.append((pid, index, nl.link(ifname).mac))
        self._ends[link.slot] = (ends[0][0], ends[0][1], ends[1][0], ends[1][1])
        self._grow_sent(link.slot)
        return tuple(":".join(f"{b:02x}" for b in mac) for _pid, _index, mac in ends)

    def _grow_sent(self, slot: int) -> None:
        if slot >= len(self._sent):
            grown = np.full((max(slot + 1, 2 * len(self._sent), 256), 2, 4), np.nan)
            grown[:len(self._sent)] = self._sent
            self._sent = grown
        self._sent[slot] = 0.0  # wire ends down, netem delay 0, no loss, unlimited rate

    # ---- halves of links that cross machines
    def add_half(self, link: LinkAddress, end: int, ns, bind_ip: str) -> tuple[str, str, int]:
        """This machine's half of a cross-machine link (see the class docstring): the node end in ``ns`` with
        its netem, wire end and bridge; the VXLAN device follows in :meth:`connect_half`. Returns (this end's
        MAC, the other end's MAC, this machine's VXLAN port)."""
        if self.wire is None:
            raise RuntimeError("NetemLinks.add_half before start()")
        if not self._vxlan_port:
            self._start_halves(bind_ip)
        pid, slot = int(ns), link.slot
        ifname = link.ifname_a if end == 0 else link.ifname_b
        wire_end, br = f"w{slot}{'ab'[end]}", f"w{slot}"
        nl = self._node(pid)
        self.wire.add_veth(wire_end, ifname, nl.netns)
        self.wire.add_bridge(br)
        self.wire.commit()
        self.wire.set_master(wire_end, br)
        self.wire.configure_link(wire_end, mtu=self._half_mtu)
        self.wire.commit()
        mine, peer = half_mac(slot, end), half_mac(slot, 1 - end)
        if nl.pending:
            nl.commit()
        nl.configure_link(ifname, mac=mine, mtu=self._half_mtu, up=True)
        nl.commit()
        index = nl.link(ifname).index
        nl.netem(index, delay_s=0.0, limit_packets=self.limit_packets, create=True)
        nl.commit()
        self._ends[slot] = (pid, index, -1, -1) if end == 0 else (-1, -1, pid, index)
        self.hold_half(slot, end)
        self._grow_sent(slot)
        return _mac_text(mine), _mac_text(peer), self._vxlan_port

    def _start_halves(self, bind_ip: str) -> None:
        """This machine's side of every half: a netlink socket in its own namespace, a free UDP port, the MTU."""
        import socket

        from ..net.netns import mtu_of_address

        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:  # the port is free now; the first VXLAN device set up binds it for all the halves
            probe.bind((bind_ip, 0))
            port = probe.getsockname()[1]
        finally:
            probe.close()
        self._here = Netlink()
        self._bind_ip, self._vxlan_port = bind_ip, port
        self._half_mtu = min(1500, mtu_of_address(bind_ip) - VXLAN_OVERHEAD_BYTES)

    def connect_half(self, slot: int, peer_ip: str, peer_port: int) -> None:
        """Join this half to the other machine's: a VXLAN device (VNI slot + 1) in the half's bridge, sending
        to ``peer_ip``:``peer_port``."""
        vx, br = f"x{slot}", f"w{slot}"
        self._here.add_vxlan(vx, vni=slot + 1, local=self._bind_ip, port=self._vxlan_port, netns=self.wire.netns,
                             mtu=self._half_mtu)
        self._here.commit()
        self.wire.add_vxlan_peer(vx, peer_ip, int(peer_port))
        self.wire.set_master(vx, br)
        self.wire.set_link(vx, up=True)
        self.wire.commit()

    def apply(self, slots, up, delay_s, loss, rate_bps) -> None:
        """Change what differs from what was last sent: netem per end in place, carrier by the wire ends (a half
        changes only its own end: the direction it sends)."""
        slots = np.asarray(slots, dtype=np.int64)
        delay_s, loss, rate_bps = self.per_half(slots, delay_s, loss, rate_bps)
        new = np.stack([np.asarray(up, float), np.asarray(delay_s, float), np.asarray(loss, float),
                        np.asarray(rate_bps, float)], axis=-1)  # (n, 2, 4)
        new[..., 1] = np.where(np.isnan(new[..., 1]), 0.0, new[..., 1])
        unknown = [int(x) for x in slots if x >= len(self._sent) or x not in self._ends]
        if unknown:
            raise KeyError(f"netem: link slot(s) {unknown[:5]} were never added")
        old = self._sent[slots]
        qdisc_changed = np.any(new[..., 1:] != old[..., 1:], axis=-1)  # (n, 2)
        carrier_changed = new[..., 0] != old[..., 0]
        if len(self._cross_end):  # a half holds only the end that sends its own direction
            held = np.full(len(slots), -1, np.int8)
            inside = slots < len(self._cross_end)
            held[inside] = self._cross_end[slots[inside]]
            other = np.zeros((len(slots), 2), bool)
            other[held == 0, 1] = other[held == 1, 0] = True
            qdisc_changed &= ~other
            carrier_changed &= ~other
        self._sent[slots] = new
        touched: set[int] = set()
        for k, d in zip(*np.nonzero(qdisc_changed)):
            end = self._ends[int(slots[k])]
            pid, index = end[2 * d], end[2 * d + 1]
            self._node(pid).netem(index, delay_s=float(new[k, d, 1]), loss=float(new[k, d, 2]),
                                  rate_bps=float(new[k, d, 3]), limit_packets=self.limit_packets)
            touched.add(pid)
        carrier = [(f"w{int(slots[k])}{'ab'[d]}", bool(new[k, d, 0])) for k, d in zip(*np.nonzero(carrier_changed))]
        errors = []
        for pid in touched:
            try:
                self._node(pid).commit()
            except Exception as exc:  # the other namespaces still get their batch; raised below
                errors.append(exc)
        for wire_end, is_up in carrier:
            self.wire.set_link(wire_end, up=is_up)
        if carrier:
            self.wire.commit()
        if errors:
            raise errors[0]


#: Bytes VXLAN over IPv4 adds to a frame (outer Ethernet 14, IPv4 20, UDP 8, VXLAN 8).
VXLAN_OVERHEAD_BYTES = 50


def half_mac(slot: int, end: int) -> bytes:
    """The fixed MAC of end ``end`` of cross-machine link ``slot`` (locally administered, unicast)."""
    return bytes([0x02, 0x6e, (slot >> 16) & 0xFF, (slot >> 8) & 0xFF, slot & 0xFF, end])


def _mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def netem_available() -> bool:
    """Whether this kernel can shape with sch_netem: try a netem qdisc on ``lo`` of a throw-away namespace."""
    if not shutil.which("unshare") or not shutil.which("tc"):
        return False
    proc = subprocess.run(["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                          capture_output=True, text=True)
    return proc.returncode == 0


class BackendUnavailable(RuntimeError):
    pass


def choose_backend(kind: str) -> str:
    """Resolve ``auto`` / ``netem`` / ``delayline`` to a backend this machine can run, or raise."""
    if kind not in ("auto", "netem", "delayline"):
        raise BackendUnavailable(f"--links must be auto, netem or delayline, got {kind!r}")
    if kind == "delayline":
        return "delayline"
    if netem_available():
        return "netem"
    if kind == "netem":
        raise BackendUnavailable("--links netem: this kernel cannot make a netem qdisc (no sch_netem, or no "
                                 "unshare/tc); use --links delayline (or auto)")
    return "delayline"


def make_backend(kind: str, run_id: str, seed: int, n_slots: int, log_dir=None,
                 log_name: str = "relay.log") -> LinkBackend:
    """The backend ``kind`` names (``auto`` resolved by :func:`choose_backend`; a resolved name is not re-probed)."""
    name = kind if kind in ("netem", "delayline") else choose_backend(kind)
    if name == "delayline":
        return DelaylineLinks(run_id, seed, n_slots, log_path=None if log_dir is None else str(log_dir / log_name))
    if name == "netem":
        return NetemLinks(run_id)
    raise BackendUnavailable(f"no backend {name!r}")
