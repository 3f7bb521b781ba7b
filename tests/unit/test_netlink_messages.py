"""Netlink messages are built right without root: bulk route packing matches one-at-a-time packing byte for byte."""

from __future__ import annotations

import socket
import struct

import numpy as np
import pytest

from lasernet.net.rtnl import RTM_NEWROUTE, Netlink, _describe

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


def _tlvs(buf: bytes) -> dict[int, bytes]:
    out, offset = {}, 0
    while offset + 4 <= len(buf):
        length, kind = struct.unpack_from("=HH", buf, offset)
        out[kind] = buf[offset + 4: offset + length]
        offset += (length + 3) & ~3
    return out


@pytest.mark.parametrize("create", [True, False])
def test_netem_message_carries_latency64_loss_and_rate_and_changes_without_create_flags(netlink, create):
    from lasernet.net import rtnl as nlm

    netlink.netem(7, delay_s=0.0123456, loss=0.2, rate_bps=40e9, limit_packets=5000, create=create)
    (msg,) = queued(netlink)
    length, kind, flags, _seq, _pid = struct.unpack_from("=IHHII", msg)
    assert length == len(msg) and kind == nlm.RTM_NEWQDISC
    assert bool(flags & nlm.NLM_F_CREATE) == create and bool(flags & nlm.NLM_F_EXCL) == create
    assert not flags & nlm.NLM_F_REPLACE  # a change is never a replace (that would graft a new qdisc)
    family, ifindex, handle, parent, _info = struct.unpack_from("=BxxxiIII", msg, 16)
    assert (family, ifindex, handle, parent) == (0, 7, 0, nlm.TC_H_ROOT)
    attrs = _tlvs(msg[16 + 20:])
    assert attrs[nlm.TCA_KIND] == b"netem\0"
    opts = attrs[nlm.TCA_OPTIONS]
    latency_ticks, limit, loss, gap, duplicate, jitter = struct.unpack_from("=IIIIII", opts)
    assert (latency_ticks, limit, gap, duplicate, jitter) == (0, 5000, 0, 0, 0)  # no psched ticks involved
    assert loss == round(0.2 * 0xFFFFFFFF)
    nested = _tlvs(opts[24:])
    assert struct.unpack("=q", nested[nlm.TCA_NETEM_LATENCY64])[0] == 12_345_600  # ns
    assert struct.unpack("=q", nested[nlm.TCA_NETEM_JITTER64])[0] == 0
    assert struct.unpack_from("=I", nested[nlm.TCA_NETEM_RATE])[0] == 0xFFFFFFFF  # 5e9 bytes/s does not fit
    assert struct.unpack("=Q", nested[nlm.TCA_NETEM_RATE64])[0] == 5_000_000_000


def test_netem_unlimited_rate_is_sent_as_zero_so_an_earlier_rate_is_cleared(netlink):
    from lasernet.net import rtnl as nlm

    netlink.netem(3, delay_s=0.0, rate_bps=0.0)
    (msg,) = queued(netlink)
    nested = _tlvs(_tlvs(msg[36:])[nlm.TCA_OPTIONS][24:])
    assert struct.unpack_from("=I", nested[nlm.TCA_NETEM_RATE])[0] == 0 and nlm.TCA_NETEM_RATE64 not in nested
    with pytest.raises(ValueError, match="0 <= loss <= 1"):
        netlink.netem(3, delay_s=0.01, loss=1.5)


def test_the_route_parser_reads_back_what_the_packer_wrote(netlink):
    from lasernet.net import rtnl

    netlink.replace_route("10.60.0.7", 32, gateway="10.128.0.3", dev=4, metric=20)
    netlink.replace_route("10.60.0.8", 32, gateway="10.128.0.5", dev=4, table=100)
    netlink.replace_routes(["10.60.1.0"], "10.128.0.9", 2, prefix_len=24, source="10.60.0.1")
    (kinds, payloads) = zip(*rtnl.split_messages(b"".join(queued(netlink))))
    assert kinds == (RTM_NEWROUTE,) * 3
    ip = lambda text: struct.unpack("!I", socket.inet_aton(text))[0]  # noqa: E731
    assert rtnl.parse_route(payloads[0]) == (ip("10.60.0.7"), 32, 20, ip("10.128.0.3"), rtnl.RTN_UNICAST)
    assert rtnl.parse_route(payloads[1]) is None  # not the main table
    assert rtnl.parse_route(payloads[2]) == (ip("10.60.1.0"), 24, 0, ip("10.128.0.9"), rtnl.RTN_UNICAST)
    dump = rtnl.route_dump_request(7)
    length, kind, flags, seq, _pid = struct.unpack_from("=IHHII", dump)
    assert (length, kind, seq) == (len(dump), rtnl.RTM_GETROUTE, 7) and flags & rtnl.NLM_F_DUMP == rtnl.NLM_F_DUMP


def test_a_link_is_configured_by_name_with_mac_mtu_and_up_in_one_message(netlink):
    from lasernet.net import rtnl

    netlink.configure_link("tap-x", mac=bytes.fromhex("026c00000701"), mtu=9000, up=True)
    ops, (msg,) = list(netlink._ops), queued(netlink)
    _family, _type, index, flags, change = struct.unpack_from("=BxHiII", msg, 16)
    assert (index, flags, change) == (0, rtnl.IFF_UP, rtnl.IFF_UP)  # the kernel finds it by IFLA_IFNAME
    attrs = _tlvs(msg[32:])
    assert attrs[rtnl.IFLA_IFNAME] == b"tap-x\0" and attrs[rtnl.IFLA_ADDRESS] == bytes.fromhex("026c00000701")
    assert struct.unpack("=I", attrs[rtnl.IFLA_MTU])[0] == 9000
    assert _describe(ops[0], 0) == "link set tap-x address 02:6c:00:00:07:01 mtu 9000 up"
    with pytest.raises(ValueError, match="interface name"):
        netlink.configure_link("a-name-longer-than-15", up=True)


def test_bulk_nexthops_are_byte_for_byte_the_single_ones(netlink):
    ids, gateways, devs = [1, 2, 3], ["10.1.0.1", "10.1.0.3", "10.1.0.5"], np.array([4, 5, 6])
    seq0 = netlink._seq
    for i, gw, dev in zip(ids, gateways, devs):
        netlink.replace_nexthop(i, gateway=gw, dev=int(dev), onlink=True)
    single = queued(netlink)
    netlink._seq = seq0
    netlink.replace_nexthops(ids, gateways, devs, onlink=True)
    assert queued(netlink) == single


@pytest.mark.parametrize("source", [None, "10.255.0.1"])
def test_bulk_routes_through_nexthop_objects_are_byte_for_byte_the_single_ones(netlink, source):
    dsts = [f"10.200.0.{i}" for i in range(1, 40)]
    ids = [1 + i % 5 for i in range(39)]
    seq0 = netlink._seq
    for dst, i in zip(dsts, ids):
        netlink.replace_route(dst, 32, nhid=i, source=source)
    single = queued(netlink)
    netlink._seq = seq0
    netlink.replace_routes_nh(dsts, np.array(ids), source=source)
    assert queued(netlink) == single
    netlink.replace_route("10.200.0.1", 32, nhid=3)
    assert _describe(netlink._ops[-1], 0) == "route replace 10.200.0.1/32 nhid 3"
