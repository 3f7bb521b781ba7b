"""The scenario's `workload:` section (offline): what it accepts, the one-line errors it gives, how node selectors
resolve against a plan's nodes; the plan's determinism; and `lasernet show`'s map."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import lasernet
from lasernet import ScenarioError
from lasernet.measure import provenance
from lasernet.spec import workload as spec

from ..conftest import TOPOLOGIES

MINI = (TOPOLOGIES / "mini.yaml").read_text().replace("ground/sites.yaml", str(TOPOLOGIES / "ground" / "sites.yaml"))
LASERNET = [sys.executable, "-m", "lasernet.cli"]

GOOD = MINI + """
workload:
  duration_s: 12
  commands:
    - {name: server, nodes: [hosts], run: 'sleep 100', stop_s: 9, env: {MODE: fast, N: 3}}
    - {name: client, nodes: ['sat-0-*', role:data-centre], run: 'echo hi', start_s: 2, cwd: 'apps/{node}'}
  ping_mesh: {rate_hz: 4}
  iperf3:
    - {from: dc-ashburn, to: rack-0-0, start_s: 1, duration_s: 5, interval_s: 0.5, bitrate_bps: 2.0e+7}
  report: {map_at_s: [0, 6]}
"""


def test_a_scenario_without_workload_has_an_empty_one(write_scenario):
    sc = lasernet.load_scenario(write_scenario(MINI))
    assert sc.workload == spec.Workload() and sc.workload.empty


def test_every_workload_field_is_read(write_scenario):
    wl = lasernet.load_scenario(write_scenario(GOOD)).workload
    assert wl.duration_s == 12 and not wl.empty
    server, client = wl.commands
    assert server == spec.Command("server", ("hosts",), "sleep 100", 0.0, 9.0, (("MODE", "fast"), ("N", "3")))
    assert client.nodes == ("sat-0-*", "role:data-centre") and client.start_s == 2 and client.cwd == "apps/{node}"
    assert wl.ping_mesh == spec.PingMesh(rate_hz=4.0)
    assert wl.iperf3 == (spec.IperfFlow("dc-ashburn", "rack-0-0", 1.0, 5.0, 0.5, "tcp", 2e7, 1),)
    assert wl.map_at_s == (0.0, 6.0)


def test_selectors_resolve_names_globs_roles_and_hosts(write_scenario):
    sc = lasernet.load_scenario(write_scenario(GOOD))
    tl = lasernet.plan(sc, duration_s=0)
    resolved = spec.resolve(sc, tl.node_names, tl.n_satellites)
    (server, servers), (client, clients) = resolved["commands"]
    assert servers == ["rack-0-0", "dc-ashburn"]
    assert clients == [f"sat-0-{s}" for s in range(8)] + ["ashburn", "frankfurt", "dublin"]
    assert resolved["mesh"] == [("ashburn", "frankfurt"), ("ashburn", "dublin"), ("frankfurt", "dublin")]


def test_a_selector_that_matches_no_node_names_its_field(write_scenario):
    """load_scenario resolves the selectors (as `lasernet up` does), so the scenario is refused when read."""
    with pytest.raises(ScenarioError, match=r"workload\.commands\[1\]\.nodes\[0\]: 'sat-9-\*' matches no node"):
        lasernet.load_scenario(write_scenario(GOOD.replace("'sat-0-*'", "'sat-9-*'")))


@pytest.mark.parametrize("bad,message", [
    ("{name: x, nodes: [hosts], run: 'true', start_s: 5, stop_s: 5}",
     "workload.commands[0].stop_s: must be after start_s (5), got 5"),
    ("{name: x, nodes: [role:moon], run: 'true'}", "workload.commands[0].nodes[0]: unknown role 'moon'"),
    ("{name: x, nodes: [hosts], run: 'true', cwd: ../../etc}",
     "workload.commands[0].cwd: must be a relative path inside the run directory"),
    ("{name: x, nodes: [hosts], run: 'true', env: {1BAD: x}}",
     "workload.commands[0].env.1BAD: environment variable names must match"),
    ("{name: x, nodes: [hosts], run: 'true', when: 3}", "workload.commands[0].when: unknown field; allowed here"),
    ("{name: X!, nodes: [hosts], run: 'true'}", "workload.commands[0].name: must match [a-z0-9-]+"),
    ("{name: x, nodes: [], run: 'true'}", "workload.commands[0].nodes: must name at least one node"),
    ("{name: x, nodes: [hosts]}", "workload.commands[0].run: is required"),
])
def test_bad_commands_are_one_line_errors_naming_the_field(write_scenario, bad, message):
    with pytest.raises(ScenarioError) as err:
        lasernet.load_scenario(write_scenario(MINI + f"\nworkload:\n  commands:\n    - {bad}\n"))
    text = str(err.value)
    assert text.startswith("scenario.yaml: ") and message in text and "\n" not in text


def test_duplicate_command_names_and_self_flows_are_refused(write_scenario):
    with pytest.raises(ScenarioError, match=r"commands\[1\]\.name: 'a' is used twice"):
        lasernet.load_scenario(write_scenario(MINI + "\nworkload:\n  commands:\n"
                                              "    - {name: a, nodes: [hosts], run: 'true'}\n"
                                              "    - {name: a, nodes: [hosts], run: 'true'}\n"))
    with pytest.raises(ScenarioError, match=r"iperf3\[0\]\.to: a flow from a node to itself"):
        lasernet.load_scenario(write_scenario(MINI + "\nworkload:\n  iperf3: [{from: ashburn, to: ashburn}]\n"))


def test_bad_workload_exits_2_with_one_line(write_scenario, tmp_path):
    path = write_scenario(MINI + "\nworkload:\n  ping_mesh: {rate_hz: 0}\n")
    proc = subprocess.run(LASERNET + ["plan", str(path), "--duration", "1"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ["error: scenario.yaml: workload.ping_mesh.rate_hz: must be between 0.1 and 100, got 0"]


def test_same_scenario_and_seed_plan_the_same_event_sequence(write_scenario):
    sc = lasernet.load_scenario(write_scenario(MINI))
    one, two = (lasernet.plan(sc, duration_s=900, step_s=1) for _ in range(2))
    ev1, ev2 = one.events(), two.events()
    assert len(ev1["step"]) > 150 and (ev1["step"] > 0).sum() > 0  # changes happen after the start
    for key in ev1:
        np.testing.assert_array_equal(ev1[key], ev2[key])
    np.testing.assert_array_equal(one.up, two.up)
    assert provenance.plan_digest(one) == provenance.plan_digest(two)
    later = lasernet.plan(sc, start="2026-01-01T00:00:30Z", duration_s=900, step_s=1)
    assert provenance.plan_digest(later) != provenance.plan_digest(one)


def test_show_draws_a_map_png_with_the_links_the_plan_has_up(tmp_path):
    from matplotlib import image

    from lasernet.measure.report import map_figure
    from lasernet.topology import GSL, ISL

    out = tmp_path / "map.png"
    proc = subprocess.run(LASERNET + ["show", "mini", "--at", "2026-01-01T00:30:00Z", "-o", str(out)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = image.imread(out)
    height, width = pixels.shape[:2]
    assert 1000 <= width <= 2000 and 0.4 < height / width < 0.65  # an equirectangular world, 2:1 plus margins
    assert len(np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0)) > 20  # land, tracks, links, labels
    sc = lasernet.load_scenario(TOPOLOGIES / "mini.yaml")
    when = lasernet.parse_time("2026-01-01T00:30:00Z")
    tl = lasernet.plan(sc, start=when, duration_s=0)
    labels = [t.get_text() for t in map_figure(sc, when).axes[0].get_legend().get_texts()]
    isl_up = int((tl.up[0] & (tl.links.kind == ISL)).sum())
    assert f"ISL up ({isl_up})" in labels and f"ground link up ({int((tl.up[0] & (tl.links.kind == GSL)).sum())})" \
        in labels
    assert 100 <= isl_up <= 128  # 8x8 +Grid has 128 candidates; a few are off above the polar cut-off


@pytest.mark.parametrize("name,commands", [("etcd-orbit", {"etcd": ["orb-1", "orb-2", "orb-3"],
                                                          "client": ["dc-ashburn", "dc-frankfurt"]}),
                                          ("allreduce-ring", {"allreduce": ["sat-0-0", "sat-2-1", "sat-4-2",
                                                                            "sat-6-3"]})])
def test_shipped_experiments_resolve_and_their_programs_exist(name, commands):
    sc = lasernet.load_scenario(TOPOLOGIES / f"{name}.yaml")
    tl = lasernet.plan(sc, duration_s=0)
    resolved = spec.resolve(sc, tl.node_names, tl.n_satellites)
    assert {c.name: nodes for c, nodes in resolved["commands"]} == commands
    for command, _ in resolved["commands"]:
        script = command.run.split("$LASERNET_SCENARIO_DIR/")[1].split()[0]
        assert (TOPOLOGIES / script).resolve().is_file(), script
    assert sc.workload.duration_s
