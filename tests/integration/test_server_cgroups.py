"""Servers live in real cgroups: CPU quota, throttling, freezing and memory limits, measured from inside them.

One emulation of ``tiny``'s ring (module fixture) carries four servers:

* ``rack-p`` on sat-0-0, ``cpus: 0.3``, whose satellite has a one-watt-hour battery that drains at nominal and
  throttled compute and recharges when off: the plan (printed by the fixture) goes nominal -> throttled (factor
  0.4) after ~5 s, off after ~23 s, throttled again after ~35 s;
* ``rack-b`` on sat-0-1 (no power model), ``cpus: 0.3``: the same quota, never throttled: the same-run baseline;
* ``dc-u`` on hartebeest, no limits: shows how much CPU the machine had to give at that moment;
* ``rack-m`` on sat-0-2, ``memory_mb: 64``.

CPU shares are measured by the busy loop itself: its ``/proc/self/stat`` utime + stime over the wall time it
ran, every loop at nice -10 and the run's parent cgroup given the CFS weight of 16 processes, so that the
machine's other load (a test suite keeps a core busy) does not starve it: the quota, not contention, is then
what limits it, and ``dc-u`` (unlimited, measured at the same time) shows that it was so.

Run as root with ``flock /tmp/lasernet-live.lock``; the cgroup v1 hierarchies of Debian 12 are what ran here.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import lasernet
from lasernet.emulation import state as run_state
from lasernet.net import cgroups
from lasernet.power import OFF, POWER_STATES, THROTTLED

from ..conftest import TOPOLOGIES

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root for namespaces and cgroups", allow_module_level=True)

QUOTA_CPUS = 0.3
FACTOR = 0.4
SCENARIO = f"""
name: cgpower
description: tiny's ring with a rack whose battery throttles, switches off and recovers (test fixture)
epoch: 2026-01-01T14:00:00Z
seed: 1
constellation:
  shells:
    - {{name: sat, type: delta, planes: 1, sats_per_plane: 6, phasing: 0, altitude_km: 3000, inclination_deg: 90}}
terminals:
  isl: {{count: 2, max_range_km: 10000, acquisition_s: 2, sun_exclusion_deg: 3, data_rate_bps: 10.0e+9}}
  gsl: {{count: 1, max_range_km: 8000, acquisition_s: 2, sun_exclusion_deg: 3, data_rate_bps: 10.0e+9}}
isl: {{pattern: ring}}
ground:
  include: [{TOPOLOGIES / "ground" / "sites.yaml"}]
  defaults: {{min_elevation_deg: 10, max_links: 1, handover: longest-visible}}
  stations: [svalbard, hartebeest]
plan: {{duration_s: 600, step_s: 1}}
hosts:
  - {{name: rack-p, attach: sat-0-0, cpus: {QUOTA_CPUS}}}
  - {{name: rack-b, attach: sat-0-1, cpus: {QUOTA_CPUS}}}
  - {{name: dc-u, attach: hartebeest}}
  - {{name: rack-m, attach: sat-0-2, memory_mb: 64}}
power:   # sunlit throughout: 45 W in; 225 W compute at quota 1 drains, 90 W throttled drains, 0 off recharges
  - {{satellites: sat-0-0, solar_w: 45, battery_wh: 1.5, compute_w: 225, max_charge_w: 1000,
      max_discharge_w: 1000, soc_start: 0.5, throttle_factor: {FACTOR}}}
"""

BUSY = """
import os, sys, time
def cpu_s():
    f = open('/proc/self/stat').read().rsplit(')', 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK')
end = time.monotonic() + float(sys.argv[1])
c0, w0 = cpu_s(), time.monotonic()
while time.monotonic() < end:
    pass
print((cpu_s() - c0) / (time.monotonic() - w0))
"""
COUNTER = """
import os, time
i = 0
while True:
    i += 1
    with open(os.environ['OUT'], 'a') as f:
        f.write(f'{os.getpid()} {i}\\n')
    time.sleep(0.05)
"""
ECHO = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', 7010))
while True:
    data, peer = s.recvfrom(100)
    s.sendto(data, peer)
"""


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cg")
    path = tmp / "cgpower.yaml"
    path.write_text(SCENARIO)
    scenario = lasernet.load_scenario(path)
    emu = lasernet.Emulation(scenario, duration_s=120, run_dir=tmp / "run", keep_awake=False)
    emu.start()
    tl, _ = emu.timeline_at(0.0)
    print("rack-p's power states by second:", "".join("otn"[s] for s in tl.power_state[:60, 0]))
    import threading

    stop = threading.Event()
    ticker = threading.Thread(target=emu.run, kwargs={"stop": stop}, daemon=True)
    ticker.start()
    try:
        yield emu, tl, tmp
    finally:
        stop.set()
        ticker.join(10)
        emu.stop()


def _when(tl, state: int, after_s: float = 0.0) -> tuple[float, float]:
    """The first stretch of rack-p's satellite in ``state`` starting after ``after_s``: (start, end) in s."""
    st = tl.power_state[:, 0]
    k = int(np.flatnonzero((st == state) & (tl.offsets_s >= after_s))[0])
    end = k
    while end < len(st) and st[end] == state:
        end += 1
    return float(tl.offsets_s[k]), float(tl.offsets_s[min(end, len(st) - 1)])


def _wait_until(emu, t_s: float) -> None:
    while emu.now_s() < t_s:
        time.sleep(0.05)


def _busy(emu, name: str, seconds: float) -> subprocess.Popen:
    return emu.servers[name].popen(["nice", "-n", "-10", sys.executable, "-c", BUSY, str(seconds)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _prioritise(emu) -> None:
    """Give the run's parent group a CFS weight of 16 ordinary processes (v1 ``cpu.shares``, v2 ``cpu.weight``):
    with group scheduling the servers' parent competes with the machine's other load as *one* task, whatever
    the nice value inside; this makes the quota, not that load, what limits the busy loops."""
    groups = emu.host.cgroups
    parent = groups.root / groups.parent if groups.version == 2 else groups.root / "cpu" / groups.parent
    name, value = ("cpu.weight", "1600") if groups.version == 2 else ("cpu.shares", str(16 * 1024))
    (parent / name).write_text(value)


@pytest.fixture(scope="module")
def shares(emu):
    """Busy-loop CPU shares measured concurrently inside rack-p (throttled), rack-b and dc-u."""
    emu, tl, _ = emu
    t0, t1 = _when(tl, THROTTLED)
    _prioritise(emu)
    _wait_until(emu, t0 + 1.0)
    seconds = min(8.0, t1 - t0 - 3.0)
    procs = {name: _busy(emu, name, seconds) for name in ("rack-p", "rack-b", "dc-u")}
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        out[name] = float(stdout)
    assert emu.now_s() < t1, "the measurement ran past the throttled stretch"
    print(f"CPU shares measured inside the servers over {seconds:.1f} s: {out}")
    return out


def test_busy_loop_gets_its_cpus_quota(shares):
    # dc-u (no limit) shows the machine had more than the quota to give: the quota is what held rack-b
    assert shares["dc-u"] > 1.5 * QUOTA_CPUS, shares
    assert abs(shares["rack-b"] - QUOTA_CPUS) / QUOTA_CPUS < 0.10, shares


def test_throttled_lowers_the_share_by_the_plans_factor(emu, shares):
    assert abs(shares["rack-p"] / shares["rack-b"] - FACTOR) / FACTOR < 0.10, shares
    emu, _, tmp = emu
    events = (emu.run_dir / "events.csv").read_text()
    assert f"server,rack-p,rack-p,sat-0-0,throttled,power,,cpus {QUOTA_CPUS * FACTOR:g}" in events


def _echo(src, ip: str, timeout_s: float) -> bool:
    """Whether a UDP echo from node ``src`` to ``ip``:7010 is answered within ``timeout_s``."""
    code = (f"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout({timeout_s}); "
            f"s.sendto(b'x', ('{ip}', 7010))\ntry:\n    s.recvfrom(10); print('answered')\n"
            f"except OSError:\n    print('silent')")
    out = src.cmd(f"{sys.executable} -c \"{code}\"")
    return "answered" in out


def _counter(path: Path) -> list[tuple[int, int]]:
    return [tuple(map(int, line.split())) for line in path.read_text().splitlines() if line.strip()]


def test_off_freezes_the_server_and_power_back_resumes_it(emu):
    emu, tl, tmp = emu
    t_off, t_on = _when(tl, OFF)
    server, router = emu.servers["rack-p"], emu.nodes["sat-0-0"]
    out = tmp / "counter.txt"
    counter = server.popen([sys.executable, "-c", COUNTER], env={**os.environ, "OUT": str(out)},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    echo = server.popen([sys.executable, "-c", ECHO], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        assert emu.now_s() < t_off - 0.5, "too late to see the server before it is switched off"
        assert _echo(router, server.IP(), 1.0), "the echo does not answer while powered"
        _wait_until(emu, t_off + 1.0)
        frozen_at = _counter(out)
        assert not _echo(router, server.IP(), 1.5), "a frozen server answered"
        time.sleep(1.0)
        assert _counter(out) == frozen_at, "the counter moved while frozen"
        _wait_until(emu, t_on + 1.5)
        assert _echo(router, server.IP(), 1.0), "the echo does not answer once power is back"
        after = _counter(out)
        assert len(after) > len(frozen_at) + 5
        pids = {pid for pid, _ in after}
        assert pids == {counter.pid}, "the counter was restarted"
        assert [i for _, i in after] == list(range(1, len(after) + 1)), "the counter did not go on where it was"
        events = (emu.run_dir / "events.csv").read_text()
        assert "server,rack-p,rack-p,sat-0-0,off,power" in events
        print(f"counter frozen at {frozen_at[-1][1]} from t={t_off:.0f} s to {t_on:.0f} s, at {after[-1][1]} after")
    finally:
        for proc in (counter, echo):
            proc.kill()
            proc.wait(5)


def test_memory_mb_is_enforced(emu):
    emu, _, _ = emu
    server = emu.servers["rack-m"]
    alloc = "import sys; b = bytearray(int(sys.argv[1]) << 20); b[::4096] = b'x' * len(b[::4096]); print('ok')"
    small = server.popen([sys.executable, "-c", alloc, "16"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    assert small.communicate(timeout=30)[0].strip() == "ok" and small.returncode == 0
    big = server.popen([sys.executable, "-c", alloc, "200"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    stdout, stderr = big.communicate(timeout=30)
    assert big.returncode != 0 and "ok" not in stdout, (big.returncode, stderr[-200:])
    print(f"200 MiB in a 64 MiB server: exit {big.returncode} ({stderr.strip()[-60:] or 'killed'})")


def test_upset_restart_kills_what_the_server_runs_but_not_its_shell(emu):
    emu, _, _ = emu
    server = emu.servers["rack-b"]
    sleeper = server.popen(["sleep", "300"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    assert emu.host.power([("rack-b", 1.0, True)])["killed"] >= 1
    assert sleeper.wait(5) == -9
    assert server.shell.poll() is None and "alive" in server.cmd("echo alive")


def test_teardown_after_sigkill_removes_frozen_groups_and_their_processes():
    """What ``lasernet down`` does with a run's state file: thaw, kill and remove the groups it lists."""
    groups = cgroups.ServerCgroups("test-teardown-%d" % os.getpid())
    groups.create("srv", cpus=0.2, memory_mb=32)
    proc = subprocess.Popen(["sleep", "300"])
    try:
        groups.add_process("srv", proc.pid)
        groups.freeze("srv", True)
        assert groups.pids("srv") == [proc.pid]
        removed = run_state.teardown({"run_id": "", "cgroups": groups.paths()})
        assert removed["cgroups"] == len(groups.paths())
        assert proc.wait(5) == -9
        assert not any(os.path.exists(p) for p in groups.paths())
    finally:
        if proc.poll() is None:
            proc.kill()
        cgroups.remove_groups(groups.paths())


def test_a_run_that_ends_while_a_server_is_off_stops(tmp_path):
    """A workload job on rack-p and the run stopped while its satellite is off (the job frozen): stop() thaws the
    server before it signals the job, and ends in the time a run's teardown takes (it used to wait forever on
    the frozen job); the job is reported stopped. The same run's power.csv holds the plan's power columns beside
    the quota applied, every event reached an on_event callback, and a job following $LASERNET_EVENTS saw the
    server go off."""
    path = tmp_path / "cgpower.yaml"
    path.write_text(SCENARIO + "workload:\n  commands:\n    - {name: sleeper, nodes: [rack-p], run: exec sleep 300}\n"
                               "    - {name: follow, nodes: [rack-b], run: 'exec tail -n +1 -F \"$LASERNET_EVENTS\"'}\n")
    scenario = lasernet.load_scenario(path)
    t_off, _ = _when(lasernet.plan(scenario, duration_s=60), OFF)
    import threading

    emu = lasernet.Emulation(scenario, duration_s=120, run_dir=tmp_path / "run", keep_awake=False)
    heard = []
    emu.on_event(heard.append)
    emu.on_event(lambda event: 1 / 0)  # a callback that raises is dropped, the run goes on
    stop, ticker = threading.Event(), None
    try:
        emu.start()
        ticker = threading.Thread(target=emu.run, kwargs={"stop": stop}, daemon=True)
        ticker.start()
        _wait_until(emu, t_off + 1.0)
        assert emu.server_quota["rack-p"] == 0.0
        stop.set()
        ticker.join(10)
        ends = []
        stopper = threading.Thread(target=lambda: (emu.stop(), ends.append(time.monotonic())), daemon=True)
        t0 = time.monotonic()
        stopper.start()
        stopper.join(60)
        assert ends, "stop() did not end within 60 s with a frozen workload job"
        print(f"stop() with rack-p frozen: {ends[0] - t0:.2f} s")
        assert emu.workload_summary["by_status"]["stopped"] == 2, emu.workload_summary  # sleeper and follow
        # power.csv: the plan's power columns for sat-0-0 (the one satellite with a power model) each step the
        # run covered, beside the quota rack-p ran with, which follows the plan into `off`.
        rows = list(csv.DictReader((tmp_path / "run" / "power.csv").open()))
        planned = lasernet.plan(scenario, duration_s=60)
        last_s = emu.ticks[-1].t_s
        assert {r["satellite"] for r in rows} == {"sat-0-0"}
        assert [float(r["t_s"]) for r in rows] == [float(t) for t in planned.offsets_s if t <= last_s + 1e-9]
        states = [POWER_STATES[s] for s in planned.power_state[:len(rows), 0].tolist()]
        assert [r["state"] for r in rows] == states and "off" in states
        quota = [f"{q:.3g}" for q in planned.cpu_quota[:len(rows), 0].tolist()]
        assert [r["cpu_quota_applied"] for r in rows[:-1]] == quota[:-1]  # the last step: cut by the run's end
        # The run's events as they were applied: every row of events.csv reached the Python callback, and a job
        # on another server that followed $LASERNET_EVENTS read rack-p going off.
        file_rows = [r for r in csv.reader((tmp_path / "run" / "events.csv").open())][1:]
        assert [[round(e.t_s, 3)] + list(e[1:]) for e in heard] == [[float(r[1])] + r[2:] for r in file_rows]
        off = [e for e in heard if e.kind == "server" and e.what == "rack-p" and e.event == "off"]
        assert len(off) == 1 and abs(off[0].t_s - t_off) <= 2 * emu.tick_s, (off, t_off)
        followed = (tmp_path / "run" / "workload" / "rack-b.follow.out").read_text()
        assert ",server,rack-p,rack-p,sat-0-0,off,power," in followed, followed[-500:]
        print(f"power.csv: {len(rows)} steps of sat-0-0 ({states.count('off')} off), quota applied = planned in all "
              f"but the last; {len(heard)} events to the callback, rack-p off at {off[0].t_s:.2f} s (plan "
              f"{t_off:.0f} s); the follower read {followed.count(chr(10))} lines")
    finally:
        stop.set()
        if ticker is not None:
            ticker.join(10)
        emu.stop()


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie whose parent has not reaped it yet counts as exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def test_lasernet_down_after_sigkill_removes_a_frozen_servers_cgroup(tmp_path):
    """`lasernet up`, a process started in rack-p with `lasernet exec` (it joins the server's cgroup), the
    satellite switched off (rack-p frozen), the driver SIGKILLed: `lasernet down` leaves no cgroup and no process."""
    lasernet_cli = [sys.executable, "-m", "lasernet.cli"]
    path = tmp_path / "cgpower.yaml"
    path.write_text(SCENARIO)
    t_off, _ = _when(lasernet.plan(lasernet.load_scenario(path), duration_s=60), OFF)
    up = subprocess.Popen(lasernet_cli + ["up", str(path), "--run-dir", str(tmp_path / "run")], cwd=tmp_path,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    status, run_id = tmp_path / "run" / "status.json", None
    try:
        deadline = time.monotonic() + 90
        while not status.exists():
            assert up.poll() is None and time.monotonic() < deadline, "lasernet up did not start"
            time.sleep(0.2)
        state = json.loads((tmp_path / "run" / "state.json").read_text())
        run_id, paths = state["run_id"], state["cgroups"]
        subprocess.run(lasernet_cli + ["exec", "rack-p", "--run", run_id, "--", "sh", "-c", "sleep 300 &"],
                       check=True, timeout=30)
        freezer = next(Path(p) for p in paths if "/freezer/" in p and p.endswith("/rack-p")) \
            if any("/freezer/" in p for p in paths) else next(Path(p) for p in paths if p.endswith("/rack-p"))
        sleepers = [pid for pid in map(int, (freezer / "cgroup.procs").read_text().split())
                    if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep")]
        assert len(sleepers) == 1, "lasernet exec did not run inside the server's cgroup"
        while json.loads(status.read_text())["t_s"] < t_off + 1.0:
            assert up.poll() is None
            time.sleep(0.2)
        frozen = (freezer / "freezer.state").read_text().strip() if (freezer / "freezer.state").exists() else \
            (freezer / "cgroup.freeze").read_text().strip()
        assert frozen in ("FROZEN", "1"), frozen
        up.send_signal(9)
        up.wait(10)
        down = subprocess.run(lasernet_cli + ["down", run_id], capture_output=True, text=True, timeout=60)
        assert down.returncode == 0, down.stderr
        assert f"{len(paths)} cgroups" in down.stdout, down.stdout
        assert not any(os.path.exists(p) for p in paths)
        assert _gone(sleepers[0]), f"the process started in the frozen server survived: {sleepers[0]}"
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(10)
        if run_id:
            subprocess.run(lasernet_cli + ["down", run_id], capture_output=True, timeout=60)
