"""The ``nearest`` ISL pattern: never more links than terminals, no flip-flop between partners at nearly the same
range, the first step equal to a brute-force choice over all pairs computed from Skyfield, and windows that join
into one plan, for mixed shells with a satellite from a TLE file and for a formation.
"""

from __future__ import annotations

import numpy as np
import pytest

import lasernet
from lasernet import skydata, terminals
from lasernet.orbits import build_satellites
from lasernet.timeline import ACQUISITION, HANDOVER, UP, plan_next
from lasernet.topology import ISL, NEAREST

from ..conftest import DATA, TOPOLOGIES

COUNT = 2


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Two Walker shells and the ISS (its 2014 TLE: the epoch is then), two terminals each, no Sun exclusion."""
    d = tmp_path_factory.mktemp("nearest")
    (d / "iss.tle").write_text((DATA / "iss.tle").read_text())
    (d / "mixed.yaml").write_text(f"""
name: mixed
epoch: 2014-01-21T00:00:00Z
constellation:
  shells:
    - {{name: hi, type: delta, planes: 6, sats_per_plane: 8, phasing: 1, altitude_km: 1100, inclination_deg: 53}}
    - {{name: lo, type: delta, planes: 5, sats_per_plane: 6, phasing: 2, altitude_km: 600, inclination_deg: 70}}
  tle: [iss.tle]
terminals:
  isl: {{count: {COUNT}, max_range_km: 4000, acquisition_s: 4, sun_exclusion_deg: 0}}
isl: {{pattern: nearest, switch_margin: 0.2}}
""")
    sc = lasernet.load_scenario(d / "mixed.yaml")
    return sc, lasernet.plan(sc, duration_s=1800, step_s=5)


def _per_node(tl, mask):
    """(T, N) links counted at each end where ``mask`` (T, L)."""
    T, N = mask.shape[0], tl.n_satellites
    deg = np.zeros((T, N), int)
    isl = np.flatnonzero(tl.links.kind == ISL)
    for j in isl:
        deg[:, tl.links.a[j]] += mask[:, j]
        deg[:, tl.links.b[j]] += mask[:, j]
    return deg


def test_no_satellite_holds_more_links_than_it_has_terminals(mixed):
    _, tl = mixed
    isl = tl.links.kind == ISL
    assert (tl.links.role[isl] == NEAREST).all() and isl.sum() > 84
    holding = (tl.cause == UP) | (tl.cause == ACQUISITION)  # a terminal is held while acquiring too
    holding[:, ~isl] = False
    assert _per_node(tl, holding).max() == COUNT
    assert (_per_node(tl, tl.up & isl[None, :]).mean(axis=0) > 1).mean() > 0.8, "most satellites use both terminals"
    summary = tl.summary()["isl"]
    assert summary["up_max"] <= COUNT * tl.n_satellites // 2
    assert "handover" in summary["down_link_steps_by_cause"]


def _skyfield_km(sats, epoch, offsets_s):
    from skyfield.api import EarthSatellite
    from skyfield.framelib import itrs

    ts = skydata.timescale()
    t = skydata.times(epoch, np.asarray(offsets_s, float))
    return np.stack([EarthSatellite.from_satrec(s, ts).at(t).frame_xyz(itrs).km.T for s in sats.satrecs], axis=1)


def _clear_of_earth(p, q, atmosphere_km=80.0):
    """Segment p-q clears the WGS84 ellipsoid + atmosphere (z stretched by a/b: the ellipsoid becomes a sphere)."""
    a, f = 6378.137, 1 / 298.257223563
    s = np.array([1.0, 1.0, 1 / (1 - f)])
    p, q = p * s, q * s
    d = q - p
    u = np.clip(-np.dot(p, d) / np.dot(d, d), 0, 1)
    return np.linalg.norm(p + u * d) - a >= atmosphere_km


def test_the_first_step_is_the_brute_force_greedy_choice_over_all_pairs(mixed):
    sc, tl = mixed
    sats = build_satellites(sc)
    pos = _skyfield_km(sats, sc.epoch, [0.0])[0]
    N = len(sats)
    pairs = []
    for i in range(N):
        for j in range(i + 1, N):
            r = float(np.linalg.norm(pos[i] - pos[j]))
            if r <= sc.isl_terminal.max_range_km and _clear_of_earth(pos[i], pos[j]):
                pairs.append((r, i, j))
    free = [COUNT] * N
    chosen = set()
    for r, i, j in sorted(pairs):
        if free[i] and free[j]:
            chosen.add((i, j))
            free[i] -= 1
            free[j] -= 1
    isl = np.flatnonzero(tl.links.kind == ISL)
    got = {(min(a, b), max(a, b)) for a, b in zip(tl.links.a[isl][tl.up[0, isl]], tl.links.b[isl][tl.up[0, isl]])}
    assert len(chosen) > 60
    assert got == chosen


def test_a_held_link_is_kept_against_a_partner_at_nearly_the_same_range_and_gives_way_to_a_much_shorter_one():
    # Satellite 0 has one terminal and two candidates, 0-1 and 0-2, whose ranges cross every step by +-1 %.
    T = 40
    a, b = np.array([0, 0]), np.array([1, 2])
    wobble = np.where(np.arange(T) % 2 == 0, -10.0, 10.0)  # 0-1 is the shorter at the first step
    score = np.stack([1000 + wobble, 1000 - wobble], axis=1).astype(np.float32)
    score[30:, 1] = 700.0  # from step 30 partner 2 is 30 % closer
    feasible = np.ones((T, 2), bool)
    held, _ = terminals.within_budget(feasible, score, a, b, 3, 1, margin=0.2)
    assert held.sum(axis=1).max() == 1
    assert held[:30, 1].sum() == 0 and held[:30, 0].all(), "no flip-flop inside the margin"
    assert held[30:, 1].all() and not held[30:, 0].any(), "a partner shorter by more than the margin wins"
    flips, _ = terminals.within_budget(feasible, score, a, b, 3, 1, margin=0.0)
    assert (np.diff(flips[:30, 0].astype(int)) != 0).sum() > 20  # without hysteresis: the nearest every step


def test_hysteresis_makes_fewer_switches_in_a_plan(mixed, tmp_path):
    import dataclasses

    sc, tl = mixed
    eager = lasernet.plan(dataclasses.replace(sc, isl=dataclasses.replace(sc.isl, switch_margin=0.0)),
                          duration_s=1800, step_s=5)

    def handovers(t):
        ev = t.events()
        return int(((ev["cause"] == HANDOVER) & ~ev["up"]).sum())

    assert handovers(tl) < handovers(eager)


@pytest.mark.parametrize("name,window_s", [("mixed", 600), ("mixed-slewing", 300), ("suncatcher", 200)])
def test_nearest_windows_are_one_continuous_plan(mixed, name, window_s):
    import dataclasses

    if name == "mixed":
        sc, whole = mixed[0], mixed[1]
        duration_s, step_s = 1800, 5
    elif name == "mixed-slewing":
        sc = dataclasses.replace(mixed[0], isl_terminal=dataclasses.replace(mixed[0].isl_terminal,
                                                                            slew_rate_deg_s=0.2))
        duration_s, step_s = 1800, 5
        whole = lasernet.plan(sc, duration_s=duration_s, step_s=step_s)
    else:
        sc = lasernet.load_scenario(TOPOLOGIES / "suncatcher.yaml")
        sc = dataclasses.replace(sc, ground=(), isl=dataclasses.replace(sc.isl, pattern="nearest"))
        duration_s, step_s = 600, 1
        whole = lasernet.plan(sc, duration_s=duration_s, step_s=step_s)
    names = whole.links.names
    tl = lasernet.plan(sc, duration_s=window_s, step_s=step_s)
    first = 0
    while True:
        k = int(round(window_s / step_s))
        where = {n: i for i, n in enumerate(tl.links.names)}
        for j, n in enumerate(names):
            seg = whole.up[first:first + len(tl.offsets_s), j]
            if n in where:
                assert np.array_equal(seg, tl.up[:, where[n]]), n
            else:
                assert not seg.any(), f"{n} is up in the long plan but not in the window at {first}"
        first += k
        if first >= len(whole.offsets_s) - 1:
            break
        tl = plan_next(sc, tl, window_s)


def test_a_terminal_moved_to_a_new_partner_waits_its_slew_then_its_acquisition(mixed):
    """Every link taken during the plan waits acquisition_s + (angle between the end's last released partner and
    the new one, seen from that end, by Skyfield) / slew rate, the longer of its two ends, rounded up to steps."""
    import dataclasses
    import math

    sc0, _ = mixed
    rate_deg_s, acq_s, step_s = 0.5, 4.0, 5.0
    sc = dataclasses.replace(sc0, isl_terminal=dataclasses.replace(sc0.isl_terminal, slew_rate_deg_s=rate_deg_s))
    tl = lasernet.plan(sc, duration_s=1800, step_s=step_s)
    isl = np.flatnonzero(tl.links.kind == ISL)
    held = np.isin(tl.cause[:, isl], [UP, ACQUISITION])
    a, b = tl.links.a[isl], tl.links.b[isl]
    pos = _skyfield_km(build_satellites(sc), sc.epoch, tl.offsets_s)
    last = {}  # node -> the partners it released at its latest step with releases
    checked = slewed = 0
    for k in range(len(tl.offsets_s)):
        if k > 0:
            now = {}
            for j in np.flatnonzero(held[k - 1] & ~held[k]):
                now.setdefault(a[j], []).append(b[j])
                now.setdefault(b[j], []).append(a[j])
            last.update(now)
            for j in np.flatnonzero(held[k] & ~held[k - 1]):
                wait = 0.0
                for end, new in ((a[j], b[j]), (b[j], a[j])):
                    if end in last:  # the freed terminal whose old partner is nearest in direction
                        v = pos[k, new] - pos[k, end]
                        turn = []
                        for old in last[end]:
                            u = pos[k, old] - pos[k, end]
                            cos = np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v)
                            turn.append(math.degrees(math.acos(min(1.0, cos))))
                        wait = max(wait, min(turn) / rate_deg_s)
                need = math.ceil((acq_s + wait) / step_s - 1e-6)
                run = held[k:, j]
                length = int(np.argmin(run)) if not run.all() else len(run)
                if length > need + 1:
                    acquiring = int((tl.cause[k:k + length, isl[j]] == ACQUISITION).sum())
                    if abs((acq_s + wait) / step_s - round((acq_s + wait) / step_s)) > 1e-3:  # not on a step
                        assert acquiring == need, (k, j, wait, acquiring)
                        checked += 1
                        slewed += wait > step_s
    assert checked > 20 and slewed > 5, (checked, slewed)
