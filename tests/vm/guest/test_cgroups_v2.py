"""Inside the VM: a server's cgroup on the unified (v2) hierarchy holds its CPU quota, freezes and limits memory.

Run by tests/vm/test_netem_in_vm.py in the same boot as the netem suite. The host (Debian 12) has cgroup v1, where
tests/integration/test_server_cgroups.py measures the same behaviour through a live run; the guest's stock kernel
mounts cgroup v2 (as Ubuntu 24.04 does), so this is where :class:`lasernet.net.cgroups.ServerCgroups`'s v2 path
(``cpu.max``, ``cgroup.freeze``, ``memory.max``) is proven, on the very files a run writes.

What is measured, from inside the groups:

- **quota**: a busy loop's own CPU time (``os.times()``) over the wall time it spun, in a group with ``cpus: 0.3``,
  then the same group lowered to 0.3 x 0.4 (what ``throttled`` does), each beside an unlimited loop in a group of
  its own that shows how much CPU the guest had to give at that moment. The quota is a ceiling whatever the load:
  the share may never exceed it by more than 10%; it must reach it within 10% unless the unlimited loop itself got
  less (then that is the bound): under TCG a host core is shared with QEMU's I/O thread;
- **freezer**: a UDP counter (answers each request with its PID and how many it has answered) gets no answer
  through while frozen (``cgroup.events`` says ``frozen 1``), then answers the request queued meanwhile and goes on
  counting from where it was, same PID;
- **memory**: a process that touches 128 MiB in a 64 MiB group is killed by the OOM killer (``memory.events``
  counts it), one that touches 24 MiB finishes;
- **removal**: :meth:`ServerCgroups.remove` removes every group, a frozen one with its process in it included.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lasernet.net import cgroups

QUOTA_CPUS = 0.3
THROTTLE_FACTOR = 0.4  # a throttle_factor as in the host test's scenario (power: ... throttle_factor)
SPIN_S = 4.0

BUSY = r"""
import os, sys, time
sys.stdin.readline()
t0, c0 = time.monotonic(), os.times()
end = t0 + float(sys.argv[1])
while time.monotonic() < end:
    pass
c1, t1 = os.times(), time.monotonic()
print((c1.user + c1.system - c0.user - c0.system) / (t1 - t0), flush=True)
"""

COUNTER = r"""
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
answered = 0
while True:
    data, peer = s.recvfrom(100)
    answered += 1
    s.sendto(f"{os.getpid()} {answered}".encode(), peer)
"""

TOUCH = r"""
import sys
sys.stdin.readline()
block = bytearray(int(sys.argv[1]) * 1024 * 1024)
for i in range(0, len(block), 4096):
    block[i] = 1
print("done", flush=True)
"""


@pytest.fixture(scope="module")
def groups():
    if cgroups.detect_version() != 2:
        pytest.fail("the guest's /sys/fs/cgroup is not cgroup v2: the harness's init mounts cgroup2 there")
    made = cgroups.ServerCgroups(f"vmtest-{os.getpid()}")
    children: list[subprocess.Popen] = []
    yield made, children
    for proc in children:
        if proc.poll() is None:
            proc.kill()
    made.remove()
    for proc in children:
        proc.wait(10)
    assert not any(Path(p).exists() for p in made.paths()), "a group was left behind"


def _spawn(children, code: str, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    children.append(proc)
    return proc


def _spin_in(groups, children, name: str) -> tuple[float, float]:
    """One busy loop in group ``name`` and one in the unlimited group, spun at once; their CPU shares."""
    made, _ = groups
    loops = {group: _spawn(children, BUSY, str(SPIN_S)) for group in (name, "unlimited")}
    for group, proc in loops.items():
        made.add_process(group, proc.pid)  # before it is told to start: all it spins is inside
    for proc in loops.values():
        proc.stdin.write("go\n")
        proc.stdin.flush()
    shares = {group: float(proc.communicate(timeout=SPIN_S * 10)[0]) for group, proc in loops.items()}
    return shares[name], shares["unlimited"]


def test_the_cpu_quota_and_its_throttled_value_bind_a_busy_loop(groups, record):
    made, children = groups
    made.create("busy", cpus=QUOTA_CPUS)
    made.create("unlimited", cpus=None)
    assert Path(made.procs_files("busy")[0]).parent.joinpath("cpu.max").read_text().split() == ["30000", "100000"]
    results = {}
    for label, cpus in (("nominal", QUOTA_CPUS), ("throttled", QUOTA_CPUS * THROTTLE_FACTOR)):
        made.set_cpus("busy", cpus)
        share, free = _spin_in(groups, children, "busy")
        results[label] = (cpus, share, free)
        record(f"cgroup v2 cpu.max {cpus:.2f} cores ({label})",
               {"share_cores": share, "unlimited_share_cores": free, "share_over_quota": share / cpus})
    for label, (cpus, share, free) in results.items():
        assert share <= cpus * 1.10, f"{label}: the loop used {share:.3f} cores with a quota of {cpus:.2f}"
        floor = min(cpus, free) * 0.90
        assert share >= floor, (f"{label}: the loop got {share:.3f} cores with a quota of {cpus:.2f} while an "
                                f"unlimited loop got {free:.3f}")


def _ask(port: int, timeout_s: float) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout_s)
        s.sendto(b"?", ("127.0.0.1", port))
        try:
            return s.recv(100).decode()
        except socket.timeout:
            return None


def test_a_frozen_server_answers_nothing_and_resumes_where_it_was(groups, record):
    made, children = groups
    made.create("frozen", cpus=QUOTA_CPUS)
    server = _spawn(children, COUNTER)
    made.add_process("frozen", server.pid)
    port = int(server.stdout.readline())
    before = [_ask(port, 5.0) for _ in range(3)]
    assert before == [f"{server.pid} {n}" for n in (1, 2, 3)], before

    events = Path(made.procs_files("frozen")[0]).parent / "cgroup.events"
    made.freeze("frozen", True)
    deadline = time.monotonic() + 10
    while "frozen 1" not in events.read_text().split("\n") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "frozen 1" in events.read_text().split("\n"), events.read_text()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2.0)
        s.sendto(b"?", ("127.0.0.1", port))
        t0 = time.monotonic()
        with pytest.raises(socket.timeout):
            s.recv(100)
        silent_s = time.monotonic() - t0
        made.freeze("frozen", False)
        s.settimeout(10.0)
        queued = s.recv(100).decode()  # the request sent while frozen, answered once thawed
    after = _ask(port, 5.0)
    record("cgroup v2 freezer", {"silent_while_frozen_s": silent_s, "pid_kept": int(after.split()[0] == str(server.pid))})
    assert queued == f"{server.pid} 4" and after == f"{server.pid} 5", (queued, after)


def test_a_memory_limit_kills_what_exceeds_it_and_spares_what_fits(groups, record):
    made, children = groups
    made.create("mem", memory_mb=64)
    group = Path(made.procs_files("mem")[0]).parent
    assert group.joinpath("memory.max").read_text().strip() == str(64 * 1024 * 1024)
    outcomes = {}
    for mib in (24, 128):
        proc = _spawn(children, TOUCH, str(mib))
        made.add_process("mem", proc.pid)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, _ = proc.communicate(timeout=120)
        outcomes[mib] = (proc.returncode, out.strip())
    oom_kills = int(dict(line.split() for line in group.joinpath("memory.events").read_text().splitlines())["oom_kill"])
    record("cgroup v2 memory.max 64 MiB", {"exit_24_mib": outcomes[24][0], "exit_128_mib": outcomes[128][0],
                                           "oom_kills": oom_kills})
    assert outcomes[24] == (0, "done"), outcomes
    assert outcomes[128][0] == -9 and oom_kills >= 1, (outcomes, oom_kills)


def test_removal_takes_a_frozen_group_with_its_process(groups):
    made, children = groups
    made.create("gone", cpus=QUOTA_CPUS)
    sleeper = subprocess.Popen(["sleep", "600"])
    children.append(sleeper)
    made.add_process("gone", sleeper.pid)
    made.freeze("gone", True)
    made.remove()
    assert sleeper.wait(10) == -9
    assert not any(Path(p).exists() for p in made.paths()), [p for p in made.paths() if Path(p).exists()]
