"""The dashboard site (port 3000): the built Vue app plus a reverse proxy to the gateway.

Owns: serving `dashboard/dist` (hashed assets cached for a year, `index.html` never
cached, every other path answered with `index.html` so the app's router handles it)
and forwarding the gateway's paths to `gateway_url` unchanged — method, path, query,
body, `Authorization`/`Cookie` and the other end-to-end headers one way; status,
content type and headers back — with bodies streamed chunk by chunk, so the
`/events` Server-Sent Events reach the browser as they are written.

`/topics` and `/groups` are both app pages and API paths. A browser navigation there
(a GET or HEAD whose `Accept` asks for `text/html`) gets the app; fetch() and
EventSource ask for JSON or an event stream and are proxied. `dashboard/vite.config.ts`
applies the same rule in development.

Must not: import the broker, keep any state of its own beyond the HTTP client
session, or buffer a response body.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

log = logging.getLogger(__name__)

# The gateway's own paths: each is proxied as is, and so is everything below it.
API_PATHS = (
    "/send", "/receive", "/ack", "/nack", "/extend", "/stats", "/monitoring", "/events",
    "/topics", "/groups", "/metrics", "/healthz", "/openapi.json",
)
# Paths that are pages of the app as well (see the module docstring).
PAGE_PATHS = ("/topics", "/groups")
# One request body as the gateway accepts it (its `Limits.max_body_bytes`), so the
# proxy never refuses what the gateway would take and never holds more.
MAX_BODY_BYTES = 16 * 1024 * 1024
# Connecting to the gateway on the same machine takes microseconds; 5 s means it is down.
CONNECT_TIMEOUT_S = 5.0
# Open connections to the gateway: every dashboard tab holds one event stream, plus
# requests in flight; the gateway accepts 64 event streams, so this is never the limit.
MAX_UPSTREAM_CONNECTIONS = 256
# Seconds a graceful stop waits for requests in flight (event streams are ended at once).
SHUTDOWN_TIMEOUT_S = 5.0
# Hashed build output: the name changes with the content, so it may be cached for good.
ASSETS_PREFIX = "/assets/"
IMMUTABLE = "public, max-age=31536000, immutable"

# RFC 9110 §7.6.1: meaningful for one connection only, never forwarded.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade", "proxy-connection",
})
# Set again by this server or by the client library for the next hop.
NOT_FORWARDED_REQUEST = HOP_BY_HOP | {"host", "content-length"}
NOT_FORWARDED_RESPONSE = HOP_BY_HOP | {"date", "server"}

DIST_DIR = web.AppKey("dist_dir", Path)
GATEWAY_URL = web.AppKey("gateway_url", str)
CLIENT = web.AppKey("client", aiohttp.ClientSession)
STREAMS = web.AppKey("streams", set[aiohttp.ClientResponse])

NOT_BUILT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>spoolmq dashboard: not built</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem}}
code{{background:#eee;padding:.1em .3em;border-radius:4px}}</style></head>
<body><h1>The dashboard has not been built</h1>
<p>There are no built files in <code>{dist}</code>.</p>
<p>Run <code>make install</code> in the spoolmq folder (it runs
<code>npm ci &amp;&amp; npm run build</code> in <code>dashboard/</code>), then reload this page.</p>
<p>The API is proxied meanwhile: <a href="/stats">/stats</a>,
<a href="/healthz">/healthz</a>.</p></body></html>
"""


def is_api_path(path: str) -> bool:
    """True for a gateway path (one of API_PATHS, or below one)."""
    return any(path == p or path.startswith(p + "/") for p in API_PATHS)


def is_page_navigation(request: web.Request) -> bool:
    """True for a browser loading an app page that shares its path with the API."""
    if request.method not in ("GET", "HEAD"):
        return False
    if not any(request.path == p or request.path.startswith(p + "/") for p in PAGE_PATHS):
        return False
    return "text/html" in request.headers.get("Accept", "")


def create_dashboard_app(dist_dir: Path, gateway_url: str) -> web.Application:
    """The dashboard site over the built app in `dist_dir`, proxying the API to `gateway_url`.

    `dist_dir` may not exist (yet): pages then say to run `make install`, and the API is
    still proxied. Nothing is read or connected until requests arrive.
    """
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[DIST_DIR] = Path(dist_dir)
    app[GATEWAY_URL] = gateway_url.rstrip("/")
    app[STREAMS] = set[aiohttp.ClientResponse]()
    app.cleanup_ctx.append(_client_session)
    app.on_shutdown.append(_end_streams)
    app.router.add_route("*", "/{tail:.*}", _dispatch)
    return app


async def run_dashboard(dist_dir: Path, gateway_url: str, host: str, port: int
                        ) -> web.AppRunner:
    """Serve the dashboard on host:port. Returns the started runner (`runner.addresses`
    tells the bound port when `port` is 0; `await runner.cleanup()` stops it).

    Raises OSError when the address cannot be bound.
    """
    app = create_dashboard_app(dist_dir, gateway_url)
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    if not (Path(dist_dir) / "index.html").is_file():
        log.warning("dashboard not built (%s has no index.html): run `make install`", dist_dir)
    return runner


def _loopback(url: str) -> bool:
    host = URL(url).host or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _client_session(app: web.Application) -> AsyncIterator[None]:
    gateway = app[GATEWAY_URL]
    # A gateway on this machine with TLS uses a certificate made for its public name;
    # the loopback hop never leaves the machine, so it is not verified.
    ssl: bool = not (gateway.startswith("https:") and _loopback(gateway))
    connector = aiohttp.TCPConnector(limit=MAX_UPSTREAM_CONNECTIONS, ssl=ssl)
    timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S, sock_read=None)
    # auto_decompress off: bodies pass through byte for byte, Content-Encoding and all.
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
                                     ) as session:
        app[CLIENT] = session
        yield


async def _end_streams(app: web.Application) -> None:
    # Closing the upstream side ends each proxied event stream, so a stop is not held
    # up for SHUTDOWN_TIMEOUT_S by browsers that stay connected.
    streams: set[aiohttp.ClientResponse] = app[STREAMS]
    for upstream in list(streams):
        upstream.close()


async def _dispatch(request: web.Request) -> web.StreamResponse:
    if is_api_path(request.path) and not is_page_navigation(request):
        return await _proxy(request)
    if request.method not in ("GET", "HEAD"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
    return _static(request)


def _static(request: web.Request) -> web.StreamResponse:
    dist = request.app[DIST_DIR]
    index = dist / "index.html"
    if not index.is_file():
        return web.Response(status=503, text=NOT_BUILT_PAGE.format(dist=dist),
                            content_type="text/html", headers={"Cache-Control": "no-store"})
    relative = request.path.lstrip("/")
    if relative:
        root = dist.resolve()
        candidate = (dist / relative).resolve()
        if candidate.is_relative_to(root) and candidate.is_file():
            cache = IMMUTABLE if request.path.startswith(ASSETS_PREFIX) else "no-cache"
            return web.FileResponse(candidate, headers={"Cache-Control": cache})
        if request.path.startswith(ASSETS_PREFIX):
            # A missing script or stylesheet must fail as such, not load as HTML.
            raise web.HTTPNotFound(text="no such asset\n")
    return web.FileResponse(index, headers={"Cache-Control": "no-cache"})


def _request_headers(request: web.Request) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        if name.lower() not in NOT_FORWARDED_REQUEST:
            headers.add(name, value)
    peer = request.remote or ""
    previous = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{previous}, {peer}" if previous else peer
    headers["X-Forwarded-Host"] = request.host
    headers["X-Forwarded-Proto"] = request.scheme
    return headers


def _unreachable(gateway: str, exc: BaseException) -> web.Response:
    reason = exc.__class__.__name__
    return web.json_response(
        {"error": {"code": "gateway_unreachable",
                   "message": f"the gateway at {gateway} cannot be reached ({reason})",
                   "retriable": True}},
        status=502, headers={"Cache-Control": "no-store"})


async def _proxy(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY_URL]
    session = request.app[CLIENT]
    target = URL(gateway + request.raw_path, encoded=True)
    body = await request.read() if request.body_exists else None
    headers = _request_headers(request)
    # A pooled connection the gateway closed (it restarted) fails on first use: a
    # request that cannot have changed anything is sent once more on a fresh one.
    attempts = 2 if request.method in ("GET", "HEAD", "OPTIONS") else 1
    for attempt in range(attempts):
        try:
            upstream = await session.request(request.method, target, headers=headers,
                                             data=body, allow_redirects=False)
            break
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            if attempt + 1 == attempts:
                return _unreachable(gateway, exc)
        except aiohttp.ClientError as exc:
            return _unreachable(gateway, exc)
    streams = request.app[STREAMS]
    streams.add(upstream)
    try:
        return await _relay(request, upstream)
    finally:
        streams.discard(upstream)
        upstream.release()


async def _relay(request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
    for name, value in upstream.headers.items():
        if name.lower() not in NOT_FORWARDED_RESPONSE:
            resp.headers.add(name, value)
    await resp.prepare(request)
    try:
        async for chunk in upstream.content.iter_any():
            await resp.write(chunk)
    except ConnectionResetError:
        return resp  # the browser went away: dropping the upstream response ends it too
    except (aiohttp.ClientError, OSError):
        # The gateway died mid-answer: cut the browser's connection too, so the answer
        # reads as failed rather than complete (an event stream then reconnects).
        if request.transport is not None:
            request.transport.close()
        return resp
    await resp.write_eof()
    return resp
