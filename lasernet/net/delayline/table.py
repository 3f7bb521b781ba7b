"""The delay line's shared-memory parameter table: the driver writes every link's state, the relay reads it.

Per tick the driver changes the delay of every link (and now and then the loss, rate or up/down of some). A
message per link would cost the relay a wake-up and a parse per link; instead the parameters sit in a file in
``/dev/shm`` that both processes map, and one commit publishes them all. The file, named after the run
(:func:`table_path_for`), is a 64-byte header, then one 72-byte record per link slot::

    header : magic "LNDLY1" | version u32 | n_slots u32 | generation u64 | applied_generation u64 | relay pid
    record : seq u32 | pad | gen u64 | delay_s f64[2] | loss f64[2] | rate_bps f64[2] | up u8[2] | pad

Index ``[0]`` is direction a->b (frames the ``a`` end sends), ``[1]`` is b->a. :meth:`ParamTable.set` stages
changes locally; :meth:`ParamTable.commit` copies all staged records in one vectorised step, each record
bracketed by a seqlock ``seq`` (odd while being written, so the reader never applies a torn record), stamps them
with the new generation, bumps the header's generation and writes an eventfd that wakes the relay. The relay
publishes ``applied_generation`` once it has taken a generation in, which :meth:`ParamTable.wait_applied` waits
for. Updating thousands of links is one commit, one wake-up and one vectorised comparison on the relay's side.

Names: a delay line belongs to a run, whose id names its table and its control socket (an abstract UNIX socket,
:func:`control_address_for`, nothing to clean up on disk); a run with several relays (shards) suffixes both
with the shard number. The run id rule is :data:`RUN_ID_MAX_LEN` characters of ``[a-z0-9-]``.
"""

from __future__ import annotations

import mmap
import os
import time

import numpy as np

from ..names import check_label

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

#: A run id names kernel objects and files (the relay's table and control socket): at most this long.
RUN_ID_MAX_LEN = 40


def validate_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is ``[a-z0-9-]`` (at most RUN_ID_MAX_LEN characters), else raise ValueError."""
    return check_label(run_id, "run id", RUN_ID_MAX_LEN)


def _shard_suffix(shard: int) -> str:
    return f"-{int(shard)}" if shard else ""


def table_path_for(run_id: str, shard: int = 0) -> str:
    """The table file of a run's relay ``shard``."""
    return f"/dev/shm/lasernet-{validate_run_id(run_id)}-delayline{_shard_suffix(shard)}"


def control_address_for(run_id: str, shard: int = 0) -> bytes:
    """The abstract UNIX socket address of a run's relay ``shard`` (a leading NUL: not a file)."""
    return f"\0lasernet-{validate_run_id(run_id)}-delayline{_shard_suffix(shard)}".encode()


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

