"""The hot-path renderers write JSON text directly: it must parse to the documented shapes."""

from __future__ import annotations

import base64
import json

from hypothesis import given
from hypothesis import strategies as st

from broker.api import Delivery, ReceiptResult, SendOutcome, SendResult
from http_gateway import render

header_values = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                          st.floats(allow_nan=False, allow_infinity=False), st.text())
deliveries = st.builds(
    Delivery,
    topic=st.sampled_from(["t", "other.topic"]),
    partition=st.integers(0, 9),
    offset=st.integers(0, 2**62),
    value=st.binary(max_size=64) | st.text(max_size=64).map(str.encode),
    key=st.none() | st.text(max_size=8).map(str.encode),
    headers=st.none() | st.dictionaries(st.text(max_size=8), header_values, max_size=3),
    timestamp_ms=st.integers(0, 2**50),
    delivery_count=st.integers(1, 100),
    receipt=st.text(min_size=1, max_size=40),
    deadline=st.floats(0, 2e9),
)


@given(st.lists(deliveries, max_size=5), st.text(max_size=10))
def test_deliveries_parse_to_the_documented_message_shape(got: list[Delivery],
                                                          group: str) -> None:
    doc = json.loads(render.deliveries("t", group, got))
    assert (doc["topic"], doc["group"]) == ("t", group)
    assert len(doc["messages"]) == len(got)
    for d, m in zip(got, doc["messages"], strict=True):
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
    d = Delivery("t", 0, 0, b"abc", None, {"content-type": "application/octet-stream"}, 0, 1,
                 "r", 1.5)
    [m] = json.loads(render.deliveries("t", "g", [d]))["messages"]
    assert (m["message"], m["encoding"]) == (base64.b64encode(b"abc").decode(), "base64")


@given(st.text(), st.booleans(), st.booleans(), st.integers(0, 2**62))
def test_single_send_answer(echo: str, created: bool, duplicate: bool, offset: int) -> None:
    result = SendResult("orders", created, [SendOutcome(0, offset, duplicate)])
    doc = json.loads(render.sent_one(echo, False, result))
    assert doc == {"status": "Message sent", "message": echo, "topic": "orders",
                   "partition": 0, "offset": offset, "created": created,
                   "duplicate": duplicate}


def test_batch_send_answer() -> None:
    outcomes = [SendOutcome(0, 5), SendOutcome(1, 0, True)]
    doc = json.loads(render.sent_batch(SendResult("t", False, outcomes)))
    assert doc == {"status": "Messages sent", "topic": "t", "count": 2, "created": False,
                   "partition": [0, 1], "offset": [5, 0],
                   "results": [{"partition": 0, "offset": 5, "duplicate": False},
                               {"partition": 1, "offset": 0, "duplicate": True}]}


def test_receipt_results() -> None:
    results = [ReceiptResult("a"), ReceiptResult("b", "stale_receipt", "gone"),
               ReceiptResult("c", deadline=9.5)]
    doc = json.loads(render.receipt_results(results))
    assert doc == {"results": [
        {"receipt": "a", "ok": True},
        {"receipt": "b", "ok": False, "error": {"code": "stale_receipt", "message": "gone"}},
        {"receipt": "c", "ok": True, "deadline": 9.5}]}
