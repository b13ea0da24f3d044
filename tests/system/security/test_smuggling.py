"""Request smuggling: a request with both Content-Length and Transfer-Encoding is refused and its connection closed.

h11 framed such a request by its chunked body and then ran whatever followed `0\\r\\n\\r\\n` as a second
request on the same connection; a proxy in front going by Content-Length would have sent those bytes
as the body of the first. Raw sockets: an HTTP client would never send the two headers together.
"""

from __future__ import annotations

import socket
from typing import Any

from pymongo import MongoClient

from exporter.mongod import free_port
from tests.support.daemon import READ_TOKEN, config, running
from tests.support.figures import Report


def exchange(port: int, payload: bytes, timeout: float = 5.0) -> bytes:
    """Send `payload` on a fresh connection and read until the server closes it (or `timeout` passes)."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            received += b"\n[still open]"
    return received


def smuggle(target: str, hidden: str) -> bytes:
    """A POST whose Content-Length covers a second request that its chunked framing leaves outside."""
    inner = f"GET {hidden} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {READ_TOKEN}\r\n\r\n"
    body = "0\r\n\r\n" + inner
    return (
        f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
    ).encode()


def test_content_length_with_transfer_encoding_is_refused_on_both_listeners(
    mongo_uri: str, unique_name: str, sync_client: MongoClient[dict[str, Any]], report: Report
) -> None:
    """Both listeners answer 400 naming the two headers, close the connection, and never run the hidden request."""
    sync_client["spe_smuggle"][unique_name].insert_one({"active": True, "next_use": None})
    admin_port = free_port()
    cfg = config(mongo_uri, [{"name": "p", "database": "spe_smuggle", "collection": unique_name}],
                 admin={"listen": f"127.0.0.1:{admin_port}"})  # fmt: skip
    answers = {}
    with running(cfg, ready=True) as daemon:
        answers["main"] = exchange(daemon.port, smuggle("/healthz", "/metrics"))
        answers["admin"] = exchange(admin_port, smuggle("/admin/pools/p/unlock", "/admin/pools"))
        # The connection guard still serves well-formed requests on both.
        assert exchange(daemon.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(
            b"HTTP/1.1 200"
        )
    for listener, raw in answers.items():
        assert raw.startswith(b"HTTP/1.1 400 "), (listener, raw)
        assert b"Content-Length and Transfer-Encoding" in raw, (listener, raw)
        assert raw.count(b"HTTP/1.1 ") == 1, (listener, raw)  # no answer to the hidden request
        assert b"[still open]" not in raw, (listener, raw)  # the server closed the connection
    report.record("security", "request smuggling (Content-Length + Transfer-Encoding)", {
        "answer": "main and admin listeners: 400, connection closed, hidden request not run",
        "secrets_found": 0,
    })  # fmt: skip
