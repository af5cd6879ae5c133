"""What the gateway reads from the process configuration, and its own limits.

`GatewaySettings` describes, structurally, the part of `spoolmq.config.Config`
the gateway uses, so the gateway never imports the composition root (layers
point one way). `Limits` holds every bound the gateway applies, each with its
unit and reason; tests shrink them to exercise the refusals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from broker.auth import TokenGrant

MIB = 1024 * 1024


class GatewaySettings(Protocol):
    """The settings the gateway reads (a structural view of `spoolmq.config.Config`)."""

    @property
    def host(self) -> str: ...

    @property
    def http_port(self) -> int: ...

    @property
    def default_topic(self) -> str: ...

    @property
    def default_group(self) -> str: ...

    @property
    def max_message_bytes(self) -> int: ...

    @property
    def visibility_timeout_s(self) -> float: ...

    @property
    def tls_cert(self) -> Path | None: ...

    @property
    def tls_key(self) -> Path | None: ...

    @property
    def insecure(self) -> bool: ...

    @property
    def tokens(self) -> Sequence[TokenGrant]: ...


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound the gateway applies. Past a bound the request is refused, never queued."""

    # A request body may hold a batch of MAX_BATCH messages; 16 MiB keeps one request's
    # buffering bounded while leaving room for a batch of 1000 messages of ~16 KiB.
    max_body_bytes: int = 16 * MIB
    # Messages in one JSON batch: one broker append and one fsync per request.
    max_batch: int = 1000
    # Messages one /receive may lease: bounds the answer's size and the leases a
    # single lost consumer can strand until their visibility timeout.
    max_receive: int = 1000
    # Long-poll wait: the broker's own bound (20 s, as SQS), below common proxy timeouts.
    max_wait_s: float = 20.0
    # Visibility timeout: 12 h, as SQS; longer leases hide a lost consumer's messages.
    max_visibility_s: float = 12 * 3600.0
    # Concurrent long polls (wait > 0): each holds a connection and a broker waiter.
    max_long_polls: int = 1024
    # Requests being handled at once; past it the gateway answers 429 instead of
    # growing the event loop's backlog (every connection costs buffers and a task).
    max_concurrent_requests: int = 4096
    # Live /events streams: each costs a snapshot serialisation per tick.
    max_event_streams: int = 64
    # /events period: the dashboard's "at least once a second".
    events_interval_s: float = 1.0
    # Browse page size and lease listing: bounded work per admin call.
    max_browse: int = 1000
    max_list: int = 10_000
    # Topic partitions accepted on creation: each is a log with open files.
    max_partitions: int = 256
