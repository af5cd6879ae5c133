"""Finding the bearer token in an HTTP request; the decision is `broker.auth.Authorizer`.

The gateway's guard takes the token from the Authorization header, the
`token` query parameter or the `spoolmq_token` cookie (the last two for the
dashboard's EventSource, which cannot send headers) and calls
`Authorizer.check`, the same decision the TCP server makes.
"""

from __future__ import annotations

from broker.auth import RIGHTS, Authorizer
from http_gateway.security import check_bind_safety, make_ssl_context

# The listener-side helpers live in `security`; re-exported for callers that import auth.
__all__ = ["RIGHTS", "Authorizer", "bearer_token", "check_bind_safety", "make_ssl_context"]

COOKIE_NAME = "spoolmq_token"
QUERY_NAME = "token"


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    value = value.strip()
    return value or None
