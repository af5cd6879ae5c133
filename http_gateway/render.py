"""JSON at the HTTP edge: the broker's frozen values turned into the documents of
docs/http-api.md, and the one JSON response constructor.

Pure functions; the shapes here are the contract the dashboard's API types mirror.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from itertools import repeat
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

from aiohttp import web

from broker.api import (
    BatchSendResult,
    ClientInfo,
    DeadLetter,
    DeliveryBatch,
    GroupInfo,
    Headers,
    LeaseInfo,
    ReceiptResult,
    Snapshot,
    StoredMessage,
    TopicInfo,
)
from broker.core.receipts import SEP, receipt_prefix
from broker.errors import ERRORS

# ensure_ascii: always valid UTF-8 out, even for text holding lone surrogates.
_encoder = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False,
                            default=lambda o: o.decode("utf-8", "replace")
                            if isinstance(o, bytes) else repr(o))
dumps = _encoder.encode


def json_response(doc: Any, status: int = 200) -> web.Response:
    """A JSON answer; non-finite floats are refused (JSON has none), bytes become text."""
    return web.Response(body=dumps(doc).encode("ascii"), status=status,
                        content_type="application/json")


def body_response(body: bytes, status: int = 200) -> web.Response:
    """A JSON answer already serialised (the hot paths build their text directly)."""
    return web.Response(body=body, status=status, content_type="application/json")


def error_doc(code: str, message: str) -> dict[str, Any]:
    spec = ERRORS.get(code) or ERRORS["internal"]
    return {"error": {"code": code, "message": message, "retriable": spec.retriable}}


def _text_or_b64(value: bytes, headers: dict[str, Any] | None, doc: dict[str, Any]) -> None:
    ctype = headers.get("content-type") if headers else None
    if ctype is None or (isinstance(ctype, str) and
                         (ctype.startswith("text/") or ctype.startswith("application/json"))):
        try:
            doc["message"] = value.decode("utf-8")
            return
        except UnicodeDecodeError:
            pass
    doc["message"] = base64.b64encode(value).decode("ascii")
    doc["encoding"] = "base64"


def _key(key: bytes | None) -> str | None:
    if key is None:
        return None
    # Keys are sent as text; a binary key from a native client is shown lossily.
    return key.decode("utf-8", "replace")


def stored_message(m: StoredMessage) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    _text_or_b64(m.value, m.headers, doc)
    doc.update(topic=m.topic, partition=m.partition, offset=m.offset, key=_key(m.key),
               headers=m.headers, timestamp=m.timestamp_ms)
    return doc


def receipt_result(r: ReceiptResult) -> dict[str, Any]:
    doc: dict[str, Any] = {"receipt": r.receipt, "ok": r.error is None}
    if r.error is not None:
        spec = ERRORS.get(r.error) or ERRORS["internal"]
        doc["error"] = {"code": r.error, "message": r.message or spec.description}
    if r.deadline is not None:
        doc["deadline"] = r.deadline
    return doc


def group(g: GroupInfo) -> dict[str, Any]:
    return {
        "topic": g.topic, "name": g.name, "ready": g.ready, "in_flight": g.in_flight,
        "dead_lettered": g.dead_lettered, "lag": g.lag,
        "oldest_unacked_age_s": g.oldest_unacked_age_s,
        "ack_floor": {str(p): o for p, o in g.ack_floor.items()},
        "consumers": g.consumers, "last_active": g.last_active, "rate_out": g.rate_out,
        "redeliveries": g.redeliveries,
    }


def topic(t: TopicInfo) -> dict[str, Any]:
    return {
        "name": t.name, "partitions": t.partitions, "messages": t.messages,
        "messages_in_queue": t.messages_in_queue, "bytes": t.bytes, "in_flight": t.in_flight,
        "dead_lettered": t.dead_lettered, "oldest_timestamp_ms": t.oldest_timestamp_ms,
        "rate_in": t.rate_in, "rate_out": t.rate_out, "start_offsets": list(t.start_offsets),
        "end_offsets": list(t.end_offsets), "config": t.config.to_dict(),
        "damaged": list(t.damaged), "groups": [group(g) for g in t.groups],
    }


def client(c: ClientInfo) -> dict[str, Any]:
    return {
        "client_id": c.client_id, "protocol": c.protocol, "address": c.address,
        "roles": list(c.roles), "first_seen": c.first_seen, "last_seen": c.last_seen,
        "active": c.active, "messages_in": c.messages_in, "messages_out": c.messages_out,
        "in_flight": c.in_flight,
    }


def snapshot(s: Snapshot) -> dict[str, Any]:
    return {
        "timestamp": s.timestamp,
        "messages_in_queue": s.messages_in_queue, "ready": s.ready, "in_flight": s.in_flight,
        "dead_lettered": s.dead_lettered,
        "active_producers": s.active_producers, "active_consumers": s.active_consumers,
        "rates": {"in": s.rate_in, "out": s.rate_out, "acks": s.rate_acks,
                  "redeliveries": s.rate_redeliveries},
        "oldest_unacked_age_s": s.oldest_unacked_age_s,
        "topics": [topic(t) for t in s.topics],
        "clients": [client(c) for c in s.clients],
    }


def lease(x: LeaseInfo) -> dict[str, Any]:
    return {"partition": x.partition, "offset": x.offset, "consumer": x.consumer,
            "delivery_count": x.delivery_count, "deadline": x.deadline}


def dead_letter(d: DeadLetter) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": d.id, "topic": d.topic, "group": d.group, "partition": d.partition,
        "offset": d.offset, "reason": d.reason, "delivery_count": d.delivery_count,
        "dead_lettered_at": d.dead_lettered_at, "redrives": d.redrives,
        "history": [{"attempt": h.attempt, "consumer": h.consumer,
                     "lease_start": h.lease_start, "outcome": h.outcome} for h in d.history],
    }
    if d.value is None:
        doc["message"] = None
    else:
        _text_or_b64(d.value, None, doc)
    return doc


# -- hot paths: JSON text built directly, without intermediate dicts. Each must produce
# exactly what `dumps` would for the equivalent dict (tests compare them).

_BOOL = ("false", "true")


def _json_text(value: bytes, headers: dict[str, Any] | None) -> str:
    """`"message":...` plus `"encoding":"base64"` when the payload is not text."""
    ctype = headers.get("content-type") if headers else None
    if ctype is None or (isinstance(ctype, str) and
                         (ctype.startswith("text/") or ctype.startswith("application/json"))):
        try:
            return '"message":' + _quote(value.decode("utf-8"))
        except UnicodeDecodeError:
            pass
    return '"message":"' + base64.b64encode(value).decode("ascii") + '","encoding":"base64"'


def sent_one(echo: Any, echo_base64: bool, result: BatchSendResult) -> bytes:
    """The answer to a single send: status, the message echoed, where it landed."""
    if result.runs:
        run = result.runs[0]
        partition, offset, duplicate = run.partition, run.base_offset, False
    else:
        o = (result.outcomes or [])[0]
        partition, offset, duplicate = o.partition, o.offset, o.duplicate
    return sent_placed(echo, echo_base64, result.topic, partition, offset, result.created,
                       duplicate)


def sent_placed(echo: Any, echo_base64: bool, topic: str, partition: int, offset: int,
                created: bool, duplicate: bool = False) -> bytes:
    """`sent_one` from the parts of the answer."""
    message = _quote(echo) if isinstance(echo, str) else dumps(echo)
    encoding = ',"encoding":"base64"' if echo_base64 else ""
    return (f'{{"status":"Message sent","message":{message}{encoding},'
            f'"topic":{_quote(topic)},"partition":{partition},"offset":{offset},'
            f'"created":{_BOOL[created]},"duplicate":{_BOOL[duplicate]}}}').encode()


def sent_batch(result: BatchSendResult) -> bytes:
    """The answer to a batch: per-entry partition, offset and duplicate flag, in order."""
    partitions: list[str] = []
    offsets: list[str] = []
    results: list[str] = []
    if result.runs is not None:
        # Runs of consecutive offsets: joined in C, no per-message formatting.
        for run in result.runs:
            if not run.count:
                continue
            p = str(run.partition)
            offs = list(map(str, range(run.base_offset, run.base_offset + run.count)))
            partitions.append(",".join([p] * run.count))
            offsets.append(",".join(offs))
            between = f',"duplicate":false}},{{"partition":{p},"offset":'
            results.append(f'{{"partition":{p},"offset":{between.join(offs)},'
                           f'"duplicate":false}}')
        count = sum(run.count for run in result.runs)
    else:
        outcomes = result.outcomes or []
        partitions = [str(o.partition) for o in outcomes]
        offsets = [str(o.offset) for o in outcomes]
        results = [f'{{"partition":{o.partition},"offset":{o.offset},'
                   f'"duplicate":{_BOOL[o.duplicate]}}}' for o in outcomes]
        count = len(outcomes)
    return (f'{{"status":"Messages sent","topic":{_quote(result.topic)},'
            f'"count":{count},"created":{_BOOL[result.created]},'
            f'"partition":[{",".join(partitions)}],"offset":[{",".join(offsets)}],'
            f'"results":[{",".join(results)}]}}').encode()


def _open_quoted(text: str) -> str:
    """`text` as a JSON string without its closing quote (a prefix to append to)."""
    return _quote(text)[:-1]


# Bytes that JSON text cannot carry between quotes as they are (json's ensure_ascii
# escapes these and everything past 0x7f): control characters, '"', '\\' and DEL.
_ESCAPED = bytes(range(0x20)) + b'"\\\x7f'


def _plain(values: list[bytes]) -> bool:
    """True when every value is ASCII that JSON quotes unchanged: then each value goes
    between two '"' as it is. Two C passes over all the values, nothing per message."""
    joined = b"".join(values)
    return joined.isascii() and len(joined.translate(None, _ESCAPED)) == len(joined)


def _plain_text(text: str) -> bool:
    """`_plain` for text."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def _plain_run(b: DeliveryBatch, receipt_head: str, receipt_tail: str, common: str,
               after: str) -> bytes:
    """The messages of a lease whose values are all `_plain`, as comma-separated JSON
    objects: one bytes join over the values and the offsets, no formatting per message."""
    head = b'{"message":"'
    mid = f'","receipt":{receipt_head}'.encode()
    tail = f"{receipt_tail},{common}".encode()
    end = after.encode()
    offsets = [b"%d" % off for off in range(b.offset, b.offset + len(b.values))]
    return b",".join(map(b"".join, zip(repeat(head), b.values, repeat(mid), offsets,
                                       repeat(tail), offsets, repeat(end))))


def deliveries(topic: str, group: str, batches: Sequence[DeliveryBatch]) -> bytes:
    """The answer to a receive: `{"topic", "group", "messages": [Message...]}`, rendered
    straight from the broker's columns (one receipt per message, derived from the lease)."""
    runs: list[bytes] = []
    for b in batches:
        n = len(b.values)
        if not n:
            continue
        quoted_topic = _quote(b.topic)
        # Receipts are prefix + offset + suffix (broker.core.receipts): quote the parts once.
        receipt_head = _open_quoted(receipt_prefix(b.incarnation, b.lease_id, b.partition))
        receipt_tail = _quote(f"{SEP}{b.topic}{SEP}{b.group}")[1:]
        keys: list[bytes | None] = b.keys or [None] * n
        headers: list[Headers | None] = b.headers or [None] * n
        ts = b.timestamps
        counts = b.delivery_counts
        # Everything after the offset that is the same for the whole lease.
        common = f'"topic":{quoted_topic},"partition":{b.partition},"offset":'
        tail_same = (f',"deadline":{float(b.deadline)!r}}}')
        parts: list[str]
        if (b.keys is None and b.headers is None and isinstance(ts, int)
                and isinstance(counts, int)):
            # The common lease: text messages, first delivery, one append's timestamp.
            after = (f',"delivery_count":{counts},"key":null,"headers":null,'
                     f'"timestamp":{ts}{tail_same}')
            if _plain(b.values):
                runs.append(_plain_run(b, receipt_head, receipt_tail, common, after))
                continue
            try:
                quoted = [_quote(v.decode("utf-8")) for v in b.values]
            except UnicodeDecodeError:
                pass  # binary payloads: the general path below encodes them
            else:
                parts = [f'{{"message":{m},"receipt":{receipt_head}{off}{receipt_tail},'
                         f'{common}{off}{after}'
                         for m, off in zip(quoted, range(b.offset, b.offset + n), strict=True)]
                runs.append(",".join(parts).encode())
                continue
        parts = []
        for i, value in enumerate(b.values):
            off = b.offset + i
            h = headers[i]
            if h is None:
                try:
                    message = '"message":' + _quote(value.decode("utf-8"))
                except UnicodeDecodeError:
                    message = _json_text(value, None)
                headers_text = "null"
            else:
                message = _json_text(value, h)
                headers_text = dumps(h)
            k = keys[i]
            key = "null" if k is None else _quote(k.decode("utf-8", "replace"))
            t = ts if isinstance(ts, int) else ts[i]
            c = counts if isinstance(counts, int) else counts[i]
            parts.append(
                f'{{{message},"receipt":{receipt_head}{off}{receipt_tail},{common}{off},'
                f'"delivery_count":{c},"key":{key},"headers":{headers_text},'
                f'"timestamp":{t}{tail_same}')
        runs.append(",".join(parts).encode())
    head = f'{{"topic":{_quote(topic)},"group":{_quote(group)},"messages":['.encode()
    return b"".join((head, b",".join(runs), b"]}"))


def receipt_results(results: Sequence[ReceiptResult]) -> bytes:
    """`{"results": [...]}` for ack/nack/extend."""
    if all(r.error is None and r.deadline is None for r in results):
        return settled([r.receipt for r in results])
    parts: list[str] = []
    for r in results:
        if r.error is None and r.deadline is None:
            parts.append(f'{{"receipt":{_quote(r.receipt)},"ok":true}}')
        else:
            parts.append(dumps(receipt_result(r)))
    return f'{{"results":[{",".join(parts)}]}}'.encode()


_OK_BETWEEN = '","ok":true},{"receipt":"'


def settled(receipts: Sequence[str]) -> bytes:
    """`receipt_results` when every receipt succeeded (no deadline): one join when no
    receipt needs an escape (those the broker made never do)."""
    if not receipts:
        return b'{"results":[]}'
    if _plain_text("".join(receipts)):
        joined = _OK_BETWEEN.join(receipts)
        return f'{{"results":[{{"receipt":"{joined}","ok":true}}]}}'.encode()
    parts = [f'{{"receipt":{_quote(r)},"ok":true}}' for r in receipts]
    return f'{{"results":[{",".join(parts)}]}}'.encode()
