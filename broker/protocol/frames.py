"""Framing: a 4-byte big-endian length, then one msgpack map; and the map <-> event codec.

Owns the byte layout of every frame and the validation of a decoded map. One
`packb` per frame on the way out and one `unpackb` per frame on the way in, so
the cost of a frame does not grow with per-message Python work. Must not do
I/O; raises `ProtocolError` (with a code from `broker.errors`) on bad input.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Final

import msgpack

from broker.protocol.events import (
    Close,
    Credit,
    Error,
    ErrorInfo,
    Event,
    Hello,
    Push,
    Request,
    Response,
    SubscriptionEnded,
    Welcome,
)

HEADER_BYTES: Final = 4
# 2 MiB: one message may be 1 MiB (DESIGN.md's max message size) and a send or a
# push also carries its key, headers and the map around it; twice the payload
# limit leaves room for that overhead while keeping one frame's buffer small.
MAX_FRAME_BYTES: Final = 2 * 1024 * 1024
# The 4-byte header could announce 4 GiB; nothing above this is ever accepted,
# whatever a Connection is configured with.
FRAME_BYTES_CEILING: Final = 64 * 1024 * 1024
# Request ids and subscription ids are unsigned and fit a msgpack uint64.
MAX_ID: Final = 2**64 - 1


class ProtocolError(Exception):
    """A protocol violation: `code` is from `broker.errors.ERRORS`.

    Raised by `Connection` for bad input from the peer (the connection is then
    broken: send an `Error` and close) and for illegal local sends.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _malformed(message: str) -> ProtocolError:
    return ProtocolError("malformed_frame", message)


# One Packer per thread, reused: `packb` builds every body in a fresh buffer that
# grows by doubling, and for a frame of a megabyte that costs some twenty times the
# packing itself (allocation and page faults). A reused buffer stays as large as the
# largest frame its thread packed (bounded by FRAME_BYTES_CEILING), once per thread,
# not per connection.
_local = threading.local()


def _packer() -> msgpack.Packer:
    packer: msgpack.Packer | None = getattr(_local, "packer", None)
    if packer is None:
        packer = _local.packer = msgpack.Packer(use_bin_type=True, autoreset=False)
    return packer


def pack(obj: dict[str, Any]) -> bytes:
    """One frame: the length header followed by the msgpack body."""
    packer = _packer()
    packer.reset()
    try:
        packer.pack(obj)
        with packer.getbuffer() as body:
            return b"".join((len(body).to_bytes(HEADER_BYTES, "big"), body))
    finally:
        packer.reset()


def unpack_body(body: bytes | bytearray | memoryview) -> dict[str, Any]:
    """Decode one frame body into its map; raise ProtocolError(malformed_frame)."""
    try:
        obj = msgpack.unpackb(body, raw=False, strict_map_key=True, ext_hook=_no_ext)
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises ValueError, TypeError, StackError, ...
        raise _malformed(f"not one msgpack object ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise _malformed(f"a frame must be a map, got {type(obj).__name__}")
    return obj


def _no_ext(code: int, data: bytes) -> Any:
    raise _malformed(f"msgpack extension type {code} is not used by this protocol")


# -- encoding -----------------------------------------------------------------------------

def _error_map(info: ErrorInfo | None) -> dict[str, Any] | None:
    if info is None:
        return None
    return {"code": info.code, "message": info.message, "retriable": info.retriable}


def event_to_map(event: Event) -> dict[str, Any]:
    """The wire map of an event (see docs/protocol.md)."""
    if isinstance(event, Request):
        return {"t": "req", "id": event.id, "op": event.op, "args": event.args}
    if isinstance(event, Response):
        if event.error is None:
            return {"t": "res", "id": event.id, "ok": True, "result": event.result}
        return {"t": "res", "id": event.id, "ok": False, "error": _error_map(event.error)}
    if isinstance(event, Push):
        return {"t": "push", "sub": event.sub, "messages": event.messages}
    if isinstance(event, Credit):
        return {"t": "credit", "sub": event.sub, "n": event.n}
    if isinstance(event, Hello):
        out: dict[str, Any] = {"t": "hello", "v": event.version, "client_id": event.client_id,
                               "roles": list(event.roles)}
        if event.token is not None:
            out["token"] = event.token
        return out
    if isinstance(event, Welcome):
        return {"t": "welcome", "v": event.version, "incarnation": event.incarnation,
                "max_frame_bytes": event.max_frame_bytes, "server": event.server}
    if isinstance(event, SubscriptionEnded):
        return {"t": "sub_end", "sub": event.sub, "error": _error_map(event.error)}
    if isinstance(event, Close):
        return {"t": "close", "message": event.message}
    return {"t": "error", "code": event.code, "message": event.message,
            "retriable": event.retriable}


# -- decoding -----------------------------------------------------------------------------

def _get(m: dict[str, Any], key: str, typ: type | tuple[type, ...], what: str) -> Any:
    value = m.get(key)
    # bool is an int subclass; an id or a count must be a real integer.
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise _malformed(f"{what}: field {key!r} must be {_type_name(typ)}")
    return value


def _type_name(typ: type | tuple[type, ...]) -> str:
    if isinstance(typ, tuple):
        return " or ".join(t.__name__ for t in typ)
    return typ.__name__


def _uint(m: dict[str, Any], key: str, what: str) -> int:
    value: int = _get(m, key, int, what)
    if not 0 <= value <= MAX_ID:
        raise _malformed(f"{what}: field {key!r} out of range")
    return value


def _opt_str(m: dict[str, Any], key: str, what: str) -> str | None:
    value = m.get(key)
    if value is not None and not isinstance(value, str):
        raise _malformed(f"{what}: field {key!r} must be a string")
    return value


def _error_info(raw: Any, what: str) -> ErrorInfo | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _malformed(f"{what}: 'error' must be a map")
    code = _get(raw, "code", str, what)
    message = _opt_str(raw, "message", what) or ""
    return ErrorInfo(code, message, bool(raw.get("retriable", False)))


def _hello(m: dict[str, Any]) -> Event:
    version = _get(m, "v", int, "hello")
    roles = m.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise _malformed("hello: field 'roles' must be a list of strings")
    return Hello(_get(m, "client_id", str, "hello"), tuple(roles), _opt_str(m, "token", "hello"),
                 version)


def _welcome(m: dict[str, Any]) -> Event:
    return Welcome(_get(m, "incarnation", str, "welcome"), _uint(m, "max_frame_bytes", "welcome"),
                   _opt_str(m, "server", "welcome") or "", _get(m, "v", int, "welcome"))


def _request(m: dict[str, Any]) -> Event:
    args = m.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise _malformed("req: field 'args' must be a map")
    return Request(_uint(m, "id", "req"), _get(m, "op", str, "req"), args)


def _response(m: dict[str, Any]) -> Event:
    rid = _uint(m, "id", "res")
    ok = _get(m, "ok", bool, "res")
    if ok:
        return Response(rid, m.get("result"))
    error = _error_info(m.get("error"), "res")
    if error is None:
        raise _malformed("res: a failed response needs an 'error'")
    return Response(rid, None, error)


def _push(m: dict[str, Any]) -> Event:
    messages = _get(m, "messages", dict, "push")
    if not isinstance(messages.get("offset"), list):
        raise _malformed("push: 'messages' needs an 'offset' list")
    return Push(_uint(m, "sub", "push"), messages)


def _credit(m: dict[str, Any]) -> Event:
    return Credit(_uint(m, "sub", "credit"), _uint(m, "n", "credit"))


def _sub_end(m: dict[str, Any]) -> Event:
    return SubscriptionEnded(_uint(m, "sub", "sub_end"), _error_info(m.get("error"), "sub_end"))


def _close(m: dict[str, Any]) -> Event:
    return Close(_opt_str(m, "message", "close") or "")


def _error(m: dict[str, Any]) -> Event:
    return Error(_get(m, "code", str, "error"), _opt_str(m, "message", "error") or "",
                 bool(m.get("retriable", False)))


_DECODERS: dict[str, Callable[[dict[str, Any]], Event]] = {
    "hello": _hello,
    "welcome": _welcome,
    "req": _request,
    "res": _response,
    "push": _push,
    "credit": _credit,
    "sub_end": _sub_end,
    "close": _close,
    "error": _error,
}


def map_to_event(m: dict[str, Any]) -> Event:
    """The event a decoded frame map stands for; raise ProtocolError(malformed_frame)."""
    kind = m.get("t")
    decoder = _DECODERS.get(kind) if isinstance(kind, str) else None
    if decoder is None:
        raise _malformed(f"unknown frame type {kind!r}")
    return decoder(m)
