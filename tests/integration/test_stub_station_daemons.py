"""A stub station (``transit: false``) carries no route between satellites, with real routing daemons.

Four satellites fly in a chain (formation, ring pattern: 0-1-2-3) 2,000 km above one ground station that links all
four (``handover: all-in-range``). With hop-count metrics the shortest way from sat-0-0 to sat-0-3 is two hops
through the station against three along the chain: a station that relays takes it, a stub must not. For each
protocol the kernel's route on sat-0-0 to sat-0-3's loopback is read once the FIB watcher says every connected pair
is delivered (and again until it has held for 3 s): it leaves by the interface to sat-0-1 (the chain), and the
station still pings sat-0-3. With ``transit: true`` the same route leaves towards the station, which shows that the
test tells the two apart, for every protocol but BGP: there all four satellites are one operator's confederation,
and a route back from the station carries that confederation's AS, which BGP's own loop check refuses, stub or not
(the stub's export filter matters between operators; the unit tests check its configuration).
"""

from __future__ import annotations

import os

import pytest

import lasernet

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root to create network namespaces (CI runs as root)", allow_module_level=True)

LINKS = os.environ.get("LASERNET_LINKS", "auto")
CONVERGE_TIMEOUT_S = 90
# the chain's midpoint at the epoch (lasernet plan of this shell): the station sees all four for the whole run
SCENARIO = """
name: stub-chain
epoch: 2026-01-01T00:00:00Z
constellation:
  shells: [{name: sat, type: formation, planes: 1, sats_per_plane: 4, spacing_km: 100, altitude_km: 2000,
            inclination_deg: 50}]
terminals:
  isl: {count: 2, max_range_km: 5000, acquisition_s: 0, sun_exclusion_deg: 0}
  gsl: {kind: rf, count: 1, max_range_km: 6000, acquisition_s: 0}
isl: {pattern: ring}
ground:
  defaults: {min_elevation_deg: 10, max_links: 4, handover: all-in-range}
  stations: [{name: gs, lat_deg: -0.060, lon_deg: -100.712, transit: TRANSIT}]
routing: ROUTING
plan: {duration_s: 600, step_s: 1}
"""
CASES = {"ospf-frr": "{protocol: ospf, daemon: frr, hello_s: 1, dead_s: 4}",
         "isis-frr": "{protocol: isis, daemon: frr, hello_s: 1, dead_s: 3}",
         "bgp-frr": "{protocol: bgp, hello_s: 1, dead_s: 3, operators: [{name: alpha, asn: 64500, planes: [0, 0]}]}",
         "ospf-bird": "{protocol: ospf, daemon: bird, hello_s: 1, dead_s: 4}",
         "babel-bird": "{protocol: babel, daemon: bird, hello_s: 0.5}"}


def _route_dev(emu, src: str, dst: str) -> str:
    out = emu.nodes[src].cmd(f"ip -o route get {emu.nodes[dst].IP()}")
    words = out.split()
    return words[words.index("dev") + 1] if "dev" in words else ""


def _pings(emu, src: str, dst: str) -> bool:
    out = emu.nodes[src].cmd(f"ping -c 3 -i 0.2 -W 2 -I {emu.nodes[src].IP()} {emu.nodes[dst].IP()}")
    return "received" in out and " 0 received" not in out


def _converged_route(tmp_path, case: str, transit: bool, expect: str) -> tuple[str, bool]:
    """The device sat-0-0's route to sat-0-3 settles on (``expect`` if it does within 20 s, and stays 3 s), and
    whether the station pings sat-0-3 over its own links."""
    text = SCENARIO.replace("TRANSIT", "true" if transit else "false").replace("ROUTING", CASES[case])
    path = tmp_path / "stub-chain.yaml"
    path.write_text(text)
    with lasernet.Emulation(lasernet.load_scenario(path), links=LINKS, run_dir=tmp_path / "run") as emu:
        took = emu.run_until_converged(CONVERGE_TIMEOUT_S, settle_s=2.0)
        assert took is not None, f"{case} did not converge within {CONVERGE_TIMEOUT_S} s"
        via, held_s = "", 0.0
        for _ in range(80):  # after every pair is delivered, routes may still improve (the last LSAs, updates)
            now = _route_dev(emu, "sat-0-0", "sat-0-3")
            held_s = held_s + 0.25 if now == via else 0.0
            via = now
            if via == expect and held_s >= 3.0:
                break
            emu.run(0.25)
        return via, _pings(emu, "gs", "sat-0-3")


@pytest.mark.parametrize("case", list(CASES))
def test_no_route_between_satellites_passes_through_a_stub_station(tmp_path, case):
    via, station_reaches = _converged_route(tmp_path, case, transit=False, expect="sat-0-1")
    print(f"{case}: sat-0-0 -> sat-0-3 leaves by {via}")
    assert via == "sat-0-1", f"{case}: sat-0-0 routes to sat-0-3 by {via!r}, not along the chain"
    assert station_reaches  # the stub itself still routes, and is routed to, over its own links


@pytest.mark.parametrize("case", [c for c in CASES if c != "bgp-frr"])
def test_a_relaying_station_takes_the_two_hop_shortcut(tmp_path, case):
    via, _ = _converged_route(tmp_path, case, transit=True, expect="gs")
    assert via == "gs", f"{case}: with transit: true sat-0-0 -> sat-0-3 should go through gs, got {via!r}"
