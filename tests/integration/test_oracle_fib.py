"""Oracle routes installed by batched netlink carry real packets between namespaces, and follow a link going down.

The network: six namespaces in a ring (0-1-2-3-4-5-0) plus the chord 0-3, joined by veth pairs created with
:class:`Netlink`. Node i has loopback 10.255.0.(i+1)/32 on ``lo``; link k has 10.1.k.0/31 on its ``a`` end and
10.1.k.1/31 on its ``b`` end; the interface of node i towards node j is ``to<j>``. Routes are /32s to the
loopbacks via the peer's /31 address with the loopback as preferred source, plus permanent neighbours.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import time

import numpy as np
import pytest

from lasernet.net.netns import Netns
from lasernet.net.rtnl import Netlink, NetlinkError
from lasernet.routing import oracle

pytestmark = pytest.mark.root

LINKS_A = np.array([0, 1, 2, 3, 4, 5, 0])
LINKS_B = np.array([1, 2, 3, 4, 5, 0, 3])
DELAY_S = np.array([1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 0.5e-3])  # the chord 0-3 is a shortcut for many pairs
CHORD = 6
N_NODES = 6


def loopback(node: int) -> str:
    return f"10.255.0.{node + 1}"


def link_address(link: int, node: int) -> str:
    return f"10.1.{link}.{0 if LINKS_A[link] == node else 1}"


def peer_of(link: int, node: int) -> int:
    return int(LINKS_B[link] if LINKS_A[link] == node else LINKS_A[link])


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=30)


@pytest.fixture
def namespaces():
    """N_NODES fresh namespaces ``lnr-<pid>-<i>``; removes exactly those afterwards, also on failure."""
    if os.geteuid() != 0:
        pytest.skip("needs root: creates network namespaces (run the integration tests as root)")
    names, created = [f"lnr-{os.getpid()}-{i}" for i in range(N_NODES)], []
    try:
        for name in names:
            result = run("ip", "netns", "add", name)
            assert result.returncode == 0, f"ip netns add {name}: {result.stderr}"
            created.append(name)
        yield names
    finally:
        for name in created:
            run("ip", "netns", "del", name)


@pytest.fixture
def network(namespaces):
    """The ring-plus-chord network, addressed, forwarding on; yields one Netlink per node."""
    nls = [Netlink(name) for name in namespaces]
    try:
        for k, (a, b) in enumerate(zip(LINKS_A, LINKS_B)):
            nls[a].add_veth(f"to{b}", f"to{a}", nls[b].netns)
        for nl in nls:
            nl.commit()
        for node, nl in enumerate(nls):
            nl.set_link("lo", up=True)
            nl.add_address("lo", loopback(node), 32)
            for k in np.flatnonzero((LINKS_A == node) | (LINKS_B == node)):
                dev = f"to{peer_of(k, node)}"
                nl.add_address(dev, link_address(k, node), 31)
                nl.set_link(dev, up=True)
            nl.commit()
            nl.netns.enable_routing()
        wait_running(nls)
        for node, nl in enumerate(nls):  # permanent neighbours: no ARP on point-to-point links
            for k in np.flatnonzero((LINKS_A == node) | (LINKS_B == node)):
                peer = peer_of(k, node)
                nl.replace_neighbour(f"to{peer}", link_address(k, peer), nls[peer].link(f"to{node}").mac)
            nl.commit()
        yield nls
    finally:
        for nl in nls:
            nl.close()


def wait_running(nls: list[Netlink], timeout_s: float = 5.0) -> None:
    """Wait until every interface is operationally up: before that the kernel drops what is sent on it."""
    deadline = time.monotonic() + timeout_s
    for nl in nls:
        while not all(link.running for link in nl.links(refresh=True).values()):
            assert time.monotonic() < deadline, f"links not running in {nl.netns.name}: {nl.links()}"
            time.sleep(0.01)


def install(nls: list[Netlink], routes: oracle.Routes, src: np.ndarray, dst: np.ndarray) -> int:
    """Install the listed (source, destination) entries of ``routes``, one commit per node, replacements packed
    in bulk; return how many messages were committed."""
    committed = 0
    for node in np.unique(src):
        nl = nls[node]
        d = dst[src == node]
        hop, k = routes.next_hop[node, d], routes.link[node, d]
        for gone in d[hop < 0]:
            nl.delete_route(loopback(int(gone)), 32)
        keep = hop >= 0
        if keep.any():
            dev = np.array([nl.ifindex(f"to{h}") for h in hop[keep]])
            nl.replace_routes([loopback(int(x)) for x in d[keep]],
                              [link_address(int(kk), int(h)) for kk, h in zip(k[keep], hop[keep])],
                              dev, source=loopback(int(node)))
        committed += nl.commit()
    return committed


def unreachable_pairs(namespaces: list[str]) -> list[tuple[int, int, str]]:
    failed = []
    for s, name in enumerate(namespaces):
        for d in range(N_NODES):
            if d != s:
                result = run("ip", "netns", "exec", name, "ping", "-c1", "-W1", "-q", loopback(d))
                if result.returncode != 0:
                    failed.append((s, d, result.stdout.strip().splitlines()[-1:]))
    return failed


def route_get(namespace: str, address: str) -> tuple[str, str]:
    """(gateway, dev) of the kernel's route to ``address`` in ``namespace``."""
    out = run("ip", "-n", namespace, "route", "get", address).stdout
    via, dev = re.search(r" via (\S+)", out), re.search(r" dev (\S+)", out)
    assert via and dev, f"ip route get {address} in {namespace}: {out!r}"
    return via.group(1), dev.group(1)


# ---------------------------------------------------------------------------------------------------------------
def test_every_namespace_reaches_every_loopback_and_again_after_the_chord_goes_down(namespaces, network):
    nls = network
    up = np.ones(len(LINKS_A), bool)
    before = oracle.compute(N_NODES, LINKS_A, LINKS_B, up, DELAY_S)
    src, dst = oracle.diff(None, before)
    assert install(nls, before, src, dst) == N_NODES * (N_NODES - 1)
    assert unreachable_pairs(namespaces) == []
    assert before.next_hop[0, 3] == 3 and route_get(namespaces[0], loopback(3)) == (link_address(CHORD, 3), "to3")

    # The chord loses lock: both ends go down (the kernel drops the routes through them), the oracle recomputes
    # and only the changed entries are installed.
    nls[0].set_link("to3", up=False)
    nls[3].set_link("to0", up=False)
    nls[0].commit()
    nls[3].commit()
    up[CHORD] = False
    after = oracle.compute(N_NODES, LINKS_A, LINKS_B, up, DELAY_S)
    src, dst = oracle.diff(before, after)
    changed = set(zip(src.tolist(), dst.tolist()))
    using_chord = {(s, d) for s in range(N_NODES) for d in range(N_NODES) if before.link[s, d] == CHORD}
    assert changed >= using_chord and len(changed) > len(using_chord)  # nodes beyond the chord's ends reroute
    assert install(nls, after, src, dst) == len(src)
    assert unreachable_pairs(namespaces) == []
    for s, d in changed:
        hop = int(after.next_hop[s, d])
        assert route_get(namespaces[s], loopback(d)) == (link_address(int(after.link[s, d]), hop), f"to{hop}")
    assert oracle.path(after, 0, 3) in ([0, 1, 2, 3], [0, 5, 4, 3])


def test_routing_sysctls_are_set_inside_the_namespace_only(namespaces, network):
    for name in namespaces[:2]:
        out = run("ip", "netns", "exec", name, "sysctl", "-n", "net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter",
                  "net.ipv4.conf.default.rp_filter", "net.ipv4.conf.to1.rp_filter" if name.endswith("-0")
                  else "net.ipv4.conf.to0.rp_filter").stdout.split()
        assert out == ["1", "0", "0", "0"]
    with Netns(namespaces[0]) as ns:
        ns.write_sysctls({"net.ipv4.conf.default.rp_filter": 2})
        assert ns.read_sysctl("net.ipv4.conf.default.rp_filter") == "2"
    assert run("ip", "netns", "exec", namespaces[1], "sysctl", "-n",
               "net.ipv4.conf.default.rp_filter").stdout.strip() == "0"
    with pytest.raises(ValueError, match="only net"):
        Netns(namespaces[0]).write_sysctls({"kernel.hostname": "x"})


def test_a_failed_commit_names_the_first_failure_counts_them_and_applies_the_rest(namespaces, network):
    nl = network[0]
    nl.max_batch = 100  # several datagrams, so that failures are located across them
    gateway = link_address(0, 1)
    for i in range(1000):
        if i in (537, 912):
            nl.replace_route(f"10.50.{i // 250}.{i % 250}", 32, gateway="192.0.2.1", dev="to1")  # not on link
        else:
            nl.replace_route(f"10.50.{i // 250}.{i % 250}", 32, gateway=gateway, dev="to1")
    with pytest.raises(NetlinkError) as caught:
        nl.commit()
    error = caught.value
    assert error.errno == errno.ENETUNREACH and error.failed == 2 and error.total == 1000
    assert error.operation == "route replace 10.50.2.37/32 via 192.0.2.1 dev to1"
    assert namespaces[0] in str(error) and "Nexthop has invalid gateway" in str(error)
    table = run("ip", "-n", namespaces[0], "route", "show", "root", "10.50.0.0/16", "proto", "static").stdout
    assert len(table.splitlines()) == 998 and nl.pending == 0

    nl.replace_route("10.60.0.1", 32, gateway="192.0.2.1", dev="to1", onlink=True)  # trusted to be on the link
    assert nl.commit() == 1
    assert "10.60.0.1 via 192.0.2.1 dev to1 proto static onlink" in run("ip", "-n", namespaces[0], "route").stdout

    nl.delete_route("10.60.0.1", 32)
    nl.delete_route("10.60.0.1", 32)
    with pytest.raises(NetlinkError, match=r"route delete 10.60.0.1/32 .* \[Errno 3\].* 1 of 2"):
        nl.commit()
    with pytest.raises(KeyError, match="no interface 'to9'"):
        nl.set_link("to9", up=True)


def test_veths_are_created_moved_and_deleted_by_netlink(namespaces):
    with Netlink(namespaces[0]) as here, Netlink(namespaces[1]) as there:
        here.add_veth("mv-a", "mv-b")
        here.commit()
        assert {"mv-a", "mv-b"} <= set(here.links())
        here.move_link("mv-b", there.netns)
        here.commit()
        assert "mv-b" not in here.links() and "mv-b" in there.links(refresh=True)
        here.delete_link("mv-a")  # takes its peer with it
        here.commit()
        assert "mv-a" not in here.links() and "mv-b" not in there.links(refresh=True)
        here.add_veth("lo", "mv-c")
        with pytest.raises(NetlinkError, match=r"veth add lo peer mv-c in netns .*\[Errno 17\]"):
            here.commit()
