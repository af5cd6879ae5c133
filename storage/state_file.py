"""FileStateStore: the StateStore contract of storage.api on disk, and its file format.

`FileStateStore` keeps every value in memory (msgpack-encoded: decoded by `get`
and `items`, which callers use when they load) and makes changes durable in a log of
its own through the `storage.fileio` seam (so `SimFileSystem` can cut its power):

    <dir>/state-<20-digit first seq>.log   frames appended by commits
    <dir>/state.snapshot                   the whole state as of one seq, written atomically
    <dir>/RESERVE                          preallocated bytes given up when the disk fills

A frame is `magic, length, seq, crc32(length, seq, payload), payload`; the payload
is a stream of msgpack ops, `[ns, key, value]` (put) or `[ns, key]` (delete). One
flush writes one frame, so the puts made between two awaits are applied all or
nothing. Open replays the snapshot and the logs after it: a torn tail is cut and
logged; a bad frame followed by a valid one is corruption and open refuses
(CorruptRecord). When the log outgrows twice the live data the state is written as
a snapshot (tmp, fsync, rename, fsync dir) and a new log begins.

Commits are grouped: callers that arrive while a write is in flight share the next
write and its single fdatasync, which runs in a worker thread, never on the event
loop. A failed fsync is fatal: every waiting and later commit raises FsyncFailed.
This module must not know what the keys mean.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
from collections import deque
from collections.abc import Iterable
from typing import Any

import msgpack

from storage.checksum import crc32
from storage.errors import CorruptRecord, FsyncFailed, StorageError, StorageFull
from storage.fileio import File, FileSystem

log = logging.getLogger(__name__)

MAGIC = b"SQst"
_HEADER = struct.Struct("<4sIQI")  # magic, payload length, seq, crc32
_CRC_PART = struct.Struct("<IQ")  # the (length, seq) the crc covers before the payload
HEADER_BYTES = _HEADER.size
# A frame bigger than this is split; also the bound that stops a corrupt length
# field from making replay allocate gigabytes.
MAX_FRAME_BYTES = 64 * 1024 * 1024
# One put may not exceed a frame; the snapshot holds the whole state in one frame.
MAX_OP_BYTES = MAX_FRAME_BYTES
MAX_SNAPSHOT_BYTES = 1024 * 1024 * 1024
# Compaction needs the log to be both twice the live data and at least this big,
# so a small store is not rewritten on every commit.
COMPACT_MIN_BYTES = 1024 * 1024
# Given up when a write hits ENOSPC, so acks can still be recorded on a full disk.
RESERVE_BYTES = 4 * 1024 * 1024
SNAPSHOT_NAME = "state.snapshot"
RESERVE_NAME = "RESERVE"
DURABILITY_MODES = ("sync", "interval", "none")


def encode_op(ns: str, key: str, value: Any) -> tuple[bytes, bytes]:
    """(the put op `[ns, key, value]`, the value alone), both msgpack: the op is the
    value's bytes behind the array header, ns and key, so it is packed once."""
    if not isinstance(ns, str) or not isinstance(key, str):
        raise TypeError(f"state keys must be str, got ns={ns!r}, key={key!r}")
    try:
        packed: bytes = msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"state value for {ns}/{key} is not msgpack-able: {exc}") from None
    op = _op_head(ns, key) + packed
    if len(op) > MAX_OP_BYTES:
        raise ValueError(f"state value for {ns}/{key} is {len(op)} bytes encoded; "
                         f"the limit is {MAX_OP_BYTES}")
    return op, packed


def pack_op(ns: str, key: str, value: Any) -> bytes:
    return encode_op(ns, key, value)[0]


def _op_head(ns: str, key: str) -> bytes:
    """A put op's bytes before its value: a 3-array header, ns, key."""
    head: bytes = b"\x93" + msgpack.packb(ns) + msgpack.packb(key)
    return head


def decode_value(packed: bytes) -> Any:
    """A value as it reads back after a restart (tuples become lists): a private copy."""
    return msgpack.unpackb(packed, raw=False, strict_map_key=False)


def normalise(op: bytes) -> Any:
    """The value of a put op as it reads back after a restart: a private copy."""
    return msgpack.unpackb(op, raw=False, strict_map_key=False)[2]


def frame(seq: int, payload: bytes) -> bytes:
    """One framed record: header (magic, length, seq, crc) then payload."""
    crc = crc32(payload, crc32(_CRC_PART.pack(len(payload), seq)))
    return _HEADER.pack(MAGIC, len(payload), seq, crc) + payload


def _frame_at(buf: bytes, pos: int, max_len: int = MAX_FRAME_BYTES
              ) -> tuple[int, bytes] | None:
    """(seq, payload) of a valid frame at pos, or None."""
    if pos + HEADER_BYTES > len(buf):
        return None
    magic, length, seq, crc = _HEADER.unpack_from(buf, pos)
    end = pos + HEADER_BYTES + length
    if magic != MAGIC or length > max_len or end > len(buf):
        return None
    payload = buf[pos + HEADER_BYTES:end]
    if crc32(payload, crc32(_CRC_PART.pack(length, seq))) != crc:
        return None
    return seq, payload


def _valid_frame_after(buf: bytes, pos: int, after_seq: int) -> int | None:
    """Position of a valid frame past pos with seq > after_seq: proof of mid-log damage."""
    i = buf.find(MAGIC, pos + 1)
    while i >= 0:
        found = _frame_at(buf, i)
        if found is not None and found[0] > after_seq:
            return i
        i = buf.find(MAGIC, i + 1)
    return None


def _log_name(first_seq: int) -> str:
    return f"state-{first_seq:020d}.log"


def _log_first_seq(name: str) -> int | None:
    if name.startswith("state-") and name.endswith(".log") and name[6:-4].isdigit():
        return int(name[6:-4])
    return None


class FileStateStore:
    """The StateStore contract on disk. Use `FileStateStore.open(...)`; not thread-safe.

    `durability`: "sync" (commit returns after fdatasync), "interval" (commit returns
    after the write; fdatasync every `interval_s` in the background) or "none"
    (fdatasync only at compaction and close).
    """

    def __init__(self, fs: FileSystem, directory: str, durability: str, interval_s: float,
                 reserve_bytes: int = RESERVE_BYTES) -> None:
        if durability not in DURABILITY_MODES:
            raise ValueError(f"durability must be one of {DURABILITY_MODES}, got {durability!r}")
        if durability == "interval" and interval_s <= 0:
            raise ValueError("durability 'interval' needs interval_s > 0")
        self._fs = fs
        self._dir = directory
        self._mode = durability
        self._interval_s = interval_s
        self._reserve_bytes = reserve_bytes
        # ns -> key -> the value, msgpack-encoded: a few times smaller than the objects
        # (dead letters and dedup entries can number in the hundreds of thousands), and
        # decoded only by get/items, which the broker calls when it loads.
        self._data: dict[str, dict[str, bytes]] = {}
        self._live_bytes = 0  # what the puts of the live values take in a log
        self._ops: list[bytes] = []  # encoded ops not yet written
        self._gen = 0  # bumped by every put/delete
        self._done_gen = 0  # every change up to this one is written (and synced in "sync")
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._unsynced = False
        self._compacting = False
        self._compact_floor = COMPACT_MIN_BYTES
        self._file_lock = asyncio.Lock()  # the ticker's fsync vs. compaction's log swap
        self._seq = 0  # last seq written (or covered by the snapshot)
        self._file: File | None = None
        self._log_path = ""
        self._log_bytes = 0
        self._fatal: StorageError | None = None
        self._closed = False
        self.cut_tail_bytes = 0  # bytes of torn tail cut at open, for the operator

    # -- opening -----------------------------------------------------------------

    @classmethod
    def open(cls, fs: FileSystem, directory: str, durability: str = "sync",
             interval_s: float = 0.0, reserve_bytes: int = RESERVE_BYTES) -> FileStateStore:
        """Replay the snapshot and logs in `directory` (created if missing) and make sure
        the reserve file holds `reserve_bytes` (0: no reserve).

        Raises CorruptRecord for damage that is not a torn tail, StorageError for I/O.
        """
        store = cls(fs, directory, durability, interval_s, reserve_bytes)
        fs.makedirs(directory)
        store._replay()
        store._ensure_reserve()
        return store

    def _replay(self) -> None:
        fs, snap_path = self._fs, os.path.join(self._dir, SNAPSHOT_NAME)
        snap_seq = 0
        if fs.exists(snap_path):
            buf = fs.read_file(snap_path)
            found = _frame_at(buf, 0, MAX_SNAPSHOT_BYTES)
            if found is None or len(buf) != HEADER_BYTES + len(found[1]):
                raise CorruptRecord(f"state snapshot {snap_path} fails its checksum")
            snap_seq, payload = found
            snapshot = msgpack.unpackb(payload, raw=False, strict_map_key=False)
            for ns, space in snapshot.items():
                for key, value in space.items():
                    self._set(ns, key, *encode_op(ns, key, value))
        self._seq = snap_seq
        logs = sorted((seq, n) for n in fs.listdir(self._dir)
                      if (seq := _log_first_seq(n)) is not None)
        # A log wholly covered by the snapshot (the next log starts at or before the
        # snapshot's seq + 1) is left over from an interrupted compaction.
        live = [(s, n) for i, (s, n) in enumerate(logs)
                if i + 1 >= len(logs) or logs[i + 1][0] > snap_seq + 1]
        for entry in logs:
            if entry not in live:
                fs.unlink(os.path.join(self._dir, entry[1]))
        for i, (_, name) in enumerate(live):
            self._replay_log(os.path.join(self._dir, name), last=i == len(live) - 1)
        if live:
            self._log_path = os.path.join(self._dir, live[-1][1])
        else:
            self._log_path = os.path.join(self._dir, _log_name(self._seq + 1))
        self._file = fs.open(self._log_path)
        self._log_bytes = self._file.size()
        if not live:
            fs.fsync_dir(self._dir)

    def _replay_log(self, path: str, last: bool) -> None:
        buf = self._fs.read_file(path)
        pos = 0
        while pos < len(buf):
            found = _frame_at(buf, pos)
            if found is None:
                later = _valid_frame_after(buf, pos, self._seq)
                if later is not None or not last:
                    raise CorruptRecord(
                        f"state log {path}: bad frame at byte {pos}"
                        + (f" followed by a valid frame at byte {later}" if later else "")
                        + "; refusing to guess (restore the state directory or remove it)")
                self.cut_tail_bytes = len(buf) - pos
                log.warning("state log %s: cut a torn tail of %d bytes at byte %d",
                            path, len(buf) - pos, pos)
                f = self._fs.open(path, create=False)
                try:
                    f.truncate(pos)
                    f.fdatasync()
                finally:
                    f.close()
                return
            seq, payload = found
            if seq > self._seq:
                if seq != self._seq + 1:
                    raise CorruptRecord(f"state log {path}: frame at byte {pos} has seq {seq}, "
                                        f"expected {self._seq + 1}")
                self._apply(payload)
                self._seq = seq
            pos += HEADER_BYTES + len(payload)

    def _apply(self, payload: bytes) -> None:
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=0)
        unpacker.feed(payload)
        for op in unpacker:
            ns, key = op[0], op[1]
            if len(op) == 3:
                self._set(ns, key, *encode_op(ns, key, op[2]))
            else:
                self._forget(ns, key)

    def _ensure_reserve(self) -> None:
        path = os.path.join(self._dir, RESERVE_NAME)
        want = self._reserve_bytes
        if want <= 0 or (self._fs.exists(path) and self._fs.file_size(path) >= want):
            return
        f = self._fs.open(path)
        try:
            f.truncate(0)
            while f.size() < want:
                f.append(bytes(min(256 * 1024, want - f.size())))
            f.fdatasync()
        except StorageFull:
            f.close()
            self._fs.unlink(path)
            log.warning("state store %s: no room for the %d-byte reserve", self._dir, want)
            return
        f.close()

    # -- reads and in-memory writes ---------------------------------------------------

    def get(self, ns: str, key: str) -> Any | None:
        packed = self._data.get(ns, {}).get(key)
        return None if packed is None else decode_value(packed)

    def items(self, ns: str) -> Iterable[tuple[str, Any]]:
        return [(key, decode_value(packed)) for key, packed in self._data.get(ns, {}).items()]

    def put(self, ns: str, key: str, value: Any) -> None:
        self._check_open()
        op, packed = encode_op(ns, key, value)
        self._set(ns, key, op, packed)
        self._ops.append(op)
        self._gen += 1

    def delete(self, ns: str, key: str) -> None:
        self._check_open()
        pack_op(ns, key, None)
        self._forget(ns, key)
        self._ops.append(msgpack.packb([ns, key], use_bin_type=True))
        self._gen += 1

    def _set(self, ns: str, key: str, op: bytes, packed: bytes) -> None:
        space = self._data.setdefault(ns, {})
        old = space.get(key)
        # A key's op is always the same head followed by its value.
        self._live_bytes += len(op) if old is None else len(packed) - len(old)
        space[key] = packed

    def _forget(self, ns: str, key: str) -> None:
        space = self._data.get(ns)
        if space is not None and key in space:
            old = space.pop(key)
            if not space:
                del self._data[ns]
            self._live_bytes -= len(_op_head(ns, key)) + len(old)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("state store is closed")

    # -- commit ----------------------------------------------------------------------

    async def commit(self) -> None:
        """Return once every put/delete made so far is written (and synced in "sync" mode).

        Raises FsyncFailed (fatal, also for every later commit), StorageFull (the
        changes stay in memory and go out with the next commit), StorageError.
        """
        self._check_open()
        if self._fatal is not None:
            raise type(self._fatal)(self._fatal.message)
        target = self._gen
        if target <= self._done_gen:
            return
        if self._mode != "sync" and not self._compacting and (
                self._flusher is None or self._flusher.done()):
            self._write_pending_now()
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, fut))
        self._kick()
        await fut

    def _kick(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    def _take_frames(self) -> bytes:
        ops, self._ops = self._ops, []
        out: list[bytes] = []
        chunk: list[bytes] = []
        size = 0
        for op in ops:
            if chunk and size + len(op) > MAX_FRAME_BYTES:
                self._seq += 1
                out.append(frame(self._seq, b"".join(chunk)))
                chunk, size = [], 0
            chunk.append(op)
            size += len(op)
        if chunk:
            self._seq += 1
            out.append(frame(self._seq, b"".join(chunk)))
        return b"".join(out)

    def _write(self, data: bytes, sync: bool) -> None:
        """Append data (giving up the reserve once on ENOSPC); fdatasync when asked."""
        assert self._file is not None
        try:
            self._file.append(data)
        except StorageFull:
            reserve = os.path.join(self._dir, RESERVE_NAME)
            if not self._fs.exists(reserve):
                raise
            log.warning("state store %s: disk full; releasing the reserve", self._dir)
            self._fs.unlink(reserve)
            self._file.append(data)
        if sync:
            self._file.fdatasync()

    def _write_pending_now(self) -> None:
        """The non-sync fast path: write on the loop, no fsync, resolve waiters."""
        gen, ops, seq = self._gen, self._ops, self._seq
        data = self._take_frames()
        try:
            self._write(data, sync=False)
        except StorageError:
            self._ops, self._seq = ops + self._ops, seq
            raise
        self._log_bytes += len(data)
        self._unsynced = True
        self._done(gen)
        self._start_ticker()
        self._maybe_compact_soon()

    def _done(self, gen: int) -> None:
        self._done_gen = max(self._done_gen, gen)
        while self._waiters and self._waiters[0][0] <= self._done_gen:
            fut = self._waiters.popleft()[1]
            if not fut.done():
                fut.set_result(None)

    def _fail_waiters(self, exc: BaseException, upto: int | None) -> None:
        while self._waiters and (upto is None or self._waiters[0][0] <= upto):
            fut = self._waiters.popleft()[1]
            if not fut.done():
                fut.set_exception(exc)

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiters and self._fatal is None:
            gen, ops, seq = self._gen, self._ops, self._seq
            if ops:
                data = self._take_frames()
                try:
                    if self._mode == "sync":
                        await loop.run_in_executor(None, self._write, data, True)
                    else:
                        self._write(data, False)
                except FsyncFailed as exc:
                    self._go_fatal(exc)
                    return
                except StorageError as exc:
                    self._ops, self._seq = ops + self._ops, seq
                    self._fail_waiters(exc, gen)
                    continue
                self._log_bytes += len(data)
                if self._mode != "sync":
                    self._unsynced = True
                    self._start_ticker()
            self._done(gen)
            if self._should_compact():
                await self._compact()

    def _go_fatal(self, exc: StorageError) -> None:
        log.critical("state store %s: %s; no further commits are possible", self._dir, exc)
        self._fatal = exc
        self._fail_waiters(exc, None)

    # -- background sync and compaction ----------------------------------------------

    def _start_ticker(self) -> None:
        if self._mode == "interval" and self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while self._fatal is None and not self._closed:
            await asyncio.sleep(self._interval_s)
            if not self._unsynced:
                continue
            async with self._file_lock:
                if self._file is None:
                    return
                self._unsynced = False
                fut = loop.run_in_executor(None, self._file.fdatasync)
                try:
                    await asyncio.shield(fut)
                except FsyncFailed as exc:
                    self._go_fatal(exc)
                except asyncio.CancelledError:
                    # close() cancelled us: keep the file (and the lock) until the
                    # worker thread is done with it.
                    await asyncio.wait([fut])
                    raise

    def _should_compact(self) -> bool:
        return (not self._compacting and self._fatal is None
                and self._log_bytes > max(self._compact_floor, 2 * self._live_bytes))

    def _maybe_compact_soon(self) -> None:
        if self._should_compact():
            self._compacting = True
            self._flusher = asyncio.get_running_loop().create_task(self._compact_then_flush())

    async def _compact_then_flush(self) -> None:
        self._compacting = False
        await self._compact()
        await self._flush_loop()

    async def _compact(self) -> None:
        """Write the whole state as a snapshot and start a new log; the pending ops ride
        along, so waiters up to now are done when the snapshot is durable.
        """
        self._compacting = True
        gen, ops, seq = self._gen, self._ops, self._seq
        self._ops = []
        self._seq += 1
        payload = self._snapshot_payload()
        if len(payload) > MAX_SNAPSHOT_BYTES:
            self._ops, self._seq = ops + self._ops, seq
            self._compacting = False
            self._compact_floor = self._log_bytes + COMPACT_MIN_BYTES
            log.error("state store %s: %d bytes of state exceed the snapshot limit",
                      self._dir, len(payload))
            return
        blob = frame(self._seq, payload)
        new_path = os.path.join(self._dir, _log_name(self._seq + 1))
        try:
            async with self._file_lock:
                new_file = await asyncio.get_running_loop().run_in_executor(
                    None, self._swap_logs, blob, new_path)
        except FsyncFailed as exc:
            self._compacting = False
            self._go_fatal(exc)
            return
        except StorageError as exc:
            self._ops, self._seq = ops + self._ops, seq
            self._compacting = False
            self._compact_floor = self._log_bytes + COMPACT_MIN_BYTES
            log.warning("state store %s: compaction failed (%s); the log keeps growing",
                        self._dir, exc)
            return
        self._file, self._log_path, self._log_bytes = new_file, new_path, 0
        self._compact_floor = COMPACT_MIN_BYTES
        self._unsynced = False
        self._compacting = False
        self._done(gen)

    def _snapshot_payload(self) -> bytes:
        """The whole state as one msgpack map ns -> {key: value}, the stored values
        spliced in as they are rather than decoded and packed again."""
        header = msgpack.Packer().pack_map_header
        parts = [header(len(self._data))]
        for ns, space in self._data.items():
            parts += (msgpack.packb(ns), header(len(space)))
            for key, packed in space.items():
                parts += (msgpack.packb(key), packed)
        return b"".join(parts)

    def _swap_logs(self, blob: bytes, new_path: str) -> File:
        fs = self._fs
        fs.write_file_atomic(os.path.join(self._dir, SNAPSHOT_NAME), blob)
        new_file = fs.open(new_path)
        try:
            fs.fsync_dir(self._dir)
        except BaseException:
            new_file.close()
            raise
        old, old_path = self._file, self._log_path
        if old is not None:
            old.close()
        fs.unlink(old_path)
        fs.fsync_dir(self._dir)
        return new_file

    # -- closing ---------------------------------------------------------------------

    async def close(self) -> None:
        """Write and fsync what is pending, stop background work, close the log. Idempotent.

        Raises FsyncFailed or StorageError when the final write or sync fails.
        """
        if self._closed:
            return
        try:
            if self._fatal is None:
                self._mode = "sync"  # the final commit is always synced
                await self.commit()
                if self._flusher is not None:
                    await self._flusher
                if self._unsynced and self._file is not None:
                    self._unsynced = False
                    await asyncio.get_running_loop().run_in_executor(None, self._file.fdatasync)
        finally:
            self._closed = True
            if self._ticker is not None:
                self._ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._ticker
            if self._file is not None:
                self._file.close()
                self._file = None
