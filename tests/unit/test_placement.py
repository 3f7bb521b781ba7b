"""Placement of routers on cluster machines: whole planes in contiguous blocks, few links cut, stations with
their satellites; checked against counts made independently from the plan's link table."""

from __future__ import annotations

import numpy as np
import pytest

import lasernet
from lasernet.emulation.cluster.placement import place, plane_blocks

from ..conftest import TOPOLOGIES


def test_plane_blocks_keep_planes_whole_contiguous_and_balanced():
    planes = [f"sat-{p}" for p in range(22) for _ in range(72)]  # starlink-shell1's 22 x 72
    for n in (1, 2, 3, 4, 7):
        machine = plane_blocks(planes, n)
        per_plane = [set(machine[p * 72:(p + 1) * 72].tolist()) for p in range(22)]
        assert all(len(s) == 1 for s in per_plane)  # no plane split
        order = [s.pop() for s in per_plane]
        assert order == sorted(order) and set(order) == set(range(n))  # contiguous blocks, every machine used
        counts = np.bincount(machine, minlength=n)
        assert counts.max() - counts.min() <= 72  # within one plane of each other


def test_more_machines_than_planes_cuts_inside_planes():
    machine = plane_blocks(["a"] * 10 + ["b"] * 10, 4)
    assert np.bincount(machine).tolist() == [5, 5, 5, 5]


def test_element_file_satellites_are_blocked_in_file_order():
    machine = plane_blocks([""] * 9, 3)
    assert machine.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_mini_on_two_machines_cuts_only_inter_plane_links_between_blocks_and_places_stations_by_their_links():
    sc = lasernet.load_scenario(TOPOLOGIES / "mini.yaml")
    tl = lasernet.plan(sc, duration_s=600)
    n_sat = tl.n_satellites
    p = place(tl.planes, n_sat, len(tl.node_names) - n_sat, tl.links.a, tl.links.b, tl.up, 2)
    a, b = np.asarray(tl.links.a), np.asarray(tl.links.b)
    isl = (a < n_sat) & (b < n_sat)
    plane = np.array([int(tl.planes[i].split("-")[1]) for i in range(n_sat)])
    cut = isl & p.crossing(a, b)
    # Independent reference: a cut ISL joins two planes, one on each side of a block boundary.
    assert not (cut & (plane[a.clip(max=n_sat - 1)] == plane[b.clip(max=n_sat - 1)])).any()
    intra = isl & (plane[a.clip(max=n_sat - 1)] == plane[b.clip(max=n_sat - 1)])
    assert intra.sum() > 0 and not p.crossing(a[intra], b[intra]).any()
    # Each station's machine is the one with most of its link-steps (counted here, link by link).
    steps = tl.up.sum(axis=0)
    for s in range(n_sat, len(tl.node_names)):
        votes = np.zeros(2)
        for li in np.flatnonzero((a == s) | (b == s)):
            sat = b[li] if a[li] == s else a[li]
            if sat < n_sat:
                votes[p.machine[sat]] += steps[li]
        assert p.machine[s] == int(np.argmax(votes)), tl.node_names[s]
    assert p.share(2).sum() == len(tl.node_names)


@pytest.mark.parametrize("n", [2, 4])
def test_shell1_plane_blocks_cut_far_fewer_isls_than_a_random_placement(n):
    sc = lasernet.load_scenario(TOPOLOGIES / "starlink-shell1.yaml")
    tl = lasernet.plan(sc, duration_s=10, step_s=10)
    n_sat = tl.n_satellites
    p = place(tl.planes, n_sat, len(tl.node_names) - n_sat, tl.links.a, tl.links.b, tl.up, n)
    a, b = np.asarray(tl.links.a), np.asarray(tl.links.b)
    isl = (a < n_sat) & (b < n_sat)
    cut = int((isl & p.crossing(a, b)).sum())
    rng = np.random.default_rng(1)
    random = rng.integers(0, n, len(tl.node_names))
    cut_random = int((isl & (random[a] != random[b])).sum())
    print(f"shell1 on {n} machines: plane blocks cut {cut} of {int(isl.sum())} ISLs, random {cut_random}")
    assert cut <= 2 * n * 72 * 1.05  # about 2 inter-plane links per satellite at each of n boundaries (ring)
    assert cut * 5 < cut_random
