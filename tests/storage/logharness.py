"""Shared helpers for the partition-log tests: log factories and a byte-for-byte reader."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from storage.api import AppendEntry, PartitionLog, RecordBatch
from storage.faults import SimFileSystem
from storage.fileio import OsFileSystem
from storage.log import FileLog
from storage.memory import MemoryLog

SMALL = {"segment_bytes": 1024, "index_interval_bytes": 128}


class ManualClock:
    """Milliseconds that move only when a test says so."""

    def __init__(self, now_ms: int = 1_000_000) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def entry(values: list[bytes], *, keys: list[bytes | None] | None = None,
          ts: int | None = None) -> AppendEntry:
    return AppendEntry(values, keys=keys, timestamp_ms=ts)


def read_all(log: PartitionLog, start: int | None = None) -> list[tuple[int, bytes]]:
    """Every (offset, value) from start (default start_offset) to the end, page by page."""
    offset = log.start_offset if start is None else start
    out: list[tuple[int, bytes]] = []
    while offset < log.end_offset:
        batches = log.read(offset, max_bytes=700)
        assert batches, f"no progress at {offset} (end {log.end_offset})"
        for b in batches:
            assert b.base_offset == offset, (b.base_offset, offset)
            out.extend((b.base_offset + i, v) for i, v in enumerate(b.values))
            offset = b.next_offset
    return out


def flatten(batches: list[RecordBatch]) -> list[tuple[int, bytes]]:
    return [(b.base_offset + i, v) for b in batches for i, v in enumerate(b.values)]


LogFactory = Callable[[ManualClock], PartitionLog]


def make_factory(kind: str, tmp_path: Path) -> tuple[LogFactory, Callable[[], PartitionLog] | None]:
    """(open a fresh log, reopen the same log or None for memory) for one implementation."""
    if kind == "memory":
        return (lambda clock: MemoryLog(clock_ms=clock)), None
    fs: OsFileSystem | SimFileSystem = OsFileSystem() if kind == "file-os" else SimFileSystem()
    directory = str(tmp_path / "p0") if kind == "file-os" else "/data/p0"
    state: dict[str, ManualClock] = {}

    def fresh(clock: ManualClock) -> PartitionLog:
        state["clock"] = clock
        return FileLog.open(fs, directory, clock_ms=clock, **SMALL)

    def reopen() -> PartitionLog:
        return FileLog.open(fs, directory, clock_ms=state["clock"], **SMALL)

    return fresh, reopen
