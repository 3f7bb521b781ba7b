"""The VXLAN plumbing of netem links that cross machines, on this kernel (which has vxlan but no sch_netem).

Two network namespaces the test makes play two machines, joined by a veth pair. In each, a private namespace
(as :class:`~lasernet.emulation.links.NetemLinks` keeps its wire namespace) gets a VXLAN device made by
:meth:`Netlink.add_vxlan` from a socket in the machine's namespace, and a default forwarding entry towards the
other machine (:meth:`Netlink.add_vxlan_peer`). Read back with ``ip -d -j link`` and ``bridge -j fdb``, and then
used: an address on each VXLAN device answers ping from the other side, so frames left through the machine's
own namespace (where the tunnel's socket stays) although the device sits elsewhere. netem on top, with the
halves' delay and carrier, is checked in the QEMU guest (tests/vm/guest/test_cross_machine_netem.py).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from lasernet.net.netns import Netns, mtu_of_address, new_private_netns
from lasernet.net.rtnl import Netlink

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")

UNDERLAY = {"a": "10.203.0.1", "b": "10.203.0.2"}
INNER = {"a": "10.204.0.1", "b": "10.204.0.2"}
PORT = {"a": 47101, "b": 47102}


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def machines():
    pid = os.getpid()
    names = {m: f"lnvx-{m}-{pid}" for m in "ab"}
    made = []
    try:
        for name in names.values():
            run("ip", "netns", "add", name)
            made.append(name)
        run("ip", "link", "add", "ua", "netns", names["a"], "type", "veth", "peer", "ub", "netns", names["b"])
        for m in "ab":
            run("ip", "-n", names[m], "addr", "add", f"{UNDERLAY[m]}/24", "dev", f"u{m}")
            run("ip", "-n", names[m], "link", "set", f"u{m}", "up")
        yield names
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name])


def test_a_vxlan_device_in_a_private_namespace_tunnels_through_its_machines_namespace(machines):
    wires, sockets = {}, []
    try:
        for m, other in (("a", "b"), ("b", "a")):
            machine = Netns(machines[m])
            here = Netlink(machine, close_netns=True)  # the socket the tunnel is made from: its UDP socket's home
            sockets.append(here)
            assert mtu_of_address_in(machine, UNDERLAY[m]) == 1500
            wire = wires[m] = Netlink(machine.run(new_private_netns), close_netns=True)
            sockets.append(wire)
            here.add_vxlan("x7", vni=8, local=UNDERLAY[m], port=PORT[m], netns=wire.netns, mtu=1450)
            here.commit()
            wire.add_vxlan_peer("x7", UNDERLAY[other], PORT[other])
            wire.add_address("x7", INNER[m], 24)
            wire.set_link("x7", up=True)
            wire.commit()
        shown = json.loads(wires["a"].netns.run(lambda: run("ip", "-d", "-j", "link", "show", "x7")))[0]
        info = shown["linkinfo"]["info_data"]
        assert (info["id"], info["local"], info["port"], info["learning"]) == (8, UNDERLAY["a"], PORT["a"], False)
        assert shown["mtu"] == 1450 and "link_netnsid" in shown  # its socket lives in another namespace
        fdb = json.loads(wires["a"].netns.run(lambda: run("bridge", "-j", "fdb", "show", "dev", "x7")))
        assert any(e["mac"] == "00:00:00:00:00:00" and e.get("dst") == UNDERLAY["b"] and e.get("port") == PORT["b"]
                   for e in fdb), fdb
        out = wires["a"].netns.run(lambda: subprocess.run(["ping", "-c", "3", "-i", "0.2", "-W", "2", INNER["b"]],
                                                          capture_output=True, text=True).stdout)
        assert " 0% packet loss" in out, out
    finally:
        for nl in sockets:
            nl.close()


def mtu_of_address_in(netns: Netns, address: str) -> int:
    return netns.run(lambda: mtu_of_address(address))
