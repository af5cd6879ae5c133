"""One consumer group of one topic: ack floors, acked ranges, cursors, leases, redelivery,
delivery counts, dead letters and delivery history.

Per partition a group keeps:
  floor   every offset below it is acked (or dead-lettered) — DESIGN.md's ack floor;
  acked   done offsets at or above the floor, as ranges, until the gap below closes;
  cursor  the next never-delivered offset; first deliveries follow offset order;
  ready   offsets to deliver again now (lease expired or nacked), as ranges;
  delayed (ready_at, lo, hi) entries waiting for a back-off, a nack delay or a send delay;
  counts  delivery counts that are not 1 (0: deferred before its first delivery).

A lease is a contiguous run of offsets handed to one consumer in one receive with one
deadline; its still-unsettled offsets are a RangeSet, so acking a run is one splice.
Every offset >= floor is in exactly one of: acked, a lease, ready, delayed, >= cursor.

Pure and synchronous: time comes in as `now`; the only I/O is `PartitionLog.read`.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import msgpack

from broker.api import DeliveryBatch, HistoryEntry
from broker.core.meters import RateMeter
from broker.core.partition import (
    DELIVER_AT_HEADER,
    HISTORY_ATTEMPTS,
    HISTORY_MESSAGES,
    READ_BYTES,
    Lease,
    PartitionState,
    Policy,
)
from broker.core.ranges import RangeSet
from broker.core.runs import RunBuilder
from storage.api import PartitionLog
from storage.errors import StorageError


class GroupState:
    """A group's state on one topic. `dirty` says the durable part changed since the last
    `to_record()`; `dead_dirty` lists dead-letter ids to write or delete."""

    def __init__(self, topic: str, name: str, starts: list[int], policy: Policy,
                 now: float) -> None:
        self.topic = topic
        self.name = name
        self.policy = policy
        self.parts = [PartitionState(s) for s in starts]
        self.leases: dict[int, Lease] = {}
        self.expiry: list[tuple[float, int]] = []
        self.in_flight = 0
        self.created = now
        self.last_active = now
        # dead-letter id -> its record, msgpack-encoded (read through `dead_record`): a
        # flood of poison messages parks hundreds of thousands, and the bytes take a
        # fraction of the memory the dicts would.
        self.dead: dict[str, bytes] = {}
        self.dead_dirty: set[str] = set()
        self.history: OrderedDict[tuple[int, int], list[HistoryEntry]] = OrderedDict()
        self.redeliveries = 0
        self.dropped = 0
        self.rr = 0
        self.dirty = True
        self.consumers: dict[str, float] = {}
        self.opened: list[int] = []  # lease ids opened by the current receive (auto-ack)
        self.rate_out = RateMeter()

    # -- leases
    def expire(self, now: float) -> int:
        """Give back every lease offset whose deadline passed. Returns how many."""
        expiry = self.expiry
        total = 0
        while expiry and expiry[0][0] <= now:
            _, lease_id = heapq.heappop(expiry)
            lease = self.leases.get(lease_id)
            if lease is None or lease.next_deadline() > now:
                continue  # settled, or extended (a later entry was pushed)
            total += self._expire_lease(lease, now)
        if len(expiry) > 4 * len(self.leases) + 64:
            self.expiry = [(ls.next_deadline(), ls.id) for ls in self.leases.values()]
            heapq.heapify(self.expiry)
        return total

    def _expire_lease(self, lease: Lease, now: float) -> int:
        # A back-off counts from the deadline that passed, not from when it was noticed.
        if lease.extended is None:
            runs = [(lo, hi, lease.deadline) for lo, hi in lease.pending]
            lease.pending.clear()
        else:
            ext = lease.extended
            due = [o for o in lease.pending.offsets() if ext.get(o, lease.deadline) <= now]
            runs = [(o, o + 1, ext.get(o, lease.deadline)) for o in due]
            for o in due:
                lease.pending.remove(o, o + 1)
                ext.pop(o, None)
        total = 0
        for lo, hi, at in runs:
            total += hi - lo
            self._give_back(lease, lo, hi, now, "expired", None, at)
        self._after_settle(lease)
        return total

    def _after_settle(self, lease: Lease) -> None:
        if not lease.pending:
            del self.leases[lease.id]
        elif lease.extended is not None:
            heapq.heappush(self.expiry, (lease.next_deadline(), lease.id))

    def _give_back(self, lease: Lease, lo: int, hi: int, now: float, outcome: str,
                   delay: float | None, since: float | None = None) -> None:
        """Offsets [lo, hi) of `lease` come back: ready again, delayed, or dead-lettered."""
        p = lease.partition
        ps = self.parts[p]
        n = hi - lo
        ps.in_flight -= n
        self.in_flight -= n
        policy = self.policy
        for off in range(lo, hi):
            count = ps.counts.get(off, 1)
            self._record(p, off, HistoryEntry(count, lease.consumer, lease.started, outcome))
            if policy.dead_letter and count >= policy.max_deliveries:
                self._dead_letter(ps, p, off, count, now,
                                  f"max deliveries ({policy.max_deliveries}) reached; "
                                  f"last attempt {outcome}")
                continue
            wait = delay if delay is not None else policy.backoff_for(count)
            ready_at = (now if since is None else since) + wait
            if ready_at > now:
                heapq.heappush(ps.delayed, (ready_at, off, off + 1))
            else:
                ps.ready.add(off, off + 1)
        self.dirty = True

    def _record(self, p: int, off: int, entry: HistoryEntry) -> None:
        key = (p, off)
        entries = self.history.get(key)
        if entries is None:
            entries = self.history[key] = []
            if len(self.history) > HISTORY_MESSAGES:
                self.history.popitem(last=False)
        entries.append(entry)
        if len(entries) > HISTORY_ATTEMPTS:
            del entries[0]

    def _dead_letter(self, ps: PartitionState, p: int, off: int, count: int, now: float,
                     reason: str) -> None:
        dl_id = f"{p}:{off}"
        hist = self.history.pop((p, off), [])
        self.dead[dl_id] = _pack_record({
            "id": dl_id, "p": p, "off": off, "reason": reason, "count": count, "at": now,
            "history": [[h.attempt, h.consumer, h.lease_start, h.outcome] for h in hist]
            + [[count, "", now, "dead_lettered"]],
            "redrives": ps.redrives.pop(off, 0),
        })
        self.dead_dirty.add(dl_id)
        ps.counts.pop(off, None)
        ps.mark_done(off, off + 1)

    def ack_run(self, lease: Lease, lo: int, hi: int, now: float) -> None:
        """Offsets [lo, hi), all pending in `lease`, are done."""
        ps = self.parts[lease.partition]
        lease.pending.remove(lo, hi)
        if lease.extended is not None:
            for off in range(lo, hi):
                lease.extended.pop(off, None)
        n = hi - lo
        ps.in_flight -= n
        self.in_flight -= n
        if ps.counts and self.history:
            p = lease.partition
            for off in range(lo, hi) if hi - lo <= len(ps.counts) else list(ps.counts):
                if lo <= off < hi and (p, off) in self.history:
                    self._record(p, off, HistoryEntry(ps.counts.get(off, 1), lease.consumer,
                                                      lease.started, "acked"))
        ps.forget_counts(lo, hi)
        ps.mark_done(lo, hi)
        self._after_settle(lease)
        self.dirty = True

    def nack_run(self, lease: Lease, lo: int, hi: int, now: float, delay: float) -> None:
        lease.pending.remove(lo, hi)
        if lease.extended is not None:
            for off in range(lo, hi):
                lease.extended.pop(off, None)
        self._give_back(lease, lo, hi, now, "nacked", delay)
        self._after_settle(lease)

    def extend_offsets(self, lease: Lease, offsets: list[int], deadline: float) -> None:
        if len(offsets) >= len(lease.pending) and all(o in lease.pending for o in offsets):
            lease.deadline = deadline
            lease.extended = None
        else:
            if lease.extended is None:
                lease.extended = {}
            for off in offsets:
                lease.extended[off] = deadline
        heapq.heappush(self.expiry, (lease.next_deadline(), lease.id))

    def drop_leases(self, partition: int | None = None) -> None:
        """Forget leases (their receipts turn stale) — after a seek or purge."""
        for lease_id, lease in list(self.leases.items()):
            if partition is None or lease.partition == partition:
                n = len(lease.pending)
                self.parts[lease.partition].in_flight -= n
                self.in_flight -= n
                del self.leases[lease_id]

    def next_due(self) -> float | None:
        """The soonest time something becomes deliverable again (lease expiry or delay)."""
        times = [ps.delayed[0][0] for ps in self.parts if ps.delayed]
        if self.expiry:
            times.append(self.expiry[0][0])
        return min(times) if times else None

    # -- delivery
    def deliver(self, p: int, log: PartitionLog, visible_end: int, budget: int, now: float,
                consumer: str, deadline: float, incarnation: str,
                new_lease_id: Callable[[], int], out: list[DeliveryBatch]) -> int:
        """Lease up to `budget` messages of partition p into `out`: redeliveries first,
        then from the cursor. Returns how many were delivered."""
        ps = self.parts[p]
        start = log.start_offset
        if ps.floor < start:
            self.dropped += ps.clamp(start)
            self.dirty = True
        ps.promote(now)
        got = 0
        while got < budget and ps.ready:
            run = ps.ready.pop_first(budget - got)
            assert run is not None
            lo, hi = run
            try:
                n, covered = self._deliver_range(p, ps, log, lo, hi, True, now, consumer,
                                                 deadline, incarnation, new_lease_id, out)
            except StorageError:
                ps.ready.add(lo, hi)
                raise
            got += n
            if covered < hi:
                ps.ready.add(covered, hi)
                break
        while got < budget and ps.cursor < visible_end:
            lo = ps.cursor
            hi = min(visible_end, lo + budget - got)
            n, covered = self._deliver_range(p, ps, log, lo, hi, False, now, consumer, deadline,
                                             incarnation, new_lease_id, out)
            ps.cursor = covered
            got += n
            if covered == lo:
                break
        if got:
            self.dirty = True
        return got

    def _deliver_range(self, p: int, ps: PartitionState, log: PartitionLog, lo: int, hi: int,
                       again: bool, now: float, consumer: str, deadline: float,
                       incarnation: str, new_lease_id: Callable[[], int],
                       out: list[DeliveryBatch]) -> tuple[int, int]:
        """Deliver what one log read gives of [lo, hi), one DeliveryBatch per lease opened.
        Returns (delivered, covered-until)."""
        batches = log.read(lo, READ_BYTES, hi - lo)
        counts = ps.counts
        now_ms = now * 1000.0
        delivered = 0
        covered = lo
        run: RunBuilder | None = None  # the lease being filled
        for b in batches:
            base = b.base_offset
            if base >= hi:
                break
            if base != covered:  # the log skipped (retention raced us): stop here
                break
            k_end = min(b.count, hi - base)
            values, keys, headers, ts = b.values, b.keys, b.headers, b.timestamp_ms
            if headers is None and not again:
                # The common case: first deliveries, no headers, so no send delays.
                if run is None:
                    run = RunBuilder(new_lease_id(), base)
                run.add_plain(values, keys, ts, k_end)
                delivered += k_end
                covered = base + k_end
                continue
            for i in range(k_end):
                off = base + i
                hdr = None if headers is None else headers[i]
                if hdr is not None and DELIVER_AT_HEADER in hdr:
                    due = hdr[DELIVER_AT_HEADER]
                    if isinstance(due, int | float) and due > now_ms:
                        if run is not None:
                            self._close_run(p, ps, run, off, deadline, consumer, now,
                                            incarnation, out)
                            run = None
                        if not again:
                            counts[off] = 0
                        heapq.heappush(ps.delayed, (due / 1000.0, off, off + 1))
                        continue
                    hdr = {k: v for k, v in hdr.items() if k != DELIVER_AT_HEADER} or None
                if run is None:
                    run = RunBuilder(new_lease_id(), off)
                if again:
                    count = counts.get(off, 1) + 1
                    if count == 1:
                        del counts[off]
                    else:
                        counts[off] = count
                        self.redeliveries += 1
                else:
                    count = 1
                run.add_one(values[i], None if keys is None else keys[i], hdr, ts, count)
                delivered += 1
            covered = base + k_end
        if run is not None:
            self._close_run(p, ps, run, covered, deadline, consumer, now, incarnation, out)
        return delivered, covered

    def _close_run(self, p: int, ps: PartitionState, run: RunBuilder, hi: int, deadline: float,
                   consumer: str, now: float, incarnation: str,
                   out: list[DeliveryBatch]) -> None:
        self._open_lease(p, ps, run.lease_id, run.first, hi, deadline, consumer, now)
        out.append(run.build(self.topic, self.name, p, deadline, incarnation))

    def _open_lease(self, p: int, ps: PartitionState, lease_id: int, lo: int, hi: int,
                    deadline: float, consumer: str, now: float) -> None:
        self.leases[lease_id] = Lease(lease_id, p, lo, hi, deadline, consumer, now)
        self.opened.append(lease_id)
        heapq.heappush(self.expiry, (deadline, lease_id))
        ps.in_flight += hi - lo
        self.in_flight += hi - lo

    # -- admin
    def seek(self, partition: int, offset: int) -> None:
        """Replay (or skip) from `offset`: leases of the partition turn stale."""
        self.drop_leases(partition)
        self.parts[partition].reset(offset)
        self.dirty = True

    def redrive(self, ids: list[str], start_of: Callable[[int], int]) -> int:
        """Hand the dead letters `ids` back to this group: ready now, count reset, lineage
        kept. Letters whose record the log no longer holds are dropped. Returns how many."""
        done = 0
        for dl_id in ids:
            packed = self.dead.pop(dl_id, None)
            if packed is None:
                continue
            rec = _unpack_record(packed)
            self.dead_dirty.add(dl_id)
            p, off = int(rec["p"]), int(rec["off"])
            if p >= len(self.parts) or off < start_of(p):
                continue
            ps = self.parts[p]
            if off < ps.floor:
                ps.acked.add(off + 1, ps.floor)
                ps.floor = off
            else:
                ps.acked.remove(off, off + 1)
            ps.ready.add(off, off + 1)
            ps.counts[off] = 0
            ps.redrives[off] = int(rec.get("redrives", 0)) + 1
            done += 1
        self.dirty = True
        return done

    def dead_record(self, dl_id: str) -> dict[str, Any] | None:
        """The dead letter's record (id, p, off, reason, count, at, history, redrives)."""
        packed = self.dead.get(dl_id)
        return None if packed is None else _unpack_record(packed)

    def dead_items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(id, record) of every dead letter, oldest first, decoded as they are taken."""
        for dl_id, packed in list(self.dead.items()):
            yield dl_id, _unpack_record(packed)

    def backlog(self, ends: list[int]) -> int:
        return sum(ps.backlog(end) for ps, end in zip(self.parts, ends, strict=False))

    # -- persistence
    def to_record(self) -> dict[str, Any]:
        """The durable part (leases and delays are not: they restart as 'ready')."""
        parts = []
        for ps in self.parts:
            counts = [x for off, c in ps.counts.items() if c >= 2 for x in (off, c)]
            redrives = [x for item in ps.redrives.items() for x in item]
            parts.append([ps.floor, ps.cursor, ps.acked.to_flat(), counts, redrives])
        return {"v": 1, "created": self.created, "last": self.last_active,
                "redeliveries": self.redeliveries, "dropped": self.dropped, "parts": parts}

    @classmethod
    def from_record(cls, topic: str, name: str, rec: dict[str, Any], starts: list[int],
                    policy: Policy, dead: dict[str, dict[str, Any]]) -> GroupState:
        """Rebuild after a restart: every offset in [floor, cursor) not done is ready again."""
        g = cls(topic, name, starts, policy, float(rec.get("created", 0.0)))
        g.last_active = float(rec.get("last", g.created))
        g.redeliveries = int(rec.get("redeliveries", 0))
        g.dropped = int(rec.get("dropped", 0))
        for p, raw in enumerate(rec.get("parts", [])[: len(starts)]):
            floor, cursor, acked, counts, redrives = raw
            ps = g.parts[p]
            ps.floor, ps.cursor = int(floor), int(cursor)
            ps.acked = RangeSet.from_flat(list(acked))
            ps.counts = {int(counts[i]): int(counts[i + 1]) for i in range(0, len(counts), 2)}
            ps.redrives = {int(redrives[i]): int(redrives[i + 1])
                           for i in range(0, len(redrives), 2)}
            ps.ready.add(ps.floor, ps.cursor)
            for lo, hi in ps.acked:
                ps.ready.remove(lo, hi)
            g.dropped += ps.clamp(starts[p])
        g.dead = {dl_id: _pack_record(rec) for dl_id, rec in dead.items()}
        g.dirty = False
        return g


def _pack_record(rec: dict[str, Any]) -> bytes:
    packed: bytes = msgpack.packb(rec, use_bin_type=True)
    return packed


def _unpack_record(packed: bytes) -> dict[str, Any]:
    rec: dict[str, Any] = msgpack.unpackb(packed, raw=False)
    return rec
