"""Routers' FIBs read by each machine's own reader, judged by one watcher: what a cluster does, on this kernel.

On a cluster the coordinator cannot open another machine's namespaces, so each host reads its own routers' FIBs
(:class:`~lasernet.routing.convergence.FibReader` in a :class:`~lasernet.routing.convergence.FibReaderThread`)
and the watcher is fed their changes (:meth:`FibWatcher.feed`). Here three namespaces the test makes are three
routers in a chain a - b - c, two links (slots 0 and 1, addresses from lasernet's link pool), each router's
loopback /32 from the loopback pool; routers a and c are read by one "machine"'s reader, b by another's. The
routes are written with ``ip route`` and read back with ``ip -j route`` (the independent reference): what the
readers report must be the next-hop slots ``ip`` shows, a fed watcher must hold the same FIBs as a watcher that
reads every namespace itself, and both must judge the same: every pair delivered, then one black hole.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import time
from types import SimpleNamespace

import numpy as np
import pytest

from lasernet.addressing import LINK_POOL, loopback_ip
from lasernet.routing.convergence import FibReader, FibReaderThread, FibWatcher

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")

LINKS = [(0, 1), (1, 2)]  # slot -> (end a, end b): a - b - c
WAIT_S = 5.0


def link_ip(slot: int, end: int) -> str:
    return str(LINK_POOL.network_address + 2 * slot + end)


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def chain():
    names = [f"lnfr-{x}-{os.getpid()}" for x in "abc"]
    made = []
    try:
        for name in names:
            sh("ip", "netns", "add", name)
            made.append(name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
        for i, name in enumerate(names):
            sh("ip", "-n", name, "addr", "add", f"{loopback_ip(i)}/32", "dev", "lo")
        for slot, (a, b) in enumerate(LINKS):
            ea, eb = f"s{slot}a", f"s{slot}b"
            sh("ip", "link", "add", ea, "netns", names[a], "type", "veth", "peer", "name", eb, "netns", names[b])
            for node, dev, end in ((a, ea, 0), (b, eb, 1)):
                sh("ip", "-n", names[node], "addr", "add", f"{link_ip(slot, end)}/31", "dev", dev)
                sh("ip", "-n", names[node], "link", "set", dev, "up")
        yield names
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def route(names, node: int, dst: int, slot: int | None, op: str = "replace") -> None:
    """``ip route`` in ``node``: to ``dst``'s loopback over link ``slot`` (None: a black hole)."""
    if slot is None:
        sh("ip", "-n", names[node], "route", op, "blackhole", f"{loopback_ip(dst)}/32")
        return
    a, b = LINKS[slot]
    gateway = link_ip(slot, 1 if node == a else 0)
    sh("ip", "-n", names[node], "route", op, f"{loopback_ip(dst)}/32", "via", gateway)


def ip_next_slots(names) -> np.ndarray:
    """next_slot[s, d] as ``ip -j route`` shows each router's routes to the loopbacks (-1: none over a link)."""
    n = len(names)
    out = np.full((n, n), -1, np.int64)
    loops = {loopback_ip(i): i for i in range(n)}
    for s, name in enumerate(names):
        for r in json.loads(sh("ip", "-n", name, "-j", "route", "show")):
            d = loops.get(r.get("dst", "").removesuffix("/32"))
            if d is not None and d != s and r.get("type", "unicast") == "unicast" and "gateway" in r:
                out[s, d] = (int(ipaddress.IPv4Address(r["gateway"])) - int(LINK_POOL.network_address)) // 2
    return out


def applied_view():
    return SimpleNamespace(valid=np.ones(2, bool), up=np.ones(2, bool), delay_s=np.full(2, 1e-3),
                           links=[SimpleNamespace(a=a, b=b) for a, b in LINKS])


def until(predicate, what: str):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    pytest.fail(f"not within {WAIT_S} s: {what}")


def test_each_machines_reader_reports_what_ip_shows_and_a_fed_watcher_judges_as_one_that_reads_itself(chain):
    names = chain
    machines = [FibReaderThread(FibReader([0, 2], names[0:3:2], 3)).start(),  # "machine 1": routers a and c
                FibReaderThread(FibReader([1], names[1:2], 3)).start()]  # "machine 2": router b
    clock0 = time.monotonic()
    now_s = lambda: time.monotonic() - clock0  # noqa: E731
    local = FibWatcher([f"n{i}" for i in range(3)], 3, names, now_s, applied_view()).start()
    fed = FibWatcher([f"n{i}" for i in range(3)], 3, None, now_s, applied_view()).start()
    try:
        for s in range(3):  # every router to every other's loopback, along the chain
            for d in range(3):
                if s != d:
                    route(names, s, d, s if d > s else s - 1)  # link k joins routers k and k + 1
        reference = ip_next_slots(names)
        assert (reference >= 0).sum() == 6, reference  # the FIBs the test meant to write
        held = np.full((3, 3), -1, np.int64)

        def feed():
            for m in machines:
                batches = m.take()
                for _wall_s, changes in batches:
                    for node, dst, slot in changes:
                        held[node, dst] = slot
                fed.feed([(now_s(), changes) for _wall_s, changes in batches])
            return np.array_equal(held, reference)

        until(feed, "the machines' readers report the FIBs that ip shows")
        until(lambda: np.array_equal(local.next_slot, reference), "the reading watcher holds them")
        until(lambda: np.array_equal(fed.next_slot, reference), "the fed watcher holds them")
        assert local.evaluate()[:3] == fed.evaluate()[:3] == (0, 6, 6)  # broken, connected, delivered

        route(names, 0, 2, None)  # a black hole in router a towards c
        reference = ip_next_slots(names)
        assert reference[0, 2] == -1
        until(feed, "the black hole reaches the fed watcher's reader")
        until(lambda: np.array_equal(local.next_slot, reference), "the reading watcher sees the black hole")
        until(lambda: np.array_equal(fed.next_slot, reference), "the fed watcher sees the black hole")
        assert local.evaluate()[:3] == fed.evaluate()[:3] == (1, 6, 5)
        assert fed.samples and fed.samples[-1][1] == 1  # judged on its own when the change was fed
    finally:
        for w in (local, fed):
            w.stop()
        for m in machines:
            m.stop()
