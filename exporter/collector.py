"""Scheduled refreshes: one APScheduler job per pool keeps the pool's last statistics in memory."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pymongo
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from exporter.config import Config, PoolDefinition
from exporter.core import (
    CollectionMissing,
    MongoSessions,
    SessionPoolError,
    Statistics,
    Sums,
    Unavailable,
    budget,
    connection_reason,
    own_budget,
    read_preference,
    redact,
)
from exporter.core.browse import underperforming_count_pipeline, underperforming_threshold
from exporter.core.clocks import MemberClocks
from exporter.discovery import discover
from exporter.log import get_logger
from exporter.metrics import Metrics
from exporter.state import PoolState, Underperformers

log = get_logger("exporter.collector")

_PING_TIMEOUT = 1.0
_PING_CACHE = 1.0
# Seconds between the daemon's own checks that MongoDB answers (session_pool_mongodb_up), at most.
MONGODB_CHECK_INTERVAL = 5.0
_INDEX_RETRY = 600.0
# The refresh's own MongoDB calls end by refresh_timeout; this is the backstop for anything else.
_REFRESH_SLACK = 2.0
# Connections of the shared MongoDB client: refreshes and admin writes are few at a time; the
# HTTP connection guard keeps this many file descriptors free for them.
MONGO_POOL = 32
# The shutdown (SIGTERM/SIGINT) ends within 2 s whatever MongoDB does (README). Of that, jobs running
# when it begins (refreshes, sums, counts, listings: reads only) get STOP_GRACE seconds to finish,
# counted from begin_stop(), while the HTTP requests drain; then they are abandoned.
STOP_GRACE = 0.3
# Closing the client ends its server sessions first, a courtesy the server does without (it
# expires them); this bounds that part, and again the closing of sockets and monitors.
CLOSE_WITHIN = 0.2


def _cause(exc: SessionPoolError) -> str:
    """What went wrong, without the step that met it (`connect: ...` and `aggregate: ...` are one cause)."""
    return exc.message.removeprefix(exc.operation or "").lstrip(": ") or exc.message


def _index_name(keys: list[tuple[str, int]]) -> str:
    """MongoDB's default name of an index on `keys`."""
    return "_".join(f"{field}_{direction}" for field, direction in keys)


def _add_job(
    scheduler: AsyncIOScheduler,
    job: Callable[[Any], Awaitable[None]],
    trigger: IntervalTrigger,
    arg: Any,
    job_id: str,
    first: datetime,
) -> None:
    """One periodic job of the daemon: never two runs of it at once, missed runs coalesced, none dropped."""
    scheduler.add_job(
        job,
        trigger,
        args=[arg],
        id=job_id,
        name=job_id.replace(":", " "),
        next_run_time=first,
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
    )


async def close_client(client: AsyncMongoClient[dict[str, Any]]) -> None:
    """Close the client within about 2 x CLOSE_WITHIN, whatever the server does (answering, frozen, dead).

    Closing ends the server sessions first, which waits for a server: server_selection_timeout for
    one that is down (PyMongo rounds even a short timeout up to 0.5 s), the operation's timeout
    for a frozen one. Past CLOSE_WITHIN that wait is given up; the sessions were taken from the
    client already, so a second close() goes straight to closing the sockets and monitors.
    """
    with contextlib.suppress(TimeoutError, PyMongoError), pymongo.timeout(CLOSE_WITHIN):
        try:
            await asyncio.wait_for(client.close(), timeout=CLOSE_WITHIN)
        except TimeoutError:
            await asyncio.wait_for(client.close(), timeout=CLOSE_WITHIN)


def mongo_client(
    config: Config, *, appname: str = "session-pool-exporter", clocks: MemberClocks | None = None
) -> AsyncMongoClient[dict[str, Any]]:
    """The one MongoDB client the daemon's pools share (aware UTC times, the configured timeouts).

    `clocks` reads every member's clock from the client's heartbeats.
    """
    return AsyncMongoClient(
        config.mongodb.uri_value(),
        tz_aware=True,
        tzinfo=UTC,
        appname=appname,
        maxPoolSize=MONGO_POOL,  # counted in the connection guard's file-descriptor reserve
        serverSelectionTimeoutMS=int(config.mongodb.server_selection_timeout * 1000),
        connectTimeoutMS=int(min(config.mongodb.server_selection_timeout, 10) * 1000),
        event_listeners=[clocks] if clocks is not None else None,
    )


def pool_sessions(
    config: Config,
    settings: PoolDefinition,
    client: AsyncMongoClient[dict[str, Any]],
    *,
    timeout: float | None = None,
    clocks: MemberClocks | None = None,
) -> MongoSessions:
    """The MongoSessions of a pool's refreshes and admin writes (`timeout` per operation; default: mongodb.timeout).

    `clocks`: the members' clocks read from `client`'s heartbeats, so an operator's lock stays whole.
    """
    wc = config.mongodb.write_concern
    return MongoSessions(
        db=settings.database,
        collection=settings.collection,
        client=client,
        fields=settings.fields.as_fields(),
        lock_time=settings.lock_time,
        block_time=settings.block_time,
        grace=settings.grace,
        stored_timezone=settings.stored_timezone,
        timeout=config.mongodb.timeout if timeout is None else timeout,
        w=wc.w,
        j=wc.j,
        wtimeout=wc.wtimeout,
        tz_aware=True,
        statistics_read_preference=config.mongodb.read_preference,
        # The collector keeps the indexes itself, in the background (see Collector._upkeep_indexes).
        create_indexes=False,
        console_indexes=settings.session_fields.search,
        clocks=clocks,
    )


class Collector:
    """Owns the shared MongoDB client, the scheduler and every pool's runtime state."""

    def __init__(self, config: Config, metrics: Metrics, *, client: AsyncMongoClient[dict[str, Any]] | None = None):
        self.config = config
        self.metrics = metrics
        # The members' clocks, from the heartbeats of the daemon's own client (none for a client given).
        self.clocks = MemberClocks()
        self.client: AsyncMongoClient[dict[str, Any]] = client or mongo_client(config, clocks=self.clocks)
        self._owns_client = client is None
        self.pools: dict[str, PoolState] = {}
        self._static = {p.name for p in config.pools}
        for settings in config.pools:
            self._add(settings)
        metrics.bind(lambda: list(self.pools.values()))
        metrics.bind_mongodb(self.mongodb_up)
        self._scheduler: AsyncIOScheduler | None = None
        self._ping_at = 0.0
        self._ping_ok: bool | None = None
        self._ping_error: str | None = None
        self._ping_lock: asyncio.Lock | None = None
        self._stopping = False
        self._stop_began: float | None = None
        self._jobs: set[asyncio.Task[Any]] = set()
        # Awaited (each bounded by the requests' own grace) before the client closes: its users
        # outside the collector, such as the HTTP requests in flight (see exporter.assembly).
        self.before_close: list[Callable[[], Awaitable[None]]] = []
        # At most this many refreshes and sums passes talk to MongoDB at once (hundreds of pools).
        self._slots = asyncio.Semaphore(config.max_concurrent_refreshes)
        self._discovered: dict[int, set[str]] = {i: set() for i in range(len(config.discovery))}
        self._skipped: dict[int, dict[str, str]] = {i: {} for i in range(len(config.discovery))}

    def _add(self, settings: PoolDefinition) -> PoolState:
        """A pool's runtime, with its own MongoSessions on the shared client, and its metrics."""
        sessions = pool_sessions(self.config, settings, self.client, clocks=self.clocks if self._owns_client else None)
        pool = PoolState(settings, sessions)
        self.pools[settings.name] = pool
        self.metrics.add_pool(settings.name)
        return pool

    # -- scheduling --

    def start(self) -> None:
        """Schedule every pool and discovery source (first runs right away); needs a running event loop."""
        self._stopping = False
        self._stop_began = None
        scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler = scheduler
        for pool in self.pools.values():
            self._schedule(pool)
        now = datetime.now(UTC)
        every = min([MONGODB_CHECK_INTERVAL, *(p.interval for p in self.pools.values())])
        check = IntervalTrigger(seconds=every, timezone=UTC)
        _add_job(scheduler, self._job(self._scheduled_mongodb_check), check, None, "mongodb_check", now)
        for index, source in enumerate(self.config.discovery):
            trigger = IntervalTrigger(seconds=source.interval, timezone=UTC)
            _add_job(scheduler, self._job(self._scheduled_discovery), trigger, index, f"discovery:{index}", now)
        scheduler.start()
        log.info("scheduler_started", pools=list(self.pools), discovery_sources=len(self.config.discovery))

    def _schedule(self, pool: PoolState) -> None:
        """The pool's refresh and sums jobs; the first runs now, spread over the jitter."""
        scheduler = self._scheduler
        if scheduler is None:
            return
        first = datetime.now(UTC) + timedelta(seconds=random.uniform(0, min(pool.config.jitter, pool.interval)))  # noqa: S311
        jitter = pool.config.jitter or None
        for job, interval in ((self._scheduled, pool.interval), (self._scheduled_sums, pool.config.sums_interval)):
            trigger = IntervalTrigger(seconds=interval, jitter=jitter, timezone=UTC)
            _add_job(scheduler, self._job(job), trigger, pool.name, f"{job.__name__}:{pool.name}", first)
        self._schedule_underperformers(scheduler, pool, first)

    async def _scheduled_mongodb_check(self, _: None) -> None:
        """The scheduler's job: ask MongoDB whether it answers (session_pool_mongodb_up), unless stopping."""
        if not self._stopping:
            await self.mongodb_reachable(fresh=True)
            self.metrics.changed()

    # -- discovery --

    async def _scheduled_discovery(self, index: int) -> None:
        """The scheduler's job: list one source's collections and add or drop its pools."""
        if not self._stopping:
            await self.discover(index)

    async def discover(self, index: int) -> None:
        """Apply one listing of discovery source `index` (never raises; a failure keeps the pools it has)."""
        source = self.config.discovery[index]
        mine = self._discovered[index]
        taken = {(p.config.database, p.config.collection): n for n, p in self.pools.items() if n not in mine}
        try:
            found = await discover(
                self.client,
                source,
                self.config.defaults,
                taken,
                self.config.mongodb.timeout,
                read_preference(self.config.mongodb.read_preference),
            )
        except SessionPoolError as exc:
            log.warning("discovery_failed", source=index, error=exc.message)
            return
        for where, why in found.skipped.items():
            if self._skipped[index].get(where) != why:
                log.warning("discovery_skipped", source=index, collection=where, reason=why)
        self._skipped[index] = found.skipped
        for name, settings in found.pools.items():
            if name in mine:
                continue
            if name in self.pools:
                other = self.pools[name].config
                why = f"pool name {name!r} already names {other.database}.{other.collection}"
                where = f"{settings.database}.{settings.collection}"
                if self._skipped[index].get(where) != why:
                    log.warning("discovery_skipped", source=index, collection=where, reason=why)
                self._skipped[index][where] = why
                continue
            self._schedule(self._add(settings))
            mine.add(name)
            log.info(
                "pool_discovered", source=index, pool=name, database=settings.database, collection=settings.collection
            )
        for name in sorted(mine - set(found.pools)):
            await self._remove(name)
            mine.discard(name)
            log.info("pool_vanished", source=index, pool=name)
        self.metrics.changed()

    async def _remove(self, name: str) -> None:
        """Stop watching a pool: its jobs, its runtime, its series (withdrawn, not left stale)."""
        if self._scheduler is not None:
            for job_id in (f"_scheduled:{name}", f"_scheduled_sums:{name}", f"underperformers:{name}"):
                with contextlib.suppress(JobLookupError):
                    self._scheduler.remove_job(job_id)
        pool = self.pools.pop(name)
        if pool.index_task is not None and not pool.index_task.done():
            pool.index_task.cancel()
        self.metrics.remove_pool(name)

    def _job(self, job: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        """`job` as the scheduler runs it: known to stop(), which may abandon it quietly (no traceback)."""

        async def run(arg: Any) -> None:
            if self._stopping:
                return
            task = asyncio.current_task()
            assert task is not None
            self._jobs.add(task)
            try:
                await job(arg)
            except asyncio.CancelledError:
                if not self._stopping:
                    raise
                task.uncancel()  # abandoned by stop(): the scheduler would log the cancellation as a crash
            finally:
                self._jobs.discard(task)

        return run

    def begin_stop(self) -> None:
        """The shutdown has begun: start no job, let those running go on for STOP_GRACE (see stop())."""
        if self._stop_began is None:
            self._stop_began = time.monotonic()
        self._stopping = True
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.pause()

    async def stop(self) -> None:
        """Stop scheduling, give running jobs STOP_GRACE from begin_stop(), abandon the rest, close the client.

        Within about a second whatever MongoDB does: every job is a read (or an index build the
        server finishes or drops by itself), so abandoning one changes nothing in the database.
        """
        self.begin_stop()
        assert self._stop_began is not None
        scheduler, self._scheduler = self._scheduler, None
        running = {task for task in self._jobs if not task.done()}
        if running:
            await asyncio.wait(running, timeout=max(0.0, self._stop_began + STOP_GRACE - time.monotonic()))
        abandoned = [task for task in running if not task.done()]
        abandoned += [p.index_task for p in self.pools.values() if p.index_task is not None and not p.index_task.done()]
        for task in abandoned:
            task.cancel()
        if abandoned:
            # A cancelled job ends at its next await; nothing in the core waits on a cancelled call.
            await asyncio.wait(abandoned, timeout=STOP_GRACE)
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        for wait in self.before_close:
            await wait()
        if self._owns_client:
            await close_client(self.client)
        log.info("collector_stopped", abandoned=len(abandoned))

    async def _scheduled(self, name: str) -> None:
        """The scheduler's job: refresh one pool unless stopping."""
        if self._stopping:
            return
        await self.refresh(name)

    async def _scheduled_sums(self, name: str) -> None:
        """The scheduler's slower job: read one pool's sums unless stopping (stop() may abandon it)."""
        if self._stopping:
            return
        await self.read_sums(name)

    # -- refreshing --

    async def refresh(self, name: str) -> PoolState:
        """Refresh one pool now (never raises; the outcome is in the returned runtime state)."""
        pool = self.pools[name]
        async with pool.lock:
            try:
                await self._refresh_locked(pool)
            finally:
                self.metrics.changed()
        return pool

    async def refresh_all(self) -> None:
        """Refresh every pool concurrently."""
        await asyncio.gather(*(self.refresh(name) for name in self.pools))

    async def _refresh_locked(self, pool: PoolState) -> None:
        """One refresh of a pool (caller holds its lock); records the outcome and logs state changes."""
        self.metrics.refreshes.labels(pool.name).inc()
        pool.refreshes += 1
        error: str | None = None
        limit = pool.config.refresh_timeout
        cause: str | None = None
        missing: CollectionMissing | None = None
        queued = time.monotonic()
        await self._slots.acquire()
        started = time.monotonic()
        pool.last_wait = started - queued
        try:
            # Every MongoDB call of the refresh shares refresh_timeout, so a failure names its cause
            # (connection refused, no answer...); the wait_for only backs that up.
            with budget("refresh_timeout", limit):
                stats, active = await asyncio.wait_for(self._fetch(pool), timeout=limit + _REFRESH_SLACK)
        except CollectionMissing as exc:
            error = cause = exc.message
            missing = exc
        except SessionPoolError as exc:  # first: OperationTimeout is a TimeoutError too, with the cause
            error = exc.message
            cause = _cause(exc)
            if isinstance(exc, Unavailable):
                self._mongodb_down(exc.reason)
        except TimeoutError:
            error = f"refresh timed out after {limit:g} s (refresh_timeout)"
        except PyMongoError as exc:  # defensive: the core maps driver errors, but never crash the job
            error = redact(f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            error = redact(f"unexpected {type(exc).__name__}: {exc}")
            log.exception("refresh_crashed", pool=pool.name)
        finally:
            self._slots.release()
        pool.last_duration = time.monotonic() - started
        if error is None:
            if not pool.up:
                if pool.last_error is not None:
                    log.info("refresh_recovered", pool=pool.name, previous_error=pool.last_error)
                else:
                    log.info("pool_up", pool=pool.name, total=stats.total)
            pool.succeeded(stats, active)
            self._ping_ok, self._ping_at, self._ping_error = True, time.monotonic(), None
            return
        self.metrics.refresh_failures.labels(pool.name).inc()
        cause = cause or error
        if pool.up or pool.last_error is None or pool.last_cause != cause:
            # At the first failure and when the cause changes (not which step met it): a pool that
            # stays down is not logged on every run.
            if missing is not None:
                log.warning(
                    "collection_missing", pool=pool.name, database=missing.database,
                    collection=missing.collection, close=list(missing.close), error=error,
                )  # fmt: skip
            else:
                log.warning("refresh_failed", pool=pool.name, error=error, previous_error=pool.last_error)
        pool.failed(error, collection_missing=missing is not None)
        pool.last_cause = cause

    async def _fetch(self, pool: PoolState) -> tuple[Statistics, int]:
        """Connect if needed, look after the indexes, then read the state counts (count_active included).

        The sums over every document are left to their own slower job (read_sums).
        """
        if not pool.connected:
            await pool.sessions.connect()
            pool.connected = True
        stats = await pool.sessions.aggregate_statistics(sums=False, fast_total=pool.fast_total)
        if stats.total == 0:
            # An empty pool may be a mistyped collection name: say so rather than look healthy.
            await pool.sessions.check_collection()
        if pool.config.create_indexes:
            await self._upkeep_indexes(pool)
        return stats, stats["count_active"]

    # -- sums --

    async def read_sums(self, name: str) -> PoolState:
        """Read one pool's sums now (never raises; a failure is logged at its first time and when it changes)."""
        pool = self.pools[name]
        async with pool.sums_lock, self._slots:
            try:
                with budget("sums_timeout", pool.config.sums_timeout):
                    if not pool.connected:
                        await pool.sessions.connect()
                        pool.connected = True
                    sums = await pool.sessions.aggregate_sums()
            except SessionPoolError as exc:
                self.metrics.sums_failures.labels(pool.name).inc()
                if pool.sums_cause != _cause(exc):
                    log.warning("sums_failed", pool=pool.name, error=exc.message, previous_error=pool.sums_error)
                pool.sums_error, pool.sums_cause = exc.message, _cause(exc)
                self.metrics.changed()
                return pool
            self._check_metadata_count(pool, sums)
            self._count_overruns(pool, sums)
            pool.sums_read(sums)
            self.metrics.changed()
        if pool.underperformers is None:
            await self.count_underperformers(name)  # the first count as soon as the pool's ratio is known
        return pool

    def _count_overruns(self, pool: PoolState, sums: Sums) -> None:
        """Add the overruns handlers recorded since the last reading (the first reading is the baseline).

        The handlers count them in their documents (count_overrun) in the write that reports, so
        the daemon learns of them without a write of its own; a deleted document's share only
        lowers the sum, which is not counted.
        """
        if pool.sums is not None and sums.overruns > pool.sums.overruns:
            self.metrics.lease_overruns.labels(pool.name).inc(sums.overruns - pool.sums.overruns)

    def _check_metadata_count(self, pool: PoolState, sums: Sums) -> None:
        """Count the `_id` index instead of trusting the metadata count while the two totals disagree."""
        if sums.metadata_agrees:
            if not pool.fast_total:
                log.info("metadata_count_agrees", pool=pool.name, total=sums.total)
            pool.fast_total = True
            return
        self.metrics.metadata_count_mismatches.labels(pool.name).inc()
        if pool.fast_total:
            # Documents came or went during the pass, or the count is wrong (MongoDB after an unclean
            # shutdown: `validate` repairs it). Exact counts meanwhile, until a later pass agrees.
            log.warning("metadata_count_disagrees", pool=pool.name, counted=sums.total, metadata=sums.metadata_total)
        pool.fast_total = False

    # -- underperformers, on a slow cadence of their own --

    def _schedule_underperformers(self, scheduler: AsyncIOScheduler, pool: PoolState, now: datetime) -> None:
        """One job per pool counting its underperforming sessions every `underperforming.interval` seconds."""
        every = pool.config.underperforming.interval
        trigger = IntervalTrigger(seconds=every, timezone=UTC)
        # The first count follows the first sums pass (see read_sums); these are the later ones.
        first = now + timedelta(seconds=every)
        _add_job(
            scheduler, self._job(self.count_underperformers), trigger, pool.name, f"underperformers:{pool.name}", first
        )

    async def count_underperformers(self, name: str) -> None:
        """Count the pool's often-used active sessions whose success ratio lags the pool's (from index keys)."""
        pool = self.pools[name]
        settings = pool.config.underperforming
        # The pool's own success ratio comes from its sums (their slow cadence), or from statistics
        # read with the sums (`aggregate_statistics()` by a caller of the core).
        source = pool.sums if pool.sums is not None else pool.stats
        if self._stopping or source is None or source.uses is None or source.successes is None:
            return
        if not pool.connected:
            return
        uses, successes = source.uses, source.successes
        threshold = underperforming_threshold(uses, successes, settings.below)
        try:
            with budget("refresh_timeout", pool.config.refresh_timeout):
                rows = (
                    await pool.sessions.aggregate(
                        underperforming_count_pipeline(pool.sessions.fields, settings.min_uses, threshold),
                        comment="count_underperformers",
                    )
                    if threshold is not None
                    else []
                )
        except SessionPoolError as exc:
            # Withdrawn rather than repeated: a count nobody could make is not a count.
            pool.underperformers = None
            log.warning("underperformers_failed", pool=name, error=exc.message)
            return
        ratio = successes / uses if uses else None
        count = int(rows[0]["n"]) if rows else 0
        pool.underperformers = Underperformers(count, threshold, ratio, time.time())

    # -- indexes --

    async def _upkeep_indexes(self, pool: PoolState) -> None:
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

    async def _build_indexes(self, pool: PoolState) -> None:
        """Create the pool's missing indexes; count and log the outcome (not bound by the refresh that noticed)."""
        try:
            with own_budget():
                created = await pool.sessions.ensure_indexes()
        except SessionPoolError as exc:
            self.metrics.index_build_failures.labels(pool.name).inc()
            self.metrics.changed()
            # A read-only monitoring user may not create indexes; statistics still work. Ask again later.
            pool.next_index_check = time.monotonic() + _INDEX_RETRY
            log.warning("create_indexes_failed", pool=pool.name, error=exc.message, retry_in_seconds=_INDEX_RETRY)
            return
        self.metrics.index_builds.labels(pool.name).inc()
        self.metrics.changed()
        log.info("indexes_created", pool=pool.name, indexes=created)

    async def wait_indexes(self, name: str) -> None:
        """Wait until the pool's index build, if one runs, has finished (tests and shutdown)."""
        task = self.pools[name].index_task
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    # -- readiness --

    async def mongodb_reachable(self, *, fresh: bool = False) -> tuple[bool, str | None]:
        """Ping a member the statistics reads may use (bounded, cached for a second): (reachable, redacted error).

        With the default read preference (primary) that is the primary: no primary, not ready.
        `fresh` asks again even within the cache's second (the scheduled check).
        """
        if self._ping_lock is None:
            self._ping_lock = asyncio.Lock()
        async with self._ping_lock:
            cached = self._ping_ok is not None and time.monotonic() - self._ping_at < _PING_CACHE
            if cached and not fresh:
                return self._ping_ok is True, self._ping_error
            try:
                with pymongo.timeout(_PING_TIMEOUT):
                    await self.client.admin.command(
                        "ping", read_preference=read_preference(self.config.mongodb.read_preference)
                    )
            except PyMongoError as exc:
                self._mongodb_down(connection_reason(exc))
            else:
                if self._ping_ok is False:
                    log.info("mongodb_reachable", previous_error=self._ping_error)
                self._ping_ok, self._ping_error, self._ping_at = True, None, time.monotonic()
            return self._ping_ok is True, self._ping_error

    def _mongodb_down(self, reason: str) -> None:
        """Record that MongoDB could not be reached, and why (logged once per cause)."""
        error = f"MongoDB unreachable: {reason}"
        if self._ping_error != error:
            log.warning("mongodb_unreachable", reason=reason)
        self._ping_ok, self._ping_error, self._ping_at = False, error, time.monotonic()

    def mongodb_up(self) -> bool | None:
        """The last verdict on MongoDB (a check, or a refresh that reached it or not); None before any."""
        return self._ping_ok

    async def readiness(self) -> tuple[bool, list[str]]:
        """Whether the daemon is ready and, if not, every reason why."""
        reasons: list[str] = []
        ok, error = await self.mongodb_reachable()
        if not ok:
            reasons.append(error or "MongoDB unreachable")
        for pool in self.pools.values():
            age = pool.age()
            if pool.collection_missing:
                reasons.append(f"pool {pool.name}: {pool.last_error}")
                continue
            if age is None:
                if pool.name not in self._static and time.monotonic() - pool.added <= pool.max_age:
                    continue  # just discovered: its first refresh is on its way
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
                "collection_missing": pool.collection_missing,
            }
        return out
