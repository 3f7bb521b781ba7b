"""`lasernet up` / `down` as a user runs them: nothing of a run remains after a normal end, SIGINT, or SIGKILL
followed by `lasernet down`; bad input exits 2 with one line and creates nothing."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import lasernet

from ..conftest import DATA, TOPOLOGIES

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root to create network namespaces (CI runs as root)", allow_module_level=True)

LASERNET = [sys.executable, "-m", "lasernet.cli"]
LINKS = os.environ.get("LASERNET_LINKS", "auto")  # the link backend under test (auto: netem if the kernel has it)
SCENARIO = os.environ.get("LASERNET_TEST_SCENARIO", "mini")  # tiny in the VM (tests/vm/test_emulation_in_vm.py)
_FIRST = yaml.safe_load((TOPOLOGIES / f"{SCENARIO}.yaml").read_text())["probes"][0]
PAIR = f"{_FIRST['from']}>{_FIRST['to']}"  # mini: ashburn>frankfurt
# A normal run's length: in the TCG guest the probers' interpreters alone take seconds to start, so the run that
# must report > 20 probes is given longer there; what is asserted is the same.
IN_GUEST = os.environ.get("LASERNET_VM_GUEST") == "1"
DURATION_S = "30" if IN_GUEST else "4"
START_TIMEOUT_S = 240.0 if IN_GUEST else 60.0  # `lasernet up` has taken 60-130 s to start there


def snapshot() -> dict:
    """What a run could leave behind: namespaces in use, root-namespace links, shm files, processes, state."""
    inodes, procs = set(), set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            inodes.add(os.stat(f"/proc/{entry}/ns/net").st_ino)
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "mininet:" in cmd or "lasernet.net.delayline.relay" in cmd or "lasernet.measure.probes" in cmd:
            procs.add(cmd.strip())
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {"netns": inodes, "links": {ln.split(":")[1].strip() for ln in links.splitlines()},
            "shm": set(os.listdir("/dev/shm")), "procs": procs,
            "state": set(os.listdir("/run/lasernet")) if os.path.isdir("/run/lasernet") else set()}


def assert_nothing_left(before: dict, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        after = snapshot()
        extra = {k: after[k] - before[k] for k in before if after[k] - before[k]}
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not extra, f"left behind: {extra}"


def start_up(tmp_path, *args) -> subprocess.Popen:
    return subprocess.Popen(LASERNET + ["up", SCENARIO, "--run-dir", str(tmp_path / "run"), "--links", LINKS,
                                         *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_running(tmp_path, proc, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not (tmp_path / "run" / "status.json").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "lasernet up did not start"
        time.sleep(0.2)


def test_normal_end_leaves_nothing_and_reports_fidelity(tmp_path):
    before = snapshot()
    proc = start_up(tmp_path, "--duration", DURATION_S)
    out, err = proc.communicate(timeout=120 + START_TIMEOUT_S)
    assert proc.returncode == 0, err
    assert "probe fidelity" in out and PAIR in out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["probes"][PAIR]["n"] > 20
    assert_nothing_left(before)


def test_sigint_tears_down(tmp_path):
    before = snapshot()
    proc = start_up(tmp_path)
    wait_running(tmp_path, proc)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert_nothing_left(before)


def test_sigkill_then_down_removes_everything(tmp_path):
    before = snapshot()
    proc = start_up(tmp_path)
    wait_running(tmp_path, proc)
    run_id = json.loads((tmp_path / "run" / "state.json").read_text())["run_id"]
    # Start extra software in a node, as a user would, to check that down finds it too.
    subprocess.run(LASERNET + ["exec", "sat-0-0", "--run", run_id, "--", "sh", "-c", "sleep 300 &"], check=True,
                   timeout=30)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    down = subprocess.run(LASERNET + ["down", run_id], capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stderr
    assert "down:" in down.stdout
    again = subprocess.run(LASERNET + ["down", run_id], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0  # idempotent
    assert_nothing_left(before)


@pytest.mark.parametrize("name,text,message", [
    ("bad-yaml.yaml", "name: x\nepoch: [oops\n", "not valid YAML at line 3"),
    ("bad-probe.yaml", (TOPOLOGIES / "mini.yaml").read_text().replace("to: frankfurt", "to: atlantis"),
     "probes[0].to: unknown node 'atlantis'"),
    ("bad-tle.yaml", """name: bad-tle
epoch: 2014-01-21T00:00:00Z
constellation: {tle: [bad.tle]}
isl: {pattern: none}
""", "bad.tle: line 2: TLE checksum"),
])
def test_bad_input_exits_2_with_one_line_and_creates_nothing(tmp_path, name, text, message):
    lines = (DATA / "iss.tle").read_text().splitlines()
    (tmp_path / "bad.tle").write_text("\n".join([lines[0], lines[1][:68] + "0", lines[2]]) + "\n")
    path = tmp_path / name
    path.write_text(text.replace("ground/sites.yaml", str(TOPOLOGIES / "ground" / "sites.yaml")))
    before = snapshot()
    proc = subprocess.run(LASERNET + ["up", str(path), "--duration", "2"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and message in err[0], proc.stderr
    assert not (tmp_path / "runs").exists()
    assert_nothing_left(before)


def test_nodes_exec_ping_and_status_reach_a_running_emulation(tmp_path):
    before = snapshot()
    proc = start_up(tmp_path, "--duration", "30")
    try:
        wait_running(tmp_path, proc)
        run_id = json.loads((tmp_path / "run" / "state.json").read_text())["run_id"]
        nodes = subprocess.run(LASERNET + ["nodes", "--run", run_id], capture_output=True, text=True, timeout=30)
        assert nodes.returncode == 0 and "10.255.0.1" in nodes.stdout and "rack-0-0" in nodes.stdout
        routes = subprocess.run(LASERNET + ["exec", "sat-0-0", "--run", run_id, "--", "ip", "route"],
                                capture_output=True, text=True, timeout=30)
        # A route through a Linux nexthop object prints as "DST nhid N via GW": either form is a route via a neighbour.
        assert routes.returncode == 0 and re.search(r"^10\.255\.0\.66 (nhid \d+ )?via 10\.128\.", routes.stdout, re.M)
        ping = subprocess.run(LASERNET + ["ping", "ashburn", "frankfurt", "-c", "2", "--run", run_id],
                              capture_output=True, text=True, timeout=30)
        assert ping.returncode == 0 and "2 received" in ping.stdout
        status = subprocess.run(LASERNET + ["status", run_id], capture_output=True, text=True, timeout=30,
                                env=dict(os.environ, COLUMNS="200"))
        assert status.returncode == 0 and run_id[:12] in status.stdout and "up" in status.stdout
        unknown = subprocess.run(LASERNET + ["exec", "atlantis", "--run", run_id, "--", "true"],
                                 capture_output=True, text=True, timeout=30)
        assert unknown.returncode == 2 and "unknown node 'atlantis'" in unknown.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert_nothing_left(before)


def test_cli_commands_show_live_links_the_predicted_path_and_the_orbit(tmp_path):
    """`lasernet up --cli`: the emulation ticks while the prompt is open, and `orbit`, `links NODE` and
    `path A B` typed there agree with the run's plan."""
    src, dst = _FIRST["from"], _FIRST["to"]
    before = snapshot()
    proc = subprocess.Popen(LASERNET + ["up", SCENARIO, "--cli", "--links", LINKS, "--run-dir", str(tmp_path / "run")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    try:
        wait_running(tmp_path, proc)
        proc.stdin.write("orbit\n")
        proc.stdin.flush()
        first = []  # up to the first orbit's answer: the 2 s below start when the prompt has run it, not when typed
        deadline = time.monotonic() + 60
        while not first or not re.search(r"t = [\d.]+ s \(", first[-1]):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(first)
            first.append(proc.stdout.readline())
        time.sleep(2.0)
        out, err = proc.communicate(f"links {src}\npath {src} {dst}\norbit\nexit\n", timeout=60)
        out = "".join(first) + out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    out = out.replace("lasernet> ", "\n")  # the prompt, printed before each command's output
    orbits = re.findall(r"t = ([\d.]+) s \(.* UTC\), speed 1x; links up (\d+)/(\d+); ticks (\d+)", out)
    assert len(orbits) == 2, out
    (t1, _, _, ticks1), (t_s, links_up, links_made, ticks2) = [(float(t), int(u), int(m), int(k)) for t, u, m, k in orbits]
    assert t_s - t1 >= 1.5 and ticks2 - ticks1 >= 10  # the clock ran on behind the prompt
    assert 0 < links_up <= links_made
    # What the run's plan says at that time (the last three commands run within a second of each other).
    plan = lasernet.Timeline.load(tmp_path / "run" / "plan.npz")
    step = min(int(round(t_s / plan.step_s)), len(plan.offsets_s) - 1)
    index = {frozenset((plan.node_names[a], plan.node_names[b])): li
             for li, (a, b) in enumerate(zip(plan.links.a, plan.links.b))}
    ground = [row for row in map(str.split, out.splitlines()) if row and "~" in row[0] and src in row[0].split("~")]
    assert ground and all(row[1] == "gsl" for row in ground), out
    for row in ground:  # link, kind, up/DOWN, delay ms, loss, rate: the live state is the plan's
        li = index[frozenset(row[0].split("~"))]
        assert (row[2] == "up") == bool(plan.up[step, li])
        if row[2] == "up":
            assert abs(float(row[3]) - plan.delay_s[step, li] * 1e3) < 0.2
    path = re.search(r"^(\S+( > \S+)+)\n(\d+) hops, one-way ([\d.]+) ms, RTT ([\d.]+) ms \(predicted\)$", out, re.M)
    assert path, out
    nodes = path[1].split(" > ")
    assert nodes[0] == src and nodes[-1] == dst and int(path[3]) == len(nodes) - 1 >= 4
    hops = [index[frozenset(hop)] for hop in zip(nodes, nodes[1:])]
    assert all(plan.up[step, li] for li in hops)
    light_ms = 1e3 * sum(plan.delay_s[step, li] for li in hops)
    assert abs(float(path[4]) - light_ms) < 0.5  # the path's light time (it changes by < 0.5 ms/s)
    assert abs(float(path[5]) - 2 * float(path[4])) < 0.01
    assert_nothing_left(before)
