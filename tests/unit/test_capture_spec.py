"""The scenario's capture: section: every field read, bad input refused in one line naming the field, and the
arithmetic that turns a pcap stamp into emulated seconds (checked against a hand computation)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from decimal import Decimal

import pytest

import lasernet
from lasernet import ScenarioError
from lasernet.emulation.capture import clock_mapping, emulated_s, read_counts, tcpdump_argv
from lasernet.spec.capture import DEFAULT_SNAPLEN, Capture

from ..conftest import TOPOLOGIES

MINI = (TOPOLOGIES / "mini.yaml").read_text().replace("ground/sites.yaml", str(TOPOLOGIES / "ground" / "sites.yaml"))
LASERNET = [sys.executable, "-m", "lasernet.cli"]


def test_no_capture_section_means_no_captures(write_scenario):
    assert lasernet.load_scenario(write_scenario(MINI)).capture == ()


def test_every_capture_field_is_read(write_scenario):
    sc = lasernet.load_scenario(write_scenario(MINI + """
capture:
  - {name: gsl, node: ashburn, interface: sat-5-2, filter: ' udp port 7777 ', start_s: 2, stop_s: 8, snaplen: 128}
  - {name: isl, link: [sat-0-0, sat-0-1]}
  - {name: rack, node: rack-0-0}
"""))
    assert sc.capture == (Capture("gsl", "ashburn", None, "sat-5-2", "udp port 7777", 2.0, 8.0, 128),
                          Capture("isl", None, ("sat-0-0", "sat-0-1"), "any", "", 0.0, None, DEFAULT_SNAPLEN),
                          Capture("rack", "rack-0-0"))


@pytest.mark.parametrize("bad,message", [
    ("{name: x}", "capture[0]: needs exactly one of node: NAME (with interface:) or link: [A, B]"),
    ("{name: x, node: ashburn, link: [sat-0-0, sat-0-1]}", "capture[0]: needs exactly one of"),
    ("{name: x, node: nowhere}", "capture[0].node: unknown node 'nowhere'"),
    ("{name: x, link: [sat-0-0, rack-0-0]}", "capture[0].link[1]: 'rack-0-0' is not a satellite or ground station"),
    ("{name: x, link: [sat-0-0]}", "capture[0].link: must be a pair of node names"),
    ("{name: x, link: [sat-0-0, sat-0-0]}", "capture[0].link: links 'sat-0-0' to itself"),
    ("{name: x, link: [sat-0-0, sat-0-1], interface: eth0}", "capture[0].interface: a link: capture uses"),
    ("{name: x, node: ashburn, interface: 'a b'}", "capture[0].interface: must be an interface name"),
    ("{name: x, node: ashburn, filter: 7}", "capture[0].filter: must be a tcpdump filter expression"),
    ("{name: x, node: ashburn, start_s: 5, stop_s: 4}", "capture[0].stop_s: must be after start_s (5), got 4"),
    ("{name: x, node: ashburn, snaplen: 10}", "capture[0].snaplen: must be between 64 and 262144, got 10"),
    ("{name: X!, node: ashburn}", "capture[0].name: must match [a-z0-9-]+"),
    ("{name: x, node: ashburn, when: 3}", "capture[0].when: unknown field; allowed here"),
    ("{node: ashburn}", "capture[0].name: is required"),
])
def test_bad_captures_are_one_line_errors_naming_the_field(write_scenario, bad, message):
    with pytest.raises(ScenarioError) as err:
        lasernet.load_scenario(write_scenario(MINI + f"\ncapture:\n  - {bad}\n"))
    text = str(err.value)
    assert text.startswith("scenario.yaml: ") and message in text and "\n" not in text


def test_duplicate_capture_names_are_refused_and_exit_2(write_scenario, tmp_path):
    path = write_scenario(MINI + "\ncapture:\n  - {name: a, node: ashburn}\n  - {name: a, node: dublin}\n")
    proc = subprocess.run(LASERNET + ["plan", str(path), "--duration", "1"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: scenario.yaml: capture[1].name: 'a' is used twice; capture names must be unique (they name the pcap "
        "files)"]


def test_a_pcap_stamp_maps_to_emulated_seconds_by_the_runs_epoch_and_speed():
    """At speed 3, a packet stamped 2.5 wall seconds after the wall time of emulated 0 is at emulated 7.5 s; the
    mapping's wall time of emulated 0 is the monotonic epoch plus the clocks' offset read now."""
    r0, mono_ns, r1 = time.time_ns(), time.monotonic_ns(), time.time_ns()  # the wall clock around one instant
    wall0 = mono_ns * 1e-9 - 10.0
    m = clock_mapping(wall0, 3.0, dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    # What the mapping must say: the wall time of that instant, 10 s earlier, within the bracket of the two wall
    # reads (and a microsecond for the float seconds of wall0).
    assert r0 - 10**10 - 1000 <= m["wall0_unix_ns"] <= r1 - 10**10 + 1000
    stamp = Decimal(m["wall0_unix_ns"]) / Decimal(10**9) + Decimal("2.5")  # scapy's exact pkt.time of a nano pcap
    assert emulated_s(stamp, m) == pytest.approx(7.5, abs=1e-9)
    assert emulated_s(float(stamp), m) == pytest.approx(7.5, abs=1e-6)  # a float stamp: ~0.2 us resolution


def test_tcpdump_runs_as_root_with_nanosecond_stamps_and_its_counts_are_read():
    argv = tcpdump_argv("sat-0-1", "/r/x.pcap", "udp port 7", 128)
    assert argv[:3] == ["tcpdump", "-i", "sat-0-1"] and "--time-stamp-precision=nano" in argv and "-U" in argv
    assert argv[argv.index("-Z") + 1] == "root" and argv[-1] == "udp port 7"
    assert read_counts("listening on x\n12 packets captured\n14 packets received by filter\n"
                       "0 packets dropped by kernel\n") == {"captured": 12, "received_by_filter": 14,
                                                            "dropped_by_kernel": 0}


def test_a_link_capture_must_name_two_nodes_the_plan_links(write_scenario):
    """sat-0-0 and sat-0-1 are neighbours in a plane (+Grid: a link); sat-0-0 and sat-4-4 are half the shell apart."""
    from lasernet.emulation.capture import check_links

    sc = lasernet.load_scenario(write_scenario(MINI + "\ncapture:\n  - {name: ok, link: [sat-0-1, sat-0-0]}\n"
                                                      "  - {name: far, link: [sat-0-0, sat-4-4]}\n"))
    tl = lasernet.plan(sc, duration_s=0)
    with pytest.raises(ScenarioError, match=r"capture\[1\]\.link: sat-0-0 and sat-4-4 have no link in the plan"):
        check_links(sc, tl.node_names, tl.links.a, tl.links.b)


def test_a_cluster_run_refuses_a_capture_section_before_creating_anything(write_scenario, tmp_path):
    from lasernet import OptionError

    sc = lasernet.load_scenario(write_scenario(MINI + "\ncapture:\n  - {name: a, node: ashburn}\n"))
    emu = lasernet.Emulation(sc, cluster="127.0.0.1:1", run_dir=tmp_path / "run", duration_s=1)
    with pytest.raises(OptionError, match="--cluster: the scenario has a capture: section, and capture is not "
                                          "supported on a cluster run yet"):
        emu.start()
    emu.stop()
    assert not (tmp_path / "run").exists()
