"""Topic and group name validation, per DESIGN.md: `[A-Za-z0-9._-]{1,249}`, not `.` or `..`.

Owns only the rule; it must not look anything up. Names are checked at the broker's
boundary so that no layer below ever sees one that could escape a directory.
"""

from __future__ import annotations

import re

from broker.errors import BrokerError

MAX_NAME_CHARS = 249  # Kafka's limit, so a topic can be mirrored into Kafka under its own name
_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


def is_valid_name(name: object) -> bool:
    """True when `name` is a usable topic or group name."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None and name not in (".", "..")


def check_topic(name: object) -> str:
    """Return the name; raise BrokerError("invalid_topic") when it is not a valid topic name."""
    if not is_valid_name(name):
        raise BrokerError("invalid_topic", f"invalid topic name {name!r}: must match "
                          f"[A-Za-z0-9._-]{{1,{MAX_NAME_CHARS}}} and not be '.' or '..'")
    return name  # type: ignore[return-value]  # is_valid_name proved it is a str


def check_group(name: object) -> str:
    """Return the name; raise BrokerError("invalid_group") when it is not a valid group name."""
    if not is_valid_name(name):
        raise BrokerError("invalid_group", f"invalid group name {name!r}: must match "
                          f"[A-Za-z0-9._-]{{1,{MAX_NAME_CHARS}}} and not be '.' or '..'")
    return name  # type: ignore[return-value]  # is_valid_name proved it is a str
