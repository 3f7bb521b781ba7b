"""UDP echo probes with CLOCK_MONOTONIC timestamps: a responder and a paced sender, runnable inside namespaces.

Each probe datagram carries ``magic | seq | send_ns | echo_ns | reply_ns``. The sender stamps ``send_ns`` just
before sending; the responder stamps ``echo_ns`` when the probe arrived and ``reply_ns`` just before sending it
back; the sender stamps ``recv_ns`` when the echo arrived. Every stamp is CLOCK_MONOTONIC in nanoseconds.

Arrival stamps are the **kernel's** receive timestamps (``SO_TIMESTAMPNS``, taken when the packet entered the
receiving namespace's stack, as ``ping`` does), not the moment the process woke up to read it: waking a sleeping
process costs 20-400 us on a VM and would otherwise be counted as network delay, twice per round trip. The kernel
stamps CLOCK_REALTIME; each is moved to CLOCK_MONOTONIC by the offset between the two clocks read right after
the receive (error well under a microsecond). Without a kernel stamp the user-space read time is used.

The round-trip time leaves out the responder's turnaround, as TWAMP does: ``(recv - send) - (reply - echo)``.
Within one machine all network namespaces share CLOCK_MONOTONIC (there is no time namespace here), so the stamps
also give each one-way delay: forward ``echo_ns - send_ns`` and back ``recv_ns - reply_ns``; between two
machines of a cluster they do not (each machine's monotonic clock starts at its boot), and only the round trip
is measured. A probe with no
``echo_ns`` was lost on the way out (or at the responder); one with ``echo_ns`` but no ``recv_ns`` was lost on the
way back.

Command line (what the tests run through ``ip netns exec NS``)::

    python -m lasernet.measure.probes echo  --port 7007
    python -m lasernet.measure.probes probe --target 10.0.0.1 --port 7007 --count 500 --interval-s 0.01 \
        [--wait-s 1] [--csv out.csv]          # prints the result as JSON on stdout

From Python: :class:`EchoResponder` (context manager around the responder in a namespace),
:func:`probe_from_netns` / :func:`start_probe_in_netns` (sender in a namespace), :func:`run_probe` (sender in
this process), all returning a :class:`ProbeResult`.
"""

from __future__ import annotations

import argparse
import errno
import json
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

from ..net.libc import take_realtime_priority

MAGIC = b"LNP2"
HEADER = struct.Struct("!4sIqqq")
MISSING = -1
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python 3.11 does not name it
_TIMESPEC = struct.Struct("qq")
_ANCILLARY_BYTES = socket.CMSG_SPACE(_TIMESPEC.size)


def _timestamping_socket() -> socket.socket:
    """A UDP socket with a 1 MiB receive buffer that asks the kernel to stamp every datagram it receives."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    return sock


def _receive(sock: socket.socket):
    """``(data, address, arrival_ns)``: one datagram and when the kernel received it, on CLOCK_MONOTONIC."""
    data, ancillary, _flags, addr = sock.recvmsg(2048, _ANCILLARY_BYTES)
    mono = time.monotonic_ns()
    for level, kind, raw in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(raw)
            offset = time.time_ns() - time.monotonic_ns()  # CLOCK_REALTIME - CLOCK_MONOTONIC, read now
            return data, addr, min(sec * 1_000_000_000 + nsec - offset, mono)
    return data, addr, mono


@dataclass
class ProbeResult:
    """Per-probe stamps (ns, CLOCK_MONOTONIC; ``-1`` where the probe never got that far) and derived delays."""
    seq: np.ndarray
    send_ns: np.ndarray
    echo_ns: np.ndarray
    reply_ns: np.ndarray
    recv_ns: np.ndarray
    interval_s: float

    @property
    def delivered(self) -> np.ndarray:
        return self.recv_ns != MISSING

    @property
    def reached_responder(self) -> np.ndarray:
        return self.echo_ns != MISSING

    @property
    def rtt_s(self) -> np.ndarray:
        """Round-trip times of delivered probes without the responder's turnaround, s."""
        ok = self.delivered
        return ((self.recv_ns[ok] - self.send_ns[ok]) - (self.reply_ns[ok] - self.echo_ns[ok])) / 1e9

    @property
    def forward_s(self) -> np.ndarray:
        """One-way sender->responder delays of probes that reached the responder, s."""
        ok = self.reached_responder
        return (self.echo_ns[ok] - self.send_ns[ok]) / 1e9

    @property
    def back_s(self) -> np.ndarray:
        """One-way responder->sender delays of delivered probes, s."""
        ok = self.delivered
        return (self.recv_ns[ok] - self.reply_ns[ok]) / 1e9

    @property
    def forward_loss(self) -> float:
        """Fraction of probes that never reached the responder."""
        return float(np.mean(~self.reached_responder))

    @property
    def back_loss(self) -> float:
        """Fraction of probes that reached the responder but whose echo never came back."""
        reached = self.reached_responder
        return float(np.mean(~self.delivered[reached])) if reached.any() else float("nan")

    def to_json(self) -> str:
        """The stamps as JSON, with this machine's CLOCK_REALTIME - CLOCK_MONOTONIC (ns): what places them in
        another machine's time (a cluster's coordinator runs elsewhere; monotonic clocks are per machine)."""
        return json.dumps({"interval_s": self.interval_s, "seq": self.seq.tolist(), "send_ns": self.send_ns.tolist(),
                           "echo_ns": self.echo_ns.tolist(), "reply_ns": self.reply_ns.tolist(),
                           "recv_ns": self.recv_ns.tolist(),
                           "realtime_minus_monotonic_ns": time.time_ns() - time.monotonic_ns()})

    @classmethod
    def from_json(cls, text: str) -> "ProbeResult":
        d = json.loads(text)
        return cls(*(np.asarray(d[k], dtype=np.int64) for k in ("seq", "send_ns", "echo_ns", "reply_ns", "recv_ns")),
                   interval_s=float(d["interval_s"]))

    def to_csv(self, path: str) -> None:
        """Write one row per probe: seq, send_ns, echo_ns, reply_ns, recv_ns (``-1`` where missing)."""
        table = np.column_stack([self.seq, self.send_ns, self.echo_ns, self.reply_ns, self.recv_ns])
        np.savetxt(path, table, fmt="%d", delimiter=",", header="seq,send_ns,echo_ns,reply_ns,recv_ns",
                   comments="")


# --------------------------------------------------------------------------------------------------------------
# In-process sender and responder
# --------------------------------------------------------------------------------------------------------------

def echo_serve(port: int, bind_ip: str = "0.0.0.0", ready=None, record: str | None = None) -> None:
    """Answer probes on ``bind_ip:port`` forever, stamping arrival and reply; ``ready()`` is called once bound.

    With ``record``, also append ``seq,send_ns,echo_ns`` of every probe received to that file (line-buffered):
    which probes made it one way, whatever happened to their echo on the way back.
    """
    sock = _timestamping_socket()
    sock.bind((bind_ip, port))
    log = open(record, "w", buffering=1) if record else None
    if ready:
        ready()
    pack_into, now_ns = HEADER.pack_into, time.monotonic_ns
    try:
        while True:
            data, addr, stamp = _receive(sock)
            if len(data) < HEADER.size or data[:4] != MAGIC:
                continue
            buf = bytearray(data)
            magic, seq, send_ns, _, _ = HEADER.unpack_from(buf)
            pack_into(buf, 0, magic, seq, send_ns, stamp, now_ns())
            try:
                sock.sendto(buf, addr)
            except OSError:  # no route back right now (a link is down): the echo is lost, the responder lives on
                pass
            if log:
                log.write(f"{seq},{send_ns},{stamp}\n")
    finally:
        if log:
            log.close()


def read_record(path: str) -> np.ndarray:
    """Sequence numbers an echo responder recorded as received (see ``echo_serve(record=...)``)."""
    try:
        rows = [line.split(",") for line in open(path).read().splitlines() if line]
    except FileNotFoundError:
        return np.zeros(0, dtype=np.int64)
    return np.array([int(r[0]) for r in rows], dtype=np.int64)


def terminate(proc: subprocess.Popen, timeout_s: float = 5.0) -> None:
    """SIGTERM ``proc``, SIGKILL it if it has not exited ``timeout_s`` later, and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_probe(target_ip: str, port: int, count: int, interval_s: float, wait_s: float = 1.0,
              size_bytes: int = 64) -> ProbeResult:
    """Send ``count`` probes every ``interval_s`` to an echo responder; collect echoes until ``wait_s`` after the last."""
    if count <= 0 or interval_s <= 0:
        raise ValueError(f"count ({count}) and interval_s ({interval_s}) must be positive")
    size_bytes = max(size_bytes, HEADER.size)
    send_ns = np.full(count, MISSING, dtype=np.int64)
    echo_ns = np.full(count, MISSING, dtype=np.int64)
    reply_ns = np.full(count, MISSING, dtype=np.int64)
    recv_ns = np.full(count, MISSING, dtype=np.int64)
    stamps = (echo_ns, reply_ns, recv_ns)
    sock = _timestamping_socket()
    sock.setblocking(False)
    connected = _connect(sock, target_ip, port)
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    payload = bytearray(size_bytes)
    start_ns = time.monotonic_ns()
    interval_ns = round(interval_s * 1e9)
    try:
        try:
            for seq in range(count):
                _receive_until(sock, poller, start_ns + seq * interval_ns, stamps)
                stamp = time.monotonic_ns()
                HEADER.pack_into(payload, 0, MAGIC, seq, stamp, MISSING, MISSING)
                send_ns[seq] = stamp
                try:
                    connected = connected or _connect(sock, target_ip, port)
                    if connected:
                        sock.send(payload)
                except OSError:  # e.g. ENOBUFS or the route is gone while a link is down: the probe is lost
                    pass
        except KeyboardInterrupt:  # asked to stop early (SIGINT): keep what was sent, still collect late echoes
            pass
        try:
            _receive_until(sock, poller, time.monotonic_ns() + round(wait_s * 1e9), stamps)
        except KeyboardInterrupt:  # asked again: report what arrived so far
            pass
    finally:
        sock.close()
    return ProbeResult(np.arange(count, dtype=np.int64), send_ns, echo_ns, reply_ns, recv_ns, interval_s)


def _connect(sock, target_ip: str, port: int) -> bool:
    """Connect the UDP socket to the target; False while there is no route yet (routing daemons still
    converging): the probes sent meanwhile count as lost."""
    try:
        sock.connect((target_ip, port))
        return True
    except OSError as exc:
        if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return False
        raise


def _receive_until(sock, poller, deadline_ns: int, stamps) -> None:
    echo_ns, reply_ns, recv_ns = stamps
    count = len(recv_ns)
    while True:
        left_ms = (deadline_ns - time.monotonic_ns()) / 1e6
        if left_ms <= 0:
            return
        if not poller.poll(left_ms):
            continue
        while True:
            try:
                data, _addr, stamp = _receive(sock)
            except (BlockingIOError, ConnectionRefusedError):
                break
            if len(data) < HEADER.size or data[:4] != MAGIC:
                continue
            _, seq, _, echoed, replied = HEADER.unpack_from(data)
            if seq < count and recv_ns[seq] == MISSING:
                echo_ns[seq], reply_ns[seq], recv_ns[seq] = echoed, replied, stamp


# --------------------------------------------------------------------------------------------------------------
# Running them inside namespaces
# --------------------------------------------------------------------------------------------------------------

def _in_netns(ns: str, args: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, "-m", "lasernet.measure.probes", *args]


class EchoResponder:
    """An echo responder process in namespace ``ns`` on UDP ``port``: ``with EchoResponder(ns, port): ...``."""

    def __init__(self, ns: str, port: int, rt_priority: int = 0, timeout_s: float = 10.0):
        self.ns, self.port, self.rt_priority, self.timeout_s = ns, port, rt_priority, timeout_s
        self.proc: subprocess.Popen | None = None

    def start(self) -> "EchoResponder":
        self.proc = subprocess.Popen(_in_netns(self.ns, ["echo", "--port", str(self.port),
                                                              "--rt-priority", str(self.rt_priority)]),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout_s)
            line = self.proc.stdout.readline() if ready else b""
            if line.strip() != b"ready":
                raise RuntimeError(f"echo responder in namespace {self.ns} port {self.port} did not start: "
                                   f"{line!r} {self._stderr()}")
        except BaseException:
            self.stop()
            raise
        return self

    def _stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        return self.proc.stderr.read().decode(errors="replace")

    def stop(self) -> None:
        if self.proc is None:
            return
        terminate(self.proc, timeout_s=10)
        self.proc.stdout.close()
        self.proc.stderr.close()
        self.proc = None

    def __enter__(self) -> "EchoResponder":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def start_probe_in_netns(ns: str, target_ip: str, port: int, count: int, interval_s: float,
                         wait_s: float = 1.0, size_bytes: int = 64, rt_priority: int = 0) -> subprocess.Popen:
    """Start a sender in namespace ``ns`` in the background; pass the Popen to :func:`finish_probe`."""
    args = ["probe", "--target", target_ip, "--port", str(port), "--count", str(count),
            "--interval-s", repr(interval_s), "--wait-s", repr(wait_s), "--size-bytes", str(size_bytes),
            "--rt-priority", str(rt_priority)]
    return subprocess.Popen(_in_netns(ns, args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def finish_probe(proc: subprocess.Popen, timeout_s: float = 120.0) -> ProbeResult:
    """Wait for a sender started by :func:`start_probe_in_netns` and return its result (kill it on timeout)."""
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"probe sender failed ({proc.returncode}): {err.decode(errors='replace')}")
    return ProbeResult.from_json(out)


def probe_from_netns(ns: str, target_ip: str, port: int, count: int, interval_s: float, wait_s: float = 1.0,
                     size_bytes: int = 64, rt_priority: int = 0) -> ProbeResult:
    """Run a sender in namespace ``ns`` to completion and return its result."""
    proc = start_probe_in_netns(ns, target_ip, port, count, interval_s, wait_s, size_bytes, rt_priority)
    return finish_probe(proc, timeout_s=count * interval_s + wait_s + 60)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m lasernet.measure.probes", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("echo", help="answer probes")
    e.add_argument("--port", type=int, required=True)
    e.add_argument("--bind", default="0.0.0.0")
    e.add_argument("--record", help="append seq,send_ns,echo_ns of every probe received to this file")
    e.add_argument("--rt-priority", type=int, default=0, help="SCHED_FIFO priority (0: stay SCHED_OTHER)")
    s = sub.add_parser("probe", help="send probes, print the result as JSON")
    s.add_argument("--target", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--interval-s", type=float, required=True)
    s.add_argument("--wait-s", type=float, default=1.0)
    s.add_argument("--size-bytes", type=int, default=64)
    s.add_argument("--csv", help="also write one row per probe to this CSV file")
    s.add_argument("--rt-priority", type=int, default=0, help="SCHED_FIFO priority (0: stay SCHED_OTHER)")
    args = p.parse_args(argv)
    # SIGINT is how a prober is told to stop early and report: take it even if this process was started with
    # SIGINT ignored, as every child of a run started in the background (`&`, nohup) is (Python then installs
    # no KeyboardInterrupt of its own, and the prober would probe on until its count ran out).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    refused = take_realtime_priority(args.rt_priority)  # SCHED_FIFO: steadier stamps on a busy machine
    if refused is not None:
        print(f"probes: SCHED_FIFO priority {args.rt_priority} refused ({refused}); stamps may be noisier",
              file=sys.stderr)
    if args.cmd == "echo":
        def ready():
            print("ready", flush=True)
        try:
            echo_serve(args.port, args.bind, ready=ready, record=args.record)
        except KeyboardInterrupt:
            pass
        return 0
    result = run_probe(args.target, args.port, args.count, args.interval_s, args.wait_s, args.size_bytes)
    if args.csv:
        result.to_csv(args.csv)
    sys.stdout.write(result.to_json() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
