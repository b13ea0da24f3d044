"""What a scrape of /metrics gets: renderings kept until something changes, slow ones made aside in a thread."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client.exposition import choose_encoder

# Seconds a rendered exposition is served again at most (process CPU, memory, connections move on).
RENDER_TTL = 1.0
# A rendering slower than this (hundreds of pools) is made in a worker thread while scrapes are
# served the previous one, at most STALE_LIMIT old; a faster one is made on the spot, so that a
# scrape shows every change made before it.
SLOW_RENDER = 0.02
STALE_LIMIT = 2.0
# Slow renderings (hundreds of pools) take at most this share of the time: at 1000 pools (about
# 0.15 s each) one every 3 s, served up to 8 s old.
RENDER_SHARE = 0.05


@dataclass(frozen=True)
class _Rendering:
    """One rendering of the exposition: its bytes, content type, the change count it shows, when made."""

    body: bytes
    content_type: str
    version: int
    at: float


class Exposition:
    """The renderings of one registry, per content type and gzip, and when to make a new one."""

    def __init__(self, render: Callable[[str | None, bool], tuple[bytes, str]]) -> None:
        self._render = render
        self._version = 0
        self.render_seconds = 0.0  # the last rendering's duration
        self._served: dict[tuple[str, bool], _Rendering] = {}
        self._pending: dict[tuple[str, bool], asyncio.Task[_Rendering]] = {}

    def changed(self) -> None:
        """Something the exposition shows changed: the next scrape gets a new rendering."""
        self._version += 1

    async def serve(self, accept: str | None, gzipped: bool) -> tuple[bytes, str]:
        """What a scrape of /metrics gets, rendered once and served again until something changes.

        A rendering is kept per content type (and gzipped on demand) until `changed()` or for at
        most RENDER_TTL seconds, so process and connection figures are never older than that. With
        hundreds of pools (a rendering slower than SLOW_RENDER) the last rendering is served while a
        new one is made in a thread (never on the event loop), at most one every 20 renderings' time
        (RENDER_SHARE), served up to STALE_LIMIT plus two such gaps old.
        """
        content_type = choose_encoder(accept or "")[1]
        key = (content_type, gzipped)
        served = self._served.get(key)
        now = time.monotonic()
        if self.render_seconds < SLOW_RENDER:
            if served is None or served.version != self._version or now - served.at > RENDER_TTL:
                plain = self._served.get((content_type, False))
                if plain is None or plain.version != self._version or now - plain.at > RENDER_TTL:
                    started = time.perf_counter()
                    body = self._render(accept, False)[0]
                    self.render_seconds = time.perf_counter() - started
                    plain = self._served[(content_type, False)] = _Rendering(body, content_type, self._version, now)
                served = plain
                if gzipped:
                    packed = gzip.compress(plain.body, compresslevel=6)
                    served = self._served[key] = _Rendering(packed, content_type, plain.version, plain.at)
            return served.body, served.content_type
        # Renderings at most RENDER_SHARE of the time: 20 times the last one's duration apart.
        gap = self.render_seconds / RENDER_SHARE
        if served is None:
            outdated, servable = True, False
        else:
            age = now - served.at
            outdated = age > max(RENDER_TTL, gap) or (served.version != self._version and age > gap)
            servable = age <= STALE_LIMIT + 2 * gap
        if outdated and key not in self._pending:
            self._pending[key] = asyncio.create_task(self._render_aside(key, accept, gzipped))
        if served is not None and servable:
            return served.body, served.content_type
        done = await asyncio.shield(self._pending[key])
        return done.body, done.content_type

    async def _render_aside(self, key: tuple[str, bool], accept: str | None, gzipped: bool) -> _Rendering:
        """Render in a worker thread; the result serves the scrapes that follow."""
        version, at = self._version, time.monotonic()
        try:
            started = time.perf_counter()
            body, content_type = await asyncio.to_thread(self._render, accept, gzipped)
            self.render_seconds = time.perf_counter() - started
            rendering = _Rendering(body, content_type, version, at)
            self._served[key] = rendering
            return rendering
        finally:
            self._pending.pop(key, None)
