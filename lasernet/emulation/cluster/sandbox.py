"""A Ray cluster of "machines" that are network namespaces of this one box: for tests, benchmarks and trying out.

Each machine is a network namespace joined to the others by a Linux bridge (addresses ``<subnet>.k+1/24`` on
its ``eth0``), with a Ray node started inside it by Ray's own command line, as a user forms a real cluster:
``ray start --head`` in the first, ``ray start --address`` in the others. A coordinator run inside the first
namespace (``ip netns exec NAME lasernet up ... --cluster ADDRESS``) then drives agents on all of them.

:class:`NamespaceCluster` removes exactly what it made: every process whose network namespace is one of its own
(Ray's processes and anything left in them; never by name), then the namespaces, the bridge and Ray's temporary
directory. Nothing is sent outside the namespaces and the bridge, which has no address on this host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ...net.procs import processes_in, stop_all

RAY_PORT = 6390


def ray_command() -> Path:
    """The ``ray`` command of this interpreter's environment (installed by scripts/setup.sh)."""
    return Path(sys.executable).with_name("ray")


def _run(*argv, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))}: exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return proc


class NamespaceCluster:
    """``n`` namespaces as machines with a Ray node each (see the module docstring); a context manager."""

    def __init__(self, n: int = 2, tag: str | None = None, subnet: str | None = None, cpus_per_node: int = 1):
        self.n = n
        self.tag = tag or f"lnc{os.getpid() % 100000}"
        self.subnet = subnet or f"10.213.{os.getpid() % 200 + 20}"
        self.cpus_per_node = cpus_per_node
        self.namespaces = [f"{self.tag}-m{k}" for k in range(n)]
        self.bridge = f"{self.tag}br"
        self.temp_dir: str | None = None
        self._made: list[str] = []
        self._bridge_made = False
        self.start_s = 0.0  # how long the Ray nodes took to start

    def ip(self, k: int) -> str:
        return f"{self.subnet}.{k + 1}"

    @property
    def address(self) -> str:
        """The head's GCS address, what ``--cluster`` takes."""
        return f"{self.ip(0)}:{RAY_PORT}"

    def start(self) -> "NamespaceCluster":
        try:
            _run("ip", "link", "add", self.bridge, "type", "bridge")
            self._bridge_made = True
            _run("ip", "link", "set", self.bridge, "up")
            for k, ns in enumerate(self.namespaces):
                _run("ip", "netns", "add", ns)
                self._made.append(ns)
                _run("ip", "link", "add", f"{self.tag}v{k}", "type", "veth", "peer", "name", "eth0", "netns", ns)
                _run("ip", "link", "set", f"{self.tag}v{k}", "master", self.bridge, "up")
                _run("ip", "-n", ns, "addr", "add", f"{self.ip(k)}/24", "dev", "eth0")
                _run("ip", "-n", ns, "link", "set", "eth0", "up")
                _run("ip", "-n", ns, "link", "set", "lo", "up")
            self.temp_dir = tempfile.mkdtemp(prefix=f"{self.tag}-ray-")
            t0 = time.monotonic()
            ray = ray_command()
            _run("ip", "netns", "exec", self.namespaces[0], ray, "start", "--head", f"--node-ip-address={self.ip(0)}",
                 f"--port={RAY_PORT}", "--include-dashboard=false", "--disable-usage-stats",
                 f"--num-cpus={self.cpus_per_node}", f"--temp-dir={self.temp_dir}")
            for k in range(1, self.n):
                _run("ip", "netns", "exec", self.namespaces[k], ray, "start", f"--address={self.address}",
                     f"--node-ip-address={self.ip(k)}", "--disable-usage-stats", f"--num-cpus={self.cpus_per_node}")
            self.start_s = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise
        return self

    def popen(self, k: int, argv, **kwargs) -> subprocess.Popen:
        """Run ``argv`` inside machine ``k``'s namespace (the coordinator runs in machine 0's)."""
        return subprocess.Popen(["ip", "netns", "exec", self.namespaces[k], *map(str, argv)], **kwargs)

    def stop(self) -> None:
        inodes = set()
        for ns in self._made:
            try:
                inodes.add(os.stat(f"/run/netns/{ns}").st_ino)
            except OSError:
                pass
        victims = processes_in(inodes) if inodes else []
        if victims:
            stop_all(victims, grace_s=5.0)
        for ns in self._made:
            _run("ip", "netns", "del", ns, check=False)
        self._made = []
        if self._bridge_made:
            _run("ip", "link", "del", self.bridge, check=False)
            self._bridge_made = False
        if self.temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self.temp_dir = None

    def __enter__(self) -> "NamespaceCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
