"""Residency rules in the live BGP configurations (real FRR on every router of `sovereign`), judged by the FIBs.

`sovereign` splits the `mini` shell between alpha (EU, planes 0-3) and beta (US, planes 4-7); its rule keeps
traffic between the EU sites (frankfurt, dublin, paris-dc) on alpha and EU ground. Started 308 s after its epoch,
dublin loses its last alpha satellite (sat-1-1) 7 s in and is left with beta's sat-7-1 (the plan says so, and
the test checks it): from then on no allowed path joins dublin to the other EU sites.

The same judge runs on two runs: the FIB watcher walking every router's kernel FIB with the rule's masks. With
the rule in the BGP configurations no governed pair's walk crosses a forbidden node at any sample, and a
governed pair is delivered exactly when the oracle's table over the rule's allowed nodes (the plan's links at
that second) reaches it; beta's satellites still reach dublin (BGP routes by destination: the forbidden
operator keeps the EU routes for its own traffic). Without the rule in the daemons (the scenario's policy left
out, the watcher given the rule's masks) the EU pairs with dublin cross beta.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time

import numpy as np
import pytest

import lasernet
from lasernet.routing import policy
from lasernet.spec.policy import Policy

from ..conftest import TOPOLOGIES

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root to create network namespaces (CI runs as root)", allow_module_level=True)

LINKS = os.environ.get("LASERNET_LINKS", "auto")
START_S = 308  # seconds after the scenario's epoch
JUDGED_AT_S = 12.0  # emulated seconds into the run: dublin has had beta only for 5 s
GOVERNED = ("frankfurt", "dublin", "paris-dc")


def _run(scenario, run_dir, judge=None):
    """Run ``scenario`` from START_S until JUDGED_AT_S; the watcher's samples, its last judgement and paths."""
    start = scenario.epoch + dt.timedelta(seconds=START_S)
    with lasernet.Emulation(dataclasses.replace(scenario, probes=()), start=start, run_dir=run_dir,
                            links=LINKS) as emu:
        fw = emu.fib_watch
        if judge is not None:  # the daemons do not know the rule; the watcher judges by it all the same
            fw.residency = judge
        while emu.now_s() < JUDGED_AT_S:
            emu.run(0.5)
        fw.evaluate()
        names = list(emu.node_names)
        paths = {(s, d): fw.path(s, d) for s in GOVERNED for d in GOVERNED if s != d}
        return {"samples": list(fw.samples), "last": dict(fw.last), "names": names, "paths": paths,
                "t_s": emu.now_s(), "n_satellites": emu.n_satellites}


def test_bgp_keeps_eu_pairs_on_allowed_nodes_or_unreachable_and_without_the_rule_they_cross_beta(tmp_path):
    t0 = time.monotonic()
    scenario = lasernet.load_scenario(TOPOLOGIES / "sovereign.yaml")
    tl = lasernet.plan(scenario, start=scenario.epoch + dt.timedelta(seconds=START_S), duration_s=30, step_s=1)
    names = list(tl.node_names)
    ix = {n: names.index(n) for n in names}
    beta = [n for n in names[:tl.n_satellites] if int(n.split("-")[1]) >= 4]

    def peers(station, step):
        i = ix[station]
        on = np.flatnonzero(tl.up[step] & ((tl.links.a == i) | (tl.links.b == i)))
        return {names[tl.links.b[j] if tl.links.a[j] == i else tl.links.a[j]] for j in on}

    assert "sat-1-1" in peers("dublin", 0) and peers("dublin", int(JUDGED_AT_S)) == {"sat-7-1"}

    on = _run(scenario, tmp_path / "with-rule")
    judged = int(round(on["t_s"]))
    reference = policy.of_timeline(tl, tl.up[judged], tl.delay_s[judged])
    rule = reference.rules[0]
    print(f"with the rule at {on['t_s']:.1f} s: paths {on['paths']}")
    assert max(s[6] for s in on["samples"]) == 0  # no sample, transients included, sent an EU pair through beta
    assert on["last"]["violating"] == 0
    for (s, d), path in on["paths"].items():
        reachable = rule.reachable(ix[s], ix[d])
        assert bool(on["last"]["delivered"][ix[s], ix[d]]) == reachable, (s, d, path, rule.path(ix[s], ix[d]))
        assert not set(path) & set(beta), (s, d, path)
    assert rule.reachable(ix["frankfurt"], ix["paris-dc"]) and not rule.reachable(ix["frankfurt"], ix["dublin"])
    # the watcher judges a governed pair over the nodes its rule allows: frankfurt-dublin is not a broken pair
    assert not on["last"]["connected"][ix["frankfurt"], ix["dublin"]]
    assert on["last"]["connected"][ix["frankfurt"], ix["paris-dc"]]
    beta_reach = [bool(on["last"]["delivered"][ix[n], ix["dublin"]]) for n in beta]
    assert all(beta_reach), [n for n, ok in zip(beta, beta_reach) if not ok]  # destination-based: beta keeps them

    judge = (tl.residency_members, tl.residency_allowed)
    off = _run(dataclasses.replace(scenario, policy=Policy()), tmp_path / "without-rule", judge=judge)
    print(f"without the rule at {off['t_s']:.1f} s: paths {off['paths']}")
    assert off["last"]["violating"] > 0
    assert "sat-7-1" in off["paths"][("frankfurt", "dublin")]
    assert bool(off["last"]["delivered"][ix["frankfurt"], ix["dublin"]])
    print(f"took {time.monotonic() - t0:.1f} s")
