"""Measure UDP round-trip time with the monotonic clock: an echoer and a prober, one small file, stdlib only.

Each probe datagram carries its sequence number and the prober's ``time.monotonic_ns()`` at sending; the echoer
sends every datagram back unchanged; the prober takes the RTT as its receive time minus the carried send time, so
both timestamps come from one clock in one process (no clock sync, no parsing of ping's text)::

    python3 udp_rtt.py echo --bind 10.200.0.1 --port 7007 --lifetime 300      # prints "ready" once bound
    python3 udp_rtt.py probe --to 10.200.0.1 --port 7007 --count 400 --interval 0.005

``probe`` sends ``count`` datagrams ``interval`` seconds apart (without waiting for replies, unless
``--one-at-a-time``; with ``--jitter F`` each gap is drawn uniformly from ``interval * (1 +/- F)``, so that the
sends fall at every phase of a delay that is a multiple of the interval instead of always colliding with the
moment a delayed reply comes back), then waits up to ``--wait`` seconds for the last replies, and prints one
JSON object: ``sent``, ``received``, ``lost``, ``duplicates``, ``send_errors``, ``interval_s``, ``jitter``,
``rtt_ms`` (one entry per reply, in order of sequence number) and ``median_ms``, ``p10_ms``, ``p90_ms``,
``min_ms``, ``max_ms`` (null when nothing came back). Both sides stop by themselves.
"""

from __future__ import annotations

import argparse
import json
import random
import select
import socket
import statistics
import struct
import sys
import time

HEADER = struct.Struct("!IQ")  # sequence number, send time in ns (prober's monotonic clock)


def echo(bind: str, port: int, lifetime_s: float) -> None:
    """Send every datagram back to where it came from, until ``lifetime_s`` has passed."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((bind, port))
    print("ready", flush=True)
    end = time.monotonic() + lifetime_s
    while (left := end - time.monotonic()) > 0:
        readable, _, _ = select.select([sock], [], [], min(left, 1.0))
        if readable:
            data, peer = sock.recvfrom(65535)
            sock.sendto(data, peer)


def _quantile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def probe(to: str, port: int, count: int, interval_s: float, wait_s: float, size: int,
          one_at_a_time: bool = False, jitter: float = 0.0) -> dict:
    """Send ``count`` timestamped datagrams and collect the echoes; return the statistics described above.

    ``one_at_a_time``: wait for each reply (at most ``wait_s``) before sending the next probe, so that no probe
    queues behind another one (on a slow machine pipelined probes measure their own backlog too)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((to, port))
    sock.setblocking(False)
    padding = b"\0" * max(0, size - HEADER.size)
    rtt_ns: dict[int, int] = {}
    duplicates = send_errors = 0
    gaps = random.Random(count)  # seeded: the same schedule every run

    def gap_s() -> float:
        return interval_s * (1.0 + gaps.uniform(-jitter, jitter))

    def receive_until(deadline: float, want: int | None = None) -> None:
        """Take replies until ``deadline``, or until the reply to probe ``want`` is in."""
        nonlocal duplicates
        while (left := deadline - time.monotonic()) > 0 and want not in rtt_ns:
            readable, _, _ = select.select([sock], [], [], left)
            if not readable:
                return
            try:
                data = sock.recv(65535)
            except (BlockingIOError, ConnectionRefusedError):
                continue
            now = time.monotonic_ns()
            seq, sent_ns = HEADER.unpack_from(data)
            if seq in rtt_ns:
                duplicates += 1
            else:
                rtt_ns[seq] = now - sent_ns

    next_send = time.monotonic()
    for seq in range(count):
        receive_until(next_send)
        try:
            sock.send(HEADER.pack(seq, time.monotonic_ns()) + padding)
        except ConnectionRefusedError:  # an ICMP error for an earlier probe surfaced here; this one is lost
            send_errors += 1
        if one_at_a_time:
            receive_until(time.monotonic() + wait_s, want=seq)
            next_send = max(next_send + gap_s(), time.monotonic())
        else:
            next_send += gap_s()
    last_deadline = time.monotonic() + wait_s
    while len(rtt_ns) < count and time.monotonic() < last_deadline:
        receive_until(min(last_deadline, time.monotonic() + 0.05))

    rtts_ms = [rtt_ns[seq] / 1e6 for seq in sorted(rtt_ns)]
    ordered = sorted(rtts_ms)
    stats = {
        "sent": count,
        "received": len(rtts_ms),
        "lost": count - len(rtts_ms),
        "duplicates": duplicates,
        "send_errors": send_errors,
        "interval_s": interval_s,
        "jitter": jitter,
        "one_at_a_time": one_at_a_time,
        "median_ms": statistics.median(ordered) if ordered else None,
        "p10_ms": _quantile(ordered, 0.10) if ordered else None,
        "p90_ms": _quantile(ordered, 0.90) if ordered else None,
        "min_ms": ordered[0] if ordered else None,
        "max_ms": ordered[-1] if ordered else None,
        "rtt_ms": [round(r, 4) for r in rtts_ms],
    }
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    e = sub.add_parser("echo", help="echo datagrams back")
    e.add_argument("--bind", required=True)
    e.add_argument("--port", type=int, default=7007)
    e.add_argument("--lifetime", type=float, default=300, help="seconds before exiting (default 300)")
    p = sub.add_parser("probe", help="send timestamped probes, print JSON statistics")
    p.add_argument("--to", required=True)
    p.add_argument("--port", type=int, default=7007)
    p.add_argument("--count", type=int, default=400)
    p.add_argument("--interval", type=float, default=0.005, help="seconds between probes (default 0.005)")
    p.add_argument("--wait", type=float, default=2.0, help="seconds to wait for the last replies (default 2)")
    p.add_argument("--size", type=int, default=64, help="datagram payload bytes (default 64)")
    p.add_argument("--one-at-a-time", action="store_true", help="wait for each reply before the next probe")
    p.add_argument("--jitter", type=float, default=0.0, help="each gap uniform in interval * (1 +/- JITTER)")
    args = parser.parse_args(argv)
    if args.mode == "echo":
        echo(args.bind, args.port, args.lifetime)
    else:
        json.dump(probe(args.to, args.port, args.count, args.interval, args.wait, args.size, args.one_at_a_time,
                        args.jitter), sys.stdout)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
