"""TLS: a self-signed certificate made in the test with the openssl CLI."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp
import pytest

from http_gateway.security import make_ssl_context
from spoolmq.config import Config
from tests.certs import self_signed
from tests.gateway.conftest import StartGateway


async def test_gateway_serves_https_with_the_configured_certificate(
        start_gateway: StartGateway, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    client = ssl.create_default_context(cafile=str(cert))
    live = await start_gateway(tls_cert=cert, tls_key=key, client_ssl=client)
    assert live.url.startswith("https://")
    doc = await live.json("POST", "/send", data={"message": "over tls"})
    assert doc["message"] == "over tls"
    got = await live.json("GET", "/receive")
    assert [m["message"] for m in got["messages"]] == ["over tls"]
    # A client that does not trust the certificate is refused by its own TLS check.
    async with aiohttp.ClientSession() as plain:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await plain.get(live.url + "/healthz")


def test_no_tls_settings_means_no_context() -> None:
    assert make_ssl_context(Config()) is None


def test_unreadable_certificate_names_the_file(tmp_path: Path) -> None:
    config = Config(tls_cert=tmp_path / "missing.pem", tls_key=tmp_path / "missing.key")
    with pytest.raises(OSError, match=r"missing\.pem"):
        make_ssl_context(config)
