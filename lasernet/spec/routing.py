"""The scenario's ``routing:`` section: which routing runs on the routers, with which daemon and timers.

``protocol: oracle`` (the default) keeps lasernet's own shortest-delay routes, installed by the driver every
tick. Any other protocol runs a real routing daemon in every router's namespace and the driver installs no
routes at all; the oracle is still computed, as the reference that probes and the convergence measurement
compare against. Which daemon suite runs it:

=========  ==========================  ============================================================
protocol   daemons                     notes
=========  ==========================  ============================================================
ospf       ``frr`` (default), ``bird``  OSPFv2, one area, point-to-point links
bgp        ``frr``                      eBGP on every link: each operator an AS (a confederation of one
                                        member AS per satellite), each ground station an AS; landing
                                        policies per operator
isis       ``frr``                      level-2 only, wide metrics; BIRD 2 has no IS-IS
babel      ``bird`` (default)           RFC 8966 over IPv6 link-local, IPv4 routes; FRR 8.4's babeld
                                        does not bring neighbours up in namespaces (FRRouting/frr#13569)
=========  ==========================  ============================================================

Timers are in the units of their names: ``hello_s``/``dead_s`` for OSPF and IS-IS (IS-IS's hold time is
``dead_s``, its hello multiplier ``ceil(dead_s / hello_s)``; Babel's hello interval is ``hello_s``), SPF
throttling as initial delay, hold and maximum wait in milliseconds. ``bfd: true`` adds BFD sessions on every
link (``bfd_interval_ms`` x ``bfd_multiplier`` detection time).

``auth:`` authenticates the routing protocol with one key shared by every router, from ``key_file`` (a file
only its owner may read, like an ssh key; the key on its first line) or ``key``: OSPF with keyed MD5 in FRR
(RFC 2328 D.3) and HMAC-SHA-256 in BIRD (RFC 5709), IS-IS with HMAC-MD5 on hellos and LSPs (RFC 5304), BGP with
TCP MD5 signatures on every session (RFC 2385). The key is in the daemons' configuration files (readable by
root and the daemons' own user only) and nowhere else: not in ``repr``, logs, errors or the run directory.

BGP's defences against a hijack (a router announcing prefixes that are not its own), both off by default:
``prefix_filters: true`` makes every session accept only what its peer may originate or carry (a station that
carries no transit: its own loopback and server LANs, exactly; a satellite or a transit station: any node's
loopback /32 or server /24 of lasernet's address pools, nothing more specific); ``max_prefixes`` tears a session
down when its peer sends more prefixes than ``auto`` (what the plan says that peer may send: a stub station's own
prefixes, every prefix of the plan from a satellite or transit station) or ``{stub: N, transit: M}`` allow.

The parser takes the scenario reader's node (:class:`lasernet.spec.fields.Node`) so that every error names its
field.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

PROTOCOLS = ("oracle", "ospf", "isis", "babel", "bgp")
DAEMONS = ("frr", "bird")
COSTS = ("hops", "delay")

#: Which daemon suite implements which protocol, and why not where it does not.
SUPPORTED = {
    ("ospf", "frr"): None, ("ospf", "bird"): None, ("isis", "frr"): None, ("babel", "bird"): None,
    ("bgp", "frr"): None, ("bgp", "bird"): "lasernet generates BGP configurations for FRR only; use daemon: frr",
    ("isis", "bird"): "BIRD 2 has no IS-IS; use daemon: frr",
    ("babel", "frr"): ("FRR 8.4's babeld never brings its neighbours up in lasernet's namespaces "
                       "(FRRouting/frr#13569); use daemon: bird"),
}
DEFAULT_DAEMON = {"ospf": "frr", "isis": "frr", "babel": "bird", "bgp": "frr"}
#: Confederation member ASNs (one per satellite: 4200000000 + node index) come from the private 4-byte range.
MEMBER_ASN_BASE = 4_200_000_000


@dataclass(frozen=True)
class Operator:
    """A satellite operator: one AS (a BGP confederation of one member AS per satellite), which satellites are
    its own (``planes`` as an inclusive [first, last] range of Walker plane indices, and/or names), the
    ground stations its traffic may land at (``land_at``; empty: any), and the jurisdiction it answers to
    (``jurisdiction``, e.g. ``eu``; "": none), which residency rules (:mod:`lasernet.spec.policy`) read."""

    name: str
    asn: int
    planes: tuple[int, int] | None = None
    satellites: tuple[str, ...] = ()
    land_at: tuple[str, ...] = ()
    jurisdiction: str = ""

    def owns(self, satellite: str) -> bool:
        if satellite in self.satellites:
            return True
        parts = satellite.rsplit("-", 2)
        if self.planes is None or len(parts) != 3 or not parts[1].isdigit():
            return False
        return self.planes[0] <= int(parts[1]) <= self.planes[1]


@dataclass(frozen=True)
class MaxPrefixes:
    """BGP's per-session prefix limits (``routing.max_prefixes``): ``auto`` (each session what the plan says its
    peer may send), or a limit for sessions with stub stations (``stub``) and with satellites and transit stations
    (``transit``); None: no limit on those sessions."""

    auto: bool = False
    stub: int | None = None
    transit: int | None = None


#: The largest limit FRR's ``neighbor ... maximum-prefix`` takes.
MAX_PREFIX_LIMIT = 4_294_967_295


@dataclass(frozen=True)
class RoutingConfig:
    """How the routers route (see the module docstring). The defaults keep the oracle."""

    protocol: str = "oracle"
    daemon: str = ""  # "" with the oracle
    hello_s: float = 1.0
    dead_s: float = 4.0
    retransmit_s: int = 5  # OSPF: LSA retransmission interval (FRR's and BIRD's default)
    spf_delay_ms: int = 0
    spf_hold_ms: int = 50
    spf_max_ms: int = 1000
    bfd: bool = False
    bfd_interval_ms: int = 100
    bfd_multiplier: int = 3
    cost: str = "hops"  # link metric: "hops" (10 per link) or "delay" (the link's light time at start, in 10 us)
    operators: tuple[Operator, ...] = ()  # bgp: the satellite operators
    ground_asn: int = 65000  # bgp: ground station i is AS ground_asn + i
    auth_key: str = field(default="", repr=False)  # the routers' shared key ("": no authentication); never shown
    auth_inline: bool = False  # the key was written in the scenario (its copy in the run directory hides it)
    prefix_filters: bool = False  # bgp: each session accepts only the prefixes its peer may originate or carry
    max_prefixes: "MaxPrefixes | None" = None  # bgp: per-session prefix limits (None: none)

    @property
    def uses_daemons(self) -> bool:
        return self.protocol != "oracle"


def parse_routing(node, stations: tuple[str, ...] = (), satellites: tuple[str, ...] | None = None,
                  base: Path | None = None) -> RoutingConfig:
    """Validate a ``routing:`` mapping (a :class:`~lasernet.spec.fields.Node`); raise the node's ScenarioError on a problem.

    ``stations`` are the scenario's ground station names (for BGP landing policies), ``satellites`` its satellite
    names (BGP operators must cover every one; None: not checked here), ``base`` the directory ``auth.key_file``
    is relative to."""
    node.mapping(("protocol", "daemon", "hello_s", "dead_s", "spf_delay_ms", "spf_hold_ms", "spf_max_ms", "bfd",
                  "bfd_interval_ms", "bfd_multiplier", "cost", "operators", "ground_asn", "retransmit_s", "auth",
                  "prefix_filters", "max_prefixes"))
    protocol = node.get("protocol", "oracle").choice(PROTOCOLS)
    if protocol == "oracle":
        extra = [k for k in (node.value or {}) if k not in ("protocol", "operators")]
        if extra:
            raise node.child(extra[0], None).fail("only applies to a routing daemon; set protocol: ospf, isis or "
                                                  "babel, or remove it")
        if "operators" not in (node.value or {}):
            return RoutingConfig()
        # the satellites' operators, for residency rules (policy:) the oracle routes by; their ASes name them only
        operators = _operators(node.get("operators", None), stations, 65000)
        uncovered = operators_uncovered(operators, satellites or ())
        if uncovered:
            raise node.get("operators").fail(uncovered)
        return RoutingConfig(operators=operators)
    daemon = node.get("daemon", DEFAULT_DAEMON[protocol]).choice(DAEMONS)
    why_not = SUPPORTED[(protocol, daemon)]
    if why_not:
        raise node.get("daemon").fail(f"{protocol} with {daemon}: {why_not}")
    if protocol != "ospf" and "retransmit_s" in (node.value or {}):
        raise node.child("retransmit_s", None).fail("only applies to protocol: ospf")
    if protocol != "bgp":
        for key in ("operators", "ground_asn", "prefix_filters", "max_prefixes"):
            if key in (node.value or {}):
                raise node.child(key, None).fail("only applies to protocol: bgp")
    hello_s = node.get("hello_s", 1.0).number(0.1 if protocol == "babel" else 1, 60)
    if protocol != "babel" and not float(hello_s).is_integer():
        raise node.get("hello_s").fail(f"{protocol} hello intervals are whole seconds, got {hello_s!r}")
    dead_s = node.get("dead_s", 4 * hello_s).number(1, 600)
    if protocol != "babel" and (dead_s <= hello_s or not float(dead_s).is_integer()):
        raise node.get("dead_s").fail(f"must be whole seconds greater than hello_s ({hello_s:g}), got {dead_s!r}")
    bfd = node.get("bfd", False).value
    if not isinstance(bfd, bool):
        raise node.get("bfd").fail(f"must be true or false, got {bfd!r}")
    if bfd and protocol == "babel":
        raise node.get("bfd").fail("babel has no BFD client in BIRD 2; remove bfd or use protocol: ospf")
    spf_delay = node.get("spf_delay_ms", 0).number(0, 60000, integer=True)
    spf_hold = node.get("spf_hold_ms", 50).number(0, 60000, integer=True)
    spf_max = node.get("spf_max_ms", max(1000, spf_hold)).number(0, 600000, integer=True)
    if spf_max < spf_hold:
        raise node.get("spf_max_ms").fail(f"must be >= spf_hold_ms ({spf_hold}), got {spf_max}")
    operators, ground_asn, filters, limits = (), 65000, False, None
    if protocol == "bgp":
        filters = node.get("prefix_filters", False).boolean()
        limits = _max_prefixes(node.get("max_prefixes", None))
        if dead_s < 3 * hello_s:
            raise node.get("dead_s").fail(f"BGP's hold time must be at least 3 keepalives ({3 * hello_s:g} s), "
                                          f"got {dead_s:g}")
        ground_asn = node.get("ground_asn", 65000).number(1, MEMBER_ASN_BASE - 1 - len(stations), integer=True)
        operators = _operators(node.get("operators", None), stations, ground_asn)
        uncovered = operators_uncovered(operators, satellites or ())
        if uncovered:
            raise node.get("operators").fail(uncovered)
    key, inline = _auth(node.get("auth", None), protocol, daemon, base or Path("."))
    return RoutingConfig(protocol=protocol, daemon=daemon, hello_s=float(hello_s), dead_s=float(dead_s),
                         auth_key=key, auth_inline=inline,
                         retransmit_s=node.get("retransmit_s", 5).number(1, 3600, integer=True),
                         spf_delay_ms=spf_delay, spf_hold_ms=spf_hold, spf_max_ms=spf_max, bfd=bfd,
                         bfd_interval_ms=node.get("bfd_interval_ms", 100).number(10, 10000, integer=True),
                         bfd_multiplier=node.get("bfd_multiplier", 3).number(2, 255, integer=True),
                         cost=node.get("cost", "hops").choice(COSTS), operators=operators, ground_asn=ground_asn,
                         prefix_filters=filters, max_prefixes=limits)


def _max_prefixes(node) -> MaxPrefixes | None:
    """``max_prefixes: auto`` or ``{stub: N, transit: M}`` (either may be left out); None without the field."""
    if node.value is None:
        return None
    if node.value == "auto":
        return MaxPrefixes(auto=True)
    if not isinstance(node.value, dict):
        raise node.fail(f"must be auto (each session what the plan says its peer may send) or "
                        f"{{stub: N, transit: M}}, got {node.value!r}")
    node.mapping(("stub", "transit"))
    if not node.value:
        raise node.fail("give stub: N and/or transit: M (prefixes per session), or auto")
    stub, transit = (node.get(k, None) for k in ("stub", "transit"))
    return MaxPrefixes(stub=None if stub.value is None else stub.number(1, MAX_PREFIX_LIMIT, integer=True),
                       transit=None if transit.value is None else transit.number(1, MAX_PREFIX_LIMIT, integer=True))


#: The longest key each protocol's authentication takes: OSPFv2's MD5 key is 16 octets (RFC 2328 D.3), a TCP MD5
#: signature key 80 (Linux's TCP_MD5SIG_MAXKEYLEN), IS-IS's password 254 (a TLV's length octet; FRR's limit).
MAX_KEY_LEN = {("ospf", "frr"): 16, ("ospf", "bird"): 64, ("isis", "frr"): 254, ("bgp", "frr"): 80}
KEY_RE = re.compile(r"[A-Za-z0-9._~+=/@%^:,-]+")  # one token in FRR's and BIRD's syntax alike


def _auth(node, protocol: str, daemon: str, base: Path) -> tuple[str, bool]:
    """``auth: {key: K}`` or ``auth: {key_file: PATH}`` (the file's first line; readable by its owner only, as
    ssh wants a private key): the routers' shared key and whether it was inline. ("", False) without ``auth``."""
    if node.value is None:
        return "", False
    node.mapping(("key", "key_file"))
    given = [k for k in ("key", "key_file") if k in node.value]
    if len(given) != 1:
        raise node.fail("give the routers' key as key_file: PATH (a file only its owner can read) or key: TEXT")
    limit = MAX_KEY_LEN.get((protocol, daemon))
    if limit is None:
        raise node.fail(f"authentication is built for ospf (frr, bird), isis and bgp (frr), not {protocol} with "
                        f"{daemon}; remove auth")
    if given[0] == "key":
        key, where = node.get("key").text(), node.get("key")
    else:
        where = node.get("key_file")
        path = (base / where.text()).resolve()
        try:
            mode = path.stat().st_mode
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise where.fail(f"cannot read {path}: {exc.strerror if isinstance(exc, OSError) else exc}; give a "
                             f"readable file holding the key on its first line") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise where.fail(f"{path} can be read by others (mode {stat.S_IMODE(mode):04o}); chmod 600 it")
        key = lines[0].strip() if lines else ""
        if not key:
            raise where.fail(f"{path} holds no key on its first line")
    if not KEY_RE.fullmatch(key) or len(key) > limit:
        raise where.fail(f"the key must be 1 to {limit} characters of letters, digits and ._~+=/@%^:,- for "
                         f"{protocol} with {daemon} (it is {len(key)} long)")
    return key, given[0] == "key"


def _operators(node, stations: tuple[str, ...], ground_asn: int) -> tuple[Operator, ...]:
    items = node.items()
    if not items:
        raise node.fail("bgp needs at least one operator, e.g. [{name: alpha, asn: 64500, planes: [0, 7]}]")
    out, seen_asn = [], {}
    for item in items:
        item.mapping(("name", "asn", "planes", "satellites", "land_at", "jurisdiction"))
        name = item.get("name").name()
        if any(op.name == name for op in out):
            raise item.get("name").fail(f"operator {name!r} is given twice; give each operator once")
        asn = item.get("asn").number(1, MEMBER_ASN_BASE - 1, integer=True)
        if ground_asn <= asn < ground_asn + len(stations):
            raise item.get("asn").fail(f"collides with the ground stations' ASes {ground_asn}.."
                                       f"{ground_asn + len(stations) - 1} (routing.ground_asn)")
        if asn in seen_asn:
            raise item.get("asn").fail(f"is already operator {seen_asn[asn]}'s")
        seen_asn[asn] = name
        planes = None
        pn = item.get("planes", None)
        if pn.value is not None:
            v = pn.value
            if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and x >= 0 for x in v)
                    and v[0] <= v[1]):
                raise pn.fail(f"must be [first, last] plane indices (inclusive), got {v!r}")
            planes = (v[0], v[1])
        sats = tuple(n.name(max_len=64) for n in item.get("satellites", []).items())
        if planes is None and not sats:
            raise item.fail("needs planes: [first, last] and/or satellites: [names]")
        land = []
        for n in item.get("land_at", []).items():
            station = n.name()
            if station not in stations:
                raise n.fail(f"unknown ground station {station!r}; stations are {', '.join(stations) or 'none'}")
            land.append(station)
        out.append(Operator(name, asn, planes, sats, tuple(land), item.get("jurisdiction", None).jurisdiction()))
    return tuple(out)


def operator_of(cfg: RoutingConfig, satellite: str) -> Operator | None:
    """The operator owning ``satellite`` (the first that lists it), or None."""
    return next((op for op in cfg.operators if op.owns(satellite)), None)


def operators_uncovered(operators: tuple[Operator, ...], satellites) -> str:
    """What is wrong if some of ``satellites`` belong to none of ``operators`` (BGP needs an AS for each), or ""."""
    missing = [name for name in satellites if not any(op.owns(name) for op in operators)]
    if not missing:
        return ""
    return (f"{len(missing)} satellites belong to no operator (e.g. {', '.join(missing[:3])}); cover every plane or "
            f"list them")
