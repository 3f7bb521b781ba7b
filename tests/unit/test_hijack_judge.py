"""The hijack judge's walks and summary on hand-made next-hop tables (no root): a chain 0 - 1 - 2 where node 2
owns the address's LAN and node 3 (a rogue) hangs off node 1."""

from __future__ import annotations

import numpy as np

from lasernet.measure.hijack import LAN, summary, walk


def test_walks_end_at_the_owners_lan_at_the_rogue_or_nowhere():
    true = np.array([1, 2, LAN, -1])
    assert walk(true, [0, 1, 2], owner=2, rogue=3) == ["delivered"] * 3
    hijacked = np.array([1, 3, 1, LAN])  # node 1 prefers the rogue's more-specific route; even the owner does
    assert walk(hijacked, [0, 1, 2], owner=2, rogue=3) == ["diverted"] * 3
    looped = np.array([1, 0, LAN, -1])
    assert walk(looped, [0, 1, 2], owner=2, rogue=3) == ["lost", "lost", "delivered"]
    assert walk(np.array([-1, 2, LAN, -1]), [0], owner=2, rogue=3) == ["lost"]
    assert walk(np.array([1, LAN, LAN, -1]), [0], owner=2, rogue=3) == ["lost"]  # a LAN, not the owner's


def test_summary_gives_the_share_diverted_and_each_pairs_time():
    times = [0.0, 1.0, 2.0, 3.0, 4.0]
    ends = [["delivered", "delivered"], ["diverted", "delivered"], ["diverted", "diverted"],
            ["lost", "delivered"], ["delivered", "delivered"]]
    out = summary(times, ends, ["a", "b"], start_s=1.0, stop_s=3.0)
    assert out["share_diverted_max"] == 1.0 and out["share_diverted_mean"] == 0.75
    assert out["diverted_s"]["a"] == {"diverted_s": 2.0, "first_diverted_s": 0.0}
    assert out["diverted_s"]["b"] == {"diverted_s": 1.0, "first_diverted_s": 1.0}
    assert out["pairs_ever_diverted"] == 2 and out["pairs_diverted_after_stop"] == 0
    assert out["pairs_lost_after_stop_max"] == 1 and out["all_delivered_again_s"] == 1.0
