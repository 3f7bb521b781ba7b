"""Every validation error names the file, the field path and what is allowed; the CLI exits 2 and writes nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

import lasernet
from lasernet.cli import main

from ..conftest import DATA, TOPOLOGIES

GOOD = {
    "name": "good",
    "epoch": "2026-01-01T00:00:00Z",
    "constellation": {"shells": [{"name": "sat", "type": "delta", "planes": 4, "sats_per_plane": 8, "phasing": 1,
                                  "altitude_km": 1000, "inclination_deg": 53}]},
    "isl": {"pattern": "plus-grid"},
    "ground": {"stations": [{"name": "gs-a", "lat_deg": 10.0, "lon_deg": 20.0}]},
}


def _with(path: str, value):
    """GOOD with the field at dotted ``path`` (list indices as numbers) set to ``value`` (or deleted: ...)."""
    import copy

    doc = copy.deepcopy(GOOD)
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    node = doc
    for k in keys[:-1]:
        node = node[k]
    if value is ...:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return doc


CASES = [
    # (field to change, new value, expected message fragment)
    ("constellation.shells.0.altitude_km", -5,
     "constellation.shells[0].altitude_km: must be between 160 and 40000, got -5"),
    ("constellation.shells.0.planes", 2.5, "constellation.shells[0].planes: must be a whole number"),
    ("constellation.shells.0.type", "walker", "constellation.shells[0].type: must be one of delta, star, formation"),
    ("constellation.shells.0.inclination_deg", "53", "constellation.shells[0].inclination_deg: must be a number"),
    ("constellation.shells.0.phasing", 9, "constellation.shells[0].phasing: must be between 0 and 3, got 9"),
    ("constellation.shells.0.name", "Sat_1", "constellation.shells[0].name: must match [a-z0-9-]+"),
    ("constellation.shells.0.colour", "red", "constellation.shells[0].colour: unknown field"),
    ("constellation.shells.0.spacing_km", 1.0, "constellation.shells[0].spacing_km: only applies to type: formation"),
    ("constellation.shells", [], "constellation: needs at least one of 'shells'"),
    ("constellation", ..., "constellation: is required"),
    ("epoch", "yesterday", "epoch: must be an ISO 8601 UTC time"),
    ("epoch", "2077-01-01T00:00:00Z", "epoch: must be between 1960 and 2050"),
    ("name", "My Scenario", "name: must match [a-z0-9-]+"),
    ("seed", -1, "seed: must be between 0 and 4294967295, got -1"),
    ("isl.pattern", "mesh", "isl.pattern: must be one of plus-grid, ring, explicit, nearest, none"),
    ("isl.polar_cutoff_deg", 95, "isl.polar_cutoff_deg: must be between 0 and 90, got 95"),
    ("isl.links", [["a", "b"]], "isl.links: only applies to pattern: explicit"),
    ("isl.pattern", "explicit", "isl.links: pattern explicit needs a list of satellite name pairs"),
    ("ground.stations.0.lat_deg", 91, "ground.stations[0].lat_deg: must be between -90 and 90, got 91"),
    ("ground.stations.0.lon_deg", ..., "ground.stations[0].lon_deg: is required"),
    ("ground.stations.0.name", "gs_a", "ground.stations[0].name: must match [a-z0-9-]+"),
    ("ground.stations.0.name", "a-very-long-station", "ground.stations[0].name: must match [a-z0-9-]+ (at most 12"),
    ("ground.stations.0.handover", "random", "ground.stations[0].handover: must be one of nearest, longest-visible"),
    ("ground.stations.0.min_elevation_deg", -1, "ground.stations[0].min_elevation_deg: must be between 0 and 90"),
    ("ground.stations.0.max_links", 0, "ground.stations[0].max_links: must be between 1 and 64, got 0"),
    ("ground.stations.0", {"site": "atlantis"}, "ground.stations[0].site: unknown site 'atlantis'"),
    ("ground.stations", "all", "ground.stations: 'all' needs ground.include"),
    ("ground.include", ["nowhere.yaml"], "ground.include[0]: cannot read sites file"),
    ("terminals", {"isl": {"count": 2}}, "terminals.isl.count: pattern plus-grid needs 4 ISL terminals"),
    ("terminals", {"isl": {"max_range_km": 0}}, "terminals.isl.max_range_km: must be between 0.001 and 100000"),
    ("terminals", {"gsl": {"kind": "radio"}}, "terminals.gsl.kind: must be one of laser, rf, got 'radio'"),
    ("terminals", {"isl": {"field_of_regard": {"nadir_deg": [100, 80]}}},
     "terminals.isl.field_of_regard.nadir_deg: the minimum 100 must be below the maximum 80"),
    ("terminals", {"isl": {"field_of_regard": {"nadir_deg": 90}}},
     "terminals.isl.field_of_regard.nadir_deg: must be a pair [min, max]"),
    ("terminals", {"isl": {"field_of_regard": {"cross_track_deg": 120}}},
     "terminals.isl.field_of_regard.cross_track_deg: must be between 0 and 90, got 120"),
    ("terminals", {"isl": {"field_of_regard": {"roll_deg": 5}}}, "terminals.isl.field_of_regard.roll_deg: unknown"),
    ("terminals", {"isl": {"slew_rate_deg_s": -1}}, "terminals.isl.slew_rate_deg_s: must be between 0 and 360"),
    ("terminals", {"gsl": {"slew_rate_deg_s": 1}}, "terminals.gsl.slew_rate_deg_s: only applies to terminals.isl"),
    ("isl.switch_margin", 0.1, "isl.switch_margin: only applies to pattern: nearest or with between_shells (pattern is plus-grid)"),
    ("isl", {"pattern": "nearest", "switch_margin": 2}, "isl.switch_margin: must be between 0 and 1, got 2"),
    ("ground.clouds", {"cloud_free": 1.5}, "ground.clouds.cloud_free: must be between 0 and 1, got 1.5"),
    ("ground.clouds", {"correlation_h": 3}, "ground.clouds.correlation_h: unknown field"),
    ("ground.stations.0.cloud_free", -0.1, "ground.stations[0].cloud_free: must be between 0 and 1, got -0.1"),
    ("ground.stations.0.cloud_correlation_s", 0, "ground.stations[0].cloud_correlation_s: must be between 1 and"),
    ("plan", {"step_s": 0}, "plan.step_s: must be between 0.01 and 3600, got 0"),
    ("constellation.tle", ["missing.tle"], "constellation.tle[0].file: no such file"),
    ("hosts", [{"name": "rack", "attach": "gs-a", "cpus": 0}], "hosts[0].cpus: must be between 0.01 and 1024, got 0"),
    ("hosts", [{"name": "rack", "attach": "gs-a", "cpus": "half"}], "hosts[0].cpus: must be a number"),
    ("hosts", [{"name": "rack", "attach": "gs-a", "memory_mb": 8}],
     "hosts[0].memory_mb: must be between 16 and 16777216, got 8"),
    ("hosts", [{"name": "rack", "attach": "gs-a", "memory_mb": 64.5}], "hosts[0].memory_mb: must be a whole number"),
    ("hosts", [{"name": "rack", "attach": "gs-a", "disk_gb": 1}], "hosts[0].disk_gb: unknown field"),
]


@pytest.mark.parametrize("field,value,message", CASES, ids=[c[0] + "=" + repr(c[1])[:12] for c in CASES])
def test_invalid_field_is_named_with_its_path(tmp_path, field, value, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_with(field, value)))
    with pytest.raises(lasernet.ScenarioError) as err:
        lasernet.plan(lasernet.load_scenario(path), duration_s=0)
    assert str(err.value).startswith("bad.yaml: ")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_server_limits_are_read(tmp_path):
    path = tmp_path / "limits.yaml"
    path.write_text(yaml.safe_dump(_with("hosts", [{"name": "rack", "attach": "gs-a", "cpus": 0.5, "memory_mb": 256},
                                                   {"name": "free", "attach": "gs-a"}])))
    rack, free = lasernet.load_scenario(path).hosts
    assert (rack.cpus, rack.memory_mb) == (0.5, 256)
    assert (free.cpus, free.memory_mb) == (None, None)


def test_duplicate_station_name_and_collision_with_a_satellite(tmp_path):
    doc = _with("ground.stations", [{"name": "x", "lat_deg": 0, "lon_deg": 0}, {"name": "x", "lat_deg": 1,
                                                                               "lon_deg": 1}])
    (tmp_path / "dup.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(lasernet.ScenarioError, match=r"dup\.yaml: ground\.stations\[1\]\.name: name 'x' is already"):
        lasernet.load_scenario(tmp_path / "dup.yaml")
    doc = _with("ground.stations.0.name", "sat-0-0")
    (tmp_path / "clash.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(lasernet.ScenarioError, match=r"ground\.stations\[0\]\.name: 'sat-0-0' is also a satellite"):
        lasernet.plan(lasernet.load_scenario(tmp_path / "clash.yaml"), duration_s=0)


def test_invalid_yaml_names_line_and_column(write_scenario):
    path = write_scenario("name: x\nepoch: [unclosed\n")
    with pytest.raises(lasernet.ScenarioError, match=r"scenario\.yaml: not valid YAML at line 3"):
        lasernet.load_scenario(path)


@pytest.mark.parametrize("mangle,message", [
    (lambda l1, l2: (l1[:68] + "9", l2), "line 2: TLE checksum is 2, the line says '9'"),
    (lambda l1, l2: (l1[:60], l2), "line 2: TLE line must be 69 characters, got 60"),
    (lambda l1, l2: (l1, "3" + l2[1:]), "line 2: TLE line 1 must be followed by its line 2"),
])
def test_malformed_tle_is_named_with_its_line(tmp_path, mangle, message):
    name, l1, l2 = (DATA / "iss.tle").read_text().splitlines()
    l1, l2 = mangle(l1, l2)
    (tmp_path / "bad.tle").write_text(f"{name}\n{l1}\n{l2}\n")
    doc = dict(GOOD, constellation={"tle": ["bad.tle"]}, isl={"pattern": "none"})
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(lasernet.ScenarioError) as err:
        lasernet.plan(lasernet.load_scenario(tmp_path / "s.yaml"), duration_s=0)
    assert str(err.value).startswith("bad.tle: ") and message in str(err.value)


def test_plus_grid_needs_walker_shells(tmp_path):
    doc = dict(GOOD, constellation={"tle": [str(DATA / "iss.tle")]})
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(lasernet.ScenarioError, match=r"isl\.pattern: plus-grid needs Walker shells"):
        lasernet.load_scenario(tmp_path / "s.yaml")


def test_cli_exits_2_with_one_line_and_writes_nothing(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_with("constellation.shells.0.altitude_km", -5)))
    out_npz, out_csv = tmp_path / "plan.npz", tmp_path / "events.csv"
    proc = subprocess.run([sys.executable, "-m", "lasernet.cli", "plan", str(path), "-o", str(out_npz),
                           "--events", str(out_csv)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0] == ("error: bad.yaml: constellation.shells[0].altitude_km: must be between 160 and 40000, "
                        "got -5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


@pytest.mark.parametrize("args,message", [
    (["plan", "no-such-scenario"], "error: no-such-scenario: no such scenario file, and not a shipped topology"),
    (["plan", "mini", "--start", "noon"], "error: --start: must be an ISO 8601 UTC time"),
    (["plan", "mini", "--step", "0"], "error: --step: must be a finite number of seconds > 0"),
])
def test_cli_bad_arguments_exit_2(args, message):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert message in result.output


def test_every_shipped_topology_is_valid():
    shipped = lasernet.shipped_topologies()
    assert {"mini", "starlink-shell1", "starlink-phase1", "iridium", "kuiper-630", "suncatcher",
            "three-body"} <= set(shipped)
    for path in shipped.values():
        scenario = lasernet.load_scenario(path)
        assert scenario.source == path
    assert (TOPOLOGIES / "ground" / "sites.yaml").is_file()


def test_clouds_need_laser_ground_terminals(tmp_path):
    for field, value, where in (("ground.clouds", {"cloud_free": 0.6}, "ground.clouds"),
                                ("ground.clouds", {}, "ground.clouds")):
        doc = _with(field, value)
        doc["terminals"] = {"gsl": {"kind": "rf"}}
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(doc))
        with pytest.raises(lasernet.ScenarioError) as err:
            lasernet.load_scenario(path)
        assert str(err.value).startswith(f"bad.yaml: {where}: clouds only block laser ground links")


def test_every_shipped_site_names_its_source():
    """Each site of the shipped ground files carries a source string; a station's says first how far to trust it;
    the cities quote Hypatia's own line, whose coordinates are the site's (the copy is exact)."""
    import yaml

    for name in ("sites.yaml", "cities-100.yaml"):
        for site in yaml.safe_load((TOPOLOGIES / "ground" / name).read_text())["sites"]:
            assert len(site.get("source", "")) > 20, (name, site["name"])
    for site in yaml.safe_load((TOPOLOGIES / "ground" / "sites.yaml").read_text())["sites"]:
        assert site["source"].startswith(("published", "encyclopedia", "unchecked")), site["name"]  # how far to trust it
    for k, site in enumerate(yaml.safe_load((TOPOLOGIES / "ground" / "cities-100.yaml").read_text())["sites"]):
        line = site["source"].split(": ", 1)[1].split(" (")[0]
        hid, _name, lat, lon, _elev = line.split(",")
        assert int(hid) == k and float(lat) == site["lat_deg"] and float(lon) == site["lon_deg"], site
