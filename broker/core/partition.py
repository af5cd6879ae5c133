"""The per-partition pieces of a group's state: its delivery policy, its leases and the
offsets bookkeeping of one partition (floor, acked, cursor, ready, delayed, counts).

Plain synchronous data structures over `RangeSet`; `broker.core.group` drives them.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from broker.core.ranges import RangeSet

# Reserved record header carrying a send delay: the epoch ms before which the
# message must not be delivered. Stripped from the headers handed to consumers.
DELIVER_AT_HEADER = "x-spoolmq-deliver-at-ms"
HISTORY_ATTEMPTS = 10  # attempts kept per message: enough to see a crash loop's pattern
HISTORY_MESSAGES = 1000  # messages with history per group, oldest evicted: bounds memory
READ_BYTES = 4 << 20  # one log read per receive step: big enough for 1,000 x 4 KiB messages


@dataclass(slots=True)
class Policy:
    """The delivery settings of a topic, resolved against the broker defaults."""

    visibility_s: float = 30.0
    max_deliveries: int = 10
    dead_letter: bool = True
    backoff_s: tuple[float, ...] = ()

    def backoff_for(self, count: int) -> float:
        """The redelivery delay after the count-th delivery failed (0: at once)."""
        if not self.backoff_s:
            return 0.0
        return self.backoff_s[min(count, len(self.backoff_s)) - 1]


class Lease:
    __slots__ = ("consumer", "deadline", "extended", "id", "partition", "pending", "started")

    def __init__(self, lease_id: int, partition: int, lo: int, hi: int, deadline: float,
                 consumer: str, started: float) -> None:
        self.id = lease_id
        self.partition = partition
        self.pending = RangeSet(((lo, hi),))
        self.deadline = deadline
        self.consumer = consumer
        self.started = started
        # Offsets whose deadline was changed apart from the rest of the lease.
        self.extended: dict[int, float] | None = None

    def deadline_of(self, offset: int) -> float:
        if self.extended is None:
            return self.deadline
        return self.extended.get(offset, self.deadline)

    def next_deadline(self) -> float:
        if self.extended is None:
            return self.deadline
        soonest = min(self.extended.values()) if self.extended else self.deadline
        if len(self.extended) < len(self.pending):
            soonest = min(soonest, self.deadline)
        return soonest


class PartitionState:
    __slots__ = ("acked", "counts", "cursor", "delayed", "floor", "in_flight", "ready",
                 "redrives")

    def __init__(self, start: int) -> None:
        self.floor = start
        self.cursor = start
        self.acked = RangeSet()
        self.ready = RangeSet()
        self.delayed: list[tuple[float, int, int]] = []
        self.counts: dict[int, int] = {}
        self.redrives: dict[int, int] = {}
        self.in_flight = 0

    def advance_floor(self) -> None:
        first = self.acked.first()
        if first is not None and first[0] <= self.floor:
            self.acked.remove(first[0], first[1])
            self.floor = max(self.floor, first[1])

    def mark_done(self, lo: int, hi: int) -> None:
        self.acked.add(lo, hi)
        self.advance_floor()

    def promote(self, now: float) -> None:
        """Move delayed entries that are due into `ready`."""
        delayed = self.delayed
        while delayed and delayed[0][0] <= now:
            _, lo, hi = heapq.heappop(delayed)
            self.ready.add(lo, hi)

    def next_due(self) -> float | None:
        return self.delayed[0][0] if self.delayed else None

    def forget_counts(self, lo: int, hi: int) -> None:
        for table in (self.counts, self.redrives):
            if not table:
                continue
            if hi - lo <= len(table):
                for off in range(lo, hi):
                    table.pop(off, None)
            else:
                for off in [k for k in table if lo <= k < hi]:
                    del table[off]

    def clamp(self, start: int) -> int:
        """The log no longer holds offsets below `start`: forget them. Returns how many
        not-yet-done messages were dropped."""
        if self.floor >= start:
            return 0
        dropped = (start - self.floor) - self.acked.count_range(self.floor, start)
        self.acked.discard_below(start)
        self.floor = start
        self.advance_floor()
        self.cursor = max(self.cursor, start)
        self.ready.discard_below(start)
        if self.delayed:
            self.delayed = [(t, max(lo, start), hi) for t, lo, hi in self.delayed if hi > start]
            heapq.heapify(self.delayed)
        self.forget_counts(0, start)
        return max(0, dropped)

    def reset(self, offset: int) -> None:
        self.floor = self.cursor = offset
        self.acked.clear()
        self.ready.clear()
        self.delayed.clear()
        self.counts.clear()
        self.redrives.clear()

    def backlog(self, end: int) -> int:
        """Messages this group still has to finish in [floor, end): ready + in flight."""
        return max(0, end - self.floor - len(self.acked))
