"""GroupCommitter: grouping, durability modes, failures, shutdown."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Sequence

import pytest

from storage.api import AppendEntry, Damage, PartitionLog, RecordBatch
from storage.committer import MERGE_MAX_BYTES, GroupCommitter
from storage.errors import FsyncFailed, StorageError, StorageFull
from storage.faults import SimFileSystem
from storage.log import FileLog
from storage.memory import MemoryLog

WAIT_S = 10.0  # bound on every wait for a worker thread


class SpyLog:
    """A PartitionLog wrapper that counts calls and can hold sync() until released."""

    def __init__(self, inner: PartitionLog) -> None:
        self.inner = inner
        self.append_calls: list[int] = []  # entries per append_many call
        self.append_records: list[int] = []  # records per append_many call
        self.syncs = 0
        self.hold = False
        self.sync_started = threading.Event()
        self.release = threading.Event()

    @property
    def start_offset(self) -> int:
        return self.inner.start_offset

    @property
    def end_offset(self) -> int:
        return self.inner.end_offset

    @property
    def damage(self) -> Damage | None:
        return self.inner.damage

    def append_many(self, entries: Sequence[AppendEntry]) -> list[int]:
        self.append_calls.append(len(entries))
        self.append_records.append(sum(len(e.values) for e in entries))
        return self.inner.append_many(entries)

    def sync(self) -> None:
        self.sync_started.set()
        if self.hold:
            assert self.release.wait(WAIT_S), "test never released the sync"
        self.syncs += 1
        self.inner.sync()

    def read(self, offset: int, max_bytes: int = 1 << 20, max_records: int | None = None
             ) -> list[RecordBatch]:
        return self.inner.read(offset, max_bytes, max_records)

    def offset_for_time(self, timestamp_ms: int) -> int:
        return self.inner.offset_for_time(timestamp_ms)

    def oldest_timestamp_ms(self) -> int | None:
        return self.inner.oldest_timestamp_ms()

    def timestamp_of(self, offset: int) -> int | None:
        return self.inner.timestamp_of(offset)

    def size_bytes(self) -> int:
        return self.inner.size_bytes()

    def truncate_before(self, offset: int) -> None:
        self.inner.truncate_before(offset)

    def apply_retention(self, now_ms: int, max_age_ms: int, max_bytes: int,
                        keep_from: int | None = None) -> int:
        return self.inner.apply_retention(now_ms, max_age_ms, max_bytes, keep_from)

    def close(self) -> None:
        self.inner.close()


def entries(tag: str, n: int = 1, records: int = 3) -> list[AppendEntry]:
    return [AppendEntry([f"{tag}-{b}-{r}".encode() for r in range(records)]) for b in range(n)]


def values_at(log: PartitionLog, offset: int, count: int) -> list[bytes]:
    out: list[bytes] = []
    for batch in log.read(offset, max_records=count):
        out.extend(batch.values)
    return out[:count]


async def wait_thread(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, WAIT_S)


def test_bad_durability_is_refused() -> None:
    with pytest.raises(ValueError, match="durability"):
        GroupCommitter("always")
    with pytest.raises(ValueError, match="interval_s"):
        GroupCommitter("interval")


async def test_concurrent_appends_share_two_writes_and_two_syncs() -> None:
    log = SpyLog(MemoryLog())
    c = GroupCommitter("sync")
    results = await asyncio.wait_for(
        asyncio.gather(*(c.append(log, entries(f"t{i}", n=2)) for i in range(64))), WAIT_S)
    # With no sync running, the group is split so one half's sync overlaps the other's write.
    # The second half is written while the first half's sync starts, which may cover it.
    # Each half's plain entries are merged into one batch: one entry per write.
    assert log.append_calls == [1, 1] and log.append_records == [192, 192]
    assert log.syncs in (1, 2)
    for i, bases in enumerate(results):
        assert bases == [i * 6, i * 6 + 3]
        assert values_at(log, bases[1], 3) == [f"t{i}-1-{r}".encode() for r in range(3)]
    await c.close()


async def test_appends_arriving_during_a_sync_are_written_at_once_and_wait_for_the_next(
        ) -> None:
    log = SpyLog(MemoryLog())
    log.hold = True
    c = GroupCommitter("sync")
    first = asyncio.ensure_future(c.append(log, entries("first")))
    await wait_thread(log.sync_started)
    later = [asyncio.ensure_future(c.append(log, entries(f"l{i}"))) for i in range(10)]
    await asyncio.sleep(0)  # one turn: every task above has queued its entries
    await asyncio.sleep(0)  # the next: they are written together while the sync runs
    assert log.append_records == [3, 30]
    assert not first.done() and not any(t.done() for t in later)  # nobody before the sync
    log.release.set()
    assert await asyncio.wait_for(first, WAIT_S) == [0]
    got = await asyncio.wait_for(asyncio.gather(*later), WAIT_S)
    assert got == [[3 + 3 * i] for i in range(10)]
    assert log.append_records == [3, 30] and log.syncs == 2
    assert c.groups == 2 and c.syncs == 2
    await c.close()


async def test_plain_entries_of_a_group_merge_into_one_batch_at_their_own_offsets() -> None:
    flog = FileLog.open(SimFileSystem(), "/data/p0")
    log = SpyLog(flog)
    c = GroupCommitter("sync")
    log.hold = True
    first = asyncio.ensure_future(c.append(log, entries("first")))
    await wait_thread(log.sync_started)  # a sync runs: the group below is not split
    plain = [asyncio.ensure_future(c.append(log, entries(f"p{i}", n=2))) for i in range(3)]
    keyed = asyncio.ensure_future(c.append(log, [AppendEntry([b"k"], [b"key"])]))
    last = asyncio.ensure_future(c.append(log, entries("last")))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    # Three callers' six plain entries merge; the keyed one breaks the run.
    assert log.append_calls[1:] == [3] and log.append_records[1:] == [22]
    log.release.set()
    got = await asyncio.wait_for(asyncio.gather(first, *plain, keyed, last), WAIT_S)
    assert got == [[0], [3, 6], [9, 12], [15, 18], [21], [22]]
    assert [len(b.values) for b in flog.read(3)] == [18, 1, 3]
    assert values_at(log, 12, 3) == [b"p1-1-0", b"p1-1-1", b"p1-1-2"]
    assert values_at(log, 22, 1) == [b"last-0-0"]
    await c.close()
    flog.close()


async def test_merged_batches_stay_under_the_merge_cap() -> None:
    log = SpyLog(MemoryLog())
    c = GroupCommitter("sync")
    value = b"v" * (MERGE_MAX_BYTES // 3)
    got = await asyncio.gather(*(c.append(log, [AppendEntry([value])]) for i in range(8)))
    assert [b for [b] in got] == list(range(8))
    # Two halves of four (the split); at most three values fit one merged batch.
    assert log.append_calls == [2, 2] and log.append_records == [4, 4]
    assert all(len(b.values) <= 3 for b in log.read(0))
    await c.close()


async def test_each_log_has_its_own_group() -> None:
    a, b = SpyLog(MemoryLog()), SpyLog(MemoryLog())
    c = GroupCommitter("sync")
    got = await asyncio.gather(c.append(a, entries("a")), c.append(b, entries("b")),
                               c.append(a, entries("a2")))
    assert list(got) == [[0], [0], [3]]
    assert a.append_calls == [1, 1] and b.append_calls == [1]
    await c.close()


async def test_full_disk_fails_only_the_callers_that_do_not_fit() -> None:
    fs = SimFileSystem()
    flog = FileLog.open(fs, "/data/p0")
    c = GroupCommitter("sync")
    await c.append(flog, entries("warm"))
    small = [AppendEntry([b"s" * 100])]
    big = [AppendEntry([b"b" * 5000])]
    fs.set_free_bytes(2000)  # room for the small batches, not for the big one
    res = await asyncio.wait_for(asyncio.gather(
        c.append(flog, small), c.append(flog, big), c.append(flog, small),
        return_exceptions=True), WAIT_S)
    assert res[0] == [3] and res[2] == [4]
    assert isinstance(res[1], StorageFull)
    assert values_at(flog, 3, 2) == [b"s" * 100, b"s" * 100]
    fs.set_free_bytes(None)
    assert await c.append(flog, big) == [5]  # the committer kept serving
    await c.close()
    flog.close()


async def test_a_malformed_entry_fails_only_its_caller() -> None:
    flog = FileLog.open(SimFileSystem(), "/data/p0")
    log = SpyLog(flog)
    c = GroupCommitter("sync")
    res = await asyncio.gather(
        c.append(log, entries("good")), c.append(log, [AppendEntry([])]),
        c.append(log, entries("also good")), return_exceptions=True)
    assert res[0] == [0] and res[2] == [3]
    assert isinstance(res[1], ValueError)
    # The first caller alone (the split), then the rest as a group, then each alone.
    assert log.append_calls == [1, 2, 1, 1]
    assert values_at(log, 3, 1) == [b"also good-0-0"]
    await c.close()
    flog.close()


async def test_failed_fsync_fails_every_waiter_and_every_later_append() -> None:
    fs = SimFileSystem()
    flog = FileLog.open(fs, "/data/p0")
    fatal: list[BaseException] = []
    c = GroupCommitter("sync", on_fatal=fatal.append)
    assert await c.append(flog, entries("ok")) == [0]
    fs.fail_fsync_next()
    res = await asyncio.wait_for(asyncio.gather(
        *(c.append(flog, entries(f"w{i}")) for i in range(8)), return_exceptions=True), WAIT_S)
    assert all(isinstance(r, FsyncFailed) for r in res)
    assert len(fatal) == 1 and isinstance(c.fatal, FsyncFailed)
    fsyncs = fs.fsyncs
    with pytest.raises(FsyncFailed):
        await c.append(flog, entries("later"))
    assert fs.fsyncs == fsyncs  # never retried
    await c.close()
    assert len(fatal) == 1


async def test_fsync_failure_fails_callers_queued_behind_it() -> None:
    log = SpyLog(MemoryLog())
    log.hold = True
    fatal: list[BaseException] = []
    c = GroupCommitter("sync", on_fatal=fatal.append)

    def failing_sync() -> None:
        SpyLog.sync(log)
        raise FsyncFailed("fdatasync p0: Input/output error")

    log.sync = failing_sync  # type: ignore[method-assign]
    first = asyncio.ensure_future(c.append(log, entries("first")))
    await wait_thread(log.sync_started)
    queued = asyncio.ensure_future(c.append(log, entries("queued")))
    await asyncio.sleep(0)
    log.release.set()
    for fut in (first, queued):
        with pytest.raises(FsyncFailed):
            await asyncio.wait_for(fut, WAIT_S)
    assert len(fatal) == 1
    await c.close()


async def test_interval_mode_returns_before_sync_and_syncs_in_background() -> None:
    log = SpyLog(MemoryLog())
    c = GroupCommitter("interval", interval_s=0.001)
    assert await c.append(log, entries("a")) == [0]
    assert log.syncs == 0
    await wait_thread(log.sync_started)
    await c.close()
    assert log.syncs >= 1


async def test_interval_mode_appends_at_once_while_the_log_syncs() -> None:
    log = SpyLog(MemoryLog())
    log.hold = True
    c = GroupCommitter("interval", interval_s=0.001)
    assert await c.append(log, entries("a")) == [0]
    await wait_thread(log.sync_started)
    got = [await asyncio.wait_for(c.append(log, entries(f"q{i}")), WAIT_S) for i in range(5)]
    assert got == [[3 + 3 * i] for i in range(5)]
    assert log.append_calls == [1, 1, 1, 1, 1, 1] and log.syncs == 0
    log.release.set()
    await asyncio.wait_for(c.close(), WAIT_S)
    assert log.syncs >= 1


async def test_none_mode_syncs_only_at_close() -> None:
    a, b, idle = SpyLog(MemoryLog()), SpyLog(MemoryLog()), SpyLog(MemoryLog())
    c = GroupCommitter("none")
    for i in range(10):
        await c.append(a, entries(f"a{i}"))
        await c.append(b, entries(f"b{i}"))
    assert (a.syncs, b.syncs) == (0, 0)
    await c.close()
    assert (a.syncs, b.syncs, idle.syncs) == (1, 1, 0)


async def test_close_drains_then_refuses() -> None:
    log = SpyLog(MemoryLog())
    c = GroupCommitter("sync")
    pending = [asyncio.ensure_future(c.append(log, entries(f"p{i}"))) for i in range(5)]
    await asyncio.sleep(0)
    await asyncio.wait_for(c.close(), WAIT_S)
    assert [t.result() for t in pending] == [[3 * i] for i in range(5)]
    with pytest.raises(StorageError, match="closed"):
        await c.append(log, entries("late"))
    await c.close()


async def test_detach_syncs_and_forgets_the_log() -> None:
    log = SpyLog(MemoryLog())
    c = GroupCommitter("none")
    await c.append(log, entries("a"))
    await c.detach(log)
    assert log.syncs == 1
    await c.detach(log)
    await c.close()
    assert log.syncs == 1


@pytest.mark.parametrize("seed", range(5))
async def test_every_acknowledged_append_survives_a_power_cut(seed: int) -> None:
    fs = SimFileSystem()
    flog = FileLog.open(fs, "/data/p0")
    c = GroupCommitter("sync")
    acked: dict[int, bytes] = {}
    rng = random.Random(seed)

    async def producer(p: int) -> None:
        for i in range(rng.randint(1, 8)):
            value = f"p{p}-{i}".encode()
            [base] = await c.append(flog, [AppendEntry([value])])
            acked[base] = value

    tasks = [asyncio.ensure_future(producer(p)) for p in range(16)]
    await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S)
    unacked = asyncio.ensure_future(c.append(flog, [AppendEntry([b"in flight"])]))
    await asyncio.sleep(0)  # queued, not yet written
    fs.power_cut(rng)
    [lost] = await asyncio.wait_for(asyncio.gather(unacked, return_exceptions=True), WAIT_S)
    assert isinstance(lost, StorageError)  # the old handles died with the power
    reopened = FileLog.open(fs, "/data/p0")
    for offset, value in acked.items():
        assert values_at(reopened, offset, 1) == [value]
    assert reopened.end_offset == len(acked)
    reopened.close()
