#!/usr/bin/env python3
"""UDP probes for attack experiments: a sender of numbered datagrams, and a listener that records each arrival.

``send --bind ADDR --to ADDR --port P --rate-hz R --name NAME --log FILE``: datagram k, ``NAME k SENT_NS``
(CLOCK_MONOTONIC ns), from ADDR at ``start_ns + k / R`` until killed, ``{"start_ns", "rate_hz"}`` in FILE; ``listen --port P --out FILE``: every datagram that reaches this
node's port P as a CSV row ``recv_ns,src,name,seq,sent_ns`` (CLOCK_MONOTONIC ns, which every namespace of the
machine shares with the driver), flushed at once so that what arrived before a kill is kept.
"""

from __future__ import annotations

import argparse
import json
import socket
import time


def send(args) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.bind, 0))
    period_ns, seq = int(1e9 / args.rate_hz), 0
    next_ns = time.monotonic_ns()
    with open(args.log, "w") as f:
        json.dump({"start_ns": next_ns, "rate_hz": 1e9 / period_ns}, f)
    while True:
        try:
            sock.sendto(f"{args.name} {seq} {time.monotonic_ns()}".encode(), (args.to, args.port))
        except OSError:  # no route now (a black hole while the routing converges): the probe is lost
            pass
        seq += 1
        next_ns += period_ns
        time.sleep(max(0.0, (next_ns - time.monotonic_ns()) / 1e9))


def listen(args) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", args.port))
    with open(args.out, "w", buffering=1) as out:
        out.write("recv_ns,src,name,seq,sent_ns\n")
        while True:
            data, (src, _port) = sock.recvfrom(2048)
            now = time.monotonic_ns()
            parts = data.decode(errors="replace").split()
            if len(parts) == 3:
                out.write(f"{now},{src},{parts[0]},{parts[1]},{parts[2]}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("send")
    s.add_argument("--bind", required=True)
    s.add_argument("--to", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--rate-hz", type=float, default=20.0)
    s.add_argument("--name", required=True)
    s.add_argument("--log", required=True)
    lst = sub.add_parser("listen")
    lst.add_argument("--port", type=int, required=True)
    lst.add_argument("--out", required=True)
    args = ap.parse_args()
    send(args) if args.mode == "send" else listen(args)


if __name__ == "__main__":
    main()
