"""Authenticated routing: a router with the wrong key gets no adjacency or session and injects no route.

Every router of `mini` runs the protocol with ``auth:`` (OSPF: keyed MD5 in FRR, HMAC-SHA-256 in BIRD; IS-IS:
HMAC-MD5 on hellos and LSPs; BGP: TCP MD5 signatures), the key read from a file only its owner can read, and
one ground station (the "rogue") is configured with another key, in its configuration files and in the commands
that configure its links made later (``daemon_config_hook``). The run starts where planning finds another station
(ashburn or frankfurt) handing over soon after the first 20 s plan window, so that its new link is made after
start (a window's links are made when it begins) and FRR configures it, key included, from a private command
file. The evidence is every router's FIB, read from the kernels by the FIB watcher, after that handover: the
other routers reach each other (that station now only over its new link), no router has a route to the rogue's
loopback and the rogue has a route to nobody. With authentication off, the same station is reached by every router.

Beside: the configuration files are readable by root and the daemons' user only (0600) while the run is up, and
the key appears nowhere in the run directory afterwards (configs, daemon logs, summary, the scenario's copy).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import stat
import time

import numpy as np
import pytest

import lasernet
from lasernet.timeline import GSL

from ..conftest import TOPOLOGIES

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root to create network namespaces (CI runs as root)", allow_module_level=True)

LINKS = os.environ.get("LASERNET_LINKS", "auto")
KEY, WRONG = "Lk7.orbit-key", "Xq2.other-key"
ROGUE = "dublin"
SETTLE_TIMEOUT_S = 120  # wall seconds for the others to reach each other (IS-IS takes ~30 s on mini)
WINDOW_S = 20.0  # plan windows: a link that first comes up in the second is made after start
CASES = [("ospf", "frr"), ("ospf", "bird"), ("isis", "frr"), ("bgp", "frr")]


def _scenario(tmp_path, protocol: str, daemon: str, auth: bool):
    key_file = tmp_path / "routers.key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    text = (TOPOLOGIES / "mini.yaml").read_text().replace("ground/sites.yaml", str(TOPOLOGIES / "ground/sites.yaml"))
    text = text.replace("handover: longest-visible", "handover: nearest")  # handovers that no plan window moves
    extra = {"bgp": "\n  hello_s: 1\n  dead_s: 3\n  operators:\n    - {name: alpha, asn: 64500, planes: [0, 3]}"
                    "\n    - {name: beta, asn: 64501, planes: [4, 7]}"}.get(protocol, "")
    text += (f"\nrouting:\n  protocol: {protocol}\n  daemon: {daemon}{extra}\n"
             + (f"  auth: {{key_file: {key_file}}}\n" if auth else ""))
    path = tmp_path / "mini-auth.yaml"
    path.write_text(text)
    scenario = lasernet.load_scenario(path)
    assert scenario.routing.auth_key == (KEY if auth else "") and KEY not in repr(scenario)
    return dataclasses.replace(scenario, probes=())


def _handover_start(scenario):
    """A start (and the station, its new satellite, the emulated second) at which a station other than the rogue
    hands over to a link that first comes up after the first plan window: found by planning, as the run will."""
    for k in range(120):
        start = scenario.epoch + dt.timedelta(seconds=60.0 * k)
        tl = lasernet.plan(scenario, start=start, duration_s=WINDOW_S + 30)
        names = tl.node_names
        for li in np.flatnonzero(tl.links.kind == GSL):
            a, b = names[tl.links.a[li]], names[tl.links.b[li]]
            station, sat = (a, b) if a in ("ashburn", "frankfurt") else (b, a) if b in ("ashburn", "frankfurt") \
                else (None, None)
            up = np.flatnonzero(tl.up[:, li])
            if station and len(up) and tl.offsets_s[up[0]] > WINDOW_S + 1 and tl.offsets_s[up[0]] < WINDOW_S + 15:
                return start, station, sat, float(tl.offsets_s[up[0]])
    raise AssertionError("no handover onto a link made after start in mini's first two hours")


def _rogue_hook(node: str, daemon: str, text: str) -> str:
    return text.replace(KEY, WRONG) if node == ROGUE else text


def _run(tmp_path, protocol, daemon, auth):
    """Run until every pair of the other routers is delivered; return the final FIB judgement and the rogue."""
    run_dir = tmp_path / "run"
    scenario = _scenario(tmp_path, protocol, daemon, auth)
    start, station, satellite, new_at_s = _handover_start(scenario)
    with lasernet.Emulation(scenario, links=LINKS, run_dir=run_dir, start=start, window_s=WINDOW_S,
                            daemon_config_hook=_rogue_hook) as emu:
        rogue = emu.node_names.index(ROGUE)
        others = np.ones(len(emu.node_names), bool)
        others[rogue] = False
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in emu.host.daemons.node_dir(ROGUE).glob("*.conf")}
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while True:
            emu.run(0.5)
            emu.fib_watch.evaluate()
            last = emu.fib_watch.last
            pairs = last["connected"][np.ix_(others, others)]
            settled = (last["delivered"][np.ix_(others, others)] | ~pairs).all() and emu.clock.now_s() >= new_at_s + 2
            if settled or time.monotonic() > deadline:
                break
        emu.run(3.0)  # a few more hellos and updates: time for the rogue's routes to spread, if they could
        emu.fib_watch.evaluate()
        last = dict(emu.fib_watch.last)
        next_slot = emu.fib_watch.next_slot.copy()
        handed = emu.node_names.index(station)
        links_up = emu.applied.valid & emu.applied.up
        station_links = sorted(emu.node_names[lk.b if lk.a == handed else lk.a]
                               for lk, on in zip(emu.applied.links, links_up) if on and handed in (lk.a, lk.b))
        command_files = len(list(emu.host.daemons.base.glob("*/link-*.vtysh")))
        delivered = last["delivered"][np.ix_(others, others)] | ~last["connected"][np.ix_(others, others)]
    return {"others_delivered": bool(delivered.all()), "to_rogue": int((next_slot[others, rogue] >= 0).sum()),
            "from_rogue": int((next_slot[rogue, others] >= 0).sum()), "n_others": int(others.sum()),
            "modes": modes, "run_dir": run_dir, "station": station, "satellite": satellite,
            "station_links": station_links, "command_files": command_files}


@pytest.mark.parametrize("protocol, daemon", CASES, ids=[f"{p}-{d}" for p, d in CASES])
def test_a_router_with_the_wrong_key_gets_no_adjacency_and_injects_no_route_in_any_fib(tmp_path, protocol, daemon):
    r = _run(tmp_path, protocol, daemon, auth=True)
    print(f"{protocol} ({daemon}) with auth, {ROGUE} keyed wrong: others delivered {r['others_delivered']}, "
          f"routers with a route to {ROGUE} {r['to_rogue']} of {r['n_others']}, routes from it {r['from_rogue']}; "
          f"{r['station']} over {r['station_links']} (made after start), {r['command_files']} link command files")
    assert r["station_links"] == [r["satellite"]], r  # on its link made after start
    assert r["others_delivered"]  # the right key forms adjacencies, on links made after start too
    if daemon == "frr":  # FRR configures those links by commands, BIRD by its interface pattern
        assert r["command_files"] >= 2, r["command_files"]  # both ends of the station's new link
    assert r["to_rogue"] == 0 and r["from_rogue"] == 0
    assert r["modes"] and set(r["modes"].values()) == {0o600}, r["modes"]
    leaks = [str(p) for p in r["run_dir"].rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert not leaks, leaks


def test_without_authentication_the_same_router_is_reached_by_every_other(tmp_path):
    r = _run(tmp_path, "ospf", "frr", auth=False)
    print(f"ospf (frr) without auth: routers with a route to {ROGUE} {r['to_rogue']} of {r['n_others']}")
    assert r["others_delivered"] and r["to_rogue"] == r["n_others"] and r["from_rogue"] == r["n_others"]
