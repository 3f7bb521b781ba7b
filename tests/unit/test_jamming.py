"""A jamming attack in the plan: an adversary's site blinds the laser ground links of the satellites in its view.

Checked against Skyfield's own topocentric altitude (``(satellite - wgs84.latlon(...)).at(t).altaz()``) of every
satellite from the adversary's site, not against lasernet's geometry: while the jammer is on, every ground link
down with cause ``jamming`` has its satellite above the jammer's mask and no ground link is up to a satellite
clearly above it; before the attack the plan is the plan without a jammer; the blinded set moves with the
satellites (an outage region over time); windows join into the continuous plan; bad input is one line.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from skyfield.api import EarthSatellite, wgs84

import lasernet
from lasernet import skydata, timeline
from lasernet.orbits import build_satellites

from ..conftest import TOPOLOGIES

JAMMER = {"name": "dazzler", "lat_deg": 50.1, "lon_deg": 8.7, "min_elevation_deg": 20, "start_s": 60, "stop_s": 420}
MARGIN_DEG = 0.05  # Skyfield's altitude against lasernet's: far below a step's motion (~0.3 deg/s at 20 deg)


def _scenario(tmp_path, jamming):
    doc = yaml.safe_load((TOPOLOGIES / "mini.yaml").read_text())
    doc["ground"]["include"] = [str(TOPOLOGIES / "ground" / "sites.yaml")]
    doc["plan"] = {"duration_s": 600, "step_s": 1}
    if jamming is not None:
        doc["jamming"] = jamming
    path = tmp_path / "jam.yaml"
    path.write_text(yaml.safe_dump(doc))
    return lasernet.load_scenario(path)


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jam")
    jammed = _scenario(tmp, [JAMMER])
    return jammed, lasernet.plan(jammed), lasernet.plan(_scenario(tmp, None))


def _altitude_deg(scenario, tl):
    """(T, N) Skyfield altitude of every satellite seen from the jammer's site."""
    ts = skydata.timescale()
    t = skydata.times(tl.start_utc, tl.offsets_s)
    site = wgs84.latlon(JAMMER["lat_deg"], JAMMER["lon_deg"])
    sats = build_satellites(scenario)
    return np.stack([(EarthSatellite.from_satrec(s, ts) - site).at(t).altaz()[0].degrees for s in sats.satrecs],
                    axis=1)


def test_jammed_links_are_exactly_those_to_satellites_in_the_jammers_view_while_it_is_on(plans):
    scenario, tl, _ = plans
    alt = _altitude_deg(scenario, tl)
    gsl = np.flatnonzero(tl.links.kind == timeline.GSL)
    sat = np.where(tl.links.a[gsl] < tl.n_satellites, tl.links.a[gsl], tl.links.b[gsl])
    on = (tl.offsets_s >= JAMMER["start_s"]) & (tl.offsets_s < JAMMER["stop_s"])
    jammed = tl.cause[:, gsl] == timeline.JAMMING
    seen = alt[:, sat]  # (T, ground links): the jammer's view of each link's satellite
    assert jammed.sum() > 0 and not jammed[~on].any()
    assert (seen[jammed] >= JAMMER["min_elevation_deg"] - MARGIN_DEG).all()
    blinded = on[:, None] & (seen >= JAMMER["min_elevation_deg"] + MARGIN_DEG)
    assert blinded.any() and not tl.up[:, gsl][blinded].any()  # no link is up to a satellite in its view
    names = {tuple(sorted(np.flatnonzero(alt[k] >= JAMMER["min_elevation_deg"] + MARGIN_DEG)))
             for k in np.flatnonzero(on)}
    assert len(names) >= 2  # the blinded satellites change as they fly: an outage region over time
    print(f"jamming: {int(jammed.sum())} ground link-steps blinded over {int(on.sum())} s; "
          f"{len(names)} different sets of satellites in the jammer's view")


def test_before_the_attack_the_plan_is_the_plan_without_it_and_events_name_the_cause(plans, tmp_path):
    scenario, tl, clean = plans
    before = tl.offsets_s < JAMMER["start_s"]
    gsl = tl.links.kind == timeline.GSL
    pairs = {(int(a), int(b)): k for k, (a, b) in enumerate(zip(clean.links.a, clean.links.b))}
    cols = [pairs[(int(a), int(b))] for a, b in zip(tl.links.a, tl.links.b) if (int(a), int(b)) in pairs]
    mine = [k for k, (a, b) in enumerate(zip(tl.links.a, tl.links.b)) if (int(a), int(b)) in pairs]
    assert np.array_equal(tl.up[before][:, mine], clean.up[before][:, cols])
    assert not tl.up[before][:, [k for k in np.flatnonzero(gsl) if k not in mine]].any()
    ev = tl.events()
    jam = ev["cause"] == timeline.JAMMING
    assert jam.any() and not ev["up"][jam].any() and (tl.links.kind[ev["link"][jam]] == timeline.GSL).all()
    assert timeline.CAUSES[timeline.JAMMING] == "jamming"
    assert tl.summary()["gsl"]["down_link_steps_by_cause"].get("jamming", 0) > 0


def test_windows_join_into_the_continuous_plan_with_a_jammer(plans):
    scenario, tl, _ = plans
    first = lasernet.plan(scenario, duration_s=200)
    second = timeline.plan_next(scenario, first, 400)
    for w, offset in ((first, 0), (second, 200)):
        pairs = {(int(a), int(b)): k for k, (a, b) in enumerate(zip(tl.links.a, tl.links.b))}
        cols = [pairs[(int(a), int(b))] for a, b in zip(w.links.a, w.links.b)]
        k = np.searchsorted(tl.offsets_s, w.offsets_s + offset)
        assert np.array_equal(w.up, tl.up[k][:, cols]) and np.array_equal(w.cause, tl.cause[k][:, cols])


@pytest.mark.parametrize("change, message", [
    ({"stop_s": 10}, "jamming[0].stop_s: must be after start_s"),
    ({"lat_deg": 95}, "jamming[0].lat_deg"),
    ({"bogus": 1}, "jamming[0]"),
])
def test_bad_jamming_input_is_one_line_naming_the_field(tmp_path, change, message):
    with pytest.raises(lasernet.ScenarioError) as err:
        _scenario(tmp_path, [{**JAMMER, **change}])
    assert message in str(err.value) and "\n" not in str(err.value)
