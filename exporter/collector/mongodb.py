"""Whether MongoDB answers the daemon: a bounded ping cached for a second, and every refresh's word on it."""

from __future__ import annotations

import asyncio
from typing import Any

import pymongo
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from exporter.clock import Clock
from exporter.core import connection_reason, read_preference
from exporter.log import get_logger

log = get_logger("exporter.collector")

PING_TIMEOUT = 1.0
PING_CACHE = 1.0
# Seconds between the daemon's own checks that MongoDB answers (session_pool_mongodb_up), at most.
MONGODB_CHECK_INTERVAL = 5.0


class MongoDBWatch:
    """The last verdict on MongoDB: from a ping on a member the statistics reads may use, or a refresh."""

    def __init__(self, client: AsyncMongoClient[dict[str, Any]], read_preference: str, clock: Clock) -> None:
        self._client = client
        self._read_preference = read_preference
        self._clock = clock
        self._at = 0.0
        self._ok: bool | None = None
        self._error: str | None = None
        self._lock: asyncio.Lock | None = None

    async def reachable(self, *, fresh: bool = False) -> tuple[bool, str | None]:
        """Ping a member the statistics reads may use (bounded, cached for a second): (reachable, redacted error).

        With the default read preference (primary) that is the primary: no primary, not ready.
        `fresh` asks again even within the cache's second (the scheduled check).
        """
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            cached = self._ok is not None and self._clock.monotonic() - self._at < PING_CACHE
            if cached and not fresh:
                return self._ok is True, self._error
            try:
                with pymongo.timeout(PING_TIMEOUT):
                    await self._client.admin.command("ping", read_preference=read_preference(self._read_preference))
            except PyMongoError as exc:
                self.down(connection_reason(exc))
            else:
                if self._ok is False:
                    log.info("mongodb_reachable", previous_error=self._error)
                self._ok, self._error, self._at = True, None, self._clock.monotonic()
            return self._ok is True, self._error

    def answered(self) -> None:
        """A refresh reached MongoDB: as good as a ping (and quiet, as the refresh logs its own recovery)."""
        self._ok, self._at, self._error = True, self._clock.monotonic(), None

    def down(self, reason: str) -> None:
        """Record that MongoDB could not be reached, and why (logged once per cause)."""
        error = f"MongoDB unreachable: {reason}"
        if self._error != error:
            log.warning("mongodb_unreachable", reason=reason)
        self._ok, self._error, self._at = False, error, self._clock.monotonic()

    def up(self) -> bool | None:
        """The last verdict on MongoDB (a check, or a refresh that reached it or not); None before any."""
        return self._ok
