"""Producer batching for one topic: no added latency at low load, coalescing under load.

A send goes out at once when nothing is in flight for its topic; sends that
arrive while a batch is in flight wait and leave together in the next batch
request. Owns the per-topic queue and its bounds; must not know sockets.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final

from broker.client.types import ClientError

# One batch request carries at most this many value bytes: the broker's default
# max message size, so any single message fits, and half the frame limit.
MAX_BATCH_BYTES: Final = 1024 * 1024
# Sends queued behind the in-flight batch beyond this many bytes wait for room:
# a producer outrunning the broker is slowed down instead of growing memory.
MAX_PENDING_BYTES: Final = 16 * MAX_BATCH_BYTES
# One batch request carries at most this many messages, bounding a response.
MAX_BATCH_COUNT: Final = 10_000

SendCall = Callable[[dict[str, Any]], Awaitable[Any]]
_Entry = tuple[bytes, bytes | None, dict[str, Any] | None, "asyncio.Future[int]"]


def send_offsets(result: Any) -> list[int]:
    """The offsets of a send result, in its "runs" or its per-message form."""
    runs = result.get("runs")
    if runs is None:
        return list(result["offset"])
    offsets: list[int] = []
    for _, base, count in runs:
        offsets.extend(range(base, base + count))
    return offsets


class TopicBatcher:
    """Queues sends for one topic and keeps at most one batch request in flight."""

    def __init__(self, topic: str, call: SendCall, max_batch_bytes: int = MAX_BATCH_BYTES
                 ) -> None:
        self.topic = topic
        self._call = call
        self.max_batch_bytes = max_batch_bytes
        self._pending: deque[_Entry] = deque()
        self._pending_bytes = 0
        self._room = asyncio.Event()
        self._room.set()
        self._flushing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.requests = 0  # batch requests sent, for tests and metrics

    async def send(self, value: bytes, key: bytes | None, headers: dict[str, Any] | None
                   ) -> int:
        """Queue one message; return its offset once the broker acknowledged the batch."""
        while self._pending_bytes >= MAX_PENDING_BYTES:
            self._room.clear()
            await self._room.wait()
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((value, key, headers, future))
        self._pending_bytes += len(value)
        if not self._flushing:
            self._flushing = True
            self._idle.clear()
            asyncio.get_running_loop().create_task(self._flush())
        return await future

    def _take(self) -> list[_Entry]:
        batch: list[_Entry] = []
        size = 0
        pending = self._pending
        while pending and len(batch) < MAX_BATCH_COUNT:
            n = len(pending[0][0])
            if batch and size + n > self.max_batch_bytes:
                break
            batch.append(pending.popleft())
            size += n
        self._pending_bytes -= size
        if self._pending_bytes < MAX_PENDING_BYTES:
            self._room.set()
        return batch

    async def _flush(self) -> None:
        """Send batches until the queue is empty. It runs as a task, so sends made in the
        same event-loop turn as the first one already share its request."""
        try:
            while self._pending:
                batch = self._take()
                args: dict[str, Any] = {"topic": self.topic, "values": [e[0] for e in batch],
                                        "runs": True}
                if any(e[1] is not None for e in batch):
                    args["keys"] = [e[1] for e in batch]
                if any(e[2] is not None for e in batch):
                    args["headers"] = [e[2] for e in batch]
                self.requests += 1
                try:
                    result = await self._call(args)
                    offsets = send_offsets(result)
                except ClientError as exc:
                    for entry in batch:
                        if not entry[3].done():
                            entry[3].set_exception(exc)
                    continue
                except Exception as exc:  # a malformed result: fail the batch, keep going
                    error = ClientError("internal", f"bad send result: {exc!r}")
                    for entry in batch:
                        if not entry[3].done():
                            entry[3].set_exception(error)
                    continue
                for entry, offset in zip(batch, offsets, strict=False):
                    if not entry[3].done():
                        entry[3].set_result(offset)
        finally:
            self._flushing = False
            self._idle.set()

    async def idle(self) -> None:
        """Wait until every queued send has its answer (or its error)."""
        await self._idle.wait()
