"""Requests in flight when the daemon shuts down: a short grace, then a 503 (never a hang, never a traceback)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exporter.admin import ShuttingDown
from exporter.api import error_response
from exporter.log import get_logger

log = get_logger("exporter.draining")

# Requests in flight when the shutdown begins get this long to finish (an admin write on a healthy
# server takes milliseconds); then they are stopped, so a frozen MongoDB cannot hold the shutdown.
HTTP_GRACE = 0.3
# A stopped request may still abort its transaction (at most CANCELLED_ABORT_TIMEOUT, 0.25 s).
_STOP_SLACK = 0.5
STOPPED = (
    "the daemon is shutting down and stopped this request before it finished: look the session up to see "
    "whether its change was applied (a change is never applied without its audit event)"
)


class Drain:
    """Every HTTP request on the daemon's listeners, so that the shutdown can end them all within the grace."""

    def __init__(self, grace: float = HTTP_GRACE) -> None:
        self.grace = grace
        self._running: set[asyncio.Task[Any]] = set()
        self._stopped: set[asyncio.Task[Any]] = set()
        self._began: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """`app` with its HTTP requests tracked (lifespan messages pass through)."""

        async def tracked(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            await self._request(app, scope, receive, send)

        return tracked

    async def _request(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """One request: run it; when the shutdown stops it, answer 503 if nothing was sent yet."""
        task = asyncio.current_task()
        assert task is not None
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        if self._began is not None and time.monotonic() - self._began >= self.grace:
            # Arrived on a connection still open after the grace: the answer is already known.
            await error_response(ShuttingDown(STOPPED))(scope, receive, send)
            return
        self._running.add(task)
        try:
            await app(scope, receive, watched)
        except asyncio.CancelledError:
            if task not in self._stopped:
                raise
            task.uncancel()
            log.warning("request_stopped", method=scope.get("method"), path=scope.get("path"), reason="shutdown")
            if not started:
                await error_response(ShuttingDown(STOPPED))(scope, receive, watched)
        finally:
            self._running.discard(task)
            self._stopped.discard(task)

    def begin(self) -> None:
        """The shutdown has begun: requests in flight get `grace` seconds, then they are stopped (idempotent)."""
        if self._began is None:
            self._began = time.monotonic()
            self._timer = asyncio.get_running_loop().call_later(self.grace, self._stop_all)

    def _stop_all(self) -> None:
        """Cancel every request still running (each answers 503 if it can)."""
        for task in self._running:
            if not task.done():
                self._stopped.add(task)
                task.cancel()

    async def idle(self) -> None:
        """Return once no request runs: at most the grace (from begin()) and the stopped ones' slack."""
        self.begin()
        assert self._began is not None
        running = {task for task in self._running if not task.done()}
        if running:
            await asyncio.wait(running, timeout=max(0.0, self._began + self.grace + _STOP_SLACK - time.monotonic()))
