"""The browser-test harness: a real broker, gateway and dashboard site on free ports.

`Stack` starts the broker on a data directory, the gateway over it and the dashboard
site in front of it, all in the test's event loop. `stop_server()` / `start_server()`
stop and restart the broker and the gateway (same data directory, same port) while the
dashboard site stays up, as when the server process is restarted under a browser.
"""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path
from typing import Any

from aiohttp import web

from broker.broker import Broker
from http_gateway.app import create_app
from http_gateway.dashboard_site import run_dashboard
from spoolmq.config import Config

DIST_DIR = Path(__file__).resolve().parents[2] / "dashboard" / "dist"
# A graceful gateway stop waits this long for requests in flight (long polls end sooner).
GATEWAY_SHUTDOWN_S = 2.0


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Stack:
    """Broker + gateway + dashboard site. `url` is the dashboard, `api` the gateway."""

    def __init__(self, data_dir: Path, dist_dir: Path = DIST_DIR, **settings: Any) -> None:
        self.http_port = free_port()
        self.dashboard_port = free_port()
        self.config = dataclasses.replace(
            Config(), data_dir=data_dir / "data", log_dir=data_dir / "logs",
            http_port=self.http_port, dashboard_port=self.dashboard_port, **settings)
        self.dist_dir = dist_dir
        self.api = f"http://127.0.0.1:{self.http_port}"
        self.url = f"http://127.0.0.1:{self.dashboard_port}"
        self.broker: Broker | None = None
        self._gateway: web.AppRunner | None = None
        self._dashboard: web.AppRunner | None = None

    async def start(self) -> None:
        await self.start_server()
        self._dashboard = await run_dashboard(self.dist_dir, self.api, "127.0.0.1",
                                              self.dashboard_port)

    async def start_server(self) -> None:
        """Start the broker and the gateway (again, after stop_server)."""
        broker = Broker(self.config, memory=False)
        await broker.start()
        self.broker = broker
        runner = web.AppRunner(create_app(broker, self.config), access_log=None,
                               handle_signals=False, shutdown_timeout=GATEWAY_SHUTDOWN_S)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.http_port).start()
        self._gateway = runner

    async def stop_server(self) -> None:
        """Stop the gateway, then the broker; the dashboard site keeps serving."""
        if self._gateway is not None:
            await self._gateway.cleanup()
            self._gateway = None
        if self.broker is not None:
            await self.broker.stop()
            self.broker = None

    async def stop(self) -> None:
        if self._dashboard is not None:
            await self._dashboard.cleanup()
            self._dashboard = None
        await self.stop_server()
