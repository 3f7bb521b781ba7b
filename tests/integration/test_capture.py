"""Packet capture in a live run of `mini`, as root: pcap files read back with scapy, judged against the plan.

What a capture proves is checked, not only that a file exists: the same probe packet seen at both ends of an
inter-satellite link is stamped one light time apart (the plan's delay for that link at that emulated instant),
within the delay-line relays' own release lateness measured in the same run; a forced outage of the link shows no
packet for as long as it lasts; the wall-to-emulated mapping of ``capture.json`` turns a packet's stamp into the
emulated time its sender wrote inside it (the probes carry their CLOCK_MONOTONIC send stamp); a capture with
``start_s``/``stop_s`` holds packets of that window only. ``lasernet capture`` against a running run writes a
complete file on Ctrl-C and refuses unknown nodes, interfaces and runs in one line with exit code 2; ``lasernet
down`` stops a scenario's tcpdump after the driver was killed with SIGKILL.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import yaml

import lasernet
from lasernet.emulation.capture import emulated_s
from lasernet.measure.probes import HEADER, MAGIC, MISSING
from lasernet.routing import query
from lasernet.spec.scenario import parse_scenario

from ..conftest import TOPOLOGIES

scapy_all = pytest.importorskip("scapy.all")

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root to create network namespaces (CI runs as root)", allow_module_level=True)

LINKS = os.environ.get("LASERNET_LINKS", "auto")
SCENARIO = TOPOLOGIES / (os.environ.get("LASERNET_TEST_SCENARIO", "mini") + ".yaml")
_PROBES = lasernet.load_scenario(SCENARIO).probes
SRC, DST = _PROBES[0].src, _PROBES[0].dst


def _with_capture(captures: list[dict], probes=True):
    """The test scenario with a ``capture:`` section (read by the scenario's own parser, as from a file)."""
    doc = yaml.safe_load(SCENARIO.read_text())
    doc["capture"] = captures
    if not probes:
        doc.pop("probes", None)
    return parse_scenario(doc, SCENARIO)


def _isl_on_path() -> tuple[str, str]:
    """An inter-satellite link in the middle of SRC's path to DST at the start (the plan's oracle, offline)."""
    p = query.path(query.plan_at(lasernet.load_scenario(SCENARIO), 0), SRC, DST)
    assert len(p.nodes) >= 5, p.nodes
    return p.nodes[2], p.nodes[3]


def _probe_packets(path) -> list[tuple[bytes, object, tuple, object]]:
    """(IP packet bytes, pcap stamp, probe header, scapy packet) of every lasernet probe datagram in a pcap file."""
    out = []
    for pkt in scapy_all.rdpcap(str(path)):
        if scapy_all.UDP not in pkt:
            continue
        payload = bytes(pkt[scapy_all.UDP].payload)
        if len(payload) >= HEADER.size and payload[:4] == MAGIC:
            out.append((bytes(pkt[scapy_all.IP]), pkt.time, HEADER.unpack_from(payload), pkt))
    return out


def _link_delay_s(tl, offset_s: float, a: str, b: str, t_s: np.ndarray) -> np.ndarray:
    """The plan's one-way light time of link a~b at emulated times ``t_s`` (interpolated between plan steps)."""
    ia, ib = tl.node_names.index(a), tl.node_names.index(b)
    li = int(np.flatnonzero(((tl.links.a == ia) & (tl.links.b == ib)) | ((tl.links.a == ib) & (tl.links.b == ia)))[0])
    return np.array([tl.state_at(t - offset_s)[1][li] for t in t_s])


def test_link_capture_shows_light_time_between_its_ends_and_nothing_during_an_outage(tmp_path):
    """Both ends of an ISL on a probed path: each probe packet is stamped the link's light time apart, the forced
    outage window holds no packet, and the stamps map to the emulated times the probes' senders wrote in them."""
    from lasernet.emulation.links import choose_backend

    if choose_backend(LINKS) != "delayline":
        pytest.skip("netem takes a link's delay on the sender's egress queue, before tcpdump sees the packet leave: "
                    "both ends' stamps come after the delay (lasernet.emulation.capture)")
    a, b = _isl_on_path()
    sc = _with_capture([{"name": "isl", "link": [a, b], "filter": "udp"},
                        {"name": "src", "node": SRC, "filter": "udp", "start_s": 2, "stop_s": 6}])
    run = tmp_path / "run"
    with lasernet.Emulation(sc, duration_s=16, run_dir=run, links=LINKS) as emu:
        tl, offset = emu.timeline_at(1.0)
        emu.run(7.0)
        emu.override(a, b, up=False, for_s=3.0 * emu.speed)
        emu.run(7.0)
        late_s = getattr(emu.backend, "release_late_s", lambda: 0.0)()
        backdate_s = getattr(emu.backend, "backdate_max_s", lambda: 0.0)()
        tick_max_s = max(t.cost_s for t in emu.ticks)
        mono_to_s, speed = emu.mono_to_s, emu.speed
    doc = json.loads((run / "capture.json").read_text())
    mapping = doc["clock"]
    files = {(f["name"], f["node"]): f for f in doc["files"]}
    assert set(files) == {("isl", a), ("isl", b), ("src", SRC)}
    assert files[("isl", a)]["interface"] == b and files[("isl", b)]["interface"] == a  # named after the peer
    assert all(f["exit_code"] == 0 and f["dropped_by_kernel"] == 0 for f in doc["files"]), doc["files"]
    state = json.loads((run / "state.json").read_text())
    assert {c["node"] for c in state["captures"]} == {a, b, SRC}

    # The same IP packet at both ends: the later stamp minus the earlier is the link's one-way delay.
    at_a = {key: (stamp, hdr) for key, stamp, hdr, _ in _probe_packets(run / files[("isl", a)]["file"])}
    at_b = {key: (stamp, hdr) for key, stamp, hdr, _ in _probe_packets(run / files[("isl", b)]["file"])}
    both = sorted(set(at_a) & set(at_b), key=lambda k: at_a[k][0])
    assert len(both) >= 200, (len(at_a), len(at_b), len(both))
    t_first = np.array([emulated_s(min(at_a[k][0], at_b[k][0]), mapping) for k in both])
    measured = np.array([float(abs(at_b[k][0] - at_a[k][0])) for k in both])
    planned = _link_delay_s(tl, offset, a, b, t_first)
    err = measured - planned
    allowed_s = 50e-6 + 2 * late_s
    print(f"{a}~{b}: {len(both)} probe packets seen at both ends; planned one-way {planned.mean() * 1e3:.3f} ms; "
          f"measured - planned median {np.median(err) * 1e6:+.1f} us, p1 {np.percentile(err, 1) * 1e6:+.1f} us, "
          f"p99 {np.percentile(err, 99) * 1e6:+.1f} us; relays {late_s * 1e6:.1f} us late on average: allowed "
          f"|median| {allowed_s * 1e6:.1f} us; back-dated by at most {backdate_s * 1e6:.1f} us")
    assert abs(np.median(err)) <= allowed_s
    # Faster than light only by the relay's own timing error: a frame that woke it is back-dated by its learnt
    # wake-up latency (lasernet.net.delayline.relay), so it arrives early by at most that estimate (minus the
    # wake-up's true latency), which the relays report at its largest; 50 us for the two ends' capture stamps.
    assert np.percentile(err, 1) >= -(50e-6 + backdate_s)

    # The forced outage: no packet at either end while the link was down (events.csv says when, emulated time).
    events = [r for r in csv.DictReader((run / "events.csv").open())
              if r["kind"] == "isl" and {r["a"], r["b"]} == {a, b}]
    down = [float(r["t_s"]) for r in events if r["event"] == "down" and r["cause"] == "override"]
    up_again = [float(r["t_s"]) for r in events if r["event"] == "up" and down and float(r["t_s"]) > down[0]]
    assert down and up_again, events
    t_down, t_up = down[0], up_again[0]
    stamps = np.array([emulated_s(s, mapping) for s, _ in [*at_a.values(), *at_b.values()]])
    margin_s = tick_max_s * speed  # the state a tick records is applied within that tick
    inside = stamps[(stamps > t_down + margin_s) & (stamps < t_up)]
    before = stamps[(stamps > t_down - 1.0) & (stamps <= t_down)]
    after = stamps[(stamps >= t_up) & (stamps < t_up + 1.0)]
    print(f"outage {t_down:.3f}-{t_up:.3f} s: {len(inside)} packets inside (after a margin of {margin_s * 1e3:.1f} "
          f"ms), {len(before)} in the second before, {len(after)} in the second after")
    assert abs((t_up - t_down) - 3.0) <= 2 * emu.tick_s * speed
    assert len(inside) == 0 and len(before) >= 10 and len(after) >= 10

    # The mapping: a probe leaving SRC is stamped (in emulated time) just after its sender's own monotonic stamp.
    lag = []
    for _key, stamp, (_, _, send_ns, echo_ns, reply_ns), pkt in _probe_packets(run / files[("src", SRC)]["file"]):
        cooked = pkt.getlayer(scapy_all.CookedLinuxV2) or pkt.getlayer(scapy_all.CookedLinux)  # interface "any"
        if cooked.pkttype == 4:  # outgoing
            sent_ns = send_ns if echo_ns == MISSING else reply_ns  # a probe, or an echo SRC answers
            lag.append(emulated_s(stamp, mapping) - float(mono_to_s(np.array([sent_ns]))[0]))
    lag = np.array(lag)
    t_src = np.array([emulated_s(s, mapping) for _, s, _, _ in _probe_packets(run / files[("src", SRC)]["file"])])
    print(f"{SRC}: {len(lag)} outgoing probes; pcap emulated time - sender's stamp: median {np.median(lag) * 1e6:.1f} "
          f"us, p1 {np.percentile(lag, 1) * 1e6:.1f} us, p99 {np.percentile(lag, 99) * 1e6:.1f} us; window "
          f"{t_src.min():.3f}-{t_src.max():.3f} s for start_s 2, stop_s 6")
    assert len(lag) >= 50
    assert np.percentile(lag, 1) >= -5e-6 and np.median(lag) <= 1e-3
    assert 2.0 <= t_src.min() <= 2.0 + margin_s + 0.3 and 6.0 - 0.3 <= t_src.max() <= 6.0 + margin_s + 0.1


def _cli(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lasernet.cli", *args], capture_output=True, text=True, timeout=60,
                          **kwargs)


def _pcap_is_whole(path) -> int:
    """The number of records if the file is a pcap whose records end exactly at its end (none cut short), else -1."""
    data = path.read_bytes()
    if len(data) < 24 or data[:4] not in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):  # nanosecond pcap magic
        return -1
    order = "<" if data[:4] == b"\x4d\x3c\xb2\xa1" else ">"
    at, n = 24, 0
    while at + 16 <= len(data):
        incl = int.from_bytes(data[at + 8:at + 12], "little" if order == "<" else "big")
        at += 16 + incl
        n += 1
    return n if at == len(data) else -1


def test_capture_command_writes_a_whole_file_on_ctrl_c_and_refuses_bad_targets_in_one_line(tmp_path):
    """`lasernet capture SRC:IF` while a run is up: SIGINT (Ctrl-C) ends it with every record whole, its packets
    within the emulated window the sidecar's mapping gives; unknown node, interface, run or a bad filter: exit 2,
    one line, no file."""
    sc = lasernet.load_scenario(SCENARIO)
    with lasernet.Emulation(sc, duration_s=20, run_dir=tmp_path / "run", links=LINKS) as emu:
        emu.run(0.5)
        nodes, _ = emu.path(SRC, DST)
        link = emu.applied.by_pair.get((emu.router_index(SRC), emu.router_index(nodes[1]))) or \
            emu.applied.by_pair[(emu.router_index(nodes[1]), emu.router_index(SRC))]
        interface = link.ifname_a if link.a == emu.router_index(SRC) else link.ifname_b
        run_id = emu.run_id
        bad = {"node": ("no-such-node", "unknown node"), "interface": (f"{SRC}:nope0", "has no interface"),
               "run": (SRC, "no running emulation"), "filter": (SRC, "tcpdump on")}
        for what, (target, words) in bad.items():
            out = tmp_path / f"bad-{what}.pcap"
            args = ["capture", target, "-w", str(out), "--run", "no-such-run" if what == "run" else run_id]
            if what == "filter":
                args += ["-f", "udp port"]
            res = _cli(*args)
            line = res.stderr.strip()
            print(f"{what}: exit {res.returncode}: {line}")
            assert res.returncode == 2 and words in line and len(line.splitlines()) == 1, (what, res)
            assert not out.exists() and not out.with_name(out.name + ".json").exists()
        pcap = tmp_path / "src.pcap"
        cli = subprocess.Popen([sys.executable, "-m", "lasernet.cli", "capture", f"{SRC}:{interface}", "-f", "udp",
                                "-w", str(pcap), "--run", run_id], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
        deadline = time.monotonic() + 30
        while not pcap.with_name("src.pcap.json").exists():
            assert cli.poll() is None and time.monotonic() < deadline, cli.communicate()
            emu.run(0.1)
        emu.run(3.0)
        cli.send_signal(signal.SIGINT)
        t_stop = emu.now_s()
        out, err = cli.communicate(timeout=20)
        t_end = emu.now_s()
        print(out.strip())
    assert cli.returncode == 0, err
    records = _pcap_is_whole(pcap)
    side = json.loads(pcap.with_name("src.pcap.json").read_text())
    assert side["node"] == SRC and side["interface"] == interface and side["filter"] == "udp"
    stamps = [emulated_s(stamp, side["clock"]) for _, stamp, _, _ in _probe_packets(pcap)]
    assert stamps, (records, side, out, err, emu.path(SRC, DST))
    print(f"{SRC}:{interface}: {records} whole records, {len(stamps)} probe packets, emulated "
          f"{min(stamps):.3f}-{max(stamps):.3f} s (capture from {side['started_s']:.3f} s, SIGINT at {t_stop:.3f} s, "
          f"the command returned at {t_end:.3f} s)")
    assert records == len(scapy_all.rdpcap(str(pcap))) >= 60  # mini probes at 20 Hz each way for 3 s
    assert f"{records} packets" in out
    # started_s is taken before tcpdump is launched (its "listening" line is seen later, polled: 40 ms and more
    # under load, which once put the first packet before a started_s taken then)
    assert side["started_s"] <= min(stamps) and side["started_s"] <= side["listening_s"]
    assert t_stop - 0.5 <= max(stamps) <= t_end


DRIVER = textwrap.dedent("""
    import json, sys, yaml
    import lasernet
    from lasernet.spec.scenario import parse_scenario
    from pathlib import Path

    scenario_path, captures, run_dir = Path(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
    doc = yaml.safe_load(scenario_path.read_text())
    doc["capture"] = captures
    with lasernet.Emulation(parse_scenario(doc, scenario_path), duration_s=120, run_dir=run_dir,
                            links=sys.argv[4]) as emu:
        emu.run(120)
""")


def test_down_stops_a_scenarios_tcpdump_after_the_driver_was_killed(tmp_path):
    """SIGKILL the driver while its capture runs: the state file lists the tcpdump; `lasernet down` stops it and the
    pcap file it wrote (packet by packet) is whole."""
    from lasernet.net.procs import is_zombie, start_time

    run = tmp_path / "run"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    captures = [{"name": "src", "node": SRC, "filter": "udp"}]
    driver = subprocess.Popen([sys.executable, str(script), str(SCENARIO), json.dumps(captures), str(run), LINKS],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()
            state = json.loads((run / "state.json").read_text()) if (run / "state.json").exists() else {}
            if state.get("captures"):
                break
            time.sleep(0.2)
        time.sleep(2.0)  # packets go into the file
        tcpdump = state["captures"][0]
        assert start_time(tcpdump["pid"]) == tcpdump["start"]
    finally:
        driver.kill()
        driver.wait()
    res = _cli("down", state["run_id"])
    print(res.stdout.strip())
    assert res.returncode == 0, res.stderr
    assert is_zombie(tcpdump["pid"])  # gone (or exited, and its new parent has not reaped it yet)
    records = _pcap_is_whole(run / "capture" / "src.pcap")
    print(f"after SIGKILL and down: tcpdump {tcpdump['pid']} gone, {records} whole records in src.pcap")
    assert records >= 20
