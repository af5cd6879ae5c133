"""Group commit for partition logs: the one asyncio piece of `storage`.

`GroupCommitter.append(log, entries)` returns the base offsets once the entries
are durable under the durability mode:

- "sync": appends that arrive while a log's write+fdatasync is in flight wait in
  that log's queue and go out together: one `append_many` on the event loop, one
  `sync()` in a worker thread, then every caller of the group is resolved.
- "interval": `append_many` at once; a background task syncs each dirty log every
  `interval_s`. Appends that arrive while their log is syncing wait for the sync
  (the log is not thread-safe) and are then written in one `append_many`.
- "none": `append_many` at once; logs are synced only by `close()` / `detach()`.

Failures. An append that fails (StorageFull, a bad entry, StorageError) is
retried once per caller, each caller's entries alone, so only the callers whose
own entries cannot be written see the error, and the committer keeps serving.
FsyncFailed is fatal: every waiting caller and every later append gets
FsyncFailed, `on_fatal` is called once, and no fsync is ever retried.

Per caller this costs one future and a list extend; nothing is done per record.
This module must not know about topics, groups or sockets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from storage.api import AppendEntry, PartitionLog
from storage.errors import FsyncFailed, StorageError

log = logging.getLogger(__name__)

DURABILITY_MODES = ("sync", "interval", "none")

_Waiter = tuple["asyncio.Future[list[int]]", int]  # (the caller's future, its entry count)


class _LogQueue:
    """One log's pending group: entries in arrival order and their callers."""

    __slots__ = ("busy", "dirty", "entries", "log", "task", "waiters")

    def __init__(self, log: PartitionLog) -> None:
        self.log = log
        self.entries: list[AppendEntry] = []
        self.waiters: list[_Waiter] = []
        self.busy = False  # a write or sync of this log is in flight
        self.dirty = False  # appended since the last sync (interval / none)
        self.task: asyncio.Task[None] | None = None


class GroupCommitter:
    """Appends to partition logs with group commit. One per process; not thread-safe."""

    def __init__(self, durability: str = "sync", interval_s: float = 0.0,
                 on_fatal: Callable[[BaseException], None] | None = None) -> None:
        if durability not in DURABILITY_MODES:
            raise ValueError(f"durability must be one of {DURABILITY_MODES}, got {durability!r}")
        if durability == "interval" and interval_s <= 0:
            raise ValueError("durability 'interval' needs interval_s > 0")
        self.durability = durability
        self.interval_s = interval_s
        self._on_fatal = on_fatal
        self._queues: dict[int, _LogQueue] = {}  # by id(log); the queue holds the log
        self._fatal: FsyncFailed | None = None
        self._closed = False
        self._ticker: asyncio.Task[None] | None = None
        self.groups = 0  # writes done by the sync path, for metrics and tests
        self.syncs = 0

    @property
    def fatal(self) -> FsyncFailed | None:
        """The fsync failure that stopped this committer, if any."""
        return self._fatal

    async def append(self, log: PartitionLog, entries: Sequence[AppendEntry]) -> list[int]:
        """Append entries to log; return each entry's base offset once durable per the mode.

        Raises FsyncFailed (fatal), StorageFull or StorageError (this call only),
        ValueError for malformed entries.
        """
        if self._fatal is not None:
            raise FsyncFailed(self._fatal.message)
        if self._closed:
            raise StorageError("the committer is closed")
        q = self._queues.get(id(log))
        if q is None:
            q = self._queues[id(log)] = _LogQueue(log)
        if self.durability != "sync" and not q.busy:
            try:
                bases = log.append_many(entries)
            except FsyncFailed as exc:  # the log refuses after an earlier failed sync
                self._go_fatal(exc)
                raise
            if not q.dirty:
                q.dirty = True
                self._start_ticker()
            return bases
        fut: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        q.entries.extend(entries)
        q.waiters.append((fut, len(entries)))
        if not q.busy:
            q.busy = True
            q.task = asyncio.get_running_loop().create_task(self._drain(q))
        return await fut

    # -- the write path --------------------------------------------------------------

    async def _drain(self, q: _LogQueue) -> None:
        """Write queued groups until the queue is empty (syncing each in "sync" mode)."""
        loop = asyncio.get_running_loop()
        try:
            while q.waiters and self._fatal is None:
                entries, waiters = q.entries, q.waiters
                q.entries, q.waiters = [], []
                results = self._write_group(q.log, entries, waiters)
                if self._fatal is not None:
                    self._fail(waiters, self._fatal)
                    return
                if self.durability == "sync":
                    if any(not isinstance(r, BaseException) for r in results):
                        try:
                            await loop.run_in_executor(None, q.log.sync)
                        except FsyncFailed as exc:
                            self._go_fatal(exc)
                            self._fail(waiters, exc)
                            return
                        except StorageError as exc:
                            results = [exc] * len(results)
                        self.syncs += 1
                else:
                    q.dirty = True
                    self._start_ticker()
                self.groups += 1
                for (fut, _), result in zip(waiters, results, strict=True):
                    if fut.done():
                        continue
                    if isinstance(result, BaseException):
                        fut.set_exception(result)
                    else:
                        fut.set_result(result)
        finally:
            q.busy = False

    def _write_group(self, plog: PartitionLog, entries: list[AppendEntry],
                     waiters: list[_Waiter]) -> list[list[int] | BaseException]:
        """One append_many for the group; on failure, one per caller. Per-caller results."""
        try:
            bases = plog.append_many(entries)
        except FsyncFailed as exc:
            self._go_fatal(exc)
            return [exc] * len(waiters)
        except (StorageError, ValueError) as exc:
            if len(waiters) == 1:
                return [exc]
            return self._write_each(plog, entries, waiters)
        out: list[list[int] | BaseException] = []
        i = 0
        for _, n in waiters:
            out.append(bases[i:i + n])
            i += n
        return out

    def _write_each(self, plog: PartitionLog, entries: list[AppendEntry],
                    waiters: list[_Waiter]) -> list[list[int] | BaseException]:
        out: list[list[int] | BaseException] = []
        i = 0
        for _, n in waiters:
            try:
                out.append(plog.append_many(entries[i:i + n]))
            except FsyncFailed as exc:
                self._go_fatal(exc)
                return [exc] * len(waiters)
            except (StorageError, ValueError) as exc:
                out.append(exc)
            i += n
        return out

    def _go_fatal(self, exc: FsyncFailed) -> None:
        if self._fatal is not None:
            return
        self._fatal = exc
        log.critical("fsync failed: %s; refusing every further append", exc)
        for q in self._queues.values():
            waiters, q.waiters, q.entries = q.waiters, [], []
            self._fail(waiters, exc)
        if self._on_fatal is not None:
            try:
                self._on_fatal(exc)
            except Exception:
                log.exception("the on_fatal callback raised")

    @staticmethod
    def _fail(waiters: list[_Waiter], exc: FsyncFailed) -> None:
        for fut, _ in waiters:
            if not fut.done():
                fut.set_exception(FsyncFailed(exc.message))

    # -- background sync (interval) --------------------------------------------------

    def _start_ticker(self) -> None:
        if self.durability == "interval" and (self._ticker is None or self._ticker.done()):
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while self._fatal is None and not self._closed:
            await asyncio.sleep(self.interval_s)
            tasks = []
            for q in self._queues.values():
                if q.dirty and not q.busy:
                    # Own tasks, not children: cancelling the ticker never abandons a
                    # sync that a worker thread is running.
                    q.busy, q.dirty = True, False
                    q.task = loop.create_task(self._sync_one(q))
                    tasks.append(q.task)
            if tasks:
                await asyncio.wait(tasks)

    async def _sync_one(self, q: _LogQueue) -> None:
        """Sync q's log in a worker thread (q.busy is set); appends meanwhile queue up."""
        try:
            await asyncio.get_running_loop().run_in_executor(None, q.log.sync)
            self.syncs += 1
        except FsyncFailed as exc:
            self._go_fatal(exc)
            q.busy = False
            return
        except BaseException as exc:
            q.dirty = True
            if not isinstance(exc, StorageError):
                q.busy = False
                raise
            log.error("sync failed: %s; will retry at close", exc)
        if q.waiters and self._fatal is None:
            q.task = asyncio.get_running_loop().create_task(self._drain(q))
        else:
            q.busy = False

    # -- shutdown --------------------------------------------------------------------

    async def detach(self, plog: PartitionLog) -> None:
        """Drain and sync plog, then forget it (before the broker closes or deletes it).

        Raises FsyncFailed when the final sync fails (fatal).
        """
        q = self._queues.get(id(plog))
        if q is None:
            return
        await self._settle(q)
        self._queues.pop(id(plog), None)

    async def _settle(self, q: _LogQueue) -> None:
        while q.busy and q.task is not None and not q.task.done():
            await asyncio.shield(q.task)
        if q.dirty and self._fatal is None:
            q.dirty = False
            try:
                await asyncio.get_running_loop().run_in_executor(None, q.log.sync)
                self.syncs += 1
            except FsyncFailed as exc:
                self._go_fatal(exc)
                raise

    async def close(self) -> None:
        """Refuse new appends, wait for queued ones, sync every log written. Idempotent.

        Raises FsyncFailed when a final sync fails (fatal).
        """
        self._closed = True
        if self._ticker is not None:
            self._ticker.cancel()
            try:
                await self._ticker
            except asyncio.CancelledError:
                pass
            self._ticker = None
        first: FsyncFailed | None = None
        for q in list(self._queues.values()):
            try:
                await self._settle(q)
            except FsyncFailed as exc:
                first = first or exc
        self._queues.clear()
        if first is not None:
            raise first
