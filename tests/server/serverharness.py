"""Helpers of the server and client tests: a raw socket speaking frames by hand, a gate
that holds chosen broker calls, and a bounded wait."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from broker.protocol import Connection, Event, Hello, NeedData, Welcome

WAIT_S = 5.0  # every wait in these tests is bounded by this


async def wait_until(cond: Callable[[], bool], timeout: float = WAIT_S) -> None:
    """Poll `cond` on the event loop until it holds; fail after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.005)


@dataclass
class Raw:
    """A hand-driven connection: write any bytes, read events through a client Connection."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    conn: Connection

    async def handshake(self, client_id: str = "raw") -> Welcome:
        self.writer.write(self.conn.send(Hello(client_id)))
        (welcome,) = await self.events(1)
        assert isinstance(welcome, Welcome)
        return welcome

    def send(self, event: Event) -> None:
        self.writer.write(self.conn.send(event))

    async def events(self, n: int, timeout: float = WAIT_S) -> list[Event]:
        """The next `n` events from the server (bounded wait)."""
        out: list[Event] = []
        async with asyncio.timeout(timeout):
            while len(out) < n:
                event = self.conn.next_event()
                if isinstance(event, NeedData):
                    data = await self.reader.read(65536)
                    assert data, f"connection closed after {out}"
                    self.conn.receive_data(data)
                else:
                    out.append(event)
        return out

    async def read_until_eof(self) -> bytes:
        async with asyncio.timeout(WAIT_S):
            return await self.reader.read()

    def close(self) -> None:
        self.writer.close()


class Gate:
    """Wraps a broker so chosen async methods wait for `open()`; counts every call."""

    def __init__(self, inner: Any, gated: tuple[str, ...] = ()) -> None:
        self._inner = inner
        self._gated = gated
        self.calls: dict[str, list[Any]] = {}
        self.opened = asyncio.Event()

    def open(self) -> None:
        self.opened.set()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr) or not asyncio.iscoroutinefunction(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.setdefault(name, []).append(args)
            if name in self._gated:
                await self.opened.wait()
            return await attr(*args, **kwargs)

        return call
