"""A small delay-line lab for integration tests: namespaces a - b - c joined by relay links, cleaned up exactly.

Layout (names are ``lnt-<pid>-<tag>-<node>``, unique per test process and lab)::

    a [to-b 10.77.0.0/31] --slot 0-- [to-a 10.77.0.1/31] b [to-c 10.77.0.2/31] --slot 1-- [to-b 10.77.0.3/31] c

b forwards; a and c route the far /31 through b; neighbours are permanent (ARP is not what we measure); IPv6 is
off so that only the test's traffic crosses the links. Everything the lab creates (namespaces, relay process,
echo responders) is removed on every exit path, and only what it created.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass, field

import pytest

from lasernet.measure.probes import EchoResponder
from lasernet.net.awake import CpuAwake
from lasernet.net.delayline.client import Relay
from lasernet.net.names import check_netns_name

ECHO_PORT = 7007
PROBE_RT_PRIORITY = 5
ADDR = {("a", 0): "10.77.0.0", ("b", 0): "10.77.0.1", ("b", 1): "10.77.0.2", ("c", 1): "10.77.0.3"}


def sh(*cmd: str) -> str:
    """Run a command; raise with its stderr if it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def netns_names() -> set[str]:
    return {line.split()[0] for line in sh("ip", "netns", "list").splitlines() if line.strip()}


def child_pids() -> set[int]:
    """PIDs of live processes whose parent is this test process."""
    me, found = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] != "Z":
            found.add(int(entry))
    return found


@dataclass
class Lab:
    """Namespaces, relay and echo responders of one lab; ``ns['a']`` is the name of node a's namespace."""
    tag: str
    ns: dict
    relay: Relay
    log_path: str
    echoes: dict = field(default_factory=dict)

    def addr(self, node: str, slot: int) -> str:
        return ADDR[(node, slot)]

    def link_show(self, node: str, ifname: str) -> str:
        return sh("ip", "-n", self.ns[node], "link", "show", ifname)

    def reset(self) -> None:
        """Every link up, no delay, no loss, unlimited rate (committed and applied)."""
        for slot in self.relay.links:
            self.relay.set(slot, delay_s=0.0, loss=0.0, rate_bps=0.0, up=True)
        self.relay.commit()

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()


def _node_setup(name: str, forwarding: bool) -> None:
    sh("ip", "netns", "add", name)
    sh("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
       "net.ipv6.conf.default.disable_ipv6=1", f"net.ipv4.ip_forward={int(forwarding)}")
    sh("ip", "-n", name, "link", "set", "lo", "up")


def _link_setup(lab: Lab, slot: int, left: str, right: str) -> None:
    ends = lab.relay.add_link(lab.ns[left], f"to-{right}", lab.ns[right], f"to-{left}", slot)
    for node, peer, end, peer_end in ((left, right, ends.a, ends.b), (right, left, ends.b, ends.a)):
        ns, ifname = lab.ns[node], f"to-{peer}"
        sh("ip", "-n", ns, "addr", "add", f"{lab.addr(node, slot)}/31", "dev", ifname)
        sh("ip", "-n", ns, "neigh", "replace", lab.addr(peer, slot), "lladdr", peer_end[2], "dev", ifname,
           "nud", "permanent")


@contextlib.contextmanager
def delayline_lab(tag: str, tmp_dir: str, nodes=("a", "b", "c"), links=((0, "a", "b"), (1, "b", "c")),
                  echo_on=("b", "c"), tap_mode="inside"):
    """Build the lab, yield it, and remove exactly what was built (also when building fails half-way)."""
    named = {*nodes, *(node for _slot, left, right in links for node in (left, right))}
    names = {n: f"lnt-{os.getpid()}-{tag}-{n}" for n in sorted(named)}  # only ``nodes`` are created
    for name in names.values():
        check_netns_name(name)
    created: list[str] = []
    log_path = os.path.join(tmp_dir, f"relay-{tag}.log")
    relay = Relay(f"lnt-{os.getpid()}-{tag}", n_slots=64, seed=1234, log_path=log_path, tap_mode=tap_mode)
    lab = Lab(tag=tag, ns=names, relay=relay, log_path=log_path)
    awake = CpuAwake().start()  # as an emulation does: wake-ups in ~20 us, not up to milliseconds
    try:
        for node in nodes:
            name = names[node]
            created.append(name)
            _node_setup(name, forwarding=(node == "b"))
        relay.start()
        for slot, left, right in links:
            _link_setup(lab, slot, left, right)
        if "a" in nodes and "c" in nodes:
            sh("ip", "-n", names["a"], "route", "add", "10.77.0.2/31", "via", ADDR[("b", 0)])
            sh("ip", "-n", names["c"], "route", "add", "10.77.0.0/31", "via", ADDR[("b", 1)])
        for node in echo_on:
            lab.echoes[node] = EchoResponder(names[node], ECHO_PORT, rt_priority=PROBE_RT_PRIORITY).start()
        yield lab
    finally:
        try:
            for echo in lab.echoes.values():
                echo.stop()
            existing = netns_names()
            for name in created:  # namespaces first: their TAPs go in one batch, then the relay closes dead fds
                if name in existing:
                    subprocess.run(["ip", "netns", "del", name], check=False)
        finally:
            relay.stop()
            awake.stop()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """One a - b - c lab shared by a test module (each test resets the link parameters it relies on)."""
    with delayline_lab("m", str(tmp_path_factory.mktemp("lab"))) as built:
        yield built


@pytest.fixture
def fresh(lab):
    """The shared lab with every link reset to up, no delay, no loss, unlimited rate."""
    lab.reset()
    yield lab
    lab.reset()
