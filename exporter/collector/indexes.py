"""Index upkeep: notice a pool's missing indexes (a worker of the original library drops them) and rebuild them."""

from __future__ import annotations

import asyncio

from exporter.collector.context import Context
from exporter.core import SessionPoolError, own_budget
from exporter.log import get_logger
from exporter.state import PoolState

log = get_logger("exporter.collector")

# Seconds before asking again after a build failed (a read-only monitoring user may not create indexes).
INDEX_RETRY = 600.0


def index_name(keys: list[tuple[str, int]]) -> str:
    """MongoDB's default name of an index on `keys`."""
    return "_".join(f"{field}_{direction}" for field, direction in keys)


async def run(pool: PoolState, ctx: Context) -> asyncio.Task[None] | None:
    """Look for missing indexes (one listIndexes, within the refresh that calls it); start their build if any.

    The build runs as a background task, one at a time per pool, so a long build never holds up a
    refresh and never starts twice. The build started, if one was.
    """
    upkeep = pool.indexes
    if upkeep.running or ctx.clock.monotonic() < upkeep.next_check:
        return None
    missing = await pool.sessions.missing_indexes()
    if not missing:
        return None
    log.info("indexes_missing", pool=pool.name, indexes=[index_name(keys) for keys in missing])
    upkeep.task = asyncio.create_task(_build(pool, ctx), name=f"indexes:{pool.name}")
    return upkeep.task


async def _build(pool: PoolState, ctx: Context) -> None:
    """Create the pool's missing indexes; count and log the outcome (not bound by the refresh that noticed)."""
    try:
        with own_budget():
            created = await pool.sessions.ensure_indexes()
    except SessionPoolError as exc:
        ctx.metrics.index_build_failures.labels(pool.name).inc()
        ctx.metrics.changed(pool.name)
        pool.indexes.next_check = ctx.clock.monotonic() + INDEX_RETRY
        log.warning("create_indexes_failed", pool=pool.name, error=exc.message, retry_in_seconds=INDEX_RETRY)
        return
    ctx.metrics.index_builds.labels(pool.name).inc()
    ctx.metrics.changed(pool.name)
    log.info("indexes_created", pool=pool.name, indexes=created)


async def wait(pool: PoolState) -> None:
    """Wait until the pool's index build, if one runs, has finished (tests and shutdown)."""
    if pool.indexes.task is not None:
        await asyncio.gather(pool.indexes.task, return_exceptions=True)
