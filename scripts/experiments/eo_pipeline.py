"""Earth-observation data from satellites to the ground: produced over land, stored, forwarded over real TCP.

One program, three roles (the first argument, or ``EO_ROLE``), each a workload command of the
``in-orbit-processing`` scenarios:

* ``producer``, on an Earth-observation satellite (a router of the constellation). It captures "imagery" while
  its subpoint is over land (:func:`lasernet.measure.eo.over_land`: the shipped 1-degree land mask at the
  satellite's position each emulated second) at ``RATE_MBPS`` megabits per emulated second, in chunks of at most
  ``CHUNK_S`` emulated seconds, each stamped with its capture interval and numbered. Chunks wait in a backlog,
  oldest first, until the next hop acknowledges them (custody transfer: a chunk is dropped from the backlog only
  once the receiver has all of it). ``MODE=raw``: the satellite downlinks itself, as an EO satellite without
  crosslinks does: only while its own laser ground link to a station is up (its interface named after that
  station has carrier, :class:`Carrier`), to the ``ground`` sink on that station, over the direct link (the straight line is the
  shortest path, so the routes take it). When the link drops the connection is aborted at once (a reset, unsent
  bytes discarded) so that no payload leaks over the ISL mesh; what was not acknowledged is sent again at the next
  contact. ``MODE=processed``: it sends every chunk over the ISLs to the ``compute`` node (``COMPUTE``, a node
  name) whenever a path exists.
* ``compute``, on an orbital compute node (a server of ``hosts:`` behind a satellite). It reduces each chunk by
  ``REDUCE_FACTOR`` k (real work on the bytes: the mean of every k consecutive samples, ceil(n / k) bytes out, as a
  k-fold downsampling of an image line), keeps the result in its own backlog and forwards it, oldest first, to a
  ``ground`` sink on any station it can reach through the mesh (a station with a ground link up; it tries them
  in turn), with the same store and forward.
* ``ground``, on a ground station (or a ground server). It accepts chunks from anyone, acknowledges each, and
  records each chunk once (a chunk sent again after a lost acknowledgement is counted as a duplicate).

Time: every stamp is emulated seconds since the run's start, from ``LASERNET_T0_MONOTONIC`` and
``LASERNET_SPEED`` (:class:`lasernet.measure.appmetrics.Metrics`). Position: the run's ``plan.npz`` gives the
start (UTC) and ``scenario.yaml`` the orbits; ``plan.npz`` holds link states and illumination but no positions,
so the producer propagates its own orbit with lasernet's SGP4 code (:mod:`lasernet.orbits`, one hour at a time).

Files, in the job's directory: ``eo-chunks.csv`` (a producer's chunks: ``seq,capture_start_s,capture_end_s,
bytes``), ``eo-acks.csv`` (``source,seq,bytes,acked_s,peer``: every chunk a receiver took custody of, for the
producer and the compute node), ``eo-backlog.csv`` (``t_s,backlog_bytes,backlog_chunks``), ``eo-ground.csv`` (the
sink: ``source,seq,capture_start_s,capture_end_s,arrival_s,bytes,factor,sender,station``), ``eo-compute.csv``
(``source,seq,t_s,bytes_in,bytes_out``) and ``eo-<role>.json``, the totals at the end. Metrics
(``LASERNET_METRICS``): ``backlog_bytes`` (producers and the compute node), ``produced_bytes``,
``downlinked_bytes`` and ``age_s`` per chunk at the ground (capture end to arrival). SIGTERM ends every role.
"""

from __future__ import annotations

import collections
import csv
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
import zlib

import numpy as np

from lasernet.measure.appmetrics import Metrics

GROUND_PORT, COMPUTE_PORT = 7400, 7401
HEADER = struct.Struct("!4s16sIddIH")  # magic, source, seq, capture start, capture end, payload bytes, factor
ACK = struct.Struct("!16sI")  # source, seq
MAGIC = b"EOc1"
STALL_S = 3.0  # wall seconds without an acknowledgement while chunks are unacknowledged: the path is gone
POLL_S = 0.01  # wall seconds between checks of the ground link (raw mode) and of new chunks
STOP = threading.Event()


class Chunk:
    __slots__ = ("source", "seq", "start_s", "end_s", "factor", "payload")

    def __init__(self, source: str, seq: int, start_s: float, end_s: float, factor: int, payload: bytes):
        self.source, self.seq, self.start_s, self.end_s = source, seq, start_s, end_s
        self.factor, self.payload = factor, payload

    @property
    def key(self) -> tuple[str, int]:
        return self.source, self.seq

    def frame(self) -> bytes:
        return HEADER.pack(MAGIC, self.source.encode(), self.seq, self.start_s, self.end_s, len(self.payload),
                           self.factor) + self.payload


def csv_writer(path: str, header: list[str]):
    f = open(path, "w", newline="", buffering=1)
    w = csv.writer(f)
    w.writerow(header)
    return w


class Carrier:
    """Whether an interface of this network namespace is up and has carrier now (IFF_LOWER_UP of a fresh link
    dump, :class:`lasernet.net.rtnl.Link`'s ``carrier``).

    Not SIOCGIFFLAGS: its IFF_RUNNING follows the operational state, which the kernel's link watch updates later
    (up to a second by design). With SIOCGIFFLAGS a producer kept sending for 180 emulated seconds (6 wall
    seconds) after its ground link's carrier went off while another run on the machine installed routes
    (contention for the routing lock is the likely cause, not proven); with the carrier bit the test passes."""

    def __init__(self):
        from lasernet.net.rtnl import Netlink

        self.netlink = Netlink(buffer_bytes=1 << 16)  # this process's namespace: a router's or server's

    def __call__(self, name: str) -> bool:
        link = self.netlink.links(refresh=True).get(name)
        return link is not None and link.up and link.carrier


def abort(sock: socket.socket) -> None:
    """Close with a reset, discarding whatever the kernel has not sent yet."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class StoreAndForward:
    """A backlog of chunks, oldest first, sent over one TCP connection at a time to a target that ``targets()``
    names ((name, ip) pairs to try, in order; none: no path now). A chunk leaves the backlog when its receiver
    acknowledges it; one sent on a connection that broke is sent again on the next. ``guard(name)`` (raw mode:
    the ground link to that station is up) is checked every ``POLL_S``: when it fails the connection is aborted."""

    def __init__(self, metrics: Metrics, port: int, targets, guard=None, acks_csv: str = "eo-acks.csv"):
        self.metrics, self.port, self.targets, self.guard = metrics, port, targets, guard
        self.backlog: collections.OrderedDict[tuple[str, int], Chunk] = collections.OrderedDict()
        self.lock = threading.Lock()
        self.acks = csv_writer(acks_csv, ["source", "seq", "bytes", "acked_s", "peer"])
        self.backlog_csv = csv_writer("eo-backlog.csv", ["t_s", "backlog_bytes", "backlog_chunks"])
        self.acked_bytes = 0
        self.connections = 0
        self.last: str | None = None  # the target of the last connection that carried data: tried first
        self.thread = threading.Thread(target=self._run, name="store-and-forward", daemon=True)

    def put(self, chunk: Chunk) -> None:
        with self.lock:
            self.backlog[chunk.key] = chunk
        self.record_backlog()

    def backlog_bytes(self) -> tuple[int, int]:
        with self.lock:
            return sum(len(c.payload) for c in self.backlog.values()), len(self.backlog)

    def record_backlog(self) -> None:
        t = self.metrics.now_s()
        b, n = self.backlog_bytes()
        self.backlog_csv.writerow([f"{t:.3f}", b, n])
        self.metrics.record("backlog_bytes", b, t)

    def _run(self) -> None:
        while not STOP.is_set():
            candidates = sorted(self.targets(), key=lambda t: t[0] != self.last)
            for name, ip in candidates:
                if STOP.is_set():
                    return
                try:
                    sock = socket.create_connection((ip, self.port), timeout=1.0)
                except OSError:
                    continue  # no path to it now
                self.connections += 1
                try:
                    self._session(sock, name)
                except OSError:
                    pass
                finally:
                    abort(sock)
                break
            STOP.wait(0.2)

    def _session(self, sock: socket.socket, peer: str) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        sent: set[tuple[str, int]] = set()
        out = memoryview(b"")
        inbuf = bytearray()
        progress = time.monotonic()
        while not STOP.is_set():
            if self.guard is not None and not self.guard(peer):
                return  # the ground link is gone: abort (by the caller), resend the rest at the next contact
            if not out:
                with self.lock:
                    nxt = next((c for k, c in self.backlog.items() if k not in sent), None)
                    waiting = len(sent & self.backlog.keys())
                if nxt is not None:
                    sent.add(nxt.key)
                    out = memoryview(nxt.frame())
                elif not waiting:
                    progress = time.monotonic()  # idle, nothing owed: not a stall
            readable, writable, _ = select.select([sock], [sock] if out else [], [], POLL_S)
            if readable:
                data = sock.recv(65536)
                if not data:
                    return
                inbuf += data
                n = len(inbuf) // ACK.size
                for i in range(n):
                    src, seq = ACK.unpack_from(inbuf, i * ACK.size)
                    self._acked((src.rstrip(b"\0").decode(), seq), peer)
                del inbuf[:n * ACK.size]
                if n:
                    progress = time.monotonic()
                    self.last = peer
            if writable and out:
                out = out[sock.send(out):]
            if time.monotonic() - progress > STALL_S:
                return

    def _acked(self, key: tuple[str, int], peer: str) -> None:
        with self.lock:
            chunk = self.backlog.pop(key, None)
        if chunk is None:
            return
        self.acked_bytes += len(chunk.payload)
        self.acks.writerow([key[0], key[1], len(chunk.payload), f"{self.metrics.now_s():.3f}", peer])
        self.record_backlog()


class Receiver:
    """Accepts chunks on ``port``; ``on_chunk(chunk, sender_ip)`` is called for each whole chunk, then it is
    acknowledged."""

    def __init__(self, port: int, on_chunk):
        self.listener = socket.create_server(("0.0.0.0", port), backlog=16)
        self.on_chunk = on_chunk
        threading.Thread(target=self._accept, name="accept", daemon=True).start()

    def _accept(self) -> None:
        while not STOP.is_set():
            try:
                conn, (ip, _) = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, ip), daemon=True).start()

    def _serve(self, conn: socket.socket, ip: str) -> None:
        f = conn.makefile("rb")
        try:
            while True:
                head = f.read(HEADER.size)
                if len(head) < HEADER.size:
                    return
                magic, src, seq, start_s, end_s, n, factor = HEADER.unpack(head)
                if magic != MAGIC:
                    return
                payload = f.read(n)
                if len(payload) < n:
                    return  # the connection broke mid-chunk: the sender still holds it
                source = src.rstrip(b"\0").decode()
                self.on_chunk(Chunk(source, seq, start_s, end_s, factor, payload), ip)
                conn.sendall(ACK.pack(src, seq))
        except OSError:
            return
        finally:
            f.close()
            conn.close()


def nodes() -> dict[str, dict]:
    with open(os.environ["LASERNET_NODES"]) as f:
        return json.load(f)


def stations(all_nodes: dict[str, dict]) -> list[tuple[str, str]]:
    """The ground sinks: the nodes named in ``SINKS`` (space-separated), else every station."""
    wanted = os.environ.get("SINKS", "").split()
    if wanted:
        return [(n, all_nodes[n]["ip"]) for n in wanted]
    return [(n, v["ip"]) for n, v in all_nodes.items() if v["role"] in ("ground-station", "data-centre", "city")]


def write_json(role: str, data: dict) -> None:
    with open(f"eo-{role}.json", "w") as f:
        json.dump(data, f, indent=1)


# ---------------------------------------------------------------------------------------------------- roles

def producer(metrics: Metrics) -> int:
    import lasernet
    from lasernet.measure import eo

    me = os.environ["LASERNET_NODE"]
    mode = os.environ.get("MODE", "raw")
    if mode not in ("raw", "processed"):
        print(f"MODE must be raw or processed, got {mode!r}", file=sys.stderr)
        return 2
    rate_bytes_s = float(os.environ.get("RATE_MBPS", "0.1")) * 1e6 / 8
    chunk_s = int(os.environ.get("CHUNK_S", "10"))
    run_dir = os.environ.get("LASERNET_RUN_DIR", ".")
    scenario = lasernet.load_scenario(os.path.join(run_dir, "scenario.yaml"))
    with np.load(os.path.join(run_dir, "plan.npz")) as z:
        start_utc = lasernet.parse_time(str(z["start_utc"]))
    all_nodes = nodes()
    if mode == "raw":
        sinks, carrier = stations(all_nodes), Carrier()  # the interface to a station is named after it
        targets = lambda: [(n, ip) for n, ip in sinks if carrier(n)]  # noqa: E731
        guard, port = carrier, GROUND_PORT
    else:
        name = os.environ["COMPUTE"]
        targets = lambda: [(name, all_nodes[name]["ip"])]  # noqa: E731
        guard, port = None, COMPUTE_PORT
    link = StoreAndForward(metrics, port, targets, guard)
    link.thread.start()
    chunks = csv_writer("eo-chunks.csv", ["seq", "capture_start_s", "capture_end_s", "bytes"])
    rng = np.random.default_rng(zlib.crc32(me.encode()))
    # over land at each emulated second 0, 1, ... (computed an hour at a time, the first before the clock is read)
    land = eo.over_land(scenario, start_utc, [me], np.arange(3600))[:, 0]
    seq, produced, k, start = 0, 0, 0, None  # k: the next second to look at; start: of the chunk being captured

    def emit(end: int) -> None:
        nonlocal seq, produced, start
        n = int(round(rate_bytes_s * (end - start)))
        link.put(Chunk(me, seq, float(start), float(end), 1, rng.integers(0, 256, n, dtype=np.uint8).tobytes()))
        chunks.writerow([seq, start, end, n])
        seq, produced, start = seq + 1, produced + n, None
        metrics.record("produced_bytes", produced, float(end))

    k = first = max(0, int(metrics.now_s()))  # capture starts with this process, not at the run's start
    last_record = 0.0
    while not STOP.wait(0.05):
        now = metrics.now_s()
        while k + 1 <= now:  # the second [k, k+1) is over
            if k >= len(land):
                land = np.concatenate([land, eo.over_land(scenario, start_utc, [me], np.arange(len(land),
                                                                                             len(land) + 3600))[:, 0]])
            if land[k] and start is None:
                start = k
            elif not land[k] and start is not None:
                emit(k)
            k += 1
            if start is not None and k - start >= chunk_s:
                emit(k)
        if now - last_record >= 10:
            link.record_backlog()
            last_record = now
    if start is not None and k > start:
        emit(k)  # what was captured up to the end
    backlog, backlog_chunks = link.backlog_bytes()
    link.record_backlog()
    write_json("producer", {"node": me, "mode": mode, "produced_bytes": produced, "produced_chunks": seq,
                            "acked_bytes": link.acked_bytes, "backlog_bytes": backlog,
                            "backlog_chunks": backlog_chunks, "connections": link.connections,
                            "over_land_s": int(land[first:k].sum()), "first_s": first, "end_s": k})
    return 0


def reduce(payload: bytes, factor: int) -> bytes:
    """The mean of every ``factor`` consecutive samples (the last group may be shorter): ceil(n / factor) bytes."""
    a = np.frombuffer(payload, dtype=np.uint8)
    full = len(a) // factor * factor
    out = a[:full].reshape(-1, factor).mean(axis=1)
    if full < len(a):
        out = np.append(out, a[full:].mean())
    return np.round(out).astype(np.uint8).tobytes()


def compute(metrics: Metrics) -> int:
    factor = int(os.environ.get("REDUCE_FACTOR", "10"))
    sinks = stations(nodes())
    link = StoreAndForward(metrics, GROUND_PORT, lambda: sinks)  # the last station that took data first
    seen: set[tuple[str, int]] = set()
    log = csv_writer("eo-compute.csv", ["source", "seq", "t_s", "bytes_in", "bytes_out"])
    lock = threading.Lock()
    totals = {"chunks": 0, "bytes_in": 0, "bytes_out": 0}

    def on_chunk(chunk: Chunk, sender: str) -> None:
        with lock:
            if chunk.key in seen:
                return  # sent again after a lost acknowledgement: already taken
            seen.add(chunk.key)
            out = reduce(chunk.payload, factor)
            log.writerow([chunk.source, chunk.seq, f"{metrics.now_s():.3f}", len(chunk.payload), len(out)])
            totals["chunks"] += 1
            totals["bytes_in"] += len(chunk.payload)
            totals["bytes_out"] += len(out)
            link.put(Chunk(chunk.source, chunk.seq, chunk.start_s, chunk.end_s, chunk.factor * factor, out))

    Receiver(COMPUTE_PORT, on_chunk)
    link.thread.start()
    while not STOP.wait(1.0):
        link.record_backlog()
    backlog, backlog_chunks = link.backlog_bytes()
    write_json("compute", {**totals, "factor": factor, "acked_bytes": link.acked_bytes, "backlog_bytes": backlog,
                           "backlog_chunks": backlog_chunks, "connections": link.connections})
    return 0


def ground(metrics: Metrics) -> int:
    me = os.environ["LASERNET_NODE"]
    names = {v["ip"]: n for n, v in nodes().items()}
    out = csv_writer("eo-ground.csv", ["source", "seq", "capture_start_s", "capture_end_s", "arrival_s", "bytes",
                                       "factor", "sender", "station"])
    seen: set[tuple[str, int]] = set()
    lock = threading.Lock()
    totals = {"chunks": 0, "bytes": 0, "duplicates": 0, "duplicate_bytes": 0}

    def on_chunk(chunk: Chunk, sender: str) -> None:
        t = metrics.now_s()
        with lock:
            if chunk.key in seen:
                totals["duplicates"] += 1
                totals["duplicate_bytes"] += len(chunk.payload)
                return
            seen.add(chunk.key)
            totals["chunks"] += 1
            totals["bytes"] += len(chunk.payload)
            out.writerow([chunk.source, chunk.seq, f"{chunk.start_s:.3f}", f"{chunk.end_s:.3f}", f"{t:.3f}",
                          len(chunk.payload), chunk.factor, names.get(sender, sender), me])
            metrics.record("downlinked_bytes", totals["bytes"], t)
            metrics.record("age_s", t - chunk.end_s, t)

    Receiver(GROUND_PORT, on_chunk)
    STOP.wait()
    with lock:
        write_json("ground", {"station": me, **totals})
    return 0


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: STOP.set())
    role = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("EO_ROLE", "")
    roles = {"producer": producer, "compute": compute, "ground": ground}
    if role not in roles:
        print(f"usage: eo_pipeline.py {{{'|'.join(roles)}}} (or EO_ROLE)", file=sys.stderr)
        return 2
    with Metrics() as metrics:
        return roles[role](metrics)


if __name__ == "__main__":
    sys.exit(main())
