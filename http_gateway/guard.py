"""The guard every route runs behind: request limits, authorization, metrics and the
error envelope.

Every answer that is not a success leaves here as
`{"error": {"code", "message", "retriable"}}` with the status of
`broker/errors.py`'s table, 404, 405 and aiohttp's own 413 included. It wraps each
route's handler when the app is made (`guarded`), with the route's policy bound,
rather than running as an aiohttp middleware: a middleware costs every request a
router lookup of its policy and two more coroutine layers (aiohttp adds one of its
own), about a tenth of a small send. Paths and methods no route serves reach
`unmatched`, the last route, which answers 404 or 405 with the methods the path has.
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
UNMATCHED = RoutePolicy("unmatched", None, public=True)


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
    """Check a topic named in a body (the guard checked only the path's)."""
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


def guarded(gw: Gateway, policy: RoutePolicy, handler: Handler) -> Handler:
    """`handler` behind the gateway's limits, authorization, metrics and error envelope."""
    limits = gw.limits
    requests = gw.counters.requests
    name = policy.name

    async def guard(request: web.Request) -> web.StreamResponse:
        resp: web.StreamResponse
        if gw.in_flight_requests >= limits.max_concurrent_requests:
            resp = _error(BrokerError(
                "too_many_requests",
                f"more than {limits.max_concurrent_requests} requests in progress"))
            requests[(request.method, name, resp.status)] += 1
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
            resp = json_response(
                error_doc("internal", "an unexpected error; see the gateway log"), 500)
        finally:
            gw.in_flight_requests -= 1
        requests[(request.method, name, resp.status)] += 1
        return resp

    return guard


UNMATCHED_PATH = "/{tail:.*}"


async def unmatched(request: web.Request) -> web.StreamResponse:
    """No route serves this method and path: 405 with Allow when another method of the
    path is served, else 404."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource.canonical == UNMATCHED_PATH:
            continue
        match, methods = await resource.resolve(request)
        if match is None:
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


def add_unmatched(app: web.Application, gw: Gateway) -> None:
    """The last route: every method and path, answered by `unmatched` behind the guard."""
    route = app.router.add_route("*", UNMATCHED_PATH, guarded(gw, UNMATCHED, unmatched),
                                 name=UNMATCHED.name)
    gw.policies[route] = UNMATCHED
