"""The pools as operators see them: each one's last statistics, refresh status and state timeline (from memory)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from exporter.admin.models import (
    PoolList,
    PoolView,
    StatesPoint,
    StatesTimeline,
    StatisticsView,
    UnderperformersView,
)
from exporter.core import Statistics, Sums
from exporter.history import HISTORY_STEP
from exporter.state import PoolState


def iso(when: float | None) -> str | None:
    """A Unix time as ISO 8601 (UTC), or None."""
    return datetime.fromtimestamp(when, UTC).isoformat() if when else None


def statistics_view(stats: Statistics, sums: Sums | None) -> StatisticsView:
    """A pool's last counts, with the sums of its last sums pass (they have their own cadence)."""
    body = stats.to_dict()
    if stats.uses is None and sums is not None:
        body.update(uses=sums.uses, successes=sums.successes)
    body["sums_time"] = sums.time.isoformat() if sums else None
    body["overruns"] = sums.overruns if sums else None
    return StatisticsView.model_validate(body)


def pool_view(pool: PoolState) -> PoolView:
    """One pool with its last statistics and refresh status."""
    stats = pool.stats
    found = pool.underperformers
    return PoolView(
        name=pool.name,
        database=pool.sessions.collection.database.name,
        collection=pool.sessions.collection.name,
        up=pool.up,
        fresh=pool.fresh,
        last_success=iso(pool.last_success),
        last_error=pool.last_error,
        cause=None if pool.up else pool.last_cause or pool.last_error,
        collection_missing=pool.collection_missing,
        active=pool.active,
        min_active_sessions=pool.min_active_sessions,
        interval=pool.interval,
        search_fields=list(pool.config.session_fields.search),
        statistics=statistics_view(stats, pool.sums) if stats else None,
        underperformers=UnderperformersView(
            count=found.count,
            threshold=found.threshold,
            pool_ratio=found.pool_ratio,
            min_uses=pool.config.underperforming.min_uses,
            time=iso(found.time) or "",
        )
        if found
        else None,
        watched=pool.watched,
        watched_by=list(pool.watched_by),
    )


def pool_list(pools: Iterable[PoolState]) -> PoolList:
    """Every pool with its last statistics and refresh status."""
    return PoolList(pools=[pool_view(pool) for pool in pools])


def states_timeline(pool: PoolState) -> StatesTimeline:
    """The pool's state counts over the last hour, as the daemon's refreshes saw them."""
    return StatesTimeline(
        pool=pool.name,
        step_seconds=HISTORY_STEP,
        min_active_sessions=pool.min_active_sessions,
        points=[StatesPoint(time=iso(p.time) or "", states=p.states) for p in pool.history],
    )
