"""The broker core: topics, groups, sends, receives and settlement, synchronously.

`Core` holds every topic's state and applies operations at a given `now`. It puts
durable changes into the StateStore (`flush()`), but never awaits: the asyncio
facade (`broker.broker.Broker`) appends through the group committer, awaits
`store.commit()` before an ack returns, long-polls and sweeps.

State store namespaces:  groups  "<topic>/<group>" -> GroupState.to_record()
                         dead    "<topic>/<group>/<partition>:<offset>" -> dead letter
                         dedup   "<topic>/<message id>" -> [partition, offset, expires_at]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from broker.api import (
    BatchSendResult,
    ClientRef,
    Delivery,
    DeliveryBatch,
    OutMessage,
    ReceiptResult,
    SendOutcome,
    SendResult,
    SendRun,
)
from broker.config import Config
from broker.core.clients import ClientTable
from broker.core.group import GroupState
from broker.core.meters import RateMeter
from broker.core.settle import settle
from broker.core.topic import SendPlan, TopicState
from broker.core.values import deliveries, outcome
from broker.errors import BrokerError
from storage.api import StateStore
from storage.errors import StorageError

MAX_VISIBILITY_S = 43_200.0  # 12 h, as SQS: a longer lease is a lost message in disguise
MAX_DELAY_S = 900.0  # 15 min, as SQS: longer delays belong in a scheduler
MAX_RECEIVE = 10_000  # messages per receive: bounds one response and one lease walk
NS_GROUPS, NS_DEAD, NS_DEDUP = "groups", "dead", "dedup"


def check_visibility(visibility_s: float, allow_zero: bool = False) -> float:
    low_ok = visibility_s >= 0 if allow_zero else visibility_s > 0
    if not (low_ok and visibility_s <= MAX_VISIBILITY_S):
        raise BrokerError("invalid_argument", f"visibility must be in "
                          f"{'[0' if allow_zero else '(0'}, {MAX_VISIBILITY_S:g}] s, "
                          f"got {visibility_s!r}")
    return float(visibility_s)


class Core:
    def __init__(self, config: Config, store: StateStore, incarnation: str) -> None:
        self.config = config
        self.store = store
        self.incarnation = incarnation
        self.topics: dict[str, TopicState] = {}
        self.clients = ClientTable(config.active_client_window_s)
        self.dedup: dict[str, tuple[int, int, float]] = {}
        self.sending_ids: dict[str, SendPlan] = {}  # message ids whose send is in flight
        self.rate_in = RateMeter()
        self.rate_out = RateMeter()
        self.rate_acks = RateMeter()
        self.rate_redeliveries = RateMeter()
        self._dirty: set[GroupState] = set()
        self._lease_seq = 0

    def _new_lease_id(self) -> int:
        self._lease_seq += 1
        return self._lease_seq

    # -- topics
    def topic(self, name: str) -> TopicState:
        t = self.topics.get(name)
        if t is None or t.deleted:
            raise BrokerError("topic_not_found", f"no topic named {name!r}")
        return t

    def add_topic(self, t: TopicState) -> None:
        self.topics[t.name] = t

    def load_state(self) -> None:
        """Rebuild groups and dedup ids from the store (after every topic was added)."""
        dead: dict[str, dict[str, dict[str, Any]]] = {}
        for key, rec in self.store.items(NS_DEAD):
            owner, _, dl_id = key.rpartition("/")
            dead.setdefault(owner, {})[dl_id] = rec
        for key, rec in self.store.items(NS_GROUPS):
            tname, _, gname = key.partition("/")
            t = self.topics.get(tname)
            if t is None:
                self.store.delete(NS_GROUPS, key)
                continue
            t.groups[gname] = GroupState.from_record(tname, gname, rec, t.starts(), t.policy,
                                                     dead.get(key, {}))
        entries = sorted(self.store.items(NS_DEDUP), key=lambda kv: float(kv[1][2]))
        for key, (p, off, expires) in entries:
            self.dedup[key] = (int(p), int(off), float(expires))

    def remove_topic(self, name: str) -> TopicState | None:
        """Forget the topic and its groups, dead letters and dedup ids (in the store too)."""
        t = self.topics.pop(name, None)
        if t is None:
            return None
        t.deleted = True
        for g in list(t.groups.values()):
            self.delete_group(t, g)
        prefix = name + "/"
        for key in [k for k in self.dedup if k.startswith(prefix)]:
            del self.dedup[key]
            self.store.delete(NS_DEDUP, key)
        return t

    # -- send
    def plan_send(self, t: TopicState, messages: Sequence[OutMessage], delay_s: float,
                  created: bool, now: float) -> SendPlan | tuple[str, SendPlan]:
        """Plan one send: a SendPlan, or ("wait", other) when a message id of this send is
        being sent by `other` right now (the caller waits for it and plans again)."""
        if not 0 <= delay_s <= MAX_DELAY_S:
            raise BrokerError("invalid_argument",
                              f"delay must be in [0, {MAX_DELAY_S:g}] s, got {delay_s!r}")
        if not any(m.message_id for m in messages):
            return t.plan(messages, delay_s, now, created)
        fresh: list[OutMessage] = []
        where: list[tuple[str, int]] = []  # ("new", index in fresh) | ("dup", index in dups)
        dups: list[tuple[int, int]] = []
        ids: list[str | None] = []
        seen: dict[str, int] = {}
        for m in messages:
            mid = m.message_id
            if mid is None:
                where.append(("new", len(fresh)))
                fresh.append(m)
                ids.append(None)
                continue
            key = f"{t.name}/{mid}"
            other = self.sending_ids.get(key)
            if other is not None:
                return "wait", other
            hit = self.dedup.get(key)
            if hit is not None and hit[2] > now:
                where.append(("dup", len(dups)))
                dups.append((hit[0], hit[1]))
            elif key in seen:
                where.append(("same", seen[key]))
            else:
                seen[key] = len(fresh)
                where.append(("new", len(fresh)))
                fresh.append(m)
                ids.append(key)
        plan = t.plan(fresh, delay_s, now, created) if fresh else SendPlan(t, created, {}, [])
        inner = plan.slots
        if plan.single is not None:
            inner = [(plan.single, i) for i in range(len(fresh))]
            plan.single = None
        plan.slots = []
        plan.dups = {}
        for i, (kind, j) in enumerate(where):
            if kind == "dup":
                plan.slots.append(None)
                plan.dups[i] = dups[j]
            elif kind == "same":
                plan.slots.append(None)
                plan.dups[i] = (-1, j)  # resolved in finish_send to fresh message j's offset
            else:
                plan.slots.append(inner[j])
        plan.message_ids = ids
        for mkey in ids:
            if mkey is not None:
                self.sending_ids[mkey] = plan
        return plan

    def abort_send(self, plan: SendPlan) -> None:
        for key in plan.message_ids:
            if key is not None and self.sending_ids.get(key) is plan:
                del self.sending_ids[key]

    def _appended(self, plan: SendPlan, bases: dict[int, int], client: ClientRef,
                  now: float) -> int:
        """The appends of `plan` returned at `bases`: make them visible and count them.
        Returns how many messages were appended."""
        self.abort_send(plan)
        t = plan.topic
        appended = 0
        for p, base in bases.items():
            n = len(plan.entries[p].values)
            appended += n
            if base + n > t.visible_end[p]:
                t.visible_end[p] = base + n
        self._count_in(t, appended, client, now)
        return appended

    def values_appended(self, t: TopicState, p: int, base: int, n: int, client: ClientRef,
                        now: float) -> None:
        """n plain values placed by `TopicState.place_values` in partition p are durable
        from offset base: make them visible and count them."""
        if base + n > t.visible_end[p]:
            t.visible_end[p] = base + n
        self._count_in(t, n, client, now)

    def _count_in(self, t: TopicState, n: int, client: ClientRef, now: float) -> None:
        self.rate_in.add(n, now)
        t.rate_in.add(n, now)
        self.clients.touch(client, "producer", now).messages_in += n

    def finish_send_runs(self, plan: SendPlan, bases: dict[int, int], client: ClientRef,
                         now: float) -> BatchSendResult:
        """`finish_send` of a `TopicState.plan_values` plan: one run per partition."""
        appended = self._appended(plan, bases, client, now)
        runs = [SendRun(p, base, len(plan.entries[p].values)) for p, base in bases.items()]
        return BatchSendResult(plan.topic.name, plan.created, appended, runs)

    def finish_send(self, plan: SendPlan, bases: dict[int, int], client: ClientRef,
                    now: float) -> SendResult:
        """The appends returned: record offsets, dedup ids and counts. Returns the result."""
        appended = self._appended(plan, bases, client, now)
        outcomes: list[SendOutcome] = []
        fresh: list[SendOutcome] = []
        if plan.single is not None:
            base = bases.get(plan.single, 0)
            outcomes = [outcome(plan.single, off) for off in range(base, base + appended)]
        for i, slot in enumerate(plan.slots):
            if slot is None:
                p, off = plan.dups[i]
                if p == -1:  # repeats message `off` of this very send
                    p, off = fresh[off].partition, fresh[off].offset
                outcomes.append(SendOutcome(p, off, True))
                continue
            p, k = slot
            o = SendOutcome(p, bases[p] + k)
            outcomes.append(o)
            fresh.append(o)
        if plan.message_ids:
            expires = now + self.config.dedup_window_s
            for key, o in zip(plan.message_ids, fresh, strict=True):
                if key is not None:
                    self.dedup[key] = (o.partition, o.offset, expires)
                    self.store.put(NS_DEDUP, key, [o.partition, o.offset, expires])
        return SendResult(plan.topic.name, plan.created, outcomes)

    # -- receive
    def receive(self, t: TopicState, group: str, client: ClientRef, max_messages: int,
                visibility_s: float | None, auto_ack: bool, now: float) -> list[Delivery]:
        """`receive_columns`, one Delivery per message."""
        return deliveries(self.receive_columns(t, group, client, max_messages, visibility_s,
                                               auto_ack, now))

    def receive_columns(self, t: TopicState, group: str, client: ClientRef, max_messages: int,
                        visibility_s: float | None, auto_ack: bool, now: float
                        ) -> list[DeliveryBatch]:
        """Lease up to max_messages of `t` to `client` in `group` (created on first use);
        one DeliveryBatch per lease opened."""
        g = self.ensure_group(t, group, now)
        g.last_active = now
        g.consumers[client.client_id] = now
        c = self.clients.touch(client, "consumer", now)
        g.expire(now)
        budget = min(max_messages, self.config.max_inflight_per_group - g.in_flight)
        out: list[DeliveryBatch] = []
        if budget > 0:
            vis = g.policy.visibility_s if visibility_s is None else visibility_s
            deadline = now + vis
            n = t.partitions
            first = g.rr % n
            g.rr += 1
            g.opened.clear()
            redeliveries = g.redeliveries
            failure: StorageError | None = None
            got = 0
            for k in range(n):
                p = (first + k) % n
                try:
                    g.deliver(p, t.logs[p], t.visible_end[p], budget - got, now,
                              client.client_id, deadline, self.incarnation, self._new_lease_id,
                              out)
                except StorageError as exc:
                    failure = exc
                got = sum([len(b.values) for b in out])
                if got >= budget:
                    break
            if failure is not None and not out:
                raise failure
            if auto_ack:
                for lease_id in g.opened:
                    lease = g.leases.get(lease_id)
                    if lease is not None:
                        for lo, hi in list(lease.pending):
                            g.ack_run(lease, lo, hi, now)
                self.rate_acks.add(got, now)
            self.rate_out.add(got, now)
            t.rate_out.add(got, now)
            g.rate_out.add(got, now)
            self.rate_redeliveries.add(g.redeliveries - redeliveries, now)
            c.messages_out += got
        if g.dirty:
            self._dirty.add(g)
        return out

    # -- settle
    def settle(self, receipts: Sequence[str], op: str, client: ClientRef, now: float,
               delay_s: float = 0.0, visibility_s: float = 0.0) -> list[ReceiptResult]:
        """Ack ("ack"), nack ("nack") or extend ("extend") each receipt; see
        `broker.core.settle.settle`."""
        self.clients.touch(client, "consumer", now)
        results, settled, touched = settle(self.incarnation, self.topics, receipts, op, now,
                                           delay_s, visibility_s)
        for g in touched:
            if g.dirty:
                self._dirty.add(g)
        if op == "ack":
            self.rate_acks.add(settled, now)
        return results

    # -- durability
    def flush(self) -> bool:
        """Put every changed group state and dead letter into the store. True if any."""
        if not self._dirty:
            return False
        for g in self._dirty:
            if not g.dirty:
                continue
            t = self.topics.get(g.topic)
            if t is None or t.groups.get(g.name) is not g:
                continue
            key = f"{g.topic}/{g.name}"
            self.store.put(NS_GROUPS, key, g.to_record())
            g.dirty = False
            for dl_id in g.dead_dirty:
                rec = g.dead_record(dl_id)
                if rec is None:
                    self.store.delete(NS_DEAD, f"{key}/{dl_id}")
                else:
                    self.store.put(NS_DEAD, f"{key}/{dl_id}", rec)
            g.dead_dirty.clear()
        self._dirty.clear()
        return True

    def mark_dirty(self, g: GroupState) -> None:
        g.dirty = True
        self._dirty.add(g)

    # -- background work
    def expire_leases(self, now: float) -> list[str]:
        """Expire due leases in every group; returns the topics where something became ready."""
        woke = []
        for t in self.topics.values():
            hit = False
            for g in t.groups.values():
                if g.expire(now):
                    hit = True
                    self._dirty.add(g)
                for ps in g.parts:
                    if ps.delayed and ps.delayed[0][0] <= now:
                        hit = True
            if hit:
                woke.append(t.name)
        return woke

    def expire_idle(self, now: float) -> int:
        """Delete groups idle past the expiry and dedup ids past their window."""
        removed = 0
        idle = self.config.idle_group_expiry_s
        for t in self.topics.values():
            for g in list(t.groups.values()):
                if g.in_flight == 0 and now - g.last_active > idle:
                    self.delete_group(t, g)
                    removed += 1
        while self.dedup:
            key, (_, _, expires) = next(iter(self.dedup.items()))
            if expires > now:
                break
            del self.dedup[key]
            self.store.delete(NS_DEDUP, key)
        for g in {g for t in self.topics.values() for g in t.groups.values()}:
            for cid in [c for c, seen in g.consumers.items()
                        if now - seen > self.clients.window_s]:
                del g.consumers[cid]
        self.clients.prune(now)
        return removed

    def retain(self, now: float) -> None:
        for t in self.topics.values():
            t.retain(now)
            for g in t.groups.values():
                for p, log in enumerate(t.logs):
                    ps = g.parts[p]
                    if ps.floor < log.start_offset:
                        g.dropped += ps.clamp(log.start_offset)
                        self.mark_dirty(g)

    # -- groups
    def ensure_group(self, t: TopicState, group: str, now: float) -> GroupState:
        """The group, created at the earliest retained offset if it does not exist."""
        g = t.groups.get(group)
        if g is None:
            g = t.groups[group] = GroupState(t.name, group, t.starts(), t.policy, now)
            self._dirty.add(g)
        return g

    def group(self, topic: str, group: str) -> tuple[TopicState, GroupState]:
        t = self.topic(topic)
        g = t.groups.get(group)
        if g is None:
            raise BrokerError("group_not_found", f"no group {group!r} on topic {topic!r}")
        return t, g

    def delete_group(self, t: TopicState, g: GroupState) -> None:
        t.groups.pop(g.name, None)
        g.drop_leases()
        key = f"{t.name}/{g.name}"
        self.store.delete(NS_GROUPS, key)
        for dl_id in g.dead:
            self.store.delete(NS_DEAD, f"{key}/{dl_id}")
        self._dirty.discard(g)

    def seek(self, t: TopicState, g: GroupState, offset: int | None, timestamp_ms: int | None,
             partition: int | None) -> None:
        parts = range(t.partitions) if partition is None else [partition]
        if partition is not None and not 0 <= partition < t.partitions:
            raise BrokerError("invalid_argument", f"topic {t.name!r} has no partition "
                              f"{partition}")
        if (offset is None) == (timestamp_ms is None):
            raise BrokerError("invalid_argument", "seek needs exactly one of offset, timestamp_ms")
        for p in parts:
            log = t.logs[p]
            if timestamp_ms is not None:
                target = log.offset_for_time(timestamp_ms)
            else:
                assert offset is not None
                target = t.visible_end[p] if offset < 0 else offset  # -1: the end
            target = min(max(target, log.start_offset), t.visible_end[p])
            g.seek(p, target)
        self.mark_dirty(g)

    def redrive(self, t: TopicState, g: GroupState, ids: Sequence[str] | None,
                reason_contains: str | None) -> int:
        chosen = [dl_id for dl_id, rec in g.dead_items()
                  if (ids is None or dl_id in ids)
                  and (reason_contains is None or reason_contains in str(rec.get("reason", "")))]
        n = g.redrive(chosen, lambda p: t.logs[p].start_offset)
        self.mark_dirty(g)
        return n
