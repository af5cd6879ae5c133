"""One native-protocol connection on the server: the asyncio shell around a sans-IO
`Connection` and a `BrokerAPI`.

Owns moving bytes between the transport and the Connection, running requests
concurrently (pipelining) with a bounded number outstanding, pushing messages
to subscriptions within their credit, and mapping exceptions at the boundary:
`BrokerError` becomes an error response, anything else `internal` (logged).
Must not parse frames itself or reach into the broker's internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, cast

from broker.api import BrokerAPI, ClientRef, DeliveryBatch
from broker.core.receipts import batch_range_receipt
from broker.core.runs import slice_batch
from broker.errors import BrokerError
from broker.protocol import (
    OPS,
    Close,
    Connection,
    Credit,
    Error,
    ErrorInfo,
    Event,
    Hello,
    LocalProtocolError,
    NeedData,
    ProtocolError,
    Push,
    Request,
    Response,
    Role,
    State,
    SubscriptionEnded,
    Welcome,
)
from broker.protocol.codec import batches_to_columns

log = logging.getLogger("broker.session")

# authorize(token, op, topic) -> None to allow, or an error code (unauthorized, forbidden).
Authorize = Callable[[str | None, str, str | None], str | None]
# An op handler: runs one request on the session's broker and returns the result map.
Handler = Callable[["Session", Request], Awaitable[Any]]

# Requests one connection may have running before the server stops reading from
# it: enough pipelining to keep a producer's batches flowing through one fsync
# while bounding what a single client can queue (at most this many frames of
# MAX_FRAME_BYTES held at once).
MAX_OUTSTANDING: Final = 32
RESUME_OUTSTANDING: Final = 16  # resume reading once half the requests have finished
# A subscription long-polls the broker this long per round; a bounded wait keeps
# an idle subscription cheap and lets cancellation land quickly.
SUBSCRIPTION_POLL_S: Final = 10.0
# Messages per push: a push is one receive call and one frame.
PUSH_BATCH: Final = 500
# Room kept in a frame for the map around the message columns.
FRAME_SLACK_BYTES: Final = 64 * 1024
PER_MESSAGE_OVERHEAD: Final = 96  # msgpack bytes per message besides value, key and headers


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Turn Nagle's algorithm off: a response or a request is one write and waits for
    nothing (the event loops set it on TCP sockets already; this makes it certain)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Session(asyncio.Protocol):
    """The server end of one TCP connection."""

    def __init__(self, broker: BrokerAPI, handlers: Mapping[str, Handler],
                 authorize: Authorize | None, on_open: Callable[[Session], None],
                 on_close: Callable[[Session], None], max_frame_bytes: int) -> None:
        self.broker = broker
        self._handlers = handlers
        self._authorize = authorize
        self._on_open = on_open
        self._on_close = on_close
        self.conn = Connection(Role.SERVER, max_frame_bytes=max_frame_bytes)
        self.transport: asyncio.Transport | None = None
        self.client: ClientRef | None = None
        self.token: str | None = None
        self.requests_served = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._subs: dict[int, _Subscription] = {}
        self._reading_paused = False  # too many requests running
        self._socket_paused = False  # the transport's reading is paused (for either reason)
        self._writable = asyncio.Event()
        self._writable.set()
        self.closed = asyncio.get_running_loop().create_future()

    # -- transport callbacks ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        set_nodelay(self.transport)
        # Registered only now: a TLS handshake that fails never reaches this point,
        # and would otherwise leave a session that never closes.
        self._on_open(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.conn.receive_data(data)
        except ProtocolError as exc:
            log.info("closing %s: %s", self._peer(), exc)
            self.fail(exc.code, exc.message)
            return
        self._drain()

    def _drain(self) -> None:
        """Handle buffered events until none is whole or too many requests are running;
        what stays buffered is handled when requests finish."""
        try:
            while not self._reading_paused and self._writable.is_set():
                event = self.conn.next_event()
                if isinstance(event, NeedData):
                    break
                self._handle(event)
        except ProtocolError as exc:
            log.info("closing %s: %s", self._peer(), exc)
            self.fail(exc.code, exc.message)

    def pause_writing(self) -> None:
        # The peer is not reading its answers: stop reading its requests too, so the
        # answers waiting in our write buffer stay bounded.
        self._writable.clear()
        self._update_reading()

    def resume_writing(self) -> None:
        self._writable.set()
        self._drain()
        self._update_reading()

    def _update_reading(self) -> None:
        """Read from the socket only while under the request limit and the write buffer
        is below its high-water mark."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        want_paused = self._reading_paused or not self._writable.is_set()
        if want_paused and not self._socket_paused:
            self._socket_paused = True
            transport.pause_reading()
        elif not want_paused and self._socket_paused:
            self._socket_paused = False
            transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        for task in self._tasks:
            task.cancel()
        for sub in self._subs.values():
            sub.cancel()
        self._writable.set()
        if not self.closed.done():
            self.closed.set_result(None)
        self._on_close(self)

    # -- events -----------------------------------------------------------------------------
    def _handle(self, event: Event) -> None:
        if isinstance(event, Request):
            self._start_request(event)
        elif isinstance(event, Credit):
            sub = self._subs.get(event.sub)
            if sub is not None:
                sub.credit_arrived()
        elif isinstance(event, Hello):
            self._on_hello(event)
        elif isinstance(event, Close | Error):
            if isinstance(event, Error):
                log.info("%s closed with error %s: %s", self._peer(), event.code, event.message)
            self._close_transport()

    def _on_hello(self, hello: Hello) -> None:
        try:
            code = None if self._authorize is None else self._authorize(hello.token, "hello",
                                                                         None)
            if code is not None:
                self.fail(code, None if code == "unauthorized" else "the token was refused")
                return
            self.token = hello.token
            self.client = ClientRef(hello.client_id, "native", self._peer())
            for role in hello.roles or (None,):
                self.broker.touch_client(self.client, role)
        except BrokerError as exc:
            self.fail(exc.code, exc.message)
            return
        except Exception:
            log.exception("handshake with %s failed", self._peer())
            self.fail("internal")
            return
        self.write(Welcome(self.broker.incarnation, self.conn.max_frame_bytes))

    def _start_request(self, req: Request) -> None:
        task = asyncio.get_running_loop().create_task(self._run(req))
        self._tasks.add(task)
        task.add_done_callback(self._request_done)
        if len(self._tasks) >= MAX_OUTSTANDING and not self._reading_paused:
            self._reading_paused = True
            self._update_reading()

    def _request_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._reading_paused and len(self._tasks) <= RESUME_OUTSTANDING:
            self._reading_paused = False
            self._drain()  # requests that arrived behind the limit
            self._update_reading()

    async def _run(self, req: Request) -> None:
        try:
            spec = OPS.get(req.op)
            handler = self._handlers.get(req.op)
            if spec is None or handler is None:
                raise BrokerError("bad_request", f"unknown op {req.op!r}")
            if self._authorize is not None:
                topic = req.args.get(spec.topic_arg) if spec.topic_arg else None
                code = self._authorize(self.token, req.op,
                                       topic if isinstance(topic, str) else None)
                if code is not None:
                    raise BrokerError(code)
            result = await handler(self, req)
            response = Response(req.id, result)
        except BrokerError as exc:
            response = Response(req.id, error=ErrorInfo(exc.code, exc.message, exc.retriable))
        except Exception:
            log.exception("op %s from %s failed", req.op, self._peer())
            response = Response(req.id, error=ErrorInfo.of("internal"))
        self.requests_served += 1
        self.write(response)
        if req.op == "subscribe" and response.ok:
            sub = self._subs.get(req.id)
            if sub is not None:
                sub.start()

    # -- subscriptions ----------------------------------------------------------------------
    def add_subscription(self, req: Request, topic: str, group: str,
                         visibility_s: float | None) -> None:
        """Register subscription `req.id`; it starts pushing once its response is out.
        Raises BrokerError(bad_request) when a live subscription already has that id."""
        if req.id in self._subs:
            raise BrokerError("bad_request", f"subscription {req.id} is live; use a new id")
        self._subs[req.id] = _Subscription(self, req.id, topic, group, visibility_s)

    async def remove_subscription(self, sub_id: int) -> None:
        sub = self._subs.pop(sub_id, None)
        if sub is not None:
            await sub.stop()

    def subscription_ended(self, sub_id: int) -> None:
        self._subs.pop(sub_id, None)

    async def writable(self) -> None:
        await self._writable.wait()

    # -- output -----------------------------------------------------------------------------
    def write(self, event: Event) -> bool:
        """Frame and write `event`; False when the connection can no longer carry it."""
        if self.transport is None or self.transport.is_closing():
            return False
        if self.conn.state in (State.CLOSED, State.BROKEN) and not isinstance(event, Error):
            return False
        try:
            data = self.conn.send(event)
        except LocalProtocolError as exc:
            if isinstance(event, Response) and exc.code == "payload_too_large":
                return self.write(Response(event.id, error=ErrorInfo.of(exc.code, exc.message)))
            log.error("dropping %s to %s: %s", type(event).__name__, self._peer(), exc)
            return False
        self.transport.write(data)
        return True

    def fail(self, code: str, message: str | None = None) -> None:
        """Send a connection-level Error with `code` and close."""
        if self.conn.state is not State.CLOSED:
            self.write(Error.of(code, message))
        self._close_transport()

    def shutdown(self) -> None:
        """Server stopping: tell the client (a retriable code) and close."""
        self.fail("unavailable", "the server is shutting down")

    def _close_transport(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _peer(self) -> str:
        if self.transport is None:
            return ""
        peer = self.transport.get_extra_info("peername")
        return str(peer[0]) if isinstance(peer, tuple) and peer else ""

    def client_ref(self) -> ClientRef:
        if self.client is None:  # the state table admits requests only after Hello
            raise BrokerError("bad_request", "no handshake yet")
        return self.client


class _Subscription:
    """Pushes one subscription's messages: long-polls receive within the client's credit."""

    def __init__(self, session: Session, sub_id: int, topic: str, group: str,
                 visibility_s: float | None) -> None:
        self.session = session
        self.sub_id = sub_id
        self.topic = topic
        self.group = group
        self.visibility_s = visibility_s
        self._credit_changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def credit_arrived(self) -> None:
        self._credit_changed.set()

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        session, conn = self.session, self.session.conn
        try:
            while conn.state is State.OPEN:
                credit = conn.credit(self.sub_id)
                if credit <= 0:
                    self._credit_changed.clear()
                    await self._credit_changed.wait()
                    continue
                await session.writable()
                batches = await session.broker.receive_columns(
                    self.topic, self.group, session.client_ref(),
                    max_messages=min(credit, PUSH_BATCH), wait_s=SUBSCRIPTION_POLL_S,
                    visibility_s=self.visibility_s)
                if batches:
                    await self._push(batches)
        except BrokerError as exc:
            self._end(ErrorInfo(exc.code, exc.message, exc.retriable))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("subscription %s on %s/%s failed", self.sub_id, self.topic, self.group)
            self._end(ErrorInfo.of("internal"))

    async def _push(self, batches: list[DeliveryBatch]) -> None:
        fitting, rest = fit_batches(batches, self.session.conn.max_frame_bytes)
        pushed = self.session.write(Push(self.sub_id, batches_to_columns(self.topic, fitting)))
        if not pushed:
            rest = [batch_range_receipt(b) for b in batches]
        if rest:  # hand back what cannot go out now, so another consumer gets it at once
            await self.session.broker.nack(rest, self.session.client_ref())

    def _end(self, error: ErrorInfo) -> None:
        self.session.subscription_ended(self.sub_id)
        self.session.write(SubscriptionEnded(self.sub_id, error))


def fit_batches(batches: list[DeliveryBatch], max_frame_bytes: int
                ) -> tuple[list[DeliveryBatch], list[str]]:
    """The longest prefix of the delivered messages whose columns fit one frame (at least
    one message), as batches; and receipts (ranges) of the messages that do not fit."""
    budget = max_frame_bytes - FRAME_SLACK_BYTES
    total = sum([sum(map(len, b.values)) + PER_MESSAGE_OVERHEAD * len(b.values)
                 for b in batches])
    if total < budget // 2:
        return batches, []  # the common case: far from the limit, no per-message estimate
    used = 0
    fitting: list[DeliveryBatch] = []
    rest: list[str] = []
    for b in batches:
        if rest:
            rest.append(batch_range_receipt(b))
            continue
        n = len(b.values)
        cut = n
        for i in range(n):
            used += len(b.values[i]) + PER_MESSAGE_OVERHEAD
            if b.keys is not None:
                used += len(b.keys[i] or b"")
            if b.headers is not None and b.headers[i]:
                used += len(repr(b.headers[i]))
            if used > budget and (i > 0 or fitting):
                cut = i
                break
        if cut == n:
            fitting.append(b)
            continue
        if cut > 0:
            fitting.append(slice_batch(b, 0, cut))
        rest.append(batch_range_receipt(b, cut, n))
    return fitting, rest
