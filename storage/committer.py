"""Group commit for partition logs: the one asyncio piece of `storage`.

`GroupCommitter.append(log, entries)` returns the base offsets once the entries
are durable under the durability mode:

- "sync": appends that arrive in one turn of the event loop are written together
  by one `append_many` on the loop; each `sync()` runs in a worker thread. Writing
  and syncing overlap (a pipeline of depth 2): while one sync runs, the next group
  is written, and its sync starts as soon as the running one ends. A caller is
  resolved only by a sync requested after its bytes were written, so no caller is
  acknowledged before its bytes are durable.
- "interval": `append_many` at once, even while a background sync of the same log
  runs in a worker thread; a background task syncs each dirty log every `interval_s`.
- "none": `append_many` at once; logs are synced only by `close()` / `detach()`.

The logs must allow `sync()` in a worker thread while the loop appends to and reads
them (FileLog and MemoryLog do); the committer never runs two syncs of one log at once.

Failures. An append that fails (StorageFull, a bad entry, StorageError) is
retried once per caller, each caller's entries alone, so only the callers whose
own entries cannot be written see the error, and the committer keeps serving.
FsyncFailed is fatal: every waiting caller and every later append gets
FsyncFailed, `on_fatal` is called once, and no fsync is ever retried.

Per caller this costs one future and a list extend in "sync" mode, nothing but the
append itself otherwise; nothing is done per record in Python. In "sync" mode the
plain entries of a group (values only, stamped by the log's clock) are merged into
one entry before the write, so the log frames and checksums one batch, not one per
caller; offsets are the same, since one append_many gives consecutive offsets.
This module must not know about topics, groups or sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from time import monotonic

from storage.api import AppendEntry, PartitionLog
from storage.errors import FsyncFailed, StorageError

log = logging.getLogger(__name__)

DURABILITY_MODES = ("sync", "interval", "none")
# Values merged into one batch at most: far below the log's batch cap, and small enough
# that a consumer asking for one message of a merged batch decodes little more.
MERGE_MAX_BYTES = 256 * 1024

_Waiter = tuple["asyncio.Future[list[int]]", int]  # (the caller's future, its entry count)
# A written caller: the generation of its group, its future and its base offsets.
_Written = tuple[int, "asyncio.Future[list[int]]", list[int]]


class _LogQueue:
    """One log's state: the group being gathered, groups written and not yet synced,
    and the sync in flight (at most one)."""

    __slots__ = ("chain_lock", "chain_running", "dirty", "entries", "idle", "log", "next_sync",
                 "scheduled", "sync_running", "synced_gen", "syncing", "waiters", "write_gen",
                 "written")

    def __init__(self, log: PartitionLog) -> None:
        self.log = log
        self.entries: list[AppendEntry] = []
        self.waiters: list[_Waiter] = []
        self.scheduled = False  # a write of the gathered group is scheduled on the loop
        self.written: list[_Written] = []  # written, waiting for a sync that covers them
        # sync mode: groups are numbered as written; one worker thread syncs in a chain
        # while write_gen > synced_gen. The lock makes "nothing new: stop" and "new group:
        # is the chain running?" exclusive, so no group is ever left without a sync.
        self.chain_lock = threading.Lock()
        self.chain_running = False
        self.write_gen = 0
        self.synced_gen = 0  # written by the running chain (after a failure, by the loop)
        self.syncing: asyncio.Future[None] | None = None  # interval mode's sync in flight
        self.dirty = False  # appended since the last sync (interval / none)
        self.idle: asyncio.Event | None = None  # set when nothing is queued or in flight
        # interval mode: set on the loop, cleared by the worker thread as its sync ends
        self.sync_running = False
        self.next_sync = 0.0  # time.monotonic() when the next background sync is due

    def busy(self) -> bool:
        return bool(self.scheduled or self.written or self.syncing is not None
                    or self.chain_running)


def _take_upto(q: _LogQueue, gen: int) -> list[_Written]:
    """Remove and return the written groups up to generation `gen` (they are in order)."""
    written = q.written
    i = 0
    while i < len(written) and written[i][0] <= gen:
        i += 1
    taken = written[:i]
    del written[:i]
    return taken


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
        self._sync_mode = durability == "sync"
        self._interval_mode = durability == "interval"
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
        if not self._sync_mode:
            try:
                bases = log.append_many(entries)
            except FsyncFailed as exc:  # the log refuses after an earlier failed sync
                self._go_fatal(exc)
                raise
            if not q.dirty:
                q.dirty = True
                self._start_ticker()
            elif self._interval_mode and not q.sync_running and monotonic() >= q.next_sync:
                # The loop may be too busy for the ticker to run: the interval is kept
                # by whoever appends once it has passed.
                q.dirty = False
                self._background_sync(q)
            return bases
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[int]] = loop.create_future()
        q.entries.extend(entries)
        q.waiters.append((fut, len(entries)))
        if not q.scheduled:
            # Written after every caller resumed in this turn of the loop has queued.
            q.scheduled = True
            loop.call_soon(self._write_gathered, q)
        return await fut

    # -- the sync path ---------------------------------------------------------------

    def _write_gathered(self, q: _LogQueue) -> None:
        """Write the gathered group and make sure the sync chain will cover it."""
        q.scheduled = False
        entries, waiters = q.entries, q.waiters
        q.entries, q.waiters = [], []
        if self._fatal is not None:
            self._fail(waiters, self._fatal)
            self._check_idle(q)
            return
        if not q.chain_running and len(waiters) > 1:
            # Nothing to overlap with yet: split the group so that one half's sync runs
            # while the other half is written. Two cohorts form and then alternate.
            half = len(waiters) // 2
            n = sum(k for _, k in waiters[:half])
            self._write_group(q, entries[:n], waiters[:half])
            self._write_group(q, entries[n:], waiters[half:])
        else:
            self._write_group(q, entries, waiters)
        self._check_idle(q)

    def _write_group(self, q: _LogQueue, entries: list[AppendEntry],
                     waiters: list[_Waiter]) -> None:
        """Write one group; failed callers get their error now, the rest wait for a sync."""
        if self._fatal is not None:
            self._fail(waiters, self._fatal)
            return
        results = self._append_group(q.log, entries, waiters)
        self.groups += 1
        if self._fatal is not None:
            self._fail(waiters, self._fatal)
            return
        gen = q.write_gen + 1
        written = False
        for (fut, _), result in zip(waiters, results, strict=True):
            if isinstance(result, BaseException):
                if not fut.done():
                    fut.set_exception(result)
            else:
                q.written.append((gen, fut, result))
                written = True
        if written:
            with q.chain_lock:
                q.write_gen = gen
                start = not q.chain_running
                q.chain_running = True
            if start:
                self._start_chain(q)

    def _start_chain(self, q: _LogQueue) -> None:
        loop = asyncio.get_running_loop()
        loop.run_in_executor(None, self._sync_chain, q, loop)

    def _sync_chain(self, q: _LogQueue, loop: asyncio.AbstractEventLoop) -> None:
        """Worker thread: sync while groups newer than the last sync exist.

        A group numbered g was written before write_gen became g, and write_gen is read
        before sync() captures what is written, so the sync covers every group <= g.
        The next sync starts here, without waiting for the loop to see this one end.
        """
        try:
            while True:
                with q.chain_lock:
                    gen = q.write_gen
                    if gen <= q.synced_gen or self._fatal is not None:
                        q.chain_running = False
                        break
                try:
                    q.log.sync()
                except BaseException as exc:
                    with q.chain_lock:
                        q.chain_running = False
                    loop.call_soon_threadsafe(self._chain_failed, q, gen, exc)
                    return
                q.synced_gen = gen
                loop.call_soon_threadsafe(self._resolve_upto, q, gen)
        except BaseException as exc:  # a closed loop: nobody is left to tell
            with q.chain_lock:
                q.chain_running = False
            log.debug("sync chain ended: %s", exc)
            return
        loop.call_soon_threadsafe(self._check_idle, q)

    def _resolve_upto(self, q: _LogQueue, gen: int) -> None:
        """Resolve the callers of every group up to gen: a finished sync covers them."""
        self.syncs += 1
        for _, fut, bases in _take_upto(q, gen):
            if not fut.done():
                fut.set_result(bases)
        self._check_idle(q)

    def _chain_failed(self, q: _LogQueue, gen: int, exc: BaseException) -> None:
        if isinstance(exc, FsyncFailed):
            self._go_fatal(exc)  # fails every written caller
            self._check_idle(q)
            return
        err = exc if isinstance(exc, StorageError) else StorageError(f"sync failed: {exc}")
        for _, fut, _ in _take_upto(q, gen):
            if not fut.done():
                fut.set_exception(err)
        q.synced_gen = gen  # the chain has stopped; the groups after gen get a new one
        with q.chain_lock:
            start = q.write_gen > gen and not q.chain_running
            q.chain_running = q.chain_running or start
        if start:
            self._start_chain(q)
        self._check_idle(q)

    def _check_idle(self, q: _LogQueue) -> None:
        if q.idle is not None and not q.busy() and not q.waiters:
            q.idle.set()

    def _append_group(self, plog: PartitionLog, entries: list[AppendEntry],
                      waiters: list[_Waiter]) -> list[list[int] | BaseException]:
        """One append_many for the group; on failure, one per caller. Per-caller results."""
        merged = _merged(entries)
        try:
            bases = plog.append_many(merged)
        except FsyncFailed as exc:
            self._go_fatal(exc)
            return [exc] * len(waiters)
        except (StorageError, ValueError) as exc:
            if len(waiters) == 1:
                return [exc]
            return self._write_each(plog, entries, waiters)
        if merged is not entries:
            bases = _spread(bases[0], entries)
        if len(waiters) == 1:
            return [bases]
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
            written, q.written = q.written, []
            self._fail(waiters + [(f, 0) for _, f, _ in written], exc)
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
        while self._fatal is None and not self._closed:
            await asyncio.sleep(self.interval_s)
            running = []
            for q in self._queues.values():
                if q.dirty and not q.sync_running:
                    q.dirty = False
                    running.append(self._background_sync(q))
            if running:
                # Not children of the ticker: cancelling it never abandons a sync that a
                # worker thread is running (see _settle).
                await asyncio.wait(running)

    def _background_sync(self, q: _LogQueue) -> asyncio.Future[None]:
        """Sync q's log in a worker thread while appends go on; failures are logged."""
        q.sync_running = True
        q.next_sync = monotonic() + self.interval_s

        def run() -> None:
            try:
                q.log.sync()
            finally:
                q.sync_running = False

        fut = asyncio.get_running_loop().run_in_executor(None, run)
        q.syncing = fut

        def done(f: asyncio.Future[None]) -> None:
            if q.syncing is f:
                q.syncing = None
            exc = None if f.cancelled() else f.exception()
            if isinstance(exc, FsyncFailed):
                self._go_fatal(exc)
            elif exc is not None:
                q.dirty = True
                log.error("sync failed: %s; will retry", exc)
            else:
                self.syncs += 1
            self._check_idle(q)

        fut.add_done_callback(done)
        return fut

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
        while q.busy() or q.waiters:
            if q.idle is None or q.idle.is_set():
                q.idle = asyncio.Event()
            await q.idle.wait()
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
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
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


def _merged(entries: list[AppendEntry]) -> list[AppendEntry]:
    """entries with each run of plain ones (values only, no timestamp of their own)
    merged into entries of at most MERGE_MAX_BYTES of values; entries itself when there
    is nothing to merge. An entry with no values is kept alone, for the log to refuse."""
    if len(entries) < 2:
        return entries
    out: list[AppendEntry] = []
    values: list[bytes] | None = None
    size = 0
    for e in entries:
        vs = e.values
        k = len(vs)
        if k and e.keys is None and e.headers is None and e.timestamp_ms is None:
            n = len(vs[0]) if k == 1 else sum(map(len, vs))
            if values is not None and size + n <= MERGE_MAX_BYTES:
                values.extend(vs)
                size += n
                continue
            values = list(vs)
            size = n
            out.append(AppendEntry(values))
        else:
            values = None
            out.append(e)
    return entries if len(out) == len(entries) else out


def _spread(first: int, entries: list[AppendEntry]) -> list[int]:
    """The base offset of each of entries, written in order from offset first."""
    bases: list[int] = []
    add = bases.append
    for e in entries:
        add(first)
        first += len(e.values)
    return bases
