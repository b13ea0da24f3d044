"""The refresh: a pool's state counts (count_active included) read on its interval, its outcome kept."""

from __future__ import annotations

import asyncio

from pymongo.errors import PyMongoError

from exporter.collector import indexes
from exporter.collector.context import Context, cause_of
from exporter.collector.slots import Priority
from exporter.core import CollectionMissing, SessionPoolError, Statistics, Unavailable, budget, redact
from exporter.log import get_logger
from exporter.state import PoolState, RefreshOutcome

log = get_logger("exporter.collector")

# The refresh's own MongoDB calls end by refresh_timeout; this is the backstop for anything else.
REFRESH_SLACK = 2.0


async def run(pool: PoolState, ctx: Context) -> RefreshOutcome:
    """Refresh the pool now (never raises): its outcome, logging the changes of state (down, up, cause)."""
    async with pool.lock:
        try:
            await _refresh(pool, ctx)
        finally:
            ctx.metrics.changed(pool.name)
    return pool.refresh


async def _refresh(pool: PoolState, ctx: Context) -> None:
    """One refresh (the caller holds the pool's lock)."""
    ctx.metrics.refreshes.labels(pool.name).inc()
    outcome = pool.refresh
    outcome.attempts += 1
    error: str | None = None
    limit = pool.config.refresh_timeout
    cause: str | None = None
    missing: CollectionMissing | None = None
    queued = ctx.clock.monotonic()
    await ctx.slots.acquire(Priority.REFRESH if outcome.success is not None else Priority.FIRST_REFRESH)
    started = ctx.clock.monotonic()
    outcome.wait = started - queued
    try:
        # Every MongoDB call of the refresh shares refresh_timeout, so a failure names its cause
        # (connection refused, no answer...); the wait_for only backs that up.
        with budget("refresh_timeout", limit):
            stats = await asyncio.wait_for(_fetch(pool, ctx), timeout=limit + REFRESH_SLACK)
    except CollectionMissing as exc:
        error = cause = exc.message
        missing = exc
    except SessionPoolError as exc:  # first: OperationTimeout is a TimeoutError too, with the cause
        error = exc.message
        cause = cause_of(exc)
        if isinstance(exc, Unavailable):
            ctx.mongodb.down(exc.reason)
    except TimeoutError:
        error = f"refresh timed out after {limit:g} s (refresh_timeout)"
    except PyMongoError as exc:  # defensive: the core maps driver errors, but never crash the job
        error = redact(f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        error = redact(f"unexpected {type(exc).__name__}: {exc}")
        log.exception("refresh_crashed", pool=pool.name)
    finally:
        ctx.slots.release()
    outcome.duration = ctx.clock.monotonic() - started
    if error is None:
        if not outcome.up:
            if outcome.error is not None:
                log.info("refresh_recovered", pool=pool.name, previous_error=outcome.error)
            else:
                log.info("pool_up", pool=pool.name, total=stats.total)
        pool.succeeded(stats)
        ctx.mongodb.answered()
        return
    ctx.metrics.refresh_failures.labels(pool.name).inc()
    cause = cause or error
    if outcome.up or outcome.error is None or outcome.cause != cause:
        # At the first failure and when the cause changes (not which step met it): a pool that
        # stays down is not logged on every run.
        if missing is not None:
            log.warning(
                "collection_missing", pool=pool.name, database=missing.database,
                collection=missing.collection, close=list(missing.close), error=error,
            )  # fmt: skip
        else:
            log.warning("refresh_failed", pool=pool.name, error=error, previous_error=outcome.error)
    pool.failed(error, cause, collection_missing=missing is not None)


async def _fetch(pool: PoolState, ctx: Context) -> Statistics:
    """Connect if needed, look after the indexes, then read the state counts (count_active included).

    The sums over every document are left to their own slower job (exporter.collector.sums).
    """
    await pool.connect()
    stats = await pool.sessions.aggregate_statistics(sums=False, fast_total=pool.fast_total)
    if stats.total == 0:
        # An empty pool may be a mistyped collection name: say so rather than look healthy.
        await pool.sessions.check_collection()
    if pool.config.create_indexes:
        await indexes.run(pool, ctx)
    return stats
