"""What the daemon's reads cost: a refresh against interval and refresh_timeout, the sums against theirs."""

from __future__ import annotations

import time

from exporter.config import PoolDefinition
from exporter.core import STATES, MongoSessions, Statistics, Sums, format_duration
from exporter.doctor.findings import Finding, error, ok, warn

# Above this share of its interval, a read keeps MongoDB busy with the exporter a large part of the time.
SHARE_WARN = 0.25


async def timed_refresh(sessions: MongoSessions, pool: PoolDefinition) -> tuple[Statistics, float]:
    """Run what a scheduled refresh runs after connecting (the index check, the state counts); its seconds."""
    started = time.monotonic()
    if pool.create_indexes:
        await sessions.missing_indexes()
    stats = await sessions.aggregate_statistics(sums=False)
    return stats, time.monotonic() - started


async def timed_sums(sessions: MongoSessions) -> tuple[Sums, float]:
    """Read the sums as the daemon does every sums_interval (one pass over every document); its seconds."""
    started = time.monotonic()
    sums = await sessions.aggregate_sums()
    return sums, time.monotonic() - started


def _cost(check: str, found: str, seconds: float, every: float, limit: float, names: tuple[str, str]) -> Finding:
    """ok, warn above SHARE_WARN of the interval, error beyond the timeout."""
    interval, timeout = names
    if seconds > limit:
        return error(
            check,
            f"{found}: longer than {timeout} ({format_duration(limit)}), so every one fails",
            f"raise {timeout} (and {interval}) for this pool, or see plans: a missing index makes it slow",
        )
    if seconds / every > SHARE_WARN:
        return warn(
            check,
            f"{found}: more than {SHARE_WARN:.0%} of {interval} keeps MongoDB busy with the exporter",
            f"raise this pool's {interval} to at least {format_duration(round(seconds / SHARE_WARN))}, or see plans",
        )
    return ok(check, found)


def refresh_findings(pool: PoolDefinition, stats: Statistics, seconds: float) -> list[Finding]:
    """One refresh's share of the interval: ok, warn above 25 %, error beyond refresh_timeout."""
    counts = ", ".join(f"{stats.states[s]:,} {s}" for s in STATES)
    found = (
        f"one refresh took {format_duration(round(seconds, 3))}, {seconds / pool.interval:.1%} of the "
        f"{format_duration(pool.interval)} interval ({stats.total:,} sessions: {counts})"
    )
    return [_cost("refresh", found, seconds, pool.interval, pool.refresh_timeout, ("interval", "refresh_timeout"))]


def sums_findings(pool: PoolDefinition, sums: Sums, seconds: float) -> list[Finding]:
    """The sums' share of sums_interval (error beyond sums_timeout), and the metadata count checked against them."""
    found = (
        f"the sums took {format_duration(round(seconds, 3))}, {seconds / pool.sums_interval:.1%} of the "
        f"{format_duration(pool.sums_interval)} sums_interval ({sums.total:,} documents read: "
        f"{sums.uses:,} uses, {sums.successes:,} successes)"
    )
    out = [_cost("sums", found, seconds, pool.sums_interval, pool.sums_timeout, ("sums_interval", "sums_timeout"))]
    if not sums.metadata_agrees:
        out.append(
            warn(
                "sums",
                f"the collection's own document count ({sums.metadata_total}) differs from the counted total "
                f"({sums.total:,}): until they agree the daemon counts the _id index at every refresh",
                "if nothing was added or deleted meanwhile, the count is wrong (an unclean shutdown): "
                f'db.getSiblingDB("{pool.database}").runCommand({{validate: "{pool.collection}"}}) repairs it',
            )
        )
    return out
