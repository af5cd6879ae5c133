"""The hot-path renderers write JSON text directly: it must parse to the documented shapes,
message for message what the broker's own per-message view (`Delivery`) says."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from broker.api import BatchSendResult, DeliveryBatch, ReceiptResult, SendOutcome, SendRun
from broker.core.values import deliveries as per_message
from http_gateway import render

header_values = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                          st.floats(allow_nan=False, allow_infinity=False), st.text())
payloads = st.binary(max_size=64) | st.text(max_size=64).map(str.encode)


@st.composite
def batches(draw: st.DrawFn) -> DeliveryBatch:
    n = draw(st.integers(1, 5))

    def column(elements: st.SearchStrategy[Any]) -> Any:
        return draw(st.none() | st.lists(elements, min_size=n, max_size=n))

    return DeliveryBatch(
        topic=draw(st.sampled_from(["t", "other.topic"])),
        group=draw(st.sampled_from(["g", "work-ers"])),
        partition=draw(st.integers(0, 9)),
        offset=draw(st.integers(0, 2**62)),
        values=draw(st.lists(payloads, min_size=n, max_size=n)),
        keys=column(st.none() | st.text(max_size=8).map(str.encode)),
        headers=column(st.none() | st.dictionaries(st.text(max_size=8), header_values,
                                                   max_size=3)),
        timestamps=draw(st.integers(0, 2**50) | st.lists(st.integers(0, 2**50), min_size=n,
                                                         max_size=n)),
        delivery_counts=draw(st.integers(1, 9) | st.lists(st.integers(1, 9), min_size=n,
                                                          max_size=n)),
        lease_id=draw(st.integers(0, 2**40)),
        deadline=draw(st.floats(0, 2e9)),
        incarnation=draw(st.text("0123456789abcdef", min_size=4, max_size=12)),
    )


@given(st.lists(batches(), max_size=3))
def test_deliveries_match_the_brokers_per_message_view(got: list[DeliveryBatch]) -> None:
    doc = json.loads(render.deliveries("t", "g", got))
    assert (doc["topic"], doc["group"]) == ("t", "g")
    expected = per_message(got)
    assert len(doc["messages"]) == len(expected)
    for d, m in zip(expected, doc["messages"], strict=True):
        if m.get("encoding") == "base64":
            assert base64.b64decode(m["message"]) == d.value
        else:
            assert m["message"].encode() == d.value
        assert (m["receipt"], m["topic"], m["partition"], m["offset"]) == (
            d.receipt, d.topic, d.partition, d.offset)
        assert (m["delivery_count"], m["timestamp"], m["deadline"]) == (
            d.delivery_count, d.timestamp_ms, d.deadline)
        assert m["key"] == (None if d.key is None else d.key.decode())
        assert m["headers"] == d.headers


def test_binary_payload_with_a_binary_content_type_is_base64_even_if_utf8() -> None:
    b = DeliveryBatch("t", "g", 0, 0, [b"abc"], None,
                      [{"content-type": "application/octet-stream"}], 0, 1, 1, 1.5, "ab")
    [m] = json.loads(render.deliveries("t", "g", [b]))["messages"]
    assert (m["message"], m["encoding"]) == (base64.b64encode(b"abc").decode(), "base64")


@given(st.text(), st.booleans(), st.integers(0, 2**62))
def test_single_send_answer(echo: str, created: bool, offset: int) -> None:
    result = BatchSendResult("orders", created, 1, [SendRun(0, offset, 1)])
    doc = json.loads(render.sent_one(echo, False, result))
    assert doc == {"status": "Message sent", "message": echo, "topic": "orders",
                   "partition": 0, "offset": offset, "created": created, "duplicate": False}


def test_single_duplicate_send_answer() -> None:
    result = BatchSendResult("t", False, 1, None, [SendOutcome(2, 7, True)])
    doc = json.loads(render.sent_one({"a": 1}, False, result))
    assert (doc["message"], doc["partition"], doc["offset"], doc["duplicate"]) == (
        {"a": 1}, 2, 7, True)


def test_batch_send_answer_from_runs_and_from_outcomes() -> None:
    runs = BatchSendResult("t", True, 3, [SendRun(0, 5, 2), SendRun(1, 0, 1)])
    doc = json.loads(render.sent_batch(runs))
    assert doc == {"status": "Messages sent", "topic": "t", "count": 3, "created": True,
                   "partition": [0, 0, 1], "offset": [5, 6, 0],
                   "results": [{"partition": 0, "offset": 5, "duplicate": False},
                               {"partition": 0, "offset": 6, "duplicate": False},
                               {"partition": 1, "offset": 0, "duplicate": False}]}
    outcomes = BatchSendResult("t", False, 2, None, [SendOutcome(0, 5), SendOutcome(1, 0, True)])
    doc = json.loads(render.sent_batch(outcomes))
    assert (doc["partition"], doc["offset"], doc["count"]) == ([0, 1], [5, 0], 2)
    assert [r["duplicate"] for r in doc["results"]] == [False, True]


def test_receipt_results() -> None:
    results = [ReceiptResult("a"), ReceiptResult("b", "stale_receipt", "gone"),
               ReceiptResult("c", deadline=9.5)]
    doc = json.loads(render.receipt_results(results))
    assert doc == {"results": [
        {"receipt": "a", "ok": True},
        {"receipt": "b", "ok": False, "error": {"code": "stale_receipt", "message": "gone"}},
        {"receipt": "c", "ok": True, "deadline": 9.5}]}


# Plain ASCII, JSON's escapes (quote, backslash, controls, DEL) and non-ASCII text: the
# bulk path takes the first kind only, and both paths must write what json writes.
texts = st.text(st.sampled_from('abc 09:{}~"\\\n\t\x00\x7fé€'), max_size=12)


@given(st.lists(texts, min_size=1, max_size=6), st.integers(0, 2**62), st.integers(1, 3))
def test_text_leases_render_exactly_as_json_dumps(values: list[str], offset: int,
                                                  count: int) -> None:
    b = DeliveryBatch("t", "g", 2, offset, [v.encode() for v in values], None, None,
                      1_764_300_000_000, count, 77, 1_764_300_030.25, "abc123")
    expected = {"topic": "t", "group": "g", "messages": [
        {"message": v, "receipt": f"abc123:77:2:{offset + i}:t:g", "topic": "t",
         "partition": 2, "offset": offset + i, "delivery_count": count, "key": None,
         "headers": None, "timestamp": 1_764_300_000_000, "deadline": 1_764_300_030.25}
        for i, v in enumerate(values)]}
    assert render.deliveries("t", "g", [b]) == render.dumps(expected).encode()


@given(st.lists(texts, max_size=5))
def test_settled_renders_exactly_as_json_dumps(receipts: list[str]) -> None:
    expected = {"results": [{"receipt": r, "ok": True} for r in receipts]}
    assert render.settled(receipts) == render.dumps(expected).encode()
    assert render.receipt_results([ReceiptResult(r) for r in receipts]) == render.settled(
        receipts)
