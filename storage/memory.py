"""MemoryLog: the PartitionLog contract held in memory, for tests and `durability=none` demos.

It keeps each batch encoded exactly as the file log writes it (storage.batch), so
the two agree on sizes, on what a read returns (fresh lists, never the caller's)
and on validation. Each batch plays the part of a segment for retention, and the
newest batch is never deleted, as the file log never deletes its active segment.
Nothing here is durable: sync() does nothing.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Callable, Sequence

from storage import batch as fmt
from storage.api import AppendEntry, Damage, RecordBatch
from storage.errors import OffsetOutOfRange, StorageError


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class MemoryLog:
    """An in-memory PartitionLog. Synchronous; not thread-safe."""

    def __init__(self, start_offset: int = 0, clock_ms: Callable[[], int] | None = None) -> None:
        if start_offset < 0:
            raise ValueError("start_offset must be >= 0")
        self._clock = clock_ms or wall_clock_ms
        self._start = start_offset
        self._end = start_offset
        self._bases: list[int] = []  # base offset of each retained batch, ascending
        self._blobs: list[bytes] = []
        self._timestamps: list[int] = []
        self._size = 0
        self._closed = False

    @property
    def start_offset(self) -> int:
        return self._start

    @property
    def end_offset(self) -> int:
        return self._end

    @property
    def damage(self) -> Damage | None:
        return None

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the log is closed")

    def append_many(self, entries: Sequence[AppendEntry]) -> list[int]:
        self._check_open()
        now: int | None = None
        offset = self._end
        blobs: list[bytes] = []
        stamps: list[int] = []
        bases: list[int] = []
        for e in entries:
            ts = e.timestamp_ms
            if ts is None:
                if now is None:
                    now = self._clock()
                ts = now
            blobs.append(fmt.encode(offset, ts, e.values, e.keys, e.headers))
            stamps.append(ts)
            bases.append(offset)
            offset += len(e.values)
        self._bases += bases
        self._blobs += blobs
        self._timestamps += stamps
        self._size += sum(map(len, blobs))
        self._end = offset
        return bases

    def sync(self) -> None:
        self._check_open()

    def _index_of(self, offset: int) -> int:
        """Index of the batch holding offset (start_offset <= offset < end_offset)."""
        return bisect_right(self._bases, offset) - 1

    def read(self, offset: int, max_bytes: int = 1 << 20, max_records: int | None = None
             ) -> list[RecordBatch]:
        self._check_open()
        if offset < self._start or offset > self._end:
            raise OffsetOutOfRange(
                f"offset {offset} outside [{self._start}, {self._end}]")
        out: list[RecordBatch] = []
        if offset == self._end:
            return out
        budget = max_bytes
        stop = self._end if max_records is None else min(self._end, offset + max_records)
        i = self._index_of(offset)
        while offset < stop:
            blob = self._blobs[i]
            if out and len(blob) > budget:
                break
            b = fmt.decode(blob)
            if b.base_offset < offset or b.next_offset > stop:
                b = b.slice(offset, stop)
            out.append(b)
            budget -= len(blob)
            offset = b.next_offset
            i += 1
        return out

    def offset_for_time(self, timestamp_ms: int) -> int:
        self._check_open()
        for base, ts in zip(self._bases, self._timestamps, strict=True):
            if ts >= timestamp_ms:
                return max(base, self._start)
        return self._end

    def oldest_timestamp_ms(self) -> int | None:
        return self.timestamp_of(self._start)

    def timestamp_of(self, offset: int) -> int | None:
        self._check_open()
        if offset < self._start or offset >= self._end:
            return None
        return self._timestamps[self._index_of(offset)]

    def size_bytes(self) -> int:
        return self._size

    def _drop_first(self, n: int) -> None:
        self._size -= sum(map(len, self._blobs[:n]))
        del self._bases[:n], self._blobs[:n], self._timestamps[:n]

    def truncate_before(self, offset: int) -> None:
        self._check_open()
        if offset > self._end:
            raise OffsetOutOfRange(f"cannot truncate before {offset}: end is {self._end}")
        if offset <= self._start:
            return
        # batches wholly below offset go; one straddling it stays, hidden by start_offset
        n = bisect_right(self._bases, offset) - 1
        if n >= 0 and fmt.decode(self._blobs[n]).next_offset <= offset:
            n += 1
        self._drop_first(max(n, 0))
        self._start = offset

    def apply_retention(self, now_ms: int, max_age_ms: int, max_bytes: int,
                        keep_from: int | None = None) -> int:
        """See PartitionLog.apply_retention; a negative limit means no limit."""
        self._check_open()
        n = 0
        size = self._size
        last = len(self._blobs) - 1  # the newest batch stands for the active segment
        while n < last:
            nxt = self._bases[n + 1]
            if keep_from is not None and nxt > keep_from:
                break
            too_old = max_age_ms >= 0 and self._timestamps[n] < now_ms - max_age_ms
            too_big = max_bytes >= 0 and size > max_bytes
            if not (too_old or too_big):
                break
            size -= len(self._blobs[n])
            n += 1
        if n:
            self._start = max(self._start, self._bases[n])
            self._drop_first(n)
        return self._start

    def close(self) -> None:
        self._closed = True
