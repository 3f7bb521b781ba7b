#!/usr/bin/env python3
"""Benchmark the delay-line relay: frames/s it forwards on one core, and what a 3,000-link update costs.

Run as root from the repository (``.venv/bin/python scripts/bench/delayline.py``). It builds its own namespaces
(``lnb-<pid>-*``), removes them on every exit path, and prints numbers; it asserts nothing.

1. **Forwarding rate.** One link; a raw AF_PACKET sender in namespace a floods 60-byte Ethernet frames into its
   TAP as fast as Python can (addressed to a MAC nobody has, so namespace b drops them cheaply at L2: we time
   the relay, not a receiver). Reported: frames/s forwarded (relay ``tx`` counter over wall time) and frames per
   relay CPU-second (utime+stime of the relay from /proc), with delay 0 and delay 5 ms.
2. **Batch parameter update.** ``--links`` links (default 3,000) between two namespaces; every link's delay is
   changed, three ways, each timed until the relay has applied it:
   the shared table (one ``set_many`` + ``commit`` + wait for the applied generation); one control-socket
   message per link; one ``tc`` subprocess per link (``tc qdisc replace ... tbf``: what a qdisc backend does per
   link, timed on ``--tc-sample`` links and scaled up, since 3,000 subprocesses take a while). Ratios printed.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time

import numpy as np

from lasernet.net.delayline.client import Relay


def sh(*cmd: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return proc.stdout


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_netns(name: str) -> None:
    sh("ip", "netns", "add", name)
    sh("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
       "net.ipv6.conf.default.disable_ipv6=1")


def delete_netns(names: list[str]) -> float:
    """Delete the namespaces that still exist; return how long it took, s."""
    start = time.monotonic()
    existing = set(sh("ip", "netns", "list").split())
    for name in names:
        if name in existing:
            subprocess.run(["ip", "netns", "del", name], check=False)
    return time.monotonic() - start


# ---- 1. forwarding rate -----------------------------------------------------------------------------------------

def flood(ifname: str, seconds: float) -> None:
    """(runs inside namespace a) send 60-byte frames on ``ifname`` for ``seconds``; print how many."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((ifname, 0))
    frame = bytes.fromhex("020000000099" "020000000098" "88b5") + bytes(46)  # local experimental ethertype
    send, sent, deadline = sock.send, 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(1000):
            try:
                send(frame)
                sent += 1
            except OSError:
                pass
    print(sent)


def bench_forwarding(seconds: float, prefix: str) -> None:
    names = [f"{prefix}-fa", f"{prefix}-fb"]
    relay = Relay(f"{prefix}-f", n_slots=4, log_path=f"/tmp/{prefix}-f.log")
    try:
        for name in names:
            make_netns(name)
        relay.start()
        relay.add_link(names[0], "to-b", names[1], "to-a", slot=0)
        print(f"relay pid {relay.pid}; {os.cpu_count()} cores; sender and relay share them with anything else")
        for delay_s in (0.0, 0.005):
            relay.set(0, delay_s=delay_s)
            relay.commit()
            tx0, cpu0, t0 = relay.stats()[0]["dirs"][0]["tx"], cpu_seconds(relay.pid), time.monotonic()
            sent = int(sh("ip", "netns", "exec", names[0], sys.executable, os.path.abspath(__file__), "flood",
                          "--ifname", "to-b", "--seconds", str(seconds)).strip())
            time.sleep(delay_s + 0.05)
            stats = relay.stats()[0]["dirs"][0]
            wall, cpu = time.monotonic() - t0, cpu_seconds(relay.pid) - cpu0
            forwarded = stats["tx"] - tx0
            print(f"  delay {delay_s * 1e3:4.1f} ms: offered {sent / seconds:9,.0f} frames/s, forwarded "
                  f"{forwarded / wall:9,.0f} frames/s wall, {forwarded / cpu:9,.0f} frames per relay CPU-second "
                  f"(relay CPU {cpu / wall:.0%}), release late mean {stats['release_late_us_mean']:.1f} us")
    finally:
        relay.stop()
        delete_netns(names)


# ---- 2. batch parameter update ----------------------------------------------------------------------------------

def bench_update(n_links: int, tc_sample: int, prefix: str) -> None:
    names = [f"{prefix}-ua", f"{prefix}-ub"]
    relay = Relay(f"{prefix}-u", n_slots=max(n_links, 1), log_path=f"/tmp/{prefix}-u.log")
    try:
        for name in names:
            make_netns(name)
        relay.start()
        start = time.monotonic()
        for slot in range(n_links):
            relay.add_link(names[0], f"l{slot}", names[1], f"l{slot}", slot)
        create_s = time.monotonic() - start
        print(f"created {n_links} links ({2 * n_links} TAPs, tap_mode=inside) in {create_s:.1f} s "
              f"({create_s / n_links * 1e3:.2f} ms per link)")
        move_relay = Relay(f"{prefix}-m", n_slots=20, tap_mode="move", log_path=f"/tmp/{prefix}-m.log")
        try:
            move_relay.start()
            start = time.monotonic()
            for slot in range(20):
                move_relay.add_link(names[0], f"m{slot}", names[1], f"m{slot}", slot)
            move_s = (time.monotonic() - start) / 20
            print(f"  (tap_mode=move: {move_s * 1e3:.1f} ms per link, measured on 20)")
        finally:
            move_relay.stop()
        slots = np.arange(n_links)
        table_s = []
        for i in range(20):
            relay.table.set_many(slots, delay_s=0.001 + 0.0001 * ((slots + i) % 100))
            start = time.monotonic()
            relay.commit()
            table_s.append(time.monotonic() - start)
        table_s = float(np.median(table_s))
        print(f"  shared table : {table_s * 1e3:8.2f} ms for {n_links} links (median of 20 commits, until applied)")
        start = time.monotonic()
        for slot in range(n_links):
            relay.request({"op": "set", "slot": slot, "delay_s": 0.002})
        message_s = time.monotonic() - start
        print(f"  per-link msg : {message_s * 1e3:8.2f} ms for {n_links} links (one control-socket round trip each)")
        sample = min(tc_sample, n_links)
        start = time.monotonic()
        for slot in range(sample):
            sh("tc", "-n", names[0], "qdisc", "replace", "dev", f"l{slot}", "root", "tbf", "rate", "100mbit",
               "burst", "32kb", "latency", "50ms")
        tc_s = (time.monotonic() - start) / sample * n_links
        print(f"  tc per link  : {tc_s * 1e3:8.2f} ms for {n_links} links (measured on {sample}, scaled)")
        print(f"  ratio: per-link messages / table = {message_s / table_s:,.0f}x; "
              f"tc subprocesses / table = {tc_s / table_s:,.0f}x")
    finally:
        ns_s = delete_netns(names)
        start = time.monotonic()
        relay.stop()
        print(f"teardown: namespaces deleted in {ns_s:.2f} s, relay stopped in {time.monotonic() - start:.2f} s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd")
    f = sub.add_parser("flood", help="(internal) sender run inside namespace a")
    f.add_argument("--ifname", required=True)
    f.add_argument("--seconds", type=float, required=True)
    p.add_argument("--seconds", type=float, default=5.0, help="flood duration per delay setting")
    p.add_argument("--links", type=int, default=3000)
    p.add_argument("--tc-sample", type=int, default=300)
    p.add_argument("--skip-forwarding", action="store_true")
    p.add_argument("--skip-update", action="store_true")
    args = p.parse_args()
    if args.cmd == "flood":
        flood(args.ifname, args.seconds)
        return 0
    if os.geteuid() != 0:
        print("bench needs root (it creates network namespaces)", file=sys.stderr)
        return 2
    prefix = f"lnb-{os.getpid()}"
    if not args.skip_forwarding:
        print("== forwarding rate (one link, 60-byte frames)")
        bench_forwarding(args.seconds, prefix)
    if not args.skip_update:
        print(f"== batch update of {args.links} links")
        bench_update(args.links, args.tc_sample, prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
