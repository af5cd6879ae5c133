"""The one middleware: request limits, authorization, metrics and the error envelope.

Every answer that is not a success leaves here as
`{"error": {"code", "message", "retriable"}}` with the status of
`broker/errors.py`'s table, aiohttp's own 404/405/413 included. One function
rather than a chain: each middleware layer costs a call per request on the hot path.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from broker.errors import BrokerError
from http_gateway.auth import COOKIE_NAME, QUERY_NAME, bearer_token
from http_gateway.render import error_doc, json_response
from http_gateway.state import GATEWAY, Gateway, RoutePolicy

log = logging.getLogger(__name__)

# aiohttp's own refusals, mapped onto the error table's codes.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    429: "too_many_requests",
}
_UNMATCHED = RoutePolicy("unmatched", None, public=True)


def _token(request: web.Request) -> str | None:
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        token = request.query.get(QUERY_NAME) or request.cookies.get(COOKIE_NAME)
    return token


def _authorize(gw: Gateway, request: web.Request, policy: RoutePolicy) -> None:
    if policy.public:
        return
    topic: str | None = None
    if policy.topic != "none":
        topic = request.match_info.get("topic")
        if topic is None and policy.topic == "path_or_default":
            topic = gw.config.default_topic
    gw.authorizer.check(_token(request), policy.right, topic)


def authorize_topic(request: web.Request, right: str, topic: str) -> None:
    """Check a topic named in a body (the middleware checked only the path)."""
    gw = request.app[GATEWAY]
    if gw.authorizer.enabled:
        gw.authorizer.check(_token(request), right, topic)


def _error(exc: BrokerError) -> web.Response:
    return json_response(error_doc(exc.code, exc.message), exc.status)


def _http_error(exc: web.HTTPException) -> web.Response:
    code = _HTTP_CODES.get(exc.status, "bad_request" if exc.status < 500 else "internal")
    message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    resp = json_response(error_doc(code, message or code), exc.status)
    allow = exc.headers.get("Allow")
    if allow is not None:
        resp.headers["Allow"] = allow
    return resp


@web.middleware
async def gateway_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    route = request.match_info.route
    policy = gw.policies.get(route, _UNMATCHED)
    resp: web.StreamResponse
    if gw.in_flight_requests >= gw.limits.max_concurrent_requests:
        resp = _error(BrokerError(
            "too_many_requests",
            f"more than {gw.limits.max_concurrent_requests} requests in progress"))
        gw.counters.requests[(request.method, policy.name, resp.status)] += 1
        return resp
    gw.in_flight_requests += 1
    try:
        if gw.authorizer.enabled:
            _authorize(gw, request, policy)
        resp = await handler(request)
    except BrokerError as exc:
        resp = _error(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        resp = _http_error(exc)
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        resp = json_response(error_doc("internal", "an unexpected error; see the gateway log"),
                             500)
    finally:
        gw.in_flight_requests -= 1
    gw.counters.requests[(request.method, policy.name, resp.status)] += 1
    return resp
