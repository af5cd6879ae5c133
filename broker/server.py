"""The native TCP server: a listener that gives every connection a `Session`, and the
op table that turns each request into one `BrokerAPI` call.

Owns argument checking at the wire boundary (bad arguments are `bad_request`
before the broker sees them) and the wire form of each op's result (see
docs/protocol.md). Must not touch frames (that is `broker.protocol`) or the
broker's internals (only `BrokerAPI`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module
import time
from collections.abc import Sequence
from typing import Any, Final, TypeVar

from broker.api import BrokerAPI
from broker.auth import Authorizer, TokenGrant
from broker.errors import BrokerError
from broker.protocol import MAX_CREDIT, MAX_FRAME_BYTES, OPS, Request
from broker.protocol.codec import (
    batches_to_columns,
    batches_to_runs,
    receipt_results_to_wire,
    to_wire,
    topic_config_from_wire,
)
from broker.session import Authorize, Handler, Session, fit_batches

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 7070
# Receipts per ack/nack/extend request: a receive returns at most this many leases
# in one go (the broker's default cap on leases in flight per group).
MAX_RECEIPTS: Final = 10_000
# A closing connection may flush what is buffered for this long; a peer that does not
# read is then cut off, so shutting down never waits on a client.
CLOSE_GRACE_S: Final = 5.0

T = TypeVar("T")
_MISSING: Any = object()


# -- argument checking --------------------------------------------------------------------

def _arg(args: dict[str, Any], name: str, typ: type[T] | tuple[type, ...],
         default: Any = _MISSING) -> T:
    value = args.get(name, _MISSING)
    if value is _MISSING or (value is None and default is not _MISSING):
        if default is _MISSING:
            raise BrokerError("bad_request", f"argument {name!r} is required")
        return default  # type: ignore[no-any-return]  # the caller's default has type T
    if not isinstance(value, typ) or (isinstance(value, bool) and typ in (int, float)):
        raise BrokerError("bad_request", f"argument {name!r} has the wrong type")
    return value  # type: ignore[return-value]  # checked by isinstance above


def arg_str(args: dict[str, Any], name: str, default: Any = _MISSING) -> str:
    return _arg(args, name, str, default)


def arg_int(args: dict[str, Any], name: str, default: Any = _MISSING) -> int:
    return _arg(args, name, int, default)


def arg_float(args: dict[str, Any], name: str, default: Any = _MISSING) -> float:
    value: int | float | None = _arg(args, name, (int, float), default)
    return None if value is None else float(value)  # type: ignore[return-value]  # None only as a caller's default


def _list_of(args: dict[str, Any], name: str, typ: type | tuple[type, ...], n: int | None = None,
             nullable: bool = False, required: bool = True) -> list[Any] | None:
    value = args.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, list):
        raise BrokerError("bad_request", f"argument {name!r} must be a list")
    if n is not None and len(value) != n:
        raise BrokerError("bad_request", f"argument {name!r} must have {n} entries")
    for item in value:
        if not (isinstance(item, typ) or (nullable and item is None)):
            raise BrokerError("bad_request", f"argument {name!r} holds a wrong type")
    return value


def _receipts(args: dict[str, Any]) -> list[str]:
    receipts = _list_of(args, "receipts", str)
    assert receipts is not None
    if len(receipts) > MAX_RECEIPTS:
        raise BrokerError("payload_too_large", f"more than {MAX_RECEIPTS} receipts")
    return receipts


# -- op handlers --------------------------------------------------------------------------

async def op_ping(session: Session, req: Request) -> Any:
    return {"pong": True, "time": time.time()}


def _values(args: dict[str, Any]) -> list[bytes]:
    values = args.get("values")
    if not isinstance(values, list):
        raise BrokerError("bad_request", "argument 'values' must be a list")
    # One pass in C over the types, not an isinstance call per value.
    if values and not set(map(type, values)) <= {bytes}:
        raise BrokerError("bad_request", "argument 'values' holds a wrong type")
    return values


async def op_send(session: Session, req: Request) -> Any:
    args = req.args
    topic = arg_str(args, "topic")
    values = _values(args)
    n = len(values)
    keys = _list_of(args, "keys", bytes, n, nullable=True, required=False)
    headers = _list_of(args, "headers", dict, n, nullable=True, required=False)
    ids = _list_of(args, "message_ids", str, n, nullable=True, required=False)
    result = await session.broker.send_columns(topic, values, session.client_ref(), keys,
                                               headers, ids,
                                               delay_s=arg_float(args, "delay", 0.0),
                                               create=_arg(args, "create", bool, True))
    if result.runs is not None and _arg(args, "runs", bool, False):
        return {"topic": result.topic, "created": result.created,
                "runs": [[r.partition, r.base_offset, r.count] for r in result.runs]}
    if result.runs is not None:
        partitions: list[int] = []
        for r in result.runs:
            partitions.extend([r.partition] * r.count)
        return {"topic": result.topic, "created": result.created, "partition": partitions,
                "offset": result.offsets(), "duplicate": None}
    outcomes = result.outcomes or []
    duplicates = [o.duplicate for o in outcomes]
    return {
        "topic": result.topic,
        "created": result.created,
        "partition": [o.partition for o in outcomes],
        "offset": [o.offset for o in outcomes],
        "duplicate": duplicates if True in duplicates else None,
    }


async def op_receive(session: Session, req: Request) -> Any:
    args = req.args
    topic = arg_str(args, "topic")
    group = arg_str(args, "group", "default")
    client = session.client_ref()
    batches = await session.broker.receive_columns(
        topic, group, client, max_messages=arg_int(args, "max", 1),
        wait_s=arg_float(args, "wait", 0.0), visibility_s=arg_float(args, "visibility", None),
        auto_ack=_arg(args, "auto_ack", bool, False))
    fitting, rest = fit_batches(batches, session.conn.max_frame_bytes)
    if rest:
        # Give back what does not fit one frame so it is redelivered at once.
        await session.broker.nack(rest, client)
    if _arg(args, "runs", bool, False):
        return batches_to_runs(topic, group, session.broker.incarnation, fitting)
    return batches_to_columns(topic, fitting)


async def op_ack(session: Session, req: Request) -> Any:
    results = await session.broker.ack(_receipts(req.args), session.client_ref())
    return receipt_results_to_wire(results)


async def op_nack(session: Session, req: Request) -> Any:
    results = await session.broker.nack(_receipts(req.args), session.client_ref(),
                                        delay_s=arg_float(req.args, "delay", 0.0))
    return receipt_results_to_wire(results)


async def op_extend(session: Session, req: Request) -> Any:
    results = await session.broker.extend(_receipts(req.args), session.client_ref(),
                                          visibility_s=arg_float(req.args, "visibility"))
    return receipt_results_to_wire(results, with_deadlines=True)


async def op_subscribe(session: Session, req: Request) -> Any:
    args = req.args
    topic = arg_str(args, "topic")
    group = arg_str(args, "group", "default")
    prefetch = arg_int(args, "prefetch")
    if not 1 <= prefetch <= MAX_CREDIT:
        raise BrokerError("invalid_argument", f"prefetch must be in 1..{MAX_CREDIT}")
    session.client_ref()
    session.add_subscription(req, topic, group, arg_float(args, "visibility", None))
    return {"sub": req.id}


async def op_unsubscribe(session: Session, req: Request) -> Any:
    await session.remove_subscription(arg_int(req.args, "sub"))
    return {}


async def op_topics(session: Session, req: Request) -> Any:
    return {"topics": [to_wire(t) for t in session.broker.list_topics()]}


async def op_describe_topic(session: Session, req: Request) -> Any:
    return to_wire(session.broker.describe_topic(arg_str(req.args, "name")))


async def op_create_topic(session: Session, req: Request) -> Any:
    raw = _arg(req.args, "config", dict, None)
    try:
        config = None if raw is None else topic_config_from_wire(raw)
    except (TypeError, ValueError) as exc:
        raise BrokerError("bad_request", f"config: {exc}") from None
    return to_wire(await session.broker.create_topic(arg_str(req.args, "name"), config))


async def op_purge_topic(session: Session, req: Request) -> Any:
    return to_wire(await session.broker.purge_topic(arg_str(req.args, "name")))


async def op_delete_topic(session: Session, req: Request) -> Any:
    await session.broker.delete_topic(arg_str(req.args, "name"))
    return {}


async def op_groups(session: Session, req: Request) -> Any:
    topic = arg_str(req.args, "topic", None)
    return {"groups": [to_wire(g) for g in session.broker.list_groups(topic)]}


async def op_describe_group(session: Session, req: Request) -> Any:
    args = req.args
    return to_wire(session.broker.describe_group(arg_str(args, "topic"), arg_str(args, "group")))


async def op_delete_group(session: Session, req: Request) -> Any:
    await session.broker.delete_group(arg_str(req.args, "topic"), arg_str(req.args, "group"))
    return {}


async def op_seek_group(session: Session, req: Request) -> Any:
    args = req.args
    info = await session.broker.seek_group(
        arg_str(args, "topic"), arg_str(args, "group"), offset=arg_int(args, "offset", None),
        timestamp_ms=arg_int(args, "timestamp_ms", None),
        partition=arg_int(args, "partition", None))
    return to_wire(info)


async def op_dead_letters(session: Session, req: Request) -> Any:
    args = req.args
    letters = session.broker.dead_letters(arg_str(args, "topic"), arg_str(args, "group"),
                                          limit=arg_int(args, "limit", 1000))
    return {"dead_letters": [to_wire(d) for d in letters]}


async def op_redrive(session: Session, req: Request) -> Any:
    args = req.args
    ids = _list_of(args, "ids", str, required=False)
    count = await session.broker.redrive(arg_str(args, "topic"), arg_str(args, "group"), ids,
                                         arg_str(args, "reason_contains", None))
    return {"count": count}


async def op_browse(session: Session, req: Request) -> Any:
    args = req.args
    messages, cursor = await session.broker.browse(
        arg_str(args, "topic"), partition=arg_int(args, "partition", 0),
        offset=arg_int(args, "offset", None), key=_arg(args, "key", bytes, None),
        text=arg_str(args, "text", None), limit=arg_int(args, "limit", 50))
    return {"messages": [to_wire(m) for m in messages], "next": cursor}


async def op_stats(session: Session, req: Request) -> Any:
    return to_wire(session.broker.snapshot())


HANDLERS: Final[dict[str, Handler]] = {
    "ping": op_ping,
    "send": op_send,
    "receive": op_receive,
    "ack": op_ack,
    "nack": op_nack,
    "extend": op_extend,
    "subscribe": op_subscribe,
    "unsubscribe": op_unsubscribe,
    "topics": op_topics,
    "describe_topic": op_describe_topic,
    "create_topic": op_create_topic,
    "purge_topic": op_purge_topic,
    "delete_topic": op_delete_topic,
    "groups": op_groups,
    "describe_group": op_describe_group,
    "delete_group": op_delete_group,
    "seek_group": op_seek_group,
    "dead_letters": op_dead_letters,
    "redrive": op_redrive,
    "browse": op_browse,
    "stats": op_stats,
}


# -- tokens -------------------------------------------------------------------------------

def token_authorizer(grants: Sequence[TokenGrant]) -> Authorize | None:
    """An `authorize` for `start_server` from configured tokens; None (an open server)
    when there are none. The decision is `broker.auth.Authorizer`'s, with the right
    each op needs taken from `OPS`: the handshake and unknown ops need only a valid
    token."""
    if not grants:
        return None
    authorizer = Authorizer(grants)

    def authorize(token: str | None, op: str, topic: str | None) -> str | None:
        spec = OPS.get(op)
        right = spec.right if spec is not None else None
        try:
            authorizer.check(token, right or None, topic if right else None)
        except BrokerError as exc:
            return exc.code
        return None

    return authorize


# -- the listener -------------------------------------------------------------------------

class Server:
    """A listening native-protocol server. `close()` stops accepting and closes every
    connection (clients get a retriable `unavailable`); `wait_closed()` waits for both."""

    def __init__(self, broker: BrokerAPI, authorize: Authorize | None,
                 max_frame_bytes: int) -> None:
        self.broker = broker
        self.authorize = authorize
        self.max_frame_bytes = max_frame_bytes
        self.sessions: set[Session] = set()
        self._server: asyncio.Server | None = None

    def _new_session(self) -> Session:
        return Session(self.broker, HANDLERS, self.authorize, self.sessions.add,
                       self.sessions.discard, self.max_frame_bytes)

    @property
    def sockets(self) -> Sequence[Any]:
        return self._server.sockets if self._server is not None else ()

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self.sockets[0].getsockname()[1])

    @property
    def host(self) -> str:
        return str(self.sockets[0].getsockname()[0])

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions):
            session.shutdown()

    async def wait_closed(self) -> None:
        """Wait for every connection to close; one whose peer does not read its last
        bytes within CLOSE_GRACE_S is aborted."""
        sessions = list(self.sessions)
        if sessions:
            _, late = await asyncio.wait([s.closed for s in sessions], timeout=CLOSE_GRACE_S)
            for session in sessions:
                if not session.closed.done() and session.transport is not None:
                    session.transport.abort()
            if late:
                await asyncio.wait(late)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self.wait_closed()


async def start_server(broker: BrokerAPI, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                       ssl: ssl_module.SSLContext | None = None,
                       authorize: Authorize | None = None,
                       max_frame_bytes: int = MAX_FRAME_BYTES) -> Server:
    """Listen on host:port (port 0: any free port) and serve `broker` until `close()`.

    `authorize(token, op, topic)` returns None to allow an op (op "hello" at the
    handshake) or an error code such as "unauthorized" or "forbidden".
    Raises OSError when the address cannot be bound.
    """
    server = Server(broker, authorize, max_frame_bytes)
    loop = asyncio.get_running_loop()
    server._server = await loop.create_server(server._new_session, host, port, ssl=ssl)
    return server
