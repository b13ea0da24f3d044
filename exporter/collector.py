"""Scheduled refreshes: one APScheduler job per pool keeps the pool's last statistics in memory."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pymongo
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from exporter.config import Config
from exporter.core import (
    CLOSE_TIMEOUT,
    MongoSessions,
    SessionPoolError,
    Statistics,
    budget,
    connection_reason,
    own_budget,
    redact,
)
from exporter.core.browse import underperforming_count_pipeline, underperforming_threshold
from exporter.log import get_logger
from exporter.metrics import Metrics
from exporter.runtime import PoolRuntime, Underperformers

log = get_logger("exporter.collector")

_PING_TIMEOUT = 1.0
_PING_CACHE = 1.0
_INDEX_RETRY = 600.0
# The refresh's own MongoDB calls end by refresh_timeout; this is the backstop for anything else.
_REFRESH_SLACK = 2.0
# Connections of the shared MongoDB client: refreshes and admin writes are few at a time; the
# HTTP connection guard keeps this many file descriptors free for them.
MONGO_POOL = 32


def _index_name(keys: list[tuple[str, int]]) -> str:
    """MongoDB's default name of an index on `keys`."""
    return "_".join(f"{field}_{direction}" for field, direction in keys)


class Collector:
    """Owns the shared MongoDB client, the scheduler and every pool's runtime state."""

    def __init__(self, config: Config, metrics: Metrics, *, client: AsyncMongoClient[dict[str, Any]] | None = None):
        self.config = config
        self.metrics = metrics
        wc = config.mongodb.write_concern
        self.client: AsyncMongoClient[dict[str, Any]] = client or AsyncMongoClient(
            config.mongodb.uri_value(),
            tz_aware=True,
            tzinfo=UTC,
            appname="session-pool-exporter",
            maxPoolSize=MONGO_POOL,  # counted in the connection guard's file-descriptor reserve
            serverSelectionTimeoutMS=int(config.mongodb.server_selection_timeout * 1000),
            connectTimeoutMS=int(min(config.mongodb.server_selection_timeout, 10) * 1000),
        )
        self._owns_client = client is None
        self.pools: dict[str, PoolRuntime] = {}
        for settings in config.pools:
            sessions = MongoSessions(
                db=settings.database,
                collection=settings.collection,
                client=self.client,
                fields=settings.fields.as_fields(),
                lock_time=settings.lock_time,
                block_time=settings.block_time,
                grace=settings.grace,
                stored_timezone=settings.stored_timezone,
                timeout=config.mongodb.timeout,
                w=wc.w,
                j=wc.j,
                wtimeout=wc.wtimeout,
                tz_aware=True,
                # The collector keeps the indexes itself, in the background (see _upkeep_indexes).
                create_indexes=False,
                console_indexes=settings.session_fields.search,
            )
            self.pools[settings.name] = PoolRuntime(settings, sessions)
            metrics.add_pool(settings.name)
        metrics.bind(lambda: list(self.pools.values()))
        self._scheduler: AsyncIOScheduler | None = None
        self._ping_at = 0.0
        self._ping_ok: bool | None = None
        self._ping_error: str | None = None
        self._ping_lock: asyncio.Lock | None = None
        self._stopping = False

    # -- scheduling --

    def start(self) -> None:
        """Schedule every pool (first run right away); needs a running event loop."""
        self._stopping = False
        scheduler = AsyncIOScheduler(timezone=UTC)
        now = datetime.now(UTC)
        for pool in self.pools.values():
            scheduler.add_job(
                self._scheduled,
                IntervalTrigger(seconds=pool.interval, jitter=pool.config.jitter or None, timezone=UTC),
                args=[pool.name],
                id=f"refresh:{pool.name}",
                name=f"refresh {pool.name}",
                # First run at startup, spread over the jitter so many pools do not start at once.
                next_run_time=now + timedelta(seconds=random.uniform(0, min(pool.config.jitter, pool.interval))),  # noqa: S311
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
            self._schedule_underperformers(scheduler, pool, now)
        scheduler.start()
        self._scheduler = scheduler
        log.info("scheduler_started", pools=list(self.pools))

    async def stop(self) -> None:
        """Stop scheduling, let running refreshes finish (bounded), and close the client."""
        self._stopping = True
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.pause()
        # Each refresh is bounded by its refresh_timeout; wait for them rather than cancel mid-way.
        running = [p.lock for p in self.pools.values() if p.lock.locked()]
        if running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(self._wait_lock(lk) for lk in running)), timeout=5)
        for pool in self.pools.values():
            if pool.index_task is not None and not pool.index_task.done():
                pool.index_task.cancel()
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        if self._owns_client:
            # Closing ends the server sessions, a courtesy that would wait server_selection_timeout
            # for a server that is down; a shutdown during an outage must stay quick.
            with pymongo.timeout(CLOSE_TIMEOUT):
                await self.client.close()
        log.info("collector_stopped")

    @staticmethod
    async def _wait_lock(lock: asyncio.Lock) -> None:
        """Return once the lock is free."""
        async with lock:
            pass

    async def _scheduled(self, name: str) -> None:
        """The scheduler's job: refresh one pool unless stopping."""
        if self._stopping:
            return
        await self.refresh(name)

    # -- refreshing --

    async def refresh(self, name: str) -> PoolRuntime:
        """Refresh one pool now (never raises; the outcome is in the returned runtime state)."""
        pool = self.pools[name]
        async with pool.lock:
            await self._refresh_locked(pool)
        return pool

    async def refresh_all(self) -> None:
        """Refresh every pool concurrently."""
        await asyncio.gather(*(self.refresh(name) for name in self.pools))

    async def _refresh_locked(self, pool: PoolRuntime) -> None:
        """One refresh of a pool (caller holds its lock); records the outcome and logs state changes."""
        self.metrics.refreshes.labels(pool.name).inc()
        pool.refreshes += 1
        started = time.monotonic()
        error: str | None = None
        limit = pool.config.refresh_timeout
        try:
            # Every MongoDB call of the refresh shares refresh_timeout, so a failure names its cause
            # (connection refused, no answer...); the wait_for only backs that up.
            with budget("refresh_timeout", limit):
                stats, active = await asyncio.wait_for(self._fetch(pool), timeout=limit + _REFRESH_SLACK)
        except SessionPoolError as exc:  # first: OperationTimeout is a TimeoutError too, with the cause
            error = exc.message
        except TimeoutError:
            error = f"refresh timed out after {limit:g} s (refresh_timeout)"
        except PyMongoError as exc:  # defensive: the core maps driver errors, but never crash the job
            error = redact(f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            error = redact(f"unexpected {type(exc).__name__}: {exc}")
            log.exception("refresh_crashed", pool=pool.name)
        pool.last_duration = time.monotonic() - started
        if error is None:
            if not pool.up:
                if pool.last_error is not None:
                    log.info("refresh_recovered", pool=pool.name, previous_error=pool.last_error)
                else:
                    log.info("pool_up", pool=pool.name, total=stats.total)
            pool.succeeded(stats, active)
            self._ping_ok, self._ping_at = True, time.monotonic()
            return
        self.metrics.refresh_failures.labels(pool.name).inc()
        if pool.last_error != error:
            # At the first failure and when the cause changes: a pool that stays down is not logged every run.
            log.warning("refresh_failed", pool=pool.name, error=error, previous_error=pool.last_error)
        pool.failed(error)

    async def _fetch(self, pool: PoolRuntime) -> tuple[Statistics, int]:
        """Connect if needed, look after the indexes, then read the statistics (count_active included)."""
        if not pool.connected:
            await pool.sessions.connect()
            pool.connected = True
        if pool.config.create_indexes:
            await self._upkeep_indexes(pool)
        stats = await pool.sessions.aggregate_statistics()
        return stats, stats["count_active"]

    # -- underperformers, on a slow cadence of their own --

    def _schedule_underperformers(self, scheduler: AsyncIOScheduler, pool: PoolRuntime, now: datetime) -> None:
        """One job per pool counting its underperforming sessions every `underperforming.interval` seconds."""
        every = pool.config.underperforming.interval
        scheduler.add_job(
            self.count_underperformers,
            IntervalTrigger(seconds=every, timezone=UTC),
            args=[pool.name],
            id=f"underperformers:{pool.name}",
            name=f"underperformers {pool.name}",
            # After the first refresh, whose sums give the pool's own success ratio.
            next_run_time=now + timedelta(seconds=min(every, pool.interval + pool.config.jitter)),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )

    async def count_underperformers(self, name: str) -> None:
        """Count the pool's often-used active sessions whose success ratio lags the pool's (from index keys)."""
        pool = self.pools[name]
        settings = pool.config.underperforming
        if self._stopping or pool.stats is None or not pool.connected:
            return
        stats = pool.stats
        threshold = underperforming_threshold(stats.uses, stats.successes, settings.below)
        try:
            with budget("refresh_timeout", pool.config.refresh_timeout):
                rows = (
                    await pool.sessions.aggregate(
                        underperforming_count_pipeline(pool.sessions.fields, settings.min_uses, threshold),
                        _op="count_underperformers",
                    )
                    if threshold is not None
                    else []
                )
        except SessionPoolError as exc:
            # Withdrawn rather than repeated: a count nobody could make is not a count.
            pool.underperformers = None
            log.warning("underperformers_failed", pool=name, error=exc.message)
            return
        ratio = stats.successes / stats.uses if stats.uses else None
        count = int(rows[0]["n"]) if rows else 0
        pool.underperformers = Underperformers(count, threshold, ratio, time.time())

    # -- indexes --

    async def _upkeep_indexes(self, pool: PoolRuntime) -> None:
        """Notice missing indexes (a worker of the original library drops them at start-up) and rebuild them.

        The check is one listIndexes; a build runs as a background task, one at a time per pool,
        so a long build never holds up a refresh and never starts twice.
        """
        if pool.index_task is not None and not pool.index_task.done():
            return
        if time.monotonic() < pool.next_index_check:
            return
        missing = await pool.sessions.missing_indexes()
        if not missing:
            return
        log.info("indexes_missing", pool=pool.name, indexes=[_index_name(keys) for keys in missing])
        pool.index_task = asyncio.create_task(self._build_indexes(pool), name=f"indexes:{pool.name}")

    async def _build_indexes(self, pool: PoolRuntime) -> None:
        """Create the pool's missing indexes; count and log the outcome (not bound by the refresh that noticed)."""
        try:
            with own_budget():
                created = await pool.sessions.ensure_indexes()
        except SessionPoolError as exc:
            self.metrics.index_build_failures.labels(pool.name).inc()
            # A read-only monitoring user may not create indexes; statistics still work. Ask again later.
            pool.next_index_check = time.monotonic() + _INDEX_RETRY
            log.warning("create_indexes_failed", pool=pool.name, error=exc.message, retry_in_seconds=_INDEX_RETRY)
            return
        self.metrics.index_builds.labels(pool.name).inc()
        log.info("indexes_created", pool=pool.name, indexes=created)

    async def wait_indexes(self, name: str) -> None:
        """Wait until the pool's index build, if one runs, has finished (tests and shutdown)."""
        task = self.pools[name].index_task
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    # -- readiness --

    async def mongodb_reachable(self) -> tuple[bool, str | None]:
        """Ping MongoDB (bounded, cached for a second): (reachable, redacted error)."""
        if self._ping_lock is None:
            self._ping_lock = asyncio.Lock()
        async with self._ping_lock:
            if self._ping_ok is not None and time.monotonic() - self._ping_at < _PING_CACHE:
                return self._ping_ok, self._ping_error
            try:
                with pymongo.timeout(_PING_TIMEOUT):
                    await self.client.admin.command("ping")
                self._ping_ok, self._ping_error = True, None
            except PyMongoError as exc:
                self._ping_ok, self._ping_error = False, f"MongoDB unreachable: {connection_reason(exc)}"
            self._ping_at = time.monotonic()
            return self._ping_ok, self._ping_error

    async def readiness(self) -> tuple[bool, list[str]]:
        """Whether the daemon is ready and, if not, every reason why."""
        reasons: list[str] = []
        ok, error = await self.mongodb_reachable()
        if not ok:
            reasons.append(error or "MongoDB unreachable")
        for pool in self.pools.values():
            age = pool.age()
            if age is None:
                detail = f": {pool.last_error}" if pool.last_error else ""
                reasons.append(f"pool {pool.name}: no successful refresh yet{detail}")
            elif age > pool.max_age:
                reasons.append(
                    f"pool {pool.name}: last successful refresh {age:.0f} s ago (max_age {pool.max_age:g} s)"
                    + (f": {pool.last_error}" if pool.last_error else "")
                )
        return not reasons, reasons

    def pool_status(self) -> dict[str, dict[str, Any]]:
        """Per-pool summary for /readyz."""
        out: dict[str, dict[str, Any]] = {}
        for pool in self.pools.values():
            age = pool.age()
            out[pool.name] = {
                "up": pool.up,
                "fresh": pool.fresh,
                "last_success": pool.last_success,
                "age_seconds": round(age, 3) if age is not None else None,
                "max_age_seconds": pool.max_age,
                "last_error": pool.last_error,
            }
        return out
