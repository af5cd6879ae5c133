"""Request parsing for the message routes: bodies and query strings to typed values.

Pure and synchronous: bytes and strings in, frozen values out; every refusal is a
`BrokerError` (`bad_request`, `invalid_argument`, `payload_too_large`) naming the
field. The handlers read the body; this module never touches a request.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from broker.api import Headers
from broker.errors import BrokerError
from http_gateway.settings import Limits

FORM_TYPE = "application/x-www-form-urlencoded"
MULTIPART_TYPE = "multipart/form-data"
JSON_TYPE = "application/json"
# Fields in one urlencoded form: /send and /ack use a handful.
MAX_FORM_FIELDS = 10_000
# Headers per message: they are stored with every record and shown by every receive.
MAX_HEADERS = 64
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True, slots=True)
class SendBody:
    """What one /send asks for, as the columns of `BrokerAPI.send_columns`, plus what to echo.

    An optional column is None when no message has an entry in it.
    """

    values: list[bytes]
    keys: list[bytes | None] | None
    headers: list[Headers | None] | None
    message_ids: list[str | None] | None
    echo: Any  # the single message as sent (str, JSON value, or base64 text); None for batches
    echo_base64: bool
    batch: bool
    delay_s: float

    @property
    def plain_one(self) -> bool:
        """One message with no key, headers, idempotency key or delay (the seed's send)."""
        return (not self.batch and self.keys is None and self.headers is None
                and self.message_ids is None and self.delay_s == 0)


def _one(value: bytes, key: bytes | None, headers: Headers | None, message_id: str | None,
         echo: Any, echo_base64: bool, delay_s: float) -> SendBody:
    return SendBody([value], None if key is None else [key],
                    None if headers is None else [headers],
                    None if message_id is None else [message_id], echo, echo_base64, False,
                    delay_s)


@dataclass(frozen=True, slots=True)
class ReceiveParams:
    group: str
    max_messages: int
    wait_s: float
    visibility_s: float | None
    auto_ack: bool


@dataclass(frozen=True, slots=True)
class ReceiptsBody:
    receipts: list[str]
    single: bool  # one receipt: a failure is answered with its own status
    delay_s: float
    visibility_s: float | None


# -- scalars


def parse_number(name: str, raw: Any, lo: float, hi: float, *, lo_open: bool = False) -> float:
    """A finite number in [lo, hi] (or (lo, hi] when lo_open); raise invalid_argument."""
    if isinstance(raw, bool):
        raise BrokerError("invalid_argument", f"{name} must be a number")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise BrokerError("invalid_argument", f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value > hi or value < lo or (lo_open and value == lo):
        low = f"more than {lo:g}" if lo_open else f"at least {lo:g}"
        raise BrokerError("invalid_argument", f"{name} must be {low} and at most {hi:g}")
    return value


def parse_int(name: str, raw: Any, lo: int, hi: int) -> int:
    """An integer in [lo, hi]; raise invalid_argument."""
    if isinstance(raw, bool):
        raise BrokerError("invalid_argument", f"{name} must be an integer")
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise BrokerError("invalid_argument", f"{name} must be an integer, got {raw!r}") from None
    if isinstance(raw, float) and raw != value:
        raise BrokerError("invalid_argument", f"{name} must be an integer, got {raw!r}")
    if not lo <= value <= hi:
        raise BrokerError("invalid_argument", f"{name} must be between {lo} and {hi}")
    return value


def parse_bool(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise BrokerError("invalid_argument", f"{name} must be true or false, got {raw!r}")


def parse_delay(raw: Any) -> float:
    # The broker bounds the delay (900 s); here only the shape is checked.
    return 0.0 if raw is None or raw == "" else parse_number("delay", raw, 0.0, math.inf)


# -- bodies


def decode_json(body: bytes) -> Any:
    """The JSON document of a body; raise bad_request when it is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BrokerError("bad_request", f"the body is not valid JSON: {exc}") from None


def _form_bytes(raw: bytes) -> bytes:
    if b"+" in raw:
        raw = raw.replace(b"+", b" ")
    if b"%" in raw:
        raw = unquote_to_bytes(raw)
    return raw


def _form_text(raw: bytes) -> str:
    try:
        return _form_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise BrokerError("bad_request", "the form is not UTF-8") from None


def decode_form(body: bytes) -> dict[str, list[str]]:
    """An urlencoded form as name -> values; raise bad_request when it is not UTF-8.

    Hand-rolled rather than urllib's parse_qsl: this is on every form /send, and the
    common body (`message=...`) needs one split and at most one unquote.
    """
    if body.count(b"&") >= MAX_FORM_FIELDS:
        raise BrokerError("bad_request", f"the form has more than {MAX_FORM_FIELDS} fields")
    out: dict[str, list[str]] = {}
    for pair in body.split(b"&"):
        if not pair:
            continue
        name, _, value = pair.partition(b"=")
        key = _form_text(name)
        text = _form_text(value)
        values = out.get(key)
        if values is None:
            out[key] = [text]
        else:
            values.append(text)
    return out


def _text_bytes(name: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise BrokerError("bad_request", f"{name} must be a string")
    return value.encode("utf-8", "surrogatepass")


def _header_value(name: str, value: Any) -> Any:
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        if not -(2**63) <= value < 2**64:
            raise BrokerError("invalid_argument", f"header {name!r}: the integer is out of range")
        return value
    if isinstance(value, str):
        _utf8(f"header {name!r}", value)
        return value
    raise BrokerError("bad_request",
                      f"header {name!r} must be a string, number, boolean or null")


def _utf8(name: str, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BrokerError("bad_request", f"{name} is not valid Unicode text") from None


def _headers(value: Any) -> dict[str, Any] | None:
    """Flat headers: string names, scalar values (they cross the native protocol too)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BrokerError("bad_request", "headers must be an object")
    if len(value) > MAX_HEADERS:
        raise BrokerError("invalid_argument", f"at most {MAX_HEADERS} headers per message")
    for name, item in value.items():
        _utf8("a header name", name)
        _header_value(name, item)
    return value


def _message_value(name: str, value: Any) -> bytes:
    """A JSON `message`: strings are stored as their UTF-8 text, other JSON values as JSON."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if value is None:
        raise BrokerError("bad_request", f"{name} is required")
    return json.dumps(value, separators=(",", ":")).encode()


def _entry(name: str, entry: Any) -> tuple[bytes, bytes | None, Headers | None]:
    """(value, key, headers) of one JSON message: a string, or an object with 'message'."""
    if isinstance(entry, str):
        return entry.encode("utf-8", "surrogatepass"), None, None
    if not isinstance(entry, dict) or "message" not in entry:
        raise BrokerError("bad_request", f"{name} must be a string or an object with 'message'")
    key = entry.get("key")
    return (_message_value(f"{name}.message", entry["message"]),
            None if key is None else _text_bytes(f"{name}.key", key),
            _headers(entry.get("headers")))


def _batch(entries: list[Any], idempotency_key: str | None, delay: float) -> SendBody:
    """The batch as columns; entry i gets message id `<Idempotency-Key>#i`."""
    ids: list[str | None] | None = None
    if idempotency_key is not None:
        ids = [f"{idempotency_key}#{i}" for i in range(len(entries))]
    try:  # the common batch: plain strings, no per-entry key or headers
        values = list(map(str.encode, entries))
        return SendBody(values, None, None, ids, None, False, True, delay)
    except (TypeError, UnicodeEncodeError):
        pass  # an object entry, a non-string or a lone surrogate: the general path
    values = []
    keys: list[bytes | None] = []
    headers: list[Headers | None] = []
    for i, e in enumerate(entries):
        value, key, hdrs = _entry(f"messages[{i}]", e)
        values.append(value)
        keys.append(key)
        headers.append(hdrs)
    return SendBody(values, keys if any(k is not None for k in keys) else None,
                    headers if any(h is not None for h in headers) else None, ids, None, False,
                    True, delay)


def send_from_json(doc: Any, idempotency_key: str | None, limits: Limits) -> SendBody:
    """A single `{"message": ...}` or a batch `{"messages": [...]}`."""
    if not isinstance(doc, dict):
        raise BrokerError("bad_request",
                          "the JSON body must be an object with 'message' or 'messages'")
    delay = parse_delay(doc.get("delay"))
    if "messages" in doc:
        entries = doc["messages"]
        if not isinstance(entries, list) or not entries:
            raise BrokerError("bad_request", "messages must be a non-empty list")
        if len(entries) > limits.max_batch:
            raise BrokerError(
                "payload_too_large",
                f"a batch holds at most {limits.max_batch} messages, got {len(entries)}")
        return _batch(entries, idempotency_key, delay)
    if "message" not in doc:
        raise BrokerError("bad_request", "the JSON body needs 'message' or 'messages'")
    value, key, headers = _entry("body", doc)
    return _one(value, key, headers, idempotency_key, doc["message"], False, delay)


def send_from_form(form: Mapping[str, Sequence[str]], idempotency_key: str | None) -> SendBody:
    """Form fields `message` (required), `key`, `delay`."""
    values = form.get("message")
    if not values:
        raise BrokerError("bad_request", "the form needs a 'message' field")
    text = values[0]
    keys = form.get("key")
    delays = form.get("delay")
    return _one(text.encode(), keys[0].encode() if keys else None, None, idempotency_key, text,
                False, parse_delay(delays[0]) if delays else 0.0)


_MESSAGE_FIELD = b"message="


def form_message(body: bytes) -> tuple[bytes, str] | None:
    """The seed's lone `message=...` field (every `curl -d message=...`) as (the value to
    store, its text), taken without building the field table: one unquote, one UTF-8
    check, and the unquoted bytes are stored as they are. None for any other form.

    Raises bad_request when the value is not UTF-8.
    """
    if not body.startswith(_MESSAGE_FIELD) or b"&" in body:
        return None
    value = _form_bytes(body[len(_MESSAGE_FIELD):])
    try:
        return value, value.decode("utf-8")
    except UnicodeDecodeError:
        raise BrokerError("bad_request", "the form is not UTF-8") from None


def send_from_form_body(body: bytes, idempotency_key: str | None) -> SendBody:
    """An urlencoded /send body, as `send_from_form(decode_form(body), ...)` answers it.
    Raises as `decode_form` and `send_from_form` do."""
    lone = form_message(body)
    if lone is None:
        return send_from_form(decode_form(body), idempotency_key)
    value, text = lone
    return SendBody([value], None, None, None if idempotency_key is None else [idempotency_key],
                    text, False, False, 0.0)


def send_from_raw(body: bytes, content_type: str, idempotency_key: str | None,
                  key: str | None, delay: str | None) -> SendBody:
    """A raw body: text/* is stored as sent; other types as bytes with a content-type header.

    `key` and `delay` come from the query string here.
    """
    headers: Headers | None = None
    textual = content_type.startswith("text/")
    if content_type and not textual:
        headers = {"content-type": content_type}
    echo: str
    b64 = False
    if textual:
        echo = body.decode("utf-8", "replace")
    else:
        echo = base64.b64encode(body).decode("ascii")
        b64 = True
    return _one(body, None if key is None else key.encode("utf-8", "surrogatepass"), headers,
                idempotency_key, echo, b64, parse_delay(delay))


def receive_params(query: Mapping[str, str], default_group: str, limits: Limits) -> ReceiveParams:
    """group, max, wait, visibility, auto_ack from the query string."""
    get = query.get
    raw_max = get("max")
    raw_wait = get("wait")
    raw_vis = get("visibility")
    raw_auto = get("auto_ack")
    return ReceiveParams(
        get("group") or default_group,
        1 if raw_max is None else parse_int("max", raw_max, 1, limits.max_receive),
        0.0 if raw_wait is None else parse_number("wait", raw_wait, 0.0, limits.max_wait_s),
        None if raw_vis is None else parse_number("visibility", raw_vis, 0.0,
                                                  limits.max_visibility_s, lo_open=True),
        False if raw_auto is None else parse_bool("auto_ack", raw_auto),
    )


def receipts_from_json(doc: Any, limits: Limits) -> ReceiptsBody:
    """`{"receipt": str}` or `{"receipts": [str, ...]}`, plus `delay` / `visibility`."""
    if not isinstance(doc, dict):
        raise BrokerError("bad_request", "the JSON body must be an object with 'receipts'")
    if "receipts" in doc:
        receipts = doc["receipts"]
        if not isinstance(receipts, list) or not {type(r) for r in receipts} <= {str}:
            raise BrokerError("bad_request", "receipts must be a list of strings")
        single = False
    elif isinstance(doc.get("receipt"), str):
        receipts = [doc["receipt"]]
        single = True
    else:
        raise BrokerError("bad_request", "the body needs 'receipts' (a list) or 'receipt'")
    return _receipts(receipts, single, doc.get("delay"), doc.get("visibility"), limits)


def receipts_from_form(form: Mapping[str, Sequence[str]], limits: Limits) -> ReceiptsBody:
    """One or more `receipt` fields, plus `delay` / `visibility`."""
    receipts = list(form.get("receipt") or ())
    if not receipts:
        raise BrokerError("bad_request", "the form needs a 'receipt' field")
    delay = form.get("delay")
    vis = form.get("visibility")
    return _receipts(receipts, len(receipts) == 1, delay[0] if delay else None,
                     vis[0] if vis else None, limits)


def _receipts(receipts: list[str], single: bool, delay: Any, visibility: Any,
              limits: Limits) -> ReceiptsBody:
    if not receipts:
        raise BrokerError("bad_request", "receipts must not be empty")
    if len(receipts) > limits.max_receive:
        raise BrokerError("payload_too_large",
                          f"at most {limits.max_receive} receipts per request, got {len(receipts)}")
    vis = None if visibility is None or visibility == "" else parse_number(
        "visibility", visibility, 0.0, limits.max_visibility_s, lo_open=True)
    return ReceiptsBody(receipts, single, parse_delay(delay), vis)
