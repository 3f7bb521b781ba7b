"""Fixtures for the tests that run inside the VM: a veth pair between two namespaces, a UDP echoer, a prober.

Naming: namespaces ``lnvm-a-<pid>`` and ``lnvm-b-<pid>``, joined by the veth ends ``a0`` (in a, 10.200.0.0/31)
and ``b0`` (in b, 10.200.0.1/31). The addresses exist only inside these namespaces of the guest (which has no
network card at all). Everything made here is removed by the fixture that made it, by name or by its own PID.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

UDP_RTT = Path(__file__).resolve().parents[1] / "udp_rtt.py"
ECHO_PORT = 7007


def pytest_collection_modifyitems(items):
    in_guest = os.environ.get("LASERNET_VM_GUEST") == "1"
    for item in items:
        item.add_marker(pytest.mark.vm)
        if not in_guest:
            item.add_marker(pytest.mark.skip(reason="runs inside the VM: pytest tests/vm, or "
                                                    "scripts/vmtest.sh -- python -m pytest tests/vm/guest"))


def sh(*argv: str) -> str:
    """Run one command; fail the test with its stderr if it fails."""
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"{' '.join(argv)} exited {r.returncode}: {r.stderr.strip()}")
    return r.stdout


@dataclass
class VethPair:
    """Two namespaces joined by one veth pair; ``tc(end, ...)`` runs tc in the namespace holding that end."""

    ns: dict[str, str]      # end name -> namespace
    addr: dict[str, str]    # end name -> address
    bare: dict | None = None  # RTT statistics without any qdisc, once measured

    def tc(self, end: str, *args: str) -> str:
        return sh("tc", "-n", self.ns[end], *args)

    def netem(self, end: str, verb: str, params: str) -> None:
        """``tc qdisc <verb> dev <end> root netem <params>`` with verb add or change (never delete + add)."""
        self.tc(end, "qdisc", verb, "dev", end, "root", "netem", *params.split())

    def root_qdisc(self, end: str) -> dict:
        """The root qdisc of ``end`` as tc's JSON (with statistics)."""
        qdiscs = json.loads(self.tc(end, "-j", "-s", "qdisc", "show", "dev", end))
        return next(q for q in qdiscs if q.get("root"))

    def probe(self, count: int, interval_s: float = 0.010, wait_s: float = 3.0, one_at_a_time=False) -> dict:
        """UDP echo RTT statistics (see udp_rtt.py) from end a0 to the echoer on b0."""
        more = ["--one-at-a-time"] if one_at_a_time else []
        out = sh("ip", "netns", "exec", self.ns["a0"], sys.executable, str(UDP_RTT), "probe",
                 "--to", self.addr["b0"], "--port", str(ECHO_PORT), "--count", str(count),
                 "--interval", str(interval_s), "--wait", str(wait_s), *more)
        return json.loads(out)


@pytest.fixture(scope="session")
def veth_pair():
    pid = os.getpid()
    pair = VethPair(ns={"a0": f"lnvm-a-{pid}", "b0": f"lnvm-b-{pid}"},
                    addr={"a0": "10.200.0.0", "b0": "10.200.0.1"})
    made = []
    try:
        for ns in pair.ns.values():
            sh("ip", "netns", "add", ns)
            made.append(ns)
        sh("ip", "link", "add", "a0", "netns", pair.ns["a0"], "type", "veth", "peer", "b0", "netns", pair.ns["b0"])
        for end, ns in pair.ns.items():
            sh("ip", "-n", ns, "addr", "add", f"{pair.addr[end]}/31", "dev", end)
            sh("ip", "-n", ns, "link", "set", end, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield pair
    finally:
        for ns in made:  # the veth pair goes with its namespaces
            subprocess.run(["ip", "netns", "del", ns])


@pytest.fixture(scope="session")
def echoer(veth_pair):
    """The UDP echoer in b0's namespace, running until the session ends (then stopped by its PID)."""
    proc = subprocess.Popen(["ip", "netns", "exec", veth_pair.ns["b0"], sys.executable, str(UDP_RTT), "echo",
                             "--bind", veth_pair.addr["b0"], "--port", str(ECHO_PORT), "--lifetime", "900"],
                            stdout=subprocess.PIPE, text=True)
    try:
        if proc.stdout.readline().strip() != "ready":
            pytest.fail(f"echoer did not start (exit code {proc.wait()})")
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def record():
    """record(name, stats): keep a measurement in $LASERNET_VM_RESULTS/measurements.json for the host's summary."""
    path = Path(os.environ.get("LASERNET_VM_RESULTS", "/tmp")) / "measurements.json"
    measurements: dict[str, dict] = {}

    def keep(name: str, stats: dict) -> None:
        measurements[name] = {k: v for k, v in stats.items() if k != "rtt_ms"}
        path.write_text(json.dumps(measurements, indent=1))
        print(f"{name}: {measurements[name]}")

    return keep
