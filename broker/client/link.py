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
from typing import Any, Final

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

READ_CHUNK: Final = 256 * 1024  # bytes per socket read: a few frames of a busy stream


class LinkLost(Exception):
    """The connection ended while a request was in flight."""


class Link:
    """An open, handshaken connection. Create with `await Link.open(...)`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 conn: Connection, welcome: Welcome,
                 on_push: Callable[[Link, Push], None],
                 on_sub_end: Callable[[Link, SubscriptionEnded], None],
                 on_lost: Callable[[Link], None]) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = conn
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
        self._task = self._loop.create_task(self._read_loop())

    @classmethod
    async def open(cls, host: str, port: int, ssl: ssl_module.SSLContext | None, hello: Hello,
                   timeout: float, on_push: Callable[[Link, Push], None],
                   on_sub_end: Callable[[Link, SubscriptionEnded], None],
                   on_lost: Callable[[Link], None]) -> Link:
        """Connect and handshake within `timeout` seconds.

        Raises OSError or TimeoutError when the server cannot be reached, and
        ClientError when it refuses the handshake (e.g. unauthorized).
        """
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ssl), timeout)
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):  # requests wait for nothing (no Nagle)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Connection(Role.CLIENT)
        try:
            writer.write(conn.send(hello))
            welcome = await asyncio.wait_for(cls._await_welcome(reader, conn), timeout)
        except BaseException:
            writer.close()
            raise
        return cls(reader, writer, conn, welcome, on_push, on_sub_end, on_lost)

    @staticmethod
    async def _await_welcome(reader: asyncio.StreamReader, conn: Connection) -> Welcome:
        while True:
            data = await reader.read(READ_CHUNK)
            if not data:
                raise ConnectionResetError("the server closed the connection during handshake")
            try:
                conn.receive_data(data)
                event = conn.next_event()
            except ProtocolError as exc:
                raise ClientError(exc.code, f"handshake: {exc.message}") from None
            if isinstance(event, Welcome):
                return event
            if isinstance(event, Error):
                raise ClientError(event.code, event.message, event.retriable)
            if isinstance(event, Close):
                raise ConnectionResetError("the server closed the connection during handshake")

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
            self.writer.write(out[0] if len(out) == 1 else b"".join(out))

    async def drain(self) -> None:
        """Wait while the socket's write buffer is over its high-water mark."""
        if self.alive:
            with contextlib.suppress(ConnectionError):
                await self.writer.drain()

    def credit(self, sub: int, n: int) -> None:
        if self.alive and n > 0 and sub in self.conn.subscriptions:
            self._write(self.conn.send(Credit(sub, n)))

    # -- reading ----------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        reason = "the server closed the connection"
        try:
            while True:
                data = await self.reader.read(READ_CHUNK)
                if not data:
                    break
                self.conn.receive_data(data)
                ended = self._drain_events()
                if ended is not None:
                    reason = ended
                    break
        except ProtocolError as exc:
            reason = f"protocol error from server: {exc}"
            log.warning("%s", reason)
            with contextlib.suppress(ProtocolError, ConnectionError, RuntimeError):
                self._flush()
                self.writer.write(self.conn.send(Error.of(exc.code, exc.message)))
        except (ConnectionError, OSError) as exc:
            reason = f"connection lost: {exc}"
        finally:
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
        self.writer.close()
        self._on_lost(self)

    async def close(self) -> None:
        """Say goodbye and close; requests still waiting fail with LinkLost."""
        if self.alive and self.conn.state is State.OPEN:
            with contextlib.suppress(ProtocolError, ConnectionError, RuntimeError):
                self._flush()
                self.writer.write(self.conn.send(Close()))
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._lost("the client closed the connection")
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
