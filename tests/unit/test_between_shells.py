"""Links between the shells of a multi-shell +Grid constellation (``isl.between_shells``): at every step the
between-shell links held are those a brute-force loop over all cross-shell pairs chooses by the documented nearest
rule (usable = within range here, where no chord of that length can touch the Earth; greedy shortest first, a
held link ranked ``switch_margin`` shorter, ties to the lower pair, ``count`` terminals per satellite), the +Grid
is the one the scenario has without the option, a held link survives a slightly nearer candidate, and bad input
is one line.
"""

from __future__ import annotations

import numpy as np
import pytest

import lasernet
from lasernet import skydata
from lasernet.orbits import build_satellites
from lasernet.timeline import ACQUISITION, HANDOVER, UP
from lasernet.topology import BETWEEN_SHELLS, INTER, INTRA, ISL

MAX_RANGE_KM = 3000.0  # between 600 and 1100 km altitude, a 3,000 km chord passes 590 km above the surface
STEP_S, DURATION_S, MARGIN = 10.0, 1800.0, 0.2

TWO_SHELLS = """
name: two-shells
epoch: 2026-01-01T00:00:00Z
constellation:
  shells:
    - {{name: hi, type: delta, planes: 6, sats_per_plane: 8, phasing: 1, altitude_km: 1100, inclination_deg: 53}}
    - {{name: lo, type: delta, planes: 5, sats_per_plane: 6, phasing: 2, altitude_km: 600, inclination_deg: 70}}
terminals:
  isl: {{count: {terminals}, max_range_km: {range_km}, acquisition_s: 4, sun_exclusion_deg: 0}}
isl: {isl}
"""


def scenario_text(isl: str, terminals: int = 5) -> str:
    return TWO_SHELLS.format(terminals=terminals, range_km=MAX_RANGE_KM, isl=isl)


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    d = tmp_path_factory.mktemp("between")
    (d / "with.yaml").write_text(scenario_text(f"{{pattern: plus-grid, between_shells: {{count: 1}}, "
                                               f"switch_margin: {MARGIN}}}"))
    (d / "without.yaml").write_text(scenario_text("{pattern: plus-grid}"))
    sc = lasernet.load_scenario(d / "with.yaml")
    plain = lasernet.load_scenario(d / "without.yaml")
    return (sc, lasernet.plan(sc, duration_s=DURATION_S, step_s=STEP_S),
            lasernet.plan(plain, duration_s=DURATION_S, step_s=STEP_S))


def cross_shell_ranges(sc, T: int) -> list[dict]:
    """At each step, the range (km) of every cross-shell pair within ``MAX_RANGE_KM``, by a plain loop."""
    sats = build_satellites(sc)
    pos = sats.positions_km(skydata.times(sc.epoch, np.arange(T) * STEP_S))
    N = len(sats)
    out = []
    for k in range(T):
        here = {}
        for i in range(N):
            for j in range(i + 1, N):
                if sats.shell[i] != sats.shell[j]:
                    r = float(np.sqrt(((pos[k, i] - pos[k, j]) ** 2).sum()))
                    if r <= MAX_RANGE_KM:
                        here[(i, j)] = r
        out.append(here)
    return out


def greedy(ranges: dict, held: set, count: int, margin: float, N: int) -> set:
    """One step of the documented rule: shortest first (a held link as if ``margin`` shorter), ties to the lower
    pair, while both ends have one of ``count`` terminals free."""
    ranked = sorted(((1 - margin) * r if ij in held else r, ij) for ij, r in ranges.items())
    free = [count] * N
    now = set()
    for _, (i, j) in ranked:
        if free[i] and free[j]:
            now.add((i, j))
            free[i] -= 1
            free[j] -= 1
    return now


def brute_force_choice(sc, T: int, count: int, margin: float) -> list[set]:
    """The held between-shell pairs at each step, by the documented rule over every cross-shell pair."""
    N = len(build_satellites(sc))
    held: set = set()
    out = []
    for ranges in cross_shell_ranges(sc, T):
        held = greedy(ranges, held, count, margin, N)
        out.append(held)
    return out


def held_between(tl) -> list[set]:
    cols = np.flatnonzero(tl.links.role == BETWEEN_SHELLS)
    holding = (tl.cause == UP) | (tl.cause == ACQUISITION)  # a terminal is held while it acquires too
    return [{(min(tl.links.a[c], tl.links.b[c]), max(tl.links.a[c], tl.links.b[c])) for c in cols
             if holding[k, c]} for k in range(len(tl.offsets_s))]


def test_between_shell_links_are_the_brute_force_nearest_choice_at_every_step(planned):
    sc, tl, _ = planned
    chosen = held_between(tl)
    reference = brute_force_choice(sc, len(tl.offsets_s), 1, MARGIN)
    assert sum(map(len, reference)) > 0
    for k, (got, want) in enumerate(zip(chosen, reference)):
        assert got == want, f"step {k}: plan {sorted(got - want)} extra, {sorted(want - got)} missing"


def test_links_join_satellites_of_different_shells_and_a_usable_loser_is_a_handover(planned):
    sc, tl, _ = planned
    sats = build_satellites(sc)
    cols = np.flatnonzero(tl.links.role == BETWEEN_SHELLS)
    assert len(cols) > 0 and (tl.links.kind[cols] == ISL).all()
    assert (sats.shell[tl.links.a[cols]] != sats.shell[tl.links.b[cols]]).all()
    assert (tl.cause[:, cols] == HANDOVER).any()  # a pair in range that lost the choice
    assert (tl.cause[:, cols] == ACQUISITION).any()  # a new partner is acquired first


def test_the_budget_binds_and_the_grid_is_untouched(planned):
    _, tl, plain = planned
    cols = np.flatnonzero(tl.links.role == BETWEEN_SHELLS)
    holding = (tl.cause == UP) | (tl.cause == ACQUISITION)
    deg = np.zeros((len(tl.offsets_s), tl.n_satellites), int)
    for c in cols:
        deg[:, tl.links.a[c]] += holding[:, c]
        deg[:, tl.links.b[c]] += holding[:, c]
    assert deg.max() == 1
    grid = np.flatnonzero(np.isin(tl.links.role, (INTRA, INTER)))
    pgrid = np.flatnonzero(plain.links.kind == ISL)
    assert [tl.links.names[i] for i in grid] == [plain.links.names[i] for i in pgrid]
    assert np.array_equal(tl.cause[:, grid], plain.cause[:, pgrid])
    assert np.array_equal(tl.up[:, grid], plain.up[:, pgrid])
    grid_deg = np.bincount(np.concatenate([tl.links.a[grid], tl.links.b[grid]]), minlength=tl.n_satellites)
    assert (grid_deg + deg.max(axis=0)).max() <= 5  # terminals.isl.count


def test_a_held_link_is_kept_against_a_candidate_only_slightly_nearer(planned):
    sc, tl, _ = planned
    chosen = held_between(tl)
    ranges = cross_shell_ranges(sc, len(chosen))
    kept = 0
    for k in range(1, len(chosen)):
        busy = {end for pair in chosen[k] for end in pair}
        for i, j in chosen[k] & chosen[k - 1]:
            r = ranges[k][(i, j)]
            # partners of another shell with their terminal free at this step, nearer than the held one
            rivals = [d for (x, y), d in ranges[k].items() if d < r and (x in (i, j)) != (y in (i, j))
                      and ({x, y} - {i, j}).isdisjoint(busy)]
            assert all(d > (1 - MARGIN) * r for d in rivals), f"step {k}: {(i, j)} kept against a much nearer one"
            kept += bool(rivals)
    assert kept > 0
    # with no margin the same constellation switches partners more often
    no_margin = brute_force_choice(sc, len(chosen), 1, 0.0)
    switches = lambda steps: sum(len(b - a) for a, b in zip(steps, steps[1:]))  # noqa: E731
    assert switches(chosen) < switches(no_margin)


@pytest.mark.parametrize("isl, terminals, match", [
    ("{pattern: plus-grid, between_shells: {count: 2}}", 5,
     r"terminals\.isl\.count: pattern plus-grid \+ 2 between shells needs 6 ISL terminals per satellite, got 5"),
    ("{pattern: nearest, between_shells: {count: 1}}", 5, r"isl\.between_shells: only applies to pattern: plus-grid"),
    ("{pattern: plus-grid, between_shells: {count: 0}}", 5, r"isl\.between_shells\.count"),
    ("{pattern: plus-grid, between_shells: {cout: 1}}", 5, r"isl\.between_shells"),
])
def test_bad_between_shells_is_one_line(write_scenario, isl, terminals, match):
    with pytest.raises(lasernet.ScenarioError, match=match) as err:
        lasernet.load_scenario(write_scenario(scenario_text(isl, terminals)))
    assert "\n" not in str(err.value)


def test_between_shells_on_a_single_shell_is_refused_in_one_line(write_scenario):
    text = scenario_text("{pattern: plus-grid, between_shells: {count: 1}}").replace(
        "    - {name: lo, type: delta, planes: 5, sats_per_plane: 6, phasing: 2, altitude_km: 600, "
        "inclination_deg: 70}\n", "")
    with pytest.raises(lasernet.ScenarioError, match=r"isl\.between_shells: needs two or more Walker shells") as err:
        lasernet.load_scenario(write_scenario(text))
    assert "\n" not in str(err.value)
