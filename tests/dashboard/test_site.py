"""The dashboard site: static files with the app's fallback, and the proxy to the gateway.

A small aiohttp app stands in for the gateway and records what reached it, so these
tests see exactly what the proxy forwards and returns; no browser is needed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from http_gateway.dashboard_site import create_dashboard_app
from tests.dashboard.harness import free_port

pytestmark = pytest.mark.timeout(30)

Start = Callable[..., Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Start]:
    """Start an aiohttp app on a free port; returns its base URL. All stopped at the end."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application, port: int | None = None) -> str:
        runner = web.AppRunner(app, shutdown_timeout=1.0)
        await runner.setup()
        runners.append(runner)
        port = port or free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    d = tmp_path / "dist"
    (d / "assets").mkdir(parents=True)
    (d / "index.html").write_text("<!doctype html><title>app</title><div id=app></div>")
    (d / "assets" / "index-abc123.js").write_text("console.log('app')")
    (d / "favicon.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    return d


class FakeGateway:
    """Answers like the gateway and keeps every request it saw."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.release_events = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_route("*", "/events", self.events)
        self.app.router.add_route("*", "/{tail:.*}", self.echo)

    async def echo(self, request: web.Request) -> web.Response:
        self.seen.append({
            "method": request.method, "path": request.path,
            "query": request.raw_path.partition("?")[2],
            "body": await request.text(), "headers": dict(request.headers)})
        if request.path == "/topics/missing":
            return web.json_response({"error": {"code": "not_found", "message": "no"}},
                                     status=404)
        return web.Response(status=201, text='{"ok":true}', content_type="application/json",
                            headers={"X-Request-Seen": "yes", "Set-Cookie": "a=1"})

    async def events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'event: snapshot\ndata: {"n": 1}\n\n')
        await self.release_events.wait()  # the second event only once the test saw the first
        await resp.write(b'event: snapshot\ndata: {"n": 2}\n\n')
        await resp.write_eof()
        return resp


async def test_serves_the_app_for_pages_and_files_as_they_are(serve: Start, dist: Path) -> None:
    url = await serve(create_dashboard_app(dist, "http://127.0.0.1:9"))
    async with aiohttp.ClientSession() as http:
        for page in ("/", "/clients", "/dead-letters?topic=a&group=b", "/no/such/page"):
            async with http.get(url + page) as resp:
                assert resp.status == 200, page
                assert "<div id=app>" in await resp.text()
                assert resp.headers["Cache-Control"] == "no-cache"
        async with http.get(url + "/assets/index-abc123.js") as resp:
            assert resp.status == 200
            assert resp.content_type in ("text/javascript", "application/javascript")
            assert "immutable" in resp.headers["Cache-Control"]
        async with http.get(url + "/favicon.svg") as resp:
            assert resp.content_type == "image/svg+xml"
        async with http.get(url + "/assets/gone.js") as resp:
            assert resp.status == 404
        async with http.get(url + "/..%2f..%2fetc/passwd") as resp:
            assert "<div id=app>" in await resp.text()  # never a file outside dist


async def test_pages_sharing_an_api_path_load_the_app_in_a_browser(serve: Start, dist: Path
                                                                   ) -> None:
    gateway = FakeGateway()
    gw_url = await serve(gateway.app)
    url = await serve(create_dashboard_app(dist, gw_url))
    async with aiohttp.ClientSession() as http:
        html = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
        async with http.get(url + "/topics/orders", headers=html) as resp:
            assert "<div id=app>" in await resp.text()
        async with http.get(url + "/topics/orders", headers={"Accept": "application/json"}) as resp:
            assert await resp.json() == {"ok": True}
    assert [s["path"] for s in gateway.seen] == ["/topics/orders"]


async def test_proxies_method_body_query_headers_status_and_type(serve: Start, dist: Path
                                                                 ) -> None:
    gateway = FakeGateway()
    gw_url = await serve(gateway.app)
    url = await serve(create_dashboard_app(dist, gw_url))
    async with aiohttp.ClientSession() as http:
        target = URL(url + "/send/orders?x=1&y=%2F", encoded=True)  # kept byte for byte
        async with http.post(target, data="message=Hello+World",
                             headers={"Authorization": "Bearer t0k", "Cookie": "spoolmq_token=c",
                                      "Content-Type": "application/x-www-form-urlencoded",
                                      "Idempotency-Key": "k1"}) as resp:
            assert resp.status == 201
            assert resp.content_type == "application/json"
            assert resp.headers["X-Request-Seen"] == "yes"
            assert resp.headers["Set-Cookie"] == "a=1"
            assert await resp.json() == {"ok": True}
        async with http.get(url + "/topics/missing") as resp:
            assert resp.status == 404
            assert (await resp.json())["error"]["code"] == "not_found"
    seen = gateway.seen[0]
    assert seen["method"] == "POST"
    assert seen["path"] == "/send/orders"
    assert seen["query"] == "x=1&y=%2F"
    assert seen["body"] == "message=Hello+World"
    assert seen["headers"]["Authorization"] == "Bearer t0k"
    assert seen["headers"]["Cookie"] == "spoolmq_token=c"
    assert seen["headers"]["Idempotency-Key"] == "k1"
    assert seen["headers"]["X-Forwarded-For"] == "127.0.0.1"


async def test_streams_events_without_buffering(serve: Start, dist: Path) -> None:
    gateway = FakeGateway()
    gw_url = await serve(gateway.app)
    url = await serve(create_dashboard_app(dist, gw_url))
    async with aiohttp.ClientSession() as http, http.get(url + "/events") as resp:
        assert resp.content_type == "text/event-stream"
        # The first event arrives while the gateway still holds the stream open.
        first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
        assert json.loads(first.split(b"data: ", 1)[1]) == {"n": 1}
        gateway.release_events.set()
        second = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
        assert json.loads(second.split(b"data: ", 1)[1]) == {"n": 2}


async def test_answers_502_while_the_gateway_is_down(serve: Start, dist: Path) -> None:
    url = await serve(create_dashboard_app(dist, f"http://127.0.0.1:{free_port()}"))
    async with aiohttp.ClientSession() as http, http.get(url + "/stats") as resp:
        assert resp.status == 502
        body = await resp.json()
        assert body["error"]["code"] == "gateway_unreachable"


async def test_says_to_run_make_install_when_not_built(serve: Start, tmp_path: Path) -> None:
    gateway = FakeGateway()
    gw_url = await serve(gateway.app)
    url = await serve(create_dashboard_app(tmp_path / "nothing-here", gw_url))
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/") as resp:
            assert resp.status == 503
            assert "make install" in await resp.text()
        async with http.get(url + "/healthz") as resp:  # the API still goes through
            assert resp.status == 201
