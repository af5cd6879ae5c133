"""The ops table and the wire forms of the broker's values (columnar message batches,
admin snapshots) shared by the server session and the native client.

Owns how `broker.api` values look inside request and response maps. Messages
travel as columns (one list per field) so a batch of N messages costs one
msgpack array per field, not N maps. Must not do I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from broker.api import (
    ClientInfo,
    Delivery,
    DeliveryBatch,
    GroupInfo,
    ReceiptResult,
    Snapshot,
    TopicConfig,
    TopicInfo,
)
from broker.core.receipts import batch_receipts


@dataclass(frozen=True, slots=True)
class OpSpec:
    """One op: the right a token needs for it, and whether repeating it is harmless
    (the client re-sends idempotent requests that were cut off by a lost connection)."""

    name: str
    right: str  # "produce" | "consume" | "admin" | "" (any connected client)
    idempotent: bool
    topic_arg: str | None = "topic"  # the argument that names the topic, for authorization


OPS: Final[dict[str, OpSpec]] = {
    spec.name: spec
    for spec in (
        OpSpec("ping", "", True, None),
        OpSpec("send", "produce", False),
        OpSpec("receive", "consume", False),
        OpSpec("ack", "consume", False, None),
        OpSpec("nack", "consume", False, None),
        OpSpec("extend", "consume", False, None),
        OpSpec("subscribe", "consume", False),
        OpSpec("unsubscribe", "consume", True, None),
        OpSpec("topics", "admin", True, None),
        OpSpec("describe_topic", "admin", True, "name"),
        OpSpec("create_topic", "admin", False, "name"),
        OpSpec("purge_topic", "admin", False, "name"),
        OpSpec("delete_topic", "admin", False, "name"),
        OpSpec("groups", "admin", True),
        OpSpec("describe_group", "admin", True),
        OpSpec("delete_group", "admin", False),
        OpSpec("seek_group", "admin", False),
        OpSpec("dead_letters", "admin", True),
        OpSpec("redrive", "admin", False),
        OpSpec("browse", "admin", True),
        OpSpec("stats", "admin", True, None),
    )
}


# -- message batches ----------------------------------------------------------------------

def deliveries_to_columns(topic: str, deliveries: Sequence[Delivery]) -> dict[str, Any]:
    """The columnar map of leased messages: one list per field; `key` and `headers`
    are nil when no message has one."""
    n = len(deliveries)
    keys = [d.key for d in deliveries]
    headers = [d.headers for d in deliveries]
    return {
        "topic": topic,
        "partition": [d.partition for d in deliveries],
        "offset": [d.offset for d in deliveries],
        "value": [d.value for d in deliveries],
        "key": keys if keys.count(None) != n else None,
        "headers": headers if headers.count(None) != n else None,
        "timestamp_ms": [d.timestamp_ms for d in deliveries],
        "delivery_count": [d.delivery_count for d in deliveries],
        "receipt": [d.receipt for d in deliveries],
        "deadline": [d.deadline for d in deliveries],
    }


def batches_to_columns(topic: str, batches: Sequence[DeliveryBatch]) -> dict[str, Any]:
    """`deliveries_to_columns` of delivered batches (a push, or a receive without "runs"):
    whole columns are joined, receipts derived."""
    values: list[bytes] = []
    partitions: list[int] = []
    offsets: list[int] = []
    times: list[int] = []
    counts: list[int] = []
    receipts: list[str] = []
    deadlines: list[float] = []
    any_keys = any(b.keys is not None for b in batches)
    any_headers = any(b.headers is not None for b in batches)
    keys: list[bytes | None] = []
    headers: list[dict[str, Any] | None] = []
    for b in batches:
        n = len(b.values)
        values.extend(b.values)
        partitions.extend([b.partition] * n)
        offsets.extend(range(b.offset, b.offset + n))
        times.extend(b.timestamps if isinstance(b.timestamps, list) else [b.timestamps] * n)
        counts.extend(b.delivery_counts if isinstance(b.delivery_counts, list)
                      else [b.delivery_counts] * n)
        receipts.extend(batch_receipts(b))
        deadlines.extend([b.deadline] * n)
        if any_keys:
            keys.extend(b.keys if b.keys is not None else [None] * n)
        if any_headers:
            headers.extend(b.headers if b.headers is not None else [None] * n)
    return {"topic": topic, "partition": partitions, "offset": offsets, "value": values,
            "key": keys if any_keys else None, "headers": headers if any_headers else None,
            "timestamp_ms": times, "delivery_count": counts, "receipt": receipts,
            "deadline": deadlines}


def batches_to_runs(topic: str, group: str, incarnation: str,
                    batches: Sequence[DeliveryBatch]) -> dict[str, Any]:
    """The "runs" form of a receive result: one array per lease, its columns passed as
    they are; receipts are left to the client to derive (see docs/protocol.md)."""
    return {"topic": topic, "group": group, "incarnation": incarnation,
            "runs": [[b.partition, b.offset, b.lease_id, b.deadline, b.values, b.keys,
                      b.headers, b.timestamps, b.delivery_counts] for b in batches]}


RunRow = tuple[int, int, int, float, list[bytes], list[Any] | None, list[Any] | None,
               list[int] | int, list[int] | int]


def runs_from_wire(result: Any) -> tuple[str, str, str, list[RunRow]]:
    """(topic, group, incarnation, runs) of a "runs" receive result; raise ValueError
    when it is malformed."""
    if not isinstance(result, dict):
        raise ValueError("receive result must be a map")
    topic, group, inc, runs = (result.get("topic"), result.get("group"),
                               result.get("incarnation"), result.get("runs"))
    if not (isinstance(topic, str) and isinstance(group, str) and isinstance(inc, str)
            and isinstance(runs, list)):
        raise ValueError("receive result needs topic, group, incarnation and runs")
    out: list[RunRow] = []
    for run in runs:
        if not isinstance(run, list) or len(run) != 9:
            raise ValueError("a run must be an array of 9")
        p, off, lease, deadline, values, keys, headers, ts, counts = run
        if not (type(p) is int and type(off) is int and type(lease) is int
                and isinstance(deadline, int | float) and isinstance(values, list)):
            raise ValueError("a run's partition, offset, lease, deadline or values are bad")
        n = len(values)
        for name, col in (("keys", keys), ("headers", headers)):
            if col is not None and (not isinstance(col, list) or len(col) != n):
                raise ValueError(f"a run's {name} must be nil or a list of {n}")
        for name, col in (("timestamps", ts), ("delivery counts", counts)):
            if not (type(col) is int or (isinstance(col, list) and len(col) == n)):
                raise ValueError(f"a run's {name} must be an int or a list of {n}")
        out.append((p, off, lease, float(deadline), values, keys, headers, ts, counts))
    return topic, group, inc, out


_COLUMNS: Final = ("partition", "offset", "value", "timestamp_ms", "delivery_count", "receipt",
                   "deadline")


def columns_rows(cols: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Rows (topic, partition, offset, value, key, headers, timestamp_ms, delivery_count,
    receipt, deadline) of a columnar map; raise ValueError when the columns disagree."""
    topic = cols.get("topic")
    if not isinstance(topic, str):
        raise ValueError("messages: 'topic' must be a string")
    lists: list[list[Any]] = []
    for name in _COLUMNS:
        col = cols.get(name)
        if not isinstance(col, list):
            raise ValueError(f"messages: column {name!r} must be a list")
        lists.append(col)
    n = len(lists[1])
    keys = _optional_column(cols, "key", n)
    headers = _optional_column(cols, "headers", n)
    if any(len(col) != n for col in lists):
        raise ValueError("messages: columns of different lengths")
    part, off, val, ts, dc, rc, dl = lists
    return list(zip([topic] * n, part, off, val, keys, headers, ts, dc, rc, dl, strict=True))


def _optional_column(cols: dict[str, Any], name: str, n: int) -> list[Any]:
    col = cols.get(name)
    if col is None:
        return [None] * n
    if not isinstance(col, list) or len(col) != n:
        raise ValueError(f"messages: column {name!r} must be nil or a list of {n}")
    return col


def receipt_results_to_wire(results: Sequence[ReceiptResult],
                            with_deadlines: bool = False) -> dict[str, Any]:
    """{"errors": nil} when every receipt settled, else one error map (or nil) per receipt;
    extend adds "deadline", one per receipt."""
    out: dict[str, Any] = {"errors": None}
    codes = [r.error for r in results]
    if codes.count(None) != len(codes):
        out["errors"] = [None if r.error is None
                         else {"code": r.error, "message": r.message or ""} for r in results]
    if with_deadlines:
        out["deadline"] = [r.deadline for r in results]
    return out


def receipt_failures_from_wire(receipts: Sequence[str], result: Any) -> list[ReceiptResult]:
    """Only the receipts that failed, from an ack or nack response ([] when all settled)."""
    if not isinstance(result, dict):
        raise ValueError("settle result must be a map")
    errors = result.get("errors")
    if not errors:
        return []
    return [ReceiptResult(receipt, str(err.get("code")), err.get("message"))
            for receipt, err in zip(receipts, errors, strict=True) if isinstance(err, dict)]


def receipt_results_from_wire(receipts: Sequence[str], result: Any) -> list[ReceiptResult]:
    """The per-receipt outcomes of an ack, nack or extend response."""
    if not isinstance(result, dict):
        raise ValueError("settle result must be a map")
    errors = result.get("errors") or [None] * len(receipts)
    deadlines = result.get("deadline") or [None] * len(receipts)
    out = []
    for receipt, err, deadline in zip(receipts, errors, deadlines, strict=True):
        if isinstance(err, dict):
            out.append(ReceiptResult(receipt, str(err.get("code")), err.get("message"), deadline))
        else:
            out.append(ReceiptResult(receipt, None, None, deadline))
    return out


# -- admin values -------------------------------------------------------------------------

def to_wire(value: Any) -> Any:
    """A msgpack-ready copy of a `broker.api` value: dataclasses become maps, map keys
    become strings (msgpack maps here have string keys only), tuples become lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_wire(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    return value


def topic_config_from_wire(d: dict[str, Any]) -> TopicConfig:
    fields = {f.name for f in dataclasses.fields(TopicConfig)}
    kwargs = {k: v for k, v in d.items() if k in fields}
    if "backoff_s" in kwargs:
        kwargs["backoff_s"] = tuple(kwargs["backoff_s"])
    return TopicConfig(**kwargs)


def group_info_from_wire(d: dict[str, Any]) -> GroupInfo:
    kwargs = _known(GroupInfo, d)
    kwargs["ack_floor"] = {int(k): v for k, v in d.get("ack_floor", {}).items()}
    return GroupInfo(**kwargs)


def topic_info_from_wire(d: dict[str, Any]) -> TopicInfo:
    kwargs = _known(TopicInfo, d)
    kwargs["config"] = topic_config_from_wire(d.get("config") or {})
    kwargs["groups"] = [group_info_from_wire(g) for g in d.get("groups", [])]
    return TopicInfo(**kwargs)


def client_info_from_wire(d: dict[str, Any]) -> ClientInfo:
    kwargs = _known(ClientInfo, d)
    kwargs["roles"] = tuple(d.get("roles", ()))
    return ClientInfo(**kwargs)


def snapshot_from_wire(d: dict[str, Any]) -> Snapshot:
    kwargs = _known(Snapshot, d)
    kwargs["topics"] = [topic_info_from_wire(t) for t in d.get("topics", [])]
    kwargs["clients"] = [client_info_from_wire(c) for c in d.get("clients", [])]
    return Snapshot(**kwargs)


def _known(cls: Any, d: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in d.items() if k in names}
