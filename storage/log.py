"""FileLog: the durable partition log — segments, sparse indexes, checkpoint and recovery.

A partition directory holds, for each segment, `<base offset>.log`, `.index` and
`.timeindex`; plus `checkpoint` (the recovery point, the logical start offset and
any known damage, replaced atomically) and `clean-shutdown` (written by close(),
removed by open). Crash states show as suffixes: `.tmp` (an unfinished atomic
write) and `.deleted` (a segment on its way out); open() removes both.

Recovery (storage.recovery) trusts everything before the checkpoint's recovery
point and scans only what follows it; a torn tail is cut, damage is recorded,
refused to readers and never cut.

All I/O goes through storage.fileio.FileSystem; this module never touches os.
"""

from __future__ import annotations

import logging
import threading
from bisect import bisect_right
from collections.abc import Callable, Sequence

from storage import batch as fmt
from storage.api import AppendEntry, Damage, RecordBatch
from storage.checksum import crc32
from storage.errors import (
    CorruptRecord,
    FsyncFailed,
    OffsetOutOfRange,
    PartitionDamaged,
    StorageError,
    StorageFull,
)
from storage.fileio import File, FileSystem
from storage.index import MAX_RELATIVE, OffsetIndex, TimeIndex
from storage.memory import wall_clock_ms
from storage.recovery import (
    CLEAN_MARKER,
    Checkpoint,
    RecoveryStats,
    recover,
    write_checkpoint,
)
from storage.segment import Segment, create_segment, delete_segment_files, scan

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_BYTES = 64 * 2**20
DEFAULT_INDEX_INTERVAL_BYTES = 4096
# Recovery after a crash scans at most about this much: sync() rewrites the checkpoint
# each time this many more bytes are durable. 16 MiB scans in tens of milliseconds.
DEFAULT_CHECKPOINT_INTERVAL_BYTES = 16 * 2**20
# Positions in the index are u32; keep segments well inside that.
MAX_SEGMENT_BYTES = 2**31
# The largest batch a log keeps decoded for the next read (see FileLog._hot): a
# producer's batch of 1,000 x 1 KiB fits; the memory it costs is per partition.
HOT_BATCH_MAX_BYTES = 2 * 2**20
# A read's first pread is sized by what it wants: at least this, at most READ_CHUNK_MAX,
# else the length of the last batch read, or its bytes per record times the records
# asked for, whichever is more (see FileLog._read_hint).
READ_CHUNK_MIN = 64 * 1024
READ_CHUNK_MAX = 2**20

# Index entries are written to their files once this many are pending: a few KiB per
# write, and a crash loses at most this many (the index is then sparser, not wrong).
INDEX_FLUSH_ENTRIES = 512


_COVERED_PACK = fmt.COVERED.pack
_PREFIX_PACK = fmt.PREFIX.pack
_HEADER_SIZE = fmt.HEADER_SIZE
_MAX_BATCH = fmt.MAX_BATCH_BYTES
_MAGIC = fmt.MAGIC
_VERSION = fmt.FORMAT_VERSION


class FileLog:
    """A PartitionLog stored in one directory of segment files. Synchronous.

    One thread (the event loop) calls everything; `sync()` alone may also run in a
    worker thread while that thread goes on appending and reading. sync() makes
    durable what was written when it started and marks only that as synced; it
    touches no in-memory index, and `_sync_lock` keeps a segment roll (or anything
    else that closes files or writes the checkpoint) from running during it.

    Build one with FileLog.open(). After FsyncFailed the log refuses appends and syncs
    (the kernel may have dropped written pages); reopen it to recover.
    """

    recovery_stats: RecoveryStats

    def __init__(self, fs: FileSystem, directory: str, segment_bytes: int,
                 index_interval_bytes: int, clock_ms: Callable[[], int] | None,
                 checkpoint_interval_bytes: int) -> None:
        if not 0 < segment_bytes <= MAX_SEGMENT_BYTES:
            raise ValueError(f"segment_bytes must be in (0, {MAX_SEGMENT_BYTES}]")
        if index_interval_bytes < 0 or checkpoint_interval_bytes < 0:
            raise ValueError("intervals must be >= 0")
        self._fs = fs
        self._dir = directory.rstrip("/") or "/"
        self._segment_bytes = segment_bytes
        self._interval = index_interval_bytes
        self._clock = clock_ms or wall_clock_ms
        self._ckpt_interval = checkpoint_interval_bytes
        self._segments: list[Segment] = []
        self._bases: list[int] = []
        self._sealed_bytes = 0
        self._start = 0
        self._end = 0
        self._damages: list[Damage] = []
        # The last batch a read decoded but stopped inside, and its stored length: the
        # next read of its records (a consumer taking 500 of a 1,000-record batch, or
        # 100 at a time over HTTP) slices it instead of reading, checking and decoding
        # it again. One per partition, at most HOT_BATCH_MAX_BYTES.
        self._hot: tuple[RecordBatch, int] | None = None
        # The stored length and record count of the last batch a read decoded: the next
        # read's first pread asks for about that much, not for a whole READ_CHUNK_MAX, so
        # a reader of 100 KiB batches copies 100 KiB per batch from the page cache.
        self._read_hint = (READ_CHUNK_MIN, 1)
        self._refusal: tuple[type[StorageError], str] | None = None
        self._failed = False
        self._closed = False
        # the active segment, unpacked for the append path
        self._active: Segment
        self._afile: File
        self._aindex: OffsetIndex
        self._atime: TimeIndex
        self._asize = 0
        self._next_index_pos = 0
        self._max_ts: int | None = None
        # What append_many has written to the active segment, as one tuple so a sync in
        # a worker thread reads a consistent (size, end offset, max timestamp).
        self._written: tuple[int, int, int | None] = (0, 0, None)
        # Below: written only with _sync_lock held.
        self._synced = 0  # bytes of the active segment made durable
        self._synced_offset = 0  # the offset at position _synced
        self._synced_max_ts: int | None = None  # the max timestamp before position _synced
        self._ckpt_position = 0  # _synced when the checkpoint was last written
        # Held by sync() for its whole run, and by whatever closes the active segment's
        # files or writes the checkpoint. Reentrant: close() and truncate_before() sync.
        self._sync_lock = threading.RLock()

    # ---- construction and recovery -----------------------------------------------------

    @classmethod
    def open(cls, fs: FileSystem, directory: str, *,
             segment_bytes: int = DEFAULT_SEGMENT_BYTES,
             index_interval_bytes: int = DEFAULT_INDEX_INTERVAL_BYTES,
             clock_ms: Callable[[], int] | None = None,
             checkpoint_interval_bytes: int = DEFAULT_CHECKPOINT_INTERVAL_BYTES) -> FileLog:
        """Open (creating if needed) the partition in `directory`, recovering after a crash.

        Raises StorageError when the directory cannot be read or repaired; damage is not
        an error here: it is reported through `damage` and refused to readers.
        """
        self = cls(fs, directory, segment_bytes, index_interval_bytes, clock_ms,
                   checkpoint_interval_bytes)
        try:
            self._recover()
        except BaseException:
            for seg in self._segments:
                seg.close_files()
            raise
        return self

    def _path(self, name: str) -> str:
        return f"{self._dir}/{name}"

    def _recover(self) -> None:
        r = recover(self._fs, self._dir, self._interval)
        self._segments, self._bases, self._damages = r.segments, r.bases, r.damages
        self._start = r.start_offset
        self.recovery_stats = r.stats
        self._sealed_bytes = sum(seg.size for seg in self._segments[:-1])
        self._activate(self._segments[-1])
        self._end = self._active.next_offset
        if self._damages:
            self._refuse(PartitionDamaged, self._describe_damage())
        if self._end < self._start:  # the tail that held offsets below start was lost
            self._roll(self._start)
        else:
            self._afile.fdatasync()
            self._write_checkpoint()

    # ---- the active segment ----------------------------------------------------------------

    def _activate(self, seg: Segment) -> None:
        assert seg.index is not None and seg.timeindex is not None
        seg.open_index_files()
        self._active = seg
        self._afile = seg.log_file()
        self._aindex = seg.index
        self._atime = seg.timeindex
        self._asize = seg.size
        self._next_index_pos = seg.index.last_position() + self._interval
        if not len(seg.index) and self._interval:
            self._next_index_pos = self._interval
        self._max_ts = seg.max_timestamp
        self._written = (seg.size, seg.next_offset, seg.max_timestamp)
        self._synced = seg.size
        self._synced_offset = seg.next_offset
        self._synced_max_ts = seg.max_timestamp
        self._ckpt_position = seg.size

    def _roll(self, new_base: int) -> None:
        """Seal the active segment (synced with its indexes) and start one at new_base.

        Waits for a sync running in a worker thread: that sync may be using the files
        closed here. Sealed segments are always wholly durable, so recovery never
        meets a torn tail anywhere but in the last segment.
        """
        with self._sync_lock:
            old = self._active
            try:
                if self._max_ts is not None and self._asize:
                    self._atime.maybe_add(self._max_ts, self._end - 1 - old.base)
                old.sync_indexes()
                if self._synced < self._asize:
                    self._afile.fdatasync()
            except FsyncFailed as exc:
                self._fail(exc)
                raise
            old.size = self._asize
            old.next_offset = new_base
            old.max_timestamp = self._max_ts
            old.close_index_files()
            seg = create_segment(self._fs, self._dir, new_base)
            self._sealed_bytes += old.size
            self._segments.append(seg)
            self._bases.append(new_base)
            self._activate(seg)
            self._end = new_base
            self._write_checkpoint()

    def _write_checkpoint(self) -> None:
        """Record the recovery point (everything synced so far) with start offset and damage."""
        with self._sync_lock:
            ckpt = Checkpoint(self._start, self._active.base, self._synced,
                              self._synced_offset, tuple(self._damages), self._synced_max_ts)
            write_checkpoint(self._fs, self._dir, ckpt)
            self._ckpt_position = self._synced

    def _fail(self, exc: FsyncFailed) -> None:
        self._failed = True
        self._refuse(FsyncFailed, f"an earlier fsync failed ({exc.message}); reopen the log")

    def _refuse(self, kind: type[StorageError], why: str) -> None:
        if self._refusal is None or kind is FsyncFailed:
            self._refusal = (kind, f"{self._dir}: appends refused: {why}")

    def _describe_damage(self) -> str:
        d = self._damages[0]
        return f"damaged at offsets {d.first_offset}..{d.last_offset} ({d.segment})"

    # ---- PartitionLog ----------------------------------------------------------------------

    @property
    def start_offset(self) -> int:
        return self._start

    @property
    def end_offset(self) -> int:
        return self._end

    @property
    def damage(self) -> Damage | None:
        return self._damages[0] if self._damages else None

    @property
    def damages(self) -> tuple[Damage, ...]:
        """Every damaged range known, oldest first."""
        return tuple(self._damages)

    def append_many(self, entries: Sequence[AppendEntry]) -> list[int]:
        if self._refusal is not None:
            kind, why = self._refusal
            raise kind(why)
        # The hot path: module constants and bound methods as locals, one list of parts
        # joined once, index marks only where an index interval is crossed.
        cov_pack, pre_pack, pack = _COVERED_PACK, _PREFIX_PACK, fmt.pack_body
        parts: list[bytes] = []
        add = parts.append
        bases: list[int] = []
        add_base = bases.append
        offset = self._end
        pos = self._asize
        next_idx = self._next_index_pos
        interval = self._interval
        max_ts = self._max_ts
        marks: list[tuple[int, int, int]] | None = None
        now: int | None = None
        for e in entries:
            values = e.values
            n = len(values)
            keys = e.keys
            headers = e.headers
            if not n or (keys is not None and len(keys) != n) or (
                    headers is not None and len(headers) != n):
                raise ValueError("each batch needs >= 1 value; keys/headers as long as values")
            ts = e.timestamp_ms
            if ts is None:
                if now is None:
                    now = self._clock()
                ts = now
            body = pack((values, keys, headers))
            length = _HEADER_SIZE + len(body)
            if length > _MAX_BATCH:
                raise ValueError(f"batch of {length} bytes exceeds {_MAX_BATCH}")
            covered = cov_pack(length, offset, n, ts)
            add(pre_pack(_MAGIC, _VERSION, 0, crc32(body, crc32(covered))))
            add(covered)
            add(body)
            add_base(offset)
            if max_ts is None or ts > max_ts:
                max_ts = ts
            if pos >= next_idx:
                if marks is None:
                    marks = []
                marks.append((offset, pos, max_ts))
                next_idx = pos + interval
            offset += n
            pos += length
        if not bases:
            return bases
        active = self._active
        if self._asize and (pos > self._segment_bytes or offset - active.base > MAX_RELATIVE):
            self._roll(self._end)
            active = self._active
            pos, max_ts, marks = self._replan(parts, bases)
            next_idx = marks[-1][1] + interval if marks else interval
        self._afile.append(b"".join(parts))  # StorageFull: nothing above has been changed
        self._next_index_pos = next_idx
        self._max_ts = max_ts
        self._asize = active.size = pos
        self._end = active.next_offset = offset
        self._written = (pos, offset, max_ts)
        if marks is not None:
            self._add_marks(active, marks)
        return bases

    def _add_marks(self, active: Segment, marks: list[tuple[int, int, int]]) -> None:
        """Index the batches that crossed an index interval; write the entries in bulk."""
        aindex, atime = self._aindex, self._atime
        seg_base = active.base
        for off, p, t in marks:
            aindex.add(off - seg_base, p)
            atime.maybe_add(t, off - seg_base)
        if len(aindex) - aindex.flushed > INDEX_FLUSH_ENTRIES:
            try:
                active.flush_indexes()
            except StorageError:  # the batches are written; the index is rebuilt if needed
                log.warning("%s: could not write index entries", self._dir)

    def _replan(self, parts: list[bytes], bases: list[int]
                ) -> tuple[int, int | None, list[tuple[int, int, int]]]:
        """Index marks for already-encoded batches placed at the start of a fresh segment."""
        pos = 0
        next_idx = self._interval
        marks: list[tuple[int, int, int]] = []
        max_ts: int | None = None
        for i, base in enumerate(bases):
            _, _, _, _, length, _, _, ts = fmt.HEADER.unpack(parts[3 * i] + parts[3 * i + 1])
            if max_ts is None or ts > max_ts:
                max_ts = ts
            if pos >= next_idx or (self._interval == 0):
                marks.append((base, pos, max_ts))
                next_idx = pos + self._interval
            pos += length
        return pos, max_ts, marks

    def sync(self) -> None:
        """Make durable every append made before this call; safe in a worker thread while
        the owning thread appends and reads (see the class docstring).

        Captures the written size first and marks only that as synced: bytes appended
        during the fdatasync wait for the next sync(). Raises FsyncFailed (fatal).
        """
        if self._failed:
            raise FsyncFailed(f"{self._dir}: an earlier fsync failed; reopen the log")
        self._check_open()
        with self._sync_lock:
            size, end, max_ts = self._written  # the active segment cannot roll meanwhile
            if size <= self._synced:
                return
            try:
                self._afile.fdatasync()
            except FsyncFailed as exc:
                self._fail(exc)
                raise
            self._synced, self._synced_offset, self._synced_max_ts = size, end, max_ts
            if size - self._ckpt_position >= self._ckpt_interval:
                self._checkpoint_synced()

    def _checkpoint_synced(self) -> None:
        """Write the checkpoint for the synced point, with the index entries written so far.

        Runs inside sync(), possibly in a worker thread: it changes no in-memory index
        (the owning thread may be appending to them) and only fsyncs the index files.
        Index entries not yet written only leave the index sparser after a crash.
        """
        active = self._active
        try:
            if active.index_file is not None and active.timeindex_file is not None:
                active.index_file.fdatasync()
                active.timeindex_file.fdatasync()
            self._write_checkpoint()
        except FsyncFailed as exc:
            self._fail(exc)
            raise
        except StorageFull:  # the data is durable; the checkpoint waits for space
            log.warning("%s: no space to write the checkpoint; will retry", self._dir)

    def _checkpoint_now(self) -> None:
        """Sync and checkpoint everything, indexes included (owning thread only)."""
        with self._sync_lock:
            if self._max_ts is not None and self._asize:
                self._atime.maybe_add(self._max_ts, self._end - 1 - self._active.base)
            try:
                self._active.flush_indexes()
            except StorageFull:
                log.warning("%s: no space to write index entries", self._dir)
            self.sync()
            self._checkpoint_synced()

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"{self._dir}: the log is closed")

    def read(self, offset: int, max_bytes: int = 1 << 20, max_records: int | None = None
             ) -> list[RecordBatch]:
        self._check_open()
        if offset < self._start or offset > self._end:
            raise OffsetOutOfRange(f"offset {offset} outside [{self._start}, {self._end}]")
        stop = self._stop_for(offset)
        if max_records is not None:
            stop = min(stop, offset + max_records)
        out: list[RecordBatch] = []
        budget = max_bytes
        hot = self._hot
        if hot is not None and hot[0].base_offset <= offset < hot[0].next_offset:
            batch, length = hot
            b = batch.slice(offset, stop)
            out.append(b)
            budget -= length
            offset = b.next_offset
            if offset >= batch.next_offset:
                self._hot = None  # read to its end: the reader has moved on
            if offset >= stop or budget <= 0:
                return out
        i = bisect_right(self._bases, offset) - 1
        segments = self._segments
        more = True
        while more and offset < stop and i < len(segments):
            offset, budget, more = self._read_segment(segments[i], offset, stop, budget, out)
            i += 1
        return out

    def _stop_for(self, offset: int) -> int:
        """The end of what may be served from offset on; raises inside damage."""
        stop = self._end
        for d in self._damages:
            if d.first_offset <= offset <= d.last_offset:
                raise PartitionDamaged(
                    f"{self._dir}: offset {offset} is in damaged range "
                    f"{d.first_offset}..{d.last_offset} ({d.segment} position {d.position})")
            if d.first_offset > offset:
                stop = min(stop, d.first_offset)
        return stop

    def _indexes(self, seg: Segment) -> tuple[OffsetIndex, TimeIndex]:
        if seg is self._active:
            return self._aindex, self._atime
        return seg.ensure_indexes(self._interval)

    def _read_segment(self, seg: Segment, offset: int, stop: int, budget: int,
                      out: list[RecordBatch], rebuilt: bool = False) -> tuple[int, int, bool]:
        """Append batches of seg holding offsets in [offset, stop) to out, within budget.

        Returns (next offset, budget left, whether to go on to the next segment).
        """
        index, _ = self._indexes(seg)
        rel, pos = index.lookup(offset - seg.base)
        expected = seg.base + rel
        size = self._asize if seg is self._active else seg.size
        last_len, last_count = self._read_hint
        want = max(READ_CHUNK_MIN, last_len, (stop - offset) * last_len // last_count)
        chunk = min(budget, READ_CHUNK_MAX, want) + self._interval + fmt.HEADER_SIZE
        decode_body, crc_ok = fmt.decode_body, fmt.crc_ok
        for item in scan(seg.log_file(), pos, size, chunk):
            h = item.header
            if h is None or h.base_offset != expected:
                if pos and item.position == pos and not rebuilt:
                    # the index points somewhere wrong: rebuild it from the log and retry
                    self._rebuild_indexes(seg)
                    return self._read_segment(seg, offset, stop, budget, out, rebuilt=True)
                raise CorruptRecord(f"{self._dir}: {seg.name} position {item.position}: "
                                    f"no valid batch for offset {expected}")
            expected = h.next_offset
            if expected <= offset:
                continue
            if out and h.length > budget:
                return offset, budget, False
            if not crc_ok(item.buf, item.at, h):
                raise CorruptRecord(f"{self._dir}: {seg.name} position {item.position}: "
                                    f"CRC mismatch in batch at offset {h.base_offset}")
            b = decode_body(item.buf, item.at, h)
            self._read_hint = (h.length, h.record_count or 1)
            if h.base_offset < offset or expected > stop:
                if expected > stop and h.length <= HOT_BATCH_MAX_BYTES:
                    self._hot = (b, h.length)
                b = b.slice(offset, stop)
            out.append(b)
            budget -= h.length
            offset = b.next_offset
            if offset >= stop:
                return offset, budget, False
        return offset, budget, True

    def _rebuild_indexes(self, seg: Segment) -> None:
        log.warning("%s: index of %s points at no batch; rebuilding it", self._dir, seg.name)
        if seg is not self._active:
            seg.rebuild_indexes(self._interval)
            seg.write_indexes()
            return
        with self._sync_lock:  # a running sync may be using the index files
            seg.size = self._asize
            seg.rebuild_indexes(self._interval)
            seg.close_index_files()
            seg.write_indexes()
            synced = (self._synced, self._synced_offset, self._synced_max_ts,
                      self._ckpt_position)
            self._activate(seg)
            (self._synced, self._synced_offset, self._synced_max_ts,
             self._ckpt_position) = synced

    def _locate(self, offset: int) -> fmt.BatchHeader:
        """The verified header of the batch holding offset (start <= offset < end)."""
        self._stop_for(offset)
        seg = self._segments[bisect_right(self._bases, offset) - 1]
        index, _ = self._indexes(seg)
        _, pos = index.lookup(offset - seg.base)
        size = self._asize if seg is self._active else seg.size
        for item in scan(seg.log_file(), pos, size, self._interval + 4 * fmt.HEADER_SIZE):
            h = item.header
            if h is None or not fmt.crc_ok(item.buf, item.at, h):
                raise CorruptRecord(f"{self._dir}: {seg.name} position {item.position}: "
                                    "invalid batch")
            if h.next_offset > offset:
                return h
        raise CorruptRecord(f"{self._dir}: offset {offset} not found in {seg.name}")

    def timestamp_of(self, offset: int) -> int | None:
        self._check_open()
        if offset < self._start or offset >= self._end:
            return None
        return self._locate(offset).timestamp_ms

    def oldest_timestamp_ms(self) -> int | None:
        return self.timestamp_of(self._start)

    def offset_for_time(self, timestamp_ms: int) -> int:
        self._check_open()
        first = bisect_right(self._bases, self._start) - 1
        for seg in self._segments[max(first, 0):]:
            index, timeindex = self._indexes(seg)
            max_ts = self._max_ts if seg is self._active else seg.max_timestamp
            if max_ts is None or max_ts < timestamp_ms:
                continue
            rel = timeindex.lookup(timestamp_ms)
            _, pos = index.lookup(rel)
            size = self._asize if seg is self._active else seg.size
            for item in scan(seg.log_file(), pos, size):
                h = item.header
                if h is None:
                    raise CorruptRecord(f"{self._dir}: {seg.name} position {item.position}: "
                                        "invalid batch")
                if h.timestamp_ms >= timestamp_ms and h.next_offset > self._start:
                    return max(h.base_offset, self._start)
        return self._end

    def size_bytes(self) -> int:
        return self._sealed_bytes + self._asize

    def truncate_before(self, offset: int) -> None:
        self._check_open()
        if offset > self._end:
            raise OffsetOutOfRange(f"cannot truncate before {offset}: end is {self._end}")
        if offset <= self._start:
            return
        self.sync()
        if offset == self._end and self._asize:
            self._roll(self._end)
        n = 0
        while n < len(self._segments) - 1 and self._segments[n].next_offset <= offset:
            n += 1
        self._drop_segments(n, offset)

    def apply_retention(self, now_ms: int, max_age_ms: int, max_bytes: int,
                        keep_from: int | None = None) -> int:
        """See PartitionLog.apply_retention; a negative limit means no limit."""
        self._check_open()
        total = self.size_bytes()
        n = 0
        while n < len(self._segments) - 1:
            seg = self._segments[n]
            if keep_from is not None and seg.next_offset > keep_from:
                break
            too_big = 0 <= max_bytes < total
            if not too_big and max_age_ms >= 0:
                self._indexes(seg)
                too_big = seg.max_timestamp is None or seg.max_timestamp < now_ms - max_age_ms
            if not too_big:
                break
            total -= seg.size
            n += 1
        if n:
            self._drop_segments(n, max(self._start, self._segments[n].base))
        return self._start

    def _drop_segments(self, n: int, new_start: int) -> None:
        """Move start to new_start (durably, first), then delete the first n segments."""
        with self._sync_lock:  # the checkpoint must not be written by two threads at once
            self._drop_locked(n, new_start)

    def _drop_locked(self, n: int, new_start: int) -> None:
        self._start = new_start
        self._hot = None
        self._damages = [d for d in self._damages if d.last_offset >= new_start]
        if not self._damages and not self._failed:
            self._refusal = None
        self._write_checkpoint()
        doomed, self._segments = self._segments[:n], self._segments[n:]
        self._bases = self._bases[n:]
        for seg in doomed:
            seg.close_files()
            self._sealed_bytes -= seg.size
            delete_segment_files(self._fs, self._dir, seg.base)

    def close(self) -> None:
        """Sync, write the checkpoint and the clean-shutdown marker, close files.

        Raises FsyncFailed if the final sync fails (the marker is then not written).
        """
        if self._closed:
            return
        with self._sync_lock:
            try:
                if not self._failed:
                    self._checkpoint_now()
                    self._fs.write_file_atomic(self._path(CLEAN_MARKER), b"")
            finally:
                self._closed = True
                self._hot = None
                for seg in self._segments:
                    seg.close_files()
