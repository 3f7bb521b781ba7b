"""Fixtures for the tests that run inside the VM: two veth pairs between two namespaces, a UDP echoer, a prober.

Naming: namespaces ``lnvm-a-<pid>`` and ``lnvm-b-<pid>``, joined by the veth ends ``a0`` (in a, 10.200.0.0/31)
and ``b0`` (in b, 10.200.0.1/31), the pair the tests put netem on, and by ``a1`` (10.200.0.2/31) and ``b1``
(10.200.0.3/31), a twin that never gets a qdisc: the bare-veth baseline, measured interleaved with the netem
pair so that both see the same host load. One echoer in b answers on both. The addresses exist only inside
these namespaces of the guest (which has no network card at all). Everything made here is removed by the
fixture that made it, by name or by its own PID.
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
    """One veth pair between two namespaces, probed from ``near`` to the echoer on ``far``.

    ``tc(end, ...)`` runs tc in the namespace holding that end."""

    ns: dict[str, str]      # end name -> namespace
    addr: dict[str, str]    # end name -> address
    near: str = "a0"
    far: str = "b0"

    def tc(self, end: str, *args: str) -> str:
        return sh("tc", "-n", self.ns[end], *args)

    def netem(self, end: str, verb: str, params: str) -> None:
        """``tc qdisc <verb> dev <end> root netem <params>`` with verb add or change (never delete + add)."""
        self.tc(end, "qdisc", verb, "dev", end, "root", "netem", *params.split())

    def root_qdisc(self, end: str) -> dict:
        """The root qdisc of ``end`` as tc's JSON (with statistics)."""
        qdiscs = json.loads(self.tc(end, "-j", "-s", "qdisc", "show", "dev", end))
        return next(q for q in qdiscs if q.get("root"))

    def probe(self, count: int, interval_s: float = 0.010, wait_s: float = 3.0, one_at_a_time=False,
              jitter: float = 0.0) -> dict:
        """UDP echo RTT statistics (see udp_rtt.py) from end ``near`` to the echoer on ``far``."""
        more = (["--one-at-a-time"] if one_at_a_time else []) + ["--jitter", str(jitter)]
        out = sh("ip", "netns", "exec", self.ns[self.near], sys.executable, str(UDP_RTT), "probe",
                 "--to", self.addr[self.far], "--port", str(ECHO_PORT), "--count", str(count),
                 "--interval", str(interval_s), "--wait", str(wait_s), *more)
        return json.loads(out)


PAIRS = {"netem": ("a0", "b0"), "bare": ("a1", "b1")}
ADDRESSES = {"a0": "10.200.0.0", "b0": "10.200.0.1", "a1": "10.200.0.2", "b1": "10.200.0.3"}


@pytest.fixture(scope="session")
def veth_pairs():
    """{"netem": the a0-b0 pair, "bare": the a1-b1 twin}, both between the same two namespaces."""
    pid = os.getpid()
    ns = {"a": f"lnvm-a-{pid}", "b": f"lnvm-b-{pid}"}
    ns_of = {end: ns[end[0]] for end in ADDRESSES}
    made = []
    try:
        for name in ns.values():
            sh("ip", "netns", "add", name)
            made.append(name)
        for near, far in PAIRS.values():
            sh("ip", "link", "add", near, "netns", ns_of[near], "type", "veth", "peer", far, "netns", ns_of[far])
        for end, addr in ADDRESSES.items():
            sh("ip", "-n", ns_of[end], "addr", "add", f"{addr}/31", "dev", end)
            sh("ip", "-n", ns_of[end], "link", "set", end, "up")
        for name in ns.values():
            sh("ip", "-n", name, "link", "set", "lo", "up")
        yield {role: VethPair(ns={e: ns_of[e] for e in ends}, addr={e: ADDRESSES[e] for e in ends},
                              near=ends[0], far=ends[1]) for role, ends in PAIRS.items()}
    finally:
        for name in made:  # the veth pairs go with their namespaces
            subprocess.run(["ip", "netns", "del", name])


@pytest.fixture(scope="session")
def veth_pair(veth_pairs):
    """The pair the tests put netem on (a0-b0)."""
    return veth_pairs["netem"]


@pytest.fixture(scope="session")
def bare_pair(veth_pairs):
    """The twin pair that never gets a qdisc (a1-b1): the guest's own cost, without netem."""
    return veth_pairs["bare"]


@pytest.fixture(scope="session")
def echoer(veth_pair):
    """The UDP echoer in b's namespace (on b0 and b1), running until the session ends (then stopped by its PID)."""
    proc = subprocess.Popen(["ip", "netns", "exec", veth_pair.ns["b0"], sys.executable, str(UDP_RTT), "echo",
                             "--bind", "0.0.0.0", "--port", str(ECHO_PORT), "--lifetime", "900"],
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
