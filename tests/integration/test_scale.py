"""The bulk bring-up and the background oracle at moderate scale (`walker-240`: 243 routers) as root.

What a large run relies on, at a size that runs in well under a minute: every node's shell started in bulk has
its sysctls and loopback (set by netlink, not by its shell), ground stations reach each other's loopbacks over
multi-hop paths whose routes came from the background oracle process, and stopping removes exactly what the run
created (processes, namespaces, shared memory, state files) and the oracle process with it. No timing is asserted
here; scripts/bench/emulation.py measures.
"""

from __future__ import annotations

import os
import re

import pytest

import lasernet

from ..conftest import TOPOLOGIES
from .test_lifecycle import assert_nothing_left, snapshot

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root to create network namespaces (CI runs as root)", allow_module_level=True)

STATIONS = ("ashburn", "frankfurt", "singapore-gs")


def _ping_ok(node, target_ip: str) -> tuple[int, str]:
    out = node.cmd(f"ping -c 4 -i 0.2 -W 2 {target_ip}")
    match = re.search(r"(\d+) received", out)
    return (int(match.group(1)) if match else 0), out


def test_walker_240_comes_up_routes_ground_to_ground_and_leaves_nothing(tmp_path):
    scenario = lasernet.load_scenario(TOPOLOGIES / "walker-240.yaml")
    before = snapshot()
    emu = lasernet.Emulation(scenario, links="delayline", routing="background", duration_s=30,
                             run_dir=tmp_path / "run")
    oracle = None
    try:
        emu.start()
        assert len(emu.nodes) == 243
        oracle = emu.oracle_process
        # Bulk-started shells work as Mininet shells and got their node configuration by netlink.
        sat = emu.nodes["sat-7-13"]
        assert sat.cmd("echo hello").strip() == "hello"
        assert sat.cmd("cat /proc/sys/net/ipv4/ip_forward").strip() == "1"
        assert f"{sat.loopback}/32" in sat.cmd("ip -4 addr show dev lo")
        emu.run(1.0)  # a few ticks with background route updates
        for a in STATIONS:
            for b in STATIONS:
                if a == b:
                    continue
                path, delay = emu.path(a, b)
                assert len(path) >= 4 and 0 < delay < 0.2, (a, b, path, delay)
                received, out = _ping_ok(emu.nodes[a], emu.nodes[b].IP())
                assert received >= 3, f"{a} -> {b} over {'>'.join(path)}:\n{out}"
        # Routes reach satellites too: a ground station pings a satellite half the constellation away.
        received, out = _ping_ok(emu.nodes["ashburn"], emu.nodes["sat-6-10"].IP())
        assert received >= 3, out
    finally:
        emu.stop()
    assert oracle is not None and not oracle.alive(), "the oracle process outlived stop()"
    assert_nothing_left(before)
