"""Nexthop objects by batched netlink, in a namespace the test creates: routes follow their object, black holes
outlive a carrier loss that deletes gateway objects, and refusals are named.

One namespace ``lnnh-<pid>`` with two veth pairs (``va``/``vb``, ``wa``/``wb``), addresses 10.9.0.0/31 on ``va``
and 10.9.0.2/31 on ``wa``, loopback 10.8.0.1. What the kernel holds is read back with iproute2 (``ip -j``).
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import numpy as np
import pytest

from lasernet.net.rtnl import Netlink, NetlinkError

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a network namespace)")]

ROUTES = 300
DST0 = 0x0A070000  # 10.7.0.0


def ip_json(ns: str, *args: str):
    return json.loads(subprocess.run(["ip", "-n", ns, "-j", *args], capture_output=True, text=True,
                                     check=True).stdout)


@pytest.fixture
def nl():
    name = f"lnnh-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        with Netlink(name) as nl:
            nl.add_veth("va", "vb")
            nl.add_veth("wa", "wb")
            nl.commit()
            for dev in ("lo", "va", "vb", "wa", "wb"):
                nl.set_link(dev, up=True)
            nl.add_address("va", "10.9.0.0", 31)
            nl.add_address("wa", "10.9.0.2", 31)
            nl.add_address("lo", "10.8.0.1", 32)
            nl.commit()
            deadline = time.monotonic() + 5
            while not all(nl.links(refresh=True)[d].carrier for d in ("va", "wa")):
                assert time.monotonic() < deadline
                time.sleep(0.01)
            yield nl
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def gateways(nl) -> dict[str, str]:
    return {r["dst"]: r.get("gateway", r.get("type")) for r in ip_json(nl.netns.name, "route", "show")
            if r["dst"].startswith("10.7.")}


def test_every_route_follows_its_object_when_the_object_is_replaced_in_one_message(nl):
    nl.replace_nexthops([1, 2], ["10.9.0.1", "10.9.0.1"], np.full(2, nl.ifindex("va")), onlink=True)
    nl.commit()
    dst = (DST0 + 1 + np.arange(ROUTES)).astype(np.uint32)
    nl.replace_routes_nh(dst, np.where(np.arange(ROUTES) < 200, 1, 2), source="10.8.0.1")
    assert nl.commit() == ROUTES
    assert set(gateways(nl).values()) == {"10.9.0.1"}
    nl.replace_nexthop(1, gateway="10.9.0.3", dev="wa", onlink=True)
    assert nl.commit() == 1
    routes = gateways(nl)
    assert sum(gw == "10.9.0.3" for gw in routes.values()) == 200 and len(routes) == ROUTES
    objects = {o["id"]: o for o in ip_json(nl.netns.name, "nexthop", "show")}
    assert objects[1]["gateway"] == "10.9.0.3" and objects[1]["dev"] == "wa" and "onlink" in objects[1]["flags"]


def test_aggregated_prefixes_take_their_length_per_route(nl):
    nl.replace_nexthop(5, gateway="10.9.0.1", dev="va", onlink=True)
    nl.commit()
    nl.replace_routes_nh(np.array([DST0, DST0 + 256], np.uint32), 5, prefix_len=np.array([24, 28], np.uint8))
    nl.commit()
    assert set(gateways(nl)) == {"10.7.0.0/24", "10.7.1.0/28"}


def test_a_black_hole_outlives_the_carrier_loss_that_deletes_a_gateway_object_and_its_routes(nl):
    nl.replace_nexthop(1, gateway="10.9.0.1", dev="va", onlink=True)
    nl.replace_nexthop(2, gateway="10.9.0.1", dev="va", onlink=True)
    nl.commit()
    nl.replace_routes_nh(np.array([DST0 + 1, DST0 + 2], np.uint32), np.array([1, 2]), source="10.8.0.1")
    nl.commit()
    nl.replace_nexthop(2, blackhole=True)  # kept: what the emulation does before a link goes down
    nl.commit()
    nl.set_link("vb", up=False)  # va loses carrier
    nl.commit()
    deadline = time.monotonic() + 5
    while 1 in {o["id"] for o in ip_json(nl.netns.name, "nexthop", "show")}:  # the link watcher deletes it
        assert time.monotonic() < deadline, "the kernel kept a gateway object on an interface without carrier"
        time.sleep(0.05)
    assert gateways(nl) == {"10.7.0.2": "blackhole"}  # the route through object 1 went with it
    with pytest.raises(NetlinkError, match="Carrier for nexthop device is down"):
        nl.replace_nexthop(2, gateway="10.9.0.1", dev="va", onlink=True)
        nl.commit()
    nl.set_link("vb", up=True)
    nl.commit()
    nl.replace_nexthop(2, gateway="10.9.0.1", dev="va", onlink=True)  # carrier back: the gateway returns
    nl.commit()
    assert gateways(nl) == {"10.7.0.2": "10.9.0.1"}


def test_a_route_naming_a_missing_object_is_refused_and_named(nl):
    nl.replace_routes_nh(np.array([DST0 + 9], np.uint32), 99)
    with pytest.raises(NetlinkError, match=r"route replace 10\.7\.0\.9/32 nhid 99 .*Nexthop id does not exist"):
        nl.commit()
