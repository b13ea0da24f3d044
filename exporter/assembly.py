"""The one place a running daemon is put together, for the CLI, the demo, the tests and the bench."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import uvicorn
from pymongo import AsyncMongoClient
from pymongo.write_concern import WriteConcern
from starlette.applications import Starlette
from starlette.types import ASGIApp

from exporter.admin import AdminHTTP, AdminService
from exporter.api import Scrape, ScrapeFirst, create_admin_app, create_app
from exporter.audit import AuditLog
from exporter.collector import MONGO_POOL, Collector
from exporter.config import Config, TLSConfig, parse_listen
from exporter.connections import ACCEPT_BACKLOG, ConnectionGuard, guarded_protocol
from exporter.draining import HTTP_GRACE, Drain
from exporter.listeners import bind_all
from exporter.log import get_logger
from exporter.metrics import Metrics

log = get_logger("exporter")

# uvicorn's own limit on the HTTP drain, a backstop: Drain ends every request within HTTP_GRACE
# (and its slack) first, so uvicorn never cancels one itself (it would log a CancelledError traceback).
_UVICORN_GRACE = HTTP_GRACE + 1.5


@dataclass
class Daemon:
    """Everything a running daemon is made of."""

    config: Config
    metrics: Metrics
    collector: Collector
    admin: AdminService | None
    app: Starlette
    guard: ConnectionGuard
    admin_app: Starlette | None = None
    drain: Drain = field(default_factory=Drain)

    def server(self, *, install_signals: bool = True, **overrides: Any) -> uvicorn.Server:
        """The uvicorn server of the main app (/metrics...); `overrides` for tests."""
        host, port = parse_listen(self.config.listen)
        app = ScrapeFirst(self.drain.wrap(self.app), Scrape(self.metrics))
        return _uvicorn(self, app, host, port, self.config.tls, install_signals, overrides)

    def admin_server(self, **overrides: Any) -> uvicorn.Server | None:
        """The uvicorn server of the admin API's own listener, or None when it has none."""
        if self.admin_app is None:
            return None
        host, port = parse_listen(self.config.admin_listener()[0])
        app = self.drain.wrap(self.admin_app)
        return _uvicorn(self, app, host, port, self.config.admin.tls, False, overrides)

    def addresses(self) -> list[str]:
        """The listen addresses: the main one, then the admin API's when it has its own."""
        return [self.config.listen] + ([self.config.admin_listener()[0]] if self.admin_app is not None else [])

    def bind(self) -> list[socket.socket]:
        """Bind every listener now (ListenError says which address and why), in `addresses()` order."""
        return bind_all(self.addresses())

    async def serve(self, *, install_signals: bool = True, sockets: list[socket.socket] | None = None) -> bool:
        """Serve until SIGTERM/SIGINT (or `should_exit`) on `sockets` (bound here if not given).

        False when a listener could not start; ListenError when an address cannot be bound.
        """
        bound = sockets if sockets is not None else self.bind()
        main = self.server(install_signals=install_signals)
        admin = self.admin_server()
        if admin is None:
            await main.serve(sockets=bound[:1])
            return bool(main.started)
        assert isinstance(main, _Server)
        main.peers.append(admin)  # both listeners drain at once
        admin_task = asyncio.create_task(admin.serve(sockets=bound[1:2]))
        try:
            await main.serve(sockets=bound[:1])
        finally:
            admin.should_exit = True
            await admin_task
        return bool(main.started and admin.started)


def _uvicorn(
    daemon: Daemon,
    app: ASGIApp,
    host: str,
    port: int,
    tls: TLSConfig | None,
    install_signals: bool,
    overrides: dict[str, Any],
) -> uvicorn.Server:
    """One uvicorn server (one process, one event loop) with the daemon's settings and connection guard."""
    settings: dict[str, Any] = {
        "host": host,
        "port": port,
        # The guard caps connections below the open-files limit and closes slow request heads.
        # uvicorn's own limit (503 beyond it) counts a connection until its close completes, so it
        # sits well above the cap: a backstop for runaway request tasks, not the connection limit.
        "http": guarded_protocol(daemon.guard),
        "limit_concurrency": daemon.guard.max_connections * 2,
        "backlog": ACCEPT_BACKLOG,
        "log_config": None,
        "access_log": False,  # uvicorn's would log query strings; the app logs requests at debug
        "server_header": False,
        "lifespan": "auto",
        "timeout_graceful_shutdown": _UVICORN_GRACE,
        # Longer than any client's idle timeout (httpx 5 s, a 60 s scrape interval), so the
        # server never closes a kept-alive connection at the moment a client reuses it.
        "timeout_keep_alive": daemon.config.http.keep_alive,
        "ssl_certfile": str(tls.cert_file) if tls else None,
        "ssl_keyfile": str(tls.key_file) if tls else None,
        **overrides,
    }
    server = _Server(uvicorn.Config(app, **settings), install_signals=install_signals)
    server.on_shutdown += [daemon.drain.begin, daemon.collector.begin_stop]
    return server


class _Server(uvicorn.Server):
    """uvicorn server whose SIGTERM/SIGINT end the process with exit code 0 after a quick graceful shutdown.

    The shutdown, within 2 s whatever MongoDB does (docs/shutdown.md): the listeners close; HTTP
    requests in flight and the collector's running jobs get 0.3 s to finish, then are stopped (a
    request answers 503, a job is abandoned: jobs only read, an admin write is applied with its
    audit event or not at all); the MongoDB client closes within 0.4 s more. A second SIGINT or
    SIGTERM meanwhile ends the process at once (128 + signal).
    """

    def __init__(self, config: uvicorn.Config, *, install_signals: bool = True) -> None:
        super().__init__(config)
        self.install_signals = install_signals
        self.on_shutdown: list[Callable[[], None]] = []  # called as the shutdown begins
        self.peers: list[uvicorn.Server] = []  # servers that shut down with this one
        self._signalled = False

    def handle_exit(self, sig: int, frame: Any) -> None:
        """First SIGINT/SIGTERM: shut down gracefully; a second one: exit now with 128 + its number."""
        if self._signalled:
            log.warning("shutdown_forced", signal=signal.Signals(sig).name, exit_code=128 + sig)
            sys.stderr.flush()
            os._exit(128 + sig)
        self._signalled = True
        super().handle_exit(sig, frame)
        for peer in self.peers:
            peer.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Tell the drain, the collector and the peers before uvicorn's own shutdown."""
        for begin in self.on_shutdown:
            begin()
        for peer in self.peers:
            peer.should_exit = True
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Install the shutdown handlers without re-raising the signal afterwards (uvicorn does).

        After a shutdown on a signal they stay: the process is on its way out, and another signal
        still ends it at once (Python's own handler would raise KeyboardInterrupt mid-exit).
        """
        if not self.install_signals or threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            if not self._signalled:
                for sig, handler in original.items():
                    signal.signal(sig, handler)


def build_admin(config: Config, collector: Collector, metrics: Metrics) -> AdminService | None:
    """The admin service for a daemon, or None when no admin token is configured."""
    if not config.admin.enabled:
        return None
    audit_config = config.admin.audit
    wc = config.admin_write_concern()
    audit = AuditLog(
        collector.client,
        audit_config.database,
        audit_config.collection,
        retention=timedelta(seconds=audit_config.retention),
        write_concern=WriteConcern(w=wc.w, j=wc.j, wtimeout=wc.wtimeout) if wc.given else None,
    )
    return AdminService(
        config.admin, collector.pools, audit, collector.refresh, metrics, write_concern=config.admin.write_concern
    )


def build(config: Config, *, client: AsyncMongoClient[dict[str, Any]] | None = None) -> Daemon:
    """The daemon for `config`: metrics, collector, admin service (when tokens exist) and the ASGI app."""
    metrics = Metrics()
    # Descriptors beyond the HTTP connections: the MongoDB pool and its monitors, logs, listeners.
    reserve = MONGO_POOL + 32
    guard = ConnectionGuard.for_process(config.http.max_connections, config.http.header_timeout, reserve)
    metrics.bind_connections(lambda: (len(guard.open), guard.closed_slow, guard.evicted))
    collector = Collector(config, metrics, client=client)
    drain = Drain()
    # Admin requests use the collector's client: it closes once they ended (within the drain's grace).
    collector.before_close.append(drain.idle)
    metrics.bind_clocks(collector.clocks.offsets)
    admin = build_admin(config, collector, metrics)
    if admin is None:
        # /admin/... then answers "the admin API is off: configure a token".
        return Daemon(config, metrics, collector, None, create_app(config, collector, metrics), guard, drain=drain)
    routes = AdminHTTP(config.admin, admin).routes()
    if config.admin.listen is None:
        app = create_app(config, collector, metrics, admin_routes=routes)
        return Daemon(config, metrics, collector, admin, app, guard, drain=drain)
    app = create_app(config, collector, metrics)
    return Daemon(config, metrics, collector, admin, app, guard, create_admin_app(routes), drain)
