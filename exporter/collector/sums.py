"""The sums pass: uses, successes and overruns summed over every document, on their own slower cadence."""

from __future__ import annotations

from exporter.collector import underperformers
from exporter.collector.context import Context, cause_of
from exporter.collector.slots import Priority
from exporter.core import SessionPoolError, Sums, budget
from exporter.log import get_logger
from exporter.state import PoolState, SumsOutcome

log = get_logger("exporter.collector")


async def run(pool: PoolState, ctx: Context) -> SumsOutcome:
    """Read the pool's sums now (never raises; a failure is logged at its first time and when it changes)."""
    async with pool.sums_lock, ctx.slots.hold(Priority.SUMS):
        try:
            with budget("sums_timeout", pool.config.sums_timeout):
                await pool.connect()
                sums = await pool.sessions.aggregate_sums()
        except SessionPoolError as exc:
            ctx.metrics.sums_failures.labels(pool.name).inc()
            if pool.sums_pass.cause != cause_of(exc):
                log.warning("sums_failed", pool=pool.name, error=exc.message, previous_error=pool.sums_pass.error)
            pool.sums_pass.failed(exc.message, cause_of(exc))
            ctx.metrics.changed(pool.name)
            return pool.sums_pass
        _check_metadata_count(pool, sums, ctx)
        _count_overruns(pool, sums, ctx)
        pool.sums_read(sums)
        ctx.metrics.changed(pool.name)
    if pool.underperformers is None:
        await underperformers.run(pool, ctx)  # the first count as soon as the pool's ratio is known
    return pool.sums_pass


def _count_overruns(pool: PoolState, sums: Sums, ctx: Context) -> None:
    """Add the overruns handlers recorded since the last reading (the first reading is the baseline).

    The handlers count them in their documents (count_overrun) in the write that reports, so
    the daemon learns of them without a write of its own; a deleted document's share only
    lowers the sum, which is not counted.
    """
    if pool.sums is not None and sums.overruns > pool.sums.overruns:
        ctx.metrics.lease_overruns.labels(pool.name).inc(sums.overruns - pool.sums.overruns)


def _check_metadata_count(pool: PoolState, sums: Sums, ctx: Context) -> None:
    """Count the `_id` index instead of trusting the metadata count while the two totals disagree."""
    if sums.metadata_agrees:
        if not pool.fast_total:
            log.info("metadata_count_agrees", pool=pool.name, total=sums.total)
        pool.fast_total = True
        return
    ctx.metrics.metadata_count_mismatches.labels(pool.name).inc()
    if pool.fast_total:
        # Documents came or went during the pass, or the count is wrong (MongoDB after an unclean
        # shutdown: `validate` repairs it). Exact counts meanwhile, until a later pass agrees.
        log.warning("metadata_count_disagrees", pool=pool.name, counted=sums.total, metadata=sums.metadata_total)
    pool.fast_total = False
