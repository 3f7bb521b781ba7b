"""Netlink messages are built right without root: bulk route packing matches one-at-a-time packing byte for byte."""

from __future__ import annotations

import socket
import struct

import numpy as np
import pytest

from lasernet.emulation.netlink import RTM_NEWROUTE, Netlink, _describe

pytestmark = pytest.mark.filterwarnings("error")


@pytest.fixture
def netlink():
    """A Netlink on the caller's own namespace; nothing is committed, so no privileges are needed."""
    with Netlink() as nl:
        yield nl


def queued(nl: Netlink) -> list[bytes]:
    messages = list(nl._messages)
    nl._messages.clear()
    nl._ops.clear()
    return messages


@pytest.mark.parametrize("source", [None, "10.255.0.1"])
@pytest.mark.parametrize("onlink", [False, True])
def test_bulk_routes_are_byte_for_byte_the_single_ones(netlink, source, onlink):
    dsts = [f"10.200.{i // 256}.{i % 256}" for i in range(300)]
    gateways = [f"10.1.{i % 7}.1" for i in range(300)]
    devs = np.array([1 + i % 3 for i in range(300)])
    seq0 = netlink._seq
    for dst, gw, dev in zip(dsts, gateways, devs):
        netlink.replace_route(dst, 32, gateway=gw, dev=int(dev), source=source, onlink=onlink)
    single = queued(netlink)
    netlink._seq = seq0
    as_ints = np.array([struct.unpack("!I", socket.inet_aton(a))[0] for a in dsts], np.uint32)
    netlink.replace_routes(as_ints, gateways, devs, source=source, onlink=onlink)
    bulk = queued(netlink)
    assert bulk == single
    assert struct.unpack_from("=IH", bulk[0]) == (len(bulk[0]), RTM_NEWROUTE)


def test_one_gateway_and_device_broadcast_and_failures_are_named(netlink):
    netlink.replace_routes(["10.9.0.1", "10.9.0.2"], "10.1.0.1", 1)
    ops, messages = list(netlink._ops), queued(netlink)
    assert len(messages) == 2
    assert _describe(ops[1], 1) == "route replace 10.9.0.2/32 via 10.1.0.1 dev 1"
    with pytest.raises(ValueError, match="interface indices"):
        netlink.replace_routes(["10.9.0.1"], "10.1.0.1", np.array([1.5]))


def test_sequence_numbers_are_unique_and_consecutive(netlink):
    netlink.replace_route("10.9.0.1", 32, gateway="10.1.0.1", dev=1)
    netlink.replace_routes(np.arange(5) + 0x0A090002, "10.1.0.1", 1)
    netlink.delete_route("10.9.0.9", 32)
    seqs = [struct.unpack_from("=IHHI", m)[3] for m in queued(netlink)]
    assert seqs == list(range(seqs[0], seqs[0] + 7))


def test_a_link_lookup_between_queued_requests_keeps_their_sequence_numbers_consecutive(netlink):
    netlink.replace_route("10.9.0.1", 32, gateway="10.1.0.1", dev=1)
    netlink.links(refresh=True)  # a dump on the same socket, as a cache miss would do
    netlink.set_link("lo", up=True)
    seqs = [struct.unpack_from("=IHHI", m)[3] for m in queued(netlink)]
    assert seqs[1] == seqs[0] + 1
    with pytest.raises(KeyError, match="no interface 'nope0'"):
        netlink.ifindex("nope0")
