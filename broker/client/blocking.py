"""A blocking wrapper of `Client` for scripts: the same methods, no `await`.

Runs one event loop in a daemon thread; every call is handed to it and waited
for. Owns that thread's lifecycle; must not be used from inside a running
event loop's thread (use `Client` there).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from broker.api import GroupInfo, ReceiptResult, Snapshot, TopicConfig, TopicInfo
from broker.client.client import DEFAULT_URL, Client
from broker.client.subscription import Subscription
from broker.client.types import Message, Received

T = TypeVar("T")


class BlockingClient:
    """`with BlockingClient("tcp://127.0.0.1:7070") as c: c.send("t", b"x")`"""

    def __init__(self, url: str = DEFAULT_URL, client_id: str | None = None,
                 token: str | None = None, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="spoolmq-client",
                                        daemon=True)
        self._thread.start()
        self._client = self._run(self._make(url, client_id, token, options))
        try:
            self._run(self._client.connect())
        except BaseException:
            self._stop_loop()
            raise

    @staticmethod
    async def _make(url: str, client_id: str | None, token: str | None,
                    options: dict[str, Any]) -> Client:
        return Client(url, client_id, token, **options)

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if not self._thread.is_alive():
            coro.close()
            raise RuntimeError("the client is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()  # stop the call on the loop too, so nothing is consumed later
            raise

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def close(self) -> None:
        if self._thread.is_alive():
            try:
                self._run(self._client.close())
            finally:
                self._stop_loop()

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def client(self) -> Client:
        """The asyncio client underneath (its methods must run on this client's loop)."""
        return self._client

    def ping(self) -> float:
        return self._run(self._client.ping())

    def send(self, topic: str, value: bytes | str, key: bytes | str | None = None,
             headers: dict[str, Any] | None = None) -> int:
        return self._run(self._client.send(topic, value, key, headers))

    def send_batch(self, topic: str, values: Sequence[bytes | str], **kwargs: Any) -> list[int]:
        return self._run(self._client.send_batch(topic, values, **kwargs))

    def receive(self, topic: str, group: str = "default", max: int = 1, wait: float = 0,
                visibility: float | None = None, auto_ack: bool = False) -> Received:
        return self._run(self._client.receive(topic, group, max, wait, visibility, auto_ack))

    def ack(self, messages: Message | str | Iterable[Message | str]) -> list[ReceiptResult]:
        return self._run(self._client.ack(messages))

    def nack(self, messages: Message | str | Iterable[Message | str], delay: float = 0
             ) -> list[ReceiptResult]:
        return self._run(self._client.nack(messages, delay))

    def extend(self, messages: Message | str | Iterable[Message | str], visibility: float
               ) -> list[ReceiptResult]:
        return self._run(self._client.extend(messages, visibility))

    def subscribe(self, topic: str, group: str = "default", prefetch: int = 100,
                  visibility: float | None = None) -> BlockingSubscription:
        sub = self._client.subscribe(topic, group, prefetch, visibility)
        return BlockingSubscription(self, sub)

    def topics(self) -> list[TopicInfo]:
        return self._run(self._client.topics())

    def describe_topic(self, name: str) -> TopicInfo:
        return self._run(self._client.describe_topic(name))

    def create_topic(self, name: str, config: TopicConfig | None = None) -> TopicInfo:
        return self._run(self._client.create_topic(name, config))

    def delete_topic(self, name: str) -> None:
        self._run(self._client.delete_topic(name))

    def purge_topic(self, name: str) -> TopicInfo:
        return self._run(self._client.purge_topic(name))

    def groups(self, topic: str | None = None) -> list[GroupInfo]:
        return self._run(self._client.groups(topic))

    def describe_group(self, topic: str, group: str) -> GroupInfo:
        return self._run(self._client.describe_group(topic, group))

    def stats(self) -> Snapshot:
        return self._run(self._client.stats())


class BlockingSubscription:
    """Iterate to get pushed messages; `close()` (or leaving `with`) unsubscribes."""

    def __init__(self, owner: BlockingClient, sub: Subscription) -> None:
        self._owner = owner
        self._sub = sub

    def __enter__(self) -> BlockingSubscription:
        self._owner._run(self._sub.__aenter__())
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Message]:
        return self

    def __next__(self) -> Message:
        try:
            return self._owner._run(self._sub.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def next(self, timeout: float | None = None) -> Message:
        """The next message; raise TimeoutError after `timeout` seconds."""
        return self._owner._run(self._sub.__anext__(), timeout)

    def close(self) -> None:
        self._owner._run(self._sub.close())
