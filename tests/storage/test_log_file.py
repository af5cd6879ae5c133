"""FileLog beyond the contract: files on disk, rolling, recovery, indexes and faults."""

from __future__ import annotations

import logging
import random

import pytest

from storage.api import AppendEntry
from storage.errors import (
    CorruptRecord,
    FsyncFailed,
    OffsetOutOfRange,
    PartitionDamaged,
    StorageFull,
)
from storage.faults import SimFileSystem
from storage.log import FileLog
from tests.storage.logharness import ManualClock, entry, read_all

D = "/data/p0"


def open_log(fs: SimFileSystem, **kw: int) -> FileLog:
    opts = {"segment_bytes": 2048, "index_interval_bytes": 256, **kw}
    return FileLog.open(fs, D, clock_ms=ManualClock(), **opts)


def fill(log: FileLog, batches: int, per_batch: int = 4, tag: str = "v") -> list[bytes]:
    out = []
    for b in range(batches):
        vals = [f"{tag}{b}.{i}".encode().ljust(30, b"-") for i in range(per_batch)]
        log.append_many([AppendEntry(vals)])
        out += vals
    return out


def segments(fs: SimFileSystem) -> list[str]:
    return [n for n in fs.listdir(D) if n.endswith(".log")]


def test_segments_roll_and_are_named_by_base_offset() -> None:
    fs = SimFileSystem()
    log = open_log(fs)
    values = fill(log, 60)
    names = segments(fs)
    assert len(names) > 3
    bases = [int(n[:20]) for n in names]
    assert bases[0] == 0 and bases == sorted(bases)
    assert all(len(n) == len("00000000000000000000.log") for n in names)
    assert all(fs.file_size(f"{D}/{n}") <= 2048 for n in names)
    for b in bases:
        assert log.read(b)[0].base_offset == b
    assert read_all(log) == list(enumerate(values))


def test_append_many_writes_all_batches_with_one_append() -> None:
    fs = SimFileSystem()
    log = open_log(fs, segment_bytes=1 << 20)
    before = fs.appends
    log.append_many([entry([b"a"]), entry([b"b", b"c"]), entry([b"d"])])
    assert fs.appends == before + 1


def test_clean_reopen_scans_nothing() -> None:
    fs = SimFileSystem()
    log = open_log(fs)
    values = fill(log, 40)
    log.close()
    assert "clean-shutdown" in fs.listdir(D)
    again = open_log(fs)
    assert again.recovery_stats.clean
    assert again.recovery_stats.bytes_scanned == 0
    assert "clean-shutdown" not in fs.listdir(D)
    assert read_all(again) == list(enumerate(values))


def test_open_time_does_not_grow_with_log_size() -> None:
    def bytes_read_at_open(batches: int) -> tuple[int, int]:
        fs = SimFileSystem()
        log = open_log(fs, checkpoint_interval_bytes=4096)
        fill(log, batches)
        log.sync()
        fill(log, 5, tag="tail")  # written, not synced: a crash leaves a tail to scan
        fs.bytes_read = 0
        again = open_log(fs)
        assert again.end_offset == (batches + 5) * 4
        return fs.bytes_read, again.recovery_stats.bytes_scanned

    small_read, small_scanned = bytes_read_at_open(100)
    big_read, big_scanned = bytes_read_at_open(2000)
    assert big_scanned <= 4096 + 2048 and small_scanned <= 4096 + 2048
    assert big_read < 2 * small_read + 8192, (small_read, big_read)


def test_recover_truncates_torn_tail(caplog: pytest.LogCaptureFixture) -> None:
    fs = SimFileSystem()
    log = open_log(fs, segment_bytes=1 << 20)
    values = fill(log, 10)
    log.sync()
    fill(log, 3, tag="lost")
    fs.corrupt_tail(f"{D}/00000000000000000000.log", 50)
    with caplog.at_level(logging.WARNING, logger="storage.log"):
        again = open_log(fs, segment_bytes=1 << 20)
    assert again.damage is None
    assert 40 <= again.end_offset < 52
    assert again.recovery_stats.truncated_bytes > 0
    assert read_all(again)[:40] == list(enumerate(values))
    assert any("torn tail cut" in r.getMessage() for r in caplog.records)
    assert again.append_many([entry([b"new"])]) == [again.end_offset - 1]


def test_recover_reports_damage_in_the_middle_and_cuts_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    fs = SimFileSystem()
    log = open_log(fs, segment_bytes=1 << 20, checkpoint_interval_bytes=1 << 30)
    values = fill(log, 30)
    log.sync()  # then the process dies: no checkpoint past the start of the segment
    path = f"{D}/00000000000000000000.log"
    size = fs.file_size(path)
    fs.flip_byte(path, size // 2)
    with caplog.at_level(logging.ERROR, logger="storage.log"):
        again = open_log(fs, segment_bytes=1 << 20)
    damage = again.damage
    assert damage is not None
    assert damage.segment == "00000000000000000000.log"
    assert 0 < damage.first_offset <= damage.last_offset < 120
    assert fs.file_size(path) == size
    assert again.end_offset == 120
    assert any("damage" in r.getMessage() for r in caplog.records)
    assert [b.values for b in again.read(0, max_records=4)] == [values[:4]]
    with pytest.raises(PartitionDamaged):
        again.read(damage.first_offset)
    with pytest.raises(PartitionDamaged):
        again.append_many([entry([b"x"])])
    after = again.read(damage.last_offset + 1)
    assert after[0].values[0] == values[damage.last_offset + 1]
    again.close()
    third = open_log(fs, segment_bytes=1 << 20)
    assert third.damage == damage


def test_purging_past_damage_makes_the_partition_writable_again() -> None:
    fs = SimFileSystem()
    log = open_log(fs, segment_bytes=1 << 20, checkpoint_interval_bytes=1 << 30)
    fill(log, 60)
    log.sync()
    fs.flip_byte(f"{D}/00000000000000000000.log", 300)
    again = open_log(fs, checkpoint_interval_bytes=1 << 30)
    assert again.damage is not None
    again.truncate_before(again.end_offset)
    assert again.damage is None
    assert again.append_many([entry([b"x"])]) == [240]


def test_read_never_serves_a_flipped_byte() -> None:
    fs = SimFileSystem()
    log = open_log(fs)
    fill(log, 5)
    fs.flip_byte(f"{D}/00000000000000000000.log", 60)
    with pytest.raises(CorruptRecord):
        log.read(0)


def test_missing_and_garbage_indexes_are_rebuilt() -> None:
    fs = SimFileSystem()
    log = open_log(fs)
    values = fill(log, 80)
    log.close()
    names = fs.listdir(D)
    for i, name in enumerate(n for n in names if n.endswith("index")):
        if i % 2:
            fs.unlink(f"{D}/{name}")
        else:
            fs.write_file_atomic(f"{D}/{name}", bytes(range(200)) * 3)
    again = open_log(fs)
    assert read_all(again) == list(enumerate(values))
    for off in range(0, len(values), 7):
        assert again.read(off, max_records=1)[0].values == [values[off]]
    assert again.offset_for_time(0) == 0
    assert {n for n in fs.listdir(D) if n.endswith("index")} == {
        n for n in names if n.endswith("index")}


def test_index_pointing_at_the_wrong_place_is_rebuilt_on_read() -> None:
    fs = SimFileSystem()
    log = open_log(fs, segment_bytes=1 << 20, index_interval_bytes=64)
    values = fill(log, 30)
    log.close()
    # shift every position by one batch: still monotone and in range, but wrong
    import struct
    path = f"{D}/00000000000000000000.index"
    entries = list(struct.iter_unpack("<II", fs.contents(path)))
    fs.write_file_atomic(path, b"".join(struct.pack("<II", r, p + 1) for r, p in entries[:-1]))
    fill(open_log(fs, segment_bytes=1 << 20, index_interval_bytes=64), 1, tag="next")
    again = open_log(fs, segment_bytes=4096, index_interval_bytes=64)
    assert [v for _, v in read_all(again)][:120] == values


def test_open_removes_leftover_tmp_and_deleted_files() -> None:
    fs = SimFileSystem()
    log = open_log(fs)
    fill(log, 3)
    log.close()
    fs.write_file_atomic(f"{D}/checkpoint.tmp", b"half")
    fs.write_file_atomic(f"{D}/00000000000000000000.log.deleted", b"old")
    fs.write_file_atomic(f"{D}/00000000000000000999.index", b"")
    open_log(fs)
    assert not [n for n in fs.listdir(D) if n.endswith((".tmp", ".deleted"))]
    assert "00000000000000000999.index" not in fs.listdir(D)


def test_retention_deletes_whole_segments_but_never_the_active_one() -> None:
    fs = SimFileSystem()
    log = open_log(fs)
    fill(log, 60)
    active = segments(fs)[-1]
    start = log.apply_retention(now_ms=0, max_age_ms=-1, max_bytes=0)
    assert segments(fs) == [active]
    assert start == int(active[:20]) == log.start_offset
    again = open_log(fs)
    assert again.start_offset == start


def test_enospc_fails_the_append_cleanly_and_later_appends_succeed() -> None:
    fs = SimFileSystem()
    log = open_log(fs, segment_bytes=1 << 20)
    values = fill(log, 5)
    log.sync()
    fs.set_free_bytes(100)
    with pytest.raises(StorageFull):
        log.append_many([entry([b"z" * 500])])
    assert log.end_offset == 20
    assert read_all(log) == list(enumerate(values))
    fs.set_free_bytes(None)
    assert log.append_many([entry([b"after"])]) == [20]
    log.sync()
    assert read_all(open_log(fs, segment_bytes=1 << 20))[-1] == (20, b"after")


def test_enospc_during_a_roll_keeps_offsets() -> None:
    fs = SimFileSystem()
    log = open_log(fs)
    fill(log, 10)
    end = log.end_offset
    fs.set_free_bytes(0)
    with pytest.raises(StorageFull):
        fill(log, 50)
    assert log.end_offset >= end
    fs.set_free_bytes(None)
    values = read_all(log)
    assert log.append_many([entry([b"ok"])]) == [log.end_offset - 1]
    assert read_all(log)[:-1] == values


def test_fsync_failure_is_fatal_and_refuses_appends() -> None:
    fs = SimFileSystem()
    log = open_log(fs)
    fill(log, 3)
    fs.fail_fsync_next()
    with pytest.raises(FsyncFailed):
        log.sync()
    with pytest.raises(FsyncFailed):
        log.append_many([entry([b"x"])])
    with pytest.raises(FsyncFailed):
        log.sync()
    assert log.read(0)  # what is in memory still reads
    log.close()
    assert "clean-shutdown" not in fs.listdir(D)


def test_roll_makes_the_outgoing_segment_durable() -> None:
    fs = SimFileSystem()
    log = open_log(fs)
    values = fill(log, 40)  # several rolls, never an explicit sync
    sealed_end = int(segments(fs)[-1][:20])
    fs.power_cut(random.Random(1))
    again = open_log(fs)
    assert again.end_offset >= sealed_end
    assert read_all(again)[:sealed_end] == list(enumerate(values))[:sealed_end]


def test_purge_survives_a_power_cut() -> None:
    fs = SimFileSystem()
    log = open_log(fs)
    fill(log, 30)
    end = log.end_offset
    log.truncate_before(end)
    fs.power_cut()
    again = open_log(fs)
    assert (again.start_offset, again.end_offset) == (end, end)
    assert again.append_many([entry([b"n"])]) == [end]


def test_reading_a_batch_in_parts_reads_it_from_disk_once() -> None:
    fs = SimFileSystem()
    log = open_log(fs, segment_bytes=1 << 20)
    log.append_many([AppendEntry([b"%04d" % i for i in range(1000)])])
    log.append_many([AppendEntry([b"next"])])
    fs.bytes_read = 0
    got = [v for off in range(0, 1000, 100) for b in log.read(off, max_records=100)
           for v in b.values]
    first_read = fs.bytes_read
    assert got == [b"%04d" % i for i in range(1000)]
    assert 0 < first_read < 64 * 1024  # one read of the batch (and what follows it)
    # Read to its end, the batch is let go: the next read is of the next batch.
    assert [b.values for b in log.read(1000)] == [[b"next"]]
    assert fs.bytes_read > first_read


def test_a_reader_of_large_batches_reads_about_what_it_gets() -> None:
    fs = SimFileSystem()
    log = open_log(fs, segment_bytes=16 << 20)
    value = bytes(100)
    for _ in range(10):  # ten batches of ~100 KiB: each under the 1 MiB read ceiling
        log.append_many([AppendEntry([value] * 1000)])
    stored = log.size_bytes()
    fs.bytes_read = 0
    off = got = 0
    while off < 10_000:
        batches = log.read(off, max_records=500)
        got += sum(len(b.values) for b in batches)
        off = batches[-1].next_offset
    assert got == 10_000
    # Each read's first pread is sized by the last batch, not by the 1 MiB ceiling
    # (which would read about ten times what is stored here).
    assert fs.bytes_read < 2 * stored


def test_a_kept_batch_answers_like_the_disk_at_every_start_and_bound() -> None:
    fs = SimFileSystem()
    log = open_log(fs, segment_bytes=1 << 20)
    values = fill(log, 3, per_batch=50)
    for start in (0, 7, 49, 50, 51, 120, 149):
        for n in (1, 3, 50, 200):
            log.read(max(0, start - 1), max_records=1)  # leaves the batch before kept
            got = [(b.base_offset, v) for b in log.read(start, max_records=n)
                   for v in b.values]
            fresh = open_log(fs, segment_bytes=1 << 20)  # nothing kept: straight from disk
            want = [(b.base_offset, v) for b in fresh.read(start, max_records=n)
                    for v in b.values]
            assert [v for _, v in got] == values[start:start + n]
            assert [v for _, v in got] == [v for _, v in want]


def test_a_kept_batch_is_dropped_with_the_records_before_the_start() -> None:
    fs = SimFileSystem()
    log = open_log(fs, segment_bytes=1 << 20)
    fill(log, 2, per_batch=10)
    assert log.read(0, max_records=5)[0].values[0].startswith(b"v0.0")
    log.truncate_before(15)
    with pytest.raises(OffsetOutOfRange):
        log.read(5)
    assert log.read(15)[0].base_offset == 15
