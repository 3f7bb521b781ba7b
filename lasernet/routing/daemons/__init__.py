"""Real routing daemons on every router: FRR (zebra + ospfd / isisd / bgpd, bfdd) or BIRD 2, one set per node.

This is the face; the pieces divide the work the way IPMininet's do. A daemon class knows its name, its template,
its command line, its control socket and what it leaves when killed (:mod:`.base`; FRR's daemons in
:mod:`.frr`, :mod:`.zebra`, :mod:`.ospf`, :mod:`.isis`, :mod:`.bgp`, :mod:`.bfd`; BIRD in :mod:`.bird`). A suite
knows which daemons a protocol needs and how an operator reaches them (:mod:`.suite`). :mod:`.bgp_plan` decides
who is which AS under BGP. A :class:`DaemonSet` runs a suite on every router of one run (:mod:`.daemonset`), and
:func:`remove_leftovers` is what ``lasernet down`` removes of them from the state file alone (:mod:`.leftovers`).
The configuration text lives in ``templates/<daemon>.conf.j2`` (one link's, for FRR, in ``<daemon>.link.j2``).
"""

from .base import TEMPLATES, Daemon, LinkSpec, NodeSpec, Running, RoutingDaemonError
from .bfd import Bfdd
from .bgp import Bgpd
from .bgp_plan import BgpPlan
from .bird import Bird
from .daemonset import ConfigHook, DaemonSet
from .frr import FRR_BIN, FRR_TMP, FrrDaemon
from .isis import Isisd
from .leftovers import remove_leftovers
from .ospf import Ospfd
from .suite import BirdSuite, FrrSuite, make_shell_args, make_suite
from .zebra import Zebra

__all__ = ["FRR_BIN", "FRR_TMP", "TEMPLATES", "Bfdd", "Bgpd", "BgpPlan", "Bird", "BirdSuite", "ConfigHook", "Daemon",
           "DaemonSet", "FrrDaemon", "FrrSuite", "Isisd", "LinkSpec", "NodeSpec", "Ospfd", "RoutingDaemonError",
           "Running", "Zebra", "make_shell_args", "make_suite", "remove_leftovers"]
