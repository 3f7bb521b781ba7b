"""The shipped experiments, shortened (root): real etcd and a real ring all-reduce over the emulated orbit.

Each runs `lasernet run` on the shipped scenario for fewer seconds than it ships with, then reads the CSV files the
application wrote. Bounds are physical: a request or a token cannot beat the light time of its path, and the
measured ring latency stays within a few ms per member of the plan's light time around the ring.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import lasernet
from lasernet.measure import provenance

from ..conftest import REPO
from .test_workload import assert_run_gone

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root to create network namespaces (CI runs as root)", allow_module_level=True)

LASERNET = [sys.executable, "-m", "lasernet.cli"]
LINKS = os.environ.get("LASERNET_LINKS", "auto")


def lasernet_run(tmp_path, scenario: str, duration_s: int):
    run_dir = tmp_path / "run"
    proc = subprocess.run(LASERNET + ["run", scenario, "--duration", str(duration_s), "--run-dir", str(run_dir),
                                      "--links", LINKS, "--no-report"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert_run_gone(run_dir)
    return run_dir


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_allreduce_rounds_are_correct_and_the_ring_latency_follows_the_plan(tmp_path):
    run_dir = lasernet_run(tmp_path, "allreduce-ring", 14)
    rounds = read_csv(run_dir / "workload" / "sat-0-0" / "rounds.csv")
    assert len(rounds) >= 4 and all(r["ok"] == "1" for r in rounds)
    assert {int(r["bytes"]) for r in rounds} == {4 << 20}
    token = np.array([float(r["token_ring_ms"]) for r in rounds])
    predicted = np.array([float(r["predicted_ring_ms"]) for r in rounds])
    assert 100 < predicted.min() and predicted.max() < 600  # four multi-hop laser paths around the Earth
    assert np.all(token >= predicted - 1.0)  # no token beats light
    assert np.median(token - predicted) < 4 * 5.0  # four forwarding members, a few ms each
    round_s = np.array([float(r["round_s"]) for r in rounds])
    # Member 0's last chunk was sent on by 3, after 3 got its own from 2, after 2 from 1, after 1 from 0 at 0's
    # third step: one causal chain all the way around the ring after the round started.
    assert np.all(round_s > predicted / 1e3)
    jobs = read_csv(run_dir / "workload.csv")
    assert {j["status"] for j in jobs} == {"stopped"}  # ran until the end of the run


def test_etcd_cluster_elects_a_leader_and_serves_ground_clients(tmp_path):
    run_dir = lasernet_run(tmp_path, "etcd-orbit", 16)  # ends before the first outage (18 s)
    leaders = read_csv(run_dir / "workload" / "dc-ashburn" / "leader.csv")
    logs = " | ".join((run_dir / "workload" / f"orb-{k}.etcd.err").read_text()[-400:] for k in (1, 2, 3))
    assert leaders and leaders[0]["leader"] in ("orb-1", "orb-2", "orb-3"), logs
    nodes = json.loads((run_dir / "workload" / "nodes.json").read_text())
    assert nodes["orb-1"]["role"] == "server"
    probes = read_csv(run_dir / "probes.csv")
    for client, endpoint in (("dc-ashburn", "orb-1"), ("dc-frankfurt", "orb-2")):
        requests = read_csv(run_dir / "workload" / client / "requests.csv")
        ok = [r for r in requests if r["ok"] == "1"]
        assert len(ok) >= 20 and {r["endpoint"] for r in requests} == {endpoint}
        if client == "dc-ashburn":  # probed: a request costs at least one round trip to its member
            rtt = [float(p["predicted_rtt_ms"]) for p in probes if p["pair"] == f"{client}>{endpoint}"
                   and p["predicted_rtt_ms"]]
            assert min(float(r["latency_ms"]) for r in ok) > min(rtt)
        windows = read_csv(run_dir / "workload" / client / "latency-windows.csv")
        assert {w["op"] for w in windows} == {"put", "get"} and any(w["p99_ms"] for w in windows)
    metrics = {r["metric"] for r in read_csv(run_dir / "app-metrics.csv")}
    assert {"put_latency_ms", "get_latency_ms", "raft_term", "leader_changes"} <= metrics
    # The run directory's copy of the scenario (with its relative ground/sites.yaml) repeats the plan.
    info = json.loads((run_dir / "run.json").read_text())
    assert info["scenario_files"] == ["ground/sites.yaml"]
    copy = lasernet.load_scenario(run_dir / "scenario.yaml")
    planned = lasernet.Timeline.load(run_dir / "plan.npz")
    again = lasernet.plan(copy, start=planned.start_utc, duration_s=float(planned.offsets_s[-1]), step_s=1.0)
    assert provenance.plan_digest(again) == info["plan_events_sha256"]


def test_jamming_takes_down_the_planned_ground_links_on_time_and_the_daemons_route_around(tmp_path):
    """scripts/experiments/jamming.py, shortened: the jammer on dublin's site. The run applies the jamming the
    plan says, link by link, within a tick; the daemons record every change it makes; the pairs through a blinded
    station lose probes while it has no link."""
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "experiments" / "jamming.py"), "--stop-s", "25",
                           "--after-s", "5", "--run-dir", str(run_dir)], capture_output=True, text=True, timeout=400)
    print(proc.stdout[-2000:])
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads((run_dir / "jamming.json").read_text())
    assert out["planned"], out
    assert [p["link"] for p in out["planned"]] == [a["link"] for a in out["applied"]]
    assert all(abs(p["t_s"] - a["t_s"]) <= 0.2 for p, a in zip(out["planned"], out["applied"]))  # a tick and a bit
    downs = [c for c in out["changes"] if "-" in c["links"].split(" ")[0][:1]]
    assert len(downs) >= len(out["planned"])  # every blinded link is a change the FIB watcher judged
    assert sum(out["probes_lost_after_attack_start"].values()) > 0
    assert_run_gone(run_dir)
