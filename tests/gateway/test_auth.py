"""Bearer tokens: the rights matrix over every route of the app's router, token carriers,
and the Authorizer / bind-safety functions the TCP server shares."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

import pytest

from broker.errors import BrokerError
from http_gateway.auth import Authorizer
from http_gateway.guard import UNMATCHED
from http_gateway.security import UnsafeBindError, check_bind_safety
from http_gateway.state import GATEWAY, RoutePolicy
from spoolmq.config import Config, TokenConfig
from tests.gateway.conftest import Live, StartGateway

TOKENS = (
    TokenConfig("all-secret"),
    TokenConfig("produce-orders", ("orders",), ("produce",)),
    TokenConfig("consume-orders", ("orders",), ("consume",)),
    TokenConfig("admin-orders", ("ord*",), ("admin",)),
    TokenConfig("admin-other", ("other*",), ("admin",)),
    TokenConfig("no-rights", ("*",), ()),
)
PATH_VALUES = {"topic": "orders", "group": "g"}
# Bodies that pass parsing, so a refusal can only come from authorization.
BODIES: dict[str, dict[str, Any]] = {
    "send": {"json": {"message": "m"}},
    "send_topic": {"json": {"message": "m"}},
    "ack": {"json": {"receipts": ["r"]}},
    "nack": {"json": {"receipts": ["r"]}},
    "extend": {"json": {"receipts": ["r"], "visibility": 5}},
    "create_topic": {"json": {"name": "orders"}},
    "seek_group": {"json": {"offset": 0}},
    "redrive": {"json": {}},
}
BODY_TOPIC = {"create_topic": "orders"}  # routes whose topic is named in the body


def _allowed(token: TokenConfig, policy: RoutePolicy, topic: str | None) -> bool:
    if policy.public or policy.right is None:
        return True
    if policy.right not in token.rights:
        return False
    return topic is None or any(fnmatchcase(topic, p) for p in token.topics)


def _routes(live: Live) -> list[tuple[str, str, RoutePolicy]]:
    gw = live.app[GATEWAY]
    out = []
    for route in live.app.router.routes():
        if gw.policies[route] is UNMATCHED:  # the 404/405 answerer, not an operation
            continue
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter", "")
        out.append((route.method, path.format(**PATH_VALUES), gw.policies[route]))
    return out


async def _status(live: Live, method: str, path: str, policy: RoutePolicy, **kw: Any) -> int:
    async with live.session.request(method, live.url + path, **BODIES.get(policy.name, {}),
                                    **kw) as resp:
        if resp.status in (401, 403):
            doc = await resp.json()
            assert doc["error"]["code"] == ("unauthorized" if resp.status == 401 else "forbidden")
        return resp.status


@pytest.fixture
async def secured(start_gateway: StartGateway) -> Live:
    return await start_gateway(tokens=TOKENS)


async def test_every_route_has_a_policy_and_the_key_routes_the_expected_right(
        secured: Live) -> None:
    routes = _routes(secured)
    assert len(routes) >= 25
    rights = {policy.name: (policy.right, policy.public) for _, _, policy in routes}
    assert rights["send"] == ("produce", False)
    assert rights["receive_topic"] == ("consume", False)
    assert rights["ack"] == ("consume", False)
    assert rights["delete_topic"] == ("admin", False)
    assert rights["redrive"] == ("admin", False)
    assert rights["healthz"] == (None, True)


async def test_without_a_valid_token_every_route_but_healthz_is_401(secured: Live) -> None:
    for method, path, policy in _routes(secured):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
            status = await _status(secured, method, path, policy, headers=headers)
            if policy.public:
                assert status not in (401, 403), (method, path)
            else:
                assert status == 401, (method, path, headers, status)


async def test_rights_and_topic_patterns_matrix_over_every_route(secured: Live) -> None:
    for token in TOKENS:
        for method, path, policy in _routes(secured):
            topic = BODY_TOPIC.get(policy.name)
            if policy.topic == "path":
                topic = PATH_VALUES["topic"]
            elif policy.topic == "path_or_default":
                topic = secured.config.default_topic
            status = await _status(secured, method, path, policy,
                                   headers={"Authorization": f"Bearer {token.token}"})
            expected = _allowed(token, policy, topic)
            assert (status not in (401, 403)) == expected, (token.token, method, path, status)
            if not expected:
                assert status == 403, (token.token, method, path, status)


async def test_token_may_come_as_query_parameter_or_cookie(secured: Live) -> None:
    await secured.json("GET", "/stats?token=all-secret")
    await secured.json("GET", "/stats", cookies={"spoolmq_token": "all-secret"})
    async with secured.session.get(secured.url + "/events?token=no-rights") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
    doc = await secured.json("GET", "/stats?token=nope", status=401)
    assert doc["error"]["code"] == "unauthorized"


async def test_send_and_receive_work_with_the_right_token(secured: Live) -> None:
    produce = {"Authorization": "Bearer produce-orders"}
    consume = {"Authorization": "Bearer consume-orders"}
    await secured.json("POST", "/send/orders", json={"message": "ok"}, headers=produce)
    doc = await secured.json("GET", "/receive/orders", headers=consume)
    [msg] = doc["messages"]
    await secured.json("POST", "/ack", data={"receipt": msg["receipt"]}, headers=consume)
    await secured.json("GET", "/receive/orders", status=403, headers=produce)


def test_authorizer_is_open_without_tokens() -> None:
    Authorizer(()).check(None, "admin", "anything")


def test_authorizer_decisions() -> None:
    auth = Authorizer(TOKENS)
    auth.check("produce-orders", "produce", "orders")
    auth.check("admin-orders", "admin", "orders-eu")
    auth.check("no-rights", None, None)
    for token, right, topic, code in (
        (None, "produce", "orders", "unauthorized"),
        ("", "produce", "orders", "unauthorized"),
        ("unknown", None, None, "unauthorized"),
        ("produce-orders", "consume", "orders", "forbidden"),
        ("produce-orders", "produce", "payments", "forbidden"),
        ("admin-other", "admin", "orders", "forbidden"),
    ):
        with pytest.raises(BrokerError) as err:
            auth.check(token, right, topic)
        assert err.value.code == code, (token, right, topic)


def test_authorizer_refuses_unknown_rights() -> None:
    with pytest.raises(ValueError, match="rights"):
        Authorizer((TokenConfig("t", ("*",), ("superuser",)),))


def test_binding_a_public_address_needs_tokens_or_insecure() -> None:
    check_bind_safety(Config(host="127.0.0.1"))
    check_bind_safety(Config(host="localhost"))
    check_bind_safety(Config(host="::1"))
    check_bind_safety(Config(host="0.0.0.0", tokens=(TokenConfig("t"),)))
    check_bind_safety(Config(host="0.0.0.0", insecure=True))
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.com"):
        with pytest.raises(UnsafeBindError, match="insecure"):
            check_bind_safety(Config(host=host))
