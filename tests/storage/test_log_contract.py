"""The PartitionLog contract, run against MemoryLog and FileLog (real disk and simulated)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from storage.api import AppendEntry, PartitionLog
from storage.errors import OffsetOutOfRange
from tests.storage.logharness import ManualClock, entry, flatten, make_factory, read_all

KINDS = ["memory", "file-os", "file-sim"]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def factory(kind: str, tmp_path: Path
            ) -> tuple[Callable[[ManualClock], PartitionLog], Callable[[], PartitionLog] | None]:
    return make_factory(kind, tmp_path)


@pytest.fixture
def plog(factory: tuple[Callable[[ManualClock], PartitionLog], object],
         clock: ManualClock) -> PartitionLog:
    return factory[0](clock)


def fill(log: PartitionLog, batches: int, per_batch: int = 3, size: int = 40) -> list[bytes]:
    values = []
    for b in range(batches):
        vals = [f"{b}:{i}:".encode().ljust(size, b"x") for i in range(per_batch)]
        log.append_many([AppendEntry(vals)])
        values += vals
    return values


def test_new_log_is_empty(plog: PartitionLog) -> None:
    assert (plog.start_offset, plog.end_offset) == (0, 0)
    assert plog.read(0) == []
    assert plog.damage is None
    assert plog.oldest_timestamp_ms() is None
    assert plog.offset_for_time(0) == 0


def test_append_many_returns_consecutive_base_offsets(plog: PartitionLog) -> None:
    bases = plog.append_many([entry([b"a", b"b"]), entry([b"c"]), entry([b"d", b"e", b"f"])])
    assert bases == [0, 2, 3]
    assert plog.end_offset == 6
    assert plog.append_many([entry([b"g"])]) == [6]
    assert plog.append_many([]) == []
    assert plog.end_offset == 7


def test_read_returns_batches_trimmed_to_the_offset(plog: PartitionLog) -> None:
    plog.append_many([entry([b"a", b"b", b"c"]), entry([b"d", b"e"])])
    batches = plog.read(1)
    assert [b.base_offset for b in batches] == [1, 3]
    assert flatten(batches) == [(1, b"b"), (2, b"c"), (3, b"d"), (4, b"e")]
    assert plog.read(5) == []


def test_read_outside_the_log_raises_offset_out_of_range(plog: PartitionLog) -> None:
    plog.append_many([entry([b"a"])])
    with pytest.raises(OffsetOutOfRange):
        plog.read(2)
    with pytest.raises(OffsetOutOfRange):
        plog.read(-1)


def test_read_returns_at_least_one_batch_beyond_max_bytes(plog: PartitionLog) -> None:
    plog.append_many([entry([b"x" * 500]), entry([b"y" * 500])])
    batches = plog.read(0, max_bytes=10)
    assert flatten(batches) == [(0, b"x" * 500)]


def test_read_respects_max_bytes_and_max_records(plog: PartitionLog) -> None:
    values = fill(plog, 10, per_batch=4)
    some = plog.read(0, max_bytes=400)
    assert 1 <= len(some) < 10
    assert flatten(some) == list(enumerate(values))[:sum(b.count for b in some)]
    limited = plog.read(2, max_records=5)
    assert flatten(limited) == list(enumerate(values))[2:7]
    assert plog.read(2, max_records=0) == []


def test_keys_and_headers_round_trip(plog: PartitionLog) -> None:
    plog.append_many([
        AppendEntry([b"a", b"b"], keys=[b"k", None], headers=[{"h": 1, "s": "x"}, None]),
        AppendEntry([b"c"]),
    ])
    first, second = plog.read(0)
    assert first.keys == [b"k", None]
    assert first.headers == [{"h": 1, "s": "x"}, None]
    assert first.key(0) == b"k"
    assert second.keys is None and second.headers is None
    assert plog.read(1)[0].keys == [None]


def test_invalid_batches_are_refused_and_change_nothing(plog: PartitionLog) -> None:
    plog.append_many([entry([b"a"])])
    with pytest.raises(ValueError):
        plog.append_many([entry([b"b"]), AppendEntry([])])
    with pytest.raises(ValueError):
        plog.append_many([AppendEntry([b"a", b"b"], keys=[b"k"])])
    assert plog.end_offset == 1
    assert plog.append_many([entry([b"c"])]) == [1]
    assert read_all(plog) == [(0, b"a"), (1, b"c")]


def test_timestamps_come_from_the_entry_or_the_clock(plog: PartitionLog,
                                                    clock: ManualClock) -> None:
    plog.append_many([entry([b"a"], ts=500)])
    clock.now_ms = 2_000_000
    plog.append_many([entry([b"b", b"c"])])
    assert plog.timestamp_of(0) == 500
    assert plog.timestamp_of(2) == 2_000_000
    assert plog.timestamp_of(3) is None
    assert plog.oldest_timestamp_ms() == 500


def test_offset_for_time_finds_the_first_record_at_or_after(plog: PartitionLog) -> None:
    for i in range(30):
        plog.append_many([entry([b"v" * 60, b"w"], ts=1000 + 10 * i)])
    assert plog.offset_for_time(0) == 0
    assert plog.offset_for_time(1000) == 0
    assert plog.offset_for_time(1001) == 2
    assert plog.offset_for_time(1150) == 30
    assert plog.offset_for_time(1151) == 32
    assert plog.offset_for_time(1290) == 58
    assert plog.offset_for_time(1291) == plog.end_offset


def test_offset_for_time_with_out_of_order_timestamps(plog: PartitionLog) -> None:
    stamps = [100, 300, 200, 400, 150]
    for ts in stamps:
        plog.append_many([entry([b"z" * 300], ts=ts)])
    assert plog.offset_for_time(250) == 1
    assert plog.offset_for_time(350) == 3
    assert plog.offset_for_time(120) == 1


def test_truncate_before_moves_start_and_hides_older_offsets(plog: PartitionLog) -> None:
    values = fill(plog, 20)
    plog.truncate_before(25)
    assert plog.start_offset == 25
    with pytest.raises(OffsetOutOfRange):
        plog.read(24)
    assert read_all(plog) == list(enumerate(values))[25:]
    assert plog.timestamp_of(24) is None
    plog.truncate_before(10)  # never moves back
    assert plog.start_offset == 25


def test_truncate_before_beyond_the_end_is_refused(plog: PartitionLog) -> None:
    fill(plog, 2)
    with pytest.raises(OffsetOutOfRange):
        plog.truncate_before(7)


def test_purge_leaves_an_empty_log_that_keeps_its_offsets(
        factory: tuple[Callable[[ManualClock], PartitionLog], Callable[[], PartitionLog] | None],
        clock: ManualClock) -> None:
    fresh, reopen = factory
    log = fresh(clock)
    fill(log, 30)
    log.truncate_before(log.end_offset)
    assert (log.start_offset, log.end_offset) == (90, 90)
    assert log.read(90) == []
    assert log.size_bytes() < 100
    if reopen is not None:
        log.close()
        log = reopen()
        assert (log.start_offset, log.end_offset) == (90, 90)
    assert log.append_many([entry([b"after"])]) == [90]
    assert read_all(log) == [(90, b"after")]


def test_retention_by_size_deletes_a_prefix_and_keeps_the_newest(plog: PartitionLog) -> None:
    values = fill(plog, 40)
    before = plog.size_bytes()
    start = plog.apply_retention(now_ms=0, max_age_ms=-1, max_bytes=before // 2)
    assert start == plog.start_offset > 0
    assert plog.size_bytes() <= before // 2 + 1100  # at most one segment over
    assert read_all(plog) == list(enumerate(values))[start:]
    assert flatten(plog.read(plog.end_offset - 1))[-1] == (119, values[-1])


def test_retention_never_deletes_at_or_past_keep_from(plog: PartitionLog) -> None:
    fill(plog, 40)
    start = plog.apply_retention(now_ms=0, max_age_ms=-1, max_bytes=0, keep_from=30)
    assert 0 <= start <= 30
    assert plog.read(30)


def test_retention_by_age_uses_the_newest_timestamp_of_each_unit(plog: PartitionLog,
                                                                clock: ManualClock) -> None:
    for i in range(40):
        plog.append_many([entry([b"q" * 100], ts=10_000 + i)])
    assert plog.apply_retention(now_ms=10_000, max_age_ms=0, max_bytes=-1) == 0
    start = plog.apply_retention(now_ms=10_020 + 1000, max_age_ms=1000, max_bytes=-1)
    assert 0 < start <= 20
    assert all(plog.timestamp_of(o) == 10_000 + o for o in range(start, 40))
    everything = plog.apply_retention(now_ms=10**9, max_age_ms=1, max_bytes=-1)
    assert everything < 40 and plog.read(39)


def test_size_bytes_grows_with_appends(plog: PartitionLog) -> None:
    assert plog.size_bytes() == 0
    fill(plog, 3)
    first = plog.size_bytes()
    fill(plog, 3)
    assert plog.size_bytes() > first > 3 * 3 * 40


def test_sync_then_reopen_keeps_every_record(
        factory: tuple[Callable[[ManualClock], PartitionLog], Callable[[], PartitionLog] | None],
        clock: ManualClock) -> None:
    fresh, reopen = factory
    log = fresh(clock)
    values = fill(log, 50)
    log.sync()
    assert read_all(log) == list(enumerate(values))
    if reopen is None:
        return
    log.close()
    again = reopen()
    assert again.end_offset == len(values)
    assert read_all(again) == list(enumerate(values))
    assert again.append_many([entry([b"next"])]) == [len(values)]
    again.close()
