"""`lasernet run` as a user runs it (root): a small workload on `mini` end to end, read back from its files.

One run (module fixture, ~12 s of emulation) carries: a command on both servers that records application metrics,
a command that fails (exit 3 on sat-0-1), one stopped at its stop_s, the ping mesh between the three stations, and
a rate-limited iperf3 flow from the ground data centre to the orbital rack, and a 2 s outage of every link of a
satellite off the probed paths. The tests read what it left: the exit
status, workload.csv, each job's output files, probes.csv (measured vs predicted RTT), iperf3.csv, app-metrics.csv,
run.json (versions, and a plan digest equal to an offline plan's), report.html (its embedded PNGs decoded) and that
nothing of the run is left on the machine. Bad workload configuration exits 2 with one line and creates nothing.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import lasernet
from lasernet.measure import provenance

from ..conftest import TOPOLOGIES
from lasernet.emulation import state as run_state
from lasernet.net import procs
from lasernet.measure.report import applied_links_at

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root to create network namespaces (CI runs as root)", allow_module_level=True)

LASERNET = [sys.executable, "-m", "lasernet.cli"]
LINKS = os.environ.get("LASERNET_LINKS", "auto")
MINI = (TOPOLOGIES / "mini.yaml").read_text().replace("ground/sites.yaml", str(TOPOLOGIES / "ground" / "sites.yaml"))
DURATION_S = 12
FLOW_BPS = 20e6
WORKLOAD = f"""
workload:
  duration_s: {DURATION_S}
  commands:
    - name: metrics
      nodes: [hosts]
      start_s: 1
      env: {{COUNT: 20}}
      run: >-
        echo "$LASERNET_INDEX $LASERNET_NODE $LASERNET_IP [$LASERNET_GROUP]";
        $LASERNET_PYTHON -c "import os, time; from lasernet.measure.appmetrics import Metrics; m = Metrics();
        [(m.record('answer', 42 + i), time.sleep(0.1)) for i in range(int(os.environ['COUNT']))]"
    - {{name: bad, nodes: [sat-0-1], start_s: 2, run: 'echo about to fail >&2; exit 3'}}
    - {{name: sleeper, nodes: ['sat-1-[01]'], start_s: 1, stop_s: 4, run: 'sleep 300'}}
  ping_mesh: {{rate_hz: 10}}
  iperf3:
    - {{from: dc-ashburn, to: rack-0-0, start_s: 2, duration_s: 6, interval_s: 0.5, bitrate_bps: {FLOW_BPS:.0f}}}
  outages: [{{node: sat-4-5, start_s: 3, duration_s: 2}}]
  report: {{map_at_s: [0, 4]}}
"""


def assert_run_gone(run_dir: Path, timeout_s: float = 10.0) -> None:
    """Nothing the run recorded in its state file is left: namespaces, node shells, jobs, relay, table, state.

    (What this run created, not a snapshot of the whole machine: other tests may be running next to this one.)
    """
    state = json.loads((run_dir / "state.json").read_text())
    inodes = {n["netns_inode"] for n in state["nodes"].values()}
    pids = [n["pid"] for n in state["nodes"].values()] + [j["pid"] for j in state.get("workload", [])]
    pids += [r.get("relay_pid") for r in state["backend"].get("relays", [])]
    deadline = time.monotonic() + timeout_s
    while True:
        alive = [p for p in pids if p and procs.start_time(p) is not None and not procs.is_zombie(p)]
        inside = procs.processes_in(inodes)
        if not (alive or inside) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not alive and not inside, f"left running: {alive} {inside}"
    table = state["backend"].get("table_path")  # the delay line's shared-memory table
    assert not (table and Path(table).exists())
    assert not (run_state.STATE_DIR / f"{state['run_id']}.json").exists()


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One `lasernet run` of mini with the workload above: (process, run directory, scenario path)."""
    tmp = tmp_path_factory.mktemp("workload")
    scenario = tmp / "wl.yaml"
    scenario.write_text(MINI.replace("name: mini", "name: wl") + WORKLOAD)
    proc = subprocess.run(LASERNET + ["run", str(scenario), "--run-dir", str(tmp / "run"), "--links", LINKS],
                          cwd=tmp, capture_output=True, text=True, timeout=300)
    return proc, tmp / "run", scenario


def test_a_failed_command_is_reported_with_its_node_and_exit_code_and_the_run_tears_down(run):
    proc, run_dir, _ = run
    assert proc.returncode == 1, proc.stderr  # a workload command failed
    assert "failed: bad on sat-0-1 exited with 3: about to fail" in proc.stderr
    assert f"report: {run_dir / 'report.html'}" in proc.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["workload"]["failed"] == [{"node": "sat-0-1", "command": "bad", "exit_code": 3,
                                              "stderr": "about to fail"}]
    assert_run_gone(run_dir)
    recorded = json.loads((run_dir / "state.json").read_text())["workload"]
    assert len(recorded) == 7  # every job's PID was in the state file for `lasernet down`


def test_every_job_is_recorded_with_its_status_exit_code_and_output(run):
    _, run_dir, _ = run
    jobs = {(r["node"], r["command"]): r for r in read_csv(run_dir / "workload.csv")}
    assert set(jobs) == {("rack-0-0", "metrics"), ("dc-ashburn", "metrics"), ("sat-0-1", "bad"),
                         ("sat-1-0", "sleeper"), ("sat-1-1", "sleeper"), ("rack-0-0", "iperf3-0-server"),
                         ("dc-ashburn", "iperf3-0")}
    assert {k: (r["status"], r["exit_code"]) for k, r in jobs.items()} == {
        ("rack-0-0", "metrics"): ("exited", "0"), ("dc-ashburn", "metrics"): ("exited", "0"),
        ("sat-0-1", "bad"): ("failed", "3"), ("sat-1-0", "sleeper"): ("stopped", "-15"),
        ("sat-1-1", "sleeper"): ("stopped", "-15"), ("rack-0-0", "iperf3-0-server"): ("exited", "0"),
        ("dc-ashburn", "iperf3-0"): ("exited", "0")}
    for (node, command), r in jobs.items():  # started and ended on emulated time as scheduled
        start, end = float(r["start_s"]), float(r["end_s"])
        scheduled = {"metrics": 1, "bad": 2, "sleeper": 1, "iperf3-0-server": 0, "iperf3-0": 2}[command]
        assert scheduled <= start < scheduled + 0.5, (node, command, start)
        assert start <= end <= DURATION_S + 1
    assert 4.0 <= float(jobs[("sat-1-0", "sleeper")]["end_s"]) < 4.5  # stopped at its stop_s
    rack = (run_dir / "workload" / "rack-0-0.metrics.out").read_text()
    assert rack.strip() == "0 rack-0-0 10.64.0.2 [rack-0-0=10.64.0.2 dc-ashburn=10.64.1.2]"
    assert (run_dir / "workload" / "sat-0-1.bad.err").read_text() == "about to fail\n"
    assert (run_dir / "workload" / "rack-0-0").is_dir()  # each job's own working directory


def test_app_metrics_are_collected_on_the_emulated_clock(run):
    _, run_dir, _ = run
    rows = read_csv(run_dir / "app-metrics.csv")
    assert list(rows[0]) == ["t_s", "node", "command", "metric", "value"]
    for node in ("rack-0-0", "dc-ashburn"):
        mine = [r for r in rows if r["node"] == node]
        assert [float(r["value"]) for r in mine] == [42.0 + i for i in range(20)]
        t = np.array([float(r["t_s"]) for r in mine])
        assert 1.0 < t[0] < 3.0 and np.all(np.diff(t) >= 0.09)  # after the job's start, 0.1 s apart


def test_ping_mesh_measures_rtt_close_to_the_predicted_light_time(run):
    _, run_dir, _ = run
    rows = read_csv(run_dir / "probes.csv")
    pairs = {r["pair"] for r in rows}
    assert pairs == {"ashburn>frankfurt", "dublin>ashburn", "frankfurt>dublin"}  # mesh + the scenario's probes
    for pair in ("frankfurt>dublin",):  # the mesh's own pair (the others are the scenario's)
        mine = [r for r in rows if r["pair"] == pair and r["measured_rtt_ms"] and r["predicted_rtt_ms"]]
        assert len(mine) > 8 * DURATION_S  # 10 Hz
        meas = np.array([float(r["measured_rtt_ms"]) for r in mine])
        pred = np.array([float(r["predicted_rtt_ms"]) for r in mine])
        assert 20 < np.median(pred) < 200  # several ISL hops of ~19 ms one way
        assert abs(np.median(meas - pred)) < 0.5, (np.median(meas), np.median(pred))


def test_iperf3_throughput_over_time_matches_the_flow_rate(run):
    _, run_dir, _ = run
    rows = read_csv(run_dir / "iperf3.csv")
    assert list(rows[0]) == ["flow", "t_s", "bits_per_second", "retransmits", "rtt_ms"]
    assert {r["flow"] for r in rows} == {"dc-ashburn>rack-0-0"}
    assert len(rows) == 12  # 6 s in 0.5 s intervals
    t = np.array([float(r["t_s"]) for r in rows])
    assert np.allclose(np.diff(t), 0.5, atol=0.05) and t[0] >= 2.0 + 0.5  # its first interval ends after start_s
    bps = np.array([float(r["bits_per_second"]) for r in rows])
    assert abs(np.median(bps[2:]) - FLOW_BPS) < 0.1 * FLOW_BPS  # after TCP's slow start over a ~100 ms RTT
    report = json.loads((run_dir / "iperf3-0.json").read_text())
    assert report["start"]["connected"][0]["remote_host"] == "10.64.0.2"


def test_run_dir_records_versions_the_scenario_and_the_plan_an_offline_plan_repeats(run):
    _, run_dir, scenario = run
    info = json.loads((run_dir / "run.json").read_text())
    for key in ("lasernet", "python", "skyfield", "sgp4", "numpy", "kernel"):
        assert info["versions"][key], key
    assert info["versions"]["kernel"] == os.uname().release
    assert (run_dir / "scenario.yaml").read_bytes() == scenario.read_bytes()
    planned = lasernet.Timeline.load(run_dir / "plan.npz")
    again = lasernet.plan(lasernet.load_scenario(scenario), start=planned.start_utc,
                          duration_s=float(planned.offsets_s[-1]), step_s=planned.step_s)
    assert provenance.plan_digest(again) == info["plan_events_sha256"] == provenance.plan_digest(planned)


def test_an_outage_takes_every_link_of_its_satellite_down_for_its_duration(run):
    _, run_dir, _ = run
    rows = [r for r in read_csv(run_dir / "events.csv") if "sat-4-5" in (r["a"], r["b"])]
    down = [r for r in rows if r["event"] == "down"]
    up_again = [r for r in rows if r["event"] == "up" and float(r["t_s"]) > 1]
    assert len(down) == 4 and {r["cause"] for r in down} == {"override"}  # its four +Grid ISLs
    assert {r["what"] for r in up_again} == {r["what"] for r in down}
    t_down = np.array([float(r["t_s"]) for r in down])
    t_up = np.array([float(r["t_s"]) for r in up_again])
    assert np.all((3.0 <= t_down) & (t_down < 3.25)) and np.all((4.9 <= t_up) & (t_up < 5.25))
    # The report's map at 4 s draws what the run applied: the satellite cut off, as at no other time.
    events = read_csv(run_dir / "events.csv")
    names = {r["what"] for r in down}
    assert names <= applied_links_at(events, 2.0) and not names & applied_links_at(events, 4.0)
    assert "as the run applied them" in (run_dir / "report.html").read_text()


def _figures(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_report_embeds_every_plot_and_lists_the_failed_job(run):
    _, run_dir, _ = run
    html = (run_dir / "report.html").read_text()
    assert "http://" not in html and "https://" not in html  # self-contained: no CDN, nothing fetched
    pngs = _figures(html)
    plots = sorted(p.name for p in (run_dir / "plots").glob("*.png"))
    assert plots == ["iperf3.png", "links.png", "map-0s.png", "map-4s.png", "metric-0.png", "routes.png", "rtt.png",
                     "sunlight.png"]  # no power:, upsets: or collision: section: sunlight is the only data-centre one
    assert len(pngs) == len(plots) and all(p[:8] == b"\x89PNG\r\n\x1a\n" and len(p) > 5000 for p in pngs)
    assert sorted(pngs) == sorted((run_dir / "plots" / name).read_bytes() for name in plots)
    assert re.search(r"<h2>Workload \(7 jobs, 1 failed\)</h2>", html)
    assert re.search(r'<tr class="failed"><td>sat-0-1</td><td>bad</td>.*?<td>failed</td><td>3</td>', html)
    for pair in ("ashburn&gt;frankfurt", "frankfurt&gt;dublin"):
        assert f"<td>{pair}</td>" in html


def test_lasernet_report_rebuilds_the_same_report(run):
    _, run_dir, _ = run
    first = (run_dir / "report.html").read_text()
    (run_dir / "report.html").unlink()
    proc = subprocess.run(LASERNET + ["report", str(run_dir)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    again = (run_dir / "report.html").read_text()
    assert len(_figures(again)) == len(_figures(first)) == 8
    strip = lambda text: re.sub(r"base64,[A-Za-z0-9+/=]+", "", text)  # noqa: E731 (PNG bytes may embed dates)
    assert strip(again) == strip(first)


def test_a_selector_matching_no_node_exits_2_with_one_line_and_creates_nothing(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(MINI + "\nworkload:\n  duration_s: 5\n  commands: [{name: x, nodes: [sat-9-*], run: 'true'}]\n")
    child = subprocess.Popen(LASERNET + ["run", str(path)], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    out, err = child.communicate(timeout=120)
    proc = subprocess.CompletedProcess(child.args, child.returncode, out, err)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: bad.yaml: workload.commands[0].nodes[0]: 'sat-9-*' matches no node; nodes are e.g. sat-0-0, "
        "sat-0-1, sat-0-2, sat-0-3 (names, globs, role:ROLE or hosts)"]
    assert not (tmp_path / "runs").exists()
    assert not list(run_state.STATE_DIR.glob(f"*-{child.pid % 100000}.json"))  # no state: nothing was created
