"""Handler writes that stop waiting on a primary the set has replaced (a pause, a partition), instead of timing out.

A primary cut off from its secondaries, or paused, keeps the operations sent to it: the write waits
for a majority that will not come, or for an answer that will not come, until `timeout`. The driver
learns of the new primary from its heartbeats within moments of the election; from then on waiting
on the old one is pointless. `PrimaryWatch` follows the driver's view of the primary (it reads it,
no listener: a client made outside an event loop stays usable), and `on_primary` gives up an
operation as soon as the primary it was sent to is replaced. Giving up never hands a session out
twice: the caller never sees that write's result, and a write a deposed primary did not replicate
is rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pymongo.server_type import SERVER_TYPE
from pymongo.topology_description import TopologyDescription

from exporter.core.errors import Unavailable

_T = TypeVar("_T")

# How often a waiting operation looks at the driver's view of the primary (a read of memory).
CHECK_EVERY = 0.05


def primary_of(description: TopologyDescription) -> str | None:
    """host:port of the primary in the driver's view, or None."""
    for server in description.server_descriptions().values():
        if server.server_type == SERVER_TYPE.RSPrimary:
            host, port = server.address
            return f"{host}:{port}"
    return None


class PrimaryReplaced(Unavailable):
    """The primary an operation was sent to was replaced while it waited; it may or may not have been applied."""

    def __init__(self, operation: str, old: str, new: str) -> None:
        self.old, self.new = old, new
        super().__init__(
            f"{operation}: the primary {old} was replaced by {new} while the operation waited on it; "
            "it may or may not have been applied",
            operation=operation,
            reason="primary replaced",
        )


class PrimaryWatch:
    """Follows the primary in a client's view of the set; `replaced` tells a waiting operation when it changes."""

    def __init__(self, describe: Callable[[], TopologyDescription], every: float = CHECK_EVERY) -> None:
        self._describe = describe
        self._every = every

    @property
    def primary(self) -> str | None:
        """The primary in the driver's view now."""
        return primary_of(self._describe())

    async def replaced(self, primary: str) -> str:
        """Return the new primary once `primary` is no longer the one (a primary is known again, not this one)."""
        while True:
            now = self.primary
            if now is not None and now != primary:
                return now
            await asyncio.sleep(self._every)


async def on_primary(watch: PrimaryWatch | None, operation: str, call: Callable[[], Awaitable[_T]]) -> _T:
    """Run `call`; raise PrimaryReplaced as soon as the primary it went to is replaced (the call is abandoned)."""
    start = watch.primary if watch is not None else None
    if watch is None or start is None:
        return await call()
    task: asyncio.Future[_T] = asyncio.ensure_future(call())
    replaced: asyncio.Future[str] = asyncio.ensure_future(watch.replaced(start))
    waiting: set[asyncio.Future[Any]] = {task, replaced}
    try:
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        if not replaced.done():
            replaced.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise PrimaryReplaced(operation, start, replaced.result())
