"""Handler writes that stop waiting on a primary the set has replaced (a pause, a partition), instead of timing out.

A primary cut off from its secondaries, or paused, keeps the operations sent to it: the write waits
for a majority that will not come, or for an answer that will not come, until `timeout`. The driver
learns of the new primary from its heartbeats within moments of the election; from then on waiting
on the old one is pointless. `PrimaryWatch` follows the driver's view of the primary, and
`on_primary` gives up an operation as soon as the primary it was sent to is replaced. Giving up
never hands a session out twice: the caller never sees that write's result, and a write a deposed
primary did not replicate is rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pymongo import monitoring
from pymongo.server_type import SERVER_TYPE
from pymongo.topology_description import TopologyDescription

from exporter.core.errors import Unavailable

_T = TypeVar("_T")


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


class PrimaryWatch(monitoring.TopologyListener):
    """A topology listener following the primary; waiters learn when it is replaced (register it at client creation)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._primary: str | None = None
        self._waiters: list[tuple[str, asyncio.Future[str]]] = []

    @property
    def primary(self) -> str | None:
        """The primary in the driver's latest view."""
        return self._primary

    def opened(self, event: monitoring.TopologyOpenedEvent) -> None:
        """Nothing known yet."""

    def closed(self, event: monitoring.TopologyClosedEvent) -> None:
        """The client closed."""

    def description_changed(self, event: monitoring.TopologyDescriptionChangedEvent) -> None:
        """Wake the operations sent to a primary that is no longer the one."""
        new = primary_of(event.new_description)
        with self._lock:
            self._primary = new
            if new is None:
                return  # no primary known: the operations keep waiting, the driver retries as it can
            waking = [(old, fut) for old, fut in self._waiters if old != new]
            self._waiters = [(old, fut) for old, fut in self._waiters if old == new]
        for _old, fut in waking:
            loop = fut.get_loop()
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(_resolve, fut, new)

    def replaced(self, primary: str) -> asyncio.Future[str]:
        """A future resolved with the new primary once `primary` is replaced (cancel it when done)."""
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        with self._lock:
            current = self._primary
            if current is not None and current != primary:
                fut.set_result(current)
            else:
                self._waiters.append((primary, fut))
        return fut


def _resolve(fut: asyncio.Future[str], new: str) -> None:
    if not fut.done():
        fut.set_result(new)


async def on_primary(watch: PrimaryWatch | None, operation: str, call: Callable[[], Awaitable[_T]]) -> _T:
    """Run `call`; raise PrimaryReplaced as soon as the primary it went to is replaced (the call is abandoned)."""
    start = watch.primary if watch is not None else None
    if watch is None or start is None:
        return await call()
    task: asyncio.Future[_T] = asyncio.ensure_future(call())
    replaced = watch.replaced(start)
    try:
        waiting: set[asyncio.Future[Any]] = {task, replaced}
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
