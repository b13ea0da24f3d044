"""Connection limits uvicorn lacks: a cap on open connections, a deadline for request headers, log rate limits.

uvicorn reads request headers without a deadline and accepts connections until the process runs
out of file descriptors; a few hundred clients trickling headers then starve everyone, and asyncio
logs a traceback per failed accept. The guard keeps the number of connections below the open-files
limit, closes a connection whose first request head is not complete within `header_timeout`, and,
when full, makes room by closing the oldest such connection rather than refusing a new one (a
scraper's request arrives whole; a slow client's never does).
"""

from __future__ import annotations

import asyncio
import resource
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

# asyncio accepts up to `backlog` connections in one go before any of them can make room, so the
# cap leaves that many descriptors free (plus the caller's own needs); otherwise accept() fails
# with EMFILE and asyncio stops accepting for a second.
ACCEPT_BACKLOG = 64
_HEAD_END = b"\r\n\r\n"


def raise_open_files_limit() -> int:
    """Raise this process's soft open-files limit to its hard limit; the limit in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


@dataclass
class ConnectionGuard:
    """Counts the open HTTP connections of one process and decides who may stay."""

    max_connections: int
    header_timeout: float
    open: OrderedDict[int, Any] = field(default_factory=OrderedDict)
    closed_slow: int = 0
    evicted: int = 0

    @classmethod
    def for_process(cls, wanted: int, header_timeout: float, reserve: int) -> ConnectionGuard:
        """A guard whose cap fits under the open-files limit (raised to the hard limit first), keeping
        `reserve` descriptors plus one accept batch free."""
        limit = raise_open_files_limit()
        return cls(max(8, min(wanted, limit - reserve - ACCEPT_BACKLOG)), header_timeout)

    def admit(self, protocol: Any) -> None:
        """Count a new connection; when full, close the oldest one still waiting for its first request head."""
        if len(self.open) >= self.max_connections:
            victim = next((p for p in self.open.values() if not p.head_done), None)
            if victim is None:
                victim = next(iter(self.open.values()))  # all busy: the oldest goes, not the newcomer
            self.evicted += 1
            self.release(victim)
            victim.close_quietly()
        self.open[id(protocol)] = protocol

    def release(self, protocol: Any) -> None:
        """Forget a closed connection."""
        self.open.pop(id(protocol), None)


AMBIGUOUS_LENGTH = "a request may not carry both Content-Length and Transfer-Encoding (RFC 9112, section 6.1)"


class StrictConnection(h11.Connection):
    """h11's server side, refusing a request whose body length is ambiguous.

    h11 frames a request carrying both Content-Length and Transfer-Encoding by the chunked encoding
    and keeps the connection open, so whatever a proxy going by Content-Length took for body would
    be read here as the next request (smuggling). RFC 9112 lets a server refuse such a request
    and close the connection: the error makes uvicorn answer 400 and close.
    """

    refusal: str | None = None

    def next_event(self) -> Any:
        """The next event; a request with both length headers is a protocol error."""
        event = super().next_event()
        if type(event) is h11.Request:
            names = [name for name, _ in event.headers]
            if b"transfer-encoding" in names and b"content-length" in names:
                self.refusal = AMBIGUOUS_LENGTH
                raise h11.RemoteProtocolError(AMBIGUOUS_LENGTH, error_status_hint=400)
        return event


def guarded_protocol(guard: ConnectionGuard) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the guard's rules (only asyncio's public Protocol methods are extended)."""

    class GuardedH11Protocol(H11Protocol):
        """One HTTP connection, admitted by the guard, closed if its request head does not arrive in time."""

        head_done = False
        _head_tail = b""
        _deadline: asyncio.TimerHandle | None = None
        _transport: asyncio.BaseTransport | None = None

        def __init__(
            self,
            config: Config,
            server_state: ServerState,
            app_state: dict[str, Any],
            _loop: asyncio.AbstractEventLoop | None = None,
        ) -> None:
            super().__init__(config, server_state, app_state, _loop)
            # The same limit uvicorn gave its own connection, which nothing has used yet.
            self.conn = StrictConnection(h11.SERVER, self.conn._max_incomplete_event_size)

        def send_400_response(self, msg: str) -> None:
            """uvicorn's 400 (then close), saying why when the request was refused here."""
            refusal = getattr(self.conn, "refusal", None)
            super().send_400_response(refusal or msg)

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self._transport = transport
            super().connection_made(transport)
            guard.admit(self)
            self._deadline = asyncio.get_running_loop().call_later(guard.header_timeout, self._too_slow)

        def data_received(self, data: bytes) -> None:
            if not self.head_done:
                seen = self._head_tail + data
                if _HEAD_END in seen:
                    self.head_done = True
                    self._cancel_deadline()
                else:
                    self._head_tail = seen[-3:]
            super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_deadline()
            guard.release(self)
            super().connection_lost(exc)

        def _too_slow(self) -> None:
            if not self.head_done:
                guard.closed_slow += 1
                self.close_quietly()

        def _cancel_deadline(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def close_quietly(self) -> None:
            """Drop the connection without an answer (it never sent a request to answer)."""
            self._cancel_deadline()
            if self._transport is not None and not self._transport.is_closing():
                self._transport.close()

    return GuardedH11Protocol
