"""Read-only views of the core: topic, group and client infos, the snapshot, leases,
dead letters and browse. They change nothing (browse runs off the event loop).
"""

from __future__ import annotations

from itertools import islice

from broker.api import (
    DeadLetter,
    GroupInfo,
    HistoryEntry,
    LeaseInfo,
    Snapshot,
    StoredMessage,
    TopicInfo,
)
from broker.core.core import Core
from broker.core.group import GroupState
from broker.core.partition import DELIVER_AT_HEADER
from broker.core.topic import TopicState
from broker.errors import BrokerError
from storage.errors import StorageError

BROWSE_STEP_BYTES = 1 << 20  # bytes one browse step reads: a few ms of event-loop time


def dead_letters(core: Core, t: TopicState, g: GroupState, limit: int) -> list[DeadLetter]:
    out = []
    for _, rec in islice(g.dead_items(), limit):
        p, off = int(rec["p"]), int(rec["off"])
        value = None
        try:
            batches = t.logs[p].read(off, 1 << 20, 1)
            if batches and batches[0].base_offset == off:
                value = batches[0].values[0]
        except StorageError:
            value = None
        out.append(DeadLetter(str(rec["id"]), t.name, g.name, p, off, str(rec["reason"]),
                              int(rec["count"]), float(rec["at"]),
                              [HistoryEntry(int(h[0]), str(h[1]), float(h[2]), str(h[3]))
                               for h in rec.get("history", [])],
                              value, int(rec.get("redrives", 0))))
    return out


def leases(g: GroupState, limit: int) -> list[LeaseInfo]:
    out: list[LeaseInfo] = []
    for lease in g.leases.values():
        counts = g.parts[lease.partition].counts
        for off in lease.pending.offsets():
            out.append(LeaseInfo(lease.partition, off, lease.consumer, counts.get(off, 1),
                                 lease.deadline_of(off)))
            if len(out) >= limit:
                return out
    return out


def browse(t: TopicState, partition: int, offset: int | None, key: bytes | None,
           text: str | None, limit: int, scan_bytes: int = BROWSE_STEP_BYTES
           ) -> tuple[list[StoredMessage], int | None]:
    """Up to `limit` matching messages from `offset` on, reading about `scan_bytes`.
    Returns them and the offset to continue from (None at the end)."""
    if not 0 <= partition < t.partitions:
        raise BrokerError("invalid_argument", f"topic {t.name!r} has no partition "
                          f"{partition}")
    log = t.logs[partition]
    end = t.visible_end[partition]
    pos = log.start_offset if offset is None else max(offset, log.start_offset)
    needle = text.encode() if text else None
    out: list[StoredMessage] = []
    scanned = 0
    while pos < end and len(out) < limit and scanned < scan_bytes:
        batches = log.read(pos, 1 << 20, end - pos)
        if not batches:
            break
        for b in batches:
            for i in range(b.count):
                off = b.base_offset + i
                if off >= end or len(out) >= limit:
                    break
                pos = off + 1
                value = b.values[i]
                scanned += len(value)
                k = b.key(i)
                if key is not None and k != key:
                    continue
                if needle is not None and needle not in value:
                    continue
                hdr = b.header(i)
                if hdr is not None and DELIVER_AT_HEADER in hdr:
                    hdr = {h: v for h, v in hdr.items() if h != DELIVER_AT_HEADER} or None
                out.append(StoredMessage(t.name, partition, off, value, k, hdr,
                                         b.timestamp_ms))
            if len(out) >= limit:
                break
    return out, (pos if pos < end else None)


def group_info(core: Core, t: TopicState, g: GroupState, now: float) -> GroupInfo:
    lag = g.backlog(t.visible_end)
    oldest: float | None = None
    for p, ps in enumerate(g.parts):
        if ps.floor < t.visible_end[p]:
            try:
                ts = t.logs[p].timestamp_of(ps.floor)
            except StorageError:
                ts = None
            if ts is not None:
                age = max(0.0, now - ts / 1000.0)
                oldest = age if oldest is None else max(oldest, age)
    active = sum(1 for seen in g.consumers.values() if now - seen <= core.clients.window_s)
    return GroupInfo(t.name, g.name, lag - g.in_flight, g.in_flight, len(g.dead), lag,
                     oldest, {p: ps.floor for p, ps in enumerate(g.parts)}, active,
                     g.last_active, g.rate_out.rate(now), g.redeliveries)


def topic_info(core: Core, t: TopicState, now: float) -> TopicInfo:
    groups = [group_info(core, t, g, now) for g in t.groups.values()]
    starts = t.starts()
    stamps = [ts for ts in (log.oldest_timestamp_ms() for log in t.logs) if ts is not None]
    damaged = []
    for p, log in enumerate(t.logs):
        d = log.damage
        if d is not None:
            damaged.append({"partition": p, "first_offset": d.first_offset,
                            "last_offset": d.last_offset, "segment": d.segment,
                            "position": d.position, "reason": d.reason})
    return TopicInfo(
        t.name, t.config, t.partitions, starts, list(t.visible_end),
        sum(max(0, e - s) for s, e in zip(starts, t.visible_end, strict=True)),
        t.backlog(), sum(log.size_bytes() for log in t.logs),
        sum(g.in_flight for g in groups), sum(g.dead_lettered for g in groups),
        min(stamps) if stamps else None, groups, t.rate_in.rate(now), t.rate_out.rate(now),
        damaged)


def client_in_flight(core: Core) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in core.topics.values():
        for g in t.groups.values():
            for lease in g.leases.values():
                counts[lease.consumer] = counts.get(lease.consumer, 0) + len(lease.pending)
    return counts


def snapshot(core: Core, now: float) -> Snapshot:
    topics = [topic_info(core, t, now) for t in core.topics.values()]
    groups = [g for ti in topics for g in ti.groups]
    ages = [g.oldest_unacked_age_s for g in groups if g.oldest_unacked_age_s is not None]
    return Snapshot(
        now, sum(ti.messages_in_queue for ti in topics), sum(g.ready for g in groups),
        sum(g.in_flight for g in groups), sum(g.dead_lettered for g in groups),
        core.clients.active("producer", now), core.clients.active("consumer", now),
        core.rate_in.rate(now), core.rate_out.rate(now), core.rate_acks.rate(now),
        core.rate_redeliveries.rate(now), max(ages) if ages else None, topics,
        core.clients.infos(now, client_in_flight(core)))
