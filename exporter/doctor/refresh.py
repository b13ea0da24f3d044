"""What one refresh costs: the daemon's own calls, timed, against the pool's interval and refresh_timeout."""

from __future__ import annotations

import time

from exporter.config import Pool
from exporter.core import STATES, MongoSessions, Statistics, format_duration
from exporter.doctor.findings import Finding, error, ok, warn

# Above this share of the interval, MongoDB spends a large part of its time on the exporter.
SHARE_WARN = 0.25


async def timed_refresh(sessions: MongoSessions, pool: Pool) -> tuple[Statistics, float]:
    """Run what a scheduled refresh runs after connecting (the index check, the statistics); its seconds."""
    started = time.monotonic()
    if pool.create_indexes:
        await sessions.missing_indexes()
    stats = await sessions.aggregate_statistics()
    return stats, time.monotonic() - started


def refresh_findings(pool: Pool, stats: Statistics, seconds: float) -> list[Finding]:
    """The refresh's share of the interval: ok, warn above 25 %, error beyond refresh_timeout."""
    took = format_duration(round(seconds, 3))
    share = seconds / pool.interval
    counts = ", ".join(f"{stats.states[s]:,} {s}" for s in STATES)
    found = (
        f"one refresh took {took}, {share:.1%} of the {format_duration(pool.interval)} interval "
        f"({stats.total:,} sessions: {counts})"
    )
    if seconds > pool.refresh_timeout:
        return [
            error(
                "refresh",
                f"{found}: longer than refresh_timeout ({format_duration(pool.refresh_timeout)}): every refresh fails",
                "raise refresh_timeout (and interval) for this pool, or see plans: a missing index makes it slow",
            )
        ]
    if share > SHARE_WARN:
        return [
            warn(
                "refresh",
                f"{found}: more than {SHARE_WARN:.0%} of the interval keeps MongoDB busy with the exporter",
                f"raise this pool's interval to at least {format_duration(round(seconds / SHARE_WARN))}, or see plans",
            )
        ]
    return [ok("refresh", found)]
