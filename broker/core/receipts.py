"""Receipts: the string a consumer hands back to ack, nack or extend one delivered message.

A receipt names `incarnation:lease:partition:offset:topic:group`. ':' cannot occur
in a topic or group name, so splitting is unambiguous and cheap; the incarnation
(random per broker start) makes every receipt of an earlier run stale. A receipt
is a name, not a capability: the core still checks that the offset is leased
under that lease id right now.
"""

from __future__ import annotations

from typing import NamedTuple

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
