"""TLS: a self-signed certificate made in the test with the openssl CLI."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest

from http_gateway.security import make_ssl_context
from spoolmq.config import Config
from tests.gateway.conftest import StartGateway


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    assert openssl, "the openssl CLI is needed to make a test certificate"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60)
    return cert, key


async def test_gateway_serves_https_with_the_configured_certificate(
        start_gateway: StartGateway, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
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
