"""The observation routes: /stats and /monitoring (one snapshot), /events (SSE), /healthz.

/events writes `event: snapshot` with the /stats JSON as `data` every
`Limits.events_interval_s`, and ends cleanly when the app shuts down
(`Gateway.closing` is set by the app's on_shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from broker.errors import BrokerError
from http_gateway import render
from http_gateway.state import GATEWAY

# Sent between snapshots would be wasted: the period already bounds the staleness.
SSE_RETRY_MS = 2000  # how long an EventSource waits before reconnecting


async def stats(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    return render.json_response(render.snapshot(gw.broker.snapshot()))


async def healthz(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    if gw.closing.is_set():
        raise BrokerError("unavailable", "the gateway is shutting down")
    return render.json_response({"status": "ok", "incarnation": gw.broker.incarnation})


async def events(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    if gw.event_streams >= gw.limits.max_event_streams:
        raise BrokerError("too_many_requests",
                          f"more than {gw.limits.max_event_streams} event streams are open")
    gw.event_streams += 1
    try:
        resp = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        })
        await resp.prepare(request)
        await resp.write(f"retry: {SSE_RETRY_MS}\n\n".encode())
        interval = gw.limits.events_interval_s
        while not gw.closing.is_set():
            data = render.dumps(render.snapshot(gw.broker.snapshot()))
            try:
                await resp.write(f"event: snapshot\ndata: {data}\n\n".encode())
            except (ConnectionResetError, RuntimeError):
                break  # the client went away
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(gw.closing.wait(), interval)
        if gw.closing.is_set():
            with contextlib.suppress(ConnectionResetError, RuntimeError):
                await resp.write(b"event: shutdown\ndata: {}\n\n")
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await resp.write_eof()
        return resp
    finally:
        gw.event_streams -= 1
