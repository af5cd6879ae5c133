"""sync() in a worker thread while the loop appends: what is marked synced, rolls during a
sync, and the committer's write/sync pipeline under power cuts.

`SlowSyncFs` wraps SimFileSystem with the pessimistic fdatasync model: only the bytes
written before the call become durable, and the call takes time (the worker releases
the GIL), so the loop really appends during it.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time

import pytest

from storage.api import AppendEntry
from storage.committer import GroupCommitter
from storage.errors import StorageError
from storage.faults import SimFile, SimFileSystem
from storage.log import FileLog

D = "/data/p"
WAIT_S = 10.0


class SlowSyncFile:
    """A SimFile whose fdatasync covers only what was written when it began."""

    def __init__(self, fs: SlowSyncFs, inner: SimFile) -> None:
        self._fs = fs
        self._inner = inner
        self.path = inner.path

    def append(self, data: bytes) -> int:
        return self._inner.append(data)

    def pread(self, size: int, position: int) -> bytes:
        return self._inner.pread(size, position)

    def size(self) -> int:
        return self._inner.size()

    def truncate(self, size: int) -> None:
        self._inner.truncate(size)

    def fdatasync(self) -> None:
        fs = self._fs
        with fs.lock:
            n = self._inner.size()
        fs.sync_started.set()
        if fs.hold is not None:
            assert fs.hold.wait(WAIT_S), "the test never released the sync"
        time.sleep(fs.sync_s)
        with fs.lock:
            self._inner.fdatasync()
            # Pessimistic: bytes appended while the call ran are not covered by it.
            inode = self._inner._inode
            inode.durable = min(n, len(inode.data))

    def close(self) -> None:
        self._inner.close()


class SlowSyncFs(SimFileSystem):
    def __init__(self, sync_s: float = 0.0) -> None:
        super().__init__()
        self.sync_s = sync_s
        self.lock = threading.Lock()  # a power cut never lands inside a sync's update
        self.hold: threading.Event | None = None
        self.sync_started = threading.Event()

    def open(self, path: str, create: bool = True) -> SlowSyncFile:  # type: ignore[override]
        return SlowSyncFile(self, super().open(path, create))

    def power_cut(self, rng: random.Random | None = None) -> None:
        with self.lock:
            super().power_cut(rng)


def values(n: int, tag: str) -> list[AppendEntry]:
    return [AppendEntry([f"{tag}-{i}".encode() for i in range(n)])]


def run_sync_in_thread(log: FileLog) -> threading.Thread:
    t = threading.Thread(target=log.sync)
    t.start()
    return t


def test_sync_marks_synced_only_what_was_written_before_it_began() -> None:
    fs = SlowSyncFs()
    log = FileLog.open(fs, D)
    log.append_many(values(3, "a"))
    fs.hold = threading.Event()
    t = run_sync_in_thread(log)
    assert fs.sync_started.wait(WAIT_S)
    log.append_many(values(3, "b"))  # appended while the fdatasync runs
    fs.hold.set()
    t.join(WAIT_S)
    fsyncs = fs.fsyncs
    log.sync()  # must not be skipped: "b" is not durable yet
    assert fs.fsyncs > fsyncs
    fs.power_cut()
    again = FileLog.open(fs, D)
    assert again.end_offset == 6
    again.close()


def test_bytes_appended_during_a_sync_are_lost_without_another_sync() -> None:
    fs = SlowSyncFs()
    log = FileLog.open(fs, D)
    log.append_many(values(3, "a"))
    fs.hold = threading.Event()
    t = run_sync_in_thread(log)
    assert fs.sync_started.wait(WAIT_S)
    log.append_many(values(3, "b"))
    fs.hold.set()
    t.join(WAIT_S)
    fs.power_cut()
    again = FileLog.open(fs, D)
    assert again.end_offset == 3  # the model is strict enough to catch an early ack
    again.close()


def test_a_roll_during_a_sync_waits_for_it_and_keeps_both_segments() -> None:
    fs = SlowSyncFs()
    log = FileLog.open(fs, D, segment_bytes=400, index_interval_bytes=64,
                       checkpoint_interval_bytes=0)
    log.append_many(values(5, "a"))
    fs.hold = threading.Event()
    t = run_sync_in_thread(log)
    assert fs.sync_started.wait(WAIT_S)
    timer = threading.Timer(0.05, fs.hold.set)  # the roll below blocks until then
    timer.start()
    for i in range(10):
        log.append_many(values(5, f"r{i}"))
    t.join(WAIT_S)
    timer.join(WAIT_S)
    log.sync()
    assert log.end_offset == 55 and len(fs.listdir(D)) > 4
    fs.power_cut()
    again = FileLog.open(fs, D, segment_bytes=400, index_interval_bytes=64)
    assert again.end_offset == 55 and again.damage is None
    got = [v for b in again.read(0, max_bytes=1 << 20) for v in b.values]
    assert got[:5] == [f"a-{i}".encode() for i in range(5)] and len(got) == 55
    again.close()


def test_reads_and_time_lookups_stay_correct_during_worker_syncs() -> None:
    fs = SlowSyncFs(sync_s=0.0005)
    log = FileLog.open(fs, D, segment_bytes=4096, index_interval_bytes=64,
                       checkpoint_interval_bytes=128, clock_ms=lambda: 5)
    stop = threading.Event()

    def syncer() -> None:
        while not stop.is_set():
            log.sync()

    t = threading.Thread(target=syncer)
    t.start()
    try:
        for i in range(300):
            log.append_many(values(2, f"v{i}"))
            assert log.read(2 * i, max_bytes=64)[0].values[0] == f"v{i}-0".encode()
            assert log.offset_for_time(5) == 0
            assert log.timestamp_of(2 * i + 1) == 5
    finally:
        stop.set()
        t.join(WAIT_S)
    log.close()
    again = FileLog.open(fs, D, segment_bytes=4096, index_interval_bytes=64)
    assert again.end_offset == 600 and again.recovery_stats.clean
    again.close()


@pytest.mark.parametrize("seed", range(12))
async def test_pipelined_group_commit_acks_nothing_before_its_bytes_are_synced(
        seed: int) -> None:
    rng = random.Random(seed)
    fs = SlowSyncFs(sync_s=rng.choice([0.0, 0.0002, 0.001]))
    flog = FileLog.open(fs, D, segment_bytes=rng.choice([2048, 1 << 20]),
                        checkpoint_interval_bytes=rng.choice([0, 1024, 1 << 20]))
    c = GroupCommitter("sync")
    acked: dict[int, bytes] = {}
    cut_after = rng.randint(20, 200)
    cut = asyncio.Event()

    async def producer(p: int) -> None:
        for i in range(1000):
            value = f"p{p}-{i}".encode()
            try:
                [base] = await c.append(flog, [AppendEntry([value])])
            except StorageError:
                return
            acked[base] = value
            if len(acked) >= cut_after and not cut.is_set():
                cut.set()
                fs.power_cut(rng)  # syncs in flight now fail: their callers are not acked
                return

    await asyncio.wait_for(asyncio.gather(*(producer(p) for p in range(16))), WAIT_S * 3)
    assert cut.is_set()
    await c.close()
    reopened = FileLog.open(fs, D)
    got = {o: v for b in reopened.read(0, max_bytes=1 << 30) for o, v in
           ((b.base_offset + i, v) for i, v in enumerate(b.values))}
    missing = [o for o in acked if got.get(o) != acked[o]]
    assert not missing, f"acknowledged but lost: {missing[:10]}"
    assert c.groups > c.syncs / 2 and c.syncs >= 2
    reopened.close()
