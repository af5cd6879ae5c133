"""The sans-IO connection: bytes in, events out; events in, bytes out.

Owns the state machine (a table of legal (role, state, direction, event)
transitions), the bounded receive buffer, request-id pairing for pipelining and
the credit account of every subscription. Must not do I/O, import asyncio or
know the broker: a shell feeds `receive_data()`, drains `next_event()` and
writes what `send()` returns.
"""

from __future__ import annotations

import enum
from typing import Any, Final

from broker.protocol.events import (
    NEED_DATA,
    SUPPORTED_VERSIONS,
    Close,
    Credit,
    Error,
    Event,
    Hello,
    NeedData,
    Push,
    Request,
    Response,
    SubscriptionEnded,
    Welcome,
)
from broker.protocol.frames import (
    FRAME_BYTES_CEILING,
    HEADER_BYTES,
    MAX_FRAME_BYTES,
    ProtocolError,
    event_to_map,
    map_to_event,
    pack,
    unpack_body,
)

# A subscription never has more than this many pushed-but-unsettled messages:
# the broker's default cap on leases in flight per group (DESIGN.md).
MAX_CREDIT: Final = 10_000
# Compact the receive buffer once this much of its head has been consumed, so
# a long stream of small frames does not shift the buffer on every frame.
_COMPACT_BYTES: Final = 64 * 1024


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class State(enum.Enum):
    AWAIT_HELLO = "AWAIT_HELLO"  # nothing exchanged; the client must send Hello first
    AWAIT_WELCOME = "AWAIT_WELCOME"  # Hello sent or received; the server must answer
    OPEN = "OPEN"  # requests, responses, pushes and credit flow
    BROKEN = "BROKEN"  # the peer broke the protocol: the only legal step is to send Error
    CLOSED = "CLOSED"  # Close or Error went either way; nothing more is sent


class Direction(enum.Enum):
    SEND = "send"
    RECEIVE = "receive"


class LocalProtocolError(ProtocolError):
    """This side tried something the protocol does not allow (a bug in the caller)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow; send an `Error` and close."""


C, S = Role.CLIENT, Role.SERVER
SEND, RECV = Direction.SEND, Direction.RECEIVE
A_HELLO, A_WELCOME, OPEN, BROKEN, CLOSED = (State.AWAIT_HELLO, State.AWAIT_WELCOME, State.OPEN,
                                            State.BROKEN, State.CLOSED)

_TRANSITIONS: dict[tuple[Role, State, Direction, type[Any]], State] = {
    # handshake
    (C, A_HELLO, SEND, Hello): A_WELCOME,
    (C, A_WELCOME, RECV, Welcome): OPEN,
    (S, A_HELLO, RECV, Hello): A_WELCOME,
    (S, A_WELCOME, SEND, Welcome): OPEN,
    # the open conversation
    (C, OPEN, SEND, Request): OPEN,
    (C, OPEN, SEND, Credit): OPEN,
    (C, OPEN, RECV, Response): OPEN,
    (C, OPEN, RECV, Push): OPEN,
    (C, OPEN, RECV, SubscriptionEnded): OPEN,
    (S, OPEN, RECV, Request): OPEN,
    (S, OPEN, RECV, Credit): OPEN,
    (S, OPEN, SEND, Response): OPEN,
    (S, OPEN, SEND, Push): OPEN,
    (S, OPEN, SEND, SubscriptionEnded): OPEN,
    # endings: either side may say goodbye or fail from any live state
    **{(role, state, direction, kind): CLOSED
       for role in (C, S)
       for state in (A_HELLO, A_WELCOME, OPEN)
       for direction in (SEND, RECV)
       for kind in (Close, Error)},
    (C, BROKEN, SEND, Error): CLOSED,
    (S, BROKEN, SEND, Error): CLOSED,
}


class Connection:
    """One end of a native-protocol connection.

    `receive_data(bytes)` buffers what arrived; `next_event()` returns the next
    event or `NEED_DATA`; `send(event)` returns the bytes to write. Both raise
    `ProtocolError` subclasses naming the state and the event when the
    transition is illegal.
    """

    def __init__(self, role: Role, max_frame_bytes: int = MAX_FRAME_BYTES,
                 max_buffer_bytes: int | None = None) -> None:
        if not 0 < max_frame_bytes <= FRAME_BYTES_CEILING:
            raise ValueError(f"max_frame_bytes must be in 1..{FRAME_BYTES_CEILING}")
        self.role = role
        self.max_frame_bytes = max_frame_bytes
        # One whole frame plus one more frame's worth of data read behind it: a
        # shell that drains next_event() after every receive_data() stays under it.
        self.max_buffer_bytes = max_buffer_bytes or 2 * (max_frame_bytes + HEADER_BYTES)
        self.peer_max_frame_bytes = max_frame_bytes
        self.hello: Hello | None = None
        self.welcome: Welcome | None = None
        self._state = State.AWAIT_HELLO
        self._buf = bytearray()
        self._pos = 0
        self._failure: RemoteProtocolError | None = None
        self._pending: dict[int, str] = {}  # request id -> op, until its Response
        self._sub_asks: dict[int, int] = {}  # subscribe request id -> prefetch
        self._unsub_asks: dict[int, int] = {}  # unsubscribe request id -> sub
        self._credit: dict[int, int] = {}  # live subscription (= its request id) -> credit

    # -- state ------------------------------------------------------------------------------
    @property
    def state(self) -> State:
        return self._state

    @property
    def pending_requests(self) -> int:
        """Requests sent (client) or received (server) and not yet answered."""
        return len(self._pending)

    def credit(self, sub: int) -> int:
        """The pushes subscription `sub` may still receive (0 when it is not live)."""
        return self._credit.get(sub, 0)

    @property
    def subscriptions(self) -> frozenset[int]:
        return frozenset(self._credit)

    def _next_state(self, direction: Direction, event: Event) -> State:
        """The state after `event` goes `direction`; raise naming the state and the event."""
        new = _TRANSITIONS.get((self.role, self._state, direction, type(event)))
        if new is None:
            cls = LocalProtocolError if direction is SEND else RemoteProtocolError
            verb = "send" if direction is SEND else "receive"
            raise cls("bad_request", f"{self.role.value} cannot {verb} "
                      f"{type(event).__name__} in state {self._state.value}")
        return new

    # -- receiving --------------------------------------------------------------------------
    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes from the peer. Raise RemoteProtocolError(payload_too_large) when the
        buffer would exceed `max_buffer_bytes`. Bytes arriving after CLOSED are dropped."""
        if self._state is State.CLOSED or self._failure is not None:
            return
        if len(self._buf) - self._pos + len(data) > self.max_buffer_bytes:
            raise self._fail("payload_too_large",
                             f"receive buffer over {self.max_buffer_bytes} bytes")
        self._buf += data

    def next_event(self) -> Event | NeedData:
        """The next whole event from the peer, or NEED_DATA.

        Raises RemoteProtocolError (malformed_frame, payload_too_large,
        unsupported_version, bad_request) and from then on the connection is BROKEN.
        """
        if self._failure is not None:
            raise self._failure
        if self._state is State.CLOSED:
            return NEED_DATA
        buf, pos = self._buf, self._pos
        if len(buf) - pos < HEADER_BYTES:
            return NEED_DATA
        size = int.from_bytes(buf[pos:pos + HEADER_BYTES], "big")
        if size > self.max_frame_bytes:
            raise self._fail("payload_too_large",
                             f"frame of {size} bytes exceeds {self.max_frame_bytes}")
        end = pos + HEADER_BYTES + size
        if len(buf) < end:
            return NEED_DATA
        try:
            # Decoded straight from the buffer: msgpack copies out what it keeps.
            with memoryview(buf) as view, view[pos + HEADER_BYTES:end] as body:
                decoded = unpack_body(body)
        except ProtocolError as exc:
            raise self._fail(exc.code, exc.message) from None
        if end == len(buf):
            buf.clear()
            self._pos = 0
        elif end >= _COMPACT_BYTES:
            del buf[:end]
            self._pos = 0
        else:
            self._pos = end
        try:
            event = map_to_event(decoded)
            new = self._next_state(RECV, event)
            self._check_receive(event)
        except ProtocolError as exc:
            raise self._fail(exc.code, exc.message) from None
        self._state = new
        self._after(RECV, event)
        return event

    def _fail(self, code: str, message: str) -> RemoteProtocolError:
        self._failure = RemoteProtocolError(code, message)
        if self._state is not State.CLOSED:
            self._state = State.BROKEN
        self._buf.clear()
        self._pos = 0
        return self._failure

    def _check_receive(self, event: Event) -> None:
        if isinstance(event, Hello) and event.version not in SUPPORTED_VERSIONS:
            raise ProtocolError("unsupported_version",
                                f"protocol version {event.version} is not supported "
                                f"(supported: {sorted(SUPPORTED_VERSIONS)})")
        if isinstance(event, Welcome) and event.version not in SUPPORTED_VERSIONS:
            raise ProtocolError("unsupported_version",
                                f"server speaks protocol version {event.version}")
        self._check_flow(event, "received")

    # -- sending ----------------------------------------------------------------------------
    def send(self, event: Event) -> bytes:
        """The bytes of one frame carrying `event`.

        Raises LocalProtocolError when the event is illegal in this state or the
        frame exceeds the peer's frame limit (payload_too_large).
        """
        new = self._next_state(SEND, event)
        try:
            self._check_flow(event, "sent")
        except ProtocolError as exc:
            raise LocalProtocolError(exc.code, exc.message) from None
        data = pack(event_to_map(event))
        if len(data) - HEADER_BYTES > self.peer_max_frame_bytes:
            raise LocalProtocolError("payload_too_large",
                                     f"frame of {len(data) - HEADER_BYTES} bytes exceeds the "
                                     f"peer's limit of {self.peer_max_frame_bytes}")
        self._state = new
        self._after(SEND, event)
        return data

    # -- pipelining and credit --------------------------------------------------------------
    def _check_flow(self, event: Event, verb: str) -> None:
        """Pairing and credit rules; raise ProtocolError(bad_request) naming the event."""
        name = type(event).__name__
        if isinstance(event, Request):
            if event.id in self._pending:
                raise ProtocolError("bad_request",
                                    f"{name} {verb} with id {event.id} already in flight")
        elif isinstance(event, Response):
            if event.id not in self._pending:
                raise ProtocolError("bad_request",
                                    f"{name} {verb} for unknown request id {event.id}")
        elif isinstance(event, Push):
            credit = self._credit.get(event.sub)
            if credit is None:
                raise ProtocolError("bad_request",
                                    f"{name} {verb} for unknown subscription {event.sub}")
            if event.count > credit:
                raise ProtocolError("bad_request", f"{name} {verb} with {event.count} messages "
                                    f"exceeds credit {credit} of subscription {event.sub}")
        elif isinstance(event, Credit) and self._credit.get(event.sub, 0) + event.n > MAX_CREDIT:
            raise ProtocolError("bad_request",
                                f"{name} {verb} would raise credit above {MAX_CREDIT}")

    def _after(self, direction: Direction, event: Event) -> None:
        if isinstance(event, Request):
            self._pending[event.id] = event.op
            if event.op == "subscribe":
                prefetch = event.args.get("prefetch")
                if type(prefetch) is int and 0 <= prefetch <= MAX_CREDIT:
                    self._sub_asks[event.id] = prefetch
            elif event.op == "unsubscribe":
                sub = event.args.get("sub")
                if type(sub) is int:
                    self._unsub_asks[event.id] = sub
        elif isinstance(event, Response):
            del self._pending[event.id]
            prefetch = self._sub_asks.pop(event.id, None)
            sub = self._unsub_asks.pop(event.id, None)
            if event.error is None:
                if prefetch is not None:
                    self._credit[event.id] = prefetch
                if sub is not None:
                    self._credit.pop(sub, None)
        elif isinstance(event, Push):
            self._credit[event.sub] -= event.count
        elif isinstance(event, Credit):
            # Credit for a subscription that just ended crosses its end: ignored.
            if event.sub in self._credit:
                self._credit[event.sub] += event.n
        elif isinstance(event, SubscriptionEnded):
            self._credit.pop(event.sub, None)
        elif isinstance(event, Welcome):
            self.welcome = event
            if direction is RECV:
                self.peer_max_frame_bytes = event.max_frame_bytes
        elif isinstance(event, Hello):
            self.hello = event
        elif isinstance(event, Close | Error):
            self._pending.clear()
            self._credit.clear()
