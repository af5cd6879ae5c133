"""spoolmq's HTTP gateway: an aiohttp app over the broker core (`broker.api.BrokerAPI`).

Owns the HTTP contract of docs/http-api.md: produce, consume, admin, the live
event stream, Prometheus metrics, OpenAPI, bearer-token authorization and TLS.
It imports the broker's public API and error table only, never storage and
never the composition root (`spoolmq`): the settings it reads are described
structurally by `http_gateway.settings.GatewaySettings`.
"""

from http_gateway.app import create_app, run_gateway
from http_gateway.auth import Authorizer
from http_gateway.security import check_bind_safety, make_ssl_context

__all__ = ["Authorizer", "check_bind_safety", "create_app", "make_ssl_context", "run_gateway"]
