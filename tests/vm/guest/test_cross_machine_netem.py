"""Inside the VM: a netem link that crosses two machines, with 2 ms between them, keeps its emulated RTT.

Two network namespaces of the guest play two machines of a cluster, joined by a veth pair whose ends carry
``netem delay 2ms`` each (the substrate: 2 ms one way between the machines). In each machine a node
namespace holds one end of a 10 ms link, built as a cluster agent builds its half (``cross_half.py``: netem
on the node's veth end, a bridge, a VXLAN device to the other machine; the agent's own substrate measurement).
Then the link's emulated RTT is 20 ms, and what the substrate adds must be taken off. Three settings:

- **one machine**: the substrate's netem at 0 ms, the link at 10 ms per half, nothing taken off: the link as it
  is on one machine, with the guest's own cost of this path (Python echo, bridges, VXLAN, netem's timers, all
  slow under TCG): the baseline the other two are judged against;
- **compensated**: the substrate at 2 ms, each half applying 10 ms less the measured one-way substrate;
- **uncompensated**: the substrate at 2 ms, nothing taken off: about +4 ms, the error compensation removes.

Measured as in test_netem.py: interleaved rounds (so that host load hits all three alike), judged at the
10th percentile (netem's delays are floors; load only adds). The compensated error, p10(compensated) -
p10(one machine), must be within 0.5 ms, the issue's bound. The two machines' measurements of the substrate
(A to B and B to A cross the same netem) are recorded with their disagreement: what one sees more than the
other is the estimator's own noise under this run's load, the first thing to read when this test fails.
(Judged instead against a bare path with no delay at all, the error came out -0.3 ms on a quiet host and
-0.9 ms with one host core busy: the bare path has none of netem's timer wake-ups, which under TCG cost a few
tenths of a millisecond each, so that baseline was not the same path.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HALF = Path(__file__).with_name("cross_half.py")
UDP_RTT = Path(__file__).resolve().parents[1] / "udp_rtt.py"
SUBSTRATE_MS = 2.0
LINK_MS = 10.0
ROUNDS = 6
PROBES = 40       # per round and setting
ERROR_MS = 0.5
ECHO_PORT = 7011
UNDERLAY = {"A": ("xa", "10.201.0.1"), "B": ("xb", "10.201.0.2")}
NODE_IP = {"A": "10.78.0.0", "B": "10.78.0.1"}


class Half:
    """One machine's half process (cross_half.py), spoken to one JSON line at a time."""

    def __init__(self, machine_ns: str, end: int, bind_ip: str, node_pid: int):
        repo = Path(__file__).resolve().parents[3]
        self.proc = subprocess.Popen(["ip", "netns", "exec", machine_ns, sys.executable, str(HALF), str(end), bind_ip,
                                      str(node_pid)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)})
        self.hello = self._read()

    def ask(self, **msg) -> dict:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            pytest.fail(f"cross_half.py exited {self.proc.wait()}")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(30)


@pytest.fixture(scope="module")
def cross_link():
    """Two machine namespaces with 2 ms between them, a node in each, the link's two halves joined."""
    pid = os.getpid()
    ns = {m: f"lnxm-{m.lower()}-{pid}" for m in "AB"}
    made, nodes, halves = [], {}, {}
    try:
        for m in "AB":
            sh("ip", "netns", "add", ns[m])
            made.append(ns[m])
            sh("ip", "-n", ns[m], "link", "set", "lo", "up")
        sh("ip", "link", "add", "xa", "netns", ns["A"], "type", "veth", "peer", "xb", "netns", ns["B"])
        for m, (dev, ip) in UNDERLAY.items():
            sh("ip", "-n", ns[m], "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns[m], "link", "set", dev, "up")
            sh("tc", "-n", ns[m], "qdisc", "add", "dev", dev, "root", "netem", "delay", f"{SUBSTRATE_MS}ms")
        for m in "AB":  # a node: a namespace of its own, held by a process started in its machine
            nodes[m] = subprocess.Popen(["ip", "netns", "exec", ns[m], "unshare", "--net", "sleep", "900"])
        _wait_for_own_netns(nodes)
        for end, m in enumerate("AB"):
            halves[m] = Half(ns[m], end, UNDERLAY[m][1], nodes[m].pid)
        for m, other in (("A", "B"), ("B", "A")):
            halves[m].ask(op="connect", ip=UNDERLAY[other][1], port=halves[other].hello["port"])
        for m in "AB":
            node = str(nodes[m].pid)
            ifname = "eth-b" if m == "A" else "eth-a"
            sh("nsenter", "-t", node, "-n", "ip", "addr", "add", f"{NODE_IP[m]}/31", "dev", ifname)
            sh("nsenter", "-t", node, "-n", "ip", "link", "set", "lo", "up")
        yield {"ns": ns, "nodes": nodes, "halves": halves}
    finally:
        for half in halves.values():
            half.close()
        for proc in nodes.values():
            proc.terminate()
            proc.wait(10)
        for name in made:
            subprocess.run(["ip", "netns", "del", name])


def sh(*argv: str) -> str:
    """Run one command; fail the test with its stderr if it fails."""
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"{' '.join(argv)} exited {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def _wait_for_own_netns(nodes: dict) -> None:
    """Until each node process runs ``sleep``: unshare has made its namespace and exec'd it."""
    import time

    for _ in range(400):
        if all(Path(f"/proc/{p.pid}/comm").read_text().strip() == "sleep" for p in nodes.values()):
            return
        time.sleep(0.05)
    pytest.fail("node namespaces did not appear")


def _set(link, *, substrate_ms: float, link_ms: float, compensate_s: float) -> None:
    for m, (dev, _ip) in UNDERLAY.items():
        sh("tc", "-n", link["ns"][m], "qdisc", "change", "dev", dev, "root", "netem", "delay", f"{substrate_ms}ms")
    for half in link["halves"].values():
        assert half.ask(op="apply", up=True, delay_s=link_ms / 1e3, substrate_s=compensate_s)["ok"]


def _probe(link, count: int) -> list[float]:
    out = sh("nsenter", "-t", str(link["nodes"]["A"].pid), "-n", sys.executable, str(UDP_RTT), "probe", "--to",
             NODE_IP["B"], "--port", str(ECHO_PORT), "--count", str(count), "--interval", "0.010", "--wait", "3",
             "--jitter", "0.5")
    m = json.loads(out)
    assert m["lost"] == 0, m
    return m["rtt_ms"]


def _p10(values: list[float]) -> float:
    values = sorted(values)
    return values[int(0.1 * (len(values) - 1))]


@pytest.fixture(scope="module")
def rtts(cross_link, record):
    link = cross_link
    halves = link["halves"]
    _set(link, substrate_ms=SUBSTRATE_MS, link_ms=0.0, compensate_s=0.0)
    one_way = [halves[m].ask(op="measure", ip=UNDERLAY[o][1], echo_port=halves[o].hello["echo_port"])
               for m, o in (("A", "B"), ("B", "A"))]
    assert all(w["one_way_s"] is not None for w in one_way), one_way
    substrate_s = min(one_way[0]["one_way_s"], one_way[1]["one_way_s"])  # as the coordinator takes it
    disagreement_ms = abs(one_way[0]["one_way_s"] - one_way[1]["one_way_s"]) * 1e3
    echo = subprocess.Popen(["nsenter", "-t", str(link["nodes"]["B"].pid), "-n", sys.executable, str(UDP_RTT),
                             "echo", "--bind", "0.0.0.0", "--port", str(ECHO_PORT), "--lifetime", "600"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert echo.stdout.readline().strip() == "ready"
        _probe(link, 20)  # warm-up: neighbour resolution, first exec
        settings = {"one machine": dict(substrate_ms=0.0, link_ms=LINK_MS, compensate_s=0.0),
                    "compensated": dict(substrate_ms=SUBSTRATE_MS, link_ms=LINK_MS, compensate_s=substrate_s),
                    "uncompensated": dict(substrate_ms=SUBSTRATE_MS, link_ms=LINK_MS, compensate_s=0.0)}
        names = list(settings)
        samples = {name: [] for name in names}
        for r in range(ROUNDS):
            for name in names[r % 3:] + names[:r % 3]:
                _set(link, **settings[name])
                samples[name] += _probe(link, PROBES)
    finally:
        echo.terminate()
        echo.wait(10)
    p10 = {name: _p10(v) for name, v in samples.items()}
    result = {"substrate_measured_ms": round(substrate_s * 1e3, 3), "substrate_set_ms": SUBSTRATE_MS,
              "substrate_disagreement_ms": round(disagreement_ms, 3),
              **{f"p10_{k.replace(' ', '_')}_ms": round(v, 3) for k, v in p10.items()},  # numbers only: the
              # host's summary prints every value as a float
              "error_compensated_ms": round(p10["compensated"] - p10["one machine"], 3),
              "error_uncompensated_ms": round(p10["uncompensated"] - p10["one machine"], 3)}
    record("cross-machine netem, 2 ms between machines", result)
    return result


def test_a_halves_node_end_is_shaped_by_netem_and_its_mtu_leaves_room_for_vxlan(cross_link):
    out = sh("nsenter", "-t", str(cross_link["nodes"]["A"].pid), "-n", "tc", "qdisc", "show", "dev", "eth-b")
    assert "netem" in out, out
    link = json.loads(sh("nsenter", "-t", str(cross_link["nodes"]["A"].pid), "-n", "ip", "-j", "link", "show",
                         "eth-b"))[0]
    assert link["mtu"] == 1500 - 50, link  # the underlay veth's 1500 less VXLAN over IPv4


def test_compensation_brings_the_rtt_of_a_link_across_machines_back_to_its_emulated_value(rtts):
    assert rtts["p10_one_machine_ms"] >= 2 * LINK_MS, rtts  # netem's floor: the halves do delay
    assert rtts["error_uncompensated_ms"] > 2 * SUBSTRATE_MS - 1.0, rtts  # the substrate is there to remove
    assert abs(rtts["error_compensated_ms"]) <= ERROR_MS, rtts


def test_a_cross_machine_link_down_shows_no_carrier_on_both_node_ends_and_comes_back(cross_link):
    halves = cross_link["halves"]
    for half in halves.values():
        half.ask(op="apply", up=False, delay_s=0.0, substrate_s=0.0)
    for m, ifname in (("A", "eth-b"), ("B", "eth-a")):
        line = sh("nsenter", "-t", str(cross_link["nodes"][m].pid), "-n", "ip", "-br", "link", "show", ifname)
        assert "NO-CARRIER" in line or "LOWER_UP" not in line, line
    for half in halves.values():
        half.ask(op="apply", up=True, delay_s=0.0, substrate_s=0.0)
    import time

    for _ in range(100):
        lines = [sh("nsenter", "-t", str(cross_link["nodes"][m].pid), "-n", "ip", "-br", "link", "show", i)
                 for m, i in (("A", "eth-b"), ("B", "eth-a"))]
        if all("LOWER_UP" in line for line in lines):
            return
        time.sleep(0.05)
    pytest.fail(f"carrier did not come back: {lines}")
