"""A self-signed certificate for 127.0.0.1, made with the openssl CLI, for TLS tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """Write cert.pem and key.pem under tmp_path; return (cert, key)."""
    openssl = shutil.which("openssl")
    assert openssl, "the openssl CLI is needed to make a test certificate"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60)
    return cert, key
