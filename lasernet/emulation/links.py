"""Link backends: how an emulated link between two node namespaces gets its delay, loss, rate and up/down.

Every backend offers the same small interface, used by the driver once per tick with arrays over all links:

* ``start()`` / ``stop()``;
* ``add(link, ns_a, ns_b)``: create the link's two interfaces (named ``link.ifname_a`` in namespace ``ns_a`` and
  ``link.ifname_b`` in ``ns_b``) and return their MAC addresses;
* ``apply(slots, up, delay_s, loss, rate_bps)``: set the state of many links in one batch (per direction arrays of
  shape (n, 2): index 0 is a->b, 1 is b->a; a link down shows NO-CARRIER on both ends);
* ``resources()``: the processes and files it created, for ``lasernet down``.

Backends: ``delayline`` (TAPs plus a userspace relay; works on any kernel with tun/tap, and the only choice on
kernels without sch_netem such as this machine's) and ``netem`` (veth pairs shaped by sch_netem: the standard
in a VM with a stock kernel; not implemented yet). :func:`choose_backend` resolves ``auto`` by probing once
whether a netem qdisc can be created in a scratch namespace.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np

from .addressing import LinkAddress


class LinkBackend:
    """The interface every link backend implements (see the module docstring)."""

    name = "abstract"

    def start(self) -> "LinkBackend":
        return self

    def stop(self) -> None:
        pass

    def add(self, link: LinkAddress, ns_a: str, ns_b: str) -> tuple[str, str]:
        raise NotImplementedError

    def apply(self, slots: np.ndarray, up: np.ndarray, delay_s: np.ndarray, loss: np.ndarray,
              rate_bps: np.ndarray) -> None:
        raise NotImplementedError

    def resources(self) -> dict:
        return {}


class DelaylineLinks(LinkBackend):
    """TAP pairs joined by the delay-line relay (:mod:`lasernet.emulation.delayline`).

    Every traversal of the relay costs a little time of its own on top of the delay it is asked for: the kernel
    queues the frame on the TAP while the (single-threaded) relay is still busy, and forwarding inside the next
    node runs within the relay's write. Measured here as the growth of the excess RTT with hop count on ``mini``
    (1 to 6 hops), about 20 us per traversal once arrivals are stamped at the relay's own write.
    ``traversal_overhead_s`` (default 20 us) is taken off each direction's delay (never below zero) so that a
    multi-hop path's latency stays the light time.
    """

    name = "delayline"
    TRAVERSAL_OVERHEAD_S = 20e-6

    def __init__(self, run_id: str, seed: int, n_slots: int, traversal_overhead_s: float | None = None,
                 log_path: str | None = None):
        from .delayline import Relay

        self.relay = Relay(run_id, n_slots=n_slots, seed=seed, log_path=log_path)
        self.traversal_overhead_s = (self.TRAVERSAL_OVERHEAD_S if traversal_overhead_s is None
                                     else traversal_overhead_s)

    def start(self) -> "DelaylineLinks":
        self.relay.start()
        return self

    def stop(self) -> None:
        self.relay.stop()

    def add(self, link: LinkAddress, ns_a: str, ns_b: str) -> tuple[str, str]:
        ends = self.relay.add_link(ns_a, link.ifname_a, ns_b, link.ifname_b, link.slot)
        return ends.a[2], ends.b[2]

    def apply(self, slots, up, delay_s, loss, rate_bps) -> None:
        table = self.relay.table
        delay_s = np.maximum(np.asarray(delay_s, dtype=float) - self.traversal_overhead_s, 0.0)
        for d in (0, 1):
            table.set_many(slots, d, delay_s=delay_s[:, d], loss=loss[:, d], rate_bps=rate_bps[:, d],
                           up=up[:, d])
        self.relay.commit(wait=False)

    def resources(self) -> dict:
        return self.relay.created()


def netem_available() -> bool:
    """Whether this kernel can shape with sch_netem: try a netem qdisc on ``lo`` of a throw-away namespace."""
    if not shutil.which("unshare") or not shutil.which("tc"):
        return False
    proc = subprocess.run(["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                          capture_output=True, text=True)
    return proc.returncode == 0


class BackendUnavailable(RuntimeError):
    pass


def choose_backend(kind: str) -> str:
    """Resolve ``auto`` / ``netem`` / ``delayline`` to a backend this machine can run, or raise."""
    if kind not in ("auto", "netem", "delayline"):
        raise BackendUnavailable(f"--links must be auto, netem or delayline, got {kind!r}")
    if kind == "netem":
        raise BackendUnavailable("--links netem: the netem backend is not implemented yet; use --links delayline "
                                 "(or auto)")
    return "delayline"


def make_backend(kind: str, run_id: str, seed: int, n_slots: int, log_dir=None) -> LinkBackend:
    name = choose_backend(kind)
    if name == "delayline":
        return DelaylineLinks(run_id, seed, n_slots, log_path=None if log_dir is None else str(log_dir / "relay.log"))
    raise BackendUnavailable(f"no backend {name!r}")
