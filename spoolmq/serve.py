"""Process assembly: broker core + native TCP listener + HTTP gateway + dashboard site.

`run_server` owns the event loop, signal handling and the exit code. A failed
fsync is fatal (exit 70): nothing more is acknowledged and the process stops,
because the kernel may have dropped dirty pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from broker.config import Config, ConfigError
from broker.errors import BrokerError
from broker.server import Server
from http_gateway.security import UnsafeBindError, check_bind_safety, make_ssl_context
from spoolmq.gc_tuning import freeze_startup_objects, pace_collections
from spoolmq.logs import setup_logging
from storage.errors import StorageError

log = logging.getLogger("spoolmq.serve")

EXIT_FATAL_STORAGE = 70  # EX_SOFTWARE: the disk lost data we may have acknowledged
EXIT_STARTUP = 1
DASHBOARD_DIST = Path(__file__).resolve().parent.parent / "dashboard" / "dist"


def _fatal(exc: BaseException) -> None:
    log.critical("fatal storage failure, stopping without acknowledging more: %s", exc)
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    os._exit(EXIT_FATAL_STORAGE)


async def serve(config: Config, stop: asyncio.Event, *, with_http: bool = True,
                with_dashboard: bool = True, ready: asyncio.Event | None = None) -> None:
    """Start every component, wait for `stop`, then shut down in reverse order."""
    from broker.broker import Broker
    from broker.server import start_server, token_authorizer

    check_bind_safety(config)
    ssl_ctx = make_ssl_context(config)
    broker = Broker(config, on_fatal=_fatal)
    await broker.start()
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(broker.stop)
        tcp = await start_server(broker, config.host, config.tcp_port, ssl=ssl_ctx,
                                 authorize=token_authorizer(config.tokens))
        stack.push_async_callback(_close_server, tcp)
        log.info("native protocol on %s:%d", config.host, config.tcp_port)
        if with_http:
            from http_gateway.app import run_gateway

            runner = await run_gateway(broker, config)
            stack.push_async_callback(runner.cleanup)
            scheme = "https" if ssl_ctx else "http"
            log.info("HTTP gateway on %s://%s:%d", scheme, config.host, config.http_port)
            if with_dashboard:
                from http_gateway.dashboard_site import run_dashboard

                gateway_url = f"{scheme}://127.0.0.1:{config.http_port}"
                dash = await run_dashboard(DASHBOARD_DIST, gateway_url, config.host,
                                           config.dashboard_port)
                stack.push_async_callback(dash.cleanup)
                log.info("dashboard on http://%s:%d", config.host, config.dashboard_port)
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("shutting down")
    log.info("stopped cleanly")


async def _freeze_when(ready: asyncio.Event) -> None:
    await ready.wait()
    freeze_startup_objects()


async def _close_server(server: Server) -> None:
    server.close()
    await server.wait_closed()


def run_server(config: Config, *, with_http: bool = True, with_dashboard: bool = True) -> int:
    """Run until SIGTERM/SIGINT; return the process exit code."""
    setup_logging(config.log_dir, config.log_level)
    if config.durability != "sync":
        log.warning("durability is %r: acknowledged messages may be lost on power failure "
                    "or kill -9", config.durability)
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        ready = asyncio.Event()
        frozen = asyncio.create_task(_freeze_when(ready))
        try:
            await serve(config, stop, with_http=with_http, with_dashboard=with_dashboard,
                        ready=ready)
        finally:
            frozen.cancel()

    pace_collections()

    try:
        try:
            import uvloop
        except ImportError:
            asyncio.run(main())
        else:
            uvloop.run(main())
    except (OSError, BrokerError, StorageError, ConfigError, UnsafeBindError) as exc:
        # refusing to start (busy port, locked data dir, unsafe bind) is an answer, not a crash
        log.error("cannot start: %s", exc)
        return EXIT_STARTUP
    return 0


if __name__ == "__main__":
    sys.exit(run_server(Config()))
