"""The native wire protocol, sans-IO: length-prefixed msgpack frames, the handshake,
pipelined requests, credit-based pushes. See docs/protocol.md.

Imports neither asyncio nor sockets nor storage (an import-linter contract checks it).
"""

from broker.protocol.codec import OPS, OpSpec
from broker.protocol.connection import (
    MAX_CREDIT,
    Connection,
    Direction,
    LocalProtocolError,
    RemoteProtocolError,
    Role,
    State,
)
from broker.protocol.events import (
    NEED_DATA,
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    Close,
    Credit,
    Error,
    ErrorInfo,
    Event,
    Hello,
    NeedData,
    Push,
    Request,
    Response,
    SubscriptionEnded,
    Welcome,
)
from broker.protocol.frames import HEADER_BYTES, MAX_FRAME_BYTES, ProtocolError

__all__ = [
    "HEADER_BYTES",
    "MAX_CREDIT",
    "MAX_FRAME_BYTES",
    "NEED_DATA",
    "OPS",
    "PROTOCOL_VERSION",
    "SUPPORTED_VERSIONS",
    "Close",
    "Connection",
    "Credit",
    "Direction",
    "Error",
    "ErrorInfo",
    "Event",
    "Hello",
    "LocalProtocolError",
    "NeedData",
    "OpSpec",
    "ProtocolError",
    "Push",
    "RemoteProtocolError",
    "Request",
    "Response",
    "Role",
    "State",
    "SubscriptionEnded",
    "Welcome",
]
