"""The one error table: stable codes, an HTTP-like status and a retriable flag.

Shared by the broker core, the TCP protocol and the HTTP gateway. Every error
that crosses a layer is a `BrokerError` with a code from `ERRORS`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    code: str
    status: int
    retriable: bool
    description: str


ERRORS: dict[str, ErrorSpec] = {
    spec.code: spec
    for spec in (
        ErrorSpec("bad_request", 400, False, "the request is malformed"),
        ErrorSpec("invalid_topic", 400, False, "the topic name is not [A-Za-z0-9._-]{1,249}"),
        ErrorSpec("invalid_group", 400, False, "the group name is not [A-Za-z0-9._-]{1,249}"),
        ErrorSpec("invalid_argument", 400, False, "a parameter is out of range"),
        ErrorSpec("malformed_frame", 400, False, "a protocol frame could not be decoded"),
        ErrorSpec("unsupported_version", 400, False, "the protocol version is not supported"),
        ErrorSpec("unauthorized", 401, False, "a valid token is required"),
        ErrorSpec("forbidden", 403, False, "the token lacks the right for this operation"),
        ErrorSpec("not_found", 404, False, "no such resource"),
        ErrorSpec("topic_not_found", 404, False, "no such topic"),
        ErrorSpec("group_not_found", 404, False, "no such group"),
        ErrorSpec("method_not_allowed", 405, False, "the method is not allowed here"),
        ErrorSpec("topic_exists", 409, False, "the topic already exists"),
        ErrorSpec("stale_receipt", 409, False,
                  "the receipt is unknown, expired, settled or from an earlier incarnation"),
        ErrorSpec("offset_out_of_range", 409, False, "the offset is not in the log"),
        ErrorSpec("message_too_large", 413, False, "the message exceeds max_message_bytes"),
        ErrorSpec("payload_too_large", 413, False, "the request body or batch is too large"),
        ErrorSpec("too_many_requests", 429, True, "a limit was reached; retry later"),
        ErrorSpec("topic_full", 507, True, "the topic is at its retention cap with unacked data"),
        ErrorSpec("storage_full", 507, True, "the disk is full"),
        ErrorSpec("partition_damaged", 503, False, "the partition holds corrupt data"),
        ErrorSpec("unavailable", 503, True, "the broker is shutting down or not ready"),
        ErrorSpec("fsync_failed", 503, False, "the disk failed to persist data; the broker stops"),
        ErrorSpec("storage_error", 503, True, "a storage operation failed"),
        ErrorSpec("corrupt_record", 503, False, "a stored record failed its checksum"),
        ErrorSpec("internal", 500, True, "an unexpected error"),
    )
}


class BrokerError(Exception):
    """An error with a stable code from ERRORS and a human-readable message."""

    def __init__(self, code: str, message: str | None = None) -> None:
        spec = ERRORS.get(code) or ERRORS["internal"]
        self.code = spec.code if code not in ERRORS else code
        self.spec = spec
        self.message = message or spec.description
        super().__init__(f"{self.code}: {self.message}")

    @property
    def status(self) -> int:
        return self.spec.status

    @property
    def retriable(self) -> bool:
        return self.spec.retriable

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "retriable": self.retriable}
