"""Broker: the asyncio facade over the synchronous core; implements `broker.api.BrokerAPI`.

Owns start-up and shutdown (data directory lock, topic logs, state store, group
committer), long-poll receive, the periodic sweep (lease expiry, idle groups, dedup
ids, retention), the commit before an ack returns, and the translation of storage
errors into `BrokerError`s. All state transitions happen in `broker.core`; this
module must not grow any of its own.

Under the data directory: `topics/` and `deleted/` (see broker.layout) and `state/`,
the FileStateStore of group state, dead letters and dedup ids (see broker.core.core).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from broker.api import (
    BatchSendResult,
    ClientRef,
    DeadLetter,
    Delivery,
    DeliveryBatch,
    GroupInfo,
    Headers,
    LeaseInfo,
    OutMessage,
    ReceiptResult,
    SendResult,
    SendRun,
    Snapshot,
    StartAt,
    StoredMessage,
    TopicConfig,
    TopicInfo,
)
from broker.clock import Clock, SystemClock
from broker.config import Config, parse_durability
from broker.core import views
from broker.core.core import MAX_RECEIVE, Core, check_visibility
from broker.core.topic import SendPlan, TopicState, check_config
from broker.core.values import deliveries
from broker.errors import ERRORS, BrokerError
from broker.layout import TopicFiles
from broker.names import check_group, check_topic
from storage.api import AppendEntry, StateStore
from storage.committer import GroupCommitter
from storage.datadir import DataDir
from storage.errors import FsyncFailed, StorageError
from storage.fileio import FileSystem
from storage.state import FileStateStore, MemoryStateStore

log = logging.getLogger(__name__)
R = TypeVar("R")

MAX_WAIT_S = 20.0  # long-poll ceiling, as SQS: past it proxies and clients time out
SWEEP_INTERVAL_S = 0.5  # lease expiry is also checked lazily; this bounds the lag of a wake-up
BROWSE_STEPS = 8  # steps of views.BROWSE_STEP_BYTES per browse call, then a cursor
HOUSEKEEPING_EVERY = 10  # sweeps between idle-group, dedup and retention passes (~5 s)


def _map_code(exc: StorageError) -> str:
    return exc.code if exc.code in ERRORS else "storage_error"


class Broker:
    """The embedded broker. `await start()` before use, `await stop()` after.

    `memory=True` keeps logs and state in memory (nothing survives `stop()`); else the
    data directory `config.data_dir` is used through `fs` (the real disk when None,
    locked by `DataDir`). `on_fatal` is called once when the disk fails an fsync.
    """

    def __init__(self, config: Config | None = None, *, fs: FileSystem | None = None,
                 clock: Clock | None = None, memory: bool = False,
                 on_fatal: Callable[[BaseException], None] | None = None,
                 sweep_interval_s: float = SWEEP_INTERVAL_S) -> None:
        self.config = config or Config()
        self.clock: Clock = clock or SystemClock()
        self.memory = memory
        self.incarnation = secrets.token_hex(6)
        self._fs = fs
        self._on_fatal = on_fatal
        self._fatal: BaseException | None = None
        self._sweep_interval_s = sweep_interval_s
        self._datadir: DataDir | None = None
        self._root = ""
        self._store: StateStore | None = None
        self._core: Core | None = None
        self._files: TopicFiles | None = None
        self._committer: GroupCommitter | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._send_waits: dict[int, asyncio.Future[None]] = {}
        self._running = False
        self._sweeps = 0
        mode, interval = parse_durability(self.config.durability)
        self._durability = mode
        self._interval_s = interval

    # -- lifecycle
    async def start(self) -> None:
        """Open (or create) the data directory, the state store and every topic.

        Raises BrokerError: unavailable (the directory is locked by another process),
        storage_error / corrupt_record (the state cannot be read).
        """
        try:
            with self._mapped():
                self._open()
        except BaseException:
            await self._abandon_start()
            raise
        self._running = True
        if self._sweep_interval_s > 0:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop())

    async def _abandon_start(self) -> None:
        """Undo a failed start: close what was opened and release the lock."""
        if self._core is not None:
            for t in self._core.topics.values():
                for lg in t.logs:
                    with contextlib.suppress(StorageError):
                        lg.close()
        if self._store is not None:
            with contextlib.suppress(StorageError):
                await self._store.close()
        if self._datadir is not None:
            self._datadir.close()
            self._datadir = None
            self._fs = None
        self._core = self._store = self._files = None

    def _open(self) -> None:
        """Open the store, the topics and the committer (start's body)."""
        store: StateStore
        if self.memory:
            store = MemoryStateStore()
        else:
            if self._fs is None:
                self._datadir = DataDir.open(self.config.data_dir)
                self._fs = self._datadir.fs
                self._root = self._datadir.root
            else:
                self._root = os.path.abspath(os.fspath(self.config.data_dir))
            store = FileStateStore.open(self._fs, os.path.join(self._root, "state"),
                                        durability=self._durability,
                                        interval_s=self._interval_s)
        self._store = store
        self._core = Core(self.config, store, self.incarnation)
        self._files = TopicFiles(None if self.memory else self._fs, self._root, self.config,
                                 self._clock_ms)
        for t in self._files.load(self.clock.now()):
            self._core.add_topic(t)
        self._core.load_state()
        self._committer = GroupCommitter(self._durability, self._interval_s,
                                         self._fatal_error)

    def _clock_ms(self) -> int:
        return int(self.clock.now() * 1000)

    async def stop(self) -> None:
        """Finish in-flight appends, persist group state, close logs (clean-shutdown
        marker) and the store, release the data directory lock. Idempotent."""
        if not self._running:
            return
        self._running = False
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for topic in list(self._waiters):
            self._wake(topic)
        core, store = self._core, self._store
        try:
            if self._committer is not None:
                # Waits for every append in flight: their callers are answered first.
                await self._committer.close()
            if core is not None and store is not None and self._fatal is None:
                core.flush()
                with contextlib.suppress(StorageError):
                    await store.commit()
            if store is not None:
                with contextlib.suppress(StorageError):
                    await store.close()
            if core is not None:
                for t in core.topics.values():
                    for lg in t.logs:
                        with contextlib.suppress(StorageError):
                            lg.close()
        finally:
            if self._datadir is not None:
                self._datadir.close()
                self._datadir = None

    # -- plumbing
    @property
    def files(self) -> TopicFiles:
        if self._files is None:
            raise BrokerError("unavailable", "the broker is not running")
        return self._files

    @property
    def core(self) -> Core:
        """The synchronous core (tests and the dashboard's read-only views)."""
        if self._core is None or not self._running:
            raise BrokerError("unavailable", "the broker is not running")
        return self._core

    def _fatal_error(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = exc
            log.critical("storage failed fatally: %s", exc)
            if self._on_fatal is not None:
                self._on_fatal(exc)

    @contextlib.contextmanager
    def _mapped(self) -> Iterator[None]:
        """Translate storage errors at the boundary; an fsync failure is also fatal."""
        try:
            yield
        except StorageError as exc:
            raise self._translate(exc) from None

    def _translate(self, exc: StorageError) -> BrokerError:
        """The BrokerError to raise for a storage error (an fsync failure is also fatal).
        The send path calls it from a plain `except`: a context manager per call costs
        more than the append it guards."""
        if isinstance(exc, FsyncFailed):
            self._fatal_error(exc)
        code = _map_code(exc)
        if exc.code == "data_dir_locked":
            code = "unavailable"
        return BrokerError(code, exc.message)

    def _check_running(self) -> Core:
        if self._fatal is not None:
            raise BrokerError("fsync_failed", f"the broker stopped after a disk failure: "
                              f"{self._fatal}")
        return self.core

    async def _commit(self) -> None:
        assert self._store is not None
        with self._mapped():
            await self._store.commit()

    def _wake(self, topic: str) -> None:
        waiters = self._waiters.get(topic)
        if waiters:
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
            waiters.clear()

    # -- topics
    async def create_topic(self, name: str, config: TopicConfig | None = None) -> TopicInfo:
        core = self._check_running()
        check_topic(name)
        if name in core.topics:
            raise BrokerError("topic_exists", f"topic {name!r} already exists")
        t = self._create(name, config or TopicConfig())
        return views.topic_info(core, t, self.clock.now())

    def _create(self, name: str, config: TopicConfig) -> TopicState:
        core = self.core
        check_config(config)
        now = self.clock.now()
        with self._mapped():
            t = self.files.create(name, config, now)
        core.add_topic(t)
        return t

    def list_topics(self) -> list[TopicInfo]:
        core = self.core
        now = self.clock.now()
        with self._mapped():
            return [views.topic_info(core, t, now) for t in core.topics.values()]

    def describe_topic(self, name: str) -> TopicInfo:
        core = self.core
        with self._mapped():
            return views.topic_info(core, core.topic(check_topic(name)), self.clock.now())

    async def purge_topic(self, name: str) -> TopicInfo:
        """Drop every message; every group moves to the end (their leases turn stale)."""
        core = self._check_running()
        t = core.topic(check_topic(name))
        with self._mapped():
            for p, lg in enumerate(t.logs):
                end = t.visible_end[p]
                lg.truncate_before(end)
                t.purged_to[p] = end
                for g in t.groups.values():
                    g.seek(p, end)
            for g in t.groups.values():
                core.mark_dirty(g)
            self.files.write_meta(t)
            core.flush()
        await self._commit()
        return views.topic_info(core, t, self.clock.now())

    async def delete_topic(self, name: str) -> None:
        core = self._check_running()
        t = core.topic(check_topic(name))
        core.remove_topic(name)
        self._wake(name)
        assert self._committer is not None
        with self._mapped():
            for lg in t.logs:
                await self._committer.detach(lg)  # waits for the appends in flight
                lg.close()
            self.files.remove(name)
        await self._commit()

    # -- send
    async def send(self, topic: str, messages: Sequence[OutMessage], client: ClientRef,
                   delay_s: float = 0.0, create: bool = True) -> SendResult:
        core = self._check_running()
        return await self._send(
            topic, client, create,
            lambda t, created, now: core.plan_send(t, messages, delay_s, created, now),
            core.finish_send)

    async def send_columns(self, topic: str, values: list[bytes], client: ClientRef,
                           keys: list[bytes | None] | None = None,
                           headers: list[Headers | None] | None = None,
                           message_ids: list[str | None] | None = None,
                           delay_s: float = 0.0, create: bool = True) -> BatchSendResult:
        core = self._check_running()
        n = len(values)
        for name, column in (("keys", keys), ("headers", headers), ("message_ids", message_ids)):
            if column is not None and len(column) != n:
                raise BrokerError("invalid_argument", f"{name} must have one entry per value")
        if keys is None and headers is None and message_ids is None and delay_s == 0:
            if values:
                return await self._send_values(core, topic, values, client, create)
            return await self._send(topic, client, create,
                                    lambda t, created, now: t.plan_values(values, created),
                                    core.finish_send_runs)
        blank: list[None] = [None] * n
        messages = [OutMessage(v, k, h, i) for v, k, h, i
                    in zip(values, keys or blank, headers or blank, message_ids or blank,
                           strict=True)]
        result = await self.send(topic, messages, client, delay_s, create)
        return BatchSendResult(result.topic, result.created, n, None, result.outcomes)

    def _send_topic(self, core: Core, topic: str, create: bool) -> tuple[TopicState, bool]:
        """The topic to send to, created when missing and allowed: (topic, created).
        A name found among the topics was checked when the topic was made, so only a
        name not found is checked (the topic table is the cache of valid names)."""
        t = core.topics.get(topic)
        if t is not None:
            return t, False
        check_topic(topic)
        if not create:
            raise BrokerError("topic_not_found", f"no topic named {topic!r}")
        return self._create(topic, TopicConfig()), True

    def _room(self, t: TopicState, p: int, size: int, now: float) -> None:
        """Make room for size bytes in partition p. Raises BrokerError("topic_full")."""
        try:
            fits = t.make_room(p, size, now)
        except StorageError as exc:
            raise self._translate(exc) from None
        if not fits:
            raise BrokerError(
                "topic_full", f"topic {t.name!r} partition {p} is at its retention "
                f"cap ({t.cap_bytes()} bytes) and its oldest messages are not yet "
                "acked by every group")

    async def _send_values(self, core: Core, topic: str, values: list[bytes],
                           client: ClientRef, create: bool) -> BatchSendResult:
        """The send of plain values (no keys, headers, ids or delay): one partition, one
        awaited committer append (one future), no plan object. The gateway's single
        message takes this path."""
        t, created = self._send_topic(core, topic, create)
        p = t.place_values(values)
        n = len(values)
        self._room(t, p, len(values[0]) if n == 1 else sum(map(len, values)),
                   self.clock.now())
        committer = self._committer
        assert committer is not None
        try:
            base = (await committer.append(t.logs[p], (AppendEntry(values),)))[0]
        except StorageError as exc:
            raise self._translate(exc) from None
        core.values_appended(t, p, base, n, client, self.clock.now())
        if topic in self._waiters:
            self._wake(topic)
        return BatchSendResult(t.name, created, n, [SendRun(p, base, n)])

    async def _send(self, topic: str, client: ClientRef, create: bool,
                    plan_fn: Callable[[TopicState, bool, float], SendPlan | tuple[str, SendPlan]],
                    finish: Callable[[SendPlan, dict[int, int], ClientRef, float], R]) -> R:
        """Plan (waiting out a send of the same message ids), check room, append through
        the group committer, then `finish` the plan at the offsets the appends got."""
        core = self._check_running()
        t, created = self._send_topic(core, topic, create)
        while True:
            planned = plan_fn(t, created, self.clock.now())
            if isinstance(planned, SendPlan):
                break
            other = self._send_waits.get(id(planned[1]))
            if other is not None:
                await asyncio.shield(other)
        plan = planned
        waiter: asyncio.Future[None] | None = None
        if plan.message_ids:
            waiter = asyncio.get_running_loop().create_future()
            self._send_waits[id(plan)] = waiter
        try:
            now = self.clock.now()
            for p, entry in plan.entries.items():
                self._room(t, p, sum(map(len, entry.values)), now)
            bases = await self._append_all(t, plan.entries)
            result = finish(plan, bases, client, self.clock.now())
            if plan.message_ids:
                await self._commit()
        except BaseException:
            core.abort_send(plan)
            raise
        finally:
            if waiter is not None:
                del self._send_waits[id(plan)]
                waiter.set_result(None)
        self._wake(topic)
        return result

    async def _append_all(self, t: TopicState, entries: dict[int, AppendEntry]
                          ) -> dict[int, int]:
        """Append each partition's entry; their base offsets once durable. One partition
        awaits the committer directly; several are appended concurrently (the committer
        waits for them at detach and close, so nothing here tracks them)."""
        committer = self._committer
        assert committer is not None
        try:
            if len(entries) == 1:
                [(p, e)] = entries.items()
                return {p: (await committer.append(t.logs[p], (e,)))[0]}
            items = list(entries.items())
            done = await asyncio.gather(*(committer.append(t.logs[p], [e]) for p, e in items))
        except StorageError as exc:
            raise self._translate(exc) from None
        return {p: offs[0] for (p, _), offs in zip(items, done, strict=True)}

    # -- receive and settle
    async def receive(self, topic: str, group: str, client: ClientRef, max_messages: int = 1,
                      wait_s: float = 0.0, visibility_s: float | None = None,
                      auto_ack: bool = False) -> list[Delivery]:
        return deliveries(await self.receive_columns(topic, group, client, max_messages,
                                                     wait_s, visibility_s, auto_ack))

    async def receive_columns(self, topic: str, group: str, client: ClientRef,
                              max_messages: int = 1, wait_s: float = 0.0,
                              visibility_s: float | None = None, auto_ack: bool = False
                              ) -> list[DeliveryBatch]:
        core = self._check_running()
        check_topic(topic)
        check_group(group)
        if not 1 <= max_messages <= MAX_RECEIVE:
            raise BrokerError("invalid_argument",
                              f"max_messages must be in [1, {MAX_RECEIVE}], got {max_messages}")
        if not 0 <= wait_s <= MAX_WAIT_S:
            raise BrokerError("invalid_argument",
                              f"wait_s must be in [0, {MAX_WAIT_S:g}], got {wait_s}")
        if visibility_s is not None:
            check_visibility(visibility_s)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + wait_s
        while True:
            t = core.topics.get(topic)
            out: list[DeliveryBatch] = []
            if t is not None:
                with self._mapped():
                    out = core.receive_columns(t, group, client, max_messages, visibility_s,
                                               auto_ack, self.clock.now())
            if out:
                # What a receive changes (cursor, delivery counts, dead letters) goes
                # into the store with the next flush: the next ack's, or the periodic
                # sweep's. Nothing waits for it to be durable, and a receive putting its
                # own copy of the group state, which the next ack puts again, cost an
                # encode of the whole group state per receive.
                if auto_ack:
                    core.flush()
                    await self._commit()
                return out
            remaining = give_up - loop.time()
            if remaining <= 0 or not self._running:
                core.flush()
                return out
            g = None if t is None else t.groups.get(group)
            due = None if g is None else g.next_due()
            timeout = remaining
            if due is not None:
                timeout = min(timeout, max(0.0, due - self.clock.now()) + 0.001)
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(topic, set()).add(fut)
            try:
                await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                pass
            finally:
                self._waiters.get(topic, set()).discard(fut)
            if not self._running:
                return []

    async def ack(self, receipts: Sequence[str], client: ClientRef) -> list[ReceiptResult]:
        """Settle receipts; returns once the acks are durable (per the fsync policy)."""
        core = self._check_running()
        results = core.settle(receipts, "ack", client, self.clock.now())
        if core.flush():
            await self._commit()
        return results

    async def nack(self, receipts: Sequence[str], client: ClientRef,
                   delay_s: float = 0.0) -> list[ReceiptResult]:
        core = self._check_running()
        if not 0 <= delay_s <= 43_200:
            raise BrokerError("invalid_argument", f"delay must be in [0, 43200] s, got {delay_s}")
        results = core.settle(receipts, "nack", client, self.clock.now(), delay_s=delay_s)
        if core.flush():
            await self._commit()
        for topic in {r.split(":")[4] for r, res in zip(receipts, results, strict=True)
                      if res.error is None}:
            self._wake(topic)
        return results

    async def extend(self, receipts: Sequence[str], client: ClientRef,
                     visibility_s: float) -> list[ReceiptResult]:
        core = self._check_running()
        check_visibility(visibility_s, allow_zero=True)
        results = core.settle(receipts, "extend", client, self.clock.now(),
                              visibility_s=visibility_s)
        if visibility_s == 0:
            for topic in {r.split(":")[4] for r, res in zip(receipts, results, strict=True)
                          if res.error is None}:
                self._wake(topic)
        return results

    # -- groups
    def list_groups(self, topic: str | None = None) -> list[GroupInfo]:
        core = self.core
        now = self.clock.now()
        topics = [core.topic(check_topic(topic))] if topic is not None else core.topics.values()
        with self._mapped():
            return [views.group_info(core, t, g, now) for t in topics for g in t.groups.values()]

    def describe_group(self, topic: str, group: str) -> GroupInfo:
        core = self.core
        t, g = core.group(check_topic(topic), check_group(group))
        with self._mapped():
            return views.group_info(core, t, g, self.clock.now())

    def group_leases(self, topic: str, group: str, limit: int = 1000) -> list[LeaseInfo]:
        core = self.core
        _, g = core.group(check_topic(topic), check_group(group))
        g.expire(self.clock.now())
        return views.leases(g, limit)

    async def seek_group(self, topic: str, group: str, *, offset: int | None = None,
                         timestamp_ms: int | None = None, partition: int | None = None
                         ) -> GroupInfo:
        """Move the group to an offset (-1: the end) or the first message at or after a
        timestamp; creates the group if needed. Leases of moved partitions turn stale."""
        core = self._check_running()
        t = core.topic(check_topic(topic))
        check_group(group)
        now = self.clock.now()
        with self._mapped():
            g = core.ensure_group(t, group, now)
            core.seek(t, g, offset, timestamp_ms, partition)
            core.flush()
        await self._commit()
        self._wake(topic)
        return views.group_info(core, t, g, now)

    async def create_group(self, topic: str, group: str, start: StartAt = "earliest"
                           ) -> GroupInfo:
        """Create the group before its first receive, at the earliest retained offset, the
        end ("latest": only messages sent from now on) or an offset. An existing group is
        left where it is. Raises topic_not_found, invalid_group, invalid_argument."""
        core = self._check_running()
        t = core.topic(check_topic(topic))
        check_group(group)
        now = self.clock.now()
        if group not in t.groups:
            g = core.ensure_group(t, group, now)
            if start == "latest":
                core.seek(t, g, -1, None, None)
            elif isinstance(start, int) and not isinstance(start, bool):
                core.seek(t, g, start, None, None)
            elif start != "earliest":
                core.delete_group(t, g)
                raise BrokerError("invalid_argument",
                                  f"start must be 'earliest', 'latest' or an offset, got {start!r}")
            core.flush()
            await self._commit()
        return views.group_info(core, t, t.groups[group], now)

    async def delete_group(self, topic: str, group: str) -> None:
        core = self._check_running()
        t, g = core.group(check_topic(topic), check_group(group))
        core.delete_group(t, g)
        await self._commit()

    # -- browse and dead letters
    async def browse(self, topic: str, partition: int = 0, offset: int | None = None,
                     key: bytes | None = None, text: str | None = None, limit: int = 50,
                     ) -> tuple[list[StoredMessage], int | None]:
        core = self._check_running()
        t = core.topic(check_topic(topic))
        if not 1 <= limit <= 1000:
            raise BrokerError("invalid_argument", f"limit must be in [1, 1000], got {limit}")
        # Bounded steps on the event loop, yielding between them: the logs are not
        # thread-safe (the committer never appends while one syncs), so no worker thread.
        out: list[StoredMessage] = []
        cursor = offset
        for _ in range(BROWSE_STEPS):
            with self._mapped():
                found, cursor = views.browse(t, partition, cursor, key, text, limit - len(out))
            out.extend(found)
            if cursor is None or len(out) >= limit or t.deleted:
                break
            await asyncio.sleep(0)
        return out, cursor

    def dead_letters(self, topic: str, group: str, limit: int = 1000) -> list[DeadLetter]:
        core = self.core
        t, g = core.group(check_topic(topic), check_group(group))
        return views.dead_letters(core, t, g, limit)

    async def redrive(self, topic: str, group: str, ids: Sequence[str] | None = None,
                      reason_contains: str | None = None) -> int:
        core = self._check_running()
        t, g = core.group(check_topic(topic), check_group(group))
        n = core.redrive(t, g, ids, reason_contains)
        core.flush()
        await self._commit()
        self._wake(topic)
        return n

    # -- observing
    def snapshot(self) -> Snapshot:
        with self._mapped():
            return views.snapshot(self.core, self.clock.now())

    def touch_client(self, client: ClientRef, role: str | None = None) -> None:
        self.core.clients.touch(client, role, self.clock.now())

    # -- sweep
    async def sweep(self, housekeeping: bool = True) -> None:
        """One pass: expire leases (waking long-polls), and with `housekeeping` also
        expire idle groups and dedup ids and apply retention; then persist."""
        core = self.core
        now = self.clock.now()
        for topic in core.expire_leases(now):
            self._wake(topic)
        if housekeeping:
            with self._mapped():
                core.expire_idle(now)
                core.retain(now)
        core.flush()
        await self._commit()

    async def _sweep_loop(self) -> None:
        while self._running:
            await asyncio.sleep(self._sweep_interval_s)
            self._sweeps += 1
            try:
                await self.sweep(housekeeping=self._sweeps % HOUSEKEEPING_EVERY == 0)
            except BrokerError as exc:
                log.warning("sweep: %s", exc)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweep failed")
