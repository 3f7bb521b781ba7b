"""The in-orbit-processing experiment's pieces that need no root: its two scenarios, the land test, the reduction,
store and forward over loopback TCP, and the analysis and report section over a run directory's files."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import threading
import time

import numpy as np
import yaml

import lasernet
from lasernet.measure import eo
from lasernet.measure.appmetrics import Metrics
from lasernet.measure.report import build_report

from ..conftest import REPO

SCRIPT = REPO / "scripts" / "experiments" / "eo_pipeline.py"


def pipeline():
    spec = importlib.util.spec_from_file_location("eo_pipeline", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_two_scenarios_differ_only_in_the_producers_mode():
    raw, processed = (yaml.safe_load((REPO / "topologies" / f"{n}.yaml").read_text())
                      for n in ("in-orbit-processing", "in-orbit-processing-compute"))
    modes = [[c["env"]["MODE"] for c in s["workload"]["commands"] if c["name"] == "producer"] for s in (raw, processed)]
    assert modes == [["raw"], ["processed"]]
    for s in (raw, processed):
        for key in ("name", "description"):
            s.pop(key)
        next(c for c in s["workload"]["commands"] if c["name"] == "producer")["env"].pop("MODE")
    assert raw == processed


def test_over_land_agrees_with_skyfield_subpoints_and_the_mask():
    """Reference: Skyfield's own SGP4 and ITRS frame for the same satellite record, geocentric latitude."""
    from skyfield.api import EarthSatellite
    from skyfield.framelib import itrs

    from lasernet import skydata
    from lasernet.measure.plots import land_mask
    from lasernet.orbits import build_satellites

    scenario = lasernet.load_scenario(REPO / "topologies" / "in-orbit-processing.yaml")
    offsets = np.arange(0, 6000, 5.0)
    mine = eo.over_land(scenario, scenario.epoch, ["sat-6-2"], offsets)[:, 0]
    sats = build_satellites(scenario)
    sat = EarthSatellite.from_satrec(sats.satrecs[sats.index("sat-6-2")], skydata.timescale())
    x, y, z = sat.at(skydata.times(scenario.epoch, offsets)).frame_xyz(itrs).km
    lat, lon = np.degrees(np.arctan2(z, np.hypot(x, y))), np.degrees(np.arctan2(y, x))
    ref = land_mask()[np.floor(lat + 90).astype(int), np.floor(lon + 180).astype(int) % 360]
    assert 0.15 < ref.mean() < 0.5  # a 53 degree orbit spends a quarter to a third of its time over land
    assert np.mean(mine == ref) > 0.99  # only steps at a coast may differ (Skyfield adds polar motion)


def test_reduce_keeps_the_mean_of_every_k_samples():
    reduce = pipeline().reduce
    data = np.arange(25, dtype=np.uint8).tobytes()
    out = np.frombuffer(reduce(data, 10), np.uint8)
    assert len(out) == math.ceil(25 / 10) and out.tolist() == [4, 14, 22]  # 4.5 and 14.5 round to even


def test_store_and_forward_resends_what_an_aborted_connection_did_not_deliver(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = pipeline()
    got, lock = [], threading.Lock()

    def on_chunk(chunk, ip):
        with lock:
            got.append(chunk.key)

    receiver = p.Receiver(0, on_chunk)
    port = receiver.listener.getsockname()[1]
    allowed = threading.Event()
    allowed.set()
    with Metrics(str(tmp_path / "m.csv")) as metrics:
        link = p.StoreAndForward(metrics, port, lambda: [("sink", "127.0.0.1")], guard=lambda _: allowed.is_set())
        link.thread.start()
        for seq in range(20):
            link.put(p.Chunk("sat-0-0", seq, seq, seq + 1.0, 1, bytes(200_000)))
            if seq == 10:
                allowed.clear()  # the contact ends: the connection is reset, the rest waits
                time.sleep(0.3)
                assert link.backlog_bytes()[1] > 0
                allowed.set()
        deadline = time.monotonic() + 20
        while link.backlog_bytes()[1] and time.monotonic() < deadline:
            time.sleep(0.05)
        p.STOP.set()
    assert link.backlog_bytes() == (0, 0) and link.connections >= 2
    assert set(got) == {("sat-0-0", s) for s in range(20)}  # every chunk arrived (some perhaps twice)
    assert link.acked_bytes == 20 * 200_000
    receiver.listener.close()


def _write(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_summary_and_report_section_from_a_run_directory(tmp_path):
    w = tmp_path / "workload"
    _write(w / "sat-0-0" / "eo-chunks.csv", ["seq", "capture_start_s", "capture_end_s", "bytes"],
           [[0, 0, 10, 1000], [1, 10, 20, 1000], [2, 20, 25, 500]])
    (w / "sat-0-0" / "eo-producer.json").write_text(json.dumps({"mode": "raw", "backlog_bytes": 500}))
    _write(w / "sat-0-0" / "eo-backlog.csv", ["t_s", "backlog_bytes", "backlog_chunks"], [[10, 1000, 1], [30, 0, 0]])
    _write(w / "gs" / "eo-ground.csv", ["source", "seq", "capture_start_s", "capture_end_s", "arrival_s", "bytes",
                                        "factor", "sender", "station"],
           [["sat-0-0", 0, 0, 10, 40, 1000, 1, "sat-0-0", "gs"], ["sat-0-0", 1, 10, 20, 60, 1000, 1, "sat-0-0", "gs"]])
    (w / "gs" / "eo-ground.json").write_text(json.dumps({"duplicates": 0}))
    s = eo.summary(eo.read_run(tmp_path))
    p = s["producers"]["sat-0-0"]
    assert (p["produced_bytes"], p["downlinked_bytes"], p["backlog_end_bytes"]) == (2500, 2000, 500)
    assert s["age_p50_s"] == 35.0 and s["mode"] == "raw"
    (tmp_path / "run.json").write_text("{}")
    html = build_report(tmp_path).read_text()
    assert "Earth observation" in html and (tmp_path / "plots" / "eo.png").exists()
    assert len((tmp_path / "eo.csv").read_text().splitlines()) == 3
