"""The message routes: /send, /receive, /ack, /nack, /extend (and their /{topic} forms).

Handlers read the request, hand typed values to the broker facade and render
the answer; parsing lives in `bodies`, JSON shapes in `render`. HTTP callers
are clients like any other: `Gateway.client` names them for the broker's
producer/consumer tracking.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from broker.api import ReceiptResult
from broker.errors import ERRORS, BrokerError
from http_gateway import bodies, render
from http_gateway.state import GATEWAY, Gateway

_JSON_SUFFIX = "+json"


async def read_body(request: web.Request, gw: Gateway) -> bytes:
    """The whole body, refused with 413 past `Limits.max_body_bytes`."""
    length = request.content_length
    if length is None:
        # Chunked: client_max_size (= max_body_bytes) makes read() refuse past the limit.
        return await request.read()
    if length > gw.limits.max_body_bytes:
        raise BrokerError("payload_too_large",
                          f"the body is {length} bytes; the limit is {gw.limits.max_body_bytes}")
    # A small body has usually arrived with the headers: take it without awaiting
    # (request.read() costs two awaits and a copy on every /send).
    content = request.content
    data = content.read_nowait(length)
    if len(data) < length:
        try:
            data += await content.readexactly(length - len(data))
        except asyncio.IncompleteReadError:
            raise BrokerError("bad_request", "the body ended before Content-Length") from None
    return data


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
    ctype = request.content_type
    idem = request.headers.get("Idempotency-Key") or None
    if ctype == bodies.MULTIPART_TYPE:
        return bodies.send_from_form(await _multipart(request), idem)
    body = await read_body(request, gw)
    if ctype == bodies.FORM_TYPE:
        return bodies.send_from_form(bodies.decode_form(body), idem)
    if _is_json(ctype):
        return bodies.send_from_json(bodies.decode_json(body), idem, gw.limits)
    declared = ctype if "Content-Type" in request.headers else ""
    q = request.query
    return bodies.send_from_raw(body, declared, idem, q.get("key"), q.get("delay"))


async def send(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    topic = request.match_info.get("topic") or gw.config.default_topic
    body = await _send_body(request, gw)
    result = await gw.broker.send(topic, body.messages, gw.client(request), body.delay_s)
    gw.counters.messages_in += len(result.outcomes)
    if body.batch:
        return render.body_response(render.sent_batch(result))
    return render.body_response(render.sent_one(body.echo, body.echo_base64, result))


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
            got = await gw.broker.receive(topic, p.group, client, p.max_messages, p.wait_s,
                                          p.visibility_s, p.auto_ack)
        finally:
            gw.long_polls -= 1
    else:
        got = await gw.broker.receive(topic, p.group, client, p.max_messages, 0.0,
                                      p.visibility_s, p.auto_ack)
    gw.counters.messages_out += len(got)
    if p.auto_ack:
        gw.counters.acks += len(got)
    return render.body_response(render.deliveries(topic, p.group, got))


async def _receipts_body(request: web.Request, gw: Gateway) -> bodies.ReceiptsBody:
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
    results = await gw.broker.ack(body.receipts, gw.client(request))
    gw.counters.acks += sum(1 for r in results if r.error is None)
    return _settled(results, body.single)


async def nack(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    body = await _receipts_body(request, gw)
    results = await gw.broker.nack(body.receipts, gw.client(request), body.delay_s)
    gw.counters.nacks += sum(1 for r in results if r.error is None)
    return _settled(results, body.single)


async def extend(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    body = await _receipts_body(request, gw)
    if body.visibility_s is None:
        raise BrokerError("bad_request", "extend needs 'visibility' (seconds from now)")
    results = await gw.broker.extend(body.receipts, gw.client(request), body.visibility_s)
    return _settled(results, body.single)
