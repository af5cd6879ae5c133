"""Sparse per-segment indexes: offset → byte position, and timestamp → offset.

Both are arrays of fixed-size entries kept in memory and appended to their file
(`.index`, `.timeindex`) in batches. Index files carry no checksum: they are
derived data, validated on load (entries strictly increasing and inside the
segment) and rebuilt from the log when missing or bad. This module does no I/O
of its own; the segment hands it bytes and writes what it returns.

Offsets are stored relative to the segment's base offset (u32), positions as u32:
a segment is rolled long before either could overflow.
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_right

OFFSET_ENTRY = struct.Struct("<II")  # relative offset, byte position
TIME_ENTRY = struct.Struct("<qI")  # max timestamp so far, relative offset of that batch
MAX_RELATIVE = 0xFFFFFFFF


class OffsetIndex:
    """Relative offset → position of the batch starting at that offset."""

    __slots__ = ("flushed", "positions", "relatives")

    def __init__(self) -> None:
        self.relatives = array("I")
        self.positions = array("I")
        self.flushed = 0  # entries already written to the file

    def __len__(self) -> int:
        return len(self.relatives)

    def add(self, relative: int, position: int) -> None:
        self.relatives.append(relative)
        self.positions.append(position)

    def last_position(self) -> int:
        return self.positions[-1] if self.positions else 0

    def lookup(self, relative: int) -> tuple[int, int]:
        """(relative offset, position) of the last entry at or below `relative`; (0, 0) if none."""
        i = bisect_right(self.relatives, relative) - 1
        if i < 0:
            return 0, 0
        return self.relatives[i], self.positions[i]

    def load(self, data: bytes, size: int, max_relative: int) -> bool:
        """Load entries from file bytes, keeping the valid prefix.

        Valid: both columns strictly increasing, position < size, relative offset <
        max_relative. Returns True if every entry in the file was valid.
        """
        usable = len(data) - len(data) % OFFSET_ENTRY.size
        last_rel = last_pos = -1
        for rel, pos in OFFSET_ENTRY.iter_unpack(data[:usable]):
            if rel <= last_rel or pos <= last_pos or pos >= size or rel >= max_relative:
                self.flushed = len(self.relatives)
                return False
            self.add(rel, pos)
            last_rel, last_pos = rel, pos
        self.flushed = len(self.relatives)
        return usable == len(data)

    def drop_from(self, position: int) -> None:
        """Forget entries at or after `position` (they point past the verified log)."""
        i = bisect_right(self.positions, position - 1)
        del self.relatives[i:], self.positions[i:]
        self.flushed = min(self.flushed, i)

    def pending(self) -> bytes:
        """Entries not yet written to the file, encoded; marks them written."""
        start = self.flushed
        self.flushed = len(self.relatives)
        return b"".join(OFFSET_ENTRY.pack(r, p) for r, p in
                        zip(self.relatives[start:], self.positions[start:], strict=True))

    def to_bytes(self) -> bytes:
        self.flushed = 0
        return self.pending()


class TimeIndex:
    """Max timestamp so far → relative offset of the batch where that maximum was reached.

    An entry (T, r) promises that every batch up to and including the one at r has a
    timestamp <= T, so a lookup for t may start at the last entry with T < t.
    """

    __slots__ = ("flushed", "relatives", "timestamps")

    def __init__(self) -> None:
        self.timestamps: list[int] = []
        self.relatives = array("I")
        self.flushed = 0

    def __len__(self) -> int:
        return len(self.timestamps)

    def last_timestamp(self) -> int | None:
        return self.timestamps[-1] if self.timestamps else None

    def maybe_add(self, timestamp: int, relative: int) -> None:
        """Add an entry if it raises the maximum and moves forward."""
        if self.timestamps and (timestamp <= self.timestamps[-1]
                                or relative <= self.relatives[-1]):
            return
        self.timestamps.append(timestamp)
        self.relatives.append(relative)

    def lookup(self, timestamp: int) -> int:
        """Relative offset to start scanning from for the first batch with ts >= timestamp."""
        i = bisect_right(self.timestamps, timestamp - 1) - 1
        return self.relatives[i] if i >= 0 else 0

    def load(self, data: bytes, max_relative: int) -> bool:
        """Like OffsetIndex.load: keep the valid prefix, True if all of it was valid."""
        usable = len(data) - len(data) % TIME_ENTRY.size
        for ts, rel in TIME_ENTRY.iter_unpack(data[:usable]):
            if rel >= max_relative or (self.timestamps and (
                    ts <= self.timestamps[-1] or rel <= self.relatives[-1])):
                self.flushed = len(self.timestamps)
                return False
            self.timestamps.append(ts)
            self.relatives.append(rel)
        self.flushed = len(self.timestamps)
        return usable == len(data)

    def drop_from_relative(self, relative: int) -> None:
        i = bisect_right(self.relatives, relative - 1)
        del self.timestamps[i:], self.relatives[i:]
        self.flushed = min(self.flushed, i)

    def pending(self) -> bytes:
        start = self.flushed
        self.flushed = len(self.timestamps)
        return b"".join(TIME_ENTRY.pack(t, r) for t, r in
                        zip(self.timestamps[start:], self.relatives[start:], strict=True))

    def to_bytes(self) -> bytes:
        self.flushed = 0
        return self.pending()
