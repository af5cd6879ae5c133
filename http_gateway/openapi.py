"""GET /openapi.json: the OpenAPI 3 document of the gateway, built from the route table.

Operation details (parameters, bodies, response schemas) are keyed by the route
name; `build_spec` refuses a route without them, so the document and the app
cannot drift. Bounds come from the app's `Limits`, so the document states the
limits the app enforces. Errors are the `Error` envelope under `default`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from aiohttp import web

from http_gateway.settings import Limits

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
TOPIC_PATTERN = r"^[A-Za-z0-9._-]{1,249}$"


class RouteLike(Protocol):
    @property
    def method(self) -> str: ...

    @property
    def path(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def right(self) -> str | None: ...

    @property
    def public(self) -> bool: ...


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: Sequence[str], props: dict[str, Any], extra: bool = True) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": "object", "required": list(required), "properties": props}
    if not extra:
        doc["additionalProperties"] = False
    return doc


INT = {"type": "integer"}
NUM = {"type": "number"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
NULL_NUM = {"type": "number", "nullable": True}
NULL_INT = {"type": "integer", "nullable": True}
NULL_STR = {"type": "string", "nullable": True}
HEADER_VALUE = {"nullable": True, "oneOf": [STR, NUM, BOOL]}
HEADERS = {"type": "object", "additionalProperties": HEADER_VALUE, "maxProperties": 64}


def _schemas(limits: Limits) -> dict[str, Any]:
    group = _obj(
        ["topic", "name", "ready", "in_flight", "dead_lettered", "lag", "oldest_unacked_age_s",
         "ack_floor", "consumers", "last_active", "rate_out", "redeliveries"],
        {"topic": STR, "name": STR, "ready": INT, "in_flight": INT, "dead_lettered": INT,
         "lag": INT, "oldest_unacked_age_s": NULL_NUM,
         "ack_floor": {"type": "object", "additionalProperties": INT},
         "consumers": INT, "last_active": NUM, "rate_out": NUM, "redeliveries": INT})
    topic_config = _obj([], {
        "partitions": {"type": "integer", "minimum": 1, "maximum": limits.max_partitions},
        "retention_s": {"type": "number", "exclusiveMinimum": True, "minimum": 0,
                        "nullable": True},
        "retention_bytes": {"type": "integer", "minimum": 1, "nullable": True},
        "overflow": {"type": "string", "enum": ["refuse", "drop_oldest"]},
        "max_message_bytes": {"type": "integer", "minimum": 1, "nullable": True},
        "visibility_timeout_s": {"type": "number", "exclusiveMinimum": True, "minimum": 0,
                                 "maximum": limits.max_visibility_s, "nullable": True},
        "max_deliveries": {"type": "integer", "minimum": 1, "maximum": 1_000_000,
                           "nullable": True},
        "dead_letter": BOOL,
        "backoff_s": {"type": "array", "maxItems": 100,
                      "items": {"type": "number", "minimum": 0, "maximum": 900}},
    }, extra=False)
    topic = _obj(
        ["name", "partitions", "messages", "messages_in_queue", "bytes", "in_flight",
         "dead_lettered", "oldest_timestamp_ms", "rate_in", "rate_out", "start_offsets",
         "end_offsets", "config", "damaged", "groups"],
        {"name": STR, "partitions": INT, "messages": INT, "messages_in_queue": INT,
         "bytes": INT, "in_flight": INT, "dead_lettered": INT, "oldest_timestamp_ms": NULL_INT,
         "rate_in": NUM, "rate_out": NUM, "start_offsets": {"type": "array", "items": INT},
         "end_offsets": {"type": "array", "items": INT}, "config": _ref("TopicConfig"),
         "damaged": {"type": "array", "items": {"type": "object"}},
         "groups": {"type": "array", "items": _ref("Group")}})
    client = _obj(
        ["client_id", "protocol", "address", "roles", "first_seen", "last_seen", "active",
         "messages_in", "messages_out", "in_flight"],
        {"client_id": STR, "protocol": STR, "address": STR,
         "roles": {"type": "array", "items": STR}, "first_seen": NUM, "last_seen": NUM,
         "active": BOOL, "messages_in": INT, "messages_out": INT, "in_flight": INT})
    rates = _obj(["in", "out", "acks", "redeliveries"],
                 {"in": NUM, "out": NUM, "acks": NUM, "redeliveries": NUM})
    snapshot = _obj(
        ["timestamp", "messages_in_queue", "ready", "in_flight", "dead_lettered",
         "active_producers", "active_consumers", "rates", "oldest_unacked_age_s", "topics",
         "clients"],
        {"timestamp": NUM, "messages_in_queue": INT, "ready": INT, "in_flight": INT,
         "dead_lettered": INT, "active_producers": INT, "active_consumers": INT,
         "rates": rates, "oldest_unacked_age_s": NULL_NUM,
         "topics": {"type": "array", "items": _ref("Topic")},
         "clients": {"type": "array", "items": _ref("Client")}})
    payload = {"message": STR, "encoding": {"type": "string", "enum": ["base64"]}}
    message = _obj(
        ["message", "receipt", "topic", "partition", "offset", "delivery_count", "key",
         "headers", "timestamp", "deadline"],
        {**payload, "receipt": STR, "topic": STR, "partition": INT, "offset": INT,
         "delivery_count": INT, "key": NULL_STR, "headers": {**HEADERS, "nullable": True},
         "timestamp": INT, "deadline": NUM})
    stored = _obj(["message", "topic", "partition", "offset", "key", "headers", "timestamp"],
                  {**payload, "topic": STR, "partition": INT, "offset": INT, "key": NULL_STR,
                   "headers": {**HEADERS, "nullable": True}, "timestamp": INT})
    error_body = _obj(["code", "message"], {"code": STR, "message": STR, "retriable": BOOL})
    receipt_result = _obj(["receipt", "ok"], {"receipt": STR, "ok": BOOL,
                                              "error": error_body, "deadline": NUM})
    entry = _obj(["message"], {"message": {}, "key": STR, "headers": HEADERS})
    return {
        "Error": _obj(["error"], {"error": error_body,
                                  "results": {"type": "array", "items": _ref("ReceiptResult")}}),
        "TopicConfig": topic_config,
        "Topic": topic,
        "Group": group,
        "Client": client,
        "Snapshot": snapshot,
        "Message": message,
        "StoredMessage": stored,
        "ReceiptResult": receipt_result,
        "Lease": _obj(["partition", "offset", "consumer", "delivery_count", "deadline"],
                      {"partition": INT, "offset": INT, "consumer": STR,
                       "delivery_count": INT, "deadline": NUM}),
        "DeadLetter": _obj(
            ["id", "topic", "group", "partition", "offset", "reason", "delivery_count",
             "dead_lettered_at", "redrives", "message", "history"],
            {"id": STR, "topic": STR, "group": STR, "partition": INT, "offset": INT,
             "reason": STR, "delivery_count": INT, "dead_lettered_at": NUM, "redrives": INT,
             "message": NULL_STR, "encoding": {"type": "string", "enum": ["base64"]},
             "history": {"type": "array", "items": _obj(
                 ["attempt", "consumer", "lease_start", "outcome"],
                 {"attempt": INT, "consumer": STR, "lease_start": NUM, "outcome": STR})}}),
        "SendEntry": entry,
        "Sent": _obj(
            ["status", "message", "topic", "partition", "offset", "created", "duplicate"],
            {"status": {"type": "string", "enum": ["Message sent"]}, **payload,
             "message": {}, "topic": STR, "partition": INT, "offset": INT, "created": BOOL,
             "duplicate": BOOL}),
        "BatchSent": _obj(
            ["status", "topic", "count", "created", "partition", "offset", "results"],
            {"status": {"type": "string", "enum": ["Messages sent"]}, "topic": STR,
             "count": INT, "created": BOOL, "partition": {"type": "array", "items": INT},
             "offset": {"type": "array", "items": INT},
             "results": {"type": "array", "items": _obj(
                 ["partition", "offset", "duplicate"],
                 {"partition": INT, "offset": INT, "duplicate": BOOL})}}),
    }


def _topic_param(name: str = "topic") -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "string", "pattern": TOPIC_PATTERN}}


def _query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    doc: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        doc["description"] = description
    return doc


def _json_body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {JSON: {"schema": schema}}}


def _operations(limits: Limits) -> dict[str, dict[str, Any]]:
    """Per route name: summary, parameters, requestBody, and the success (status, schema)."""
    delay = {"type": "number", "minimum": 0, "maximum": 900}
    visibility = {"type": "number", "exclusiveMinimum": True, "minimum": 0,
                  "maximum": limits.max_visibility_s}
    send_body = {
        "required": True,
        "content": {
            FORM: {"schema": _obj(["message"], {"message": STR, "key": STR, "delay": delay})},
            JSON: {"schema": {"oneOf": [
                _obj(["message"], {"message": {}, "key": STR, "headers": HEADERS,
                                   "delay": delay}),
                _obj(["messages"], {"messages": {
                    "type": "array", "minItems": 1, "maxItems": limits.max_batch,
                    "items": {"oneOf": [STR, _ref("SendEntry")]}}, "delay": delay}),
            ]}},
            "text/plain": {"schema": STR},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
    send = {
        "summary": "Send one message (form, JSON, raw body) or a JSON batch",
        "parameters": [
            {"name": "Idempotency-Key", "in": "header", "required": False, "schema": STR},
            _query("key", STR, "the key of a raw-body message"),
            _query("delay", delay, "the delay of a raw-body message (seconds)"),
        ],
        "requestBody": send_body,
        "ok": (200, {"oneOf": [_ref("Sent"), _ref("BatchSent")]}),
    }
    receive = {
        "summary": "Lease messages for a group (long poll with wait)",
        "parameters": [
            _query("group", {"type": "string", "pattern": TOPIC_PATTERN}),
            _query("max", {"type": "integer", "minimum": 1, "maximum": limits.max_receive}),
            _query("wait", {"type": "number", "minimum": 0, "maximum": limits.max_wait_s}),
            _query("visibility", visibility),
            _query("auto_ack", BOOL),
        ],
        "ok": (200, _obj(["topic", "group", "messages"], {
            "topic": STR, "group": STR,
            "messages": {"type": "array", "items": _ref("Message")}})),
    }

    def settle(summary: str, extra: dict[str, Any], required: Sequence[str] = ()
               ) -> dict[str, Any]:
        receipts = {"type": "array", "items": STR, "minItems": 1,
                    "maxItems": limits.max_receive}
        return {
            "summary": summary,
            "requestBody": {"required": True, "content": {
                FORM: {"schema": _obj(["receipt", *required], {"receipt": STR, **extra})},
                JSON: {"schema": _obj(["receipts", *required], {"receipts": receipts, **extra})},
            }},
            "ok": (200, _obj(["results"], {"results": {"type": "array",
                                                       "items": _ref("ReceiptResult")}})),
        }

    topic_doc = (200, _ref("Topic"))
    group_doc = (200, _ref("Group"))
    limit = _query("limit", {"type": "integer", "minimum": 1, "maximum": limits.max_list})
    groups = (200, _obj(["groups"], {"groups": {"type": "array", "items": _ref("Group")}}))
    any_doc = (200, {"type": "object"})
    return {
        "send": send,
        "send_topic": send,
        "receive": receive,
        "receive_topic": receive,
        "ack": settle("Ack receipts: the messages never come back to the group", {}),
        "nack": settle("Give messages back now or after a delay",
                       {"delay": {"type": "number", "minimum": 0, "maximum": 43_200}}),
        "extend": settle("Extend leases by a new visibility timeout",
                         {"visibility": visibility}, ("visibility",)),
        "stats": {"summary": "The broker snapshot", "ok": (200, _ref("Snapshot"))},
        "monitoring": {"summary": "The broker snapshot (seed-compatible name)",
                       "ok": (200, _ref("Snapshot"))},
        "events": {"summary": "Server-Sent Events: `event: snapshot` at least once a second",
                   "ok": (200, None), "content": "text/event-stream"},
        "metrics": {"summary": "Prometheus exposition", "ok": (200, None),
                    "content": "text/plain"},
        "healthz": {"summary": "Liveness", "ok": (200, _obj(["status"], {"status": STR}))},
        "openapi": {"summary": "This document", "ok": any_doc},
        "list_topics": {"summary": "Topics", "ok": (200, _obj(["topics"], {
            "topics": {"type": "array", "items": _ref("Topic")}}))},
        "create_topic": {"summary": "Create a topic",
                         "requestBody": _json_body(_obj(["name"], {
                             "name": {"type": "string", "pattern": TOPIC_PATTERN},
                             "config": _ref("TopicConfig")})),
                         "ok": (201, _ref("Topic"))},
        "describe_topic": {"summary": "One topic with its groups", "ok": topic_doc},
        "delete_topic": {"summary": "Delete a topic and its data",
                         "ok": (200, _obj(["deleted"], {"deleted": STR}))},
        "purge_topic": {"summary": "Drop every retained message", "ok": topic_doc},
        "browse": {"summary": "Peek at messages without consuming them",
                   "parameters": [
                       _query("partition", {"type": "integer", "minimum": 0,
                                            "maximum": 1_000_000}),
                       _query("offset", {"type": "integer", "minimum": 0}),
                       _query("key", STR), _query("text", STR),
                       _query("limit", {"type": "integer", "minimum": 1,
                                        "maximum": limits.max_browse})],
                   "ok": (200, _obj(["messages", "next_offset"], {
                       "messages": {"type": "array", "items": _ref("StoredMessage")},
                       "next_offset": NULL_INT}))},
        "list_groups": {"summary": "Groups with lag",
                        "parameters": [_query("topic", {"type": "string",
                                                        "pattern": TOPIC_PATTERN})],
                        "ok": groups},
        "list_topic_groups": {"summary": "A topic's groups with lag", "ok": groups},
        "describe_group": {"summary": "One group: lag (count and age), ack floor",
                           "ok": group_doc},
        "delete_group": {"summary": "Forget a group's position and leases",
                         "ok": (200, _obj(["deleted"], {"deleted": STR}))},
        "group_leases": {"summary": "In-flight leases", "parameters": [limit],
                         "ok": (200, _obj(["leases"], {
                             "leases": {"type": "array", "items": _ref("Lease")}}))},
        "seek_group": {"summary": "Move the group to an offset or a time (replay)",
                       "requestBody": _json_body({"oneOf": [
                           _obj(["offset"], {"offset": {"type": "integer", "minimum": 0},
                                             "partition": {"type": "integer", "minimum": 0}},
                                extra=False),
                           _obj(["timestamp_ms"], {
                               "timestamp_ms": {"type": "integer", "minimum": 0},
                               "partition": {"type": "integer", "minimum": 0}}, extra=False),
                       ]}),
                       "ok": group_doc},
        "dead_letters": {"summary": "The group's dead letters with reasons and history",
                         "parameters": [limit],
                         "ok": (200, _obj(["dead_letters"], {
                             "dead_letters": {"type": "array", "items": _ref("DeadLetter")}}))},
        "redrive": {"summary": "Hand dead letters back to this group only",
                    "requestBody": _json_body(_obj([], {
                        "ids": {"type": "array", "items": STR},
                        "reason_contains": STR}), required=False),
                    "ok": (200, _obj(["redriven"], {"redriven": INT}))},
    }


def build_spec(routes: Sequence[RouteLike], limits: Limits, secured: bool) -> dict[str, Any]:
    """The OpenAPI 3.0 document for these routes. Raises KeyError for an undescribed route."""
    ops = _operations(limits)
    paths: dict[str, dict[str, Any]] = {}
    error = {"description": "An error", "content": {JSON: {"schema": _ref("Error")}}}
    for route in routes:
        detail = ops[route.name]
        status, schema = detail["ok"]
        content_type = detail.get("content", JSON)
        ok: dict[str, Any] = {"description": "Success"}
        ok["content"] = {content_type: {"schema": schema if schema is not None else STR}}
        op: dict[str, Any] = {
            "operationId": route.name,
            "summary": detail["summary"],
            "responses": {str(status): ok, "default": error},
            "x-spoolmq-right": route.right if not route.public else "public",
        }
        params = list(detail.get("parameters", []))
        for name in ("topic", "group"):
            if "{" + name + "}" in route.path:
                params.insert(0, _topic_param(name))
        if params:
            op["parameters"] = params
        if "requestBody" in detail:
            op["requestBody"] = detail["requestBody"]
        if route.public:
            op["security"] = []
        paths.setdefault(route.path, {})[route.method.lower()] = op
    spec: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "spoolmq HTTP gateway", "version": "1",
                 "description": "See docs/http-api.md."},
        "paths": paths,
        "components": {"schemas": _schemas(limits)},
    }
    if secured:
        spec["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "query": {"type": "apiKey", "in": "query", "name": "token"},
            "cookie": {"type": "apiKey", "in": "cookie", "name": "spoolmq_token"},
        }
        spec["security"] = [{"bearer": []}, {"query": []}, {"cookie": []}]
    return spec


OPENAPI_SPEC = web.AppKey("openapi_spec", bytes)


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI_SPEC], content_type=JSON)
