"""The admin routes: topics, groups (lag, leases, seek, delete), browse, dead letters, redrive.

Thin: parse, call the broker facade, render. Every bound comes from `Limits`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from aiohttp import web

from broker.api import TopicConfig
from broker.errors import BrokerError
from http_gateway import bodies, render
from http_gateway.guard import authorize_topic
from http_gateway.messages import read_body
from http_gateway.state import GATEWAY, Gateway

_TOPIC_FIELDS = {f.name for f in dataclasses.fields(TopicConfig)}


async def _json_object(request: web.Request, gw: Gateway, *, empty_ok: bool = True
                       ) -> dict[str, Any]:
    body = await read_body(request, gw)
    if not body.strip():
        if empty_ok:
            return {}
        raise BrokerError("bad_request", "a JSON object body is required")
    doc = bodies.decode_json(body)
    if not isinstance(doc, dict):
        raise BrokerError("bad_request", "the body must be a JSON object")
    return doc


def _opt_number(doc: dict[str, Any], name: str, lo: float, hi: float) -> float | None:
    raw = doc.get(name)
    return None if raw is None else bodies.parse_number(name, raw, lo, hi, lo_open=True)


def topic_config(doc: Any, gw: Gateway) -> TopicConfig:
    """A TopicConfig from JSON; unknown fields and out-of-range values are refused."""
    if doc is None:
        return TopicConfig()
    if not isinstance(doc, dict):
        raise BrokerError("bad_request", "config must be an object")
    unknown = set(doc) - _TOPIC_FIELDS
    if unknown:
        raise BrokerError("bad_request", f"unknown topic settings: {sorted(unknown)}")
    overflow = doc.get("overflow", "refuse")
    if overflow not in ("refuse", "drop_oldest"):
        raise BrokerError("invalid_argument", "overflow must be 'refuse' or 'drop_oldest'")
    dead_letter = doc.get("dead_letter", True)
    if not isinstance(dead_letter, bool):
        raise BrokerError("invalid_argument", "dead_letter must be true or false")
    backoff = doc.get("backoff_s", [])
    if not isinstance(backoff, list) or len(backoff) > 100:
        raise BrokerError("invalid_argument", "backoff_s must be a list of at most 100 numbers")
    max_bytes = doc.get("max_message_bytes")
    retention_bytes = doc.get("retention_bytes")
    max_deliveries = doc.get("max_deliveries")
    return TopicConfig(
        partitions=bodies.parse_int("partitions", doc.get("partitions", 1), 1,
                                    gw.limits.max_partitions),
        retention_s=_opt_number(doc, "retention_s", 0.0, math.inf),
        retention_bytes=None if retention_bytes is None else bodies.parse_int(
            "retention_bytes", retention_bytes, 1, 2**62),
        overflow=overflow,
        max_message_bytes=None if max_bytes is None else bodies.parse_int(
            "max_message_bytes", max_bytes, 1, gw.config.max_message_bytes),
        visibility_timeout_s=_opt_number(doc, "visibility_timeout_s", 0.0,
                                         gw.limits.max_visibility_s),
        max_deliveries=None if max_deliveries is None else bodies.parse_int(
            "max_deliveries", max_deliveries, 1, 1_000_000),
        dead_letter=dead_letter,
        backoff_s=tuple(bodies.parse_number("backoff_s", b, 0.0, 900.0) for b in backoff),
    )


def _limit(request: web.Request, default: int, hi: int) -> int:
    raw = request.query.get("limit")
    return default if raw is None else bodies.parse_int("limit", raw, 1, hi)


# -- topics


async def list_topics(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    return render.json_response({"topics": [render.topic(t) for t in gw.broker.list_topics()]})


async def create_topic(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    doc = await _json_object(request, gw, empty_ok=False)
    name = doc.get("name")
    if not isinstance(name, str):
        raise BrokerError("bad_request", "the body needs 'name' (a string)")
    # The name is in the body, not the path: the guard could not check it.
    authorize_topic(request, "admin", name)
    info = await gw.broker.create_topic(name, topic_config(doc.get("config"), gw))
    return render.json_response(render.topic(info), 201)


async def describe_topic(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    return render.json_response(render.topic(gw.broker.describe_topic(request.match_info["topic"])))


async def purge_topic(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    info = await gw.broker.purge_topic(request.match_info["topic"])
    return render.json_response(render.topic(info))


async def delete_topic(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    name = request.match_info["topic"]
    await gw.broker.delete_topic(name)
    return render.json_response({"deleted": name})


async def browse(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    q = request.query
    partition = bodies.parse_int("partition", q.get("partition", "0"), 0, 1_000_000)
    raw_offset = q.get("offset")
    offset = None if raw_offset is None else bodies.parse_int("offset", raw_offset, 0, 2**62)
    key = q.get("key")
    msgs, next_offset = await gw.broker.browse(
        request.match_info["topic"], partition, offset,
        None if key is None else key.encode("utf-8", "surrogatepass"),
        q.get("text") or None, _limit(request, 50, gw.limits.max_browse))
    return render.json_response({"messages": [render.stored_message(m) for m in msgs],
                                 "next_offset": next_offset})


# -- groups


async def list_groups(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    topic = request.match_info.get("topic") or request.query.get("topic") or None
    return render.json_response({"groups": [render.group(g)
                                            for g in gw.broker.list_groups(topic)]})


async def describe_group(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    m = request.match_info
    return render.json_response(render.group(gw.broker.describe_group(m["topic"], m["group"])))


async def group_leases(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    m = request.match_info
    leases = gw.broker.group_leases(m["topic"], m["group"],
                                    _limit(request, 1000, gw.limits.max_list))
    return render.json_response({"leases": [render.lease(x) for x in leases]})


async def seek_group(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    m = request.match_info
    doc = await _json_object(request, gw, empty_ok=False)
    offset = doc.get("offset")
    ts = doc.get("timestamp_ms")
    if (offset is None) == (ts is None):
        raise BrokerError("bad_request", "seek needs exactly one of 'offset' and 'timestamp_ms'")
    partition = doc.get("partition")
    info = await gw.broker.seek_group(
        m["topic"], m["group"],
        offset=None if offset is None else bodies.parse_int("offset", offset, 0, 2**62),
        timestamp_ms=None if ts is None else bodies.parse_int("timestamp_ms", ts, 0, 2**62),
        partition=None if partition is None else bodies.parse_int("partition", partition, 0,
                                                                  1_000_000))
    return render.json_response(render.group(info))


async def delete_group(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    m = request.match_info
    await gw.broker.delete_group(m["topic"], m["group"])
    return render.json_response({"deleted": m["group"]})


# -- dead letters


async def dead_letters(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    m = request.match_info
    limit = _limit(request, 1000, gw.limits.max_list)
    items = gw.broker.dead_letters(m["topic"], m["group"], limit)
    return render.json_response({"dead_letters": [render.dead_letter(d) for d in items]})


async def redrive(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    m = request.match_info
    doc = await _json_object(request, gw)
    ids = doc.get("ids")
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
        raise BrokerError("bad_request", "ids must be a list of strings")
    reason = doc.get("reason_contains")
    if reason is not None and not isinstance(reason, str):
        raise BrokerError("bad_request", "reason_contains must be a string")
    n = await gw.broker.redrive(m["topic"], m["group"], ids, reason or None)
    return render.json_response({"redriven": n})
