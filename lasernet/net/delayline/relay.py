"""The delay-line relay: a process that moves Ethernet frames between the two TAPs of each link, late by design.

Why it exists: a kernel without ``sch_netem`` cannot delay a link's frames in a qdisc. Instead every emulated
link is a pair of TAP interfaces, one in each node's namespace (:mod:`lasernet.net.tap`), and this relay reads a
frame from one TAP and writes it to the other after that direction's delay. It is the program the client
(:mod:`lasernet.net.delayline.client`) starts as ``python -m lasernet.net.delayline.relay``.

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
   ``timer_lead_us`` (default 50 us) early, since waking from epoll takes tens of microseconds; until the frame
   is due the loop polls without sleeping, so frames arriving meanwhile are still read on time. The lead is
   deliberately fixed and small: a lead learnt from the wake-up latency (tried: the 90th percentile of the last
   64 wake-ups) feeds on itself on a busy machine with few CPUs, spinning SCHED_FIFO starves the kernel work the
   other processes need, wake-ups get slower, the lead grows to milliseconds and so does the RTT error of a
   multi-hop path. Symmetrically, a frame whose arrival woke the relay from sleep is stamped one learnt wake-up
   latency before it was read (an EWMA of the timer's own wake-ups, never earlier than the moment the relay went
   to sleep). FIFO order per direction is kept: a frame is never released before the frame read before it
   (light sent later does not overtake light sent earlier), so after a delay decrease new frames wait behind
   older ones. Frames in flight are capped at ``inflight_limit_frames`` per direction (default 100,000) to bound
   memory.

Parameters come from the shared-memory table (:mod:`lasernet.net.delayline.table`). On the table's eventfd the
relay applies at once the records whose ``up`` changed (carrier), publishes ``applied_generation``, and applies
any other changed record when its link next carries a frame (a generation check per read burst).

**Links** are added and removed at run time through a UNIX SOCK_SEQPACKET control socket in the abstract
namespace: the client passes the two TAP fds with SCM_RIGHTS plus the slot number and the relay answers with
JSON. One end of a link may instead be a connected UDP socket (``"taps": [true, false]``): the half of a
link whose other end is on another machine, where that machine's relay holds the other half (no carrier is set
on a socket). A TAP deleted underneath the relay (``ip link del``, or its namespace deleted when TAPs were made in
``move`` mode) shows up as EPOLLERR/EBADFD: that link is dropped with a log line, the others go on.

The relay takes SCHED_FIFO for itself, asks the kernel to SIGTERM it if its controller dies (PR_SET_PDEATHSIG:
no orphans), and runs until SIGTERM or SIGINT. A shard (``--shard``, ``--slot-base``) serves the run's link
slots from ``slot_base`` as its own slots ``0..n-1``; loss generators are seeded by the run's slot, so a run
behaves the same however it is sharded.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import logging
import os
import random
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from .. import libc, tap
from .table import DIRECTIONS, PARAM_FIELDS, ParamTable, control_address_for, validate_run_id

log = logging.getLogger("lasernet.delayline")

DEFAULT_QUEUE_LIMIT_BYTES = 150_000
DEFAULT_INFLIGHT_LIMIT_FRAMES = 100_000
READ_BURST_FRAMES = 64
MAX_FRAME_BYTES = 65536


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
    taps: tuple = (True, True)  # which fds are TAPs (carrier); the other end of a cross-machine link is a socket
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
        self.wake_ns_max = self.wake_ns  # the largest that estimate has been: the most a frame was back-dated by
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
        self.timer = libc.TimerFd()
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
        self.wake_ns_max = max(self.wake_ns_max, self.wake_ns)

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
            except ConnectionRefusedError:  # a socket end: the peer machine's relay is not listening (yet)
                continue
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

        Every tick changes every link's delay, and applying thousands of records one by one in Python takes the
        relay milliseconds per tick, during which it preempts whatever runs on its core (the driver, often).
        A delay, loss or rate matters only to the next frame, so :meth:`_receive` checks the record's
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
            for fd, is_tap in zip(link.fds, link.taps):
                if not is_tap:
                    continue
                try:
                    tap.set_carrier(fd, carrier)
                except OSError as exc:
                    log.warning("delayline: link %s: TUNSETCARRIER %s failed: %s", link.describe(), carrier, exc)
            log.info("delayline: link %s carrier %s", link.describe(), "on" if carrier else "off")

    # ---- links
    def _add_link(self, slot: int, names: list, fds: list, taps=(True, True)) -> None:
        if not 0 <= slot < self.table.n_slots:
            raise ValueError(f"slot {slot} outside the table (0..{self.table.n_slots - 1})")
        if slot in self.links:
            raise ValueError(f"slot {slot} already holds link {self.links[slot].describe()}")
        link = _Link(slot=slot, names=names, fds=(fds[0], fds[1]), taps=(bool(taps[0]), bool(taps[1])))
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
                raise ValueError(f"add of slot {msg.get('slot')} needs 2 fds, got {len(fds)}")
            self._add_link(int(msg["slot"]), list(msg["names"]), fds, msg.get("taps", (True, True)))
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
            return {"ok": True, "wake_latency_us": self.wake_ns / 1e3, "wake_latency_us_max": self.wake_ns_max / 1e3,
                    "timer_lead_us": self.timer_lead_ns / 1e3,
                    "policy": "SCHED_FIFO" if os.sched_getscheduler(0) == os.SCHED_FIFO else "SCHED_OTHER",
                    "links": {str(s): {"names": l.names, "carrier": l.carrier,
                                                   "dirs": [d.counters() for d in l.dirs]}
                                          for s, l in self.links.items()}}
        raise ValueError(f"unknown control op {op!r}")


def main(argv=None) -> int:
    """Entry point of ``python -m lasernet.net.delayline.relay``: run one relay until SIGTERM/SIGINT."""
    p = argparse.ArgumentParser(prog="python -m lasernet.net.delayline.relay", description=__doc__.split("\n")[0])
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
    libc.die_with_parent(signal.SIGTERM)
    if args.parent_pid and os.getppid() != args.parent_pid:
        log.error("delayline: controller %d already gone; exiting", args.parent_pid)
        return 1
    libc.set_timer_slack_ns(1)

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


def _take_realtime_priority(priority: int) -> None:
    """SCHED_FIFO at ``priority`` if permitted; log (never hide) when it is not."""
    refused = libc.take_realtime_priority(priority)
    if priority <= 0:
        log.info("delayline: SCHED_FIFO disabled (rt priority 0), running SCHED_OTHER")
    elif refused is not None:
        log.warning("delayline: SCHED_FIFO priority %d not permitted (%s); running SCHED_OTHER", priority, refused)
    else:
        log.info("delayline: running SCHED_FIFO priority %d", priority)


if __name__ == "__main__":
    sys.exit(main())
