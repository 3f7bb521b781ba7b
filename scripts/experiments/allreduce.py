"""Ring all-reduce of large messages between satellites, the traffic pattern of data-parallel training.

Run by a workload command on every node of the ring (``nodes: [sat-0-0, sat-2-1, ...]``, or servers of ``hosts:``
attached to satellites): the ring is the command's ``LASERNET_GROUP`` in order, member k sends to member k+1. Each
member holds ``MESSAGE_MB`` of float32 "gradients"; a round is the bandwidth-optimal ring all-reduce: n-1
reduce-scatter steps then n-1 all-gather steps, each moving 1/n of the message to the next member over one TCP
connection kept for the whole run, sending and receiving at once. The result is checked (every element must equal
the sum of all members' values).

Before each round member 0 sends a 1-byte token around the ring twice (every member forwards it): the first lap is
a barrier, the second, on a ring where every member is already waiting, measures the ring's latency, which
geometry sets: the sum of one-way path delays between consecutive members.

With ``COMPUTE_ITERS`` set, a round begins with a compute phase on every member, the "forward and backward pass"
of a training step: ``COMPUTE_ITERS`` steps of a 31-bit linear congruential generator in a pure-Python loop, the
same fixed amount of CPU work every round on every member (single-threaded, no numpy, no I/O: ~70 ns a step on
this project's machines, so 3,000,000 are ~0.2 s of CPU). Its wall time is what the member's CPU quota makes of
it: on a server of ``hosts:`` with ``cpus: 0.2`` it takes five times its CPU time, twice that when the satellite's
power state throttles the quota to half, and it stops while the server is frozen (``off``). Every member records
the metrics ``compute_s`` (wall) and ``compute_cpu_s`` (its thread's CPU time) at the phase's start; the
all-reduce that follows waits for the slowest member's compute.

Member 0 writes ``rounds.csv`` (``round,t_start_s,round_s,token_ring_ms,predicted_ring_ms,bytes,ok,compute_s,
compute_cpu_s,barrier_ms``): ``t_start_s`` is the round's start in emulated seconds, ``round_s`` the wall time
from there to the end of the all-reduce (the compute phase included; without ``COMPUTE_ITERS`` the all-reduce
alone, and the two compute columns empty), ``compute_s`` and ``compute_cpu_s`` member 0's own, ``barrier_ms`` the
first token lap (it includes the wait for whoever lagged, a frozen member too). It records the metrics
``round_s``, ``token_ring_ms`` and ``predicted_ring_ms`` (the plan's light time around the ring at the round's
start: shortest-delay paths over the links up in the run's ``plan.npz``, as the oracle routes them, between the
members' satellites or stations; a server is placed at the router it is attached to, from ``LASERNET_NODES``;
failure injection is not in the plan). Member 0 pauses ``PAUSE_S`` between rounds; the rounds repeat until
SIGTERM.
"""

import csv
import json
import os
import signal
import socket
import struct
import sys
import threading
import time

import numpy as np

from lasernet.measure.appmetrics import Metrics

PORT = 7300
STOP = threading.Event()


def recv_exact(sock: socket.socket, view: memoryview) -> None:
    while len(view):
        n = sock.recv_into(view)
        if n == 0:
            raise ConnectionError("ring neighbour closed the connection")
        view = view[n:]


def connect(ip: str, deadline: float) -> socket.socket:
    while True:
        try:
            sock = socket.create_connection((ip, PORT), timeout=5)
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError:
            if time.monotonic() > deadline or STOP.is_set():
                raise
            time.sleep(0.2)


def compute(iters: int) -> int:
    """The fixed CPU work of one round: ``iters`` steps of a 31-bit linear congruential generator."""
    x = 1
    for _ in range(iters):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    return x


def routers(members: list[str]) -> list[str]:
    """The router of each member: itself, or for a server of ``hosts:`` the node it is attached to."""
    path = os.environ.get("LASERNET_NODES")
    nodes = json.load(open(path)) if path and os.path.exists(path) else {}
    return [nodes.get(m, {}).get("attach", m) for m in members]


def predictor(members: list[str]):
    """A function t_s -> the plan's one-way light time around the ring (ms), or None without a plan."""
    from lasernet.routing import oracle
    from lasernet.timeline import Timeline

    path = os.path.join(os.environ.get("LASERNET_RUN_DIR", "."), "plan.npz")
    if not os.path.exists(path):
        return lambda t_s: None
    tl = Timeline.load(path)
    idx = [tl.node_names.index(m) for m in routers(members)]

    def ring_ms(t_s: float):
        up, delay = tl.state_at(t_s)
        routes = oracle.compute(len(tl.node_names), tl.links.a, tl.links.b, up, np.nan_to_num(delay))
        total = sum(routes.delay_s[idx[k], idx[(k + 1) % len(idx)]] for k in range(len(idx)))
        return float(total) * 1e3 if np.isfinite(total) else None

    return ring_ms


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: STOP.set())
    members = [e.split("=", 1) for e in os.environ["LASERNET_GROUP"].split()]
    n, k = len(members), int(os.environ["LASERNET_INDEX"])
    floats = int(float(os.environ.get("MESSAGE_MB", "4")) * (1 << 20) / 4) // n * n
    pause_s = float(os.environ.get("PAUSE_S", "1"))
    iters = int(float(os.environ.get("COMPUTE_ITERS", "0")))
    listener = socket.create_server((members[k][1], PORT))
    nxt = connect(members[(k + 1) % n][1], time.monotonic() + 60)
    prev, _ = listener.accept()
    prev.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    metrics = Metrics() if k == 0 or iters else None
    predict = predictor([m[0] for m in members]) if k == 0 else None
    out = open("rounds.csv", "w", newline="", buffering=1) if k == 0 else None
    writer = csv.writer(out) if out else None
    if writer:
        writer.writerow(["round", "t_start_s", "round_s", "token_ring_ms", "predicted_ring_ms", "bytes", "ok",
                         "compute_s", "compute_cpu_s", "barrier_ms"])
    token = bytearray(1)
    r = 0
    try:
        while not STOP.is_set():
            # the token, twice around the ring: the first lap is a barrier (a member forwards it only once its
            # previous round is over, so the lap's time includes whoever lagged); the second lap finds every
            # member already waiting on an idle ring and measures the ring's latency alone.
            barrier = time.monotonic()
            for lap in range(2):
                t0 = time.monotonic()
                if k == 0:
                    nxt.sendall(struct.pack("B", (2 * r + lap) % 256))
                    recv_exact(prev, memoryview(token))
                else:
                    recv_exact(prev, memoryview(token))
                    nxt.sendall(token)
            token_ms = (time.monotonic() - t0) * 1e3
            barrier_ms = (t0 - barrier) * 1e3
            start = time.monotonic()
            compute_s = compute_cpu_s = None
            if iters:  # the round's compute phase: fixed CPU work, as long as this member's quota makes it
                cpu0 = time.thread_time()
                compute(iters)
                compute_s, compute_cpu_s = time.monotonic() - start, time.thread_time() - cpu0
                metrics.record("compute_s", compute_s, metrics.now_s(start))
                metrics.record("compute_cpu_s", compute_cpu_s, metrics.now_s(start))
            data = np.full(floats, float(k + r), dtype=np.float32)
            chunks = np.split(data, n)
            incoming = np.empty(floats // n, dtype=np.float32)
            for step in range(2 * (n - 1)):
                if step < n - 1:  # reduce-scatter
                    send_i, recv_i = (k - step) % n, (k - step - 1) % n
                else:  # all-gather
                    s = step - (n - 1)
                    send_i, recv_i = (k + 1 - s) % n, (k - s) % n
                sender = threading.Thread(target=nxt.sendall, args=(chunks[send_i].tobytes(),))
                sender.start()
                recv_exact(prev, memoryview(incoming).cast("B"))
                sender.join()
                if step < n - 1:
                    chunks[recv_i] += incoming
                else:
                    chunks[recv_i][:] = incoming
            round_s = time.monotonic() - start
            ok = bool(np.all(data == n * r + n * (n - 1) / 2))
            if k == 0:
                t_start = metrics.now_s(start)
                predicted = predict(t_start)
                writer.writerow([r, f"{t_start:.3f}", f"{round_s:.4f}", f"{token_ms:.3f}",
                                 "" if predicted is None else f"{predicted:.3f}", data.nbytes, int(ok),
                                 "" if compute_s is None else f"{compute_s:.4f}",
                                 "" if compute_cpu_s is None else f"{compute_cpu_s:.4f}", f"{barrier_ms:.3f}"])
                metrics.record("round_s", round_s, t_start)
                metrics.record("token_ring_ms", token_ms, t_start)
                if predicted is not None:
                    metrics.record("predicted_ring_ms", predicted, t_start)
            if not ok:
                print(f"round {r}: wrong result", file=sys.stderr)
                return 1
            r += 1
            if k == 0:  # the others wait for the next barrier token instead
                STOP.wait(pause_s)
    except (ConnectionError, OSError) as exc:
        if not STOP.is_set():
            print(f"ring broken in round {r}: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
