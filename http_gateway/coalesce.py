"""Single-message sends arriving together go to the broker as one batch.

Every `POST /send` of one plain message (no key, headers, idempotency key or
delay) is a call of the broker's `send_columns` with one value, and most of that
call's cost is per call, not per message. `SendCoalescer` gathers the plain
single sends that reach it in one turn of the event loop, one list per topic and
client, and makes one `send_columns` call of each list when the turn's handlers
have run. Each caller still gets its own answer: its partition and offset, once
the batch is durable like any other send.

A batch the broker refuses changed nothing (the checks come before the append,
and an append is all or nothing), so its messages are then sent one by one,
concurrently, and each caller gets exactly the answer or error a send of its own
would have had.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from broker.api import BatchSendResult, BrokerAPI, ClientRef
from broker.errors import BrokerError

# A batch is handed to the broker early once it holds this many messages or bytes, so a
# burst of large sends never becomes one oversized append.
MAX_BATCH_MESSAGES = 1_000
MAX_BATCH_BYTES = 1 << 20


class Placed(NamedTuple):
    """Where one coalesced message landed; `created`: its send created the topic."""

    topic: str
    partition: int
    offset: int
    created: bool


_Waiters = list["asyncio.Future[Placed]"]


class _Batch:
    """One (topic, client)'s sends of this turn so far."""

    __slots__ = ("size", "values", "waiters")

    def __init__(self) -> None:
        self.values: list[bytes] = []
        self.waiters: _Waiters = []
        self.size = 0  # bytes of values


class SendCoalescer:
    """Gathers one turn's single plain sends into one broker call per (topic, client)."""

    def __init__(self, broker: BrokerAPI) -> None:
        self._broker = broker
        self._pending: dict[tuple[str, ClientRef], _Batch] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def send(self, topic: str, value: bytes, client: ClientRef) -> asyncio.Future[Placed]:
        """Send `value` to `topic` with the others of this turn. The future's result says
        where it landed as `send_columns(topic, [value], client)` would; its exception is
        what that raises."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Placed] = loop.create_future()
        key = (topic, client)
        batch = self._pending.get(key)
        if batch is not None and (len(batch.values) >= MAX_BATCH_MESSAGES
                                  or batch.size + len(value) > MAX_BATCH_BYTES):
            del self._pending[key]
            self._start(loop, topic, client, batch)
            batch = None
        if batch is None:
            if not self._pending:
                loop.call_soon(self._flush)
            batch = self._pending[key] = _Batch()
        batch.values.append(value)
        batch.waiters.append(waiter)
        batch.size += len(value)
        return waiter

    async def drain(self) -> None:
        """Wait for the batches already handed to the broker (for a clean shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        loop = self._loop
        assert loop is not None
        for (topic, client), batch in pending.items():
            self._start(loop, topic, client, batch)

    def _start(self, loop: asyncio.AbstractEventLoop, topic: str, client: ClientRef,
               batch: _Batch) -> None:
        task = loop.create_task(self._send(topic, client, batch.values, batch.waiters))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, topic: str, client: ClientRef, values: list[bytes],
                    waiters: _Waiters) -> None:
        try:
            result = await self._broker.send_columns(topic, values, client)
        except BrokerError as exc:
            if len(values) == 1:
                _fail(waiters[0], exc)
            else:
                await asyncio.gather(*(self._send_alone(topic, client, v, w)
                                       for v, w in zip(values, waiters, strict=True)))
            return
        except BaseException as exc:
            for w in waiters:
                _fail(w, exc)
            raise
        _answer(result, waiters)

    async def _send_alone(self, topic: str, client: ClientRef, value: bytes,
                          waiter: asyncio.Future[Placed]) -> None:
        try:
            result = await self._broker.send_columns(topic, [value], client)
        except BaseException as exc:
            _fail(waiter, exc)
            if not isinstance(exc, Exception):
                raise
            return
        _answer(result, [waiter])


def _fail(waiter: asyncio.Future[Placed], exc: BaseException) -> None:
    if waiter.done():
        return
    if isinstance(exc, asyncio.CancelledError):
        waiter.cancel()
    else:
        waiter.set_exception(exc)


def _answer(result: BatchSendResult, waiters: _Waiters) -> None:
    """Each waiter's own place, in send order; the topic's creation is told to the first."""
    topic, created = result.topic, result.created
    placed: list[tuple[int, int]] = []
    if result.runs is not None:
        for run in result.runs:
            placed.extend((run.partition, run.base_offset + i) for i in range(run.count))
    else:
        placed.extend((o.partition, o.offset) for o in result.outcomes or ())
    if len(placed) != len(waiters):
        exc = RuntimeError(f"the broker answered {len(placed)} of {len(waiters)} messages")
        for w in waiters:
            _fail(w, exc)
        return
    for (partition, offset), w in zip(placed, waiters, strict=True):
        if not w.done():
            w.set_result(Placed(topic, partition, offset, created))
        created = False
