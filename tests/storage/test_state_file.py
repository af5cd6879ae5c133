"""FileStateStore on disk: group commit, recovery (torn tail, corruption), compaction, faults."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import msgpack
import pytest

from storage import state_file as state_mod
from storage.errors import CorruptRecord, FsyncFailed, StorageError, StorageFull
from storage.fileio import OsFile, OsFileSystem
from storage.state import (
    HEADER_BYTES,
    RESERVE_BYTES,
    RESERVE_NAME,
    SNAPSHOT_NAME,
    FileStateStore,
    read_json,
    write_json_atomic,
)


class FaultFile:
    """An OsFile that counts writes and fsyncs and obeys its FaultFS's faults."""

    def __init__(self, fs: FaultFS, inner: OsFile) -> None:
        self.fs, self.inner, self.path = fs, inner, inner.path

    def append(self, data: bytes) -> int:
        if self.fs.free is not None:
            if len(data) > self.fs.free:
                raise StorageFull(f"write {self.path}: no space left on device")
            self.fs.free -= len(data)
        self.fs.appends += 1
        return self.inner.append(data)

    def pread(self, size: int, position: int) -> bytes:
        return self.inner.pread(size, position)

    def size(self) -> int:
        return self.inner.size()

    def truncate(self, size: int) -> None:
        if self.fs.free is not None:
            self.fs.free += max(0, self.inner.size() - size)
        self.inner.truncate(size)

    def fdatasync(self) -> None:
        if self.fs.fail_fsync:
            raise FsyncFailed(f"fdatasync {self.path}: Input/output error")
        self.fs.fsyncs += 1
        if self.fs.synced is not None:
            self.fs.synced.set()
        self.inner.fdatasync()

    def close(self) -> None:
        self.inner.close()


class FaultFS(OsFileSystem):
    """The real disk, plus an optional free-space budget, failing fsyncs and counters."""

    def __init__(self) -> None:
        self.free: int | None = None
        self.fail_fsync = False
        self.appends = 0
        self.fsyncs = 0
        self.synced: asyncio.Event | None = None

    def open(self, path: str, create: bool = True) -> FaultFile:  # type: ignore[override]
        return FaultFile(self, super().open(path, create))

    def unlink(self, path: str) -> None:
        if self.free is not None and os.path.exists(path):
            self.free += os.path.getsize(path)
        super().unlink(path)


def log_files(d: Path) -> list[str]:
    return sorted(n for n in os.listdir(d) if n.endswith(".log"))


async def test_concurrent_commits_share_one_write_and_one_fsync(tmp_path: Path) -> None:
    fs = FaultFS()
    store = FileStateStore.open(fs, str(tmp_path))
    fs.appends = fs.fsyncs = 0

    async def one(i: int) -> None:
        store.put("acks", f"c{i}", i)
        await store.commit()

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(64))), 10)
    assert (fs.appends, fs.fsyncs) == (1, 1)
    await store.close()
    reopened = FileStateStore.open(fs, str(tmp_path))
    assert len(list(reopened.items("acks"))) == 64
    await reopened.close()


async def test_none_mode_syncs_only_at_close(tmp_path: Path) -> None:
    fs = FaultFS()
    store = FileStateStore.open(fs, str(tmp_path), durability="none")
    fs.fsyncs = 0
    for i in range(10):
        store.put("ns", "k", i)
        await store.commit()
    assert fs.fsyncs == 0 and fs.appends > 0
    await store.close()
    assert fs.fsyncs == 1


async def test_interval_mode_syncs_in_the_background(tmp_path: Path) -> None:
    fs = FaultFS()
    store = FileStateStore.open(fs, str(tmp_path), durability="interval", interval_s=0.005)
    fs.fsyncs = 0
    fs.synced = asyncio.Event()
    store.put("ns", "k", 1)
    await store.commit()
    assert fs.fsyncs == 0  # the commit itself did not wait for a sync
    await asyncio.wait_for(fs.synced.wait(), 5)
    assert fs.fsyncs >= 1
    await store.close()


def test_bad_durability_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="durability"):
        FileStateStore.open(OsFileSystem(), str(tmp_path), durability="sometimes")
    with pytest.raises(ValueError, match="interval_s"):
        FileStateStore.open(OsFileSystem(), str(tmp_path), durability="interval")


async def _two_commits(path: Path) -> None:
    store = FileStateStore.open(OsFileSystem(), str(path))
    store.put("ns", "a", 1)
    await store.commit()
    store.put("ns", "b", 2)
    await store.commit()
    await store.close()


async def test_recover_cuts_torn_tail(tmp_path: Path) -> None:
    await _two_commits(tmp_path)
    [name] = log_files(tmp_path)
    path = tmp_path / name
    whole = path.read_bytes()
    path.write_bytes(whole[:-3])  # the last frame lost its last bytes
    store = FileStateStore.open(OsFileSystem(), str(tmp_path))
    assert store.get("ns", "a") == 1 and store.get("ns", "b") is None
    assert store.cut_tail_bytes > 0
    store.put("ns", "c", 3)
    await store.commit()
    await store.close()
    store = FileStateStore.open(OsFileSystem(), str(tmp_path))
    assert dict(store.items("ns")) == {"a": 1, "c": 3}
    assert store.cut_tail_bytes == 0
    await store.close()


async def test_recover_cuts_garbage_tail(tmp_path: Path) -> None:
    await _two_commits(tmp_path)
    [name] = log_files(tmp_path)
    with open(tmp_path / name, "ab") as f:
        f.write(b"\x00" * 100)
    store = FileStateStore.open(OsFileSystem(), str(tmp_path))
    assert dict(store.items("ns")) == {"a": 1, "b": 2}
    assert store.cut_tail_bytes == 100
    await store.close()


async def test_bad_frame_followed_by_valid_one_is_corruption(tmp_path: Path) -> None:
    await _two_commits(tmp_path)
    [name] = log_files(tmp_path)
    path = tmp_path / name
    data = bytearray(path.read_bytes())
    data[HEADER_BYTES + 2] ^= 0xFF  # inside the first frame's payload
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptRecord, match="followed by a valid frame"):
        FileStateStore.open(OsFileSystem(), str(tmp_path))
    assert path.read_bytes() == bytes(data)  # never cut


async def test_corrupt_snapshot_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    monkeypatch.setattr(state_mod, "COMPACT_MIN_BYTES", 2048)
    store = FileStateStore.open(OsFileSystem(), str(tmp_path))
    for i in range(200):
        store.put("ns", "k", "x" * 50 + str(i))
        await store.commit()
    await store.close()
    snap = tmp_path / SNAPSHOT_NAME
    data = bytearray(snap.read_bytes())
    data[-1] ^= 0x01
    snap.write_bytes(bytes(data))
    with pytest.raises(CorruptRecord, match="snapshot"):
        FileStateStore.open(OsFileSystem(), str(tmp_path))


@pytest.mark.parametrize("mode", ["sync", "interval", "none"])
async def test_compaction_keeps_the_log_near_the_live_size(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    monkeypatch.setattr(state_mod, "COMPACT_MIN_BYTES", 2048)
    store = FileStateStore.open(OsFileSystem(), str(tmp_path), durability=mode, interval_s=0.01)
    for i in range(600):
        store.put("groups", f"g{i % 10}", {"floor": i, "pad": "p" * 40})
        if i % 3 == 0:
            store.delete("groups", f"g{(i + 5) % 10}")
        await store.commit()
    await store.close()
    assert (tmp_path / SNAPSHOT_NAME).exists()
    [name] = log_files(tmp_path)
    assert (tmp_path / name).stat().st_size <= 2048 + 200
    expected = {}
    for i in range(600):
        expected[f"g{i % 10}"] = {"floor": i, "pad": "p" * 40}
        if i % 3 == 0:
            expected.pop(f"g{(i + 5) % 10}", None)
    store = FileStateStore.open(OsFileSystem(), str(tmp_path))
    assert dict(store.items("groups")) == expected
    await store.close()


async def test_snapshot_is_the_state_map_and_the_live_size_is_what_a_log_would_take(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_mod, "COMPACT_MIN_BYTES", 1024)
    store = FileStateStore.open(OsFileSystem(), str(tmp_path))
    state = {"dead": {f"t/g/0:{i}": {"reason": "max", "history": [[1, "c", 1.5, "expired"]]}
                      for i in range(40)},
             "groups": {"t/g": {"v": 1, "parts": [[3, 9, [], [], []]]}}}
    for _ in range(3):  # enough rewrites of the same keys to compact
        for ns, space in state.items():
            for key, value in space.items():
                store.put(ns, key, value)
        store.delete("dead", "t/g/0:0")
        await store.commit()
    del state["dead"]["t/g/0:0"]
    await store.close()
    blob = (tmp_path / SNAPSHOT_NAME).read_bytes()
    assert msgpack.unpackb(blob[HEADER_BYTES:], raw=False) == state
    store = FileStateStore.open(OsFileSystem(), str(tmp_path))
    live = sum(len(state_mod.pack_op(ns, k, v)) for ns, space in state.items()
               for k, v in space.items())
    assert store._live_bytes == live
    assert dict(store.items("dead")) == state["dead"]
    assert store.get("groups", "t/g") == state["groups"]["t/g"]
    await store.close()


async def test_stale_log_left_by_interrupted_compaction_is_ignored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_mod, "COMPACT_MIN_BYTES", 2048)
    old = tmp_path / "old"
    store = FileStateStore.open(OsFileSystem(), str(tmp_path))
    stale, stale_name = b"", ""
    for i in range(300):
        store.put("ns", "k", "v" * 30 + str(i))
        await store.commit()
        [name] = log_files(tmp_path)
        if (tmp_path / SNAPSHOT_NAME).exists():
            break
        stale_name, stale = name, (tmp_path / name).read_bytes()
    await store.close()
    assert stale
    # The crash came after the snapshot's rename and before the old log was removed.
    old.write_bytes(stale)
    os.replace(old, tmp_path / stale_name)
    store = FileStateStore.open(OsFileSystem(), str(tmp_path))
    assert store.get("ns", "k") == "v" * 30 + str(i)
    assert stale_name not in log_files(tmp_path)
    await store.close()


async def test_failed_fsync_is_fatal_for_waiting_and_later_commits(tmp_path: Path) -> None:
    fs = FaultFS()
    store = FileStateStore.open(fs, str(tmp_path))
    store.put("ns", "k", 1)
    await store.commit()
    fs.fail_fsync = True

    async def one(i: int) -> None:
        store.put("ns", f"c{i}", i)
        await store.commit()

    results = await asyncio.wait_for(
        asyncio.gather(*(one(i) for i in range(8)), return_exceptions=True), 10)
    assert all(isinstance(r, FsyncFailed) for r in results)
    fs.fail_fsync = False  # never retried, even when the disk would now succeed
    fsyncs = fs.fsyncs
    with pytest.raises(FsyncFailed):
        await store.commit()
    store.put("ns", "later", 1)
    with pytest.raises(FsyncFailed):
        await store.commit()
    assert fs.fsyncs == fsyncs
    await store.close()


async def test_full_disk_releases_the_reserve_so_acks_still_commit(tmp_path: Path) -> None:
    fs = FaultFS()
    store = FileStateStore.open(fs, str(tmp_path))
    assert (tmp_path / RESERVE_NAME).stat().st_size >= RESERVE_BYTES
    fs.free = 0  # the partition logs filled the disk
    store.put("acks", "g1", 41)
    await store.commit()
    assert not (tmp_path / RESERVE_NAME).exists()
    for i in range(100):
        store.put("acks", "g1", 42 + i)
        await store.commit()
    await store.close()
    store = FileStateStore.open(fs, str(tmp_path))
    assert store.get("acks", "g1") == 141
    await store.close()


async def test_full_disk_without_reserve_fails_then_recovers(tmp_path: Path) -> None:
    fs = FaultFS()
    fs.free = 0
    store = FileStateStore.open(fs, str(tmp_path))  # no room for the reserve either
    assert not (tmp_path / RESERVE_NAME).exists()
    store.put("acks", "g1", 1)
    with pytest.raises(StorageFull):
        await store.commit()
    assert store.get("acks", "g1") == 1  # still in memory, still pending
    fs.free = None
    await store.commit()
    await store.close()
    store = FileStateStore.open(fs, str(tmp_path))
    assert store.get("acks", "g1") == 1
    await store.close()


@pytest.mark.parametrize("mode", ["interval", "none"])
async def test_full_disk_in_unsynced_modes_fails_the_commit(tmp_path: Path, mode: str) -> None:
    fs = FaultFS()
    fs.free = 0
    store = FileStateStore.open(fs, str(tmp_path), durability=mode, interval_s=0.01)
    store.put("ns", "k", 1)
    with pytest.raises(StorageFull):
        await store.commit()
    fs.free = None
    await store.commit()
    await store.close()
    store = FileStateStore.open(fs, str(tmp_path))
    assert store.get("ns", "k") == 1
    await store.close()


async def test_close_twice_and_use_after_close(tmp_path: Path) -> None:
    store = FileStateStore.open(OsFileSystem(), str(tmp_path))
    await store.close()
    await store.close()
    with pytest.raises(StorageError):
        store.delete("ns", "k")


def test_json_helpers_round_trip_and_refuse_garbage(tmp_path: Path) -> None:
    fs = OsFileSystem()
    path = str(tmp_path / "topic.json")
    assert read_json(fs, path) is None
    write_json_atomic(fs, path, {"partitions": 3, "name": "orders"})
    assert read_json(fs, path) == {"partitions": 3, "name": "orders"}
    assert not os.path.exists(path + ".tmp")
    (tmp_path / "topic.json").write_bytes(b"{not json")
    with pytest.raises(CorruptRecord, match=r"topic\.json"):
        read_json(fs, path)
