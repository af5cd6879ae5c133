"""GET /receive and POST /ack, /nack, /extend: leases, redelivery and receipts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from http_gateway.settings import Limits
from http_gateway.state import GATEWAY
from tests.gateway.conftest import Live, StartGateway

POLL_DEADLINE_S = 10.0  # bound on every "until it comes back" loop


async def _receive_until(live: Live, path: str) -> list[dict[str, Any]]:
    """Long-poll `path` until it yields messages; fail after POLL_DEADLINE_S."""
    deadline = time.monotonic() + POLL_DEADLINE_S
    while time.monotonic() < deadline:
        got = (await live.json("GET", path))["messages"]
        if got:
            return list(got)
    raise AssertionError(f"nothing came back from {path} within {POLL_DEADLINE_S} s")


async def test_nothing_available_answers_an_empty_list(live: Live) -> None:
    doc = await live.json("GET", "/receive/empty?group=g")
    assert doc == {"topic": "empty", "group": "g", "messages": []}


async def test_long_poll_wakes_when_a_message_is_sent(live: Live) -> None:
    waiting = asyncio.create_task(live.json("GET", "/receive/lp?wait=10"))
    await asyncio.sleep(0)  # let the poll start; the send below may also land first
    started = time.monotonic()
    await live.json("POST", "/send/lp", json={"message": "wake"})
    doc = await asyncio.wait_for(waiting, POLL_DEADLINE_S)
    assert [m["message"] for m in doc["messages"]] == ["wake"]
    assert time.monotonic() - started < 5.0


async def test_unacked_message_comes_back_after_visibility_with_count_2(live: Live) -> None:
    await live.json("POST", "/send/vis", json={"message": "again"})
    [first] = (await live.json("GET", "/receive/vis?visibility=0.2"))["messages"]
    assert first["delivery_count"] == 1
    [second] = await _receive_until(live, "/receive/vis?wait=1&visibility=0.2")
    assert (second["message"], second["offset"]) == ("again", first["offset"])
    assert second["delivery_count"] == 2
    assert second["receipt"] != first["receipt"]


async def test_acked_message_never_comes_back(live: Live) -> None:
    await live.json("POST", "/send/ack", json={"message": "done"})
    [msg] = (await live.json("GET", "/receive/ack?visibility=0.2"))["messages"]
    doc = await live.json("POST", "/ack", data={"receipt": msg["receipt"]})
    assert doc == {"results": [{"receipt": msg["receipt"], "ok": True}]}
    # Past several visibility timeouts the group still has nothing.
    deadline = time.monotonic() + 0.8
    while time.monotonic() < deadline:
        assert (await live.json("GET", "/receive/ack?wait=0.3"))["messages"] == []
    group = await live.json("GET", "/topics/ack/groups/default")
    assert (group["lag"], group["in_flight"]) == (0, 0)


async def test_auto_ack_needs_no_receipt(live: Live) -> None:
    await live.json("POST", "/send/auto", json={"messages": ["a", "b"]})
    doc = await live.json("GET", "/receive/auto?max=5&auto_ack=true&visibility=0.2")
    assert [m["message"] for m in doc["messages"]] == ["a", "b"]
    group = await live.json("GET", "/topics/auto/groups/default")
    assert (group["lag"], group["in_flight"]) == (0, 0)


async def test_stale_receipt_is_refused_with_409(live: Live) -> None:
    await live.json("POST", "/send/stale", json={"message": "x"})
    [msg] = (await live.json("GET", "/receive/stale"))["messages"]
    await live.json("POST", "/ack", data={"receipt": msg["receipt"]})
    doc = await live.json("POST", "/ack", status=409, data={"receipt": msg["receipt"]})
    assert doc["error"]["code"] == "stale_receipt"
    doc = await live.json("POST", "/ack", status=409, json={"receipts": ["made-up"]})
    assert doc["error"]["code"] == "stale_receipt"
    assert doc["results"][0]["error"]["code"] == "stale_receipt"


async def test_expired_receipt_is_stale(live: Live) -> None:
    await live.json("POST", "/send/exp", json={"message": "x"})
    [msg] = (await live.json("GET", "/receive/exp?visibility=0.2"))["messages"]
    await _receive_until(live, "/receive/exp?wait=1&visibility=30")  # redelivered: first lease gone
    doc = await live.json("POST", "/ack", status=409, data={"receipt": msg["receipt"]})
    assert doc["error"]["code"] == "stale_receipt"


async def test_many_receipts_answer_per_entry(live: Live) -> None:
    await live.json("POST", "/send/many", json={"messages": ["a", "b"]})
    msgs = (await live.json("GET", "/receive/many?max=2"))["messages"]
    receipts = [m["receipt"] for m in msgs] + ["made-up"]
    doc = await live.json("POST", "/ack", json={"receipts": receipts})
    assert [r["ok"] for r in doc["results"]] == [True, True, False]
    assert doc["results"][2]["error"]["code"] == "stale_receipt"


async def test_nack_gives_the_message_back_at_once(live: Live) -> None:
    await live.json("POST", "/send/nack", json={"message": "retry"})
    [msg] = (await live.json("GET", "/receive/nack?visibility=60"))["messages"]
    doc = await live.json("POST", "/nack", json={"receipts": [msg["receipt"]]})
    assert doc["results"][0]["ok"] is True
    [again] = await _receive_until(live, "/receive/nack?wait=1")
    assert (again["offset"], again["delivery_count"]) == (msg["offset"], 2)


async def test_extend_pushes_the_deadline(live: Live) -> None:
    await live.json("POST", "/send/ext", json={"message": "slow"})
    [msg] = (await live.json("GET", "/receive/ext?visibility=5"))["messages"]
    doc = await live.json("POST", "/extend", data={"receipt": msg["receipt"], "visibility": "60"})
    [result] = doc["results"]
    assert result["ok"] is True
    assert result["deadline"] > msg["deadline"] + 30
    doc = await live.json("POST", "/extend", status=400, data={"receipt": msg["receipt"]})
    assert doc["error"]["code"] == "bad_request"


async def test_receive_parameters_are_bounded(live: Live) -> None:
    for query in ("max=0", "max=1001", "wait=21", "wait=-1", "visibility=0",
                  "visibility=43201", "auto_ack=maybe", "max=abc"):
        doc = await live.json("GET", f"/receive?{query}", status=400)
        assert doc["error"]["code"] == "invalid_argument", query


async def test_groups_each_see_every_message(live: Live) -> None:
    await live.json("POST", "/send/fan", json={"message": "all"})
    for group in ("billing", "audit"):
        doc = await live.json("GET", f"/receive/fan?group={group}")
        assert [m["message"] for m in doc["messages"]] == ["all"]


async def test_too_many_long_polls_is_429(start_gateway: StartGateway) -> None:
    live = await start_gateway(limits=Limits(max_long_polls=1))
    first = asyncio.create_task(live.json("GET", "/receive/lp?wait=5"))
    deadline = time.monotonic() + POLL_DEADLINE_S
    while live.app[GATEWAY].long_polls == 0:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    doc = await live.json("GET", "/receive/lp?wait=5", status=429)
    assert doc["error"]["code"] == "too_many_requests"
    await live.json("POST", "/send/lp", json={"message": "release"})
    assert len((await asyncio.wait_for(first, POLL_DEADLINE_S))["messages"]) == 1
