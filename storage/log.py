"""FileLog: the durable partition log — segments, sparse indexes, checkpoint and recovery.

A partition directory holds, for each segment, `<base offset>.log`, `.index` and
`.timeindex`; plus `checkpoint` (the recovery point, the logical start offset and
any known damage, replaced atomically) and `clean-shutdown` (written by close(),
removed by open). Crash states show as suffixes: `.tmp` (an unfinished atomic
write) and `.deleted` (a segment on its way out); open() removes both.

Recovery trusts everything before the checkpoint's recovery point and scans only
what follows it, so open time depends on the unsynced tail, not on the log's size.
A scan stops at the first bad batch and looks ahead: no valid batch after it means
a torn tail, which is cut (WARNING); a valid batch after it means damage, which is
recorded, refused to readers and never cut (ERROR).

All I/O goes through storage.fileio.FileSystem; this module never touches os.
"""

from __future__ import annotations

import logging
import struct
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from zlib import crc32

import msgpack

from storage import batch as fmt
from storage.api import AppendEntry, Damage, RecordBatch
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
from storage.segment import (
    LOG_SUFFIX,
    SUFFIXES,
    Segment,
    find_valid_batch,
    parse_segment_name,
    scan,
)

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_BYTES = 64 * 2**20
DEFAULT_INDEX_INTERVAL_BYTES = 4096
# Recovery after a crash scans at most about this much: sync() rewrites the checkpoint
# each time this many more bytes are durable. 16 MiB scans in tens of milliseconds.
DEFAULT_CHECKPOINT_INTERVAL_BYTES = 16 * 2**20
# Positions in the index are u32; keep segments well inside that.
MAX_SEGMENT_BYTES = 2**31

CHECKPOINT = "checkpoint"
CLEAN_MARKER = "clean-shutdown"
_CKPT_HEAD = struct.Struct("<4sI")  # magic, crc32 of the msgpack body
_CKPT_MAGIC = b"SQC1"


@dataclass(frozen=True, slots=True)
class RecoveryStats:
    """What open() had to do: the proof that open time tracks the tail, not the log."""

    clean: bool  # the clean-shutdown marker and the checkpoint were both valid
    segments: int
    bytes_scanned: int
    batches_scanned: int
    truncated_bytes: int


@dataclass(frozen=True, slots=True)
class _Checkpoint:
    start_offset: int
    segment: int  # base offset of the segment holding the recovery point
    position: int  # bytes of that segment known durable and valid
    offset: int  # the offset of the batch starting at `position`
    damages: tuple[Damage, ...]

    def encode(self) -> bytes:
        body: bytes = msgpack.packb({
            "start": self.start_offset, "segment": self.segment, "position": self.position,
            "offset": self.offset,
            "damages": [[d.first_offset, d.last_offset, d.segment, d.position, d.reason]
                        for d in self.damages],
        })
        return _CKPT_HEAD.pack(_CKPT_MAGIC, crc32(body)) + body

    @staticmethod
    def decode(data: bytes) -> _Checkpoint | None:
        if len(data) < _CKPT_HEAD.size:
            return None
        magic, crc = _CKPT_HEAD.unpack_from(data)
        body = data[_CKPT_HEAD.size:]
        if magic != _CKPT_MAGIC or crc32(body) != crc:
            return None
        try:
            m = msgpack.unpackb(body)
            return _Checkpoint(int(m["start"]), int(m["segment"]), int(m["position"]),
                               int(m["offset"]),
                               tuple(Damage(int(a), int(b), str(s), int(p), str(r))
                                     for a, b, s, p, r in m["damages"]))
        except Exception:  # a checkpoint that does not parse is treated as missing
            return None


class FileLog:
    """A PartitionLog stored in one directory of segment files. Synchronous; not thread-safe.

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
        self._synced = 0  # bytes of the active segment made durable
        self._since_ckpt = 0  # durable bytes not yet covered by a checkpoint
        self._synced_offset = 0  # the offset at position _synced

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
        fs = self._fs
        fs.makedirs(self._dir)
        names = fs.listdir(self._dir)
        bases: list[int] = []
        stems: set[str] = set()
        for name in names:
            if name.endswith((".tmp", ".deleted")):
                fs.unlink(self._path(name))
                continue
            base = parse_segment_name(name)
            if base is not None:
                bases.append(base)
                stems.add(name[:-len(LOG_SUFFIX)])
        for name in names:  # an index whose log is gone
            stem, _, ext = name.partition(".")
            if "." + ext in SUFFIXES[1:] and stem not in stems:
                fs.unlink(self._path(name))
        bases.sort()

        ckpt = self._read_checkpoint()
        clean = fs.exists(self._path(CLEAN_MARKER))
        if clean:
            fs.unlink(self._path(CLEAN_MARKER))
        fs.fsync_dir(self._dir)

        start = ckpt.start_offset if ckpt else (bases[0] if bases else 0)
        while len(bases) > 1 and bases[1] <= start:
            self._delete_files(bases.pop(0))
        if not bases:
            self._create_segment_file(start).close_files()
            bases.append(start)
        start = max(start, bases[0])
        self._start = start

        # where the scan begins: the checkpoint's recovery point when it is usable
        rec_i, rec_pos, rec_off = 0, 0, bases[0]
        sizes = [fs.file_size(self._path(f"{b:020d}{LOG_SUFFIX}")) for b in bases]
        if ckpt is not None:
            j = bisect_right(bases, ckpt.segment) - 1
            upper = bases[j + 1] if 0 <= j < len(bases) - 1 else ckpt.offset
            if (j >= 0 and bases[j] == ckpt.segment and ckpt.position <= sizes[j]
                    and bases[j] <= ckpt.offset <= upper):
                rec_i, rec_pos, rec_off = j, ckpt.position, ckpt.offset
            else:
                rec_i = max(bisect_right(bases, ckpt.segment - 1), 0)
                rec_i = min(rec_i, len(bases) - 1)
                rec_off = bases[rec_i]
                log.warning("%s: checkpoint points at segment %d position %d which is not "
                            "there; scanning from segment %d", self._dir, ckpt.segment,
                            ckpt.position, bases[rec_i])
            self._damages = [d for d in ckpt.damages if d.last_offset >= start]
        clean = clean and ckpt is not None and rec_i == len(bases) - 1 and rec_pos == sizes[-1]

        for i, base in enumerate(bases):
            nxt = bases[i + 1] if i + 1 < len(bases) else base
            self._segments.append(Segment(fs, self._dir, base, sizes[i], nxt))
        self._bases = bases
        scanned = batches = truncated = 0
        for i in range(rec_i, len(bases)):
            seg = self._segments[i]
            pos, expected = (rec_pos, rec_off) if i == rec_i else (0, seg.base)
            s, b, t = self._scan_segment(seg, pos, expected, i == len(bases) - 1)
            scanned += s
            batches += b
            truncated += t
        self._sealed_bytes = sum(seg.size for seg in self._segments[:-1])
        self._activate(self._segments[-1])
        self._end = self._active.next_offset
        self.recovery_stats = RecoveryStats(clean, len(bases), scanned, batches, truncated)
        if self._damages:
            self._refuse(PartitionDamaged, self._describe_damage())
        if self._end < self._start:  # the tail that held offsets below start was lost
            self._roll(self._start)
        else:
            self._afile.fdatasync()
            self._write_checkpoint()

    def _read_checkpoint(self) -> _Checkpoint | None:
        path = self._path(CHECKPOINT)
        if not self._fs.exists(path):
            return None
        ckpt = _Checkpoint.decode(self._fs.read_file(path))
        if ckpt is None:
            log.warning("%s: checkpoint is unreadable; scanning the whole log", self._dir)
        return ckpt

    def _scan_segment(self, seg: Segment, pos: int, expected: int, is_last: bool
                      ) -> tuple[int, int, int]:
        """Verify seg from pos on, extend its indexes, record damage, cut a torn tail.

        Returns (bytes scanned, batches scanned, bytes truncated).
        """
        from_pos = pos
        ok = seg.load_indexes(pos, expected - seg.base) if pos else False
        if not pos:
            seg.index, seg.timeindex, seg.max_timestamp = OffsetIndex(), TimeIndex(), None
        assert seg.index is not None and seg.timeindex is not None
        index, timeindex = seg.index, seg.timeindex
        dirty = not ok
        max_ts = seg.max_timestamp
        last_idx = index.last_position()
        file = seg.log_file()
        batches = truncated = 0
        last_rel = -1
        damaged_here = False
        while pos < seg.size:
            bad_at = None
            for item in scan(file, pos, seg.size):
                h = item.header
                if h is None or h.base_offset != expected or not fmt.crc_ok(item.buf, item.at, h):
                    bad_at = item.position
                    break
                batches += 1
                rel = h.base_offset - seg.base
                if max_ts is None or h.timestamp_ms > max_ts:
                    max_ts = h.timestamp_ms
                if item.position - last_idx >= self._interval and (
                        item.position > 0 or self._interval == 0):
                    index.add(rel, item.position)
                    timeindex.maybe_add(max_ts, rel)
                    last_idx = item.position
                    dirty = True
                last_rel = rel
                expected = h.next_offset
                pos = item.position + h.length
            if bad_at is None:
                break
            found = find_valid_batch(file, bad_at, seg.size, expected)
            if found is None and is_last:
                truncated = seg.size - bad_at
                log.warning("%s: torn tail cut: %d bytes at position %d of %s; offsets from "
                            "%d on were never durable", self._dir, truncated, bad_at,
                            seg.name, expected)
                file.truncate(bad_at)
                file.fdatasync()
                seg.size = pos = bad_at
                break
            damaged_here = True
            resume_off = found[1].base_offset if found else seg.next_offset
            damage = Damage(expected, max(resume_off - 1, expected), seg.name, bad_at,
                            "no valid batch at this position, valid data follows")
            self._damages.append(damage)
            log.error("%s: damage in %s at position %d: offsets %d..%d are unreadable and "
                      "kept for inspection", self._dir, seg.name, bad_at,
                      damage.first_offset, damage.last_offset)
            if found is None:
                pos = seg.size
                expected = seg.next_offset
                break
            pos, expected = found[0], found[1].base_offset
            index.add(expected - seg.base, pos)
            last_idx = pos
            dirty = True
        if last_rel >= 0 and max_ts is not None:
            timeindex.maybe_add(max_ts, last_rel)
        seg.max_timestamp = max_ts
        if is_last:
            seg.next_offset = expected
        elif expected != seg.next_offset and not damaged_here:
            lo, hi = sorted((expected, seg.next_offset))
            self._damages.append(Damage(lo, hi - 1, seg.name, pos,
                                        "offsets do not continue into the next segment"))
        if dirty:
            seg.write_indexes()
        return pos - from_pos, batches, truncated

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
        self._synced = seg.size
        self._synced_offset = seg.next_offset

    def _create_segment_file(self, base: int) -> Segment:
        seg = Segment(self._fs, self._dir, base, 0, base)
        seg.file = self._fs.open(seg.path + LOG_SUFFIX, create=True)
        seg.index, seg.timeindex = OffsetIndex(), TimeIndex()
        seg.open_index_files()
        self._fs.fsync_dir(self._dir)
        return seg

    def _roll(self, new_base: int) -> None:
        """Seal the active segment (synced with its indexes) and start one at new_base."""
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
        seg = self._create_segment_file(new_base)
        self._sealed_bytes += old.size
        self._segments.append(seg)
        self._bases.append(new_base)
        self._activate(seg)
        self._end = new_base
        self._since_ckpt = 0
        self._write_checkpoint()

    def _write_checkpoint(self) -> None:
        """Record the recovery point (everything synced so far) with start offset and damage."""
        point = (self._active.base, self._synced, self._synced_offset)
        ckpt = _Checkpoint(self._start, *point, damages=tuple(self._damages))
        self._fs.write_file_atomic(self._path(CHECKPOINT), ckpt.encode())

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
        cov_pack = fmt._COVERED.pack
        pre_pack = fmt._PREFIX.pack
        packb = fmt._packb
        magic, version, header_size, max_batch = (
            fmt.MAGIC, fmt.FORMAT_VERSION, fmt.HEADER_SIZE, fmt.MAX_BATCH_BYTES)
        parts: list[bytes] = []
        add = parts.append
        bases: list[int] = []
        offset = self._end
        seg_base = self._active.base
        pos = self._asize
        next_idx = self._next_index_pos
        interval = self._interval
        max_ts = self._max_ts
        marks: list[tuple[int, int, int]] = []
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
            body = packb((values, keys, headers))
            length = header_size + len(body)
            if length > max_batch:
                raise ValueError(f"batch of {length} bytes exceeds {max_batch}")
            covered = cov_pack(length, offset, n, ts)
            add(pre_pack(magic, version, 0, crc32(body, crc32(covered))))
            add(covered)
            add(body)
            bases.append(offset)
            if max_ts is None or ts > max_ts:
                max_ts = ts
            if pos >= next_idx:
                marks.append((offset, pos, max_ts))
                next_idx = pos + interval
            offset += n
            pos += length
        if not bases:
            return bases
        if self._asize and (pos > self._segment_bytes
                            or offset - seg_base > MAX_RELATIVE):
            self._roll(self._end)
            seg_base, pos, max_ts, marks = self._replan(parts, bases)
            next_idx = marks[-1][1] + interval if marks else interval
        self._afile.append(b"".join(parts))  # StorageFull: nothing above has been changed
        if marks:
            aindex, atime = self._aindex, self._atime
            for off, p, t in marks:
                aindex.add(off - seg_base, p)
                atime.maybe_add(t, off - seg_base)
        self._next_index_pos = next_idx
        self._max_ts = max_ts
        self._since_ckpt += pos - self._asize
        self._asize = pos
        self._active.size = pos
        self._end = self._active.next_offset = offset
        if marks and len(self._aindex) - self._aindex.flushed > 512:
            try:
                self._active.flush_indexes()
            except StorageError:  # the batches are written; the index is rebuilt if needed
                log.warning("%s: could not write index entries", self._dir)
        return bases

    def _replan(self, parts: list[bytes], bases: list[int]
                ) -> tuple[int, int, int | None, list[tuple[int, int, int]]]:
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
        return self._active.base, pos, max_ts, marks

    def sync(self) -> None:
        if self._failed:
            raise FsyncFailed(f"{self._dir}: an earlier fsync failed; reopen the log")
        self._check_open()
        if self._synced == self._asize:
            return
        try:
            self._afile.fdatasync()
        except FsyncFailed as exc:
            self._fail(exc)
            raise
        self._synced = self._asize
        self._synced_offset = self._end
        if self._since_ckpt >= self._ckpt_interval:
            self._checkpoint_now()

    def _checkpoint_now(self) -> None:
        if self._max_ts is not None and self._asize:
            self._atime.maybe_add(self._max_ts, self._end - 1 - self._active.base)
        try:
            self._active.sync_indexes()
            self._write_checkpoint()
        except FsyncFailed as exc:
            self._fail(exc)
            raise
        except StorageFull:  # the data is durable; the checkpoint waits for space
            log.warning("%s: no space to write the checkpoint; will retry", self._dir)
            return
        self._since_ckpt = 0

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
        chunk = min(budget, 1 << 20) + self._interval + fmt.HEADER_SIZE
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
            if h.base_offset < offset or expected > stop:
                b = b.slice(offset, stop)
            out.append(b)
            budget -= h.length
            offset = b.next_offset
            if offset >= stop:
                return offset, budget, False
        return offset, budget, True

    def _rebuild_indexes(self, seg: Segment) -> None:
        log.warning("%s: index of %s points at no batch; rebuilding it", self._dir, seg.name)
        seg.rebuild_indexes(self._interval)
        if seg is self._active:
            seg.close_index_files()
            seg.write_indexes()
            self._activate(seg)
        else:
            seg.write_indexes()

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
        self._start = new_start
        self._damages = [d for d in self._damages if d.last_offset >= new_start]
        if not self._damages and not self._failed:
            self._refusal = None
        self._write_checkpoint()
        doomed, self._segments = self._segments[:n], self._segments[n:]
        self._bases = self._bases[n:]
        for seg in doomed:
            seg.close_files()
            self._sealed_bytes -= seg.size
            self._delete_files(seg.base)

    def _delete_files(self, base: int) -> None:
        """Rename a segment's files to `.deleted` (durably), then unlink them."""
        stem = self._path(f"{base:020d}")
        gone = []
        for suffix in SUFFIXES:
            if self._fs.exists(stem + suffix):
                self._fs.rename(stem + suffix, stem + suffix + ".deleted")
                gone.append(stem + suffix + ".deleted")
        self._fs.fsync_dir(self._dir)
        for path in gone:
            self._fs.unlink(path)

    def close(self) -> None:
        """Sync, write the checkpoint and the clean-shutdown marker, close files.

        Raises FsyncFailed if the final sync fails (the marker is then not written).
        """
        if self._closed:
            return
        try:
            if not self._failed:
                self.sync()
                self._checkpoint_now()
                self._fs.write_file_atomic(self._path(CLEAN_MARKER), b"")
        finally:
            self._closed = True
            for seg in self._segments:
                seg.close_files()
