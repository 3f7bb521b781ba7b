"""Nothing a user types crashes lasernet: hostile input gets one line naming the file, field or option, exit 2,
and nothing is created (issue 11). Each test runs the real command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

import lasernet

from ..conftest import DATA

MINI = {
    "name": "mini",
    "epoch": "2026-01-01T00:00:00Z",
    "constellation": {"shells": [{"name": "sat", "planes": 4, "sats_per_plane": 8, "phasing": 1,
                                  "altitude_km": 550, "inclination_deg": 53}]},
    "ground": {"stations": [{"name": "gs-a", "lat_deg": 10.0, "lon_deg": 20.0}]},
}


def _cli(tmp_path, *args):
    """Run ``lasernet ARGS`` in ``tmp_path``; return (exit code, stdout, stderr lines)."""
    proc = subprocess.run([sys.executable, "-m", "lasernet.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr.strip().splitlines()


def _refused(tmp_path, args, fragment, stdout_empty=True):
    """Exit 2, one line on stderr holding ``fragment``, no traceback, and no file made in ``tmp_path``."""
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, out, err = _cli(tmp_path, *args)
    assert code == 2, (out, err)
    assert len(err) == 1, err
    assert err[0].startswith("error: ") and fragment in err[0], err[0]
    assert "Traceback" not in out + "".join(err)
    if stdout_empty:
        assert out == ""  # refused before any work (no summary)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    return err[0]


def _write(tmp_path, doc, name="s.yaml") -> str:
    (tmp_path / name).write_text(yaml.safe_dump(doc, sort_keys=False))
    return name


def test_a_shell_too_large_for_sgp4_is_refused_when_read(tmp_path):
    doc = dict(MINI, constellation={"shells": [dict(MINI["constellation"]["shells"][0], planes=1000,
                                                    sats_per_plane=1000)]})
    line = _refused(tmp_path, ["plan", _write(tmp_path, doc), "-o", "p.npz"], "s.yaml: constellation.shells[0]: ")
    assert "1,000,000 Walker satellites" in line and "at most 339,999" in line


@pytest.mark.parametrize("args,fragment", [
    (["--duration", "1e9"], "error: --duration: 1e+09 s from 2026-01-01 ends after 2050"),
    (["--duration", "1e8"], "error: --step 1: with --duration 1e+08 the plan would need"),
    (["--duration", "inf"], "error: --duration: must be a finite number of seconds >= 0, got inf"),
    (["--duration", "nan"], "error: --duration: must be a finite number of seconds >= 0, got nan"),
    (["--step", "1e-9"], "error: --step 1e-09: with --duration 600 the plan would need"),
    (["--step", "0"], "error: --step: must be a finite number of seconds > 0, got 0"),
    (["--start", "noon"], "error: --start: must be an ISO 8601 UTC time"),
])
def test_a_window_too_long_or_too_fine_is_refused_with_the_option_before_planning(tmp_path, args, fragment):
    line = _refused(tmp_path, ["plan", _write(tmp_path, MINI), "-o", "p.npz", "--events", "e.csv", *args], fragment)
    if "would need" in line:
        assert "of arrays (limit: 80% of MemAvailable" in line and "use a larger --step or a shorter --duration" in line


def test_the_plan_memory_estimate_grows_with_steps_and_links():
    from lasernet import timeline

    sc = lasernet.load_scenario(DATA.parent.parent.parent / "topologies" / "mini.yaml")
    one = timeline.plan_memory_bytes(sc, 600, 1.0)
    assert timeline.plan_memory_bytes(sc, 6000, 1.0) > 9 * one
    assert timeline.plan_memory_bytes(sc, 600, 0.1) > 9 * one
    with pytest.raises(lasernet.OptionError, match=r"^step_s 1e-09: with duration_s 600 the plan would need"):
        lasernet.plan(sc, duration_s=600, step_s=1e-9)  # the Python API names its parameters


def test_show_of_a_large_constellation_stays_within_bounded_memory(tmp_path):
    doc = dict(MINI, constellation={"shells": [dict(MINI["constellation"]["shells"][0], planes=30,
                                                    sats_per_plane=1000)]})
    # VmHWM is this process's own peak (ru_maxrss would include pytest's, kept across exec).
    measured = ("import sys\nfrom lasernet.cli import main\ntry:\n    main()\nfinally:\n"
                "    print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0], file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", measured, "show", _write(tmp_path, doc), "-o", "map.png"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "map.png").stat().st_size > 10_000
    # Ground tracks of every one of 30,000 satellites took 2 GB; drawn for at most MAX_TRACKS, far less.
    assert int(proc.stderr.split()[-1]) < 1_000_000  # KiB


@pytest.mark.parametrize("content,fragment", [
    ("[1, 2, 3]", "ints.json: record 1: must be an OMM object (a JSON mapping of OBJECT_NAME"),
    ("42", "ints.json: record 1: must be an OMM object"),
    ("[" * 100_000 + "]" * 100_000, "ints.json: cannot parse OMM (RecursionError"),
])
def test_an_omm_file_that_is_not_a_list_of_records_is_named(tmp_path, content, fragment):
    (tmp_path / "ints.json").write_text(content)
    doc = dict(MINI, constellation={"omm": ["ints.json"]}, isl={"pattern": "none"})
    _refused(tmp_path, ["plan", _write(tmp_path, doc)], fragment)


@pytest.mark.parametrize("flow", [False, True])
def test_yaml_nested_thousands_deep_is_refused(tmp_path, flow):
    text = ("x: " + "[" * 5000 + "]" * 5000 + "\n") if flow else "".join(" " * i + "a:\n" for i in range(5000))
    (tmp_path / "deep.yaml").write_text(text)
    _refused(tmp_path, ["plan", "deep.yaml"], "deep.yaml: not valid YAML at line ")
    _refused(tmp_path, ["plan", "deep.yaml"], "nested deeper than 64 levels")


def test_a_duplicate_yaml_key_is_named_with_both_lines(tmp_path):
    text = yaml.safe_dump(MINI, sort_keys=False) + "name: other\n"
    (tmp_path / "dup.yaml").write_text(text)
    line = _refused(tmp_path, ["plan", "dup.yaml"], "dup.yaml: not valid YAML at line ")
    assert "key 'name' is given twice (first at line 1)" in line
    nested = "name: x\nepoch: 2026-01-01T00:00:00Z\nconstellation:\n  shells:\n    - {name: a, planes: 2, planes: 3}\n"
    (tmp_path / "dup2.yaml").write_text(nested)
    assert "line 5" in _refused(tmp_path, ["plan", "dup2.yaml"], "key 'planes' is given twice (first at line 5)")


@pytest.mark.parametrize("option,path,fragment", [
    ("-o", "/proc/lasernet-test.npz", "error: --output: cannot write /proc/lasernet-test.npz"),
    ("--events", "/proc/lasernet-test.csv", "error: --events: cannot write /proc/lasernet-test.csv"),
    ("-o", "missing/dir/plan.npz", "error: --output: directory 'missing/dir' does not exist"),
    ("--events", "missing/events.csv", "error: --events: directory 'missing' does not exist"),
])
def test_an_unwritable_output_is_refused_before_the_plan(tmp_path, option, path, fragment):
    _refused(tmp_path, ["plan", _write(tmp_path, MINI), option, path], fragment)


@pytest.mark.parametrize("args,fragment", [
    (["-o", "missing/dir/x.png"], "error: --output: directory 'missing/dir' does not exist"),
    (["-o", "/proc/x.png"], "error: --output: cannot write /proc/x.png"),
    (["--at", "noon"], "error: --at: must be an ISO 8601 UTC time"),
    (["--at", "2077-01-01T00:00:00Z"], "error: --at: must be between 1960 and 2050"),
])
def test_show_refuses_a_bad_output_or_instant_naming_the_option(tmp_path, args, fragment):
    _refused(tmp_path, ["show", _write(tmp_path, MINI), *args], fragment)


def test_two_catalogue_names_that_sanitise_alike_are_both_named(tmp_path):
    name, l1, l2 = (DATA / "iss.tle").read_text().splitlines()
    (tmp_path / "two.tle").write_text(f"{name}\n{l1}\n{l2}\nISS ZARYA\n{l1}\n{l2}\n")
    doc = dict(MINI, constellation={"tle": ["two.tle"]}, isl={"pattern": "none"})
    line = _refused(tmp_path, ["plan", _write(tmp_path, doc)], "two.tle: line 4: object 'ISS ZARYA' becomes node "
                                                                "name 'iss-zarya', as does 'ISS (ZARYA)' (two.tle "
                                                                "line 1)")
    assert "rename one of them or give the file a prefix" in line


def test_a_catalogue_name_equal_to_a_walker_satellite_is_named(tmp_path):
    name, l1, l2 = (DATA / "iss.tle").read_text().splitlines()
    (tmp_path / "one.tle").write_text(f"SAT 0 1\n{l1}\n{l2}\n")
    doc = dict(MINI, constellation={**MINI["constellation"], "tle": ["one.tle"]}, isl={"pattern": "none"})
    _refused(tmp_path, ["plan", _write(tmp_path, doc)], "one.tle: line 1: object 'SAT 0 1' becomes node name "
                                                        "'sat-0-1', as does a satellite of shell 'sat'")


def test_bgp_operators_that_miss_satellites_are_refused_by_plan_and_load(tmp_path):
    doc = dict(MINI, routing={"protocol": "bgp", "hello_s": 1, "dead_s": 3,
                              "operators": [{"name": "alpha", "asn": 64500, "planes": [0, 2]}]})
    path = _write(tmp_path, doc)
    fragment = "s.yaml: routing.operators: 8 satellites belong to no operator (e.g. sat-3-0, sat-3-1, sat-3-2)"
    _refused(tmp_path, ["plan", path], fragment)
    with pytest.raises(lasernet.ScenarioError, match=r"routing\.operators: 8 satellites belong to no operator"):
        lasernet.load_scenario(tmp_path / path)


def test_a_workload_command_on_an_unknown_node_is_refused_by_plan_and_load(tmp_path):
    doc = dict(MINI, workload={"commands": [{"name": "x", "nodes": ["sat-9-9"], "run": "true"}]})
    path = _write(tmp_path, doc)
    _refused(tmp_path, ["plan", path], "s.yaml: workload.commands[0].nodes[0]: 'sat-9-9' matches no node")
    with pytest.raises(lasernet.ScenarioError, match=r"workload\.commands\[0\]\.nodes\[0\]: 'sat-9-9' matches no"):
        lasernet.load_scenario(tmp_path / path)


@pytest.mark.parametrize("option,value", [("--speed", "0"), ("--tick", "nan"), ("--duration", "-1")])
def test_live_options_are_checked_and_named_before_anything(tmp_path, option, value):
    _refused(tmp_path, ["up", _write(tmp_path, MINI), option, value], f"error: {option}: must be a finite number > 0")


def test_a_binary_scenario_file_is_one_line(tmp_path):
    (tmp_path / "bin.yaml").write_bytes(bytes(range(256)) * 4)
    _refused(tmp_path, ["plan", "bin.yaml"], "bin.yaml")


def test_json_of_records_still_loads(tmp_path):
    """The OMM checks refuse only what is not a record: CelesTrak's JSON (a list of mappings) still loads."""
    (tmp_path / "iss.json").write_text(json.dumps(json.loads((DATA / "iss-omm.json").read_text())))
    doc = dict(MINI, constellation={"omm": ["iss.json"]}, isl={"pattern": "none"})
    assert lasernet.load_scenario(tmp_path / _write(tmp_path, doc)).constellation.element_files


@pytest.mark.parametrize("args,fragment", [
    (["plan", "mini", "--duration", "abc"], "error: Invalid value for '--duration': 'abc' is not a valid float."),
    (["plan"], "error: Missing argument 'SCENARIO'."),
    (["plan", "mini", "--bogus"], "error: No such option '--bogus'."),
    (["plan", "mini", "-o", "."], "error: Invalid value for '-o' / '--output'"),
])
def test_click_usage_errors_are_one_line_too(tmp_path, args, fragment):
    assert "--help`)" in _refused(tmp_path, args, fragment)
