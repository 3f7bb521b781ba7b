"""The delay line's client, in the driver's process: start a relay, hand it links, write their parameters, stop.

A :class:`Relay` owns one relay process (:mod:`lasernet.net.delayline.relay`) and everything made for it: the
parameter table in ``/dev/shm`` (:mod:`lasernet.net.delayline.table`), the eventfd that wakes the relay after
each commit, the TAPs of its links and the connection to its control socket. ``created()`` lists them by name
for a run's state file, and :meth:`Relay.cleanup_created` removes them from that list after a crash.

**Process model**: the relay is a separate interpreter started with ``python -m lasernet.net.delayline.relay``
(``subprocess``, not ``multiprocessing``): it inherits only the eventfd, not the controller's threads, sockets or
TAP fds; it can take SCHED_FIFO for itself alone; it is one PID to terminate and wait for; and it can be run
by hand for debugging.

**Links**: :meth:`Relay.add_link` creates the two TAPs (:mod:`lasernet.net.tap`), passes their fds over the
control socket with SCM_RIGHTS and closes its own copies, so the relay holds the only ones.

**Shards**: one relay process holds two TAP fds per link, so the hard open-file limit bounds its links. A user
with more links starts more relays, each with its own table, eventfd and control socket (``shard`` suffixes
their names) serving a range of the run's slots from ``slot_base``. Nothing in a record refers to another slot.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from .. import tap
from .relay import DEFAULT_QUEUE_LIMIT_BYTES
from .table import ParamTable, control_address_for, table_path_for, validate_run_id

log = logging.getLogger("lasernet.delayline")

RELAY_MODULE = "lasernet.net.delayline.relay"


@dataclass(frozen=True)
class LinkEnds:
    """What ``Relay.add_link`` made: the slot and the two TAPs (namespace, interface name, MAC)."""
    slot: int
    a: tuple
    b: tuple


class Relay:
    """Controller of one relay process: start it, add/remove links between namespaces, set parameters, stop it.

    Namespaces are given by ``ip netns`` name or by the PID of a process inside them (Mininet nodes). Parameters
    are written through ``relay.table`` (a :class:`ParamTable`): ``relay.table.set(...)``, then
    ``relay.commit()`` (commit and wait until applied). ``created()`` lists every kernel object and process this
    controller made, for cleanup by name.

    TAPs are persistent and live in the node namespaces (``tap_mode``: see :mod:`lasernet.net.tap`). Teardown is
    ``stop()`` and deleting the namespaces, in either order: closing a persistent TAP's fd is cheap, and the slow
    part, unregistering devices one at a time (each waits for the kernel's RCU grace period), never happens: a
    namespace takes its TAPs with it in one batch. In the default ``"inside"`` mode the relay's fds keep the node namespaces alive, so they
    disappear (with their TAPs) only once the relay has stopped or their links were removed.
    """

    def __init__(self, run_id: str, n_slots: int = 4096, seed: int = 0,
                 queue_limit_bytes: int = DEFAULT_QUEUE_LIMIT_BYTES, rt_priority: int = 10,
                 log_path: str | None = None, timer_lead_us: int = 50, tap_mode: str = "inside", shard: int = 0,
                 slot_base: int = 0):
        self.run_id = validate_run_id(run_id)
        self.shard, self.slot_base = shard, slot_base
        self.n_slots, self.seed = n_slots, seed
        self.queue_limit_bytes, self.rt_priority = queue_limit_bytes, rt_priority
        self.log_path, self.timer_lead_us = log_path, timer_lead_us
        if tap_mode not in tap.TAP_MODES:
            raise ValueError(f"tap_mode {tap_mode!r} is not one of {tap.TAP_MODES}")
        self.tap_mode = tap_mode
        self.table_path = table_path_for(run_id, shard)
        self.table: ParamTable | None = None
        self.proc: subprocess.Popen | None = None
        self.links: dict[int, LinkEnds] = {}
        self._ctl: socket.socket | None = None
        self._wake_fd: int | None = None
        self._log_file = None
        self._table_created = False

    # ---- lifecycle
    def start(self, timeout_s: float = 10.0) -> "Relay":
        """Create the table and start the relay process; return when it answers on its control socket."""
        try:
            self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self.table = ParamTable.create(self.table_path, self.n_slots, wake_fd=self._wake_fd)
            self._table_created = True
            self._spawn()
            self._connect(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self) -> None:
        cmd = [sys.executable, "-m", RELAY_MODULE, "--run-id", self.run_id,
               "--table", self.table_path, "--wake-fd", str(self._wake_fd), "--seed", str(self.seed),
               "--queue-limit-bytes", str(self.queue_limit_bytes), "--rt-priority", str(self.rt_priority),
               "--timer-lead-us", str(self.timer_lead_us), "--shard", str(self.shard),
               "--slot-base", str(self.slot_base), "--parent-pid", str(os.getpid())]
        self._log_file = open(self.log_path, "ab") if self.log_path else None
        self.proc = subprocess.Popen(cmd, pass_fds=(self._wake_fd,), stdin=subprocess.DEVNULL,
                                     stdout=self._log_file, stderr=self._log_file)

    def _connect(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"delay-line relay for run {self.run_id} exited with {self.proc.returncode} "
                                   f"while starting (log: {self.log_path or 'stderr'})")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
            try:
                sock.connect(control_address_for(self.run_id, self.shard))
                sock.settimeout(30.0)
                self._ctl = sock
                self.request({"op": "ping"})
                return
            except (ConnectionRefusedError, FileNotFoundError):
                sock.close()
            if time.monotonic() > deadline:
                raise TimeoutError(f"delay-line relay for run {self.run_id} did not open its control socket "
                                   f"within {timeout_s} s (log: {self.log_path or 'stderr'})")
            time.sleep(0.02)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Terminate and reap the relay, close the control socket, remove the table. Safe to call twice."""
        try:
            if self._ctl is not None:
                self._ctl.close()
                self._ctl = None
            if self.proc is not None and self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    log.warning("delay-line relay %d ignored SIGTERM for %s s; killing it", self.proc.pid, timeout_s)
                    self.proc.kill()
                    self.proc.wait()
        finally:
            if self.table is not None:
                self.table.close()
                self.table = None
            if self._table_created:
                self._table_created = False
                try:
                    os.unlink(self.table_path)
                except FileNotFoundError:  # already removed by cleanup_created
                    pass
            if self._wake_fd is not None:
                os.close(self._wake_fd)
                self._wake_fd = None
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    def __enter__(self) -> "Relay":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ---- control requests
    def request(self, msg: dict, fds: list[int] = ()) -> dict:
        """Send one control message (optionally with fds); return the reply or raise RuntimeError with its error."""
        if self._ctl is None:
            raise RuntimeError(f"delay-line relay for run {self.run_id} is not running")
        payload = json.dumps(msg).encode()
        if fds:
            socket.send_fds(self._ctl, [payload], list(fds))
        else:
            self._ctl.send(payload)
        data = self._ctl.recv(1 << 20)
        if not data:
            code = self.proc.poll() if self.proc else None
            raise RuntimeError(f"delay-line relay for run {self.run_id} closed its control socket "
                               f"(exit code {code}; log: {self.log_path or 'stderr'})")
        reply = json.loads(data)
        if not reply.get("ok"):
            raise RuntimeError(f"delay-line relay refused {msg.get('op')} (slot {msg.get('slot')}): "
                               f"{reply.get('error')}")
        return reply

    # ---- links
    def add_link(self, ns_a, ifname_a: str, ns_b, ifname_b: str, slot: int, mtu: int = 1500) -> LinkEnds:
        """Create TAP ``ifname_a`` in ``ns_a`` and ``ifname_b`` in ``ns_b`` and hand them to the relay as ``slot``.

        The link starts with whatever the table holds for the slot (by default up, no delay/loss/rate limit), so
        stage and commit its parameters before or after. On failure nothing is left behind.
        """
        if slot in self.links:
            raise ValueError(f"slot {slot} already used by {self.links[slot]}")
        mac_a, mac_b = tap.mac_for(slot, 0), tap.mac_for(slot, 1)
        tap_a = tap.create_tap(ns_a, ifname_a, mac_a, mtu=mtu, mode=self.tap_mode)
        try:
            tap_b = tap.create_tap(ns_b, ifname_b, mac_b, mtu=mtu, mode=self.tap_mode)
        except BaseException:
            os.close(tap_a.fd)
            tap.delete_tap(ns_a, ifname_a)
            raise
        ends = LinkEnds(slot, (ns_a, ifname_a, tap.mac_text(mac_a)), (ns_b, ifname_b, tap.mac_text(mac_b)))
        try:
            self.request({"op": "add", "slot": slot, "names": [f"{ns_a}:{ifname_a}", f"{ns_b}:{ifname_b}"]},
                         fds=[tap_a.fd, tap_b.fd])
        except BaseException:
            tap.delete_tap(ns_a, ifname_a)
            tap.delete_tap(ns_b, ifname_b)
            raise
        finally:
            os.close(tap_a.fd)
            os.close(tap_b.fd)
        self.links[slot] = ends
        return ends

    def add_half(self, ns, ifname: str, slot: int, end: int, sock_fd: int, mtu: int = 1500) -> LinkEnds:
        """Half of a link whose other end is on another machine: TAP ``ifname`` in ``ns`` for ``end`` (0 = a,
        1 = b) and the socket ``sock_fd`` (a UDP socket connected, now or later, to the other machine's half) in
        place of the other TAP. The relay keeps the link's direction order: end a's half reads a->b from its TAP
        and writes it to the socket; end b's half reads a->b from the socket and writes it to its TAP.
        """
        if slot in self.links:
            raise ValueError(f"slot {slot} already used by {self.links[slot]}")
        mac = tap.mac_for(slot, end)
        made = tap.create_tap(ns, ifname, mac, mtu=mtu, mode=self.tap_mode)
        me, peer = (ns, ifname, tap.mac_text(mac)), ("socket", str(sock_fd), tap.mac_text(tap.mac_for(slot, 1 - end)))
        ends = LinkEnds(slot, *((me, peer) if end == 0 else (peer, me)))
        fds, taps = ([made.fd, sock_fd], [True, False]) if end == 0 else ([sock_fd, made.fd], [False, True])
        try:
            self.request({"op": "add", "slot": slot, "taps": taps,
                          "names": [f"{e[0]}:{e[1]}" for e in (ends.a, ends.b)]}, fds=fds)
        except BaseException:
            tap.delete_tap(ns, ifname)
            raise
        finally:
            os.close(made.fd)
        self.links[slot] = ends
        return ends

    def remove_link(self, slot: int, delete_taps: bool = True) -> None:
        """Take ``slot`` out of the relay and (by default) delete its two TAPs if their namespaces still exist."""
        ends = self.links.pop(slot)
        try:
            self.request({"op": "remove", "slot": slot})
        except RuntimeError as exc:
            if "no link in slot" not in str(exc):  # already dropped by the relay (namespace deleted)
                raise
        if delete_taps:
            for ns, ifname, _mac in (ends.a, ends.b):
                if ns != "socket":
                    tap.delete_tap(ns, ifname)

    # ---- parameters
    def set(self, slot: int, direction="both", **params) -> None:
        """Stage parameters for one slot (see ``ParamTable.set``); nothing changes until ``commit``."""
        self.table.set(slot, direction, **params)

    def commit(self, wait: bool = True, timeout_s: float = 5.0) -> int:
        """Publish staged parameters in one generation; by default wait until the relay has applied them.

        Raises RuntimeError if the relay process has exited: every link would be silently dead otherwise.
        """
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"delay-line relay for run {self.run_id} exited with {self.proc.returncode}: every "
                               f"link is down (log: {self.log_path or 'stderr'})")
        gen = self.table.commit()
        if wait:
            self.table.wait_applied(gen, timeout_s)
        return gen

    def stats(self) -> dict:
        """Per-link counters from the relay: ``{slot: {"names", "carrier", "dirs": [a->b, b->a]}}``."""
        return {int(s): v for s, v in self.request({"op": "stats"})["links"].items()}

    def timing(self) -> dict:
        """The relay's view of this host: ``wake_latency_us`` (mean epoll wake-up), ``wake_latency_us_max`` (the
        largest that mean has been: the most a frame that woke the relay was back-dated by), ``timer_lead_us``,
        ``policy``."""
        reply = self.request({"op": "stats"})
        return {k: reply[k] for k in ("wake_latency_us", "wake_latency_us_max", "timer_lead_us", "policy")}

    def created(self) -> dict:
        """Every kernel object and process this controller made, by name, for cleanup and the run's state file."""
        return {"run_id": self.run_id, "shard": self.shard, "relay_pid": self.pid, "table_path": self.table_path,
                "control_socket": "@" + control_address_for(self.run_id, self.shard)[1:].decode(),
                "taps": [list(end[:2]) for ends in self.links.values() for end in (ends.a, ends.b)
                         if end[0] != "socket"]}

    @staticmethod
    def cleanup_created(state: dict) -> list[str]:
        """Remove what ``created()`` listed (e.g. read back from a run's state file after a crash).

        The relay PID is signalled only if it still runs this run's relay (checked on its command line), TAPs are
        deleted by namespace and name, the table file is unlinked. Returns what was removed, one line each.
        """
        removed = []
        pid, run_id = state.get("relay_pid"), validate_run_id(state["run_id"])
        if pid and _is_relay_of(pid, run_id):
            os.kill(pid, signal.SIGTERM)
            removed.append(f"relay process {pid}")
        for ns, ifname in state.get("taps", []):
            if tap.delete_tap(ns, ifname):
                removed.append(f"TAP {ns}:{ifname}")
        table = table_path_for(run_id, state.get("shard", 0))
        if state.get("table_path") == table and os.path.exists(table):
            os.unlink(table)
            removed.append(f"table {table}")
        return removed


def _is_relay_of(pid: int, run_id: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return RELAY_MODULE.encode() in argv and run_id.encode() in argv

