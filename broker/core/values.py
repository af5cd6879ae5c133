"""Fast constructors for the frozen values the hot path returns per message.

`Delivery`, `ReceiptResult` and `SendOutcome` are frozen, slotted dataclasses
(broker.api); their generated `__init__` goes through `object.__setattr__` once per
field, which costs about twice as much as setting the slots directly. These
builders produce identical, still-frozen instances by writing each slot through
its member descriptor. Only for the per-message paths; elsewhere call the class.
"""

from __future__ import annotations

from typing import Any

from broker.api import Delivery, DeliveryBatch, ReceiptResult, SendOutcome
from broker.core.receipts import SEP, receipt_prefix

_new = object.__new__
(_d_topic, _d_partition, _d_offset, _d_value, _d_key, _d_headers, _d_ts, _d_count, _d_receipt,
 _d_deadline) = (getattr(Delivery, f).__set__ for f in (
    "topic", "partition", "offset", "value", "key", "headers", "timestamp_ms",
    "delivery_count", "receipt", "deadline"))
_r_receipt, _r_error, _r_message, _r_deadline = (getattr(ReceiptResult, f).__set__ for f in (
    "receipt", "error", "message", "deadline"))
_s_partition, _s_offset, _s_duplicate = (getattr(SendOutcome, f).__set__ for f in (
    "partition", "offset", "duplicate"))


def delivery(topic: str, partition: int, offset: int, value: bytes, key: bytes | None,
             headers: dict[str, Any] | None, timestamp_ms: int, count: int, receipt: str,
             deadline: float) -> Delivery:
    d: Delivery = _new(Delivery)
    _d_topic(d, topic)
    _d_partition(d, partition)
    _d_offset(d, offset)
    _d_value(d, value)
    _d_key(d, key)
    _d_headers(d, headers)
    _d_ts(d, timestamp_ms)
    _d_count(d, count)
    _d_receipt(d, receipt)
    _d_deadline(d, deadline)
    return d


def receipt_ok(receipt: str, deadline: float | None = None) -> ReceiptResult:
    r: ReceiptResult = _new(ReceiptResult)
    _r_receipt(r, receipt)
    _r_error(r, None)
    _r_message(r, None)
    _r_deadline(r, deadline)
    return r


def outcome(partition: int, offset: int, duplicate: bool = False) -> SendOutcome:
    o: SendOutcome = _new(SendOutcome)
    _s_partition(o, partition)
    _s_offset(o, offset)
    _s_duplicate(o, duplicate)
    return o


def deliveries(batches: list[DeliveryBatch]) -> list[Delivery]:
    """One Delivery per message of the batches, each with its own receipt."""
    out: list[Delivery] = []
    for b in batches:
        topic, p, deadline = b.topic, b.partition, b.deadline
        prefix = receipt_prefix(b.incarnation, b.lease_id, p)
        suffix = f"{SEP}{topic}{SEP}{b.group}"
        n = len(b.values)
        keys = b.keys or [None] * n
        headers = b.headers or [None] * n
        ts = b.timestamps if isinstance(b.timestamps, list) else [b.timestamps] * n
        counts = (b.delivery_counts if isinstance(b.delivery_counts, list)
                  else [b.delivery_counts] * n)
        out.extend([delivery(topic, p, off, v, k, h, t, c, f"{prefix}{off}{suffix}", deadline)
                    for off, v, k, h, t, c in zip(range(b.offset, b.offset + n), b.values, keys,
                                                  headers, ts, counts, strict=True)])
    return out
