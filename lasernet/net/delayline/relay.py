"""The delay-line relay: a userspace process that moves Ethernet frames between the two TAPs of each emulated link.

Why it exists: this kernel has no ``sch_netem``, so a link's propagation delay cannot come from a qdisc. Instead
every emulated link is a pair of TAP interfaces, one in each node's namespace (see ``tapdev``), and this relay
reads a frame from one TAP and writes it to the other after that direction's delay.

Per direction, in this order, a frame read from a TAP is:

1. **up/down**: dropped if the direction is down. Going down also drops everything in flight. The link's carrier
   (``TUNSETCARRIER`` on both TAPs, so ``ip link`` shows NO-CARRIER and routing daemons notice) is on only while
   both directions are up, as with an Ethernet link whose partner stops answering.
2. **loss**: dropped with probability ``loss`` (0..1), from a ``random.Random`` seeded by (run seed, slot,
   direction), so that a run is reproducible.
3. **rate**: serialised at ``rate_bps`` (0 means unlimited) on Ethernet frame bytes: a per-direction busy-until
   clock, frames queue behind each other. The queue is bounded in **bytes**: a frame is tail-dropped when the
   backlog still to serialise, ``(busy_until - now) * rate_bps / 8``, plus the frame would exceed
   ``queue_limit_bytes`` (default 150,000 B, about 100 full-size frames).
4. **delay**: released ``delay_s`` after its last bit left the serialiser. Release happens at the due time from
   a ``timerfd`` armed with an absolute CLOCK_MONOTONIC deadline (epoll timeouts round to milliseconds), armed
   ``timer_lead_us`` (default 50 us) early, since waking from epoll takes 20-90 us here; until the frame is due the
   loop polls without sleeping, so frames arriving meanwhile are still read on time. The lead is deliberately fixed
   and small: a lead learnt from the wake-up latency (tried: the 90th percentile of the last 64 wake-ups) feeds on
   itself on a busy 2-vCPU VM, spinning SCHED_FIFO starves the kernel work the other processes need, wake-ups get
   slower, the lead grows to milliseconds and the median RTT error of a 7-hop path went from +0.05 ms to +5 ms.
   Symmetrically, a frame whose arrival woke the relay from sleep is stamped one learnt wake-up latency before it
   was read (an EWMA of the timer's own wake-ups, never earlier than the moment the relay went to sleep). FIFO
   order per direction is kept: a frame is never released before the frame read before it (light sent later
   does not overtake light sent earlier), so after a delay decrease new frames wait behind older ones. Frames in
   flight are capped at ``inflight_limit_frames`` per direction (default 100,000) to bound memory.

Parameters come from a **shared-memory table** (a file in /dev/shm whose name holds the run id) that the driver
writes through :class:`ParamTable`: a 64-byte header, then one 72-byte record per link slot::

    header : magic "LNDLY1" | version u32 | n_slots u32 | generation u64 | applied_generation u64 | relay pid
    record : seq u32 | pad | gen u64 | delay_s f64[2] | loss f64[2] | rate_bps f64[2] | up u8[2] | pad

Index ``[0]`` is direction a->b (frames the ``a`` end sends), ``[1]`` is b->a. ``ParamTable.set`` stages changes
locally; ``commit`` copies all staged records in one vectorised step (each record bracketed by a seqlock ``seq``
so the relay never applies a torn record), stamps them with the new generation, bumps the header generation and
writes an eventfd. The relay then applies at once the records whose ``up`` changed (carrier), publishes
``applied_generation``, and applies any other changed record when its link next carries a frame (a generation
check per read burst). Updating 3,000 links is one commit, one wake-up and one vectorised comparison.

**Links** are added and removed at run time through a UNIX SOCK_SEQPACKET control socket in the abstract
namespace (``@lasernet-<run>-delayline``, nothing to clean up on disk). The controller creates the TAPs, passes
the two fds with SCM_RIGHTS plus the slot number and the relay answers with JSON. A TAP deleted underneath the
relay (``ip link del``, or its namespace deleted when TAPs were made in ``move`` mode, see ``tapdev``) shows up
as EPOLLERR/EBADFD: that link is dropped with a log line, the others go on.

**Process model**: the relay is a separate interpreter started with ``python -m lasernet.emulation.delayline``
(``subprocess``, not ``multiprocessing``): it inherits only the eventfd, not the controller's threads, sockets or
TAP fds; it can take SCHED_FIFO for itself alone; it is one PID to terminate and wait for; and it can be run
by hand for debugging. It asks the kernel to SIGTERM it if the controller dies (PR_SET_PDEATHSIG): no orphans.

**Shards**: one relay process holds two TAP fds per link, so the hard open-file limit bounds its links (20,000
fds: ~9,870 links where the limit cannot be raised, as in containers without CAP_SYS_RESOURCE). A run with more
links starts more relays (:class:`~lasernet.emulation.links.DelaylineLinks`): shard ``k`` serves the link slots
``[k * n, (k + 1) * n)`` as its own slots ``0..n-1``, with its own table, eventfd and control socket (names
suffixed ``-k``) and loss generators seeded by the run's slot (``--slot-base``), so a run behaves the same
however it is sharded. Nothing in a record refers to another slot.
"""

from __future__ import annotations

import argparse
import ctypes
import heapq
import itertools
import json
import logging
import mmap
import os
import random
import re
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from lasernet.emulation import tapdev

log = logging.getLogger("lasernet.delayline")

MAGIC = b"LNDLY1\0\0"
VERSION = 1
HEADER_BYTES = 64
HEADER_DTYPE = np.dtype({
    "names": ["magic", "version", "n_slots", "generation", "applied_generation", "relay_pid"],
    "formats": ["S8", "<u4", "<u4", "<u8", "<u8", "<u4"],
    "offsets": [0, 8, 12, 16, 24, 32],
    "itemsize": HEADER_BYTES,
})
RECORD_DTYPE = np.dtype({
    "names": ["seq", "gen", "delay_s", "loss", "rate_bps", "up"],
    "formats": ["<u4", "<u8", ("<f8", 2), ("<f8", 2), ("<f8", 2), ("u1", 2)],
    "offsets": [0, 8, 16, 32, 48, 64],
    "itemsize": 72,
})
PARAM_FIELDS = ("delay_s", "loss", "rate_bps", "up")
DIRECTIONS = {"ab": 0, "ba": 1, 0: 0, 1: 1}

DEFAULT_QUEUE_LIMIT_BYTES = 150_000
DEFAULT_INFLIGHT_LIMIT_FRAMES = 100_000
READ_BURST_FRAMES = 64
MAX_FRAME_BYTES = 65536
_RUN_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


def validate_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is ``[a-z0-9-]`` (at most 40 characters), else raise ValueError naming it."""
    if not _RUN_ID_RE.match(run_id):
        raise ValueError(f"run id {run_id!r} must be [a-z0-9-]+, at most 40 characters")
    return run_id


def _shard_suffix(shard: int) -> str:
    return f"-{int(shard)}" if shard else ""


def table_path_for(run_id: str, shard: int = 0) -> str:
    return f"/dev/shm/lasernet-{validate_run_id(run_id)}-delayline{_shard_suffix(shard)}"


def control_address_for(run_id: str, shard: int = 0) -> bytes:
    return f"\0lasernet-{validate_run_id(run_id)}-delayline{_shard_suffix(shard)}".encode()


# --------------------------------------------------------------------------------------------------------------
# The shared parameter table
# --------------------------------------------------------------------------------------------------------------

class ParamTable:
    """The shared-memory table of per-link, per-direction parameters; the driver's side writes, the relay reads.

    ``set(slot, direction, delay_s=..., loss=..., rate_bps=..., up=...)`` stages a change (direction ``0``/``"ab"``,
    ``1``/``"ba"`` or ``"both"``); ``set_many`` does the same for arrays of slots; ``commit()`` publishes every
    staged change in one generation and wakes the relay.
    """

    def __init__(self, path: str, mm: mmap.mmap, wake_fd: int | None):
        self.path = path
        self._mm = mm
        self.header = np.ndarray((), dtype=HEADER_DTYPE, buffer=mm, offset=0)
        n_slots = int(self.header["n_slots"])
        self.records = np.ndarray((n_slots,), dtype=RECORD_DTYPE, buffer=mm, offset=HEADER_BYTES)
        self.n_slots = n_slots
        self.wake_fd = wake_fd
        self._staged = self.records.copy()
        self._dirty = np.zeros(n_slots, dtype=bool)

    @classmethod
    def create(cls, path: str, n_slots: int, wake_fd: int | None = None) -> "ParamTable":
        """Create the table file (must not exist); every slot starts up, zero delay, no loss, unlimited rate."""
        if n_slots <= 0:
            raise ValueError(f"n_slots must be positive, got {n_slots}")
        size = HEADER_BYTES + n_slots * RECORD_DTYPE.itemsize
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, size)
            mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        header = np.ndarray((), dtype=HEADER_DTYPE, buffer=mm, offset=0)
        header["magic"], header["version"], header["n_slots"] = MAGIC, VERSION, n_slots
        records = np.ndarray((n_slots,), dtype=RECORD_DTYPE, buffer=mm, offset=HEADER_BYTES)
        records["up"] = 1
        del header, records
        return cls(path, mm, wake_fd)

    @classmethod
    def open(cls, path: str, wake_fd: int | None = None) -> "ParamTable":
        """Open an existing table file; raise ValueError if it is not a delay-line table."""
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            mm = mmap.mmap(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        if mm[:8] != MAGIC:
            mm.close()
            raise ValueError(f"{path} is not a lasernet delay-line table (bad magic)")
        return cls(path, mm, wake_fd)

    def close(self) -> None:
        self.header = self.records = None
        self._mm.close()

    @property
    def generation(self) -> int:
        return int(self.header["generation"])

    @property
    def applied_generation(self) -> int:
        return int(self.header["applied_generation"])

    def _check_slot(self, slot) -> None:
        bad = np.asarray(slot)
        if bad.size and (bad.min() < 0 or bad.max() >= self.n_slots):
            raise IndexError(f"slot(s) out of range 0..{self.n_slots - 1}: {slot}")

    def set(self, slot: int, direction="both", *, delay_s=None, loss=None, rate_bps=None, up=None) -> None:
        """Stage new parameters for one link slot; unchanged fields are given as None."""
        self.set_many([slot], direction, delay_s=delay_s, loss=loss, rate_bps=rate_bps, up=up)

    def set_many(self, slots, direction="both", *, delay_s=None, loss=None, rate_bps=None, up=None) -> None:
        """Stage parameters for many slots at once; each value is a scalar or an array matching ``slots``."""
        slots = np.asarray(slots, dtype=np.int64)
        self._check_slot(slots)
        cols = [0, 1] if direction == "both" else [DIRECTIONS[direction]]
        values = {"delay_s": delay_s, "loss": loss, "rate_bps": rate_bps, "up": up}
        for name, value in values.items():
            if value is None:
                continue
            value = _validated(name, np.asarray(value, dtype=np.float64), slots)
            for col in cols:
                self._staged[name][slots, col] = value
        self._dirty[slots] = True

    def commit(self) -> int:
        """Publish all staged changes as one new generation and wake the relay; return the generation."""
        idx = np.nonzero(self._dirty)[0]
        gen = self.generation + 1
        if idx.size:
            live = self.records
            live["seq"][idx] += 1  # odd: record being written
            for name in PARAM_FIELDS:
                live[name][idx] = self._staged[name][idx]
            live["gen"][idx] = gen
            live["seq"][idx] += 1  # even: record consistent
            self._dirty[idx] = False
        self.header["generation"] = gen
        if self.wake_fd is not None:
            os.eventfd_write(self.wake_fd, 1)
        return gen

    def wait_applied(self, generation: int, timeout_s: float = 5.0) -> float:
        """Wait until the relay has applied ``generation``; return the monotonic time it was seen applied."""
        deadline = time.monotonic() + timeout_s
        while self.applied_generation < generation:
            if time.monotonic() > deadline:
                raise TimeoutError(f"relay did not apply generation {generation} within {timeout_s} s "
                                   f"(applied {self.applied_generation}; table {self.path})")
            time.sleep(0.0001)
        return time.monotonic()

    def read_changed(self, since_generation: int, slots_of_interest) -> list[tuple[int, list, list, list, list]]:
        """Relay side: consistent records changed after ``since_generation``, among ``slots_of_interest``.

        Returns ``(slot, delay_s[2], loss[2], rate_bps[2], up[2])`` tuples. A record caught mid-write is skipped:
        the commit writing it bumps the generation and wakes the reader again.
        """
        changed = np.nonzero(self.records["gen"] > since_generation)[0]
        if changed.size == 0:
            return []
        changed = changed[np.isin(changed, slots_of_interest)]
        seq_before = self.records["seq"][changed]
        snap = self.records[changed].copy()
        seq_after = self.records["seq"][changed]
        ok = (seq_before == seq_after) & (seq_before % 2 == 0)
        rows = snap[ok]
        return list(zip(changed[ok].tolist(), rows["delay_s"].tolist(), rows["loss"].tolist(),
                        rows["rate_bps"].tolist(), rows["up"].tolist()))

    def read_slot(self, slot: int) -> tuple[list, list, list, list]:
        """Relay side: the current record of one slot (spinning briefly past a concurrent write)."""
        return self.read_record(slot)[1:]

    def read_record(self, slot: int, attempts: int = 1000) -> tuple[int, list, list, list, list] | None:
        """Relay side: ``(gen, delay_s, loss, rate_bps, up)`` of one slot, consistent (seqlock).

        With the default ``attempts`` a record that stays mid-write is an error (a stuck writer). The relay's
        data path passes a few attempts and gets None instead: it must never spin on a writer, which may be the
        driver preempted by the relay itself on the same core (SCHED_FIFO) in the middle of a commit.
        """
        for _ in range(attempts):
            before = int(self.records["seq"][slot])
            row = self.records[slot].copy()
            if before % 2 == 0 and before == int(self.records["seq"][slot]):
                return (int(row["gen"]), row["delay_s"].tolist(), row["loss"].tolist(), row["rate_bps"].tolist(),
                        row["up"].tolist())
        if attempts < 1000:
            return None
        raise RuntimeError(f"slot {slot} of {self.path} stayed mid-write; is a writer stuck?")


def _validated(name: str, value: np.ndarray, slots: np.ndarray) -> np.ndarray:
    if value.ndim and value.shape != slots.shape:
        raise ValueError(f"{name} has shape {value.shape}, expected a scalar or {slots.shape} (one per slot)")
    if not np.all(np.isfinite(value)):
        raise ValueError(f"{name} must be finite for slots {slots.tolist()[:10]}")
    if name == "loss" and (np.any(value < 0) or np.any(value > 1)):
        raise ValueError(f"loss must be within 0..1 for slots {slots.tolist()[:10]}, got {value}")
    if name in ("delay_s", "rate_bps") and np.any(value < 0):
        raise ValueError(f"{name} must be >= 0 for slots {slots.tolist()[:10]}, got {value}")
    return value


# --------------------------------------------------------------------------------------------------------------
# Kernel helpers for the relay process
# --------------------------------------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
CLOCK_MONOTONIC = 1
TFD_TIMER_ABSTIME = 1
PR_SET_PDEATHSIG = 1
PR_SET_TIMERSLACK = 29


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


_libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.timerfd_settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p]


class TimerFd:
    """A CLOCK_MONOTONIC timerfd armed at absolute nanosecond deadlines (what epoll's ms timeout cannot do)."""

    def __init__(self):
        self.fd = _libc.timerfd_create(CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_create: {os.strerror(err)}")
        self._spec = _Itimerspec()
        self._ref = ctypes.byref(self._spec)

    def arm_at_ns(self, deadline_ns: int) -> None:
        self._spec.it_value.tv_sec, self._spec.it_value.tv_nsec = divmod(deadline_ns, 1_000_000_000)
        if _libc.timerfd_settime(self.fd, TFD_TIMER_ABSTIME, self._ref, None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_settime: {os.strerror(err)}")

    def drain(self) -> None:
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self.fd)


def _take_realtime_priority(priority: int) -> None:
    """SCHED_FIFO at ``priority`` if permitted; log (never hide) when it is not."""
    if priority <= 0:
        log.info("delayline: SCHED_FIFO disabled (rt priority 0), running SCHED_OTHER")
        return
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        log.info("delayline: running SCHED_FIFO priority %d", priority)
    except OSError as exc:
        log.warning("delayline: SCHED_FIFO priority %d not permitted (%s); running SCHED_OTHER", priority, exc)


# --------------------------------------------------------------------------------------------------------------
# The relay process: per-link state and the event loop
# --------------------------------------------------------------------------------------------------------------

class _Direction:
    """One direction of a link: where frames come in and go out, its parameters, its clocks and counters."""

    __slots__ = ("link", "index", "in_fd", "out_fd", "delay_ns", "loss", "rate_bps", "up", "rng", "busy_until",
                 "tail_due", "epoch", "inflight", "rx", "tx", "drop_down", "drop_loss", "drop_queue", "drop_write",
                 "delayed", "late_ns_sum", "late_ns_max")

    def __init__(self, link: "_Link", index: int, in_fd: int, out_fd: int, seed: str):
        self.link, self.index, self.in_fd, self.out_fd = link, index, in_fd, out_fd
        self.delay_ns, self.loss, self.rate_bps, self.up = 0, 0.0, 0.0, True
        self.rng = random.Random(seed)
        self.busy_until = self.tail_due = 0
        self.epoch = self.inflight = 0
        self.rx = self.tx = self.drop_down = self.drop_loss = self.drop_queue = self.drop_write = 0
        self.delayed = self.late_ns_sum = self.late_ns_max = 0

    def apply(self, delay_s: float, loss: float, rate_bps: float, up: bool) -> None:
        self.delay_ns = round(delay_s * 1e9)
        self.loss = loss
        self.rate_bps = rate_bps
        if up != self.up:
            self.up = up
            if not up:  # drop everything in flight: queued entries of an old epoch are discarded on release
                self.epoch += 1
                self.busy_until = self.tail_due = 0

    def counters(self) -> dict:
        return {"rx": self.rx, "tx": self.tx, "drop_down": self.drop_down, "drop_loss": self.drop_loss,
                "drop_queue": self.drop_queue, "drop_write": self.drop_write, "inflight": self.inflight,
                "release_late_us_mean": self.late_ns_sum / self.delayed / 1e3 if self.delayed else 0.0,
                "release_late_us_max": self.late_ns_max / 1e3}


@dataclass
class _Link:
    slot: int
    names: list
    fds: tuple
    dirs: list = field(default_factory=list)
    carrier: bool = True
    gen: int = -1  # generation of the table record its directions hold

    def describe(self) -> str:
        return f"slot {self.slot} ({self.names[0]} <-> {self.names[1]})"


class RelayProcess:
    """The relay's event loop: epoll over TAPs, the timerfd, the table's eventfd and the control socket."""

    def __init__(self, run_id: str, table_path: str, wake_fd: int, seed: int, queue_limit_bytes: int,
                 inflight_limit_frames: int, timer_lead_ns: int = 50_000, shard: int = 0, slot_base: int = 0):
        self.run_id, self.seed = run_id, seed
        self.slot_base = slot_base  # this shard's slot 0 is the run's link slot slot_base (loss seeds use that)
        self.timer_lead_ns = timer_lead_ns
        self.wake_ns = 20_000  # estimated epoll wake-up latency, learnt from timer wake-ups
        self.last_write_ns = 0  # when the relay last wrote a frame (frames it forwards show up right after)
        self.queue_limit_bytes, self.inflight_limit_frames = queue_limit_bytes, inflight_limit_frames
        self.table = ParamTable.open(table_path)
        records = self.table.records
        self._gen, self._up = records["gen"], records["up"]  # live views of the shared table
        self._applied_up = np.ones((self.table.n_slots, 2), dtype=np.uint8)
        self._present = np.zeros(self.table.n_slots, dtype=bool)  # slots holding a link
        self.wake_fd = wake_fd
        self.links: dict[int, _Link] = {}
        self.rx_dirs: dict[int, _Direction] = {}
        self.conns: dict[int, socket.socket] = {}
        self.heap: list = []
        self.counter = itertools.count()
        self.armed_ns = 0
        self.applied_gen = 0
        self.ep = select.epoll()
        self.timer = TimerFd()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.listener.bind(control_address_for(run_id, shard))
        self.listener.listen(16)
        self.listener.setblocking(False)
        for fd in (self.timer.fd, self.wake_fd, self.listener.fileno()):
            self.ep.register(fd, select.EPOLLIN)
        self.table.header["relay_pid"] = os.getpid()

    # ---- lifecycle
    def close(self) -> None:
        for link in list(self.links.values()):
            self._close_link(link)
        for conn in self.conns.values():
            conn.close()
        self.listener.close()
        self.timer.close()
        self.ep.close()
        self._gen = self._up = None  # views into the table's mapping: gone before it is unmapped
        self.table.close()

    def serve_forever(self) -> None:
        poll, release, rx_dirs = self.ep.poll, self._release_due, self.rx_dirs
        timer_fd, wake_fd, listen_fd = self.timer.fd, self.wake_fd, self.listener.fileno()
        now_ns = time.monotonic_ns
        previous = now_ns()
        while True:
            heap = self.heap
            entered = now_ns()
            # A frame due within the lead: poll without sleeping until it is (frames keep being read meanwhile).
            spinning = bool(heap) and heap[0][0] - entered <= self.timer_lead_ns
            events = poll(0 if spinning else -1)
            woke = now_ns()
            if not spinning and woke - entered > self.wake_ns:
                # Frames that woke us arrived about one wake-up latency ago (never before we started waiting).
                arrival = max(entered, woke - self.wake_ns)
            elif self.last_write_ns > previous:
                # No sleep: a frame readable now was queued since the last round began. Mid-path, that is while
                # one of our own writes was forwarded through a node, so stamp it at the last write rather than
                # at the read, tens of microseconds later (that lag otherwise adds up hop after hop).
                arrival = self.last_write_ns
            else:
                arrival = 0
            previous = entered
            release()
            for fd, ev in events:
                d = rx_dirs.get(fd)
                if d is not None:
                    self._receive(d, ev, arrival)
                elif fd == timer_fd:
                    self.timer.drain()
                    if entered < self.armed_ns <= woke:
                        self._learn_wake_latency(woke - self.armed_ns)
                elif fd == wake_fd:
                    self._on_wake()
                elif fd == listen_fd:
                    self._accept()
                elif fd in self.conns:
                    self._on_control(self.conns[fd])
            release()
            heap = self.heap
            if heap and heap[0][0] - self.timer_lead_ns != self.armed_ns:
                self.armed_ns = heap[0][0] - self.timer_lead_ns
                self.timer.arm_at_ns(self.armed_ns)

    def _learn_wake_latency(self, sample_ns: int) -> None:
        """Track how long waking from epoll takes (EWMA of timer wake-ups, each sample capped at 200 us)."""
        self.wake_ns += (min(sample_ns, 200_000) - self.wake_ns) // 16

    # ---- data path
    def _receive(self, d: _Direction, ev: int, arrival_ns: int = 0) -> None:
        """Read a burst of frames from one TAP and admit each (down, loss, rate, delay), in arrival order.

        ``arrival_ns`` (non-zero when this read follows a wake-up from sleep) is when the first frame arrived,
        estimated from the measured wake-up latency; later frames of the burst are stamped when read.
        """
        read, now_ns, heap = os.read, time.monotonic_ns, self.heap
        fd = d.in_fd
        link = d.link
        if self._gen[link.slot] != link.gen:  # parameters committed since this link last carried a frame
            self._refresh(link)
        for _ in range(READ_BURST_FRAMES):
            try:
                frame = read(fd, MAX_FRAME_BYTES)
            except BlockingIOError:
                if ev & (select.EPOLLERR | select.EPOLLHUP):
                    self._lose_link(d.link, f"error condition on the TAP fd (epoll events {ev:#x})")
                return
            except OSError as exc:
                self._lose_link(d.link, f"reading direction {d.index}: {exc}")
                return
            now = now_ns()
            if arrival_ns:
                now, arrival_ns = arrival_ns, 0
            d.rx += 1
            if not d.up:
                d.drop_down += 1
                continue
            if d.loss and d.rng.random() < d.loss:
                d.drop_loss += 1
                continue
            if d.rate_bps:
                start = d.busy_until if d.busy_until > now else now
                if (start - now) * d.rate_bps / 8e9 + len(frame) > self.queue_limit_bytes:
                    d.drop_queue += 1
                    continue
                d.busy_until = start + int(len(frame) * 8e9 / d.rate_bps)
                due = d.busy_until + d.delay_ns
            else:
                due = now + d.delay_ns
            if due <= now and d.tail_due <= now:
                self._write(d, frame)
                continue
            if d.inflight >= self.inflight_limit_frames:
                d.drop_queue += 1
                continue
            if due < d.tail_due:
                due = d.tail_due
            d.tail_due = due
            d.inflight += 1
            heapq.heappush(heap, (due, next(self.counter), d, d.epoch, frame))

    def _release_due(self) -> None:
        """Write every frame that is due.

        The timer is armed ``timer_lead_ns`` early because waking from epoll takes time; the event loop then polls
        without sleeping until the frame is due, so reading never stalls behind a dense release schedule.
        """
        heap = self.heap
        if not heap:
            return
        now = time.monotonic_ns()
        pop = heapq.heappop
        while heap and heap[0][0] <= now:
            due, _n, d, epoch, frame = pop(heap)
            d.inflight -= 1
            if epoch != d.epoch:
                d.drop_down += 1
                continue
            late = now - due
            d.delayed += 1
            d.late_ns_sum += late
            if late > d.late_ns_max:
                d.late_ns_max = late
            self._write(d, frame)

    def _write(self, d: _Direction, frame: bytes) -> None:
        try:
            self.last_write_ns = time.monotonic_ns()
            os.write(d.out_fd, frame)
            d.tx += 1
        except (BlockingIOError, InterruptedError):
            d.drop_write += 1
        except OSError as exc:
            if exc.errno in (77, 19, 9):  # EBADFD, ENODEV, EBADF: the receiving TAP is gone
                self._lose_link(d.link, f"writing direction {d.index}: {exc}")
            else:  # EIO when the receiving interface is admin down, ENOBUFS, ...
                d.drop_write += 1

    # ---- parameters
    def _on_wake(self) -> None:
        """A commit: apply at once the links whose up/down changed; the others when their next frame comes.

        Every tick changes every link's delay, and applying thousands of records one by one in Python took the
        relay ~9 ms per tick at shell1 size, during which it preempted whatever ran on its core (the driver,
        often). A delay, loss or rate matters only to the next frame, so :meth:`_receive` checks the record's
        generation (one array read per burst) and applies it then: the frame still gets the parameters in force
        when it arrived, as :meth:`Relay.commit` promises. Carrier changes are visible to the kernel and the
        routing daemons and drop what is in flight, so they are applied now, found by one vectorised comparison.
        """
        try:
            os.eventfd_read(self.wake_fd)
        except BlockingIOError:
            pass
        gen = self.table.generation  # read before the records: a commit writing now is seen by the next wake-up
        if gen == self.applied_gen:
            return
        if self.links:
            changed = np.flatnonzero(self._gen > self.applied_gen)
            changed = changed[self._present[changed]]
            flipped = changed[(self._up[changed] != self._applied_up[changed]).any(axis=1)]
            for slot in flipped.tolist():
                self._refresh(self.links[slot])
        self.applied_gen = gen
        self.table.header["applied_generation"] = gen

    def _refresh(self, link: _Link, wait: bool = False) -> None:
        """Apply the slot's current record to the link if it can be read consistently now.

        A record caught mid-write (a commit in progress) is left for later: the link keeps its parameters and its
        old generation, so its next frame, or the wake-up that ends the commit, tries again. ``wait`` (adding a
        link, when the controller waits for the answer and writes nothing) spins until it is consistent.
        """
        record = self.table.read_record(link.slot, 1000 if wait else 3)
        if record is None:
            return
        link.gen, *params = record
        self._apply(link, *params)

    def _apply(self, link: _Link, delay_s, loss, rate_bps, up) -> None:
        for d in link.dirs:
            i = d.index
            d.apply(delay_s[i], loss[i], rate_bps[i], bool(up[i]))
        self._applied_up[link.slot] = up
        carrier = all(d.up for d in link.dirs)
        if carrier != link.carrier:
            link.carrier = carrier
            for fd in link.fds:
                try:
                    tapdev.set_carrier(fd, carrier)
                except OSError as exc:
                    log.warning("delayline: link %s: TUNSETCARRIER %s failed: %s", link.describe(), carrier, exc)
            log.info("delayline: link %s carrier %s", link.describe(), "on" if carrier else "off")

    # ---- links
    def _add_link(self, slot: int, names: list, fds: list) -> None:
        if not 0 <= slot < self.table.n_slots:
            raise ValueError(f"slot {slot} outside the table (0..{self.table.n_slots - 1})")
        if slot in self.links:
            raise ValueError(f"slot {slot} already holds link {self.links[slot].describe()}")
        link = _Link(slot=slot, names=names, fds=(fds[0], fds[1]))
        for index, (src, dst) in enumerate(((fds[0], fds[1]), (fds[1], fds[0]))):
            link.dirs.append(_Direction(link, index, src, dst, seed=f"{self.seed}:{self.slot_base + slot}:{index}"))
        self._refresh(link, wait=True)
        self._present[slot] = True
        for fd in fds:
            os.set_blocking(fd, False)
        for d in link.dirs:
            self.ep.register(d.in_fd, select.EPOLLIN)
            self.rx_dirs[d.in_fd] = d
        self.links[slot] = link
        log.debug("delayline: link %s added", link.describe())

    def _close_link(self, link: _Link) -> None:
        for d in link.dirs:
            d.epoch += 1  # anything still queued for it is discarded on release
            self.rx_dirs.pop(d.in_fd, None)
            try:
                self.ep.unregister(d.in_fd)
            except OSError:
                pass
        for fd in link.fds:
            os.close(fd)
        self.links.pop(link.slot, None)
        self._present[link.slot] = False

    def _lose_link(self, link: _Link, reason: str) -> None:
        if self.links.get(link.slot) is not link:
            return
        log.warning("delayline: link %s dropped: %s", link.describe(), reason)
        self._close_link(link)

    # ---- control socket
    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        self.conns[conn.fileno()] = conn
        self.ep.register(conn.fileno(), select.EPOLLIN)

    def _on_control(self, conn: socket.socket) -> None:
        try:
            data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 2)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        if not data:
            self.ep.unregister(conn.fileno())
            del self.conns[conn.fileno()]
            conn.close()
            return
        try:
            reply = self._handle(json.loads(data), fds)
        except Exception as exc:  # the reply carries the error to the controller, which raises it
            for fd in fds:
                if all(fd not in link.fds for link in self.links.values()):
                    os.close(fd)
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        conn.send(json.dumps(reply).encode())

    def _handle(self, msg: dict, fds: list) -> dict:
        op = msg.get("op")
        if op == "ping":
            return {"ok": True, "pid": os.getpid(), "applied_generation": self.applied_gen}
        if op == "add":
            if len(fds) != 2:
                raise ValueError(f"add of slot {msg.get('slot')} needs 2 TAP fds, got {len(fds)}")
            self._add_link(int(msg["slot"]), list(msg["names"]), fds)
            return {"ok": True}
        if op == "remove":
            link = self.links.get(int(msg["slot"]))
            if link is None:
                raise KeyError(f"no link in slot {msg['slot']}")
            self._close_link(link)
            log.info("delayline: link %s removed", link.describe())
            return {"ok": True}
        if op == "set":  # one link, one message: for comparison with the table, and for debugging
            link = self.links[int(msg["slot"])]
            self._refresh(link)  # on top of the table's current record, which a later frame must not re-apply
            cur = [[d.delay_ns / 1e9 for d in link.dirs], [d.loss for d in link.dirs],
                   [d.rate_bps for d in link.dirs], [d.up for d in link.dirs]]
            for i in ([0, 1] if msg.get("direction", "both") == "both" else [DIRECTIONS[msg["direction"]]]):
                for k, name in enumerate(PARAM_FIELDS):
                    if msg.get(name) is not None:
                        cur[k][i] = msg[name]
            self._apply(link, *cur)
            return {"ok": True}
        if op == "stats":
            for link in self.links.values():  # parameters as committed, also of links no frame has crossed since
                if self._gen[link.slot] != link.gen:
                    self._refresh(link)
            return {"ok": True, "wake_latency_us": self.wake_ns / 1e3, "timer_lead_us": self.timer_lead_ns / 1e3,
                    "policy": "SCHED_FIFO" if os.sched_getscheduler(0) == os.SCHED_FIFO else "SCHED_OTHER",
                    "links": {str(s): {"names": l.names, "carrier": l.carrier,
                                                   "dirs": [d.counters() for d in l.dirs]}
                                          for s, l in self.links.items()}}
        raise ValueError(f"unknown control op {op!r}")


def main(argv=None) -> int:
    """Entry point of ``python -m lasernet.emulation.delayline``: run one relay until SIGTERM/SIGINT."""
    p = argparse.ArgumentParser(prog="python -m lasernet.emulation.delayline", description=__doc__.split("\n")[0])
    p.add_argument("--run-id", required=True)
    p.add_argument("--table", required=True, help="shared-memory parameter table (created by the controller)")
    p.add_argument("--wake-fd", type=int, required=True, help="inherited eventfd written after each commit")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--queue-limit-bytes", type=int, default=DEFAULT_QUEUE_LIMIT_BYTES)
    p.add_argument("--inflight-limit-frames", type=int, default=DEFAULT_INFLIGHT_LIMIT_FRAMES)
    p.add_argument("--rt-priority", type=int, default=10, help="SCHED_FIFO priority, 0 to stay SCHED_OTHER")
    p.add_argument("--timer-lead-us", type=int, default=50,
                   help="arm the timer this early and poll without sleeping until due (epoll wake-up latency), "
                        "microseconds")
    p.add_argument("--parent-pid", type=int, default=0, help="exit at once if this process is already gone")
    p.add_argument("--shard", type=int, default=0, help="which of the run's relays this is (names its socket)")
    p.add_argument("--slot-base", type=int, default=0, help="the run's link slot that this relay's slot 0 is")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s delayline[{os.getpid()}] %(message)s")
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if args.parent_pid and os.getppid() != args.parent_pid:
        log.error("delayline: controller %d already gone; exiting", args.parent_pid)
        return 1
    _libc.prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)

    def stop(signum, _frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    relay = RelayProcess(validate_run_id(args.run_id), args.table, args.wake_fd, args.seed,
                         args.queue_limit_bytes, args.inflight_limit_frames, args.timer_lead_us * 1000,
                         args.shard, args.slot_base)
    _take_realtime_priority(args.rt_priority)
    log.info("delayline: run %s shard %d serving %d slots from %d", args.run_id, args.shard, relay.table.n_slots,
             args.slot_base)
    try:
        relay.serve_forever()
    finally:
        relay.close()
        log.info("delayline: stopped")
    return 0


# --------------------------------------------------------------------------------------------------------------
# The controller: starts the relay, makes links, writes parameters, stops everything it made
# --------------------------------------------------------------------------------------------------------------

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

    TAPs are persistent and live in the node namespaces (``tap_mode``: see ``tapdev``). Teardown is ``stop()`` and
    deleting the namespaces, in either order: closing a persistent TAP's fd is cheap (~0.04 ms measured), and the
    slow part, unregistering devices one at a time (~16 ms each), never happens: a namespace takes its TAPs with
    it in one batch. In the default ``"inside"`` mode the relay's fds keep the node namespaces alive, so they
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
        if tap_mode not in tapdev.TAP_MODES:
            raise ValueError(f"tap_mode {tap_mode!r} is not one of {tapdev.TAP_MODES}")
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
        cmd = [sys.executable, "-m", "lasernet.emulation.delayline", "--run-id", self.run_id,
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
        mac_a, mac_b = tapdev.mac_for(slot, 0), tapdev.mac_for(slot, 1)
        tap_a = tapdev.create_tap(ns_a, ifname_a, mac_a, mtu=mtu, mode=self.tap_mode)
        try:
            tap_b = tapdev.create_tap(ns_b, ifname_b, mac_b, mtu=mtu, mode=self.tap_mode)
        except BaseException:
            os.close(tap_a.fd)
            tapdev.delete_tap(ns_a, ifname_a)
            raise
        ends = LinkEnds(slot, (ns_a, ifname_a, tapdev.mac_text(mac_a)), (ns_b, ifname_b, tapdev.mac_text(mac_b)))
        try:
            self.request({"op": "add", "slot": slot, "names": [f"{ns_a}:{ifname_a}", f"{ns_b}:{ifname_b}"]},
                         fds=[tap_a.fd, tap_b.fd])
        except BaseException:
            tapdev.delete_tap(ns_a, ifname_a)
            tapdev.delete_tap(ns_b, ifname_b)
            raise
        finally:
            os.close(tap_a.fd)
            os.close(tap_b.fd)
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
            tapdev.delete_tap(ends.a[0], ends.a[1])
            tapdev.delete_tap(ends.b[0], ends.b[1])

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
        """The relay's view of this host: ``wake_latency_us`` (mean epoll wake-up), ``timer_lead_us``, ``policy``."""
        reply = self.request({"op": "stats"})
        return {k: reply[k] for k in ("wake_latency_us", "timer_lead_us", "policy")}

    def created(self) -> dict:
        """Every kernel object and process this controller made, by name, for cleanup and the run's state file."""
        return {"run_id": self.run_id, "shard": self.shard, "relay_pid": self.pid, "table_path": self.table_path,
                "control_socket": "@" + control_address_for(self.run_id, self.shard)[1:].decode(),
                "taps": [list(end[:2]) for ends in self.links.values() for end in (ends.a, ends.b)]}

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
            if tapdev.delete_tap(ns, ifname):
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
    return b"lasernet.emulation.delayline" in argv and run_id.encode() in argv


if __name__ == "__main__":
    sys.exit(main())
