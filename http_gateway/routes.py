"""The route table: every path, its handler and what it needs (right and topic).

The app registers exactly these; the guard authorizes from them; the
OpenAPI document describes them (a test checks the three agree).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from http_gateway import admin, messages, metrics, observe, openapi
from http_gateway.state import Right, TopicSource

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    name: str  # the operationId and the metrics label
    right: Right | None  # None: any valid token
    topic: TopicSource = "none"
    public: bool = False  # no token at all (health checks)


T = "/topics/{topic}"
G = "/topics/{topic}/groups/{group}"

ROUTES: tuple[Route, ...] = (
    Route("POST", "/send", messages.send, "send", "produce", "path_or_default"),
    Route("POST", "/send/{topic}", messages.send, "send_topic", "produce", "path"),
    Route("GET", "/receive", messages.receive, "receive", "consume", "path_or_default"),
    Route("GET", "/receive/{topic}", messages.receive, "receive_topic", "consume", "path"),
    Route("POST", "/ack", messages.ack, "ack", "consume"),
    Route("POST", "/nack", messages.nack, "nack", "consume"),
    Route("POST", "/extend", messages.extend, "extend", "consume"),
    Route("GET", "/stats", observe.stats, "stats", None),
    Route("GET", "/monitoring", observe.stats, "monitoring", None),
    Route("GET", "/events", observe.events, "events", None),
    Route("GET", "/metrics", metrics.metrics, "metrics", None),
    Route("GET", "/openapi.json", openapi.openapi, "openapi", None),
    Route("GET", "/healthz", observe.healthz, "healthz", None, public=True),
    Route("GET", "/topics", admin.list_topics, "list_topics", "admin"),
    Route("POST", "/topics", admin.create_topic, "create_topic", "admin"),
    Route("GET", T, admin.describe_topic, "describe_topic", "admin", "path"),
    Route("DELETE", T, admin.delete_topic, "delete_topic", "admin", "path"),
    Route("POST", T + "/purge", admin.purge_topic, "purge_topic", "admin", "path"),
    Route("GET", T + "/messages", admin.browse, "browse", "admin", "path"),
    Route("GET", "/groups", admin.list_groups, "list_groups", "admin"),
    Route("GET", T + "/groups", admin.list_groups, "list_topic_groups", "admin", "path"),
    Route("GET", G, admin.describe_group, "describe_group", "admin", "path"),
    Route("DELETE", G, admin.delete_group, "delete_group", "admin", "path"),
    Route("GET", G + "/leases", admin.group_leases, "group_leases", "admin", "path"),
    Route("POST", G + "/seek", admin.seek_group, "seek_group", "admin", "path"),
    Route("GET", G + "/dead-letters", admin.dead_letters, "dead_letters", "admin", "path"),
    Route("POST", G + "/redrive", admin.redrive, "redrive", "admin", "path"),
)
