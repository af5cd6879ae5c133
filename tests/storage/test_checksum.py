"""storage.checksum.crc32 is zlib's CRC-32: files written with one are read with the other."""

from __future__ import annotations

import zlib

from hypothesis import given
from hypothesis import strategies as st

from storage import checksum


@given(st.binary(max_size=4096), st.binary(max_size=64), st.integers(0, 64))
def test_same_value_as_zlib_whole_running_and_through_a_view(
        data: bytes, head: bytes, skip: int) -> None:
    assert checksum.crc32(data) == zlib.crc32(data)
    assert checksum.crc32(data, checksum.crc32(head)) == zlib.crc32(head + data)
    view = memoryview(head + data)[min(skip, len(head)):]
    assert checksum.crc32(view) == zlib.crc32(view)


def test_the_fast_implementation_is_installed() -> None:
    assert checksum.crc32.__module__.startswith("isal")
