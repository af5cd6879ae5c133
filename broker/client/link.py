"""One client connection to the server: the asyncio shell around a client `Connection`.

Owns the socket, the handshake, pairing responses with waiting futures and
handing pushes to the client. A lost link fails every waiting future with
`LinkLost`; the `Client` decides what to retry. Must not reconnect by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl as ssl_module
from collections.abc import Callable
from typing import Any, cast

from broker.client.types import ClientError
from broker.protocol import (
    Close,
    Connection,
    Credit,
    Error,
    Event,
    Hello,
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

log = logging.getLogger("broker.client")


class LinkLost(Exception):
    """The connection ended while a request was in flight."""


class _Stream(asyncio.Protocol):
    """The socket end of a Link: hands received bytes to it as they come, with no stream
    buffer in between, and tracks whether the transport takes more writes."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.link: Link | None = None
        self.handshake: asyncio.Future[Welcome] | None = None
        self.conn = Connection(Role.CLIENT)
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writable: asyncio.Future[None] | None = None  # set while writes are paused

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):  # requests wait for nothing (no Nagle)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.link is not None:
            self.link.data_received(data)
            return
        handshake = self.handshake
        if handshake is None or handshake.done():
            return
        try:
            self.conn.receive_data(data)
            event = self.conn.next_event()
        except ProtocolError as exc:
            handshake.set_exception(ClientError(exc.code, f"handshake: {exc.message}"))
            return
        if isinstance(event, Welcome):
            handshake.set_result(event)
        elif isinstance(event, Error):
            handshake.set_exception(ClientError(event.code, event.message, event.retriable))
        elif isinstance(event, Close):
            handshake.set_exception(
                ConnectionResetError("the server closed the connection during handshake"))

    def eof_received(self) -> bool:
        return False  # close our end too

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        if self.handshake is not None and not self.handshake.done():
            self.handshake.set_exception(
                ConnectionResetError("the server closed the connection during handshake"))
        if self.link is not None:
            self.link.connection_lost(
                "the server closed the connection" if exc is None else f"connection lost: {exc}")

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    async def drain(self) -> None:
        """Wait while the transport's write buffer is over its high-water mark."""
        if self._writable is not None and not self._writable.done():
            await asyncio.shield(self._writable)


class Link:
    """An open, handshaken connection. Create with `await Link.open(...)`."""

    def __init__(self, stream: _Stream, welcome: Welcome,
                 on_push: Callable[[Link, Push], None],
                 on_sub_end: Callable[[Link, SubscriptionEnded], None],
                 on_lost: Callable[[Link], None]) -> None:
        assert stream.transport is not None
        self._stream = stream
        self.transport = stream.transport
        self.conn = stream.conn
        self.welcome = welcome
        self._on_push = on_push
        self._on_sub_end = on_sub_end
        self._on_lost = on_lost
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 1
        self.alive = True
        self._loop = asyncio.get_running_loop()
        # Frames written in one turn of the event loop leave in one socket write at its
        # end (`_flush`): a consumer's ack and its next receive wake the server once.
        self._out: list[bytes] = []
        stream.link = self
        if stream.closed.done() or self.transport.is_closing():
            self._loop.call_soon(self.connection_lost, "the server closed the connection")

    @classmethod
    async def open(cls, host: str, port: int, ssl: ssl_module.SSLContext | None, hello: Hello,
                   timeout: float, on_push: Callable[[Link, Push], None],
                   on_sub_end: Callable[[Link, SubscriptionEnded], None],
                   on_lost: Callable[[Link], None]) -> Link:
        """Connect and handshake within `timeout` seconds.

        Raises OSError or TimeoutError when the server cannot be reached, and
        ClientError when it refuses the handshake (e.g. unauthorized).
        """
        loop = asyncio.get_running_loop()
        transport, stream = await asyncio.wait_for(
            loop.create_connection(_Stream, host, port, ssl=ssl), timeout)
        try:
            stream.handshake = loop.create_future()
            transport.write(stream.conn.send(hello))
            welcome = await asyncio.wait_for(stream.handshake, timeout)
        except BaseException:
            transport.close()
            raise
        link = cls(stream, welcome, on_push, on_sub_end, on_lost)
        # Bytes that came with the welcome (a push, say) are events of the open link.
        if link.alive:
            link.data_received(b"")
        return link

    # -- requests ---------------------------------------------------------------------------
    def request(self, op: str, args: dict[str, Any]) -> tuple[int, asyncio.Future[Any]]:
        """Write a request now; return its id and a future that gets the result, a
        ClientError or LinkLost.

        Raises LinkLost when the link is already down (nothing was sent) and
        ClientError(payload_too_large) when the request exceeds the frame limit.
        """
        if not self.alive:
            raise LinkLost("the connection is closed")
        rid = self._next_id
        self._next_id += 1
        try:
            data = self.conn.send(Request(rid, op, args))
        except ProtocolError as exc:
            raise ClientError(exc.code, exc.message) from None
        future: asyncio.Future[Any] = self._loop.create_future()
        self._waiting[rid] = future
        self._write(data)
        return rid, future

    def _write(self, data: bytes) -> None:
        """Queue a frame for this turn's socket write, in order."""
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(data)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self.alive and out:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    async def drain(self) -> None:
        """Wait while the socket's write buffer is over its high-water mark."""
        if self.alive:
            await self._stream.drain()

    def credit(self, sub: int, n: int) -> None:
        if self.alive and n > 0 and sub in self.conn.subscriptions:
            self._write(self.conn.send(Credit(sub, n)))

    # -- reading ----------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if not self.alive:
            return
        try:
            if data:
                self.conn.receive_data(data)
            ended = self._drain_events()
        except ProtocolError as exc:
            reason = f"protocol error from server: {exc}"
            log.warning("%s", reason)
            with contextlib.suppress(ProtocolError, ConnectionError, RuntimeError):
                self._flush()
                self.transport.write(self.conn.send(Error.of(exc.code, exc.message)))
            self._lost(reason)
            return
        if ended is not None:
            self._lost(ended)

    def connection_lost(self, reason: str) -> None:
        self._lost(reason)

    def _drain_events(self) -> str | None:
        """Dispatch every whole event; once the server said Close or Error, return why."""
        while True:
            event: Event | NeedData = self.conn.next_event()
            if isinstance(event, NeedData):
                return None
            if isinstance(event, Response):
                future = self._waiting.pop(event.id, None)
                if future is not None and not future.done():
                    if event.error is None:
                        future.set_result(event.result)
                    else:
                        err = event.error
                        future.set_exception(ClientError(err.code, err.message, err.retriable))
            elif isinstance(event, Push):
                self._on_push(self, event)
            elif isinstance(event, SubscriptionEnded):
                self._on_sub_end(self, event)
            elif isinstance(event, Error):
                log.info("server closed the connection: %s %s", event.code, event.message)
                return f"the server closed the connection: {event.code}: {event.message}"
            elif isinstance(event, Close):
                return f"the server closed the connection: {event.message}"

    def _lost(self, reason: str) -> None:
        if not self.alive:
            return
        self.alive = False
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(LinkLost(reason))
        self._out.clear()
        self.transport.close()
        self._on_lost(self)

    async def close(self) -> None:
        """Say goodbye and close; requests still waiting fail with LinkLost."""
        if self.alive and self.conn.state is State.OPEN:
            with contextlib.suppress(ProtocolError, ConnectionError, RuntimeError):
                self._flush()
                self.transport.write(self.conn.send(Close()))
        self._lost("the client closed the connection")
        await self._stream.closed
