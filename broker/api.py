"""The broker's public contract: the values that cross its boundary and the async facade
that the TCP server, the HTTP gateway and the Kafka mirror are written against.

Types only; `broker.broker.Broker` implements `BrokerAPI`. Every method raises
`broker.errors.BrokerError` (never a storage or OS exception).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Headers = dict[str, Any]
Protocol_ = Literal["native", "http"]
Role = Literal["producer", "consumer", "admin"]


@dataclass(frozen=True, slots=True)
class ClientRef:
    """Who is calling: the broker tracks per client address, protocol, last seen, counts."""

    client_id: str
    protocol: Protocol_ = "native"
    address: str = ""


@dataclass(frozen=True, slots=True)
class OutMessage:
    """One message to send. `message_id` deduplicates within the dedup window."""

    value: bytes
    key: bytes | None = None
    headers: Headers | None = None
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class SendOutcome:
    partition: int
    offset: int
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class SendResult:
    topic: str
    created: bool  # the topic was created by this send
    outcomes: list[SendOutcome]


@dataclass(frozen=True, slots=True)
class SendRun:
    """`count` messages of one send, in send order, at offsets base_offset.. of partition."""

    partition: int
    base_offset: int
    count: int


@dataclass(frozen=True, slots=True)
class BatchSendResult:
    """Outcome of `send_columns`: the messages, in order, fill `runs` (a keyless send is
    one run); when keys spread messages over partitions or message ids found duplicates,
    `runs` is None and `outcomes` has one entry per message instead."""

    topic: str
    created: bool
    count: int
    runs: list[SendRun] | None
    outcomes: list[SendOutcome] | None = None

    def offsets(self) -> list[int]:
        """The offset of every message, in send order."""
        if self.runs is None:
            return [o.offset for o in self.outcomes or ()]
        out: list[int] = []
        for r in self.runs:
            out.extend(range(r.base_offset, r.base_offset + r.count))
        return out


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message leased to one consumer of a group until `deadline` (epoch seconds)."""

    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None
    headers: Headers | None
    timestamp_ms: int
    delivery_count: int
    receipt: str
    deadline: float


@dataclass(frozen=True, slots=True)
class DeliveryBatch:
    """One lease's worth of leased messages, as columns: offsets offset..offset+len-1 of
    `partition`, all under lease `lease_id` of `incarnation` until `deadline`.

    `keys` / `headers` are None when no message has one; `timestamps` and
    `delivery_counts` are one int when every message shares it (a count of 1 is a first
    delivery). Each message's receipt is derived, never stored: see
    `broker.core.receipts.batch_receipts` and `batch_range_receipt`.
    """

    topic: str
    group: str
    partition: int
    offset: int
    values: list[bytes]
    keys: list[bytes | None] | None
    headers: list[Headers | None] | None
    timestamps: list[int] | int
    delivery_counts: list[int] | int
    lease_id: int
    deadline: float
    incarnation: str

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True, slots=True)
class ReceiptResult:
    """Outcome of ack/nack/extend for one receipt: `error` is None on success, else a code."""

    receipt: str
    error: str | None = None
    message: str | None = None
    deadline: float | None = None  # for extend


@dataclass(frozen=True, slots=True)
class TopicConfig:
    partitions: int = 1
    retention_s: float | None = None  # None: the broker default
    retention_bytes: int | None = None
    overflow: Literal["refuse", "drop_oldest"] = "refuse"
    max_message_bytes: int | None = None
    visibility_timeout_s: float | None = None
    max_deliveries: int | None = None
    dead_letter: bool = True
    backoff_s: tuple[float, ...] = ()  # redelivery delay by delivery count; () = at once

    def to_dict(self) -> dict[str, Any]:
        return {
            "partitions": self.partitions,
            "retention_s": self.retention_s,
            "retention_bytes": self.retention_bytes,
            "overflow": self.overflow,
            "max_message_bytes": self.max_message_bytes,
            "visibility_timeout_s": self.visibility_timeout_s,
            "max_deliveries": self.max_deliveries,
            "dead_letter": self.dead_letter,
            "backoff_s": list(self.backoff_s),
        }


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message as browsed (peeked) without consuming it."""

    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None
    headers: Headers | None
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    attempt: int
    consumer: str
    lease_start: float
    outcome: str  # "acked" | "nacked" | "expired" | "dead_lettered" | "leased"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str  # stable: f"{partition}:{offset}"
    topic: str
    group: str
    partition: int
    offset: int
    reason: str
    delivery_count: int
    dead_lettered_at: float
    history: list[HistoryEntry]
    value: bytes | None = None
    redrives: int = 0  # lineage: how many times it was redriven before


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    partition: int
    offset: int
    consumer: str
    delivery_count: int
    deadline: float


@dataclass(frozen=True, slots=True)
class GroupInfo:
    topic: str
    name: str
    ready: int
    in_flight: int
    dead_lettered: int
    lag: int  # messages not yet acked (ready + in flight)
    oldest_unacked_age_s: float | None
    ack_floor: dict[int, int]  # per partition
    consumers: int
    last_active: float
    rate_out: float = 0.0
    redeliveries: int = 0


@dataclass(frozen=True, slots=True)
class TopicInfo:
    name: str
    config: TopicConfig
    partitions: int
    start_offsets: list[int]
    end_offsets: list[int]
    messages: int  # retained
    messages_in_queue: int  # DESIGN.md's definition
    bytes: int
    in_flight: int
    dead_lettered: int
    oldest_timestamp_ms: int | None
    groups: list[GroupInfo] = field(default_factory=list)
    rate_in: float = 0.0
    rate_out: float = 0.0
    damaged: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ClientInfo:
    client_id: str
    protocol: str
    address: str
    roles: tuple[str, ...]
    first_seen: float
    last_seen: float
    active: bool
    messages_in: int
    messages_out: int
    in_flight: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What /stats, /monitoring, /events and the dashboard show."""

    timestamp: float
    messages_in_queue: int
    ready: int
    in_flight: int
    dead_lettered: int
    active_producers: int
    active_consumers: int
    rate_in: float  # messages/s over the last few seconds
    rate_out: float
    rate_acks: float
    rate_redeliveries: float
    oldest_unacked_age_s: float | None
    topics: list[TopicInfo]
    clients: list[ClientInfo]


StartAt = Literal["earliest", "latest"] | int  # or an offset via seek


class BrokerAPI(Protocol):
    incarnation: str

    async def send(self, topic: str, messages: Sequence[OutMessage], client: ClientRef,
                   delay_s: float = 0.0, create: bool = True) -> SendResult:
        """Append durably (per the fsync policy) and return offsets.

        Raises BrokerError: invalid_topic, topic_not_found (create=False),
        message_too_large, topic_full, storage_full, invalid_argument (delay > 900 s).
        """
        ...

    async def receive(self, topic: str, group: str, client: ClientRef, max_messages: int = 1,
                      wait_s: float = 0.0, visibility_s: float | None = None,
                      auto_ack: bool = False) -> list[Delivery]:
        """Lease up to max_messages; long-poll up to wait_s (<= 20 s). [] when none.

        Creates the group on first receive (starting at the earliest offset).
        """
        ...

    async def send_columns(self, topic: str, values: list[bytes], client: ClientRef,
                           keys: list[bytes | None] | None = None,
                           headers: list[Headers | None] | None = None,
                           message_ids: list[str | None] | None = None,
                           delay_s: float = 0.0, create: bool = True) -> BatchSendResult:
        """`send` with the messages as columns (each optional column None or one entry per
        value); plain values go to the log as they are, with no per-message work.
        Raises as `send` does."""
        ...

    async def receive_columns(self, topic: str, group: str, client: ClientRef,
                              max_messages: int = 1, wait_s: float = 0.0,
                              visibility_s: float | None = None, auto_ack: bool = False
                              ) -> list[DeliveryBatch]:
        """`receive` with the leased messages as one DeliveryBatch per lease; [] when none."""
        ...

    async def ack(self, receipts: Sequence[str], client: ClientRef) -> list[ReceiptResult]: ...

    async def nack(self, receipts: Sequence[str], client: ClientRef,
                   delay_s: float = 0.0) -> list[ReceiptResult]: ...

    async def extend(self, receipts: Sequence[str], client: ClientRef,
                     visibility_s: float) -> list[ReceiptResult]: ...

    # -- topics
    async def create_topic(self, name: str, config: TopicConfig | None = None) -> TopicInfo: ...

    def list_topics(self) -> list[TopicInfo]: ...

    def describe_topic(self, name: str) -> TopicInfo: ...

    async def purge_topic(self, name: str) -> TopicInfo: ...

    async def delete_topic(self, name: str) -> None: ...

    # -- groups
    def list_groups(self, topic: str | None = None) -> list[GroupInfo]: ...

    def describe_group(self, topic: str, group: str) -> GroupInfo: ...

    def group_leases(self, topic: str, group: str, limit: int = 1000) -> list[LeaseInfo]: ...

    async def seek_group(self, topic: str, group: str, *, offset: int | None = None,
                         timestamp_ms: int | None = None, partition: int | None = None
                         ) -> GroupInfo: ...

    async def delete_group(self, topic: str, group: str) -> None: ...

    # -- browse, dead letters
    async def browse(self, topic: str, partition: int = 0, offset: int | None = None,
                     key: bytes | None = None, text: str | None = None, limit: int = 50,
                     ) -> tuple[list[StoredMessage], int | None]:
        """Peek without consuming. Returns (messages, next cursor offset or None at the end).
        Bounded work per call; runs off the event loop.
        """
        ...

    def dead_letters(self, topic: str, group: str, limit: int = 1000) -> list[DeadLetter]: ...

    async def redrive(self, topic: str, group: str, ids: Sequence[str] | None = None,
                      reason_contains: str | None = None) -> int:
        """Hand dead letters back to that group only (no ids, no filter: all); return the count."""
        ...

    # -- observing
    def snapshot(self) -> Snapshot: ...

    def touch_client(self, client: ClientRef, role: str | None = None) -> None:
        """Mark the client seen (a connection said who it is)."""
        ...
