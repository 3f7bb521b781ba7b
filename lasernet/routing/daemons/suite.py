"""Which daemons a protocol needs, in which order they start, and how an operator reaches them.

A suite is one routing software: :class:`FrrSuite` runs zebra (the FIB owner) first, then bfdd with ``bfd:
true``, then the protocol's daemon (ospfd, isisd or bgpd); :class:`BirdSuite` runs one ``bird``. Daemons start
stage by stage in this order on every node. The suite also names the shell that talks to the running daemons
(``vtysh --vty_socket DIR``, ``birdc -s SOCKET``; ``lasernet exec NODE -- vtysh`` adds the option through
:func:`make_shell_args`), the user the daemons' files must belong to, and the output markers of a configuration
line a daemon rejected while it kept running.
"""

from __future__ import annotations

from pathlib import Path

from ...spec.routing import RoutingConfig
from .base import Daemon, LinkSpec, NodeSpec
from .bfd import Bfdd
from .bgp import Bgpd
from .bird import Bird
from .isis import Isisd
from .ospf import Ospfd
from .zebra import Zebra

FRR_PROTOCOLS = {"ospf": Ospfd, "isis": Isisd, "bgp": Bgpd}
DAEMONS: dict[str, type[Daemon]] = {cls.name: cls for cls in (Zebra, Bfdd, Ospfd, Isisd, Bgpd, Bird)}


class FrrSuite:
    """FRR: zebra (the FIB) plus the protocol's daemon, and bfdd with ``bfd: true``."""

    name = "frr"
    owner = "frr"
    shell = "vtysh"
    rejects = (" on config line ",)  # libfrr: "%s on config line %u: %s" (no such command, ambiguous, ...)

    def __init__(self, cfg: RoutingConfig):
        self.protocol: Daemon = FRR_PROTOCOLS[cfg.protocol]()
        self.daemons: list[Daemon] = [Zebra()] + ([Bfdd()] if cfg.bfd else []) + [self.protocol]

    @staticmethod
    def shell_args(d: Path) -> list[str]:
        return ["--vty_socket", str(d)]

    def link_commands(self, cfg: RoutingConfig, link: LinkSpec, node: NodeSpec | None = None,
                      plan=None) -> list[str] | None:
        """vtysh commands that configure a link created after start (FRR configures interfaces by name)."""
        return self.protocol.link_commands(cfg, link, node, plan)


class BirdSuite:
    """BIRD 2: one ``bird`` per node; interface patterns cover links created later."""

    name = "bird"
    owner = None
    shell = "birdc"
    rejects = ()  # BIRD exits on a configuration error

    def __init__(self, cfg: RoutingConfig):
        self.daemons: list[Daemon] = [Bird()]

    @staticmethod
    def shell_args(d: Path) -> list[str]:
        return ["-s", str(d / "bird.ctl")]

    def link_commands(self, cfg: RoutingConfig, link: LinkSpec, node=None, plan=None) -> list[str] | None:
        return None


SUITES = {"frr": FrrSuite, "bird": BirdSuite}


def make_suite(cfg: RoutingConfig):
    """The suite of the scenario's ``routing.daemon``."""
    return SUITES[cfg.daemon](cfg)


def make_shell_args(routing: dict, node: str) -> list[str]:
    """The options that point a run's daemon shell (``routing["shell"]``: vtysh or birdc) at ``node``'s daemons,
    from the ``routing`` entry of the run's state file."""
    return SUITES[routing["daemon"]].shell_args(Path(routing["dir"]) / node)
