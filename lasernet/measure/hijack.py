"""Where the routers' traffic to one address goes, read from their kernel FIBs: the judge of a prefix hijack.

A BGP hijack announces a prefix that is not the announcer's, usually more specific than the true one (a /25 of
a server LAN's /24), so that every router that takes it forwards the LAN's traffic to the announcer, whatever the
true route says: the kernel's longest-prefix match prefers it. :class:`AddressFibs` holds one rtnetlink socket
per router and, on each :meth:`~AddressFibs.read`, dumps every router's main table and takes its longest-prefix
match for the address (lowest metric among equals): the next-hop router across the link whose /31 the gateway
is in, ``LAN`` for a route without a gateway (the address is on a LAN of that router), or -1 (none, or an
unreachable or blackhole route). :func:`walk` follows those next hops from every source and says where each
source's traffic ends: at the true router's LAN (``delivered``), at the announcer (``diverted``: the rogue's
kernel takes the address as its own, so its own table is not consulted), or nowhere (``lost``: no route, a
loop, a link that is down). :func:`summary` turns a series of walks into the share of pairs diverted and for
how long. Plain data in, plain data out; the experiment program (``scripts/experiments/hijack.py``) owns the
run.
"""

from __future__ import annotations

import ipaddress
import select
import time

import numpy as np

from ..addressing import LINK_POOL
from ..net import rtnl

LAN = -2  # a next hop meaning: the address is on a LAN of this router
LINK_BASE, LINK_SIZE = int(LINK_POOL.network_address), LINK_POOL.num_addresses
ENDS = ("delivered", "diverted", "lost")
DUMP_TIMEOUT_S = 2.0


class AddressFibs:
    """The next hop of each router towards one IPv4 address, read from its kernel (see the module docstring).

    ``pids``: the routers' shells' PIDs (node order); ``link_ends(slot)``: the (a, b) node indices of link slot
    ``slot`` (the emulation's applied links)."""

    def __init__(self, pids, link_ends):
        self.pids, self.link_ends = list(pids), link_ends
        self.socks: list = []

    def open(self) -> "AddressFibs":
        self.socks = rtnl.open_in_processes(self.pids)
        return self

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        self.socks = []

    def read(self, address: str) -> np.ndarray:
        """(N,) int64: each router's next hop towards ``address`` (a node index, ``LAN`` or -1)."""
        target = int(ipaddress.IPv4Address(address))
        out = np.full(len(self.socks), -1, np.int64)
        for row, sock in enumerate(self.socks):
            best = None  # (prefix length, -metric, gateway, type)
            for dst, dst_len, metric, gateway, rtype in _dump(sock):
                mask = 0 if dst_len == 0 else (0xFFFFFFFF << (32 - dst_len)) & 0xFFFFFFFF
                if (target & mask) == (dst & mask) and (best is None or (dst_len, -metric) > best[:2]):
                    best = (dst_len, -metric, gateway, rtype)
            if best is None or best[3] != rtnl.RTN_UNICAST:
                continue
            gateway = best[2]
            if not gateway:
                out[row] = LAN
            elif LINK_BASE <= gateway < LINK_BASE + LINK_SIZE:
                a, b = self.link_ends((gateway - LINK_BASE) // 2)
                out[row] = b if a == row else a
        return out


def _dump(sock) -> list[tuple[int, int, int, int, int]]:
    """Every main-table IPv4 route of the socket's namespace."""
    sock.send(rtnl.route_dump_request())
    routes, deadline = [], time.monotonic() + DUMP_TIMEOUT_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        for kind, payload in rtnl.split_messages(sock.recv(1 << 20)):
            if kind == rtnl.NLMSG_DONE:
                return routes
            if kind == rtnl.RTM_NEWROUTE:
                route = rtnl.parse_route(payload)
                if route is not None:
                    routes.append(route)
    raise OSError("a route dump did not finish within 2 s")


def walk(next_hop: np.ndarray, sources, owner: int, rogue: int) -> list[str]:
    """Where each of ``sources`` (node indices) sends traffic for the address: ``delivered`` (reaches ``owner``,
    whose FIB has the address on its LAN), ``diverted`` (reaches ``rogue``, which takes the address as its own)
    or ``lost``."""
    out = []
    for s in sources:
        cur, seen = int(s), set()
        end = "lost"
        while cur not in seen:
            if cur == rogue:
                end = "diverted"
                break
            hop = int(next_hop[cur])
            if hop == LAN:
                end = "delivered" if cur == owner else "lost"
                break
            if hop < 0:
                break
            seen.add(cur)
            cur = hop
        out.append(end)
    return out


def summary(times_s, ends: list[list[str]], sources: list[str], start_s: float, stop_s: float) -> dict:
    """From walks at ``times_s`` (one list of ends per time, ``sources`` order): for the attack window
    [``start_s``, ``stop_s``), the share of pairs diverted at its worst and on average, and each pair's time
    diverted (a sample counts until the next one) and first diversion after the start; after ``stop_s``, the
    most pairs lost at one sample and how long until every pair was delivered again (None: not seen)."""
    times = np.asarray(times_s, float)
    diverted = np.array([[e == "diverted" for e in row] for row in ends], bool).reshape(len(times), len(sources))
    spans = np.diff(np.append(times, times[-1] if len(times) else 0.0))
    inside = (times >= start_s) & (times < stop_s)
    pairs = {}
    for j, name in enumerate(sources):
        hit = diverted[:, j] & inside
        pairs[name] = {"diverted_s": float(spans[hit].sum()),
                       "first_diverted_s": float(times[hit][0] - start_s) if hit.any() else None}
    share = diverted[inside].mean(axis=1) if inside.any() else np.zeros(0)
    after = diverted[times >= stop_s]
    whole = np.array([all(e == "delivered" for e in row) for row in ends], bool).reshape(len(times))
    again = np.flatnonzero(whole & (times >= stop_s))
    lost_after = [sum(e == "lost" for e in row) for row, t in zip(ends, times) if t >= stop_s]
    return {"pairs": len(sources), "samples_in_attack": int(inside.sum()),
            "share_diverted_max": float(share.max()) if len(share) else 0.0,
            "share_diverted_mean": float(share.mean()) if len(share) else 0.0,
            "pairs_ever_diverted": int(diverted[inside].any(axis=0).sum()) if inside.any() else 0,
            "pairs_diverted_after_stop": int(after[-1].sum()) if len(after) else 0,
            "pairs_lost_after_stop_max": max(lost_after, default=0),
            "all_delivered_again_s": float(times[again[0]] - stop_s) if len(again) else None,
            "diverted_s": pairs}
