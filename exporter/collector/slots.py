"""The slots refreshes and sums passes share: at most so many at once, a pool's first refresh served first."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import IntEnum


class Priority(IntEnum):
    """Who gets a free slot first (lowest first, then in order of arrival)."""

    FIRST_REFRESH = 0  # a pool never refreshed yet: at start, the first round finishes before anything else
    REFRESH = 1
    SUMS = 2  # the slow jobs: sums passes and underperformers' counts


class Slots:
    """A semaphore whose waiters are served by priority, then in order of arrival; a freed slot goes straight to
    the next waiter (nobody overtakes it)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = size
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @property
    def waiting(self) -> int:
        """Waiters not served yet (cancelled ones excluded)."""
        return sum(1 for _, _, future in self._waiters if not future.done())

    async def acquire(self, priority: Priority = Priority.REFRESH) -> None:
        """Take a slot, waiting behind every waiter of a lower or equal priority value."""
        if self._free > 0:  # a slot is free only when nobody waits (release hands it to a waiter first)
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._arrivals), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # handed the slot just as it was cancelled: pass it on
            else:
                future.cancel()  # dropped from the queue when its turn comes
            raise

    def release(self) -> None:
        """Give the slot back: to the first waiter still waiting, else to the free ones."""
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)
                return
        self._free += 1

    @asynccontextmanager
    async def hold(self, priority: Priority = Priority.REFRESH) -> AsyncIterator[None]:
        """A slot for the block."""
        await self.acquire(priority)
        try:
            yield
        finally:
            self.release()
