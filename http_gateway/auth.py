"""Bearer-token authorization, shared by the HTTP gateway and the TCP server.

`Authorizer.check(token, right, topic)` is the one decision: it returns when
the token may use `right` on `topic` and raises `BrokerError` (`unauthorized`
or `forbidden`) otherwise. With no tokens configured everything is allowed.
This module does no I/O; the gateway's middleware only finds the token in the
request (Authorization header, `token` query parameter or `spoolmq_token`
cookie, the last two for the dashboard's EventSource) and calls `check`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from broker.errors import BrokerError
from http_gateway.security import check_bind_safety, make_ssl_context
from http_gateway.settings import TokenSettings

# The listener-side helpers live in `security`; re-exported for callers that import auth.
__all__ = ["Authorizer", "bearer_token", "check_bind_safety", "make_ssl_context"]

RIGHTS = ("produce", "consume", "admin")
COOKIE_NAME = "spoolmq_token"
QUERY_NAME = "token"


@dataclass(frozen=True, slots=True)
class _Grant:
    topics: tuple[str, ...]
    rights: frozenset[str]


def _digest(token: str) -> bytes:
    # Looked up by digest: a dict lookup on the raw secret would compare prefixes.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class Authorizer:
    """Decides whether a token may use a right on a topic. Pure and synchronous."""

    __slots__ = ("_grants",)

    def __init__(self, tokens: Sequence[TokenSettings]) -> None:
        self._grants: dict[bytes, _Grant] = {}
        for tok in tokens:
            bad = set(tok.rights) - set(RIGHTS)
            if bad:
                raise ValueError(f"token rights {sorted(bad)} are not among {RIGHTS}")
            self._grants[_digest(tok.token)] = _Grant(tuple(tok.topics), frozenset(tok.rights))

    @property
    def enabled(self) -> bool:
        """True when tokens are configured (and so required)."""
        return bool(self._grants)

    def check(self, token: str | None, right: str | None, topic: str | None) -> None:
        """Return when allowed; raise BrokerError("unauthorized") or BrokerError("forbidden").

        `right` None asks only for a valid token (observation routes); `topic` None
        asks for the right on some topic (operations not bound to one topic).
        """
        if not self._grants:
            return
        if not token:
            raise BrokerError("unauthorized", "a bearer token is required")
        grant = self._grants.get(_digest(token))
        if grant is None:
            raise BrokerError("unauthorized", "the token is not valid")
        if right is None:
            return
        if right not in grant.rights:
            raise BrokerError("forbidden", f"the token lacks the {right!r} right")
        if topic is not None and not any(fnmatchcase(topic, pat) for pat in grant.topics):
            raise BrokerError("forbidden", f"the token may not use topic {topic!r}")


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    value = value.strip()
    return value or None
