"""A topic: its partitions' logs, its resolved settings, its groups and its send planning.

Owns partition choice (a key picks a partition by a stable hash; keyless messages of
one send go together to the next partition in round-robin order, so a batch stays
one append), size checks, the send-delay header and retention. Synchronous; the
only I/O is through the `PartitionLog`s it is given.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from broker.api import OutMessage, TopicConfig
from broker.config import Config
from broker.core.group import GroupState
from broker.core.meters import RateMeter
from broker.core.partition import DELIVER_AT_HEADER, Policy
from broker.errors import BrokerError
from storage.api import AppendEntry, Headers, PartitionLog

MAX_PARTITIONS = 1024  # one log (and open files) per partition; more is a mistake


def resolve_policy(cfg: TopicConfig, defaults: Config) -> Policy:
    return Policy(
        visibility_s=cfg.visibility_timeout_s or defaults.visibility_timeout_s,
        max_deliveries=cfg.max_deliveries or defaults.max_deliveries,
        dead_letter=cfg.dead_letter,
        backoff_s=tuple(cfg.backoff_s),
    )


def check_config(cfg: TopicConfig) -> None:
    """Raise BrokerError("invalid_argument") for settings out of range."""
    problems = []
    if not 1 <= cfg.partitions <= MAX_PARTITIONS:
        problems.append(f"partitions must be 1..{MAX_PARTITIONS}")
    if cfg.retention_s is not None and cfg.retention_s <= 0:
        problems.append("retention_s must be positive")
    if cfg.retention_bytes is not None and cfg.retention_bytes <= 0:
        problems.append("retention_bytes must be positive")
    if cfg.overflow not in ("refuse", "drop_oldest"):
        problems.append("overflow must be 'refuse' or 'drop_oldest'")
    if cfg.max_message_bytes is not None and cfg.max_message_bytes <= 0:
        problems.append("max_message_bytes must be positive")
    if cfg.visibility_timeout_s is not None and not 0 < cfg.visibility_timeout_s <= 43_200:
        problems.append("visibility_timeout_s must be in (0, 43200]")
    if cfg.max_deliveries is not None and cfg.max_deliveries < 1:
        problems.append("max_deliveries must be >= 1")
    if any(b < 0 or b > 43_200 for b in cfg.backoff_s):
        problems.append("backoff_s entries must be in [0, 43200]")
    if problems:
        raise BrokerError("invalid_argument", "; ".join(problems))


@dataclass(slots=True)
class SendPlan:
    """Where each message of one send goes. `slots[i]` is (partition, index in that
    partition's entry) or None for a duplicate already answered in `dups`; when
    `single` is set, slots is empty and message i is entry i of that partition."""

    topic: TopicState
    created: bool
    entries: dict[int, AppendEntry]
    slots: list[tuple[int, int] | None]
    dups: dict[int, tuple[int, int]] = field(default_factory=dict)
    message_ids: list[str | None] = field(default_factory=list)
    single: int | None = None  # every message goes to this partition, in order (no slots)


class TopicState:
    def __init__(self, name: str, config: TopicConfig, logs: list[PartitionLog],
                 defaults: Config, created_at: float) -> None:
        self.name = name
        self.config = config
        self.logs = logs
        self.policy = resolve_policy(config, defaults)
        self.max_message_bytes = config.max_message_bytes or defaults.max_message_bytes
        self.retention_s = config.retention_s or defaults.retention_s
        self.retention_bytes = config.retention_bytes or defaults.retention_bytes
        # Offsets below visible_end are durable (their append returned): only they are served.
        self.visible_end = [log.end_offset for log in logs]
        # A purge hides everything below these offsets even where the log keeps the
        # segment that holds them (logs delete whole segments only).
        self.purged_to = [0] * len(logs)
        self.groups: dict[str, GroupState] = {}
        self.rr = 0
        self.created_at = created_at
        self.rate_in = RateMeter()
        self.rate_out = RateMeter()
        self.deleted = False
        self.appending = 0  # appends in flight (delete waits for them)

    @property
    def partitions(self) -> int:
        return len(self.logs)

    def starts(self) -> list[int]:
        """Where a new group starts reading, per partition."""
        return [max(log.start_offset, cut) for log, cut in zip(self.logs, self.purged_to,
                                                                strict=True)]

    def cap_bytes(self) -> int:
        """The retention byte cap of one partition."""
        return max(1, self.retention_bytes // len(self.logs))

    def make_room(self, p: int, nbytes: int, now: float) -> bool:
        """Make room for nbytes in partition p under the byte cap. With overflow
        "drop_oldest" the oldest segments go; with "refuse" only segments every group has
        finished go (none while no group exists: every retained message is still in the
        queue, as DESIGN.md counts it). Returns False when the send must be refused
        (topic_full)."""
        log = self.logs[p]
        cap = self.cap_bytes()
        if log.size_bytes() + nbytes <= cap:
            return True
        never = 1 << 62
        target = max(1, cap - nbytes)
        now_ms = int(now * 1000)
        if self.config.overflow == "drop_oldest":
            log.apply_retention(now_ms, never, target)
            return True
        keep = self.min_floor(p)
        log.apply_retention(now_ms, never, target,
                            keep_from=self.starts()[p] if keep is None else keep)
        return log.size_bytes() + nbytes <= cap

    def place_values(self, values: list[bytes]) -> int:
        """Pick the partition of a send of plain values (no keys, headers, ids or delay):
        all of them go, as they are, to the next partition in round-robin order.
        Returns the partition. Raises BrokerError("message_too_large")."""
        limit = self.max_message_bytes
        if (len(values[0]) > limit if len(values) == 1
                else values and max(map(len, values)) > limit):
            i, size = next((i, len(v)) for i, v in enumerate(values) if len(v) > limit)
            raise BrokerError("message_too_large", f"message {i} is {size} bytes; topic "
                              f"{self.name!r} takes at most {limit}")
        rr = self.rr % len(self.logs)
        self.rr += 1
        return rr

    def plan_values(self, values: list[bytes], created: bool) -> SendPlan:
        """`place_values` as a SendPlan. Raises BrokerError("message_too_large")."""
        rr = self.place_values(values)
        return SendPlan(self, created, {rr: AppendEntry(values)} if values else {}, [],
                        single=rr)

    def plan(self, messages: Sequence[OutMessage], delay_s: float, now: float,
             created: bool) -> SendPlan:
        """Check sizes and pick partitions. Raises BrokerError("message_too_large")."""
        limit = self.max_message_bytes
        n = len(self.logs)
        deliver_at = int((now + delay_s) * 1000) if delay_s > 0 else None
        rr = self.rr % n
        self.rr += 1
        if deliver_at is None and all(m.key is None and m.headers is None for m in messages):
            vals = [m.value for m in messages]
            if not vals or max(map(len, vals)) <= limit:  # else the loop below names it
                return SendPlan(self, created, {rr: AppendEntry(vals)} if vals else {}, [],
                                single=rr)
        cols: dict[int, tuple[list[bytes], list[bytes | None], list[Headers | None]]] = {}
        slots: list[tuple[int, int] | None] = []
        any_key = False
        any_headers = deliver_at is not None
        for i, m in enumerate(messages):
            value = m.value
            size = len(value) + (len(m.key) if m.key else 0)
            if size > limit:
                raise BrokerError("message_too_large",
                                  f"message {i} is {size} bytes; topic {self.name!r} takes at "
                                  f"most {limit}")
            key = m.key
            p = rr if key is None or n == 1 else zlib.crc32(key) % n
            col = cols.get(p)
            if col is None:
                col = cols[p] = ([], [], [])
            hdr = m.headers
            if deliver_at is not None:
                hdr = {**(hdr or {}), DELIVER_AT_HEADER: deliver_at}
            elif hdr is not None and DELIVER_AT_HEADER in hdr:
                hdr = {k: v for k, v in hdr.items() if k != DELIVER_AT_HEADER} or None
            if key is not None:
                any_key = True
            if hdr is not None:
                any_headers = True
            slots.append((p, len(col[0])))
            col[0].append(value)
            col[1].append(key)
            col[2].append(hdr)
        entries = {p: AppendEntry(vals, keys if any_key else None, hdrs if any_headers else None)
                   for p, (vals, keys, hdrs) in cols.items()}
        return SendPlan(self, created, entries, slots)

    def backlog(self) -> int:
        """DESIGN.md's messages in the queue: the largest group backlog, or every retained
        message while no group has read the topic."""
        if not self.groups:
            return sum(max(0, end - start)
                       for start, end in zip(self.starts(), self.visible_end, strict=True))
        return max(g.backlog(self.visible_end) for g in self.groups.values())

    def min_floor(self, p: int) -> int | None:
        floors = [g.parts[p].floor for g in self.groups.values()]
        return min(floors) if floors else None

    def retain(self, now: float) -> None:
        """Apply age retention, then the byte cap as `make_room` does."""
        never = 1 << 62
        for p, log in enumerate(self.logs):
            log.apply_retention(int(now * 1000), int(self.retention_s * 1000), never)
            self.make_room(p, 0, now)
