"""Sparse indexes: lookups, and validation of what is loaded from disk."""

from __future__ import annotations

from storage.index import OFFSET_ENTRY, TIME_ENTRY, OffsetIndex, TimeIndex


def test_offset_lookup_finds_the_last_entry_at_or_below() -> None:
    idx = OffsetIndex()
    for rel, pos in [(10, 4096), (25, 8200), (40, 12300)]:
        idx.add(rel, pos)
    assert idx.lookup(0) == (0, 0)
    assert idx.lookup(10) == (10, 4096)
    assert idx.lookup(39) == (25, 8200)
    assert idx.lookup(10**6) == (40, 12300)


def test_offset_index_round_trips_through_bytes_and_pending() -> None:
    idx = OffsetIndex()
    idx.add(1, 100)
    first = idx.pending()
    idx.add(2, 200)
    assert idx.pending() == OFFSET_ENTRY.pack(2, 200)
    assert idx.pending() == b""
    loaded = OffsetIndex()
    assert loaded.load(first + OFFSET_ENTRY.pack(2, 200), size=1000, max_relative=10)
    assert list(loaded.relatives) == [1, 2]


def test_offset_index_load_keeps_only_the_valid_prefix() -> None:
    good = OFFSET_ENTRY.pack(1, 100) + OFFSET_ENTRY.pack(5, 300)
    for bad in (OFFSET_ENTRY.pack(4, 400), OFFSET_ENTRY.pack(9, 250),
                OFFSET_ENTRY.pack(9, 5000), OFFSET_ENTRY.pack(99, 400), b"\x00\x01"):
        idx = OffsetIndex()
        assert not idx.load(good + bad, size=1000, max_relative=50)
        assert list(idx.positions) == [100, 300]


def test_offset_index_drop_from_position() -> None:
    idx = OffsetIndex()
    for rel, pos in [(1, 100), (2, 200), (3, 300)]:
        idx.add(rel, pos)
    idx.drop_from(200)
    assert list(idx.positions) == [100]


def test_time_index_only_grows_and_finds_where_to_start() -> None:
    t = TimeIndex()
    t.maybe_add(100, 0)
    t.maybe_add(90, 5)  # not a new maximum
    t.maybe_add(200, 10)
    t.maybe_add(300, 10)  # not past the last offset
    assert list(t.timestamps) == [100, 200]
    assert t.lookup(50) == 0
    assert t.lookup(150) == 0
    assert t.lookup(250) == 10
    assert t.last_timestamp() == 200


def test_time_index_load_rejects_non_monotone_entries() -> None:
    data = TIME_ENTRY.pack(100, 1) + TIME_ENTRY.pack(200, 3) + TIME_ENTRY.pack(150, 4)
    t = TimeIndex()
    assert not t.load(data, max_relative=10)
    assert list(t.timestamps) == [100, 200]
