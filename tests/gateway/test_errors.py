"""One error envelope everywhere, aiohttp's own 404/405 included; request limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from http_gateway.settings import Limits
from http_gateway.state import GATEWAY
from tests.gateway.conftest import Live, StartGateway


async def test_unknown_path_is_a_json_404(live: Live) -> None:
    async with live.session.get(live.url + "/nowhere") as resp:
        assert resp.status == 404
        assert resp.content_type == "application/json"
        doc = await resp.json()
    assert doc["error"]["code"] == "not_found"
    assert doc["error"]["message"]


async def test_wrong_method_is_a_json_405_with_allow(live: Live) -> None:
    async with live.session.delete(live.url + "/send") as resp:
        assert resp.status == 405
        assert "POST" in resp.headers["Allow"]
        doc = await resp.json()
    assert doc["error"]["code"] == "method_not_allowed"


async def test_wrong_method_on_a_templated_path_names_its_methods(live: Live) -> None:
    async with live.session.put(live.url + "/topics/orders") as resp:
        assert resp.status == 405
        assert set(resp.headers["Allow"].split(",")) == {"GET", "DELETE"}
        doc = await resp.json()
    assert doc["error"]["code"] == "method_not_allowed"
    requests = live.app[GATEWAY].counters.requests
    assert requests[("PUT", "unmatched", 405)] == 1


async def test_unknown_topic_is_a_json_404(live: Live) -> None:
    doc = await live.json("GET", "/topics/nope", status=404)
    assert doc["error"]["code"] == "topic_not_found"


async def test_too_many_concurrent_requests_is_429(start_gateway: StartGateway) -> None:
    live = await start_gateway(limits=Limits(max_concurrent_requests=1))
    gate = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b"message="
        await gate.wait()
        yield b"late"

    # A request whose body is still arriving occupies the one slot.
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    first = asyncio.create_task(live.json("POST", "/send", data=slow_body(), headers=form))
    gw = live.app[GATEWAY]
    for _ in range(1000):
        if gw.in_flight_requests:
            break
        await asyncio.sleep(0.005)
    assert gw.in_flight_requests == 1
    doc = await live.json("GET", "/stats", status=429)
    assert doc["error"]["code"] == "too_many_requests"
    gate.set()
    assert (await first)["message"] == "late"
    await live.json("GET", "/stats")
