"""Request parsing, pure: bodies and query strings to typed values, refusals as BrokerError."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import BrokerError
from http_gateway import bodies
from http_gateway.settings import Limits

LIMITS = Limits()


@given(st.text())
def test_form_message_round_trips_any_text(text: str) -> None:
    form = bodies.decode_form(urlencode({"message": text}).encode())
    body = bodies.send_from_form(form, None)
    assert body.echo == text
    assert body.values == [text.encode("utf-8", "surrogatepass")]
    assert (body.keys, body.headers, body.message_ids) == (None, None, None)


@given(st.lists(st.text(min_size=1), min_size=1, max_size=20))
def test_batch_keeps_entry_order_and_numbers_idempotency_ids(entries: list[str]) -> None:
    body = bodies.send_from_json({"messages": entries}, "k", LIMITS)
    assert body.batch
    assert [v.decode("utf-8", "surrogatepass") for v in body.values] == entries
    assert body.message_ids == [f"k#{i}" for i in range(len(entries))]
    assert (body.keys, body.headers) == (None, None)


def test_batch_of_objects_fills_only_the_columns_it_uses() -> None:
    body = bodies.send_from_json({"messages": ["a", {"message": "b", "key": "k"}]}, None, LIMITS)
    assert (body.values, body.keys, body.headers) == ([b"a", b"b"], [None, b"k"], None)
    assert body.message_ids is None


def test_json_single_message_with_key_headers_delay() -> None:
    body = bodies.send_from_json(
        {"message": "m", "key": "k", "headers": {"a": 1}, "delay": 2.5}, "id-1", LIMITS)
    assert (body.values, body.keys, body.headers, body.message_ids) == (
        [b"m"], [b"k"], [{"a": 1}], ["id-1"])
    assert body.delay_s == 2.5


@pytest.mark.parametrize("doc", [
    [], "text", {"nothing": 1}, {"messages": []}, {"messages": "x"}, {"message": None},
    {"messages": [{"key": "no message"}]}, {"message": "m", "headers": [1]},
    {"message": "m", "headers": {"nested": {"no": 1}}}, {"message": "m", "key": 5},
])
def test_malformed_json_sends_are_bad_requests(doc: object) -> None:
    with pytest.raises(BrokerError) as err:
        bodies.send_from_json(doc, None, LIMITS)
    assert err.value.code == "bad_request"


def test_non_json_body_is_a_bad_request() -> None:
    with pytest.raises(BrokerError, match="not valid JSON"):
        bodies.decode_json(b"\xff{")


def test_form_that_is_not_utf8_is_a_bad_request() -> None:
    with pytest.raises(BrokerError) as err:
        bodies.decode_form(b"message=%ff%fe")
    assert err.value.code == "bad_request"


def test_raw_text_and_binary_bodies() -> None:
    text = bodies.send_from_raw("héllo".encode(), "text/plain", None, "k", "1")
    assert (text.echo, text.echo_base64, text.headers) == ("héllo", False, None)
    assert (text.keys, text.delay_s) == ([b"k"], 1.0)
    binary = bodies.send_from_raw(b"\x00\x01", "application/octet-stream", None, None, None)
    assert binary.echo_base64
    assert binary.headers == [{"content-type": "application/octet-stream"}]


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_wait_is_accepted_only_within_bounds(value: float) -> None:
    query = {"wait": repr(value)}
    if 0.0 <= value <= LIMITS.max_wait_s:
        assert bodies.receive_params(query, "g", LIMITS).wait_s == value
    else:
        with pytest.raises(BrokerError) as err:
            bodies.receive_params(query, "g", LIMITS)
        assert err.value.code == "invalid_argument"


def test_receive_defaults() -> None:
    p = bodies.receive_params({}, "default", LIMITS)
    assert (p.group, p.max_messages, p.wait_s, p.visibility_s, p.auto_ack) == (
        "default", 1, 0.0, None, False)
    p = bodies.receive_params({"visibility": "0.25", "auto_ack": "yes", "max": "7"}, "d", LIMITS)
    assert (p.visibility_s, p.auto_ack, p.max_messages) == (0.25, True, 7)


def test_receipts_bodies() -> None:
    one = bodies.receipts_from_form({"receipt": ["r1"], "delay": ["3"]}, LIMITS)
    assert (one.receipts, one.single, one.delay_s) == (["r1"], True, 3.0)
    many = bodies.receipts_from_json({"receipts": ["a", "b"], "visibility": 9}, LIMITS)
    assert (many.receipts, many.single, many.visibility_s) == (["a", "b"], False, 9.0)
    bad: list[object] = [{"receipts": [1]}, {"receipts": []}, {}, ["a"]]
    for doc in bad:
        with pytest.raises(BrokerError):
            bodies.receipts_from_json(doc, LIMITS)
    with pytest.raises(BrokerError) as err:
        bodies.receipts_from_json({"receipts": ["r"] * (LIMITS.max_receive + 1)}, LIMITS)
    assert err.value.code == "payload_too_large"


def test_json_values_other_than_strings_are_stored_as_json() -> None:
    body = bodies.send_from_json({"message": {"a": [1, 2]}}, None, LIMITS)
    assert json.loads(body.values[0]) == {"a": [1, 2]}


def test_batch_with_a_lone_surrogate_takes_the_general_path() -> None:
    body = bodies.send_from_json({"messages": ["ok", "\ud800"]}, None, LIMITS)
    assert body.values == [b"ok", "\ud800".encode("utf-8", "surrogatepass")]
    with pytest.raises(BrokerError):
        bodies.send_from_json({"messages": ["ok", 5]}, None, LIMITS)


form_bodies = st.one_of(
    st.text().map(lambda t: urlencode({"message": t}).encode()),
    st.text().map(lambda t: b"message=" + t.encode().replace(b"&", b"")),
    st.dictionaries(st.sampled_from(["message", "key", "delay", "other"]),
                    st.text("ab+%2 =é"), min_size=1).map(lambda d: urlencode(d).encode()),
    st.binary(max_size=16).map(lambda b: b"message=" + b.replace(b"&", b"")),
)


def _outcome(parse: Callable[[], bodies.SendBody]) -> bodies.SendBody | str:
    """What a parse answers: the body, or the code of its refusal."""
    try:
        return parse()
    except BrokerError as exc:
        return exc.code


@given(form_bodies, st.none() | st.just("idem-1"))
def test_form_body_fast_path_answers_as_the_field_table(body: bytes, idem: str | None) -> None:
    general = _outcome(lambda: bodies.send_from_form(bodies.decode_form(body), idem))
    assert _outcome(lambda: bodies.send_from_form_body(body, idem)) == general


def test_form_body_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(BrokerError) as caught:
        bodies.send_from_form_body(b"message=%ff%fe", None)
    assert caught.value.code == "bad_request"
