"""The core's errors: credentials never survive into a message."""

from __future__ import annotations

from exporter.core import redact


def test_redact_removes_credentials() -> None:
    text = "cannot reach mongodb://alice:s3cret@db:27017/x and mongodb+srv://bob:pw@c.example/y"
    out = redact(text)
    assert "s3cret" not in out and "pw@" not in out
    assert "mongodb://***@db:27017/x" in out
