"""Values the native client hands to its callers: `Message` and `ClientError`.

Owns nothing else; must not do I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import repeat
from typing import Any, NamedTuple

from broker.errors import ERRORS


@dataclass(frozen=True, slots=True)
class LeaseRef:
    """The lease one receive put a run of messages under, shared by those messages: with
    their offsets it names the run for one range receipt."""

    incarnation: str
    lease_id: int
    group: str


class _Fields(NamedTuple):
    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None
    headers: dict[str, Any] | None
    timestamp_ms: int
    delivery_count: int
    given_receipt: str | None  # None: derived from `lease` and `offset` on access
    deadline: float
    lease: LeaseRef | None = None


class Message(_Fields):
    """A message leased to this client. Settle it with ack, nack or extend via `receipt`.

    `deadline` is the broker's lease deadline (epoch seconds) as of delivery. `lease` is
    the LeaseRef of the run the message came in (None for pushed messages): `ack` and
    `nack` join consecutive messages of one lease into one range receipt.

    An immutable tuple underneath, so a receive of 500 messages builds them in C
    (`make_messages`) rather than field by field. `Message(*fields)` takes the fields
    in the order above, the receipt in `given_receipt`'s place.
    """

    __slots__ = ()

    @property
    def receipt(self) -> str:
        """The receipt naming this one message: the broker's string for pushed messages,
        else `incarnation:lease:partition:offset:topic:group` of its lease."""
        given = self[8]
        if given is not None:
            return given
        lease = self[10]
        if lease is None:
            raise ValueError("a message without a lease needs its receipt")
        return (f"{lease.incarnation}:{lease.lease_id}:{self[1]}:{self[2]}:{self[0]}:"
                f"{lease.group}")

    @property
    def text(self) -> str:
        """The value decoded as UTF-8 (replacement characters for invalid bytes)."""
        return self.value.decode("utf-8", "replace")

    def as_dict(self) -> dict[str, Any]:
        """The public fields by name, `receipt` included."""
        return {"topic": self[0], "partition": self[1], "offset": self[2], "value": self[3],
                "key": self[4], "headers": self[5], "timestamp_ms": self[6],
                "delivery_count": self[7], "receipt": self.receipt, "deadline": self[9]}

    def __repr__(self) -> str:
        return (f"Message(topic={self[0]!r}, partition={self[1]}, offset={self[2]}, "
                f"value={self[3]!r}, key={self[4]!r}, delivery_count={self[7]}, "
                f"receipt={self.receipt!r})")


_new_tuple = tuple.__new__


def make_message(topic: str, partition: int, offset: int, value: bytes, key: bytes | None,
                 headers: dict[str, Any] | None, timestamp_ms: int, delivery_count: int,
                 receipt: str | None, deadline: float, lease: LeaseRef | None = None
                 ) -> Message:
    """`Message(...)` without the keyword handling of its generated `__new__`."""
    return _new_tuple(Message, (topic, partition, offset, value, key, headers, timestamp_ms,
                                delivery_count, receipt, deadline, lease))


def make_messages(rows: Iterable[tuple[Any, ...]]) -> list[Message]:
    """A Message per row of the 11 fields in order, all built in C: one receive's run of
    500 messages costs one `map`, not 500 Python calls."""
    return list(map(_new_tuple, repeat(Message), rows))


class Received(list[Message]):
    """What `receive` returns: a list of Messages that also remembers the runs they came
    in, each `(start, stop)` indexes of consecutive offsets under one lease. Acking or
    nacking it whole sends one range receipt per run without looking at each message.
    Changing the list in place forgets the runs (acking it then looks at each message,
    as for any list); slices and copies are plain lists."""

    __slots__ = ("runs",)

    def __init__(self, messages: Iterable[Message] = (),
                 runs: list[tuple[int, int]] | None = None) -> None:
        super().__init__(messages)
        self.runs = runs

    def __setitem__(self, index: Any, value: Any) -> None:
        self.runs = None
        super().__setitem__(index, value)

    def __delitem__(self, index: Any) -> None:
        self.runs = None
        super().__delitem__(index)

    def __iadd__(self, other: Iterable[Message]) -> Received:  # type: ignore[override,misc]
        self.runs = None
        super().__iadd__(other)
        return self

    def __imul__(self, n: Any) -> Received:  # type: ignore[misc]
        self.runs = None
        super().__imul__(n)
        return self

    def append(self, message: Message) -> None:
        self.runs = None
        super().append(message)

    def extend(self, messages: Iterable[Message]) -> None:
        self.runs = None
        super().extend(messages)

    def insert(self, index: Any, message: Message) -> None:
        self.runs = None
        super().insert(index, message)

    def pop(self, index: Any = -1) -> Message:
        self.runs = None
        return super().pop(index)

    def remove(self, message: Message) -> None:
        self.runs = None
        super().remove(message)

    def clear(self) -> None:
        self.runs = None
        super().clear()

    def sort(self, *args: Any, **kwargs: Any) -> None:
        self.runs = None
        super().sort(*args, **kwargs)

    def reverse(self) -> None:
        self.runs = None
        super().reverse()


class ClientError(Exception):
    """A request failed: `code` is from `broker.errors.ERRORS`; retry when `retriable`."""

    def __init__(self, code: str, message: str | None = None, retriable: bool | None = None
                 ) -> None:
        spec = ERRORS.get(code) or ERRORS["internal"]
        self.code = code
        self.message = message or spec.description
        self.retriable = spec.retriable if retriable is None else retriable
        super().__init__(f"{code}: {self.message}")
