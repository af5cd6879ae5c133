"""/openapi.json matches the app, and schemathesis fuzzes every operation (but /events)
against a live server: no 5xx, and every answer conforms to the document."""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from http_gateway.app import create_app
from http_gateway.openapi import build_spec
from http_gateway.routes import ROUTES
from http_gateway.settings import Limits
from spoolmq.config import Config
from tests.gateway.conftest import Live, make_broker

# Long polls capped so a generated `wait` cannot stall the run; the document states
# the same cap because it is built from the same Limits.
FUZZ_LIMITS = Limits(max_wait_s=0.05, max_receive=50, max_batch=50, max_list=100,
                     max_browse=50, max_partitions=4, max_body_bytes=256 * 1024)
FUZZ_EXAMPLES = 15  # per operation (plus schemathesis' own edge cases): ~30 s for ~28 operations
START_TIMEOUT_S = 30.0


class ThreadedGateway:
    """The gateway and a memory broker on an event loop of their own (schemathesis is sync)."""

    def __init__(self, data_dir: Path) -> None:
        self.config = dataclasses.replace(Config(), data_dir=data_dir, http_port=0)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.url = ""
        self._stop: list[Any] = []

    def _call(self, coro: Any) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(START_TIMEOUT_S)

    async def _start(self) -> str:
        broker = make_broker(self.config)
        await broker.start()
        self._stop.append(broker.stop)
        runner = web.AppRunner(create_app(broker, self.config, limits=FUZZ_LIMITS),
                               access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        self._stop.append(runner.cleanup)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    async def _close(self) -> None:
        for close in reversed(self._stop):
            await close()

    def __enter__(self) -> ThreadedGateway:
        self.thread.start()
        self.url = self._call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(START_TIMEOUT_S)
        self.loop.close()


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[ThreadedGateway]:
    with tempfile.TemporaryDirectory() as tmp, ThreadedGateway(Path(tmp)) as server:
        yield server


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


schema = schemathesis.openapi.from_dict(build_spec(ROUTES, FUZZ_LIMITS, secured=False)
                                        ).exclude(path="/events")


@schema.parametrize()
@settings(max_examples=FUZZ_EXAMPLES)
def test_schemathesis_no_server_errors_and_conforming_answers(
        case: Any, fuzz_server: ThreadedGateway, http: requests.Session) -> None:
    case.call_and_validate(
        base_url=fuzz_server.url, session=http, timeout=10,
        checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                response_schema_conformance])


async def test_served_document_lists_exactly_the_apps_routes(live: Live) -> None:
    spec = await live.json("GET", "/openapi.json")
    assert spec["openapi"].startswith("3.")
    documented = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    served = set()
    for route in live.app.router.routes():
        if route.name == "unmatched":  # answers 404/405 for everything else
            continue
        info = route.resource.get_info() if route.resource else {}
        served.add((route.method, info.get("path") or info.get("formatter")))
    assert documented == served
    assert {"/send", "/send/{topic}", "/receive/{topic}", "/monitoring"} <= set(spec["paths"])
    ok = spec["paths"]["/send/{topic}"]["post"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"]


async def test_document_states_the_apps_limits(live: Live) -> None:
    spec = await live.json("GET", "/openapi.json")
    params = {p["name"]: p["schema"] for p in spec["paths"]["/receive"]["get"]["parameters"]}
    assert params["wait"]["maximum"] == Limits().max_wait_s
    assert params["max"]["maximum"] == Limits().max_receive
