"""The scenario's ``capture:`` section: which packets a live run writes to pcap files, where and when.

A capture is what ``tcpdump -w`` records on one interface of one node, from ``start_s`` to ``stop_s`` in emulated
seconds from the start of the run. It is aimed at

* ``node: NAME`` with ``interface: IF`` (default ``any``, Linux's pseudo-interface of every interface of the
  node's namespace: a "cooked" capture without Ethernet headers), one file; or
* ``link: [A, B]``, both ends of the link between routers A and B (A's interface towards B and B's towards A),
  one file per end: a packet crossing the link is in both, stamped when it left one end and when it reached the
  other, so the difference is the link's emulated delay.

``filter`` is a BPF expression as tcpdump takes it (``udp port 7000``, ``icmp``); ``snaplen`` how many bytes of
each packet are kept. ``name`` names the files: ``capture/<name>.pcap`` for a node, ``capture/<name>.<node>.pcap``
for each end of a link. Timestamps are the kernel's wall clock (CLOCK_REALTIME) in nanoseconds; the run writes
``capture.json`` with the mapping to emulated time (:mod:`lasernet.emulation.capture`).

This module only reads and checks the section (offline, no root); node names are checked with the scenario's
others (:func:`check`), and whether the two ends of a ``link:`` share a link in the plan when a run starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ScenarioError
from .fields import Node, node_or_link

IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")  # a Linux interface name (IFNAMSIZ - 1), or "any"
MAX_CAPTURES = 64
DEFAULT_SNAPLEN = 262144  # tcpdump's own default: whole packets


@dataclass(frozen=True)
class Capture:
    """One capture: on ``node``'s ``interface``, or on both ends of ``link``, from ``start_s`` to ``stop_s``."""

    name: str
    node: str | None = None
    link: tuple[str, str] | None = None
    interface: str = "any"
    filter: str = ""
    start_s: float = 0.0
    stop_s: float | None = None  # None: until the end of the run
    snaplen: int = DEFAULT_SNAPLEN


def parse_capture(node: Node) -> tuple[Capture, ...]:
    """Read the ``capture:`` list (``node``); raise :class:`ScenarioError` naming the first problem."""
    items = node.items()
    if len(items) > MAX_CAPTURES:
        raise node.fail(f"has {len(items)} captures; at most {MAX_CAPTURES} (each is a tcpdump process)")
    captures = tuple(_capture(item) for item in items)
    names = [c.name for c in captures]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise node.child(i, None).child("name", None).fail(
                f"{name!r} is used twice; capture names must be unique (they name the pcap files)")
    return captures


def _capture(node: Node) -> Capture:
    values = node.mapping(("name", "node", "link", "interface", "filter", "start_s", "stop_s", "snaplen"))
    target, link = node_or_link(node, values, "node: NAME (with interface:) or link: [A, B] (both of its ends)")
    if link is not None and "interface" in values:
        raise node.child("interface", None).fail("a link: capture uses the link's own interface at each end; "
                                                 "leave interface: out (or capture a node:)")
    interface = node.get("interface", "any")
    if not isinstance(interface.value, str) or not IFNAME_RE.match(interface.value):
        raise interface.fail(f"must be an interface name (at most 15 of [A-Za-z0-9_.:-]) or any, got "
                             f"{interface.value!r}")
    filt = node.get("filter", "")
    if not isinstance(filt.value, str):
        raise filt.fail(f"must be a tcpdump filter expression like 'udp port 7000' (a string), got {filt.value!r}")
    start = node.get("start_s", 0.0).number(0, 30 * 86400)
    stop_node = node.get("stop_s", None)
    stop = None
    if stop_node.value is not None:
        stop = stop_node.number(0, 30 * 86400)
        if stop <= start:
            raise stop_node.fail(f"must be after start_s ({start:g}), got {stop:g}")
    return Capture(name=node.get("name").name(max_len=32), node=target, link=link, interface=interface.value,
                   filter=filt.value.strip(), start_s=start, stop_s=stop,
                   snaplen=node.get("snaplen", DEFAULT_SNAPLEN).number(64, DEFAULT_SNAPLEN, integer=True))


def check(captures: tuple[Capture, ...], routers: set[str], servers: set[str], source: str) -> None:
    """Raise unless every capture's node is a router or a server, and every link's ends are routers."""
    some = ", ".join(sorted(routers)[:4])
    for i, c in enumerate(captures):
        if c.node is not None and c.node not in routers | servers:
            raise ScenarioError(source, f"capture[{i}].node", f"unknown node {c.node!r}; nodes are e.g. {some}")
        for k, end in enumerate(c.link or ()):
            if end not in routers:
                raise ScenarioError(source, f"capture[{i}].link[{k}]", f"{end!r} is not a satellite or ground "
                                                                       f"station; links join routers, e.g. {some}")
