"""Bearer-token authorization: the one decision shared by the TCP server and the HTTP gateway.

`Authorizer.check(token, right, topic)` returns when the token may use `right`
on `topic` and raises `BrokerError` (`unauthorized` or `forbidden`) otherwise.
With no tokens configured everything is allowed. No I/O: each listener only
finds the token in its own request shape and calls `check`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Protocol

from broker.errors import BrokerError

RIGHTS = ("produce", "consume", "admin")


class TokenGrant(Protocol):
    """A bearer token, the topic patterns (fnmatch) it may use and its rights;
    `broker.config.TokenConfig` has this shape."""

    @property
    def token(self) -> str: ...

    @property
    def topics(self) -> Sequence[str]: ...

    @property
    def rights(self) -> Sequence[str]: ...


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

    def __init__(self, tokens: Sequence[TokenGrant]) -> None:
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

        `right` None asks only for a valid token (observation, the handshake);
        `topic` None asks for the right on some topic (operations bound to none).
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
