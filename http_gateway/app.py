"""Assembly: `create_app` wires the route table behind the guard and the app state;
`run_gateway` listens on the configured address (TLS when configured).

The broker's lifecycle belongs to the caller (the composition root starts and
stops it); the gateway only ends its own long-lived responses on shutdown.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from broker.api import BrokerAPI
from http_gateway.auth import Authorizer
from http_gateway.coalesce import SendCoalescer
from http_gateway.guard import add_unmatched, guarded
from http_gateway.metrics import METRICS_REGISTRY, make_registry
from http_gateway.openapi import OPENAPI_SPEC, build_spec
from http_gateway.routes import ROUTES
from http_gateway.security import check_bind_safety, make_ssl_context
from http_gateway.settings import GatewaySettings, Limits
from http_gateway.state import GATEWAY, Gateway, RoutePolicy

log = logging.getLogger(__name__)

# Seconds a graceful stop waits for in-flight requests (a long poll is at most 20 s,
# and shutdown wakes the event streams at once).
SHUTDOWN_TIMEOUT_S = 5.0
# Pending connections the kernel holds for us: bursts of 64+ keep-alive clients connecting.
LISTEN_BACKLOG = 1024


def create_app(broker: BrokerAPI, config: GatewaySettings, *,
               limits: Limits | None = None) -> web.Application:
    """The gateway as an aiohttp Application over `broker` (which the caller starts/stops)."""
    limits = limits or Limits()
    app = web.Application(client_max_size=limits.max_body_bytes)
    gw = Gateway(broker, config, limits, Authorizer(config.tokens), SendCoalescer(broker))
    app[GATEWAY] = gw
    for r in ROUTES:
        policy = RoutePolicy(r.name, r.right, r.topic, r.public)
        route = app.router.add_route(r.method, r.path, guarded(gw, policy, r.handler),
                                     name=r.name)
        gw.policies[route] = policy
    add_unmatched(app, gw)
    app[METRICS_REGISTRY] = make_registry(gw)
    spec = build_spec(ROUTES, limits, secured=gw.authorizer.enabled)
    app[OPENAPI_SPEC] = json.dumps(spec, separators=(",", ":")).encode()
    app.cleanup_ctx.append(_lifecycle)
    app.on_shutdown.append(_closing)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    gw = app[GATEWAY]
    gw.closing.clear()
    log.info("HTTP gateway ready (%d routes, auth %s)", len(ROUTES),
             "on" if gw.authorizer.enabled else "off")
    yield
    gw.closing.set()
    await gw.coalescer.drain()


async def _closing(app: web.Application) -> None:
    # Before connections are closed: wake the event streams so they end cleanly.
    app[GATEWAY].closing.set()


async def run_gateway(broker: BrokerAPI, config: GatewaySettings, *,
                      limits: Limits | None = None) -> web.AppRunner:
    """Listen on config.host:config.http_port (TLS when tls_cert/tls_key are set).

    Returns the started runner: `runner.addresses` tells the bound port (port 0 picks
    one) and `await runner.cleanup()` stops it. Raises UnsafeBindError (see
    `check_bind_safety`) and the TLS loading errors of `make_ssl_context`.
    """
    check_bind_safety(config)
    ssl_context = make_ssl_context(config)
    app = create_app(broker, config, limits=limits)
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.http_port, ssl_context=ssl_context,
                       backlog=LISTEN_BACKLOG)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("HTTP gateway listening on %s", ", ".join(map(str, runner.addresses)))
    return runner
