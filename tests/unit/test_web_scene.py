"""The browser view's offline half: frames against Skyfield, the land mask it sends, the replay's refusals, the
``--web``/``--bind`` option's parsing (the live page itself is tested in Chromium: tests/integration/test_web.py)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from click.testing import CliRunner

import lasernet
from lasernet.cli import main
from lasernet.emulation.webfeed import parse_bind
from lasernet.errors import OptionError
from lasernet.measure.plots import land_mask
from lasernet.web.scene import LinkList, ReplayError, ReplayRun, Scene
from lasernet.web.server import land_runs

from ..conftest import TOPOLOGIES


def test_frame_places_satellites_where_skyfield_does():
    from skyfield.api import EarthSatellite, load
    from skyfield.framelib import itrs

    sc = lasernet.load_scenario(TOPOLOGIES / "mini.yaml")
    tl = lasernet.plan(sc, duration_s=0.0, step_s=1.0)
    scene = Scene(sc, sc.epoch, tl.node_names, tl.n_satellites)
    t_s = 1234.5
    frame = scene.frame(t_s, np.array([0, 2]), np.array([0.01, 0.02]), None, 3)
    ts = load.timescale(builtin=True)
    when = sc.epoch + dt.timedelta(seconds=t_s)
    t = ts.from_datetime(when)
    xyz = np.array([EarthSatellite.from_satrec(s, ts).at(t).frame_xyz(itrs).km for s in scene.satellites.satrecs])
    lat = np.degrees(np.arctan2(xyz[:, 2], np.hypot(xyz[:, 0], xyz[:, 1])))
    lon = np.degrees(np.arctan2(xyz[:, 1], xyz[:, 0]))
    assert np.allclose(frame["lat"], lat, atol=2e-3)  # frames round to 1e-3 deg
    dlon = (np.asarray(frame["lon"]) - lon + 180) % 360 - 180
    assert np.abs(dlon).max() < 2e-3
    assert frame["up"] == [0, 2] and frame["delay_ms"] == [10.0, 20.0] and frame["links_version"] == 3
    assert frame["t_s"] == t_s and frame["utc"].startswith(when.strftime("%Y-%m-%dT%H:%M:%S"))
    assert [n["name"] for n in scene.nodes] == list(tl.node_names)
    g = sc.ground[0]
    assert scene.nodes[tl.n_satellites] == {"name": g.name, "kind": g.kind, "lat": g.lat_deg, "lon": g.lon_deg}


def test_link_list_sends_only_additions():
    links = LinkList()
    links.extend([(0, 1), (1, 5)], n_satellites=4)
    assert links.message(0) == {"type": "links", "version": 2, "since": 0, "a": [0, 1], "b": [1, 5],
                                "isl": [True, False]}
    links.extend([(2, 3)], n_satellites=4)
    assert links.message(2)["a"] == [2] and links.message(2)["since"] == 2


def test_land_runs_decode_to_the_static_maps_mask():
    runs = land_runs()
    mask = np.zeros((runs["height"], runs["width"]), dtype=bool)
    for r, row in enumerate(runs["rows"]):
        for start, length in zip(row[0::2], row[1::2]):
            mask[r, start:start + length] = True
    assert np.array_equal(mask, land_mask())


@pytest.mark.parametrize("text, expected", [("8765", ("127.0.0.1", 8765)), ("0.0.0.0:80", ("0.0.0.0", 80)),
                                            (":0", ("127.0.0.1", 0)), ("[::1]:9000", ("::1", 9000))])
def test_parse_bind(text, expected):
    assert parse_bind(text) == expected


@pytest.mark.parametrize("text", ["", "web", "host:", "host:99999", "1.2.3.4:-1"])
def test_parse_bind_refuses_with_the_option_named(text):
    with pytest.raises(OptionError, match="--web"):
        parse_bind(text)


def test_replay_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(ReplayError, match="run.json"):
        ReplayRun(tmp_path)
    result = CliRunner().invoke(main, ["web", str(tmp_path)])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "not a lasernet run directory" in result.output
    result = CliRunner().invoke(main, ["web", str(tmp_path), "--bind", "nope"])
    assert result.exit_code == 2 and "--bind" in result.output


def test_up_refuses_a_bad_web_option_before_building_anything():
    result = CliRunner().invoke(main, ["up", "mini", "--web", "localhost:http"])
    assert result.exit_code == 2 and "--web" in result.output
