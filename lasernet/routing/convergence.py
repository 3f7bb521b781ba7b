"""How well routing daemons keep up with the orbit: every router's FIB, judged against the links that are up.

A :class:`FibReader` holds one rtnetlink socket in each of some routers' namespaces, subscribed to IPv4 route
changes (``RTMGRP_IPV4_ROUTE``), after one dump of the main table. It keeps, per router, the next-hop link (slot)
of its route to every other router's loopback /32 (the identity daemons must advertise) and reports each change
as plain data, ``(router, destination, slot)``. On one machine the :class:`FibWatcher` reads every router's
kernel itself, with one reader in its own thread, and stamps each change when the kernel announced it. On a
cluster no machine can open another's namespaces: every host runs a reader over its own routers and stamps
the changes with its wall clock (:meth:`lasernet.emulation.host.LocalHost.watch_fibs`), the coordinator hands
them to the watcher (:meth:`FibWatcher.feed`) in emulated time, and the watcher judges the whole network from
them (stamps then agree across machines as well as their clocks do: NTP keeps a LAN within a millisecond or
so). Whenever a FIB or the set of up links changes it walks every (source, destination) pair along the FIBs:

- *delivered*: the walk reaches the destination over links that are up, without a loop, and relays through no
  station that carries no transit (a stub: it may start or end a walk, never lie inside one);
- *broken*: the pair is connected over the up links through nodes that carry transit (so the oracle has a path;
  for a pair a residency rule governs, through the nodes it allows) but the walk is not delivered (a black hole,
  a loop, a route over a link that is down, or one through a stub);
- *stretch*: delivered path delay over the oracle's shortest delay (1.0 = the oracle's path);
- *violating* (with residency rules, :mod:`lasernet.routing.policy`): pairs of one jurisdiction's sites whose walk
  along the FIBs crosses a node their rule forbids (another operator's satellite, a foreign station), whether or
  not it arrives.

Each change is a sample in ``fib.csv``. Link events that the driver applied in the same tick form one change;
for each, :meth:`FibWatcher.finish` measures ``reachable_again_s`` (from the change until no pair is broken, for
good, before the next change), ``settled_s`` (until the last FIB change before the next change) and their
maximum ``convergence_s`` (``nan`` if pairs were still broken when the next change came), plus the scenario's
probes lost in the window. The first change (the links coming up at start) is the initial convergence, reported
apart: until no pair is broken, even if later changes came first (BIRD's OSPF has been seen to leave a
neighbour's routes out of its first SPF, "Cannot find next hop for LSA", until the next LSDB change 34 s on). Times are emulated seconds (at ``speed`` S the daemons' timers still run in wall time: divide by S for
their own time); route announcements are stamped when the watcher reads them, so the resolution is its
wake-up, about a millisecond, unless the driver's tick holds the interpreter (the watcher is a thread of the
driver's process): an overrunning tick delays the stamps by up to its length.
"""

from __future__ import annotations

import csv
import errno
import math
import queue
import select
import socket
import threading
import time
from pathlib import Path

import numpy as np

from ..addressing import LINK_POOL, LOOPBACK_POOL
from ..net import rtnl
from ..net.rtnl import RTM_DELROUTE, RTM_NEWROUTE, RTN_UNICAST, parse_route

LOOP_BASE = int(LOOPBACK_POOL.network_address)
LINK_BASE, LINK_SIZE = int(LINK_POOL.network_address), LINK_POOL.num_addresses


class FibReader:
    """The next-hop slots of some routers' routes towards every router's loopback, read from their kernels.

    ``nodes`` are the routers' node indices (of ``n_nodes``), ``pids`` their shells' PIDs on this machine.
    :meth:`read` answers the changes since the last call as ``(node, destination, slot)`` (slot -1: no route
    over a link, a black hole or an unreachable route)."""

    def __init__(self, nodes, pids, n_nodes: int):
        self.nodes = [int(x) for x in nodes]
        self.pids = list(pids)
        self.n = int(n_nodes)
        self.next_slot = np.full((len(self.nodes), self.n), -1, np.int64)  # row k: router nodes[k]
        self._routes = [dict() for _ in self.nodes]  # row -> {(dst node, metric): slot or -1}
        self.socks: list[socket.socket] = []
        self._by_fd: dict[int, int] = {}

    def open(self) -> "FibReader":
        """Open and subscribe one socket in each router's namespace and ask each for its whole table."""
        self.socks = rtnl.open_in_processes(self.pids)
        for row, sock in enumerate(self.socks):
            rtnl.subscribe_routes(sock, buffer_bytes=8 << 20)
            self._by_fd[sock.fileno()] = row
            self._dump(row, [])
        return self

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        self.socks = []

    def read(self, timeout_s: float) -> list[tuple[int, int, int]]:
        """Wait up to ``timeout_s`` for route messages; answer the next-hop changes they made."""
        ready, _, _ = select.select(self.socks, [], [], timeout_s)
        changes: list[tuple[int, int, int]] = []
        for sock in ready:
            self._read(self._by_fd[sock.fileno()], changes)
        return changes

    def _dump(self, row: int, changes: list) -> None:
        self._routes[row].clear()
        for peer in np.flatnonzero(self.next_slot[row] >= 0):  # forgotten until the dump tells them again
            changes.append((self.nodes[row], int(peer), -1))
        self.next_slot[row] = -1
        self.socks[row].send(rtnl.route_dump_request())

    def _read(self, row: int, changes: list) -> None:
        sock = self.socks[row]
        while True:
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # notifications were lost: read the whole table again
                    self._dump(row, changes)
                    continue
                raise
            for kind, payload in rtnl.split_messages(data):
                if kind in (RTM_NEWROUTE, RTM_DELROUTE):
                    self._apply(row, kind, payload, changes)

    def _apply(self, row: int, kind: int, payload, changes: list) -> None:
        route = parse_route(payload)
        if route is None:
            return
        dst, dst_len, metric, gateway, rtype = route
        peer = dst - LOOP_BASE - 1
        node = self.nodes[row]
        if dst_len != 32 or not 0 <= peer < self.n or peer == node:
            return
        table = self._routes[row]
        if kind == RTM_DELROUTE:
            table.pop((peer, metric), None)
        else:
            ok = rtype == RTN_UNICAST and LINK_BASE <= gateway < LINK_BASE + LINK_SIZE
            table[(peer, metric)] = (gateway - LINK_BASE) // 2 if ok else -1
        best = min((m for (d, m) in table if d == peer), default=None)
        slot = -1 if best is None else table[(peer, best)]
        if self.next_slot[row, peer] != slot:
            self.next_slot[row, peer] = slot
            changes.append((node, int(peer), int(slot)))


class FibReaderThread:
    """A :class:`FibReader` read by a thread of its own, its changes kept as ``(wall_s, changes)`` batches
    stamped with this machine's wall clock (``time.time()``), until :meth:`take` hands them over."""

    POLL_S = 0.01

    def __init__(self, reader: FibReader):
        self.reader = reader
        self._batches: list[tuple[float, list]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def start(self) -> "FibReaderThread":
        self.reader.open()
        self._thread = threading.Thread(target=self._loop, name="lasernet-fib-read", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                changes = self.reader.read(self.POLL_S)
                if changes:
                    wall_s = time.time()
                    with self._lock:
                        self._batches.append((wall_s, changes))
        except (OSError, ValueError) as exc:
            if not self._stop.is_set():
                self.error = f"reading the routers' FIBs stopped: {exc!r}"

    def take(self) -> list[tuple[float, list]]:
        """The batches read since the last call, oldest first."""
        with self._lock:
            out, self._batches = self._batches, []
        return out

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.reader.close()


class FibWatcher:
    """Judges every router's FIB (see the module docstring): read here, or fed from the hosts' readers."""

    POLL_S = 0.01

    def __init__(self, node_names, n_satellites: int, pids, now_s, applied, routes=None, allowed=None,
                 transit=None, residency=None):
        """Watch the routers ``node_names`` (their shells' ``pids`` on this machine, in the same order; None:
        the FIBs are read by the hosts and handed over with :meth:`feed`) on the clock ``now_s()`` (emulated
        seconds). ``applied`` is the coordinator's read view of the link state by slot (arrays ``valid``,
        ``up``, ``delay_s``; ``links``: each slot's ends ``a``, ``b``); ``routes()`` the oracle's table now (its
        ``delay_s`` is the reference for stretch), or None; ``allowed(a, b)`` whether routing may use a link
        between nodes ``a`` and ``b`` (BGP landing policies), None if every link may be used; ``transit[n]``
        which routers may relay (None: all of them); ``residency`` the plan's rules as ``(members, allowed)``,
        (R, n) bool arrays (``Timeline.residency_members``, ``residency_allowed``), or None."""
        self.node_names = list(node_names)
        self.pids = None if pids is None else list(pids)
        self.now_s = now_s
        self.applied = applied
        self.oracle_routes = routes or (lambda: None)
        self.allowed = allowed
        self.n = len(self.node_names)
        self.n_satellites = n_satellites
        self.transit = np.ones(self.n, bool) if transit is None else np.asarray(transit, bool)
        self.residency = None if residency is None or not len(residency[0]) else \
            (np.asarray(residency[0], bool), np.asarray(residency[1], bool))
        self.next_slot = np.full((self.n, self.n), -1, np.int64)
        self.samples: list[tuple] = []  # (t_s, broken, connected, delivered, stretch median, ground stretch, violating)
        self.fib_changes: list[float] = []  # t_s of each batch of FIB changes
        self.events: list[tuple[float, str, bool]] = []  # link events as the driver applied them
        self.reader: FibReader | None = None
        self._fed: queue.Queue = queue.Queue()  # (t_s, changes) batches handed over by feed()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_up = b""
        self.result: dict = {}
        self.end_s: float | None = None  # emulated time the watching stopped
        self.error: str | None = None  # why the watching stopped early, if it did
        self._allowed: list[bool] = []  # per link slot: may routing use it (BGP landing policies)
        self.last: dict = {}  # the latest judgement's matrices: delivered, connected, delay_s (FIB path delay)

    # ---------------------------------------------------------------------------------------------- life
    def start(self) -> "FibWatcher":
        if self.pids is not None:
            self.reader = FibReader(range(self.n), self.pids, self.n).open()
        self._thread = threading.Thread(target=self._loop, name="lasernet-fib", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self.end_s is None:
            self.end_s = self.now_s()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    def link_event(self, t_s: float, name: str, up: bool) -> None:
        """Called by the driver for every link up/down it applies."""
        self.events.append((t_s, name, up))

    def feed(self, batches) -> None:
        """FIB changes read by the hosts: ``(t_s, [(node, destination, slot), ...])`` batches, each stamped in
        emulated seconds when its host read it, in time order."""
        for t_s, changes in batches:
            self._fed.put((float(t_s), changes))

    # ---------------------------------------------------------------------------------------------- reading
    def _take(self, changes) -> bool:
        changed = False
        for node, peer, slot in changes:
            if self.next_slot[node, peer] != slot:
                self.next_slot[node, peer] = slot
                changed = True
        return changed

    def _loop(self) -> None:
        try:
            self._watch()
        except Exception as exc:  # the run goes on; its summary says the measurement stopped, and why
            import logging

            self.error = f"the FIB watcher stopped at t={self.now_s():.1f} s: {exc!r}"
            logging.getLogger("lasernet").error("%s", self.error)

    def _watch(self) -> None:
        while not self._stop.is_set():
            if self.reader is not None:  # read here: stamped as read
                try:
                    changes = self.reader.read(self.POLL_S)
                except (OSError, ValueError):
                    return
                batches = [(self.now_s(), changes)] if changes else []
            else:  # fed by the hosts: stamped as they read them
                batches = []
                try:
                    batches.append(self._fed.get(timeout=self.POLL_S))
                    while True:
                        batches.append(self._fed.get_nowait())
                except queue.Empty:
                    pass
            for t_s, changes in batches:
                if self._take(changes):
                    self.fib_changes.append(t_s)
                    up = self._up()
                    self._last_up = up.tobytes()
                    self.samples.append((t_s, *self.evaluate(up), self.last["violating"]))
            up = self._up()
            if up.tobytes() != self._last_up:
                self._last_up = up.tobytes()
                self.samples.append((self.now_s(), *self.evaluate(up), self.last["violating"]))

    # ---------------------------------------------------------------------------------------------- judging
    def _up(self) -> np.ndarray:
        """Links that are up and that routing may use: with BGP landing policies, a ground link between an
        operator's satellite and a station it does not list carries nothing by design, so it counts as down."""
        a = self.applied
        up = (a.valid & a.up).copy()
        if self.allowed is not None:
            links, names = a.links, self.node_names
            while len(self._allowed) < len(links):
                lk = links[len(self._allowed)]
                self._allowed.append(self.allowed(names[lk.a], names[lk.b]))
            n = min(len(up), len(self._allowed))
            up[:n] &= np.array(self._allowed[:n], bool)
        return up

    def evaluate(self, up: np.ndarray | None = None) -> tuple[int, int, int, float, float]:
        """Judge the FIBs now: (broken pairs, connected pairs, delivered pairs, median stretch, ground stretch)."""
        up = self._up() if up is None else up
        n = self.n
        links = list(self.applied.links)[:len(up)]
        s_count = len(links)
        a_of = np.fromiter((lk.a for lk in links), np.int64, s_count)
        b_of = np.fromiter((lk.b for lk in links), np.int64, s_count)
        up = np.concatenate([up[:s_count], np.zeros(max(0, s_count - len(up)), bool)])[:s_count]
        delay_s = self.applied.delay_s[:s_count]
        ns = self.next_slot.copy()
        has = (ns >= 0) & (ns < s_count)
        nsc = np.where(has, ns, 0)
        hop_ok = has & up[nsc] if s_count else np.zeros_like(has)
        rows = np.arange(n)[:, None]
        nxt = np.where(hop_ok, np.where(a_of[nsc] == rows, b_of[nsc], a_of[nsc]) if s_count else -1, -1)
        # the walk, all pairs at once (flattened index = src * n + dst)
        cur = np.repeat(np.arange(n), n)
        dst = np.tile(np.arange(n), n)
        delivered = cur == dst
        delay = np.zeros(n * n)
        alive = np.flatnonzero(~delivered)
        for _ in range(n):
            if not len(alive):
                break
            c, d = cur[alive], dst[alive]
            step = nxt[c, d]
            moving = step >= 0
            alive = alive[moving]
            if s_count:
                delay[alive] += delay_s[nsc[c[moving], d[moving]]]
            cur[alive] = step[moving]
            arrived = cur[alive] == dst[alive]
            delivered[alive[arrived]] = True
            alive = alive[~arrived]
            alive = alive[self.transit[cur[alive]]]  # a walk relayed by a stub is not delivered
        delivered = delivered.reshape(n, n)
        connected = _connected_through_transit(n, a_of[up], b_of[up], self.transit)
        if self.residency is not None:  # a governed pair is connected only over the nodes its rule allows
            for members, allowed in zip(*self.residency):
                keep = members | allowed
                on = up & keep[a_of] & keep[b_of]
                ruled = _connected_through_transit(n, a_of[on], b_of[on], self.transit & allowed)
                pairs = np.outer(members, members)
                connected[pairs] = ruled[pairs]
        broken = connected & ~delivered
        violating = 0
        if self.residency is not None:  # walks along the FIBs over up links, judged on the nodes they cross
            from .policy import violations

            violating = int(violations(nxt, *self.residency).sum())
        self.last = {"delivered": delivered, "connected": connected, "delay_s": delay.reshape(n, n),
                     "violating": violating}
        stretch_all = stretch_ground = math.nan
        routes = self.oracle_routes()
        if routes is not None and routes.delay_s.shape == (n, n):
            ok = connected & delivered & np.isfinite(routes.delay_s) & (routes.delay_s > 0)
            ratio = delay.reshape(n, n)[ok] / routes.delay_s[ok]
            if len(ratio):
                stretch_all = float(np.median(ratio))
            ground = np.zeros((n, n), bool)
            ground[self.n_satellites:, self.n_satellites:] = True
            gr = delay.reshape(n, n)[ok & ground] / routes.delay_s[ok & ground]
            if len(gr):
                stretch_ground = float(np.median(gr))
        return int(broken.sum()), int(connected.sum()), int((connected & delivered).sum()), stretch_all, stretch_ground

    def path(self, src: str, dst: str) -> list[str]:
        """The path the FIBs forward along now from router ``src`` to router ``dst`` (node names), following
        next hops over links that are up; it ends early at a black hole or a link that is down, and stops at
        a loop."""
        names = self.node_names
        cur, goal = names.index(src), names.index(dst)
        up = self._up()
        links = self.applied.links
        out = [src]
        for _ in range(self.n):
            if cur == goal:
                break
            slot = int(self.next_slot[cur, goal])
            if slot < 0 or slot >= len(links) or slot >= len(up) or not up[slot]:
                break
            cur = links[slot].b if links[slot].a == cur else links[slot].a
            if names[cur] in out:
                out.append(names[cur])
                break
            out.append(names[cur])
        return out

    def converged(self) -> bool:
        """True when the latest judgement found no broken pair (and at least one connected pair)."""
        if not self.samples:
            return False
        _t, broken, connected, *_ = self.samples[-1]
        return broken == 0 and connected > 0

    # ---------------------------------------------------------------------------------------------- results
    def finish(self, run_dir: Path, probes_csv: Path | None = None) -> dict:
        """Write ``fib.csv`` and ``convergence.csv``; return the summary (also kept as ``self.result``)."""
        self.stop()
        end_s = self.end_s
        run_dir = Path(run_dir)
        with (run_dir / "fib.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["t_s", "broken_pairs", "connected_pairs", "delivered_pairs", "stretch_median",
                        "ground_stretch_median", "violating_pairs"])
            for t, broken, conn, deliv, st, gst, viol in self.samples:
                w.writerow([f"{t:.4f}", broken, conn, deliv, f"{st:.4f}", f"{gst:.4f}", viol])
        rows = self.changes(end_s, _probe_losses(probes_csv))
        with (run_dir / "convergence.csv").open("w", newline="") as f:
            keys = ["t_s", "window_s", "downs", "ups", "links", "reachable_again_s", "settled_s", "convergence_s",
                    "converged", "max_broken_pairs", "max_violating_pairs", "probes_sent", "probes_lost"]
            w = csv.DictWriter(f, keys)
            w.writeheader()
            for r in rows:
                w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
        self.result = summarize(rows, self.samples)
        if self.error:
            self.result["error"] = self.error
        return self.result

    def changes(self, end_s: float | None = None, lost_at=None) -> list[dict]:
        """One row per change (link events applied in the same tick), measured as the module docstring says;
        ``lost_at`` is (probe send times, lost flags) to count the probes lost in each change's window."""
        end_s = self.now_s() if end_s is None else end_s
        groups: dict[float, list] = {}
        for t, name, up in self.events:
            groups.setdefault(round(t, 6), []).append((name, up))
        times = sorted(groups)
        samples = np.array([(*s[:3], s[6]) for s in list(self.samples)]) if self.samples else np.zeros((0, 4))
        changes = np.array(self.fib_changes)
        rows = []
        for k, t in enumerate(times):
            t_next = times[k + 1] if k + 1 < len(times) else end_s
            in_win = (samples[:, 0] >= t) & (samples[:, 0] < t_next) if len(samples) else np.zeros(0, bool)
            before = samples[samples[:, 0] < t] if len(samples) else samples
            broken_then = before[-1, 1] if len(before) else 1
            win = samples[in_win]
            violating_then = before[-1, 3] if len(before) else 0
            states = np.concatenate([[broken_then], win[:, 1]]) if len(win) else np.array([broken_then])
            stamps = np.concatenate([[t], win[:, 0]]) if len(win) else np.array([t])
            converged = states[-1] == 0
            bad = np.flatnonzero(states > 0)
            reach_s = 0.0 if not len(bad) else (stamps[bad[-1] + 1] - t if bad[-1] + 1 < len(stamps) else math.nan)
            fib_in = changes[(changes >= t) & (changes < t_next)] if len(changes) else changes
            settled_s = float(fib_in.max() - t) if len(fib_in) else 0.0
            conv_s = max(reach_s, settled_s) if converged else math.nan
            sent = lost = 0
            if lost_at is not None and len(lost_at[0]):
                sel = (lost_at[0] >= t) & (lost_at[0] < t_next)
                sent, lost = int(sel.sum()), int(lost_at[1][sel].sum())
            names = groups[t]
            rows.append({"t_s": t, "window_s": t_next - t, "downs": sum(not u for _, u in names),
                         "ups": sum(u for _, u in names),
                         "links": (" ".join(f"{'+' if u else '-'}{n}" for n, u in names) if len(names) <= 8
                                   else f"{len(names)} links"),
                         "reachable_again_s": reach_s, "settled_s": settled_s, "convergence_s": conv_s,
                         "converged": bool(converged), "max_broken_pairs": int(states.max()),
                         "max_violating_pairs": int(max([violating_then, *win[:, 3]])),
                         "probes_sent": sent, "probes_lost": lost})
        return rows


def _connected_through_transit(n: int, a: np.ndarray, b: np.ndarray, transit: np.ndarray) -> np.ndarray:
    """(n, n) bool: a path over the links ``a -- b`` joins the two nodes with only transit nodes inside it.

    The links between transit nodes form components; a transit node touches its own, a stub the components of
    its transit neighbours. Two nodes are connected when they touch a common component or are linked directly.
    False on the diagonal. When no stub touches two components (the usual case: a station's satellites are all
    in one +Grid) every node has one label and the answer is label equality; otherwise a sparse product of the
    node-component incidence does it.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    both = transit[a] & transit[b]
    graph = coo_matrix((np.ones(int(both.sum())), (a[both], b[both])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    one = transit[a] != transit[b]  # stub -- transit: the stub touches the transit end's component
    stub_end, transit_end = np.where(transit[a[one]], b[one], a[one]), np.where(transit[a[one]], a[one], b[one])
    touched = comp[transit_end]
    first = np.full(n, -1, np.int64)
    first[stub_end] = touched
    if (first[stub_end] == touched).all():  # every stub touches at most one component
        label = np.where(transit | (first < 0), comp, first)
        connected = label[:, None] == label[None, :]
    else:
        rows = np.concatenate([np.arange(n), stub_end])
        touch = coo_matrix((np.ones(len(rows)), (rows, np.concatenate([comp, touched]))),
                           shape=(n, int(comp.max()) + 1 if n else 0)).tocsr()
        touch.data[:] = 1.0
        connected = (touch @ touch.T).toarray() > 0
    connected[a, b] = connected[b, a] = True
    np.fill_diagonal(connected, False)
    return connected


def _probe_losses(path: Path | None):
    """(send times, lost flags) of every probe in probes.csv, or None without probes."""
    if path is None or not Path(path).exists():
        return None
    t, lost = [], []
    with Path(path).open() as f:
        for row in csv.DictReader(f):
            t.append(float(row["t_s"]))
            lost.append(not row["measured_rtt_ms"])
    return np.array(t), np.array(lost, bool)


def summarize(rows: list[dict], samples: list[tuple]) -> dict:
    """The routing part of summary.json: initial convergence, per-change distributions, stretch."""
    def dist(values):
        v = np.array([x for x in values if not math.isnan(x)])
        if not len(v):
            return {"n": 0}
        return {"n": int(len(v)), "median": float(np.median(v)), "p95": float(np.percentile(v, 95)),
                "max": float(v.max())}

    first, later = (rows[0], rows[1:]) if rows else (None, [])
    initial_s = first["convergence_s"] if first else math.nan
    if first and math.isnan(initial_s):  # still broken when the next change came: the first time it was whole
        whole = [s[0] for s in samples if s[0] >= first["t_s"] and s[1] == 0 and s[2] > 0]
        initial_s = whole[0] - first["t_s"] if whole else math.nan
    stretch = np.array([s[4] for s in samples if not math.isnan(s[4])])
    ground = np.array([s[5] for s in samples if not math.isnan(s[5])])
    out = {"initial_convergence_s": initial_s,
           "initial_converged_before_next_change": bool(first and first["converged"]),
           "changes": len(later), "changes_with_down": sum(r["downs"] > 0 for r in later),
           "unconverged_changes": sum(not r["converged"] for r in later),
           "convergence_s": dist(r["convergence_s"] for r in later),
           "down_convergence_s": dist(r["convergence_s"] for r in later if r["downs"]),
           "reachable_again_s": dist(r["reachable_again_s"] for r in later),
           "probes_lost_in_changes": int(sum(r["probes_lost"] for r in later)),
           "stretch_median": float(np.median(stretch)) if len(stretch) else math.nan,
           "ground_stretch_median": float(np.median(ground)) if len(ground) else math.nan,
           "fib_samples": len(samples),
           "violating_pairs_max": int(max((s[6] for s in samples if len(s) > 6), default=0)),
           "changes_with_violations": sum(r.get("max_violating_pairs", 0) > 0 for r in later)}
    return _json_safe(out)


def _json_safe(value):
    """NaN (not measured) as null, so that summary.json is strict JSON."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
