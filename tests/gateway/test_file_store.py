"""The same contract on the file store (default sync durability), across a restart."""

from __future__ import annotations

import time
from pathlib import Path

from tests.gateway.conftest import StartGateway

POLL_DEADLINE_S = 10.0


async def test_sent_message_survives_a_restart_and_ack_sticks(
        start_gateway: StartGateway, tmp_path: Path) -> None:
    data = tmp_path / "store"
    live = await start_gateway(memory=False, data_dir=data)
    await live.json("POST", "/send", data={"message": "durable"})
    await live.json("POST", "/send/jobs", json={"messages": ["j1", "j2"]})
    [job] = (await live.json("GET", "/receive/jobs"))["messages"]
    await live.json("POST", "/ack", json={"receipts": [job["receipt"]]})
    await live.close()

    live = await start_gateway(memory=False, data_dir=data)
    got = await live.json("GET", "/receive")
    assert [m["message"] for m in got["messages"]] == ["durable"]
    rest = await live.json("GET", "/receive/jobs?max=10")
    assert [m["message"] for m in rest["messages"]] == ["j2"]


async def test_redelivery_after_visibility_on_the_file_store(start_gateway: StartGateway) -> None:
    live = await start_gateway(memory=False)
    await live.json("POST", "/send/f", json={"message": "again"})
    [first] = (await live.json("GET", "/receive/f?visibility=0.2"))["messages"]
    deadline = time.monotonic() + POLL_DEADLINE_S
    again: list[dict[str, object]] = []
    while not again and time.monotonic() < deadline:
        again = (await live.json("GET", "/receive/f?wait=1"))["messages"]
    assert [(m["offset"], m["delivery_count"]) for m in again] == [(first["offset"], 2)]


async def test_idempotency_and_stats_on_the_file_store(start_gateway: StartGateway) -> None:
    live = await start_gateway(memory=False)
    h = {"Idempotency-Key": "k-1"}
    a = await live.json("POST", "/send/i", data={"message": "m"}, headers=h)
    b = await live.json("POST", "/send/i", data={"message": "m"}, headers=h)
    assert (b["offset"], b["duplicate"]) == (a["offset"], True)
    stats = await live.json("GET", "/stats")
    assert stats["messages_in_queue"] == 1
