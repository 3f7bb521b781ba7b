"""FRR's bfdd: Bidirectional Forwarding Detection, so that a dead link is noticed in a few BFD intervals
rather than a dead interval.

It runs between zebra and the protocol daemon when the scenario sets ``bfd: true``; its profile ``lasernet``
carries the scenario's interval and detect multiplier, and the protocol daemons attach their links to it.
"""

from __future__ import annotations

from .frr import FrrDaemon


class Bfdd(FrrDaemon):
    """bfdd (template ``bfdd.conf.j2``)."""

    name = "bfdd"
