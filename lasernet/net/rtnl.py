"""rtnetlink, the kernel's interface for network configuration: batched changes, route parsing, route monitoring.

Changing kernel state one command at a time is the slow part of emulating a large network: spawning ``ip`` per
change costs milliseconds and a request-then-ack library call hundreds of microseconds. Here changes are packed
into rtnetlink messages by hand (``struct``, or numpy for many routes at once), queued, and
:meth:`Netlink.commit` sends them concatenated in as few ``sendmsg`` calls as the socket buffer allows; the
kernel handles every message of a datagram in order, so a batch costs a few microseconds per change.

:class:`Netlink` is a ``NETLINK_ROUTE`` socket opened inside a :class:`~lasernet.net.netns.Netns` (a socket stays
in the namespace it was created in, whichever thread later uses it), with a queue of requests and a cache of the
namespace's links (name -> index, MAC). :func:`open_in_each` opens such sockets in many namespaces at once.

Acknowledgements: every message but the last of a datagram is sent without ``NLM_F_ACK``. The kernel still
answers every failing message with an error, and answers the last one (success or not) with an ack; as it
processes messages in order, that final ack means every error of the datagram has been received. So a batch
reads one ack plus one message per failure instead of one per change. Errors are capped (``NETLINK_CAP_ACK``)
and carry the kernel's explanation (``NETLINK_EXT_ACK``), e.g. "Nexthop has invalid gateway".

Nexthop objects (``ip nexthop``, :meth:`Netlink.replace_nexthop`): a route may name an object by id instead of
holding its gateway and device, and replacing the object moves every route that names it in one message. The
kernel refuses a gateway object on an interface without carrier and deletes the ones on an interface that loses
it, together with the routes that use them; a black-hole object needs no interface.

A failed commit raises one :class:`NetlinkError` naming the first failed operation, the namespace and errno,
and how many operations failed; the other operations of the commit were applied (the kernel does not roll
back), and the queue is empty afterwards either way.

Route monitoring: a socket bound to the ``RTMGRP_IPV4_ROUTE`` multicast group (:func:`subscribe_routes`)
receives an ``RTM_NEWROUTE``/``RTM_DELROUTE`` for every change of the namespace's IPv4 routes, whoever made it (a
routing daemon, ``ip route``); :func:`route_dump_request` asks for the current table on the same socket, and
:func:`split_messages` and :func:`parse_route` read what arrives. When notifications come faster than they are
read the kernel drops them and the next read fails with ``ENOBUFS``: the reader must dump the table again.
"""

from __future__ import annotations

import errno as errno_mod
import os
import socket
import struct
import threading
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from .names import check_ifname
from .netns import Netns, sysctl_paths, write_files

# --- rtnetlink constants (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/neighbour.h) -------------
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
NLM_F_CAPPED, NLM_F_ACK_TLVS = 0x100, 0x200
NLMSGERR_ATTR_MSG = 1
SOL_NETLINK, NETLINK_CAP_ACK, NETLINK_EXT_ACK = 270, 10, 11
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR = 20
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RTM_NEWNEIGH = 28
RTM_NEWRULE = 32
FRA_DST, FRA_SRC, FRA_IIFNAME, FRA_PRIORITY, FRA_TABLE = 1, 2, 3, 6, 15  # rule attributes (fib_rules.h)
FR_ACT_TO_TBL = 1
RTM_NEWQDISC = 36
RTM_NEWNEXTHOP, RTM_DELNEXTHOP, RTM_GETNEXTHOP = 104, 105, 106

IFF_UP = 0x1
IFF_LOWER_UP = 0x10000  # the driver reports carrier (set at once, unlike the operational state)
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_NET_NS_FD = 1, 3, 4, 10, 16, 18, 28
IF_OPER_UP = 6
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_BR_FORWARD_DELAY = 1
VETH_INFO_PEER = 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC = 1, 4, 5, 6, 7
RTA_NH_ID = 30  # a route through a nexthop object (linux/rtnetlink.h)
# Nexthop objects (linux/nexthop.h): struct nhmsg, then attributes.
NHA_ID, NHA_BLACKHOLE, NHA_OIF, NHA_GATEWAY = 1, 4, 5, 6
RT_TABLE_MAIN = 254
RTPROT_STATIC = 4
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_NOWHERE = 0, 253, 255
RTN_UNSPEC, RTN_UNICAST = 0, 1
RTN_UNREACHABLE = 7
RTNH_F_ONLINK = 0x4
NDA_DST, NDA_LLADDR, NDA_PORT, NDA_VNI = 1, 2, 6, 7
NUD_NOARP, NUD_PERMANENT = 0x40, 0x80
NTF_SELF = 0x02
NLM_F_APPEND = 0x800
AF_BRIDGE = 7
# VXLAN (linux/if_link.h): the VNI, the local address, learning off, the UDP port (big-endian) it listens on.
IFLA_VXLAN_ID, IFLA_VXLAN_LOCAL, IFLA_VXLAN_LEARNING, IFLA_VXLAN_PORT = 1, 4, 7, 15
# Traffic control (linux/rtnetlink.h, linux/pkt_sched.h): netem's options are a struct tc_netem_qopt followed by
# nested attributes, all inside TCA_OPTIONS.
TCA_KIND, TCA_OPTIONS = 1, 2
TC_H_ROOT = 0xFFFFFFFF
TCA_NETEM_RATE, TCA_NETEM_RATE64, TCA_NETEM_LATENCY64, TCA_NETEM_JITTER64 = 6, 8, 10, 11
NETEM_LOSS_MAX = 0xFFFFFFFF  # netem's loss probability: a u32 where 2**32 - 1 means always

_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBi")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
_NDMSG = struct.Struct("=BxxxiHBB")  # ndmsg: family, ifindex, state, flags, type
_NHMSG = struct.Struct("=BBBxI")  # nhmsg: family, scope, protocol, (reserved), flags
_TCMSG = struct.Struct("=BxxxiIII")  # tcmsg: family, ifindex, handle, parent, info
_NETEM_QOPT = struct.Struct("=IIIIII")  # tc_netem_qopt: latency (ticks), limit, loss, gap, duplicate, jitter (ticks)
_NETEM_RATE = struct.Struct("=IiIi")  # tc_netem_rate: rate (bytes/s), packet_overhead, cell_size, cell_overhead
_RTA = struct.Struct("=HH")
_U32_ATTR = struct.Struct("=HHI")
_IP_ATTR = struct.Struct("=HH4s")
# A whole route message with destination, gateway and output device (the common case) in one pack call.
_ROUTE_GW = struct.Struct("=IHHII BBBBBBBBI HH4s HH4s HHi")
_ROUTE_GW_SRC = struct.Struct("=IHHII BBBBBBBBI HH4s HH4s HHi HH4s")
# A route through a nexthop object (destination, object id[, preferred source]).
_ROUTE_NH = struct.Struct("=IHHII BBBBBBBBI HH4s HHI")
_ROUTE_NH_SRC = struct.Struct("=IHHII BBBBBBBBI HH4s HHI HH4s")
# A nexthop object with id, output device and gateway.
_NEXTHOP_GW = struct.Struct("=IHHII BBBxI HHI HHi HH4s")



class NetlinkError(RuntimeError):
    """A request the kernel refused: ``operation``, ``netns``, ``errno``, and ``failed`` of ``total`` in its commit."""

    def __init__(self, operation: str, netns: str, err: int, kernel_msg: str = "", failed: int = 1, total: int = 1):
        self.operation, self.netns, self.errno = operation, netns, err
        self.kernel_msg, self.failed, self.total = kernel_msg, failed, total
        why = f" ({kernel_msg})" if kernel_msg else ""
        super().__init__(f"{operation} in netns {netns}: [Errno {err}] {os.strerror(err)}{why}; "
                         f"{failed} of {total} operations in this commit failed")

    def __reduce__(self):  # whole across a process boundary (a cluster agent's reply)
        return type(self), (self.operation, self.netns, self.errno, self.kernel_msg, self.failed, self.total)


@dataclass(frozen=True)
class Link:
    """One network interface as the kernel lists it."""

    index: int
    name: str
    mac: bytes
    up: bool  # administratively up (IFF_UP)
    running: bool  # operationally up: carrier, and the kernel has attached its queue (see Netlink.set_link)
    carrier: bool = False  # IFF_LOWER_UP: carrier now (the operational state follows it up to a second later)


# =============================================================================================================
class Netlink:
    """Batched rtnetlink requests to one namespace: queue with the methods below, then :meth:`commit`.

    ``dev`` arguments take an interface index or name; names are resolved when queued, from a cache filled by
    one link dump (refreshed once on a miss). An interface created in a commit can be named only after it.
    """

    #: Most messages per datagram: bounds the error messages one datagram can produce to what the receive
    #: buffer holds.
    max_batch = 4096

    def __init__(self, netns: "Netns | str | int | os.PathLike | None" = None, *, buffer_bytes: int = 4 << 20,
                 timeout_s: float = 10.0, sock: socket.socket | None = None, close_netns: bool | None = None):
        # close_netns: close the Netns handle with this socket (default: only a handle opened here)
        self._own_netns = not isinstance(netns, Netns) if close_netns is None else close_netns
        self.netns = netns if isinstance(netns, Netns) else Netns(netns)
        self.sock = None
        try:  # ``sock``: a NETLINK_ROUTE socket already opened inside netns (see open_in_each)
            self.sock = sock or self.netns.run(route_socket)
            self.sock.bind((0, 0))
            self.sock.settimeout(timeout_s)
            self.sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            self.sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
            self.send_bytes = _set_buffer(self.sock, SO_SNDBUFFORCE, socket.SO_SNDBUF, buffer_bytes)
            _set_buffer(self.sock, SO_RCVBUFFORCE, socket.SO_RCVBUF, buffer_bytes)
        except BaseException:
            self.close()
            raise
        self._seq = 0  # requests: 1, 2, ... (wrapping at 2**32)
        self._dump_seq = 0
        self._messages: list[bytes] = []
        self._ops: list = []  # per queued message: (operation name, args...) or a _BulkRoutes; formatted on error
        self._links: dict[str, Link] | None = None
        self._links_dirty = False
        self.timeout_s = timeout_s

    # --- queueing: links ------------------------------------------------------------------------------------
    def set_link(self, dev: "int | str", *, up: bool) -> None:
        """Set an interface administratively up or down (down: NO-CARRIER on a veth peer, routes via it go).

        A link set up carries packets only once the kernel's link watcher has seen the carrier and attached the
        queueing discipline, up to a second later (frames sent before are dropped); ``Link.running`` tells.
        """
        index = self.ifindex(dev)
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, IFF_UP if up else 0, IFF_UP)
        self._queue(RTM_NEWLINK, 0, body, ("link set", dev, "up" if up else "down"))

    def add_veth(self, name: str, peer_name: str, peer_netns: "Netns | None" = None) -> None:
        """Create a veth pair: ``name`` here, ``peer_name`` in ``peer_netns`` (here if None); both down."""
        check_ifname(name)
        check_ifname(peer_name)
        peer = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(IFLA_IFNAME, peer_name.encode() + b"\0")
        if peer_netns is not None:
            peer += _attr(IFLA_NET_NS_FD, struct.pack("=I", peer_netns.fd))
        info = _attr(IFLA_INFO_KIND, b"veth") + _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer))
        body = (_IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(IFLA_IFNAME, name.encode() + b"\0")
                + _attr(IFLA_LINKINFO, info))
        self._queue(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body,
                    ("veth add", name, f"peer {peer_name}" + (f" netns {peer_netns.name}" if peer_netns else "")))
        self._links_dirty = True

    def move_link(self, dev: "int | str", netns: Netns, new_name: str | None = None) -> None:
        """Move an interface into another namespace, renamed ``new_name`` there if given, in one request.

        It arrives down; its addresses and routes stay behind.
        """
        index = self.ifindex(dev)
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0) + _attr(IFLA_NET_NS_FD, struct.pack("=I", netns.fd))
        if new_name is not None:
            body += _attr(IFLA_IFNAME, check_ifname(new_name).encode() + b"\0")
        self._queue(RTM_NEWLINK, 0, body, ("link move", dev, f"to netns {netns.name}"
                                           + (f" as {new_name}" if new_name else "")))
        self._links_dirty = True

    def configure_link(self, name: str, *, mac: bytes | None = None, mtu: int | None = None,
                       up: bool | None = None) -> None:
        """Set the MAC address, MTU and/or admin state of interface ``name`` in one request.

        The interface is named in the message (the kernel looks it up), so no link dump is needed: what making
        thousands of TAPs, each in its own namespace, wants.
        """
        body = (_IFINFO.pack(socket.AF_UNSPEC, 0, 0, IFF_UP if up else 0, 0 if up is None else IFF_UP)
                + _attr(IFLA_IFNAME, check_ifname(name).encode() + b"\0"))
        if mac is not None:
            body += _attr(IFLA_ADDRESS, bytes(mac))
        if mtu is not None:
            body += _U32_ATTR.pack(8, IFLA_MTU, mtu)
        self._queue(RTM_NEWLINK, 0, body, ("link set", name) + (("address", ":".join(f"{b:02x}" for b in mac))
                                                               if mac is not None else ())
                    + (("mtu", mtu) if mtu is not None else ()) + (("up" if up else "down",) if up is not None else ()))
        self._links_dirty = True

    def add_bridge(self, name: str) -> None:
        """Create a bridge ``name``, administratively up, whose ports forward as soon as they are up.

        Without STP a bridge still walks a port that comes up through listening and learning, for the forward
        delay each (15 s by default); the delay is set to 0 here, which the kernel allows when STP is off.
        """
        check_ifname(name)
        info = _attr(IFLA_INFO_KIND, b"bridge") + _attr(IFLA_INFO_DATA, _U32_ATTR.pack(8, IFLA_BR_FORWARD_DELAY, 0))
        body = (_IFINFO.pack(socket.AF_UNSPEC, 0, 0, IFF_UP, IFF_UP) + _attr(IFLA_IFNAME, name.encode() + b"\0")
                + _attr(IFLA_LINKINFO, info))
        self._queue(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, ("bridge add", name))
        self._links_dirty = True

    def add_vxlan(self, name: str, *, vni: int, local: str, port: int, netns: "Netns | None" = None,
                  mtu: int | None = None) -> None:
        """Create a VXLAN device ``name`` (down) with ``vni``, sending from ``local`` and listening on UDP ``port``.

        Where it sends is given by forwarding entries (:meth:`add_vxlan_peer`). Made in ``netns`` if given, its
        UDP socket stays in *this* socket's namespace (the kernel keeps the namespace the request came from for
        the tunnel): how a device inside a private namespace reaches another machine. Learning is off: every
        frame goes to the peers configured, none is flooded elsewhere.
        """
        check_ifname(name)
        data = (_U32_ATTR.pack(8, IFLA_VXLAN_ID, vni) + _IP_ATTR.pack(8, IFLA_VXLAN_LOCAL, socket.inet_aton(local))
                + _attr(IFLA_VXLAN_LEARNING, b"\0") + _attr(IFLA_VXLAN_PORT, struct.pack("!H", port)))
        info = _attr(IFLA_INFO_KIND, b"vxlan") + _attr(IFLA_INFO_DATA, data)
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(IFLA_IFNAME, name.encode() + b"\0")
        if mtu is not None:
            body += _U32_ATTR.pack(8, IFLA_MTU, mtu)
        if netns is not None:
            body += _attr(IFLA_NET_NS_FD, struct.pack("=I", netns.fd))
        self._queue(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body + _attr(IFLA_LINKINFO, info),
                    ("vxlan add", name, f"id {vni} local {local} dstport {port}"
                     + (f" netns {netns.name}" if netns is not None else "")))
        self._links_dirty = True

    def add_vxlan_peer(self, dev: "int | str", remote: str, port: int) -> None:
        """Send every frame of VXLAN ``dev`` to ``remote``:``port`` (a default forwarding entry, the all-zero
        MAC, as ``bridge fdb append 00:00:00:00:00:00 dev DEV dst REMOTE port PORT``)."""
        body = (_NDMSG.pack(AF_BRIDGE, self.ifindex(dev), NUD_PERMANENT | NUD_NOARP, NTF_SELF, 0)
                + _attr(NDA_LLADDR, bytes(6)) + _IP_ATTR.pack(8, NDA_DST, socket.inet_aton(remote))
                + _attr(NDA_PORT, struct.pack("!H", port)))
        self._queue(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_APPEND, body,
                    ("fdb append 00:00:00:00:00:00", f"dev {dev}", f"dst {remote} port {port}"))

    def set_master(self, dev: "int | str", master: "int | str") -> None:
        """Enslave ``dev`` to ``master`` (e.g. make it a port of a bridge)."""
        index, master_index = self.ifindex(dev), self.ifindex(master)
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0) + _U32_ATTR.pack(8, IFLA_MASTER, master_index)
        self._queue(RTM_NEWLINK, 0, body, ("link set", dev, f"master {master}"))

    def delete_link(self, dev: "int | str") -> None:
        """Delete an interface (a veth takes its peer with it)."""
        index = self.ifindex(dev)
        self._queue(RTM_DELLINK, 0, _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0), ("link delete", dev))
        self._links_dirty = True

    # --- queueing: addresses, routes, neighbours -------------------------------------------------------------
    def add_address(self, dev: "int | str", address: str, prefix_len: int) -> None:
        """Add (or keep) an IPv4 address ``address/prefix_len`` on ``dev``, scope global."""
        index = self.ifindex(dev)
        ip = socket.inet_aton(address)
        body = (_IFADDR.pack(socket.AF_INET, prefix_len, 0, RT_SCOPE_UNIVERSE, index)
                + _IP_ATTR.pack(8, IFA_LOCAL, ip) + _IP_ATTR.pack(8, IFA_ADDRESS, ip))
        self._queue(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, body, ("address add", f"{address}/{prefix_len}", dev))

    def replace_route(self, dst: str, prefix_len: int = 32, *, gateway: str | None = None,
                      dev: "int | str | None" = None, onlink: bool = False, source: str | None = None,
                      metric: int | None = None, table: int = RT_TABLE_MAIN, protocol: int = RTPROT_STATIC,
                      nhid: int | None = None) -> None:
        """Add or replace the IPv4 route ``dst/prefix_len`` via ``gateway`` and/or out of ``dev``, or through
        nexthop object ``nhid`` (then neither).

        ``onlink`` trusts that the gateway is on the link even if no address of ``dev`` covers it. ``source``
        is the preferred source address (``ip route ... src``) for packets this node originates.
        """
        flags = NLM_F_CREATE | NLM_F_REPLACE
        if nhid is not None:
            if gateway is not None or dev is not None:
                raise ValueError(f"route {dst}/{prefix_len}: a nexthop object or a gateway and dev, not both")
            self._seq = seq = (self._seq + 1) & 0xFFFFFFFF
            fields = (socket.AF_INET, prefix_len, 0, 0, table, protocol, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0,
                      8, RTA_DST, socket.inet_aton(dst), 8, RTA_NH_ID, nhid)
            if source is None:
                msg = _ROUTE_NH.pack(_ROUTE_NH.size, RTM_NEWROUTE, NLM_F_REQUEST | flags, seq, 0, *fields)
            else:
                msg = _ROUTE_NH_SRC.pack(_ROUTE_NH_SRC.size, RTM_NEWROUTE, NLM_F_REQUEST | flags, seq, 0, *fields,
                                         8, RTA_PREFSRC, socket.inet_aton(source))
            self._messages.append(msg)
            self._ops.append((f"route replace {dst}/{prefix_len} nhid {nhid}",))
            return
        if gateway is None and dev is None:
            raise ValueError(f"route {dst}/{prefix_len}: needs a gateway, a dev, or both")
        op = ("route replace", f"{dst}/{prefix_len}", gateway, dev, onlink)
        scope = RT_SCOPE_UNIVERSE if gateway is not None else RT_SCOPE_LINK
        rtm_flags = RTNH_F_ONLINK if onlink else 0
        if gateway is not None and dev is not None and metric is None:  # the fast, common path
            index = self.ifindex(dev)
            fields = (socket.AF_INET, prefix_len, 0, 0, table, protocol, scope, RTN_UNICAST, rtm_flags,
                      8, RTA_DST, socket.inet_aton(dst), 8, RTA_GATEWAY, socket.inet_aton(gateway),
                      8, RTA_OIF, index)
            self._seq = seq = (self._seq + 1) & 0xFFFFFFFF
            if source is None:
                msg = _ROUTE_GW.pack(_ROUTE_GW.size, RTM_NEWROUTE, NLM_F_REQUEST | flags, seq, 0, *fields)
            else:
                msg = _ROUTE_GW_SRC.pack(_ROUTE_GW_SRC.size, RTM_NEWROUTE, NLM_F_REQUEST | flags, seq, 0,
                                         *fields, 8, RTA_PREFSRC, socket.inet_aton(source))
            self._messages.append(msg)
            self._ops.append(op)
            return
        body = _RTMSG.pack(socket.AF_INET, prefix_len, 0, 0, table, protocol, scope, RTN_UNICAST, rtm_flags)
        body += _IP_ATTR.pack(8, RTA_DST, socket.inet_aton(dst))
        if gateway is not None:
            body += _IP_ATTR.pack(8, RTA_GATEWAY, socket.inet_aton(gateway))
        if dev is not None:
            body += _U32_ATTR.pack(8, RTA_OIF, self.ifindex(dev))
        if source is not None:
            body += _IP_ATTR.pack(8, RTA_PREFSRC, socket.inet_aton(source))
        if metric is not None:
            body += _U32_ATTR.pack(8, RTA_PRIORITY, metric)
        self._queue(RTM_NEWROUTE, flags, body, op)

    def replace_routes(self, dst, gateway, dev, *, prefix_len: int = 32, source=None, onlink: bool = False,
                       table: int = RT_TABLE_MAIN, protocol: int = RTPROT_STATIC) -> None:
        """Queue many :meth:`replace_route` at once, packed by numpy: what a routing tick installs in a node.

        ``dst`` and ``gateway`` are IPv4 addresses as arrays of uint32 (host order) or sequences of dotted
        strings; ``dev`` is one interface (index or name) or an array of indices; ``source`` is None, one address
        or an array. The messages are byte for byte those :meth:`replace_route` would queue.
        """
        dst, gateway = _ipv4_array(dst), _ipv4_array(gateway)
        n = len(dst)
        if n == 0:
            return
        dtype = _ROUTE_GW_SRC_DTYPE if source is not None else _ROUTE_GW_DTYPE
        msgs = np.zeros(n, dtype)
        seq0 = self._seq + 1
        self._seq = (self._seq + n) & 0xFFFFFFFF
        msgs["len"] = dtype.itemsize
        msgs["type"] = RTM_NEWROUTE
        msgs["flags"] = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE
        msgs["seq"] = (seq0 + np.arange(n, dtype=np.uint64)) & 0xFFFFFFFF
        msgs["family"], msgs["dst_len"], msgs["table"], msgs["protocol"] = socket.AF_INET, prefix_len, table, protocol
        msgs["type_"] = RTN_UNICAST
        msgs["rtm_flags"] = RTNH_F_ONLINK if onlink else 0
        for name, attr_type, value in (("dst", RTA_DST, dst), ("gw", RTA_GATEWAY, gateway),
                                       ("oif", RTA_OIF, self._ifindex_array(dev, n))):
            msgs[name + "_rta_len"], msgs[name + "_rta_type"], msgs[name] = 8, attr_type, value
        if source is not None:
            msgs["src_rta_len"], msgs["src_rta_type"], msgs["src"] = 8, RTA_PREFSRC, _ipv4_array(source)
        blob, size = msgs.tobytes(), dtype.itemsize
        start = len(self._messages)
        self._messages.extend([blob[i:i + size] for i in range(0, len(blob), size)])
        self._ops.extend([_BulkRoutes(start, prefix_len, msgs, onlink)] * n)

    def _ifindex_array(self, dev, n: int) -> np.ndarray:
        if isinstance(dev, (int, str)):
            return np.full(n, self.ifindex(dev), np.int32)
        dev = np.asarray(dev)
        if dev.shape != (n,) or dev.dtype.kind not in "iu":
            raise ValueError(f"dev must be one interface or {n} interface indices, got {dev.dtype} {dev.shape}")
        return dev.astype(np.int32)

    def delete_route(self, dst: str, prefix_len: int = 32, *, table: int = RT_TABLE_MAIN) -> None:
        """Delete the IPv4 route ``dst/prefix_len`` from ``table`` (ESRCH if there is none)."""
        body = (_RTMSG.pack(socket.AF_INET, prefix_len, 0, 0, table, 0, RT_SCOPE_NOWHERE, RTN_UNSPEC, 0)
                + _IP_ATTR.pack(8, RTA_DST, socket.inet_aton(dst)))
        self._queue(RTM_DELROUTE, 0, body, ("route delete", f"{dst}/{prefix_len}"))

    def replace_unreachable(self, dst: str, prefix_len: int = 32, *, table: int = RT_TABLE_MAIN,
                            protocol: int = RTPROT_STATIC) -> None:
        """Add or replace an ``unreachable`` route for ``dst/prefix_len`` (senders get ICMP net unreachable)."""
        body = (_RTMSG.pack(socket.AF_INET, prefix_len, 0, 0, table, protocol, RT_SCOPE_UNIVERSE, RTN_UNREACHABLE, 0)
                + _IP_ATTR.pack(8, RTA_DST, socket.inet_aton(dst)))
        self._queue(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, body, ("route replace unreachable", f"{dst}/{prefix_len}"))

    def add_rule(self, table: int, priority: int, *, source: str | None = None, source_len: int = 32,
                 dst: str | None = None, dst_len: int = 32, iif: str | None = None) -> None:
        """Add a policy-routing rule (``ip rule add [from S] [to D] [iif DEV] lookup TABLE priority P``): packets
        it matches look ``table`` up first; where it has no route for them, the next rule's table is used.
        ``iif="lo"`` matches the packets this namespace originates."""
        body = _RTMSG.pack(socket.AF_INET, dst_len if dst else 0, source_len if source else 0, 0,
                           table if table < 256 else 0, 0, 0, FR_ACT_TO_TBL, 0)
        if dst is not None:
            body += _IP_ATTR.pack(8, FRA_DST, socket.inet_aton(dst))
        if source is not None:
            body += _IP_ATTR.pack(8, FRA_SRC, socket.inet_aton(source))
        if iif is not None:
            body += _attr(FRA_IIFNAME, iif.encode() + b"\0")
        body += _U32_ATTR.pack(8, FRA_PRIORITY, priority) + _U32_ATTR.pack(8, FRA_TABLE, table)
        what = " ".join(x for x in (source and f"from {source}/{source_len}", dst and f"to {dst}/{dst_len}",
                                    iif and f"iif {iif}") if x)
        self._queue(RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL, body, ("rule add", what, f"table {table}",
                                                                  f"priority {priority}"))

    # --- queueing: nexthop objects and the routes that use them ------------------------------------------------
    def replace_nexthop(self, nhid: int, *, gateway: str | None = None, dev: "int | str | None" = None,
                        onlink: bool = False, blackhole: bool = False, protocol: int = RTPROT_STATIC) -> None:
        """Add or replace the nexthop object ``nhid`` (>= 1): via ``gateway`` out of ``dev``, or a black hole.

        Routes name an object by its id (:meth:`replace_routes_nh`), and every one of them follows when the
        object is replaced: one message moves them all (``ip nexthop replace id N ...``). The kernel refuses a
        gateway object on an interface without carrier ("Carrier for nexthop device is down") and deletes every
        gateway object of an interface that loses carrier, with every route that uses it (plain routes stay,
        marked linkdown); a black hole (packets dropped, senders get EINVAL) needs no interface and stays, so a
        caller that must keep such routes replaces their objects by black holes before the carrier goes.
        """
        flags = NLM_F_CREATE | NLM_F_REPLACE
        if blackhole:
            if gateway is not None or dev is not None:
                raise ValueError(f"nexthop {nhid}: a black hole has no gateway or device")
            body = (_NHMSG.pack(socket.AF_INET, 0, protocol, 0) + _U32_ATTR.pack(8, NHA_ID, nhid)
                    + _RTA.pack(4, NHA_BLACKHOLE))
            self._queue(RTM_NEWNEXTHOP, flags, body, ("nexthop replace id", nhid, "blackhole"))
            return
        if gateway is None or dev is None:
            raise ValueError(f"nexthop {nhid}: needs a gateway and a dev (or blackhole=True)")
        index = self.ifindex(dev)
        self._seq = seq = (self._seq + 1) & 0xFFFFFFFF
        self._messages.append(_NEXTHOP_GW.pack(_NEXTHOP_GW.size, RTM_NEWNEXTHOP, NLM_F_REQUEST | flags, seq, 0,
                                               socket.AF_INET, 0, protocol, RTNH_F_ONLINK if onlink else 0,
                                               8, NHA_ID, nhid, 8, NHA_OIF, index,
                                               8, NHA_GATEWAY, socket.inet_aton(gateway)))
        self._ops.append(("nexthop replace id", nhid, f"via {gateway} dev {dev}" + (" onlink" if onlink else "")))

    def replace_nexthops(self, nhid, gateway, dev, *, onlink: bool = False, protocol: int = RTPROT_STATIC) -> None:
        """Queue many gateway :meth:`replace_nexthop` at once, packed by numpy (byte for byte the same messages):
        ``nhid`` an int array, ``gateway`` uint32 addresses (host order) or dotted strings, ``dev`` one interface
        or an array of indices."""
        nhid, gateway = np.asarray(nhid, np.uint32), _ipv4_array(gateway)
        n = len(nhid)
        if n == 0:
            return
        msgs = np.zeros(n, _NEXTHOP_GW_DTYPE)
        seq0 = self._seq + 1
        self._seq = (self._seq + n) & 0xFFFFFFFF
        msgs["len"], msgs["type"] = _NEXTHOP_GW_DTYPE.itemsize, RTM_NEWNEXTHOP
        msgs["flags"] = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE
        msgs["seq"] = (seq0 + np.arange(n, dtype=np.uint64)) & 0xFFFFFFFF
        msgs["family"], msgs["protocol"], msgs["nh_flags"] = socket.AF_INET, protocol, RTNH_F_ONLINK if onlink else 0
        for name, attr_type, value in (("id", NHA_ID, nhid), ("oif", NHA_OIF, self._ifindex_array(dev, n)),
                                       ("gw", NHA_GATEWAY, gateway)):
            msgs[name + "_nla_len"], msgs[name + "_nla_type"], msgs[name] = 8, attr_type, value
        self._extend_packed(msgs, _BulkNexthops(len(self._messages), msgs, onlink))

    def delete_nexthop(self, nhid: int) -> None:
        """Delete nexthop object ``nhid`` and every route that uses it."""
        body = _NHMSG.pack(socket.AF_UNSPEC, 0, 0, 0) + _U32_ATTR.pack(8, NHA_ID, nhid)
        self._queue(RTM_DELNEXTHOP, 0, body, ("nexthop delete id", nhid))

    def replace_routes_nh(self, dst, nhid, *, prefix_len=32, source=None, table: int = RT_TABLE_MAIN,
                          protocol: int = RTPROT_STATIC) -> None:
        """Add or replace IPv4 routes ``dst/prefix_len`` through nexthop objects ``nhid``, packed by numpy.

        ``dst`` as for :meth:`replace_routes`; ``nhid`` one id or an int array; ``prefix_len`` one length or an
        array (one per route); ``source`` None, one address or an array (the preferred source). The gateway and
        device are the object's (an object must exist before a route names it).
        """
        dst = _ipv4_array(dst)
        n = len(dst)
        if n == 0:
            return
        dtype = _ROUTE_NH_SRC_DTYPE if source is not None else _ROUTE_NH_DTYPE
        msgs = np.zeros(n, dtype)
        seq0 = self._seq + 1
        self._seq = (self._seq + n) & 0xFFFFFFFF
        msgs["len"], msgs["type"] = dtype.itemsize, RTM_NEWROUTE
        msgs["flags"] = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE
        msgs["seq"] = (seq0 + np.arange(n, dtype=np.uint64)) & 0xFFFFFFFF
        msgs["family"], msgs["dst_len"], msgs["table"], msgs["protocol"] = socket.AF_INET, prefix_len, table, protocol
        msgs["type_"] = RTN_UNICAST
        for name, attr_type, value in (("dst", RTA_DST, dst), ("nh", RTA_NH_ID, np.asarray(nhid, np.uint32))):
            msgs[name + "_rta_len"], msgs[name + "_rta_type"], msgs[name] = 8, attr_type, value
        if source is not None:
            msgs["src_rta_len"], msgs["src_rta_type"], msgs["src"] = 8, RTA_PREFSRC, _ipv4_array(source)
        self._extend_packed(msgs, _BulkRoutes(len(self._messages), 0, msgs, False))

    def _extend_packed(self, msgs: np.ndarray, op) -> None:
        """Queue numpy-packed messages (one record each), all described by ``op`` on failure."""
        blob, size = msgs.tobytes(), msgs.dtype.itemsize
        self._messages.extend([blob[i:i + size] for i in range(0, len(blob), size)])
        self._ops.extend([op] * len(msgs))

    def replace_neighbour(self, dev: "int | str", address: str, mac: "bytes | str") -> None:
        """Add or replace a permanent neighbour entry: IPv4 ``address`` is at ``mac`` on ``dev`` (no ARP)."""
        lladdr = bytes.fromhex(mac.replace(":", "")) if isinstance(mac, str) else bytes(mac)
        if len(lladdr) != 6:
            raise ValueError(f"neighbour {address}: MAC {mac!r} is not 6 bytes")
        body = (_NDMSG.pack(socket.AF_INET, self.ifindex(dev), NUD_PERMANENT, 0, 0)
                + _IP_ATTR.pack(8, NDA_DST, socket.inet_aton(address)) + _attr(NDA_LLADDR, lladdr))
        self._queue(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, body, ("neighbour replace", address, mac, dev))

    def netem(self, dev: "int | str", *, delay_s: float, loss: float = 0.0, rate_bps: float = 0.0,
              limit_packets: int = 1000, create: bool = False) -> None:
        """Add (``create``) or change in place the root netem qdisc of ``dev``: one-way delay, loss, rate.

        A change is ``RTM_NEWQDISC`` without ``NLM_F_CREATE``/``NLM_F_EXCL`` on the root: the kernel calls netem's
        change on the qdisc it holds (same handle, statistics and queue kept), never delete + add. Every
        parameter is sent each time, because netem keeps an earlier rate when the rate attribute is absent:
        ``delay_s`` as TCA_NETEM_LATENCY64 in nanoseconds (so the psched tick rate plays no part; the legacy
        tick field is 0), ``loss`` (0..1) as netem's u32 probability, ``rate_bps`` (0: unlimited) as
        TCA_NETEM_RATE in bytes/s plus TCA_NETEM_RATE64 when it does not fit 32 bits. Jitter is set to 0.
        """
        if not (delay_s >= 0 and 0 <= loss <= 1 and rate_bps >= 0 and limit_packets > 0):
            raise ValueError(f"netem on {dev}: needs delay_s >= 0, 0 <= loss <= 1, rate_bps >= 0, limit > 0; got "
                             f"{delay_s}, {loss}, {rate_bps}, {limit_packets}")
        index = self.ifindex(dev)
        rate_bytes = int(round(rate_bps / 8))
        opts = (_NETEM_QOPT.pack(0, limit_packets, int(round(loss * NETEM_LOSS_MAX)), 0, 0, 0)
                + _attr(TCA_NETEM_LATENCY64, struct.pack("=q", int(round(delay_s * 1e9))))
                + _attr(TCA_NETEM_JITTER64, struct.pack("=q", 0))
                + _attr(TCA_NETEM_RATE, _NETEM_RATE.pack(min(rate_bytes, 0xFFFFFFFF), 0, 0, 0)))
        if rate_bytes > 0xFFFFFFFF:
            opts += _attr(TCA_NETEM_RATE64, struct.pack("=Q", rate_bytes))
        body = (_TCMSG.pack(socket.AF_UNSPEC, index, 0, TC_H_ROOT, 0) + _attr(TCA_KIND, b"netem\0")
                + _attr(TCA_OPTIONS, opts))
        flags = NLM_F_CREATE | NLM_F_EXCL if create else 0
        self._queue(RTM_NEWQDISC, flags, body, ("qdisc " + ("add" if create else "change"), f"dev {dev}",
                                                f"root netem delay {delay_s * 1e3:.6g}ms loss {loss:.6g} "
                                                f"rate {rate_bps:.6g}bit"))

    @property
    def pending(self) -> int:
        """Messages queued and not yet committed."""
        return len(self._messages)

    # --- commit ------------------------------------------------------------------------------------------------
    def commit(self) -> int:
        """Send every queued message, read the acknowledgements, return how many were sent.

        Raises :class:`NetlinkError` for the first failure (all messages are still sent and the queue emptied).
        """
        messages, ops = self._messages, self._ops
        self._messages, self._ops = [], []
        if self._links_dirty:
            self._links, self._links_dirty = None, False
        failures: list[tuple[int, int, str]] = []  # (position, errno, kernel message)
        start = 0
        while start < len(messages):
            end, size = start, 0
            limit = self.send_bytes - 64
            while end < len(messages) and end - start < self.max_batch and size + len(messages[end]) <= limit:
                size += len(messages[end])
                end += 1
            if end == start:
                raise NetlinkError(_describe(ops[start], start), self.netns.name, errno_mod.EMSGSIZE,
                                   "message larger than the socket buffer", 1, len(messages))
            failures += self._send_batch(messages, start, end)
            start = end
        if failures:
            position, err, kernel_msg = failures[0]
            raise NetlinkError(_describe(ops[position], position), self.netns.name, err, kernel_msg, len(failures),
                               len(messages))
        return len(messages)

    def _send_batch(self, messages: list[bytes], start: int, end: int) -> list[tuple[int, int, str]]:
        """Send messages[start:end] in one datagram, the last with NLM_F_ACK; return their failures."""
        data = bytearray(b"".join(messages[start:end]))
        last = len(data) - len(messages[end - 1])
        flags = _HDR.unpack_from(data, last)[2]
        struct.pack_into("=H", data, last + 6, flags | NLM_F_ACK)
        first_seq = _HDR.unpack_from(data, 0)[3]
        last_seq = _HDR.unpack_from(data, last)[3]
        self.sock.send(data)
        failures = []
        while True:
            for msg_type, seq, payload in self._receive():
                if msg_type != NLMSG_ERROR:
                    continue
                err = -struct.unpack_from("=i", payload)[0]
                position = start + ((seq - first_seq) & 0xFFFFFFFF)
                if err:
                    if not start <= position < end:
                        raise RuntimeError(f"netlink error for unknown sequence {seq} in netns {self.netns.name}")
                    failures.append((position, err, _ext_ack_message(payload)))
                if seq == last_seq:
                    return failures

    def _receive(self) -> Iterable[tuple[int, int, memoryview]]:
        """One datagram from the kernel, split into (type, seq, payload) messages."""
        try:
            buf = _receive_buffer()
            n = self.sock.recv_into(buf)
        except socket.timeout:
            raise NetlinkError("waiting for acknowledgements", self.netns.name, errno_mod.ETIMEDOUT,
                               f"no answer within {self.timeout_s} s") from None
        except OSError as exc:
            if exc.errno != errno_mod.ENOBUFS:
                raise
            raise NetlinkError("reading acknowledgements", self.netns.name, errno_mod.ENOBUFS,
                               "the receive buffer overflowed, so some errors were lost: lower max_batch") from None
        view = memoryview(buf)[:n]
        offset = 0
        while offset + _HDR.size <= n:
            length, msg_type, flags, seq, _pid = _HDR.unpack_from(view, offset)
            if length < _HDR.size:
                break
            yield msg_type, seq, view[offset + _HDR.size: offset + length]
            offset += (length + 3) & ~3

    # --- links: lookup ---------------------------------------------------------------------------------------
    def links(self, refresh: bool = False) -> dict[str, Link]:
        """Every interface of the namespace by name (one RTM_GETLINK dump, cached until a commit changes links)."""
        if self._links is None or refresh:
            self._links = {link.name: link for link in self._dump_links()}
        return self._links

    def ifindex(self, dev: "int | str") -> int:
        """Interface index of ``dev`` (an index is returned as is)."""
        if isinstance(dev, int):
            return dev
        return self.link(dev).index

    def link(self, name: str) -> Link:
        links = self.links()
        if name not in links:
            links = self.links(refresh=True)
            if name not in links:
                raise KeyError(f"no interface {name!r} in netns {self.netns.name} (has: {', '.join(sorted(links))})")
        return links[name]

    def _dump_links(self) -> list[Link]:
        # Queued requests are not sent yet, so a dump may run between them; it keeps its own sequence numbers so
        # that the queued ones stay consecutive (commit locates failures by sequence number).
        self._dump_seq = seq = (self._dump_seq + 1) & 0x7FFFFFFF | 0x80000000
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        self.sock.send(_HDR.pack(_HDR.size + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body)
        found = []
        while True:
            for msg_type, msg_seq, payload in self._receive():
                if msg_seq != seq:
                    continue
                if msg_type == NLMSG_DONE:
                    return found
                if msg_type == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", payload)[0]
                    raise NetlinkError("link dump", self.netns.name, err, _ext_ack_message(payload))
                if msg_type == RTM_NEWLINK:
                    _family, _type, index, flags, _change = _IFINFO.unpack_from(payload)
                    attrs = dict(_attrs(payload[_IFINFO.size:]))
                    name = bytes(attrs.get(IFLA_IFNAME, b"")).rstrip(b"\0").decode()
                    oper = attrs.get(IFLA_OPERSTATE, b"\0")[0]
                    found.append(Link(index, name, bytes(attrs.get(IFLA_ADDRESS, b"")), bool(flags & IFF_UP),
                                      oper == IF_OPER_UP or (name == "lo" and bool(flags & IFF_UP)),
                                      bool(flags & IFF_LOWER_UP)))

    # --- lifetime ------------------------------------------------------------------------------------------------
    def _queue(self, msg_type: int, flags: int, body: bytes, op: tuple) -> None:
        self._seq = seq = (self._seq + 1) & 0xFFFFFFFF
        self._messages.append(_HDR.pack(_HDR.size + len(body), msg_type, NLM_F_REQUEST | flags, seq, 0) + body)
        self._ops.append(op)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self._own_netns:
            self.netns.close()

    def __enter__(self) -> "Netlink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Netlink({self.netns.name!r}, pending={self.pending})"


# ---------------------------------------------------------------------------------------------------------------
def _route_dtype(with_source: bool) -> np.dtype:
    """numpy layout of one route message (header, rtmsg, RTA_DST, RTA_GATEWAY, RTA_OIF[, RTA_PREFSRC])."""
    fields = [("len", "=u4"), ("type", "=u2"), ("flags", "=u2"), ("seq", "=u4"), ("pid", "=u4"),
              ("family", "u1"), ("dst_len", "u1"), ("src_len", "u1"), ("tos", "u1"), ("table", "u1"),
              ("protocol", "u1"), ("scope", "u1"), ("type_", "u1"), ("rtm_flags", "=u4")]
    for name, kind in [("dst", ">u4"), ("gw", ">u4"), ("oif", "=i4")] + ([("src", ">u4")] if with_source else []):
        fields += [(name + "_rta_len", "=u2"), (name + "_rta_type", "=u2"), (name, kind)]
    dtype = np.dtype(fields)
    assert dtype.itemsize == (_ROUTE_GW_SRC if with_source else _ROUTE_GW).size
    return dtype


_ROUTE_GW_DTYPE = _route_dtype(False)
_ROUTE_GW_SRC_DTYPE = _route_dtype(True)


def _packed_dtype(body: list, attrs: list) -> np.dtype:
    """numpy layout of one message: the netlink header, ``body`` fields, then 4-byte attributes ``attrs``."""
    fields = [("len", "=u4"), ("type", "=u2"), ("flags", "=u2"), ("seq", "=u4"), ("pid", "=u4")] + body
    for name, kind, prefix in attrs:
        fields += [(f"{name}_{prefix}_len", "=u2"), (f"{name}_{prefix}_type", "=u2"), (name, kind)]
    return np.dtype(fields)


_RTMSG_FIELDS = [("family", "u1"), ("dst_len", "u1"), ("src_len", "u1"), ("tos", "u1"), ("table", "u1"),
                 ("protocol", "u1"), ("scope", "u1"), ("type_", "u1"), ("rtm_flags", "=u4")]
# A route through a nexthop object: RTA_DST, RTA_NH_ID[, RTA_PREFSRC].
_ROUTE_NH_DTYPE = _packed_dtype(_RTMSG_FIELDS, [("dst", ">u4", "rta"), ("nh", "=u4", "rta")])
_ROUTE_NH_SRC_DTYPE = _packed_dtype(_RTMSG_FIELDS, [("dst", ">u4", "rta"), ("nh", "=u4", "rta"),
                                                    ("src", ">u4", "rta")])
# A gateway nexthop object: NHA_ID, NHA_OIF, NHA_GATEWAY (the layout of _NEXTHOP_GW).
_NEXTHOP_GW_DTYPE = _packed_dtype([("family", "u1"), ("scope", "u1"), ("protocol", "u1"), ("resvd", "u1"),
                                   ("nh_flags", "=u4")],
                                  [("id", "=u4", "nla"), ("oif", "=i4", "nla"), ("gw", ">u4", "nla")])
assert _NEXTHOP_GW_DTYPE.itemsize == _NEXTHOP_GW.size


def _ipv4_array(addresses) -> np.ndarray:
    """IPv4 addresses (uint32 host order, or dotted strings) as a uint32 array; one address is broadcast later."""
    if isinstance(addresses, str):
        return np.array([struct.unpack("!I", socket.inet_aton(addresses))[0]], np.uint32)
    arr = np.asarray(addresses)
    if arr.dtype.kind in "iu":
        return arr.astype(np.uint32)
    return np.array([struct.unpack("!I", socket.inet_aton(a))[0] for a in arr.ravel()], np.uint32)


@dataclass(frozen=True)
class _BulkRoutes:
    """The routes of one replace_routes call, for naming a failed one."""

    start: int
    prefix_len: int
    msgs: np.ndarray
    onlink: bool

    def describe(self, position: int) -> str:
        m = self.msgs[position - self.start]
        text = f"route replace {socket.inet_ntoa(struct.pack('!I', m['dst']))}/{int(m['dst_len'])}"
        if "nh" in self.msgs.dtype.names:
            return text + f" nhid {int(m['nh'])}"
        text += f" via {socket.inet_ntoa(struct.pack('!I', m['gw']))} dev {int(m['oif'])}"
        return text + (" onlink" if self.onlink else "")


@dataclass(frozen=True)
class _BulkNexthops:
    """The objects of one replace_nexthops call, for naming a failed one."""

    start: int
    msgs: np.ndarray
    onlink: bool

    def describe(self, position: int) -> str:
        m = self.msgs[position - self.start]
        text = (f"nexthop replace id {int(m['id'])} via {socket.inet_ntoa(struct.pack('!I', m['gw']))} "
                f"dev {int(m['oif'])}")
        return text + (" onlink" if self.onlink else "")


def _attr(attr_type: int, data: bytes) -> bytes:
    length = _RTA.size + len(data)
    return _RTA.pack(length, attr_type) + data + b"\0" * (-length & 3)


def _attrs(buf) -> Iterable[tuple[int, memoryview]]:
    offset = 0
    while offset + _RTA.size <= len(buf):
        length, attr_type = _RTA.unpack_from(buf, offset)
        if length < _RTA.size:
            break
        yield attr_type & 0x3FFF, buf[offset + _RTA.size: offset + length]
        offset += (length + 3) & ~3


def _ext_ack_message(payload) -> str:
    """The kernel's text from an NLMSG_ERROR payload (capped: error + original header, then TLVs)."""
    for attr_type, data in _attrs(payload[4 + _HDR.size:]):
        if attr_type == NLMSGERR_ATTR_MSG:
            return bytes(data).rstrip(b"\0").decode(errors="replace")
    return ""


def _describe(op, position: int) -> str:
    if isinstance(op, (_BulkRoutes, _BulkNexthops)):
        return op.describe(position)
    name, *args = op
    if name == "route replace":
        dst, gateway, dev, onlink = args
        text = f"route replace {dst}"
        text += f" via {gateway}" if gateway else ""
        text += f" dev {dev}" if dev is not None else ""
        return text + (" onlink" if onlink else "")
    return " ".join([name] + [str(a) for a in args])


def _set_buffer(sock: socket.socket, force_opt: int, opt: int, size: int) -> int:
    """Set a socket buffer to ``size`` (beyond the sysctl limit when root); return the usable size in bytes."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, force_opt, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, opt, size)
    return sock.getsockopt(socket.SOL_SOCKET, opt) // 2  # the kernel doubles the value for bookkeeping


_thread_buffers = threading.local()


def _receive_buffer() -> bytearray:
    """A 1 MiB receive buffer per thread, shared by all of that thread's sockets (a driver holds one socket per
    node; a buffer each would be a gigabyte at constellation scale). Messages are parsed before the next read."""
    buf = getattr(_thread_buffers, "buf", None)
    if buf is None:
        buf = _thread_buffers.buf = bytearray(1 << 20)
    return buf


def open_in_each(namespaces: "list[Netns]", sysctls: "Mapping[str, object] | None" = None) -> list[socket.socket]:
    """Open a NETLINK_ROUTE socket in each of many namespaces (and write ``net.*`` sysctls there) from one thread.

    :meth:`Netns.run` starts a thread per call; at a thousand namespaces one thread that ``setns``-es from one to
    the next is several times faster. Returns the sockets in order, for ``Netlink(netns, sock=...)``.
    """
    paths = sysctl_paths(sysctls or {})

    def work() -> list[socket.socket]:
        home = Netns(None)
        socks = []
        try:
            for ns in namespaces:
                ns.enter()
                socks.append(route_socket())
                write_files(paths)
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        finally:
            home.enter()
            home.close()
        return socks

    return Netns(None).run(work)


def open_in_processes(pids, sysctls: "Mapping[str, object] | None" = None) -> list[socket.socket]:
    """:func:`open_in_each` for the namespaces the processes ``pids`` are in (each router's shell)."""
    spaces = [Netns(pid) for pid in pids]
    try:
        return open_in_each(spaces, sysctls)
    finally:
        for ns in spaces:
            ns.close()


def route_socket() -> socket.socket:
    """A new NETLINK_ROUTE socket in the calling thread's network namespace."""
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)


# --- route monitoring -------------------------------------------------------------------------------------------
RTMGRP_IPV4_ROUTE = 0x40
RTM_GETROUTE = 26
RTA_MULTIPATH, RTA_TABLE = 9, 15
_RTNH = struct.Struct("=HBBi")  # rtnexthop: len, flags, hops, ifindex


def subscribe_routes(sock: socket.socket, buffer_bytes: int = 8 << 20) -> None:
    """Make a fresh NETLINK_ROUTE socket receive every IPv4 route change of its namespace, non-blocking.

    The receive buffer is raised to ``buffer_bytes`` (beyond the sysctl limit when root) so that a burst of
    changes (a daemon installing a whole table) fits between two reads.
    """
    try:
        _set_buffer(sock, SO_RCVBUFFORCE, socket.SO_RCVBUF, buffer_bytes)
    except OSError:
        pass
    sock.bind((0, RTMGRP_IPV4_ROUTE))
    sock.setblocking(False)


def route_dump_request(seq: int = 1) -> bytes:
    """The message asking for every IPv4 route (answered as RTM_NEWROUTE messages, then NLMSG_DONE)."""
    body = _RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
    return _HDR.pack(_HDR.size + len(body), RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def split_messages(data) -> Iterable[tuple[int, memoryview]]:
    """The (type, payload) of every netlink message in one datagram."""
    view = memoryview(data)
    offset = 0
    while offset + _HDR.size <= len(view):
        length, msg_type, _flags, _seq, _pid = _HDR.unpack_from(view, offset)
        if length < _HDR.size:
            break
        yield msg_type, view[offset + _HDR.size: offset + length]
        offset += (length + 3) & ~3


def parse_route(payload) -> tuple[int, int, int, int, int] | None:
    """A route message's (dst address, prefix length, metric, gateway address or 0, route type) for the main
    IPv4 table, else None. Addresses are integers (host order). With several next hops (RTA_MULTIPATH) the first
    one's gateway."""
    family, dst_len, _src_len, _tos, table, _proto, _scope, rtype, _flags = _RTMSG.unpack_from(payload)
    if family != socket.AF_INET:
        return None
    dst = gateway = metric = 0
    for kind, data in _attrs(payload[_RTMSG.size:]):
        if kind == RTA_DST:
            dst = struct.unpack("!I", bytes(data[:4]))[0]
        elif kind == RTA_GATEWAY:
            gateway = struct.unpack("!I", bytes(data[:4]))[0]
        elif kind == RTA_PRIORITY:
            metric = struct.unpack("=I", bytes(data[:4]))[0]
        elif kind == RTA_TABLE:
            table = struct.unpack("=I", bytes(data[:4]))[0]
        elif kind == RTA_MULTIPATH and not gateway and len(data) >= _RTNH.size:
            length = _RTNH.unpack_from(data)[0]
            for sub, sdata in _attrs(data[_RTNH.size:length]):
                if sub == RTA_GATEWAY:
                    gateway = struct.unpack("!I", bytes(sdata[:4]))[0]
    if table != RT_TABLE_MAIN:
        return None
    return dst, dst_len, metric, gateway, rtype
