"""A push subscription: an async iterator of `Message` fed by the server within credit.

Owns the local buffer of pushed messages, the credit account (the client
grants one credit per settled message, so at most `prefetch` messages are
unsettled at a time) and the lease keeper that extends every unsettled
message at half its visibility while the handler works. Must not touch
sockets; talks to the server through the `Client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from broker.client.types import ClientError, Message

if TYPE_CHECKING:
    from broker.client.client import Client

log = logging.getLogger("broker.client")

MIN_KEEPER_TICK_S: Final = 0.05  # never extend leases more often than this


class Subscription:
    """Pushed messages: `async with client.subscribe("jobs") as sub: async for msg in sub:`
    then `await client.ack(msg)` when done with each.

    Iteration ends when the subscription is closed; it raises ClientError when the
    server ends the subscription with an error (e.g. the topic was deleted).
    """

    def __init__(self, client: Client, topic: str, group: str, prefetch: int,
                 visibility_s: float | None) -> None:
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        self.client = client
        self.topic = topic
        self.group = group
        self.prefetch = prefetch
        self.visibility_s = visibility_s
        self.sub_id: int | None = None  # the server's id on the current connection
        self.incarnation: str | None = None
        self._buffer: deque[Message] = deque()
        self._unsettled: dict[str, float] = {}  # receipt -> local monotonic lease expiry
        self._lease_s: float | None = visibility_s
        self._server_credit = 0
        self._wakeup = asyncio.Event()
        self._error: ClientError | None = None
        self._closed = False
        self._keeper: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Subscribe on the current connection (again after a reconnect)."""
        if self._closed:
            return
        credit = max(1, self.prefetch - len(self._unsettled))
        # Set before the request: pushes can be read before this coroutine resumes.
        self._server_credit = credit
        try:
            self.sub_id = await self.client._subscribe(self, credit)
        except BaseException:
            self._server_credit = 0
            raise
        if self._keeper is None:
            self._keeper = asyncio.get_running_loop().create_task(self._keep_leases())

    def forget_leases(self) -> None:
        """The server restarted: earlier receipts are stale and their messages come again."""
        self._buffer.clear()
        self._unsettled.clear()

    async def close(self) -> None:
        """Unsubscribe and hand back pushed messages that were never handed out."""
        if self._closed:
            return
        self._closed = True
        self._wakeup.set()
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        await self.client._unsubscribe(self)
        unread = [m.receipt for m in self._buffer]
        self._buffer.clear()
        for receipt in unread:
            self._unsettled.pop(receipt, None)
        if unread and self.client.connected:  # else their leases simply run out
            with contextlib.suppress(ClientError):
                await self.client.nack(unread)

    async def __aenter__(self) -> Subscription:
        if self.sub_id is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        if self.sub_id is None and not self._closed:
            await self.start()
        while not self._buffer:
            if self._error is not None:
                raise self._error
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._buffer.popleft()

    # -- fed by the client --------------------------------------------------------------------
    def pushed(self, messages: list[Message]) -> None:
        now = time.monotonic()
        if self._lease_s is None and messages:
            self._lease_s = max(messages[0].deadline - time.time(), 2 * MIN_KEEPER_TICK_S)
        expiry = now + (self._lease_s or 0.0)
        for m in messages:
            self._unsettled[m.receipt] = expiry
        self._server_credit -= len(messages)
        self._buffer.extend(messages)
        self._wakeup.set()

    def ended(self, error: ClientError | None) -> None:
        self._error = error
        if error is None:
            self._closed = True
        self._wakeup.set()

    def settled(self, receipts: list[str]) -> int:
        """Forget settled receipts; return the credit to grant the server for them."""
        n = 0
        for receipt in receipts:
            if self._unsettled.pop(receipt, None) is not None:
                n += 1
        room = self.prefetch - len(self._unsettled) - self._server_credit
        grant = min(n, max(room, 0))
        self._server_credit += grant
        return grant

    def owns(self, receipt: str) -> bool:
        return receipt in self._unsettled

    # -- the lease keeper ---------------------------------------------------------------------
    async def _keep_leases(self) -> None:
        """Extend every unsettled message once half its lease has passed."""
        while not self._closed:
            lease = self._lease_s
            tick = max((lease or 1.0) / 4, MIN_KEEPER_TICK_S)
            await asyncio.sleep(tick)
            if lease is None or not self._unsettled:
                continue
            now = time.monotonic()
            due = [r for r, expiry in self._unsettled.items() if expiry - now < lease / 2]
            if not due:
                continue
            try:
                results = await self.client.extend(due, lease)
            except ClientError as exc:
                log.info("extending %d leases on %s failed: %s", len(due), self.topic, exc)
                continue
            renewed = time.monotonic() + lease
            lost = []
            for r in results:
                if r.receipt in self._unsettled:
                    if r.error is None:
                        self._unsettled[r.receipt] = renewed
                    else:  # expired or from an earlier incarnation: it will come again
                        lost.append(r.receipt)
            if lost:
                self.client._grant(self, self.settled(lost))

    def describe(self) -> dict[str, Any]:
        return {"topic": self.topic, "group": self.group, "prefetch": self.prefetch,
                "buffered": len(self._buffer), "unsettled": len(self._unsettled)}
