"""The seed's scripts keep working: its two curl commands and its JSON shapes."""

from __future__ import annotations

import asyncio
import json

from tests.gateway.conftest import Live


async def _curl(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    body, _, code = out.decode().rpartition("\n")
    return int(code), body


async def test_the_seeds_two_curl_commands_send_then_receive(live: Live) -> None:
    status, body = await _curl("-X", "POST", f"{live.url}/send", "-d", "message=Hello World")
    assert status == 200
    sent = json.loads(body)
    assert sent["status"] == "Message sent"
    assert sent["message"] == "Hello World"
    assert sent["topic"] == "default"
    assert sent["offset"] == 0

    status, body = await _curl(f"{live.url}/receive")
    assert status == 200
    got = json.loads(body)
    assert got["topic"] == "default"
    assert got["group"] == "default"
    [msg] = got["messages"]
    assert msg["message"] == "Hello World"
    assert msg["delivery_count"] == 1
    assert msg["offset"] == 0


async def test_seed_json_send_to_topic_echoes_the_message(live: Live) -> None:
    doc = await live.json("POST", "/send/orders", json={"message": "Hello World"})
    assert doc["status"] == "Message sent"
    assert doc["message"] == "Hello World"
    assert (doc["topic"], doc["partition"], doc["offset"]) == ("orders", 0, 0)
    assert doc["created"] is True


async def test_seed_receive_from_topic_answers_topic_and_messages(live: Live) -> None:
    await live.json("POST", "/send/orders", json={"message": "Hello World"})
    doc = await live.json("GET", "/receive/orders")
    assert doc["topic"] == "orders"
    assert [m["message"] for m in doc["messages"]] == ["Hello World"]


async def test_seed_monitoring_counts_queue_and_clients(live: Live) -> None:
    headers = {"User-Agent": "seed-script/1.0"}
    await live.json("POST", "/send/orders", json={"message": "a"}, headers=headers)
    await live.json("POST", "/send/orders", json={"message": "b"}, headers=headers)
    doc = await live.json("GET", "/monitoring")
    assert doc["messages_in_queue"] == 2
    assert doc["active_producers"] == 1
    assert doc["active_consumers"] == 0
    await live.json("GET", "/receive/orders", headers={"User-Agent": "worker/2"})
    doc = await live.json("GET", "/monitoring")
    assert doc["active_consumers"] == 1
    clients = {c["client_id"]: c for c in doc["clients"]}
    producer = clients["127.0.0.1 seed-script/1.0"]
    assert (producer["protocol"], producer["address"]) == ("http", "127.0.0.1")
    assert "producer" in producer["roles"]
    assert "consumer" in clients["127.0.0.1 worker/2"]["roles"]
