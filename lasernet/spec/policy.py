"""The scenario's ``policy:`` section: residency rules, which keep a jurisdiction's own traffic on its own network.

Data-residency and sovereignty laws (the EU's rules on where personal data may travel, national rules for
government traffic) ask that traffic between two sites under one jurisdiction stay on infrastructure under that
jurisdiction. In a constellation that means two things: the satellites it crosses belong to operators licensed
for the jurisdiction, and it comes down only at the jurisdiction's own ground stations (a path from Frankfurt to
Dublin that lands at Ashburn and goes up again has left the EU, even if every hop was the shortest).

Sites and operators say whose law they answer to with ``jurisdiction:`` (a short token: ``eu``, ``us``, ``in``;
:meth:`lasernet.spec.fields.Node.jurisdiction`): a ground station, city or data centre in its ``ground`` entry,
a satellite operator in ``routing.operators``. A :class:`Residency` rule for jurisdiction J then says:

* its *members* are the ground sites of jurisdiction J: traffic between two of them is what the rule governs
  (traffic from or to anywhere else is not);
* that traffic may cross only the satellites of ``operators`` (default: every operator of jurisdiction J) and
  only the ground sites of ``land_at`` (default: every site of jurisdiction J). A member outside ``land_at`` is
  an end of its own traffic only, never a relay for other members' traffic.

::

    policy:
      residency:
        - jurisdiction: eu
          operators: [alpha]        # optional: default, the operators whose jurisdiction is eu
          land_at: [frankfurt]      # optional: default, the sites whose jurisdiction is eu

The oracle routes a governed pair over the allowed nodes only (:mod:`lasernet.routing.policy`); a pair with no
allowed path is unreachable, never routed through a forbidden node. :func:`masks` turns the rules into the
boolean arrays over a plan's nodes that the plan keeps (``Timeline.residency_members``, ``residency_allowed``).
A site answers to one jurisdiction and a jurisdiction has one rule, so a pair is governed by one rule at most.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Residency:
    """One residency rule, resolved against the scenario: the jurisdiction, the operators whose satellites its
    traffic may cross, the ground sites it may cross or land at, and its members (the sites of the jurisdiction,
    whose traffic between each other it governs)."""

    jurisdiction: str
    operators: tuple[str, ...]
    land_at: tuple[str, ...]
    members: tuple[str, ...]

    @property
    def name(self) -> str:
        """How paths and errors call the rule: its jurisdiction (one rule per jurisdiction)."""
        return self.jurisdiction


@dataclass(frozen=True)
class Policy:
    """The ``policy:`` section: the residency rules, in the order given (rule k is ``policy.residency[k]``)."""

    residency: tuple[Residency, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.residency


def parse_policy(node, operators: tuple = (), ground: tuple = ()) -> Policy:
    """Validate a ``policy:`` mapping (a :class:`~lasernet.spec.fields.Node`; null: no policy) against the
    scenario's ``operators`` (:class:`lasernet.spec.routing.Operator`) and ``ground`` stations; raise the node's
    ScenarioError, naming ``policy.residency[k].field``, on a problem."""
    node.mapping(("residency",))
    rules: list[Residency] = []
    first: dict[str, int] = {}
    for k, item in enumerate(node.get("residency", []).items()):
        item.mapping(("jurisdiction", "operators", "land_at"))
        j_node = item.get("jurisdiction")
        jurisdiction = j_node.jurisdiction()
        if not jurisdiction:
            raise j_node.fail("must be a jurisdiction like eu, the one the rule keeps traffic within")
        if jurisdiction in first:
            raise j_node.fail(f"jurisdiction {jurisdiction!r} already has a rule "
                              f"(policy.residency[{first[jurisdiction]}]); give one rule per jurisdiction")
        first[jurisdiction] = k
        members = tuple(g.name for g in ground if g.jurisdiction == jurisdiction)
        if not members:
            known = sorted({g.jurisdiction for g in ground if g.jurisdiction})
            raise j_node.fail(f"no ground site has jurisdiction {jurisdiction!r} (the sites' jurisdictions: "
                              f"{', '.join(known) or 'none'}); set jurisdiction: {jurisdiction} on the stations "
                              f"it governs, or fix the rule")
        if len(members) < 2:
            raise j_node.fail(f"only {members[0]} has jurisdiction {jurisdiction!r}, and a rule governs traffic "
                              f"between two sites of it; give another station jurisdiction: {jurisdiction} or "
                              f"remove the rule")
        rules.append(Residency(jurisdiction, _operators(item, jurisdiction, operators),
                               _land_at(item, ground, members), members))
    return Policy(tuple(rules))


def member_mask(rule: Residency, node_names) -> np.ndarray:
    """(N,) bool over ``node_names``: the rule's members (the sites of its jurisdiction)."""
    members = set(rule.members)
    return np.fromiter((n in members for n in node_names), dtype=bool, count=len(node_names))


def allowed_mask(rule: Residency, node_names, n_satellites: int, operators: tuple = ()) -> np.ndarray:
    """(N,) bool over ``node_names`` (satellites first, then ground sites): the nodes the rule's traffic may
    cross: the satellites whose operator (the first of ``operators`` that owns it, as BGP counts it) the rule
    allows, and its ``land_at`` sites. (A member is also an end of its own traffic, allowed or not.)"""
    allowed = np.zeros(len(node_names), dtype=bool)
    taken = np.zeros(n_satellites, dtype=bool)
    names = node_names[:n_satellites]
    for op in operators:
        owned = np.fromiter((not t and op.owns(n) for n, t in zip(names, taken)), dtype=bool, count=n_satellites)
        taken |= owned
        if op.name in rule.operators:
            allowed[:n_satellites] |= owned
    ground = set(rule.land_at)
    allowed[n_satellites:] = np.fromiter((n in ground for n in node_names[n_satellites:]), dtype=bool,
                                         count=len(node_names) - n_satellites)
    return allowed


def masks(policy: Policy, node_names, n_satellites: int, operators: tuple = ()):
    """The rules as a plan keeps them: (names (R,), members (R, N) bool, allowed (R, N) bool)."""
    n = len(node_names)
    members = np.zeros((len(policy.residency), n), dtype=bool)
    allowed = np.zeros((len(policy.residency), n), dtype=bool)
    for k, rule in enumerate(policy.residency):
        members[k] = member_mask(rule, node_names)
        allowed[k] = allowed_mask(rule, node_names, n_satellites, operators)
    return tuple(r.name for r in policy.residency), members, allowed


# --------------------------------------------------------------------------------------------------------------
def _operators(item, jurisdiction: str, operators: tuple) -> tuple[str, ...]:
    names = [op.name for op in operators]
    if not operators:
        raise item.fail("a residency rule allows satellite operators, and the scenario has none; declare them in "
                        "routing.operators (protocol: bgp), each with its jurisdiction")
    given = item.get("operators", None)
    if given.value is None:
        own = tuple(op.name for op in operators if op.jurisdiction == jurisdiction)
        if not own:
            raise item.fail(f"no operator has jurisdiction {jurisdiction!r}, so no satellite may carry its traffic; "
                            f"set jurisdiction: {jurisdiction} on one in routing.operators, or give operators: "
                            f"[names]")
        return own
    out: list[str] = []
    for n in given.items():
        name = n.name()
        if name not in names:
            raise n.fail(f"unknown operator {name!r}; operators are {', '.join(names)} (routing.operators)")
        if name in out:
            raise n.fail(f"operator {name!r} is listed twice; list it once")
        out.append(name)
    if not out:
        raise given.fail(f"must list at least one operator ({', '.join(names)}), or leave it out for the "
                         f"operators of jurisdiction {jurisdiction!r}")
    return tuple(out)


def _land_at(item, ground: tuple, members: tuple[str, ...]) -> tuple[str, ...]:
    given = item.get("land_at", None)
    if given.value is None:
        return members
    stations = [g.name for g in ground]
    out: list[str] = []
    for n in given.items():
        name = n.name()
        if name not in stations:
            raise n.fail(f"unknown ground station {name!r}; stations are {', '.join(stations[:8])}"
                         f"{', ...' if len(stations) > 8 else ''}")
        if name in out:
            raise n.fail(f"station {name!r} is listed twice; list it once")
        out.append(name)
    return tuple(out)
