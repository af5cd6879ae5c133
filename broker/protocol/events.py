"""The events of the native wire protocol: frozen, slotted values, one per frame type.

Owns the vocabulary only. Encoding lives in `frames`, legality in `connection`.
Must not do I/O or import asyncio.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from broker.errors import ERRORS

PROTOCOL_VERSION: Final = 1
SUPPORTED_VERSIONS: Final = frozenset({1})


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An error as data: a code from `broker.errors.ERRORS`, a message and the retriable flag."""

    code: str
    message: str = ""
    retriable: bool = False

    @classmethod
    def of(cls, code: str, message: str | None = None) -> ErrorInfo:
        """The ErrorInfo for `code`, with the table's description and retriable flag."""
        spec = ERRORS.get(code) or ERRORS["internal"]
        return cls(code, message or spec.description, spec.retriable)


@dataclass(frozen=True, slots=True)
class Hello:
    """Client → server, first frame: who is calling and in which roles."""

    client_id: str
    roles: tuple[str, ...] = ()
    token: str | None = None
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class Welcome:
    """Server → client, answer to Hello: the broker incarnation and the limits it applies."""

    incarnation: str
    max_frame_bytes: int
    server: str = "spoolmq"
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class Request:
    """Client → server: run `op` with `args`. `id` pairs it with its Response (pipelining)."""

    id: int
    op: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Response:
    """Server → client: the outcome of Request `id`; `error` is None on success."""

    id: int
    result: Any = None
    error: ErrorInfo | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class Push:
    """Server → client: messages for subscription `sub` (columnar), within the granted credit."""

    sub: int
    messages: dict[str, Any]

    @property
    def count(self) -> int:
        offsets = self.messages.get("offset")
        return len(offsets) if isinstance(offsets, list) else 0


@dataclass(frozen=True, slots=True)
class Credit:
    """Client → server: allow `n` more pushed messages on subscription `sub`."""

    sub: int
    n: int


@dataclass(frozen=True, slots=True)
class SubscriptionEnded:
    """Server → client: subscription `sub` stopped; `error` says why (None: unsubscribed)."""

    sub: int
    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True)
class Close:
    """Either side: a graceful goodbye. The sender sends nothing more."""

    message: str = ""


@dataclass(frozen=True, slots=True)
class Error:
    """Either side: a fatal connection-level error. The connection closes after it."""

    code: str
    message: str = ""
    retriable: bool = False

    @classmethod
    def of(cls, code: str, message: str | None = None) -> Error:
        info = ErrorInfo.of(code, message)
        return cls(info.code, info.message, info.retriable)


Event = Hello | Welcome | Request | Response | Push | Credit | SubscriptionEnded | Close | Error


class NeedData:
    """The sentinel `Connection.next_event()` returns when a whole frame has not arrived yet."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()
