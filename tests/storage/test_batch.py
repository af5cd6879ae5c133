"""The batch format: round trips, and every kind of damage is caught."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage import batch as fmt
from storage.errors import CorruptRecord


def test_encode_decode_round_trip_with_keys_and_headers() -> None:
    data = fmt.encode(42, 1700, [b"a", b""], [b"k", None], [{"x": 1}, None])
    b = fmt.decode(data)
    assert (b.base_offset, b.timestamp_ms, b.values) == (42, 1700, [b"a", b""])
    assert b.keys == [b"k", None] and b.headers == [{"x": 1}, None]
    assert fmt.parse_header(data, 0) == fmt.BatchHeader(
        fmt.HEADER.unpack_from(data)[3], len(data), 42, 2, 1700)


def test_header_is_32_bytes_and_starts_with_the_magic() -> None:
    data = fmt.encode(0, 0, [b"v"])
    assert fmt.HEADER_SIZE == 32
    assert data.startswith(fmt.MAGIC_BYTES)


@given(st.integers(0, 200), st.data())
def test_any_flipped_byte_is_detected(seed: int, data: st.DataObject) -> None:
    encoded = bytearray(fmt.encode(seed, seed * 7, [bytes([seed % 256]) * (seed % 50)] * 3))
    pos = data.draw(st.integers(0, len(encoded) - 1))
    encoded[pos] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(CorruptRecord):
        fmt.decode(bytes(encoded))


def test_truncated_batch_is_rejected() -> None:
    data = fmt.encode(5, 5, [b"hello"])
    for cut in (1, fmt.HEADER_SIZE - 1, fmt.HEADER_SIZE, len(data) - 1):
        with pytest.raises(CorruptRecord):
            fmt.decode(data[:cut])


def test_empty_and_mismatched_batches_are_refused() -> None:
    with pytest.raises(ValueError):
        fmt.encode(0, 0, [])
    with pytest.raises(ValueError):
        fmt.encode(0, 0, [b"a"], keys=[b"k", b"l"])
    with pytest.raises(ValueError):
        fmt.encode(0, 0, [b"a"], headers=[])


def test_implausible_headers_are_not_parsed() -> None:
    data = bytearray(fmt.encode(1, 1, [b"x"]))
    assert fmt.parse_header(bytes(data), 1) is None
    data[2] = fmt.FORMAT_VERSION + 1
    assert fmt.parse_header(bytes(data), 0) is None
