"""The routing summary's initial convergence: until no pair is broken, even when later link changes came first."""

import math

from lasernet.routing.convergence import summarize


def _row(t_s, converged, convergence_s, downs=0):
    return {"t_s": t_s, "converged": converged, "convergence_s": convergence_s, "downs": downs,
            "reachable_again_s": convergence_s, "probes_lost": 0}


def _sample(t_s, broken, connected=12):
    return (t_s, broken, connected, connected - broken, 1.0, 1.0)


def test_initial_convergence_within_the_first_window_is_that_windows_convergence():
    out = summarize([_row(0.0, True, 4.0), _row(10.0, True, 1.0, downs=1)],
                    [_sample(0.1, 12), _sample(4.0, 0), _sample(10.5, 0)])
    assert out["initial_convergence_s"] == 4.0 and out["initial_converged_before_next_change"]


def test_initial_convergence_past_later_changes_is_the_first_time_nothing_was_broken():
    # broken pairs left when the change at 41 s came; whole again at 43 s (seen with BIRD's OSPF)
    out = summarize([_row(0.0, False, math.nan), _row(41.0, True, 2.0, downs=1)],
                    [_sample(0.1, 12), _sample(7.0, 3), _sample(41.5, 3), _sample(43.0, 0)])
    assert out["initial_convergence_s"] == 43.0 and not out["initial_converged_before_next_change"]
    assert out["changes_with_down"] == 1


def test_never_whole_is_not_a_number():
    out = summarize([_row(0.0, False, math.nan)], [_sample(0.1, 12), _sample(7.0, 3)])
    assert out["initial_convergence_s"] is None  # NaN is written as null
