"""A self-signed certificate for 127.0.0.1, made with Debian's openssl (CI installs it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.tools import require_binary


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (the certificate doubles as the CA to trust)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [require_binary("openssl", "Debian package openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    key.chmod(0o600)
    return cert, key
