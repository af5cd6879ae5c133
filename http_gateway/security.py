"""Transport safety: the TLS context and the refusal to expose an open broker.

Both are plain functions of the settings so the TCP listener uses them too.
"""

from __future__ import annotations

import ipaddress
import ssl

from http_gateway.settings import GatewaySettings

LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})


class UnsafeBindError(RuntimeError):
    """Binding a reachable address without tokens was asked for without `insecure`."""


def make_ssl_context(config: GatewaySettings) -> ssl.SSLContext | None:
    """A server-side TLS context from `tls_cert`/`tls_key`, or None when TLS is not configured.

    Raises ValueError when only one of the two is set, and OSError/ssl.SSLError when
    the files cannot be loaded (the message names the file).
    """
    if config.tls_cert is None and config.tls_key is None:
        return None
    if config.tls_cert is None or config.tls_key is None:
        raise ValueError("tls_cert and tls_key must be given together")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(certfile=str(config.tls_cert), keyfile=str(config.tls_key))
    except (OSError, ssl.SSLError) as exc:
        raise type(exc)(f"cannot load TLS certificate {config.tls_cert} / key "
                        f"{config.tls_key}: {exc}") from exc
    return ctx


def is_loopback(host: str) -> bool:
    """True for names and addresses that only this machine can reach."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind_safety(config: GatewaySettings, host: str | None = None) -> None:
    """Refuse to listen on a non-loopback address with no tokens unless `insecure` is set.

    `host` defaults to `config.host`. Raises UnsafeBindError with the remedy.
    """
    host = config.host if host is None else host
    if is_loopback(host) or config.tokens or config.insecure:
        return
    raise UnsafeBindError(
        f"refusing to listen on {host!r} without authentication: anyone who can reach it "
        "could read and delete every message. Configure tokens (and TLS), bind 127.0.0.1, "
        "or set insecure = true to accept the risk."
    )
