"""Fixtures: the real Broker (in memory), a server on 127.0.0.1 port 0, a native client,
and raw connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from broker.broker import Broker
from broker.client import Client
from broker.protocol import Connection, Role
from broker.server import Server, start_server
from spoolmq.config import Config
from tests.server.serverharness import Raw


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    b = Broker(Config(), memory=True)
    await b.start()
    yield b
    await b.stop()


@pytest.fixture
async def server(broker: Broker) -> AsyncIterator[Server]:
    srv = await start_server(broker, "127.0.0.1", 0)
    yield srv
    srv.close()
    await srv.wait_closed()


@pytest.fixture
async def client(server: Server) -> AsyncIterator[Client]:
    async with Client(f"tcp://127.0.0.1:{server.port}", client_id="tester") as c:
        yield c


@pytest.fixture
def raw(server: Server) -> Iterator[Callable[[], Awaitable[Raw]]]:
    opened: list[Raw] = []

    async def open_raw() -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        r = Raw(reader, writer, Connection(Role.CLIENT))
        opened.append(r)
        return r

    yield open_raw
    for r in opened:
        r.close()
