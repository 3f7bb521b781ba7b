"""The halves of a cross-machine link: which half applies what (pure arithmetic of the delay-line backend)."""

from __future__ import annotations

import numpy as np

from lasernet.emulation.links import DelaylineLinks


def test_each_half_delays_what_it_delivers_less_the_substrate_and_sends_the_other_way_at_once():
    links = DelaylineLinks("test-run", seed=1, n_slots=16, slots_per_relay=16)
    links.hold_half(3, 0)  # this machine holds end a of slot 3
    links.hold_half(5, 1)  # and end b of slot 5
    links.set_substrate([3, 5], [0.0004, 0.0004])
    slots = np.array([1, 3, 5])  # slot 1 is local
    delay = np.array([[0.010, 0.011], [0.020, 0.021], [0.030, 0.031]])
    loss = np.full((3, 2), 0.1)
    rate = np.full((3, 2), 1e6)
    d, lo, r = links.per_half(slots, delay, loss, rate)
    assert np.allclose(d[0], [0.010, 0.011]) and np.allclose(lo[0], 0.1) and np.allclose(r[0], 1e6)  # local
    # end a sends a->b (index 0) at once and delivers b->a (index 1), less the substrate
    assert np.allclose(d[1], [0.0, 0.021 - 0.0004]) and np.allclose(lo[1], [0.0, 0.1]) and np.allclose(r[1], [0, 1e6])
    # end b sends b->a at once and delivers a->b
    assert np.allclose(d[2], [0.030 - 0.0004, 0.0]) and np.allclose(lo[2], [0.1, 0.0]) and np.allclose(r[2], [1e6, 0])
    assert np.allclose(delay[1], [0.020, 0.021])  # the caller's arrays are not changed


def test_a_delay_below_the_substrate_is_applied_as_zero_never_negative():
    links = DelaylineLinks("test-run", seed=1, n_slots=16, slots_per_relay=16)
    links.hold_half(0, 1)
    links.set_substrate([0], [0.002])
    d, _, _ = links.per_half(np.array([0]), np.array([[0.001, 0.001]]), np.zeros((1, 2)), np.zeros((1, 2)))
    assert d.tolist() == [[0.0, 0.0]]


def test_a_netem_half_shapes_what_it_sends_less_the_substrate_and_passes_the_other_way():
    from lasernet.emulation.links import NetemLinks

    links = NetemLinks("test-run")
    links.hold_half(3, 0)  # end a: its egress carries a->b (index 0)
    links.hold_half(5, 1)  # end b: b->a (index 1)
    links.set_substrate([3, 5], [0.002, 0.002])
    delay = np.array([[0.010, 0.011], [0.020, 0.021]])
    d, lo, r = links.per_half(np.array([3, 5]), delay, np.full((2, 2), 0.1), np.full((2, 2), 1e6))
    assert np.allclose(d, [[0.010 - 0.002, 0.0], [0.0, 0.021 - 0.002]])
    assert np.allclose(lo, [[0.1, 0.0], [0.0, 0.1]]) and np.allclose(r, [[1e6, 0.0], [0.0, 1e6]])


def test_the_fixed_macs_of_a_cross_machine_link_differ_by_end_and_slot_and_are_unicast_local():
    from lasernet.emulation.links import half_mac

    macs = {half_mac(slot, end) for slot in (0, 1, 255, 256, 70000) for end in (0, 1)}
    assert len(macs) == 10
    assert all(m[0] & 0x01 == 0 and m[0] & 0x02 for m in macs)  # unicast, locally administered
