"""POST /send: form, JSON, batch and raw bodies; idempotency; refusals."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

from http_gateway.settings import Limits
from tests.gateway.conftest import Live, StartGateway


async def test_form_send_with_key_lands_on_the_default_topic(live: Live) -> None:
    doc = await live.json("POST", "/send", data={"message": "hi", "key": "k1"})
    assert (doc["status"], doc["message"], doc["topic"]) == ("Message sent", "hi", "default")
    got = await live.json("GET", "/receive")
    [msg] = got["messages"]
    assert (msg["message"], msg["key"]) == ("hi", "k1")
    assert "encoding" not in msg


async def test_json_send_keeps_key_and_headers(live: Live) -> None:
    await live.json("POST", "/send/t", json={"message": "x", "key": "user-7",
                                             "headers": {"trace": "abc", "n": 3}})
    [msg] = (await live.json("GET", "/receive/t"))["messages"]
    assert msg["key"] == "user-7"
    assert msg["headers"] == {"trace": "abc", "n": 3}
    assert msg["topic"] == "t"
    assert isinstance(msg["timestamp"], int)
    assert msg["deadline"] > 0


async def test_json_non_string_message_is_stored_as_json_text(live: Live) -> None:
    doc = await live.json("POST", "/send/t", json={"message": {"order": 1}})
    assert doc["message"] == {"order": 1}
    [msg] = (await live.json("GET", "/receive/t"))["messages"]
    assert msg["message"] == '{"order":1}'


async def test_batch_send_answers_one_result_per_entry_in_order(live: Live) -> None:
    entries = ["a", {"message": "b", "key": "k"}, {"message": "c", "headers": {"h": "1"}}]
    doc = await live.json("POST", "/send/batch", json={"messages": entries})
    assert doc["status"] == "Messages sent"
    assert doc["count"] == 3
    assert doc["offset"] == [0, 1, 2]
    assert [r["duplicate"] for r in doc["results"]] == [False] * 3
    got = await live.json("GET", "/receive/batch?max=10")
    assert [m["message"] for m in got["messages"]] == ["a", "b", "c"]
    assert [m["key"] for m in got["messages"]] == [None, "k", None]


async def test_raw_text_body_is_kept_as_text(live: Live) -> None:
    doc = await live.json("POST", "/send/raw", data=b"plain words",
                          headers={"Content-Type": "text/plain; charset=utf-8"})
    assert doc["message"] == "plain words"
    [msg] = (await live.json("GET", "/receive/raw"))["messages"]
    assert msg["message"] == "plain words"
    assert "encoding" not in msg


async def test_raw_binary_body_comes_back_base64(live: Live) -> None:
    payload = bytes(range(256))
    doc = await live.json("POST", "/send/bin?key=img", data=payload,
                          headers={"Content-Type": "application/octet-stream"})
    assert doc["encoding"] == "base64"
    [msg] = (await live.json("GET", "/receive/bin"))["messages"]
    assert msg["encoding"] == "base64"
    assert base64.b64decode(msg["message"]) == payload
    assert msg["key"] == "img"
    assert msg["headers"] == {"content-type": "application/octet-stream"}


async def test_idempotency_key_returns_the_original_offset(live: Live) -> None:
    h = {"Idempotency-Key": "order-42"}
    first = await live.json("POST", "/send/idem", json={"message": "once"}, headers=h)
    await live.json("POST", "/send/idem", json={"message": "other"})
    again = await live.json("POST", "/send/idem", json={"message": "once"}, headers=h)
    assert (first["offset"], first["duplicate"]) == (0, False)
    assert (again["offset"], again["duplicate"]) == (0, True)
    got = await live.json("GET", "/receive/idem?max=10")
    assert [m["message"] for m in got["messages"]] == ["once", "other"]


async def test_malformed_json_is_a_bad_request(live: Live) -> None:
    doc = await live.json("POST", "/send", status=400, data=b"{not json",
                          headers={"Content-Type": "application/json"})
    assert doc["error"]["code"] == "bad_request"


async def test_form_without_message_is_a_bad_request(live: Live) -> None:
    doc = await live.json("POST", "/send", status=400, data={"msg": "x"})
    assert doc["error"]["code"] == "bad_request"
    assert "message" in doc["error"]["message"]


async def test_negative_delay_is_refused(live: Live) -> None:
    doc = await live.json("POST", "/send", status=400, data={"message": "x", "delay": "-1"})
    assert doc["error"]["code"] == "invalid_argument"


async def test_body_over_the_limit_is_413(start_gateway: StartGateway) -> None:
    live = await start_gateway(limits=Limits(max_body_bytes=1024))
    doc = await live.json("POST", "/send", status=413, data=b"x" * 2048,
                          headers={"Content-Type": "text/plain"})
    assert doc["error"]["code"] == "payload_too_large"


async def test_chunked_body_over_the_limit_is_413(start_gateway: StartGateway) -> None:
    live = await start_gateway(limits=Limits(max_body_bytes=1024))

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"y" * 512

    doc = await live.json("POST", "/send", status=413, data=chunks(),
                          headers={"Content-Type": "text/plain"})
    assert doc["error"]["code"] == "payload_too_large"


async def test_message_over_max_message_bytes_is_413(start_gateway: StartGateway) -> None:
    live = await start_gateway(max_message_bytes=100)
    doc = await live.json("POST", "/send", status=413, json={"message": "z" * 200})
    assert doc["error"]["code"] == "message_too_large"


async def test_batch_over_the_limit_is_413(start_gateway: StartGateway) -> None:
    live = await start_gateway(limits=Limits(max_batch=3))
    doc = await live.json("POST", "/send", status=413, json={"messages": ["a"] * 4})
    assert doc["error"]["code"] == "payload_too_large"
    assert "3" in doc["error"]["message"]


async def test_invalid_topic_name_is_400(live: Live) -> None:
    doc = await live.json("POST", "/send/bad%20name", status=400, json={"message": "x"})
    assert doc["error"]["code"] == "invalid_topic"
