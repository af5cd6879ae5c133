"""Opening a partition directory after a clean close or a crash: the checkpoint and the scan.

Recovery trusts everything before the checkpoint's recovery point and scans only
what follows it, so open time depends on the unsynced tail, not on the log's size.
A scan stops at the first bad batch and looks ahead: no valid batch after it means
a torn tail, which is cut (WARNING); a valid batch after it means damage, which is
recorded, refused to readers and never cut (ERROR).

This module decides what the directory holds; storage.log owns the log built from
it. All I/O goes through storage.fileio.FileSystem.
"""

from __future__ import annotations

import logging
import struct
from bisect import bisect_right
from dataclasses import dataclass

import msgpack

from storage import batch as fmt
from storage.api import Damage
from storage.checksum import crc32
from storage.fileio import FileSystem
from storage.index import OffsetIndex, TimeIndex
from storage.segment import (
    LOG_SUFFIX,
    SUFFIXES,
    Segment,
    create_segment,
    delete_segment_files,
    find_valid_batch,
    parse_segment_name,
    scan,
)

log = logging.getLogger("storage.log")  # recovery reports belong to the log's story

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
class Checkpoint:
    start_offset: int
    segment: int  # base offset of the segment holding the recovery point
    position: int  # bytes of that segment known durable and valid
    offset: int  # the offset of the batch starting at `position`
    damages: tuple[Damage, ...]
    # The largest timestamp in that segment before `position`: the time index on disk
    # may lag behind the recovery point, and recovery scans only what follows it.
    max_timestamp: int | None = None

    def encode(self) -> bytes:
        body: bytes = msgpack.packb({
            "start": self.start_offset, "segment": self.segment, "position": self.position,
            "offset": self.offset, "max_ts": self.max_timestamp,
            "damages": [[d.first_offset, d.last_offset, d.segment, d.position, d.reason]
                        for d in self.damages],
        })
        return _CKPT_HEAD.pack(_CKPT_MAGIC, crc32(body)) + body

    @staticmethod
    def decode(data: bytes) -> Checkpoint | None:
        if len(data) < _CKPT_HEAD.size:
            return None
        magic, crc = _CKPT_HEAD.unpack_from(data)
        body = data[_CKPT_HEAD.size:]
        if magic != _CKPT_MAGIC or crc32(body) != crc:
            return None
        try:
            m = msgpack.unpackb(body)
            max_ts = m.get("max_ts")
            return Checkpoint(int(m["start"]), int(m["segment"]), int(m["position"]),
                               int(m["offset"]),
                               tuple(Damage(int(a), int(b), str(s), int(p), str(r))
                                     for a, b, s, p, r in m["damages"]),
                               None if max_ts is None else int(max_ts))
        except Exception:  # a checkpoint that does not parse is treated as missing
            return None


@dataclass(frozen=True, slots=True)
class Recovered:
    """The directory as recovery left it: segments in order (last one active)."""

    start_offset: int
    segments: list[Segment]
    bases: list[int]
    damages: list[Damage]
    stats: RecoveryStats


def _path(directory: str, name: str) -> str:
    return f"{directory}/{name}"


def read_checkpoint(fs: FileSystem, directory: str) -> Checkpoint | None:
    """The checkpoint, None when missing or unreadable (then the whole log is scanned)."""
    path = _path(directory, CHECKPOINT)
    if not fs.exists(path):
        return None
    ckpt = Checkpoint.decode(fs.read_file(path))
    if ckpt is None:
        log.warning("%s: checkpoint is unreadable; scanning the whole log", directory)
    return ckpt


def write_checkpoint(fs: FileSystem, directory: str, ckpt: Checkpoint) -> None:
    fs.write_file_atomic(_path(directory, CHECKPOINT), ckpt.encode())


def recover(fs: FileSystem, directory: str, interval: int) -> Recovered:
    """Tidy the directory, read the checkpoint, scan what follows the recovery point.

    Cuts a torn tail, records damage; leaves every segment's indexes loaded for the
    scanned ones and its log file open. Raises StorageError for I/O failures (closing
    whatever it opened).
    """
    segments: list[Segment] = []
    try:
        return _recover(fs, directory, interval, segments)
    except BaseException:
        for seg in segments:
            seg.close_files()
        raise


def _recover(fs: FileSystem, directory: str, interval: int, segments: list[Segment]
             ) -> Recovered:
    fs.makedirs(directory)
    damages: list[Damage] = []
    names = fs.listdir(directory)
    bases: list[int] = []
    stems: set[str] = set()
    for name in names:
        if name.endswith((".tmp", ".deleted")):
            fs.unlink(_path(directory, name))
            continue
        base = parse_segment_name(name)
        if base is not None:
            bases.append(base)
            stems.add(name[:-len(LOG_SUFFIX)])
    for name in names:  # an index whose log is gone
        stem, _, ext = name.partition(".")
        if "." + ext in SUFFIXES[1:] and stem not in stems:
            fs.unlink(_path(directory, name))
    bases.sort()

    ckpt = read_checkpoint(fs, directory)
    clean = fs.exists(_path(directory, CLEAN_MARKER))
    if clean:
        fs.unlink(_path(directory, CLEAN_MARKER))
    fs.fsync_dir(directory)

    start = ckpt.start_offset if ckpt else (bases[0] if bases else 0)
    while len(bases) > 1 and bases[1] <= start:
        delete_segment_files(fs, directory, bases.pop(0))
    if not bases:
        create_segment(fs, directory, start).close_files()
        bases.append(start)
    start = max(start, bases[0])

    # where the scan begins: the checkpoint's recovery point when it is usable
    rec_i, rec_pos, rec_off = 0, 0, bases[0]
    rec_max_ts: int | None = None
    sizes = [fs.file_size(_path(directory, f"{b:020d}{LOG_SUFFIX}")) for b in bases]
    if ckpt is not None:
        j = bisect_right(bases, ckpt.segment) - 1
        upper = bases[j + 1] if 0 <= j < len(bases) - 1 else ckpt.offset
        if (j >= 0 and bases[j] == ckpt.segment and ckpt.position <= sizes[j]
                and bases[j] <= ckpt.offset <= upper):
            rec_i, rec_pos, rec_off = j, ckpt.position, ckpt.offset
            rec_max_ts = ckpt.max_timestamp
        else:
            rec_i = max(bisect_right(bases, ckpt.segment - 1), 0)
            rec_i = min(rec_i, len(bases) - 1)
            rec_off = bases[rec_i]
            log.warning("%s: checkpoint points at segment %d position %d which is not "
                        "there; scanning from segment %d", directory, ckpt.segment,
                        ckpt.position, bases[rec_i])
        damages = [d for d in ckpt.damages if d.last_offset >= start]
    clean = clean and ckpt is not None and rec_i == len(bases) - 1 and rec_pos == sizes[-1]

    for i, base in enumerate(bases):
        nxt = bases[i + 1] if i + 1 < len(bases) else base
        segments.append(Segment(fs, directory, base, sizes[i], nxt))
    scanned = batches = truncated = 0
    for i in range(rec_i, len(bases)):
        seg = segments[i]
        pos, expected = (rec_pos, rec_off) if i == rec_i else (0, seg.base)
        s, b, t = scan_segment(directory, seg, pos, expected, i == len(bases) - 1,
                            interval, damages, rec_max_ts if i == rec_i else None)
        scanned += s
        batches += b
        truncated += t
    return Recovered(start, segments, bases, damages,
                     RecoveryStats(clean, len(bases), scanned, batches, truncated))


def scan_segment(directory: str, seg: Segment, pos: int, expected: int, is_last: bool,
                 interval: int, damages: list[Damage], known_max_ts: int | None = None
                 ) -> tuple[int, int, int]:
    """Verify seg from pos on, extend its indexes, append damage found to `damages`, cut
    a torn tail. `known_max_ts` is the checkpoint's max timestamp of the bytes before pos.

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
    if known_max_ts is not None and (max_ts is None or known_max_ts > max_ts):
        max_ts = known_max_ts
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
            if item.position - last_idx >= interval and (
                    item.position > 0 or interval == 0):
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
                        "%d on were never durable", directory, truncated, bad_at,
                        seg.name, expected)
            file.truncate(bad_at)
            file.fdatasync()
            seg.size = pos = bad_at
            break
        damaged_here = True
        resume_off = found[1].base_offset if found else seg.next_offset
        damage = Damage(expected, max(resume_off - 1, expected), seg.name, bad_at,
                        "no valid batch at this position, valid data follows")
        damages.append(damage)
        log.error("%s: damage in %s at position %d: offsets %d..%d are unreadable and "
                  "kept for inspection", directory, seg.name, bad_at,
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
        damages.append(Damage(lo, hi - 1, seg.name, pos,
                                    "offsets do not continue into the next segment"))
    if dirty:
        seg.write_indexes()
    return pos - from_pos, batches, truncated
