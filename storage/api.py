"""The storage contracts the broker is written against: the partition log and the state store.

Two implementations of each exist (file and memory) and pass the same tests.
This module holds only types: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Headers = dict[str, Any]


@dataclass(frozen=True, slots=True)
class RecordBatch:
    """Records appended together: columnar, so one msgpack call encodes or decodes them all.

    `keys` and `headers` are None when no record in the batch has one; otherwise
    they are lists as long as `values`, with None for records that have none.
    """

    base_offset: int
    timestamp_ms: int
    values: list[bytes]
    keys: list[bytes | None] | None = None
    headers: list[Headers | None] | None = None

    @property
    def count(self) -> int:
        return len(self.values)

    @property
    def next_offset(self) -> int:
        """The offset just past this batch's last record."""
        return self.base_offset + len(self.values)

    def key(self, i: int) -> bytes | None:
        return None if self.keys is None else self.keys[i]

    def header(self, i: int) -> Headers | None:
        return None if self.headers is None else self.headers[i]

    def slice(self, start: int, stop: int) -> RecordBatch:
        """The records with offsets in [start, stop), clamped to this batch."""
        lo = max(start, self.base_offset) - self.base_offset
        hi = min(stop, self.next_offset) - self.base_offset
        hi = max(hi, lo)
        return RecordBatch(
            self.base_offset + lo,
            self.timestamp_ms,
            self.values[lo:hi],
            None if self.keys is None else self.keys[lo:hi],
            None if self.headers is None else self.headers[lo:hi],
        )


@dataclass(frozen=True, slots=True)
class AppendEntry:
    """One batch to append; `timestamp_ms` None means "now" by the log's clock."""

    values: Sequence[bytes]
    keys: Sequence[bytes | None] | None = None
    headers: Sequence[Headers | None] | None = None
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Damage:
    """Corruption found in the middle of a partition: never cut, never served."""

    first_offset: int
    last_offset: int  # inclusive; best known bound
    segment: str
    position: int
    reason: str


class PartitionLog(Protocol):
    """One partition: an ordered, append-only log. Synchronous.

    Offsets are assigned at append and never reused. `append_many` writes but does
    not make durable; `sync()` makes durable everything written before it began.
    Threads: one thread appends and reads; `sync()` alone may run in one other
    thread at the same time (the group committer's worker).
    """

    @property
    def start_offset(self) -> int:
        """The first retained offset."""
        ...

    @property
    def end_offset(self) -> int:
        """The offset the next appended record will get."""
        ...

    @property
    def damage(self) -> Damage | None: ...

    def append_many(self, entries: Sequence[AppendEntry]) -> list[int]:
        """Append the batches with one write; return each batch's base offset.

        Raises StorageFull (nothing of this call was kept) or StorageError.
        """
        ...

    def sync(self) -> None:
        """Make every append so far durable (fdatasync). Raises FsyncFailed: fatal."""
        ...

    def read(self, offset: int, max_bytes: int = 1 << 20, max_records: int | None = None
             ) -> list[RecordBatch]:
        """Batches from `offset` on, trimmed to start at `offset`, bounded by max_bytes
        (at least one batch is returned when any exists). Empty at the end.

        Raises OffsetOutOfRange below start_offset, PartitionDamaged inside damage.
        """
        ...

    def offset_for_time(self, timestamp_ms: int) -> int:
        """The first offset whose timestamp is >= timestamp_ms (end_offset if none)."""
        ...

    def oldest_timestamp_ms(self) -> int | None: ...

    def timestamp_of(self, offset: int) -> int | None:
        """The append timestamp of the record at offset, None if not retained."""
        ...

    def size_bytes(self) -> int: ...

    def truncate_before(self, offset: int) -> None:
        """Drop everything below offset (whole segments are deleted; start_offset moves)."""
        ...

    def apply_retention(self, now_ms: int, max_age_ms: int, max_bytes: int,
                        keep_from: int | None = None) -> int:
        """Delete whole segments older than max_age_ms or beyond max_bytes, never at or
        past keep_from (when given). Returns the new start_offset.
        """
        ...

    def close(self) -> None:
        """Sync, write the checkpoint and the clean-shutdown marker, close files."""
        ...


class StateStore(Protocol):
    """A small durable key-value store for group state, dedup ids and topic metadata.

    Namespaced keys; values are msgpack-able. Reads come from memory. Writes are
    applied in memory at once and are durable when `commit()` returns (group
    commit: concurrent commits share one write and one fsync).
    """

    def get(self, ns: str, key: str) -> Any | None: ...

    def items(self, ns: str) -> Iterable[tuple[str, Any]]: ...

    def put(self, ns: str, key: str, value: Any) -> None: ...

    def delete(self, ns: str, key: str) -> None: ...

    async def commit(self) -> None:
        """Durable once returned, under the store's fsync policy. Raises StorageError."""
        ...

    async def close(self) -> None: ...
