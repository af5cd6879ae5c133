"""Receipts: the string a consumer hands back to ack, nack or extend one delivered message.

A receipt names `incarnation:lease:partition:offset:topic:group`. ':' cannot occur
in a topic or group name, so splitting is unambiguous and cheap; the incarnation
(random per broker start) makes every receipt of an earlier run stale. A receipt
is a name, not a capability: the core still checks that the offset is leased
under that lease id right now.

A range receipt puts "first-last" (inclusive) in the offset's place and settles a
whole run of one lease at once (all of it or none): see `range_receipt`.
"""

from __future__ import annotations

from typing import NamedTuple

from broker.api import DeliveryBatch

SEP = ":"


class Receipt(NamedTuple):
    incarnation: str
    lease_id: int
    partition: int
    offset: int
    topic: str
    group: str


def receipt_prefix(incarnation: str, lease_id: int, partition: int) -> str:
    """The shared head of every receipt of one lease: append `offset:topic:group`."""
    return f"{incarnation}{SEP}{lease_id}{SEP}{partition}{SEP}"


def encode(r: Receipt) -> str:
    return (f"{receipt_prefix(r.incarnation, r.lease_id, r.partition)}"
            f"{r.offset}{SEP}{r.topic}{SEP}{r.group}")


def decode(text: object) -> Receipt | None:
    """The receipt's parts, or None when `text` is not a well-formed receipt."""
    if not isinstance(text, str) or len(text) > 600:
        return None
    parts = text.split(SEP)
    if len(parts) != 6:
        return None
    inc, lease, part, off, topic, group = parts
    if not (lease.isdigit() and part.isdigit() and off.isdigit() and topic and group and inc):
        return None
    return Receipt(inc, int(lease), int(part), int(off), topic, group)


def range_receipt(first: str, last_offset: int) -> str:
    """The receipt covering `first`'s offset through last_offset of the same lease.

    Raises ValueError when `first` is not a single-offset receipt or the run is empty.
    """
    r = decode(first)
    if r is None or last_offset < r.offset:
        raise ValueError(f"cannot make a range receipt from {first!r} to {last_offset}")
    return (f"{receipt_prefix(r.incarnation, r.lease_id, r.partition)}"
            f"{r.offset}-{last_offset}{SEP}{r.topic}{SEP}{r.group}")


def run_receipt(incarnation: str, lease_id: int, partition: int, first: int, last: int,
                topic: str, group: str) -> str:
    """The receipt of offsets first..last (inclusive) of one lease: a single receipt when
    first == last, else a range receipt."""
    off = str(first) if first == last else f"{first}-{last}"
    return f"{receipt_prefix(incarnation, lease_id, partition)}{off}{SEP}{topic}{SEP}{group}"


def batch_receipts(b: DeliveryBatch) -> list[str]:
    """The receipt of every message of a delivered batch, in order."""
    prefix = receipt_prefix(b.incarnation, b.lease_id, b.partition)
    suffix = f"{SEP}{b.topic}{SEP}{b.group}"
    return [f"{prefix}{off}{suffix}" for off in range(b.offset, b.offset + len(b.values))]


def batch_range_receipt(b: DeliveryBatch, start: int = 0, stop: int | None = None) -> str:
    """One receipt for messages [start, stop) of a delivered batch (all of it by default)."""
    stop = len(b.values) if stop is None else stop
    return run_receipt(b.incarnation, b.lease_id, b.partition, b.offset + start,
                       b.offset + stop - 1, b.topic, b.group)
