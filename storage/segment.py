"""One segment: a `.log` file of batches with its `.index` and `.timeindex`.

A segment is named by its base offset (20 digits), so `ls` lists the log in
order. This module reads batches and scans headers; it owns a segment's files
and indexes but no policy: rolling, retention and recovery decisions belong to
storage.log.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from storage import batch as fmt
from storage.fileio import File, FileSystem
from storage.index import OffsetIndex, TimeIndex

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIMEINDEX_SUFFIX = ".timeindex"
SUFFIXES = (LOG_SUFFIX, INDEX_SUFFIX, TIMEINDEX_SUFFIX)

# How much a scan reads at a time: large enough that a recovery scan is a few
# big sequential reads, small enough to be a trivial allocation.
SCAN_CHUNK_BYTES = 1 << 20


def segment_name(base_offset: int) -> str:
    return f"{base_offset:020d}"


def parse_segment_name(filename: str) -> int | None:
    """The base offset of `<20 digits>.log`, None for any other name."""
    stem, dot, ext = filename.partition(".")
    if dot and "." + ext == LOG_SUFFIX and len(stem) == 20 and stem.isdigit():
        return int(stem)
    return None


class Scanned(NamedTuple):
    """One step of a scan: the header at `position`, or None where the batches stop
    being plausible. `buf[at:]` holds the batch when the header is not None."""

    position: int
    header: fmt.BatchHeader | None
    buf: bytes
    at: int


def scan(file: File, position: int, end: int, chunk: int = SCAN_CHUNK_BYTES
         ) -> Iterator[Scanned]:
    """Walk batch headers from `position` to `end` with few large reads.

    Yields each plausible header (CRC not checked: the caller decides) and, if the
    walk meets something that is not a whole plausible batch, one final item with
    header None.
    """
    buf = b""
    buf_start = position
    while position < end:
        at = position - buf_start
        if at + fmt.HEADER_SIZE > len(buf):
            buf = file.pread(min(max(chunk, fmt.HEADER_SIZE), end - position), position)
            buf_start, at = position, 0
        header = fmt.parse_header(buf, at)
        if header is None or position + header.length > end:
            yield Scanned(position, None, buf, at)
            return
        if at + header.length > len(buf):
            buf = file.pread(min(max(chunk, header.length), end - position), position)
            buf_start, at = position, 0
            if header.length > len(buf):  # the file is shorter than we were told
                yield Scanned(position, None, buf, at)
                return
        yield Scanned(position, header, buf, at)
        position += header.length


def find_valid_batch(file: File, position: int, end: int, min_base: int
                     ) -> tuple[int, fmt.BatchHeader] | None:
    """The first CRC-valid batch starting in (position, end) with base offset >= min_base,
    found by searching for the magic bytes; None if there is none. This is how damage
    is told from a torn tail."""
    search_from = position + 1
    while search_from < end:
        buf = file.pread(min(SCAN_CHUNK_BYTES, end - search_from), search_from)
        if not buf:
            return None
        i = buf.find(fmt.MAGIC_BYTES)
        while i >= 0:
            candidate = search_from + i
            head = file.pread(fmt.HEADER_SIZE, candidate)
            header = fmt.parse_header(head, 0)
            if (header is not None and header.base_offset >= min_base
                    and candidate + header.length <= end):
                whole = file.pread(header.length, candidate)
                if fmt.crc_ok(whole, 0, header):
                    return candidate, header
            i = buf.find(fmt.MAGIC_BYTES, i + 1)
        # step back a little so a magic split across two reads is still found
        search_from += max(len(buf) - len(fmt.MAGIC_BYTES) + 1, 1)
    return None


def create_segment(fs: FileSystem, directory: str, base: int) -> Segment:
    """A new, empty segment at base with its files created (durably) and indexes open."""
    seg = Segment(fs, directory, base, 0, base)
    seg.file = fs.open(seg.path + LOG_SUFFIX, create=True)
    seg.index, seg.timeindex = OffsetIndex(), TimeIndex()
    seg.open_index_files()
    fs.fsync_dir(directory)
    return seg


def delete_segment_files(fs: FileSystem, directory: str, base: int) -> None:
    """Rename a segment's files to `.deleted` (durably), then unlink them."""
    stem = f"{directory}/{segment_name(base)}"
    gone = []
    for suffix in SUFFIXES:
        if fs.exists(stem + suffix):
            fs.rename(stem + suffix, stem + suffix + ".deleted")
            gone.append(stem + suffix + ".deleted")
    fs.fsync_dir(directory)
    for path in gone:
        fs.unlink(path)


class Segment:
    """A segment's files and in-memory state. `next_offset` is exact for every segment:
    the next segment's base for a sealed one, the log's end for the active one."""

    __slots__ = ("_fs", "base", "file", "index", "index_file", "max_timestamp", "next_offset",
                 "path", "size", "timeindex", "timeindex_file")

    def __init__(self, fs: FileSystem, directory: str, base: int, size: int,
                 next_offset: int) -> None:
        self._fs = fs
        self.base = base
        self.path = f"{directory}/{segment_name(base)}"
        self.size = size
        self.next_offset = next_offset
        self.file: File | None = None
        self.index: OffsetIndex | None = None
        self.timeindex: TimeIndex | None = None
        self.index_file: File | None = None
        self.timeindex_file: File | None = None
        self.max_timestamp: int | None = None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1] + LOG_SUFFIX

    def log_file(self) -> File:
        if self.file is None:
            self.file = self._fs.open(self.path + LOG_SUFFIX, create=False)
        return self.file

    def close_files(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.close_index_files()

    def close_index_files(self) -> None:
        for f in (self.index_file, self.timeindex_file):
            if f is not None:
                f.close()
        self.index_file = self.timeindex_file = None

    # ---- indexes -------------------------------------------------------------------------

    def load_indexes(self, valid_size: int, max_relative: int) -> bool:
        """Load both index files, keeping entries below valid_size and max_relative.

        True if both files were present and wholly valid; on False the kept prefix
        is still correct but may be sparser than it should be.
        """
        self.index, self.timeindex = OffsetIndex(), TimeIndex()
        data = self._read_optional(self.path + INDEX_SUFFIX)
        ok = data is not None and self.index.load(data, valid_size, max_relative)
        data = self._read_optional(self.path + TIMEINDEX_SUFFIX)
        ok = data is not None and self.timeindex.load(data, max_relative) and ok
        self.max_timestamp = self.timeindex.last_timestamp()
        return ok

    def _read_optional(self, path: str) -> bytes | None:
        return self._fs.read_file(path) if self._fs.exists(path) else None

    def ensure_indexes(self, interval: int) -> tuple[OffsetIndex, TimeIndex]:
        """The indexes of a sealed segment, loaded on first use, rebuilt if bad."""
        if self.index is None or self.timeindex is None:
            ok = self.load_indexes(self.size, self.next_offset - self.base)
            if not ok or (self.size and self.max_timestamp is None):
                self.rebuild_indexes(interval)
                self.write_indexes()
        assert self.index is not None and self.timeindex is not None
        return self.index, self.timeindex

    def rebuild_indexes(self, interval: int) -> None:
        """Rebuild both indexes by scanning the log. Stops at the first batch that is not
        valid or does not continue the offsets: reads past it then fail as corrupt."""
        index, timeindex = OffsetIndex(), TimeIndex()
        last_pos = 0
        max_ts: int | None = None
        last_rel = 0
        expected = self.base
        for item in scan(self.log_file(), 0, self.size):
            h = item.header
            if h is None or h.base_offset != expected or not fmt.crc_ok(item.buf, item.at, h):
                break
            expected = h.next_offset
            rel = h.base_offset - self.base
            if max_ts is None or h.timestamp_ms > max_ts:
                max_ts = h.timestamp_ms
            if item.position - last_pos >= interval and item.position > 0:
                index.add(rel, item.position)
                timeindex.maybe_add(max_ts, rel)
                last_pos = item.position
            last_rel = rel
        if max_ts is not None:
            timeindex.maybe_add(max_ts, last_rel)
        self.index, self.timeindex = index, timeindex
        self.max_timestamp = max_ts

    def write_indexes(self) -> None:
        """Replace both index files with the in-memory indexes (atomically each)."""
        assert self.index is not None and self.timeindex is not None
        self._fs.write_file_atomic(self.path + INDEX_SUFFIX, self.index.to_bytes())
        self._fs.write_file_atomic(self.path + TIMEINDEX_SUFFIX, self.timeindex.to_bytes())

    def open_index_files(self) -> None:
        """Open the index files for appending (the active segment only)."""
        if self.index_file is None:
            self.index_file = self._fs.open(self.path + INDEX_SUFFIX)
        if self.timeindex_file is None:
            self.timeindex_file = self._fs.open(self.path + TIMEINDEX_SUFFIX)

    def flush_indexes(self) -> None:
        """Append index entries not yet written (no fsync)."""
        assert self.index is not None and self.timeindex is not None
        assert self.index_file is not None and self.timeindex_file is not None
        if self.index.flushed < len(self.index):
            self.index_file.append(self.index.pending())
        if self.timeindex.flushed < len(self.timeindex):
            self.timeindex_file.append(self.timeindex.pending())

    def sync_indexes(self) -> None:
        self.flush_indexes()
        assert self.index_file is not None and self.timeindex_file is not None
        self.index_file.fdatasync()
        self.timeindex_file.fdatasync()
