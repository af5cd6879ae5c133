"""The gateway's typed application state (aiohttp `AppKey`s) and per-route policy.

One `Gateway` value per app holds the broker facade, the settings, the limits,
the authorizer and the counters the guard and /metrics share.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web

from broker.api import BrokerAPI, ClientRef
from http_gateway.auth import Authorizer
from http_gateway.coalesce import SendCoalescer
from http_gateway.settings import GatewaySettings, Limits

Right = Literal["produce", "consume", "admin"]
# Where the authorizer finds the topic: the path's {topic}, the default topic
# (for /send and /receive without one), or nowhere (the right on any topic).
TopicSource = Literal["path", "path_or_default", "none"]

# Clients remembered for ClientRef reuse: a bound, not a cache of every caller.
CLIENT_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """What a route needs: a right (None: any valid token; `public`: no token at all)."""

    name: str
    right: Right | None
    topic: TopicSource = "none"
    public: bool = False


@dataclass(slots=True)
class HttpCounters:
    """Counts the guard and handlers keep for /metrics (plain ints: the hot path)."""

    requests: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    messages_in: int = 0
    messages_out: int = 0
    acks: int = 0
    nacks: int = 0


@dataclass(slots=True)
class Gateway:
    broker: BrokerAPI
    config: GatewaySettings
    limits: Limits
    authorizer: Authorizer
    coalescer: SendCoalescer
    counters: HttpCounters = field(default_factory=HttpCounters)
    policies: dict[web.AbstractRoute, RoutePolicy] = field(default_factory=dict)
    in_flight_requests: int = 0
    long_polls: int = 0
    event_streams: int = 0
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    _clients: dict[tuple[str | None, str, str], ClientRef] = field(default_factory=dict)

    def client(self, request: web.Request) -> ClientRef:
        """The ClientRef for this caller: X-Client-Id, else "<ip> <user agent>" (never the port)."""
        headers = request.headers
        cid = headers.get("X-Client-Id")
        ip = request.remote or ""
        ua = headers.get("User-Agent", "")
        key = (cid, ip, ua)
        ref = self._clients.get(key)
        if ref is None:
            if len(self._clients) >= CLIENT_CACHE_SIZE:
                self._clients.clear()
            ref = ClientRef(cid or f"{ip} {ua}".strip(), "http", ip)
            self._clients[key] = ref
        return ref


GATEWAY = web.AppKey("gateway", Gateway)
