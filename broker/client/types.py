"""Values the native client hands to its callers: `Message` and `ClientError`.

Owns nothing else; must not do I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker.errors import ERRORS


@dataclass(frozen=True, slots=True)
class LeaseRef:
    """The lease one receive put a run of messages under, shared by those messages: with
    their offsets it names the run for one range receipt."""

    incarnation: str
    lease_id: int
    group: str


@dataclass(frozen=True, slots=True)
class Message:
    """A message leased to this client. Settle it with ack, nack or extend via `receipt`.

    `deadline` is the broker's lease deadline (epoch seconds) as of delivery. `lease` is
    the LeaseRef of the run the message came in (None for pushed messages): `ack` and
    `nack` join consecutive messages of one lease into one range receipt.
    """

    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None
    headers: dict[str, Any] | None
    timestamp_ms: int
    delivery_count: int
    receipt: str
    deadline: float
    lease: LeaseRef | None = None

    @property
    def text(self) -> str:
        """The value decoded as UTF-8 (replacement characters for invalid bytes)."""
        return self.value.decode("utf-8", "replace")


_new = object.__new__
(_topic, _partition, _offset, _value, _key, _headers, _timestamp_ms, _delivery_count, _receipt,
 _deadline, _lease) = (getattr(Message, name).__set__ for name in Message.__slots__)


def make_message(topic: str, partition: int, offset: int, value: bytes, key: bytes | None,
                 headers: dict[str, Any] | None, timestamp_ms: int, delivery_count: int,
                 receipt: str, deadline: float, lease: LeaseRef | None = None) -> Message:
    """`Message(...)` at about half the cost: a frozen dataclass's `__init__` goes through
    `object.__setattr__` per field, while the slot descriptors set fields directly. A
    receive of 500 messages builds 500 of these, so it shows in the client's profile."""
    m: Message = _new(Message)
    _topic(m, topic)
    _partition(m, partition)
    _offset(m, offset)
    _value(m, value)
    _key(m, key)
    _headers(m, headers)
    _timestamp_ms(m, timestamp_ms)
    _delivery_count(m, delivery_count)
    _receipt(m, receipt)
    _deadline(m, deadline)
    _lease(m, lease)
    return m


class ClientError(Exception):
    """A request failed: `code` is from `broker.errors.ERRORS`; retry when `retriable`."""

    def __init__(self, code: str, message: str | None = None, retriable: bool | None = None
                 ) -> None:
        spec = ERRORS.get(code) or ERRORS["internal"]
        self.code = code
        self.message = message or spec.description
        self.retriable = spec.retriable if retriable is None else retriable
        super().__init__(f"{code}: {self.message}")
