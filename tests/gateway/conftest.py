"""The gateway harness: a real broker behind the real app on 127.0.0.1, port 0.

`start_gateway(...)` starts a broker (memory store unless `memory=False`), the app
in an aiohttp runner (TLS when the config says so) and an aiohttp client session;
everything is stopped at the end of the test.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from broker.broker import Broker
from http_gateway.app import create_app
from http_gateway.security import make_ssl_context
from http_gateway.settings import Limits
from spoolmq.config import Config


def make_broker(config: Config, memory: bool = True) -> Broker:
    """The real broker: memory store by default, else the file store in config.data_dir."""
    return Broker(config, memory=memory)


@dataclass
class Live:
    """A running gateway: its base URL, a client session, the app and the broker."""

    url: str
    session: aiohttp.ClientSession
    app: web.Application
    broker: Broker
    config: Config
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        """Stop client, server and broker (in that order); later calls do nothing."""
        while self.closers:
            await self.closers.pop()()

    async def json(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        async with self.session.request(method, self.url + path, **kw) as resp:
            body = await resp.json(content_type=None)
            assert resp.status == status, (resp.status, body)
            return body


StartGateway = Callable[..., Awaitable[Live]]


@pytest.fixture
async def start_gateway(tmp_path: Path) -> AsyncIterator[StartGateway]:
    started: list[Live] = []

    async def start(memory: bool = True, limits: Limits | None = None,
                    client_ssl: ssl.SSLContext | None = None, data_dir: Path | None = None,
                    **settings: Any) -> Live:
        config = dataclasses.replace(
            Config(), data_dir=data_dir or tmp_path / f"data{len(started)}",
            log_dir=tmp_path / "logs", http_port=0, **settings)
        closers: list[Callable[[], Awaitable[None]]] = []
        broker = make_broker(config, memory=memory)
        await broker.start()
        closers.append(broker.stop)
        app = create_app(broker, config, limits=limits)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        closers.append(runner.cleanup)
        ctx = make_ssl_context(config)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        port = runner.addresses[0][1]
        scheme = "https" if ctx else "http"
        connector = aiohttp.TCPConnector(ssl=client_ssl) if client_ssl else None
        session = aiohttp.ClientSession(connector=connector)
        closers.append(session.close)
        live = Live(f"{scheme}://127.0.0.1:{port}", session, app, broker, config, closers)
        started.append(live)
        return live

    yield start
    for live in reversed(started):
        await live.close()



@pytest.fixture
async def live(start_gateway: StartGateway) -> Live:
    """The default gateway: memory broker, default limits, no auth."""
    return await start_gateway()
