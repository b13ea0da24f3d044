"""The count of a pool's underperformers: often-used active sessions whose success ratio lags the pool's."""

from __future__ import annotations

from exporter.collector.context import Context
from exporter.collector.slots import Priority
from exporter.core import SessionPoolError, budget
from exporter.core.browse import underperforming_count_pipeline, underperforming_threshold
from exporter.log import get_logger
from exporter.state import PoolState, Underperformers

log = get_logger("exporter.collector")


async def run(pool: PoolState, ctx: Context) -> Underperformers | None:
    """Count them (from index keys), on the pool's own slow cadence; the count kept, or None (withdrawn).

    Nothing is counted before the pool's own success ratio is known (from its sums, or from
    statistics read with the sums by a caller of the core) or while the daemon stops.
    """
    settings = pool.config.underperforming
    source = pool.sums if pool.sums is not None else pool.stats
    if ctx.stopping() or source is None or source.uses is None or source.successes is None:
        return pool.underperformers
    if not pool.connected:
        return pool.underperformers
    uses, successes = source.uses, source.successes
    threshold = underperforming_threshold(uses, successes, settings.below)
    try:
        rows = []
        if threshold is not None:
            # A slot like a sums pass: thousands of pools' counts never crowd out the refreshes' connections.
            async with ctx.slots.hold(Priority.SUMS):
                with budget("refresh_timeout", pool.config.refresh_timeout):
                    rows = await pool.sessions.aggregate(
                        underperforming_count_pipeline(pool.sessions.fields, settings.min_uses, threshold),
                        comment="count_underperformers",
                    )
    except SessionPoolError as exc:
        # Withdrawn rather than repeated: a count nobody could make is not a count.
        pool.underperformers = None
        ctx.metrics.changed(pool.name)
        log.warning("underperformers_failed", pool=pool.name, error=exc.message)
        return None
    ratio = successes / uses if uses else None
    count = int(rows[0]["n"]) if rows else 0
    pool.underperformers = Underperformers(count, threshold, ratio, ctx.clock.time())
    ctx.metrics.changed(pool.name)
    return pool.underperformers
