"""Bind the listening sockets up front, so nothing says "listening" before the port is really ours."""

from __future__ import annotations

import errno
import socket

from exporter.config import parse_listen

_WHY = {
    errno.EADDRINUSE: "address already in use (another process listens there; pick another port)",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
    errno.EADDRNOTAVAIL: "address not available on this host",
}


class ListenError(Exception):
    """A listen address could not be bound; `address` and a short `reason` say which and why."""

    def __init__(self, address: str, reason: str) -> None:
        self.address = address
        self.reason = reason
        self.message = f"cannot listen on {address}: {reason}"
        super().__init__(self.message)


def bind(address: str) -> socket.socket:
    """A TCP socket bound to `address` (HOST:PORT), not yet listening; ListenError when it cannot be."""
    host, port = parse_listen(address)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(address, f"cannot resolve {host!r} ({exc.strerror})") from None
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # As uvicorn does: a restart may bind while the old connections sit in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
    except OSError as exc:
        sock.close()
        raise ListenError(address, _WHY.get(exc.errno or 0, exc.strerror or type(exc).__name__)) from None
    return sock


def bind_all(addresses: list[str]) -> list[socket.socket]:
    """Bind every address, or none: on a failure the ones already bound are closed again."""
    bound: list[socket.socket] = []
    try:
        for address in addresses:
            bound.append(bind(address))
    except ListenError:
        for sock in bound:
            sock.close()
        raise
    return bound
