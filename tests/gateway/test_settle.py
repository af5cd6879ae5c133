"""POST /ack, /nack, /extend with many receipts: runs travel as range receipts, and
the answers stay exact per receipt when a range is refused."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from broker.api import ClientRef, ReceiptResult
from broker.core.receipts import Receipt as R
from broker.core.receipts import encode, run_receipt
from http_gateway.settle import runs, settle
from http_gateway.state import GATEWAY
from tests.gateway.conftest import Live


def _r(offset: int, lease: int = 7, partition: int = 0, inc: str = "abc") -> str:
    return encode(R(inc, lease, partition, offset, "t", "g"))


# -- runs: what the broker is sent


def test_one_receive_in_order_is_one_range() -> None:
    receipts = [_r(o) for o in range(10, 110)]
    assert runs(receipts) == ([run_receipt("abc", 7, 0, 10, 109, "t", "g")], [0])


def test_runs_split_where_lease_or_offsets_change() -> None:
    receipts = [_r(1), _r(2), _r(3), _r(5), _r(6), _r(6, lease=8), _r(7, lease=8), "made-up",
                _r(9), _r(8), _r(10)]
    wire, starts = runs(receipts) or ([], [])
    assert wire == [run_receipt("abc", 7, 0, 1, 3, "t", "g"),
                    run_receipt("abc", 7, 0, 5, 6, "t", "g"),
                    run_receipt("abc", 8, 0, 6, 7, "t", "g"),
                    "made-up", _r(9), _r(8), _r(10)]
    assert starts == [0, 3, 5, 7, 8, 9, 10]


@pytest.mark.parametrize("receipts", [
    [_r(1)],
    [_r(1), _r(3), _r(2)],
    [_r(1), _r(1)],
    [_r(1), _r(2), _r(3), _r(2)],  # an offset named twice: the broker orders the answers
    [_r(1), _r(2), _r(3), _r(9, lease=8), _r(2), _r(3)],
    [_r(1), _r(2), "abc:7:0:1-2:t:g"],
    [_r(1), _r(2) + "\n" + _r(3)],
    [_r(1), _r(2, lease=8)],
    [_r(1), _r(2, partition=1)],
    [_r(1), _r(2, inc="other")],
    ["abc:7:0:1-4:t:g", "abc:7:0:5-9:t:g"],  # range receipts travel as sent
    ["abc:7:0:01:t:g", "abc:7:0:02:t:g"],  # not as the broker spells them
    ["abc:07:0:1:t:g", "abc:07:0:2:t:g"],
])
def test_nothing_joins(receipts: list[str]) -> None:
    assert runs(receipts) is None


# -- settle: one call per request, a second only for refused ranges


class FakeBroker:
    """Settles offsets of lease 7 held in `leased`, all-or-nothing per range receipt."""

    def __init__(self, leased: set[int]) -> None:
        self.leased = leased
        self.calls: list[list[str]] = []

    async def ack(self, receipts: list[str]) -> list[ReceiptResult]:
        self.calls.append(list(receipts))
        out = []
        for text in receipts:
            parts = text.split(":")
            if len(parts) != 6:
                out.append(ReceiptResult(text, "stale_receipt", "not a receipt"))
                continue
            first, _, last = parts[3].partition("-")
            offsets = set(range(int(first), int(last or first) + 1)) if first.isdigit() else {-1}
            if parts[1] == "7" and offsets <= self.leased:
                self.leased -= offsets
                out.append(ReceiptResult(text))
            else:
                out.append(ReceiptResult(text, "stale_receipt", "not leased"))
        return out


async def test_all_settled_is_one_call_and_no_results() -> None:
    fake = FakeBroker(set(range(100)))
    receipts = [_r(o) for o in range(100)]
    assert await settle(fake.ack, receipts) is None
    assert fake.calls == [[run_receipt("abc", 7, 0, 0, 99, "t", "g")]]


async def test_a_refused_range_is_settled_one_by_one() -> None:
    fake = FakeBroker(set(range(10)) - {3, 4})
    receipts = [_r(o) for o in range(10)] + ["made-up", _r(20, lease=9), _r(21, lease=9)]
    results = await settle(fake.ack, receipts)
    assert results is not None
    assert [r.receipt for r in results] == receipts
    assert [r.error is None for r in results] == [
        True, True, True, False, False, True, True, True, True, True, False, False, False]
    assert fake.calls[0] == [run_receipt("abc", 7, 0, 0, 9, "t", "g"), "made-up",
                             run_receipt("abc", 9, 0, 20, 21, "t", "g")]
    assert fake.calls[1] == receipts[:10] + receipts[11:]
    assert len(fake.calls) == 2
    assert fake.leased == set()


# -- the routes against the real broker


async def _receive(live: Live, topic: str, n: int, **query: Any) -> list[dict[str, Any]]:
    await live.json("POST", f"/send/{topic}", json={"messages": [str(i) for i in range(n)]})
    q = "&".join(f"{k}={v}" for k, v in {"max": n, **query}.items())
    msgs: list[dict[str, Any]] = (await live.json("GET", f"/receive/{topic}?{q}"))["messages"]
    assert len(msgs) == n
    return msgs


def _spy(live: Live, name: str) -> list[list[str]]:
    """Record the receipts of every broker call of `name` (ack, nack or extend)."""
    calls: list[list[str]] = []
    real = getattr(live.broker, name)

    async def spy(receipts: Sequence[str], client: ClientRef, *args: Any) -> Any:
        calls.append(list(receipts))
        return await real(receipts, client, *args)

    setattr(live.broker, name, spy)
    return calls


async def test_ack_of_a_whole_receive_is_one_range(live: Live) -> None:
    msgs = await _receive(live, "rng", 100)
    calls = _spy(live, "ack")
    receipts = [m["receipt"] for m in msgs]
    doc = await live.json("POST", "/ack", json={"receipts": receipts})
    assert doc == {"results": [{"receipt": r, "ok": True} for r in receipts]}
    assert len(calls) == 1 and len(calls[0]) == 1 and "-" in calls[0][0].split(":")[3]
    assert (await live.json("GET", "/receive/rng?max=100&visibility=0.1"))["messages"] == []
    assert live.app[GATEWAY].counters.acks == 100


async def test_mixed_valid_and_stale_receipts_answer_exactly(live: Live) -> None:
    msgs = await _receive(live, "mix", 10)
    receipts = [m["receipt"] for m in msgs]
    await live.json("POST", "/ack", json={"receipts": receipts[3:5]})
    calls = _spy(live, "ack")
    sent = [*receipts, "made-up"]
    doc = await live.json("POST", "/ack", json={"receipts": sent})
    assert [r["receipt"] for r in doc["results"]] == sent
    assert [r["ok"] for r in doc["results"]] == [
        True, True, True, False, False, True, True, True, True, True, False]
    assert {r["error"]["code"] for r in doc["results"] if not r["ok"]} == {"stale_receipt"}
    assert len(calls) == 2  # the ranges, then the receipts of the refused one
    assert (await live.json("GET", "/receive/mix?max=10&visibility=0.1"))["messages"] == []


async def test_a_receipt_named_twice_is_settled_once(live: Live) -> None:
    msgs = await _receive(live, "dup", 4)
    receipts = [m["receipt"] for m in msgs]
    sent = [*receipts, "made-up", receipts[0]]
    doc = await live.json("POST", "/ack", json={"receipts": sent})
    assert [r["ok"] for r in doc["results"]] == [True, True, True, True, False, False]


async def test_all_stale_is_409_with_every_result(live: Live) -> None:
    msgs = await _receive(live, "gone", 5)
    receipts = [m["receipt"] for m in msgs]
    await live.json("POST", "/ack", json={"receipts": receipts})
    doc = await live.json("POST", "/ack", status=409, json={"receipts": receipts})
    assert doc["error"]["code"] == "stale_receipt"
    assert [(r["receipt"], r["ok"]) for r in doc["results"]] == [(r, False) for r in receipts]


async def test_nack_of_a_run_gives_every_message_back(live: Live) -> None:
    msgs = await _receive(live, "nrun", 20, visibility=60)
    calls = _spy(live, "nack")
    receipts = [m["receipt"] for m in msgs]
    doc = await live.json("POST", "/nack", json={"receipts": receipts})
    assert doc == {"results": [{"receipt": r, "ok": True} for r in receipts]}
    assert len(calls) == 1 and len(calls[0]) == 1
    again = (await live.json("GET", "/receive/nrun?max=20"))["messages"]
    assert [(m["offset"], m["delivery_count"]) for m in again] == [
        (m["offset"], 2) for m in msgs]


async def test_extend_of_a_run_answers_a_deadline_per_receipt(live: Live) -> None:
    msgs = await _receive(live, "erun", 5, visibility=5)
    receipts = [m["receipt"] for m in msgs]
    await live.json("POST", "/ack", json={"receipt": receipts[4]})
    doc = await live.json("POST", "/extend", json={"receipts": receipts, "visibility": 60})
    results = doc["results"]
    assert [r["receipt"] for r in results] == receipts
    assert [r["ok"] for r in results] == [True, True, True, True, False]
    assert all(r["deadline"] > m["deadline"] + 30 for r, m in zip(results[:4], msgs, strict=False))
