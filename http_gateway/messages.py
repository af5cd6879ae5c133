"""The message routes: /send, /receive, /ack, /nack, /extend (and their /{topic} forms).

Handlers read the request, hand typed values to the broker facade and render
the answer; parsing lives in `bodies`, JSON shapes in `render`. HTTP callers
are clients like any other: `Gateway.client` names them for the broker's
producer/consumer tracking.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable

from aiohttp import web

from broker.api import ReceiptResult
from broker.errors import ERRORS, BrokerError
from http_gateway import bodies, render
from http_gateway.coalesce import Placed
from http_gateway.settle import settle
from http_gateway.state import GATEWAY, Gateway

_JSON_SUFFIX = "+json"


def body_now(request: web.Request, gw: Gateway) -> bytes | None:
    """The whole body when it has all arrived with the headers (the usual small request),
    taken without awaiting; None while more is to come.

    Raises payload_too_large past `Limits.max_body_bytes`.
    """
    content = request.content
    if not content.is_eof():
        return None
    # The parsed body waits in the stream's chunk buffer. read_nowait() would also run
    # aiohttp's read flow control (resume_reading, which re-feeds the parser) on every
    # request, costing more than the rest of a small send; at EOF there is nothing to
    # resume, so the chunks are joined where they are (and dropped with the request).
    chunks = getattr(content, "_buffer", None)
    if type(chunks) is deque and not getattr(content, "_buffer_offset", 1):
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    else:
        data = content.read_nowait()
    if len(data) > gw.limits.max_body_bytes:
        raise BrokerError("payload_too_large", f"the body is {len(data)} bytes; the limit is "
                          f"{gw.limits.max_body_bytes}")
    return data


async def read_body(request: web.Request, gw: Gateway) -> bytes:
    """The whole body, refused with 413 past `Limits.max_body_bytes`."""
    length = request.content_length
    if length is not None and length > gw.limits.max_body_bytes:
        raise BrokerError("payload_too_large",
                          f"the body is {length} bytes; the limit is {gw.limits.max_body_bytes}")
    data = body_now(request, gw)
    if data is not None:
        return data
    if length is None:
        # Chunked: client_max_size (= max_body_bytes) makes read() refuse past the limit.
        return await request.read()
    try:
        return await request.content.readexactly(length)
    except asyncio.IncompleteReadError:
        raise BrokerError("bad_request", "the body ended before Content-Length") from None


async def _multipart(request: web.Request) -> dict[str, list[str]]:
    """A multipart form's fields as text (an uploaded file's content must be UTF-8)."""
    try:
        form = await request.post()
    except (ValueError, AssertionError, UnicodeDecodeError) as exc:
        raise BrokerError("bad_request", f"the multipart form cannot be parsed: {exc}") from None
    fields: dict[str, list[str]] = {}
    for name, value in form.items():
        if isinstance(value, web.FileField):
            try:
                text = value.file.read().decode("utf-8")
            except UnicodeDecodeError:
                raise BrokerError("bad_request", f"the uploaded {name!r} is not UTF-8 text; "
                                  "send binary data as a raw body") from None
        else:
            text = str(value)
        fields.setdefault(name, []).append(text)
    return fields


def _is_json(ctype: str) -> bool:
    return ctype == bodies.JSON_TYPE or ctype.endswith(_JSON_SUFFIX)


async def _send_body(request: web.Request, gw: Gateway) -> bodies.SendBody:
    """The general /send body: multipart, any JSON type, raw bodies, bodies still arriving."""
    headers = request.headers
    idem = headers.get("Idempotency-Key") or None
    ctype = request.content_type
    if ctype == bodies.MULTIPART_TYPE:
        return bodies.send_from_form(await _multipart(request), idem)
    body = await read_body(request, gw)
    if ctype == bodies.FORM_TYPE:
        return bodies.send_from_form_body(body, idem)
    if _is_json(ctype):
        return bodies.send_from_json(bodies.decode_json(body), idem, gw.limits)
    declared = ctype if "Content-Type" in headers else ""
    q = request.query
    return bodies.send_from_raw(body, declared, idem, q.get("key"), q.get("delay"))


async def send(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    topic = request.match_info.get("topic") or gw.config.default_topic
    headers = request.headers
    ctype = headers.get("Content-Type", "")
    # The two shapes the seed and the batch clients send, when the body came with the
    # headers: no Content-Type parse and no await before the broker's.
    form = ctype.startswith(bodies.FORM_TYPE)
    raw = body_now(request, gw) if form or ctype == bodies.JSON_TYPE else None
    idem = headers.get("Idempotency-Key") or None
    if raw is None:
        body = await _send_body(request, gw)
    elif form:
        lone = bodies.form_message(raw) if idem is None else None
        if lone is not None:  # the seed's `curl -d message=...`: nothing else to read
            value, text = lone
            return _sent(gw, text, False, await gw.coalescer.send(topic, value,
                                                                  gw.client(request)))
        body = bodies.send_from_form_body(raw, idem)
    else:
        body = bodies.send_from_json(bodies.decode_json(raw), idem, gw.limits)
    if body.plain_one:
        return _sent(gw, body.echo, body.echo_base64,
                     await gw.coalescer.send(topic, body.values[0], gw.client(request)))
    result = await gw.broker.send_columns(topic, body.values, gw.client(request), body.keys,
                                          body.headers, body.message_ids, body.delay_s)
    gw.counters.messages_in += result.count
    if body.batch:
        return render.body_response(render.sent_batch(result))
    return render.body_response(render.sent_one(body.echo, body.echo_base64, result))


def _sent(gw: Gateway, echo: object, echo_base64: bool, placed: Placed) -> web.Response:
    gw.counters.messages_in += 1
    return render.body_response(render.sent_placed(echo, echo_base64, *placed))


async def receive(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    topic = request.match_info.get("topic") or gw.config.default_topic
    p = bodies.receive_params(request.query, gw.config.default_group, gw.limits)
    client = gw.client(request)
    if p.wait_s > 0:
        if gw.long_polls >= gw.limits.max_long_polls:
            raise BrokerError("too_many_requests",
                              f"more than {gw.limits.max_long_polls} long polls are waiting; "
                              "retry, or poll with wait=0")
        gw.long_polls += 1
        try:
            got = await gw.broker.receive_columns(topic, p.group, client, p.max_messages,
                                                  p.wait_s, p.visibility_s, p.auto_ack)
        finally:
            gw.long_polls -= 1
    else:
        got = await gw.broker.receive_columns(topic, p.group, client, p.max_messages, 0.0,
                                              p.visibility_s, p.auto_ack)
    count = sum(len(b.values) for b in got)
    gw.counters.messages_out += count
    if p.auto_ack:
        gw.counters.acks += count
    return render.body_response(render.deliveries(topic, p.group, got))


async def _receipts_body(request: web.Request, gw: Gateway) -> bodies.ReceiptsBody:
    if request.headers.get("Content-Type") == bodies.JSON_TYPE:
        raw = body_now(request, gw)
        if raw is not None:  # the batch acks of consumers: no Content-Type parse, no await
            return bodies.receipts_from_json(bodies.decode_json(raw), gw.limits)
    ctype = request.content_type
    if ctype == bodies.MULTIPART_TYPE:
        return bodies.receipts_from_form(await _multipart(request), gw.limits)
    body = await read_body(request, gw)
    if _is_json(ctype):
        return bodies.receipts_from_json(bodies.decode_json(body), gw.limits)
    if ctype == bodies.FORM_TYPE or not body:
        return bodies.receipts_from_form(bodies.decode_form(body), gw.limits)
    raise BrokerError("bad_request",
                      "send receipts as a form (receipt=...) or JSON {\"receipts\": [...]}")


def _settled(results: list[ReceiptResult], single: bool) -> web.Response:
    """Per-receipt results; a lone failure, or a batch where none succeeded, is an error."""
    failed = [r for r in results if r.error is not None]
    return _settled_answer(results, failed, single)


def _settled_answer(results: list[ReceiptResult], failed: list[ReceiptResult],
                    single: bool) -> web.Response:
    if failed and (single or len(failed) == len(results)):
        first = failed[0]
        spec = ERRORS.get(first.error or "internal") or ERRORS["internal"]
        if single:
            raise BrokerError(spec.code, first.message or spec.description)
        doc = render.error_doc(spec.code, f"none of the {len(results)} receipts was settled; "
                                          "see results")
        doc["results"] = [render.receipt_result(r) for r in results]
        return render.json_response(doc, spec.status)
    return render.body_response(render.receipt_results(results))


async def ack(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    body = await _receipts_body(request, gw)
    client = gw.client(request)

    def call(receipts: list[str]) -> Awaitable[list[ReceiptResult]]:
        return gw.broker.ack(receipts, client)

    results = await settle(call, body.receipts)
    failed = [] if results is None else [r for r in results if r.error is not None]
    gw.counters.acks += len(body.receipts) - len(failed)
    if results is None or not failed:
        # The results are in receipt order: answer from the receipts as the client sent them.
        return render.body_response(render.settled(body.receipts))
    return _settled_answer(results, failed, body.single)


async def nack(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    body = await _receipts_body(request, gw)
    client = gw.client(request)

    def call(receipts: list[str]) -> Awaitable[list[ReceiptResult]]:
        return gw.broker.nack(receipts, client, body.delay_s)

    results = await settle(call, body.receipts)
    if results is None:
        gw.counters.nacks += len(body.receipts)
        return render.body_response(render.settled(body.receipts))
    failed = [r for r in results if r.error is not None]
    gw.counters.nacks += len(results) - len(failed)
    return _settled_answer(results, failed, body.single)


async def extend(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    body = await _receipts_body(request, gw)
    visibility_s = body.visibility_s
    if visibility_s is None:
        raise BrokerError("bad_request", "extend needs 'visibility' (seconds from now)")
    client = gw.client(request)

    def call(receipts: list[str]) -> Awaitable[list[ReceiptResult]]:
        return gw.broker.extend(receipts, client, visibility_s)

    results = await settle(call, body.receipts)
    if results is None:
        return render.body_response(render.settled(body.receipts))
    return _settled(results, body.single)
