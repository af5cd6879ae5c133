"""The on-disk record batch: one header and one msgpack body, checked by CRC32.

Layout (little-endian, HEADER_SIZE = 32 bytes, then the body):

    magic    u16   0x5153 (b"SQ")
    version  u8    FORMAT_VERSION
    attrs    u8    0 (reserved)
    crc      u32   zlib.crc32 over bytes [8:length) — every field below and the body
    length   u32   total batch bytes, header included
    base     i64   offset of the first record
    count    u32   number of records (>= 1)
    ts       i64   append timestamp, milliseconds since the epoch

The body is one msgpack array `[values, keys, headers]` in columnar form, so
encoding or decoding a batch is one C-level call whatever its record count.
This module owns the format only: it does no I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

import msgpack

from storage.api import Headers, RecordBatch
from storage.checksum import crc32
from storage.errors import CorruptRecord

MAGIC = 0x5153
FORMAT_VERSION = 1
MAGIC_BYTES = struct.pack("<HB", MAGIC, FORMAT_VERSION)  # what a look-ahead scan searches for

HEADER = struct.Struct("<HBBIIqIq")
HEADER_SIZE = HEADER.size
_CRC_FROM = 8  # the CRC covers everything after the magic, version, attrs and the CRC itself
COVERED = struct.Struct("<IqIq")  # length, base, count, ts: the header fields under the CRC
PREFIX = struct.Struct("<HBBI")  # magic, version, attrs, crc

# A batch larger than this is refused at append and treated as garbage when scanned:
# it bounds what one corrupt length field can make recovery read. 64 MiB is the
# default segment size; the broker's own limit (1 MiB per message) sits far below.
MAX_BATCH_BYTES = 64 * 2**20

# One Packer reused: msgpack.packb builds a new one per call. Sharing it between
# threads is safe: pack() is one C call that holds the GIL and, with no `default`
# hook, never runs Python code. Its buffer keeps the size of the largest body packed,
# which MAX_BATCH_BYTES bounds.
pack_body = msgpack.Packer().pack
_unpackb = msgpack.unpackb


class BatchHeader(NamedTuple):
    crc: int
    length: int
    base_offset: int
    record_count: int
    timestamp_ms: int

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.record_count


def encode(base_offset: int, timestamp_ms: int, values: Sequence[bytes],
           keys: Sequence[bytes | None] | None = None,
           headers: Sequence[Headers | None] | None = None) -> bytes:
    """One batch's bytes. Raises ValueError for an empty batch or mismatched columns."""
    head, body = encode_parts(base_offset, timestamp_ms, values, keys, headers)
    return head + body


def encode_parts(base_offset: int, timestamp_ms: int, values: Sequence[bytes],
                 keys: Sequence[bytes | None] | None = None,
                 headers: Sequence[Headers | None] | None = None) -> tuple[bytes, bytes]:
    """(header, body) of one batch, so a writer can join many without an extra copy."""
    n = len(values)
    if n == 0:
        raise ValueError("a batch needs at least one record")
    if (keys is not None and len(keys) != n) or (headers is not None and len(headers) != n):
        raise ValueError("keys and headers must be as long as values")
    body: bytes = pack_body((values, keys, headers))
    length = HEADER_SIZE + len(body)
    if length > MAX_BATCH_BYTES:
        raise ValueError(f"batch of {length} bytes exceeds {MAX_BATCH_BYTES}")
    covered = COVERED.pack(length, base_offset, n, timestamp_ms)
    return PREFIX.pack(MAGIC, FORMAT_VERSION, 0, crc32(body, crc32(covered))) + covered, body


def parse_header(buf: bytes | memoryview, pos: int) -> BatchHeader | None:
    """The header at buf[pos:], or None if it is not a plausible header (no CRC check).

    Plausible: magic and version match, length covers at least a header and at most
    MAX_BATCH_BYTES, count >= 1. The caller checks the batch fits and its CRC.
    """
    if len(buf) - pos < HEADER_SIZE:
        return None
    magic, version, _attrs, crc, length, base, count, ts = HEADER.unpack_from(buf, pos)
    if (magic != MAGIC or version != FORMAT_VERSION or length < HEADER_SIZE
            or length > MAX_BATCH_BYTES or count < 1 or base < 0):
        return None
    return BatchHeader(crc, length, base, count, ts)


def crc_ok(buf: bytes | memoryview, pos: int, header: BatchHeader) -> bool:
    """True when the whole batch is inside buf and its CRC matches."""
    end = pos + header.length
    if end > len(buf):
        return False
    return crc32(memoryview(buf)[pos + _CRC_FROM:end]) == header.crc


def decode_body(buf: bytes | memoryview, pos: int, header: BatchHeader) -> RecordBatch:
    """The RecordBatch at pos whose header was parsed and CRC checked by the caller."""
    try:
        values, keys, headers = _unpackb(
            memoryview(buf)[pos + HEADER_SIZE:pos + header.length])
    except Exception as exc:  # msgpack raises several types; none may leave storage raw
        raise CorruptRecord(f"batch at offset {header.base_offset}: bad body: {exc}") from None
    return RecordBatch(header.base_offset, header.timestamp_ms, values, keys, headers)


def decode(buf: bytes | memoryview, pos: int = 0) -> RecordBatch:
    """Decode and verify the batch at buf[pos:]. Raises CorruptRecord if it is not valid."""
    header = parse_header(buf, pos)
    if header is None:
        raise CorruptRecord(f"no valid batch header at position {pos}")
    if not crc_ok(buf, pos, header):
        raise CorruptRecord(f"batch at offset {header.base_offset}: CRC mismatch")
    return decode_body(buf, pos, header)

