"""The servers' cgroups write what the kernel's cgroup interfaces document, for v1 and v2, over a fake root.

A fake root is a plain directory laid out like the cgroup file system (the files the kernel would provide are
created by the test); what the code writes is compared with the kernel documentation's formats
(Documentation/scheduler/sched-bwc.rst for ``cpu.cfs_quota_us``, admin-guide/cgroup-v2.rst for ``cpu.max``,
``memory.max`` and ``cgroup.freeze``, cgroup-v1/freezer-subsystem.rst for ``freezer.state``). The real
hierarchies are exercised by tests/integration/test_server_cgroups.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lasernet.net import cgroups

V1_FILES = {"cpu": ("cpu.cfs_quota_us", "cpu.cfs_period_us"),
            "memory": ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"), "freezer": ("freezer.state",)}


class FakeV1:
    """mkdir in a v1 hierarchy makes the controller's files: pre-create them for the groups the test expects."""

    def __init__(self, root: Path):
        self.root = root
        for c in cgroups.V1_CONTROLLERS:
            (root / c).mkdir(parents=True)
            (root / c / "cgroup.procs").write_text("")

    def prepare(self, rel: str) -> None:
        for c, files in V1_FILES.items():
            d = self.root / c / rel
            d.mkdir(parents=True, exist_ok=True)
            for name in files + ("cgroup.procs",):
                (d / name).write_text("")


def _fake_v2(root: Path, rel: str) -> None:
    root.mkdir(exist_ok=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    for part in (rel.split("/")[0], rel):
        d = root / part
        d.mkdir(exist_ok=True)
        for name in ("cgroup.procs", "cpu.max", "memory.max", "memory.swap.max", "cgroup.freeze",
                     "cgroup.subtree_control"):
            (d / name).write_text("")
        (d / "cgroup.controllers").write_text("cpu memory\n")


def test_detects_v1_and_v2_and_refuses_neither(tmp_path):
    FakeV1(tmp_path / "a")
    assert cgroups.detect_version(tmp_path / "a") == 1
    _fake_v2(tmp_path / "b", "x/y")
    assert cgroups.detect_version(tmp_path / "b") == 2
    (tmp_path / "c").mkdir()
    with pytest.raises(cgroups.CgroupError, match="v1 controller"):
        cgroups.detect_version(tmp_path / "c")


def test_v1_quota_memory_freezer_and_procs(tmp_path):
    fake = FakeV1(tmp_path)
    fake.prepare("lasernet-run1/rack")
    groups = cgroups.ServerCgroups("run1", root=tmp_path)
    assert groups.version == 1
    groups.create("rack", cpus=0.5, memory_mb=64)
    cpu, mem, frz = (tmp_path / c / "lasernet-run1/rack" for c in ("cpu", "memory", "freezer"))
    # sched-bwc.rst: quota/period is the share of one CPU; 0.5 core = 50 ms per 100 ms
    assert (cpu / "cpu.cfs_period_us").read_text() == "100000"
    assert (cpu / "cpu.cfs_quota_us").read_text() == "50000"
    assert (mem / "memory.limit_in_bytes").read_text() == str(64 * 2 ** 20)
    assert (mem / "memory.memsw.limit_in_bytes").read_text() == str(64 * 2 ** 20)
    groups.add_process("rack", 4242)
    for d in (cpu, mem, frz):
        assert (d / "cgroup.procs").read_text() == "4242"
    groups.set_cpus("rack", 0.5 * 0.4)  # throttled at factor 0.4
    assert (cpu / "cpu.cfs_quota_us").read_text() == "20000"
    groups.set_cpus("rack", None)
    assert (cpu / "cpu.cfs_quota_us").read_text() == "-1"
    groups.freeze("rack", True)
    assert (frz / "freezer.state").read_text() == "FROZEN"
    groups.freeze("rack", False)
    assert (frz / "freezer.state").read_text() == "THAWED"
    assert groups.paths() == [str(tmp_path / c / "lasernet-run1/rack") for c in cgroups.V1_CONTROLLERS] + \
        [str(tmp_path / c / "lasernet-run1") for c in cgroups.V1_CONTROLLERS]


def test_v2_enables_controllers_and_writes_unified_files(tmp_path):
    _fake_v2(tmp_path, "lasernet-run2/rack")
    groups = cgroups.ServerCgroups("run2", root=tmp_path)
    assert groups.version == 2
    groups.create("rack", cpus=1.5, memory_mb=128)
    g = tmp_path / "lasernet-run2/rack"
    # cgroup-v2.rst: the root and the parent enable cpu and memory for their children
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu +memory"
    assert (tmp_path / "lasernet-run2/cgroup.subtree_control").read_text() == "+cpu +memory"
    assert (g / "cpu.max").read_text() == "150000 100000"
    assert (g / "memory.max").read_text() == str(128 * 2 ** 20)
    assert (g / "memory.swap.max").read_text() == "0"
    groups.add_process("rack", 77)
    assert (g / "cgroup.procs").read_text() == "77"
    groups.set_cpus("rack", None)
    assert (g / "cpu.max").read_text() == "max 100000"
    groups.set_cpus("rack", 0.001)  # below the kernel's 1 ms minimum: clamped
    assert (g / "cpu.max").read_text() == "1000 100000"
    groups.freeze("rack", True)
    assert (g / "cgroup.freeze").read_text() == "1"
    groups.freeze("rack", False)
    assert (g / "cgroup.freeze").read_text() == "0"
    assert groups.paths() == [str(g), str(tmp_path / "lasernet-run2")]


def test_v2_without_the_cpu_controller_says_so(tmp_path):
    _fake_v2(tmp_path, "lasernet-run3/rack")
    (tmp_path / "cgroup.controllers").write_text("memory pids\n")
    with pytest.raises(cgroups.CgroupError, match="controller.*cpu.*not available"):
        cgroups.ServerCgroups("run3", root=tmp_path).create("rack", cpus=1.0)


def test_remove_thaws_then_removes_children_first(tmp_path):
    _fake_v2(tmp_path, "lasernet-run4/rack")
    groups = cgroups.ServerCgroups("run4", root=tmp_path)
    groups.create("rack", cpus=1.0)
    groups.freeze("rack", True)
    g = tmp_path / "lasernet-run4/rack"
    thawed = []
    real_rmdir = Path.rmdir

    def rmdir(path):  # the cgroup file system removes a group with its files; a plain directory needs them gone
        if (path / "cgroup.freeze").exists():
            thawed.append((path.name, (path / "cgroup.freeze").read_text()))
        for f in path.iterdir():
            if f.is_file():
                f.unlink()
        real_rmdir(path)

    Path.rmdir = rmdir
    try:
        assert groups.remove() == 2
    finally:
        Path.rmdir = real_rmdir
    assert thawed == [("rack", "0"), ("lasernet-run4", "0")]
    assert not g.exists() and not (tmp_path / "lasernet-run4").exists()
    assert cgroups.remove_groups([str(g)]) == 0  # missing: skipped
    assert os.path.isdir(tmp_path)


def test_exec_joins_only_the_named_servers_group(tmp_path):
    fake = FakeV1(tmp_path)
    for name in ("rack", "dc"):
        fake.prepare(f"lasernet-run5/{name}")
    groups = cgroups.ServerCgroups("run5", root=tmp_path)
    groups.create("rack")
    groups.create("dc")
    assert cgroups.join_group(groups.paths(), "dc", 99) == 3
    assert [(tmp_path / c / "lasernet-run5/dc/cgroup.procs").read_text() for c in cgroups.V1_CONTROLLERS] == ["99"] * 3
    assert (tmp_path / "cpu/lasernet-run5/rack/cgroup.procs").read_text() == ""
    assert cgroups.join_group(groups.paths(), "sat-0-0", 99) == 0  # a router has no group
