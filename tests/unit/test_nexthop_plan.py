"""The nexthop plan: routes through labels always forward as the table says, with fewer writes than one per route."""

from __future__ import annotations

import numpy as np
import pytest

from lasernet.emulation.nexthops import DIRECT, NONE, UNREACHABLE, NexthopPlan, row_prefixes

pytestmark = pytest.mark.filterwarnings("error")


def table(n: int, fill: int = -1) -> np.ndarray:
    t = np.full((n, n), fill, np.int64)
    np.fill_diagonal(t, -1)
    return t


def change(plan: NexthopPlan, old: np.ndarray, new: np.ndarray):
    """Apply the entries that differ (withdrawals cleared, the rest assigned); return the Writes."""
    src, dst = np.nonzero(old != new)
    gone = new[src, dst] < 0
    plan.clear(src[gone], dst[gone])
    writes = plan.assign(src[~gone], dst[~gone], new[src[~gone], dst[~gone]])
    assert (plan.effective_slot() == np.where(new >= 0, new, -1)).all()
    return writes


def test_a_single_link_stations_handover_is_one_write_for_all_its_routes():
    n = 50
    t = table(n, 3)
    plan = NexthopPlan(n)
    plan.first(t)
    new = t.copy()
    new[7][new[7] >= 0] = 9  # router 7 (a station) now reaches everything over link 9
    writes = change(plan, t, new)
    assert writes.count == 1 and len(writes.retargeted[0]) == 1 and len(writes.routes[0]) == 0
    assert (writes.retargeted[0], writes.retargeted[2]) == ([7], [9])


def test_a_label_mostly_moving_is_retargeted_and_its_stayers_go_to_the_old_link():
    n = 30
    t = table(n, 0)
    plan = NexthopPlan(n)
    plan.first(t)
    new = t.copy()
    new[0, 1:26] = 4  # 25 of router 0's 29 routes move to link 4, 4 stay on link 0
    writes = change(plan, t, new)
    # one retarget, a label made for link 0, and the 4 stayers written to it: 6 writes instead of 25
    assert len(writes.retargeted[0]) == 1 and len(writes.made[0]) == 1 and len(writes.routes[0]) == 4
    assert writes.count == 6
    assert not writes.late.any()  # the stayers go to a label that was not retargeted: before the retarget


def test_groups_that_left_a_link_and_return_to_it_move_back_in_one_write_each():
    n = 40
    t = table(n, 1)
    t[5, 10:30] = 2  # router 5: 20 routes over link 2, the rest over link 1
    plan = NexthopPlan(n)
    plan.first(t)
    down = t.copy()
    down[5, 10:20], down[5, 20:30] = 1, 3  # link 2 goes down: half its routes to link 1, half to link 3
    first = change(plan, t, down)
    # one half moves with the label (1 write), the other gets a label made for link 3 (1 + 10 writes)
    assert len(first.retargeted[0]) == 1 and len(first.made[0]) == 1 and first.count == 1 + 1 + 10
    back = change(plan, down, t)  # link 2 returns: each half is a label's whole group, so each moves in one write
    assert len(back.retargeted[0]) == 2 and back.count == 2


def test_routes_to_a_retargeted_label_are_written_after_the_retarget():
    n = 20
    t = table(n, 0)
    t[0, 10:] = 1
    plan = NexthopPlan(n)
    plan.first(t)
    new = t.copy()
    new[0, 1:10] = 2  # every route over link 0 moves to link 2 (the label is retargeted) ...
    new[0, 10] = 2  # ... and one route over link 1 joins them: written to the retargeted label, after it
    writes = change(plan, t, new)
    assert len(writes.retargeted[0]) == 1
    assert writes.routes[1].tolist() == [10] and writes.late.tolist() == [True]


def test_a_label_no_route_uses_any_more_is_reused_before_a_new_one_is_made():
    n = 10
    t = table(n, 0)
    t[0, 5:] = 1
    plan = NexthopPlan(n)
    plan.first(t)
    new = t.copy()
    new[0, 5:] = -1  # the routes over link 1 are withdrawn: its label stays, unused
    change(plan, t, new)
    labels = int((plan.slot[0] >= 0).sum())
    newer = new.copy()
    newer[0, 3] = 7  # one route over a new link: the unused label is reused for it
    writes = change(plan, new, newer)
    assert len(writes.made[0]) == 1 and int((plan.slot[0] >= 0).sum()) == labels


def test_withdrawn_and_direct_entries_leave_their_labels():
    n = 10
    t = table(n, 2)
    plan = NexthopPlan(n)
    plan.first(t, skip=[4])
    assert (plan.label[:, 4][np.arange(n) != 4] == DIRECT).all()
    plan.clear([0, 1], [5, 6])
    assert plan.label[0, 5] == NONE and plan.label[1, 6] == NONE
    assert plan.members[0].sum() == n - 3  # all but itself, the direct destination and the withdrawn one


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_labels_always_forward_as_the_table_through_random_changes_with_fewer_writes(seed):
    rng = np.random.default_rng(seed)
    n, links = 60, 40
    t = rng.integers(-1, links, (n, n))
    np.fill_diagonal(t, -1)
    plan = NexthopPlan(n)
    plan.first(t)
    entries = writes = 0
    for step in range(200):
        new = t.copy()
        row = rng.integers(n)
        if step % 3 == 0:  # a whole row moves to one link
            new[row][new[row] >= 0] = rng.integers(links)
        elif step % 3 == 1:  # most of one link's routes of a row move
            moving = (new[row] == rng.integers(links)) & (rng.random(n) < 0.9)
            new[row][moving] = rng.integers(links)
        else:  # scattered changes and withdrawals
            k = rng.integers(1, 50)
            new[rng.integers(0, n, k), rng.integers(0, n, k)] = rng.integers(-1, links, k)
            np.fill_diagonal(new, -1)
        entries += int((new != t).sum())
        w = change(plan, t, new)
        writes += w.count + int(((new != t) & (new < 0)).sum())
        width = plan.slot.shape[1]
        s, d = np.nonzero(plan.label >= 0)
        assert (np.bincount(s * width + plan.label[s, d], minlength=n * width).reshape(n, width)
                == plan.members).all()
        t = new
    assert writes < 0.8 * entries


def test_a_row_rewritten_whole_as_prefixes_forwards_every_destination_as_the_table():
    rng = np.random.default_rng(7)
    n = 100
    t = table(n, 0)
    plan = NexthopPlan(n)
    plan.first(t, skip=[50])
    row = np.where(np.arange(n) < 60, 3, -1)  # a station now in the other half: 0..59 over link 3, the rest gone
    row[rng.integers(0, 60, 5)] = 8  # and a few over another link
    row[7] = -1
    made = plan.rebuild_row(7, row, skip=[50])
    assert len(made[0]) == 2 and set(made[2].tolist()) == {3, 8}
    first, host_bits, value = row_prefixes(7, row, skip=[50])
    assert len(first) < 30  # against 99 routes one by one
    for d in range(n):  # longest prefix covering d's loopback-pool offset d + 1
        cover = [(b, v) for f, b, v in zip(first, host_bits, value) if f <= d + 1 < f + (1 << b)]
        if d in (7, 50):  # its own loopback may fall under a prefix; a destination routed one by one under none
            assert d == 7 or not cover
            continue
        assert len(cover) == 1, d
        want = row[d] if row[d] >= 0 else UNREACHABLE
        assert cover[0][1] == want
        assert (plan.effective_slot()[7, d] == row[d]) if row[d] >= 0 else plan.label[7, d] == NONE
    assert plan.label[7, 50] == DIRECT and plan.members[7].sum() == (row >= 0).sum() - 1
