"""/stats, /events (SSE), /metrics and /healthz."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from http_gateway.app import create_app
from http_gateway.settings import Limits
from spoolmq.config import Config
from tests.gateway.conftest import Live, StartGateway, make_broker

READ_DEADLINE_S = 5.0


async def _next_event(resp: aiohttp.ClientResponse) -> tuple[str, Any]:
    """Read one SSE event (name, parsed data); skips the retry preamble."""
    name, data = "", ""
    while True:
        line = (await asyncio.wait_for(resp.content.readline(), READ_DEADLINE_S)).decode()
        if line == "":
            return "", None  # EOF
        line = line.rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and name:
            return name, json.loads(data)


async def test_stats_matches_the_documented_snapshot(live: Live) -> None:
    await live.json("POST", "/send/s", json={"messages": ["a", "b"]})
    await live.json("GET", "/receive/s?group=g")
    doc = await live.json("GET", "/stats")
    assert set(doc) == {"timestamp", "messages_in_queue", "ready", "in_flight", "dead_lettered",
                        "active_producers", "active_consumers", "rates",
                        "oldest_unacked_age_s", "topics", "clients"}
    assert set(doc["rates"]) == {"in", "out", "acks", "redeliveries"}
    [topic] = doc["topics"]
    assert topic["name"] == "s"
    assert topic["messages_in_queue"] == 2
    [group] = topic["groups"]
    assert (group["name"], group["in_flight"], group["lag"]) == ("g", 1, 2)
    assert doc["in_flight"] == 1
    monitoring = await live.json("GET", "/monitoring")
    assert set(monitoring) == set(doc)
    same = ("messages_in_queue", "ready", "in_flight", "active_producers", "active_consumers")
    assert [monitoring[k] for k in same] == [doc[k] for k in same]


async def test_events_stream_snapshots_at_least_once_a_second(live: Live) -> None:
    await live.json("POST", "/send/ev", json={"message": "x"})
    async with live.session.get(live.url + "/events") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        name, first = await _next_event(resp)
        assert name == "snapshot"
        assert first["messages_in_queue"] == 1
        started = time.monotonic()
        name, second = await _next_event(resp)
        assert name == "snapshot"
        assert time.monotonic() - started < 1.5
        assert second["timestamp"] >= first["timestamp"]


async def test_events_stream_ends_cleanly_on_shutdown(tmp_path: Path) -> None:
    config = dataclasses.replace(Config(), data_dir=tmp_path, http_port=0)
    broker = make_broker(config)
    await broker.start()
    runner = web.AppRunner(create_app(broker, config, limits=Limits(events_interval_s=10)),
                           shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://127.0.0.1:{port}/events") as resp:
            assert (await _next_event(resp))[0] == "snapshot"
            started = time.monotonic()
            cleanup = asyncio.create_task(runner.cleanup())
            assert (await _next_event(resp))[0] == "shutdown"
            assert await asyncio.wait_for(resp.content.read(), READ_DEADLINE_S) == b""
            await asyncio.wait_for(cleanup, READ_DEADLINE_S)
            assert time.monotonic() - started < 3.0  # not the 10 s period nor the timeout
    finally:
        await runner.cleanup()
        await broker.stop()


async def test_metrics_expose_queue_lag_clients_and_requests(live: Live) -> None:
    await live.json("POST", "/send/m", json={"messages": ["a", "b", "c"]})
    await live.json("GET", "/receive/m?group=g&auto_ack=true")
    async with live.session.get(live.url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    lines = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
             if line and not line.startswith("#")}
    assert lines["spoolmq_messages_in_queue"] == 2
    assert lines['spoolmq_group_lag_messages{group="g",topic="m"}'] == 2
    assert 'spoolmq_group_lag_seconds{group="g",topic="m"}' in lines
    assert lines["spoolmq_active_producers"] == 1
    assert lines["spoolmq_active_consumers"] == 1
    assert lines['spoolmq_messages_in_total{topic="m"}'] == 3
    assert lines["spoolmq_http_messages_in_total"] == 3
    assert lines["spoolmq_http_messages_out_total"] == 1
    assert lines["spoolmq_http_acks_total"] == 1
    assert lines['spoolmq_http_requests_total{method="POST",route="send_topic",status="200"}'] == 1
    assert all(name.startswith("spoolmq_") for name in lines)


async def test_healthz_is_ok(live: Live) -> None:
    doc = await live.json("GET", "/healthz")
    assert doc["status"] == "ok"


async def test_too_many_event_streams_is_429(start_gateway: StartGateway) -> None:
    live = await start_gateway(limits=Limits(max_event_streams=1))
    async with live.session.get(live.url + "/events") as first:
        assert (await _next_event(first))[0] == "snapshot"
        doc = await live.json("GET", "/events", status=429)
        assert doc["error"]["code"] == "too_many_requests"
