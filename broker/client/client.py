"""The native asyncio client: `async with Client("tcp://127.0.0.1:7070") as c: ...`.

Owns the connection lifecycle (connect, handshake, reconnect with bounded
exponential back-off), request pipelining, producer batching per topic and
push subscriptions. What happens to a request when the connection drops:

- not yet written: it waits for the new connection and is sent there;
- written, no answer yet: read-only ops (`OpSpec.idempotent`: ping, topics,
  groups, stats, describe, browse, dead letters, unsubscribe) are re-sent;
  every other op fails with `ClientError("unavailable", retriable=True)`,
  since it may or may not have taken effect (a re-sent `send` could
  duplicate; pass `message_ids` to `send_batch` to make a retry safe).

Must not choose an event loop (uvloop is the caller's choice) or reach into
the server.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl as ssl_module
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby, repeat
from operator import attrgetter
from typing import Any, Final, cast
from urllib.parse import urlsplit

from broker.api import (
    DeadLetter,
    GroupInfo,
    HistoryEntry,
    ReceiptResult,
    Snapshot,
    StoredMessage,
    TopicConfig,
    TopicInfo,
)
from broker.client.batcher import MAX_BATCH_BYTES, TopicBatcher, send_offsets
from broker.client.link import Link, LinkLost
from broker.client.subscription import Subscription
from broker.client.types import (
    ClientError,
    LeaseRef,
    Message,
    Received,
    make_message,
    make_messages,
)
from broker.core.receipts import run_receipt
from broker.protocol import OPS, Hello, Push, SubscriptionEnded
from broker.protocol.codec import (
    columns_rows,
    group_info_from_wire,
    receipt_failures_from_wire,
    receipt_results_from_wire,
    runs_from_wire,
    snapshot_from_wire,
    to_wire,
    topic_info_from_wire,
)

DEFAULT_URL: Final = "tcp://127.0.0.1:7070"
INITIAL_BACKOFF_S: Final = 0.05  # first reconnect delay; doubles per failed attempt
MAX_BACKOFF_S: Final = 2.0  # reconnect delays stop growing here
CONNECT_TIMEOUT_S: Final = 10.0  # a call waits this long for a connection before failing
MAX_RESENDS: Final = 3  # an idempotent request is re-sent at most this often


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    tls: bool


def parse_url(url: str) -> Endpoint:
    """tcp://host:port or tls://host:port (port defaults to 7070); raise ValueError."""
    parts = urlsplit(url if "://" in url else "tcp://" + url)
    if parts.scheme not in ("tcp", "tls"):
        raise ValueError(f"unsupported scheme {parts.scheme!r} in {url!r} (use tcp:// or tls://)")
    return Endpoint(parts.hostname or "127.0.0.1", parts.port or 7070, parts.scheme == "tls")


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def _receipts(items: Message | str | Iterable[Message | str]) -> list[str]:
    if isinstance(items, Message):
        return [items.receipt]
    if isinstance(items, str):
        return [items]
    return [i.receipt if isinstance(i, Message) else i for i in items]


_lease_key = attrgetter("lease")
_offset_of = attrgetter("offset")


def _lease_of(item: Message | str) -> LeaseRef | str | None:
    return item.lease if isinstance(item, Message) else item


def _ranges(items: Message | str | Iterable[Message | str]
            ) -> tuple[list[str], list[list[Message | str]]]:
    """Receipts to settle `items` with, consecutive offsets of one lease joined into one
    range receipt; and, per receipt, the items it stands for."""
    if type(items) is Received and items.runs is not None:
        return _received_ranges(items, items.runs)
    if isinstance(items, Message | str):
        items = [items]
    elif not isinstance(items, list):
        items = list(items)
    # Messages of one receive run share one LeaseRef object: grouping by it and
    # comparing the offsets with a range runs in C, not once per message in Python.
    key = _lease_key if set(map(type, items)) == {Message} else _lease_of
    receipts: list[str] = []
    members: list[list[Message | str]] = []
    for lease, group in groupby(items, key=key):
        run: list[Message | str] = list(group)
        if not isinstance(lease, LeaseRef):
            receipts.extend([i.receipt if isinstance(i, Message) else i for i in run])
            members.extend([[i] for i in run])
            continue
        offsets: list[int] = list(map(_offset_of, run))  # a LeaseRef: Messages only
        lo = offsets[0]
        if offsets == list(range(lo, lo + len(offsets))):
            receipts.append(_run_receipt(lease, run[0], lo, lo + len(offsets) - 1))
            members.append(run)
            continue
        start = 0
        for k in range(1, len(run) + 1):  # split where the offsets stop being consecutive
            if k == len(run) or offsets[k] != offsets[k - 1] + 1:
                receipts.append(_run_receipt(lease, run[start], offsets[start],
                                             offsets[k - 1]))
                members.append(run[start:k])
                start = k
    return receipts, members


def _received_ranges(items: Received, runs: list[tuple[int, int]]
                     ) -> tuple[list[str], list[list[Message | str]]]:
    """`_ranges` of a whole receive: one range receipt per run it came in."""
    receipts: list[str] = []
    members: list[list[Message | str]] = []
    for start, stop in runs:
        first = items[start]
        lease = first.lease
        assert lease is not None
        receipts.append(_run_receipt(lease, first, first.offset, first.offset + stop - start - 1))
        members.append(cast("list[Message | str]", items[start:stop]))
    return receipts, members


def _run_receipt(lease: LeaseRef, first: Message | str, lo: int, hi: int) -> str:
    assert isinstance(first, Message)
    return run_receipt(lease.incarnation, lease.lease_id, first.partition, lo, hi,
                       first.topic, lease.group)


class Client:
    """An asyncio client of the native protocol. Use as an async context manager or call
    `connect()` / `close()`. Every method raises ClientError (code, message, retriable)."""

    def __init__(self, url: str = DEFAULT_URL, client_id: str | None = None,
                 token: str | None = None, *, roles: Sequence[str] = (),
                 ssl: ssl_module.SSLContext | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT_S,
                 max_backoff_s: float = MAX_BACKOFF_S,
                 max_batch_bytes: int = MAX_BATCH_BYTES) -> None:
        self.endpoint = parse_url(url)
        self.url = url
        self.client_id = client_id or f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self.token = token
        self.roles = tuple(roles)
        self._ssl = ssl or (ssl_module.create_default_context() if self.endpoint.tls else None)
        self.connect_timeout = connect_timeout
        self.max_backoff_s = max_backoff_s
        self.max_batch_bytes = max_batch_bytes
        self.incarnation: str | None = None
        self.connects = 0  # successful handshakes, for tests and diagnostics
        self._link: Link | None = None
        self._connecting: asyncio.Task[Link] | None = None
        self._closed = False
        self._batchers: dict[str, TopicBatcher] = {}
        self._subs: set[Subscription] = set()
        self._subs_by_id: dict[int, Subscription] = {}  # on the current link
        self._background: set[asyncio.Task[Any]] = set()

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Whether a connection is up right now (calls reconnect by themselves)."""
        return self._link is not None and self._link.alive

    async def connect(self) -> Client:
        await self._get_link()
        return self

    async def __aenter__(self) -> Client:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Finish queued sends, end subscriptions, say goodbye. Idempotent."""
        if self._closed:
            return
        for batcher in list(self._batchers.values()):
            await batcher.idle()
        for sub in list(self._subs):
            try:
                await sub.close()
            except ClientError:
                pass
        self._closed = True
        for task in list(self._background):
            task.cancel()
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self._link is not None:
            await self._link.close()
            self._link = None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _get_link(self) -> Link:
        if self._closed:
            raise ClientError("unavailable", "the client is closed", retriable=False)
        link = self._link
        if link is not None and link.alive:
            return link
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.get_running_loop().create_task(self._connect())
        return await asyncio.shield(self._connecting)

    async def _connect(self) -> Link:
        """Connect with exponential back-off until `connect_timeout` has passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_timeout
        delay = INITIAL_BACKOFF_S
        hello = Hello(self.client_id, self.roles, self.token)
        while True:
            remaining = deadline - loop.time()
            try:
                link = await Link.open(self.endpoint.host, self.endpoint.port, self._ssl, hello,
                                       max(remaining, 0.05), self._on_push, self._on_sub_end,
                                       self._on_lost)
            except ClientError as exc:
                if not exc.retriable:
                    raise
                last: BaseException = exc
            except ssl_module.SSLCertVerificationError as exc:
                raise ClientError("unavailable", f"TLS: {exc.verify_message}; the server's "
                                  "certificate is not trusted", retriable=False) from None
            except (OSError, TimeoutError) as exc:
                last = exc
            else:
                self._connected(link)
                return link
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ClientError("unavailable", f"cannot connect to {self.url}: {last}")
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, self.max_backoff_s)

    def _connected(self, link: Link) -> None:
        restarted = self.incarnation is not None and link.welcome.incarnation != self.incarnation
        self.incarnation = link.welcome.incarnation
        self._link = link
        self.connects += 1
        self._subs_by_id.clear()
        for sub in list(self._subs):
            if restarted:
                sub.forget_leases()
            self._spawn(self._restart(sub))

    async def _restart(self, sub: Subscription) -> None:
        try:
            await sub.start()
        except ClientError as exc:
            self._end(sub, exc)

    def _on_lost(self, link: Link) -> None:
        if link is not self._link:
            return
        self._link = None
        self._subs_by_id.clear()
        for sub in self._subs:
            sub.sub_id = None
        if self._subs and not self._closed:
            self._spawn(self._reconnect_for_subscriptions())

    async def _reconnect_for_subscriptions(self) -> None:
        try:
            await self._get_link()  # _connected() restarts every subscription
        except ClientError as exc:
            for sub in list(self._subs):
                self._end(sub, exc)

    # -- requests -----------------------------------------------------------------------------
    async def _call(self, op: str, args: dict[str, Any]) -> Any:
        """Run one request; re-send idempotent ones cut off by a lost connection."""
        idempotent = OPS[op].idempotent
        lost = 0
        while True:
            link = await self._get_link()
            try:
                _, future = link.request(op, args)
            except LinkLost:
                continue  # nothing was written; the next connection gets it
            await link.drain()
            try:
                return await future
            except LinkLost as exc:
                lost += 1
                if idempotent and lost <= MAX_RESENDS:
                    continue
                raise ClientError("unavailable", f"connection lost while {op} was in flight "
                                  f"({exc}); it may or may not have taken effect",
                                  retriable=True) from None

    async def ping(self) -> float:
        """Round-trip time in seconds."""
        start = time.perf_counter()
        await self._call("ping", {})
        return time.perf_counter() - start

    # -- producing ----------------------------------------------------------------------------
    async def send(self, topic: str, value: bytes | str, key: bytes | str | None = None,
                   headers: dict[str, Any] | None = None) -> int:
        """Send one message and return its offset once it is durable. Concurrent sends to
        a topic are coalesced into batch requests; a lone send goes out at once."""
        batcher = self._batchers.get(topic)
        if batcher is None:
            batcher = TopicBatcher(topic, self._send_call, self.max_batch_bytes)
            self._batchers[topic] = batcher
        return await batcher.send(_bytes(value), None if key is None else _bytes(key), headers)

    async def _send_call(self, args: dict[str, Any]) -> Any:
        return await self._call("send", args)

    async def send_batch(self, topic: str, values: Sequence[bytes | str],
                         keys: Sequence[bytes | None] | None = None,
                         headers: Sequence[dict[str, Any] | None] | None = None,
                         message_ids: Sequence[str | None] | None = None,
                         delay: float = 0.0) -> list[int]:
        """Send many messages in order (one request per `max_batch_bytes`); return offsets."""
        vals = values if all(type(v) is bytes for v in values) else [_bytes(v) for v in values]
        offsets: list[int] = []
        start = 0
        while start < len(vals):
            stop, size = start, 0
            while stop < len(vals) and (stop == start or size + len(vals[stop])
                                        <= self.max_batch_bytes):
                size += len(vals[stop])
                stop += 1
            args: dict[str, Any] = {"topic": topic, "values": list(vals[start:stop]),
                                    "runs": True}
            for name, column in (("keys", keys), ("headers", headers),
                                 ("message_ids", message_ids)):
                if column is not None:
                    args[name] = list(column[start:stop])
            if delay:
                args["delay"] = delay
            offsets.extend(send_offsets(await self._call("send", args)))
            start = stop
        return offsets

    # -- consuming ----------------------------------------------------------------------------
    async def receive(self, topic: str, group: str = "default", max: int = 1, wait: float = 0,
                      visibility: float | None = None, auto_ack: bool = False) -> Received:
        """Lease up to `max` messages, long-polling up to `wait` seconds; [] when none.
        The list remembers the runs its messages came in: `ack(it)` sends a range
        receipt per run without looking at each message."""
        args: dict[str, Any] = {"topic": topic, "group": group, "max": max, "wait": wait,
                                "runs": True}
        if visibility is not None:
            args["visibility"] = visibility
        if auto_ack:
            args["auto_ack"] = True
        return _run_messages(await self._call("receive", args))

    async def ack(self, messages: Message | str | Iterable[Message | str]) -> list[ReceiptResult]:
        """Settle messages for good. Returns the receipts that failed, each with its error
        code (e.g. stale_receipt: the lease expired first); [] when all were acked.

        Consecutive messages of one receive travel as one range receipt."""
        return await self._settle("ack", messages, {})

    async def nack(self, messages: Message | str | Iterable[Message | str], delay: float = 0
                   ) -> list[ReceiptResult]:
        """Give messages back for redelivery after `delay` seconds. Returns the receipts
        that failed ([] when all were handed back)."""
        return await self._settle("nack", messages, {"delay": delay})

    async def _settle(self, op: str, messages: Message | str | Iterable[Message | str],
                      extra: dict[str, Any]) -> list[ReceiptResult]:
        receipts, members = _ranges(messages)
        if self._subs:
            self._settled([r for group in members for r in _receipts(group)])
        failed = receipt_failures_from_wire(
            receipts, await self._call(op, {"receipts": receipts, **extra}))
        if not failed:
            return []
        # A range receipt settles all of its run or none of it: settle the messages of a
        # failed run one by one to learn which of them failed.
        index = {r: i for i, r in enumerate(receipts)}
        out: list[ReceiptResult] = []
        for res in failed:
            group = members[index[res.receipt]]
            if len(group) == 1:
                out.append(res)
                continue
            singles = _receipts(group)
            out.extend(receipt_failures_from_wire(
                singles, await self._call(op, {"receipts": singles, **extra})))
        return out

    async def extend(self, messages: Message | str | Iterable[Message | str],
                     visibility: float) -> list[ReceiptResult]:
        """Push the lease deadlines `visibility` seconds from now. Returns one result per
        receipt, with its new deadline or its error."""
        receipts = _receipts(messages)
        args: dict[str, Any] = {"receipts": receipts, "visibility": visibility}
        return receipt_results_from_wire(receipts, await self._call("extend", args))

    def subscribe(self, topic: str, group: str = "default", prefetch: int = 100,
                  visibility: float | None = None) -> Subscription:
        """A push subscription: `async with c.subscribe(t) as sub: async for m in sub:`.
        At most `prefetch` messages are unsettled at once; ack or nack each one."""
        sub = Subscription(self, topic, group, prefetch, visibility)
        self._subs.add(sub)
        return sub

    def _settled(self, receipts: list[str]) -> None:
        for sub in self._subs:
            self._grant(sub, sub.settled(receipts))

    def _grant(self, sub: Subscription, n: int) -> None:
        link = self._link
        if n > 0 and link is not None and sub.sub_id is not None:
            link.credit(sub.sub_id, n)

    async def _subscribe(self, sub: Subscription, credit: int) -> int:
        args: dict[str, Any] = {"topic": sub.topic, "group": sub.group, "prefetch": credit}
        if sub.visibility_s is not None:
            args["visibility"] = sub.visibility_s
        link = await self._get_link()
        try:
            sub_id, future = link.request("subscribe", args)
        except LinkLost:
            raise ClientError("unavailable", "connection lost", retriable=True) from None
        self._subs_by_id[sub_id] = sub  # before any push for it can be read
        try:
            await future
        except LinkLost:
            raise ClientError("unavailable", "connection lost during subscribe",
                              retriable=True) from None
        except ClientError:
            self._subs_by_id.pop(sub_id, None)
            raise
        return sub_id

    async def _unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)
        sub_id, link = sub.sub_id, self._link
        if sub_id is None or link is None or not link.alive:
            return
        self._subs_by_id.pop(sub_id, None)
        try:
            _, future = link.request("unsubscribe", {"sub": sub_id})
            await future
        except LinkLost:
            pass  # the subscription ended with its connection

    def _on_push(self, link: Link, push: Push) -> None:
        sub = self._subs_by_id.get(push.sub)
        if sub is None:
            return
        try:
            messages = _messages(push.messages)
        except ClientError as exc:
            self._subs_by_id.pop(push.sub, None)
            self._end(sub, exc)
            return
        sub.pushed(messages)

    def _on_sub_end(self, link: Link, event: SubscriptionEnded) -> None:
        sub = self._subs_by_id.pop(event.sub, None)
        if sub is not None:
            err = event.error
            self._end(sub, None if err is None
                      else ClientError(err.code, err.message, err.retriable))

    def _end(self, sub: Subscription, error: ClientError | None) -> None:
        """The subscription is over for good: it is not restarted on a reconnect."""
        self._subs.discard(sub)
        if sub.sub_id is not None:
            self._subs_by_id.pop(sub.sub_id, None)
        sub.ended(error)

    # -- admin --------------------------------------------------------------------------------
    async def topics(self) -> list[TopicInfo]:
        result = await self._call("topics", {})
        return [topic_info_from_wire(t) for t in result["topics"]]

    async def describe_topic(self, name: str) -> TopicInfo:
        return topic_info_from_wire(await self._call("describe_topic", {"name": name}))

    async def create_topic(self, name: str, config: TopicConfig | None = None) -> TopicInfo:
        args: dict[str, Any] = {"name": name}
        if config is not None:
            args["config"] = to_wire(config)
        return topic_info_from_wire(await self._call("create_topic", args))

    async def purge_topic(self, name: str) -> TopicInfo:
        return topic_info_from_wire(await self._call("purge_topic", {"name": name}))

    async def delete_topic(self, name: str) -> None:
        await self._call("delete_topic", {"name": name})

    async def groups(self, topic: str | None = None) -> list[GroupInfo]:
        result = await self._call("groups", {"topic": topic})
        return [group_info_from_wire(g) for g in result["groups"]]

    async def describe_group(self, topic: str, group: str) -> GroupInfo:
        return group_info_from_wire(await self._call("describe_group",
                                                     {"topic": topic, "group": group}))

    async def delete_group(self, topic: str, group: str) -> None:
        await self._call("delete_group", {"topic": topic, "group": group})

    async def seek_group(self, topic: str, group: str, *, offset: int | None = None,
                         timestamp_ms: int | None = None, partition: int | None = None
                         ) -> GroupInfo:
        args = {"topic": topic, "group": group, "offset": offset, "timestamp_ms": timestamp_ms,
                "partition": partition}
        return group_info_from_wire(await self._call("seek_group", args))

    async def dead_letters(self, topic: str, group: str, limit: int = 1000) -> list[DeadLetter]:
        result = await self._call("dead_letters", {"topic": topic, "group": group,
                                                   "limit": limit})
        return [DeadLetter(**{**d, "history": [HistoryEntry(**h) for h in d["history"]]})
                for d in result["dead_letters"]]

    async def redrive(self, topic: str, group: str, ids: Sequence[str] | None = None,
                      reason_contains: str | None = None) -> int:
        args = {"topic": topic, "group": group, "ids": None if ids is None else list(ids),
                "reason_contains": reason_contains}
        return int((await self._call("redrive", args))["count"])

    async def browse(self, topic: str, partition: int = 0, offset: int | None = None,
                     key: bytes | None = None, text: str | None = None, limit: int = 50
                     ) -> tuple[list[StoredMessage], int | None]:
        args = {"topic": topic, "partition": partition, "offset": offset, "key": key,
                "text": text, "limit": limit}
        result = await self._call("browse", args)
        return [StoredMessage(**m) for m in result["messages"]], result["next"]

    async def stats(self) -> Snapshot:
        return snapshot_from_wire(await self._call("stats", {}))


def _run_messages(result: Any) -> Received:
    """The messages of a "runs" receive result, each run sharing one LeaseRef."""
    try:
        topic, group, inc, runs = runs_from_wire(result)
    except ValueError as exc:
        raise ClientError("internal", f"the server sent bad message runs: {exc}") from None
    out: list[Message] = []
    bounds: list[tuple[int, int]] = []
    for p, first, lease_id, deadline, values, keys, headers, ts, counts in runs:
        if values:
            bounds.append((len(out), len(out) + len(values)))
        # One zip over the run's columns (`values` bounds it), built into tuples in C;
        # the receipts are left to `Message.receipt`, derived from the shared LeaseRef
        # when asked for.
        out += make_messages(zip(repeat(topic), repeat(p), range(first, first + len(values)),
                                 values, keys or repeat(None), headers or repeat(None),
                                 ts if type(ts) is list else repeat(ts),
                                 counts if type(counts) is list else repeat(counts),
                                 repeat(None), repeat(deadline),
                                 repeat(LeaseRef(inc, lease_id, group))))
    return Received(out, bounds)


def _messages(columns: Any) -> list[Message]:
    if not isinstance(columns, dict):
        raise ClientError("internal", "the server sent messages in an unknown form")
    try:
        return [make_message(*row) for row in columns_rows(columns)]
    except ValueError as exc:
        raise ClientError("internal", f"the server sent bad message columns: {exc}") from None
