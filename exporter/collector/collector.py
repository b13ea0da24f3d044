"""The collector: every pool's state, its jobs on the scheduler, discovery, readiness; the client it shares."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from pymongo import AsyncMongoClient

from exporter.clock import SYSTEM_CLOCK, Clock
from exporter.collector import indexes, refresh, sums, underperformers
from exporter.collector.clients import close_client, mongo_client, pool_sessions
from exporter.collector.context import Context
from exporter.collector.discovery import Discovery
from exporter.collector.mongodb import MONGODB_CHECK_INTERVAL, MongoDBWatch
from exporter.collector.scheduler import PoolJob, Scheduler
from exporter.collector.slots import Slots
from exporter.config import Config, PoolDefinition
from exporter.core.clocks import MemberClocks
from exporter.log import get_logger
from exporter.metrics import Metrics
from exporter.state import PoolState

log = get_logger("exporter.collector")


class Collector:
    """Owns the shared MongoDB client, the scheduler and every pool's state at run time.

    `clock` reads every age, staleness and first-run time (tests pass one they move by hand).
    """

    def __init__(
        self,
        config: Config,
        metrics: Metrics,
        *,
        client: AsyncMongoClient[dict[str, Any]] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ):
        self.config = config
        self.metrics = metrics
        self.clock = clock
        # The members' clocks, from the heartbeats of the daemon's own client (none for a client given).
        self.clocks = MemberClocks()
        self.client: AsyncMongoClient[dict[str, Any]] = client or mongo_client(config, clocks=self.clocks)
        self._owns_client = client is None
        self.scheduler = Scheduler(clock)
        self.mongodb = MongoDBWatch(self.client, config.mongodb.read_preference, clock)
        # What the refreshes, sums passes and underperformers' counts share: at most so many reads at once.
        self.slots = Slots(config.max_concurrent_refreshes)
        self._ctx = Context(
            config=config,
            client=self.client,
            metrics=metrics,
            clock=clock,
            mongodb=self.mongodb,
            slots=self.slots,
            stopping=lambda: self.scheduler.stopping,
        )
        self.pools: dict[str, PoolState] = {}
        self._static = {p.name for p in config.pools}
        # The pools of the start-up round (configured, then found by discovery's first listings) not refreshed
        # yet; None once all have been (see _settle).
        self._unrefreshed: set[str] | None = set()
        # Called once the start-up round is over (the command line freezes the heap then: exporter.cli).
        self.on_settled: list[Callable[[], None]] = []
        for settings in config.pools:
            self._add(settings)
        shard = config.shard
        metrics.shard_info.labels(str(shard.index), str(shard.count), str(shard.replicas)).set(1)
        metrics.bind(self.watched)
        metrics.bind_mongodb(self.mongodb.up)
        self._discovery = [Discovery(i, self._ctx) for i in range(len(config.discovery))]
        # Awaited (each bounded by the requests' own grace) before the client closes: its users
        # outside the collector, such as the HTTP requests in flight (see exporter.assembly).
        self.before_close: list[Callable[[], Awaitable[None]]] = []

    def _add(self, settings: PoolDefinition) -> PoolState:
        """A pool's state, with its own MongoSessions on the shared client, its metrics and (once started) jobs."""
        sessions = pool_sessions(self.config, settings, self.client, clocks=self.clocks if self._owns_client else None)
        owners = self.config.shard.owners(settings.name)
        pool = PoolState(settings, sessions, self.clock, watched=self.config.shard.index in owners, watched_by=owners)
        self.pools[settings.name] = pool
        if pool.watched:
            self.metrics.add_pool(settings.name)
            self._schedule(pool)
            if self._unrefreshed is not None:
                self._unrefreshed.add(settings.name)
        return pool

    def watched(self) -> list[PoolState]:
        """The pools this daemon watches (all of them unless several daemons share them: `shard`)."""
        return [pool for pool in self.pools.values() if pool.watched]

    async def _remove(self, name: str) -> None:
        """Stop watching a pool: its jobs, its state, its series (withdrawn, not left stale)."""
        self.scheduler.remove_pool(name)
        if self._unrefreshed is not None:
            self._unrefreshed.discard(name)
        pool = self.pools.pop(name)
        if pool.indexes.task is not None and pool.indexes.running:
            pool.indexes.task.cancel()
        self.metrics.remove_pool(name)

    # -- scheduling --

    def start(self) -> None:
        """Schedule every pool and discovery source (first runs right away); needs a running event loop."""
        self.scheduler.open()
        for pool in self.watched():
            self._schedule(pool)
        now = self.scheduler.now()
        every = min([MONGODB_CHECK_INTERVAL, *(p.interval for p in self.watched())])
        self.scheduler.every(every, self._check_mongodb, name="mongodb_check", first=now)
        for source in self._discovery:
            self.scheduler.every(
                source.source.interval,
                partial(self.discover, source.index),
                name=f"discovery {source.index}",
                first=now,
            )
        self.scheduler.start()
        log.info(
            "scheduler_started",
            pools=[p.name for p in self.watched()],
            elsewhere=len(self.pools) - len(self.watched()),
            discovery_sources=len(self.config.discovery),
        )
        self._settle()  # nothing to wait for: no pool, no discovery

    def _schedule(self, pool: PoolState) -> None:
        """The pool's refresh, sums and underperformers jobs (nothing before start() or after stop(), nothing for
        a pool other daemons watch)."""
        if not pool.watched:
            return
        name = pool.name
        self.scheduler.add_pool(
            name,
            {
                PoolJob.REFRESH: (pool.interval, self.refresh),
                PoolJob.SUMS: (pool.config.sums_interval, self.read_sums),
                PoolJob.UNDERPERFORMERS: (pool.config.underperforming.interval, self.count_underperformers),
            },
            spread=min(pool.config.jitter, pool.interval),
            jitter=pool.config.jitter or None,
        )

    async def _check_mongodb(self) -> None:
        """The scheduler's job: ask MongoDB whether it answers (session_pool_mongodb_up)."""
        await self.mongodb.reachable(fresh=True)
        self.metrics.daemon_changed()

    def begin_stop(self) -> None:
        """The shutdown has begun: start no job, let those running go on for STOP_GRACE (see stop())."""
        self.scheduler.begin_stop()

    async def stop(self) -> None:
        """Stop scheduling, give running jobs STOP_GRACE from begin_stop(), abandon the rest, close the client.

        Within about a second whatever MongoDB does: every job is a read (or an index build the
        server finishes or drops by itself), so abandoning one changes nothing in the database.
        """
        abandoned = await self.scheduler.stop(
            lambda: [p.indexes.task for p in self.pools.values() if p.indexes.task is not None]
        )
        for wait in self.before_close:
            await wait()
        if self._owns_client:
            await close_client(self.client)
        log.info("collector_stopped", abandoned=abandoned)

    # -- the jobs, run now --

    async def refresh(self, name: str) -> PoolState:
        """Refresh one pool now (never raises; the outcome is in the returned state's `refresh`); a pool other
        daemons watch is theirs to refresh (shard)."""
        pool = self.pools[name]
        if not pool.watched:
            return pool
        await refresh.run(pool, self._ctx)
        if self._unrefreshed is not None:
            self._unrefreshed.discard(name)
            self._settle()
        return pool

    def _settle(self) -> None:
        """Once every pool of the start-up round has been refreshed (or tried): call the `on_settled` hooks."""
        if self._unrefreshed or not all(source.listed for source in self._discovery):
            return
        self._unrefreshed = None
        log.info("startup_settled", pools=len(self.watched()))
        for hook in self.on_settled:
            hook()

    async def refresh_all(self) -> None:
        """Refresh every pool concurrently."""
        await asyncio.gather(*(self.refresh(pool.name) for pool in self.watched()))

    async def read_sums(self, name: str) -> PoolState:
        """Read one pool's sums now (never raises; the outcome is in the returned state's `sums_pass`)."""
        pool = self.pools[name]
        await sums.run(pool, self._ctx)
        return pool

    async def count_underperformers(self, name: str) -> None:
        """Count the pool's often-used active sessions whose success ratio lags the pool's (from index keys)."""
        await underperformers.run(self.pools[name], self._ctx)

    async def wait_indexes(self, name: str) -> None:
        """Wait until the pool's index build, if one runs, has finished (tests and shutdown)."""
        await indexes.wait(self.pools[name])

    async def discover(self, index: int) -> None:
        """Apply one listing of discovery source `index` (never raises; a failure keeps the pools it has).

        The pools of a source's first listing are the daemon's own from the start, like configured ones:
        it is ready once each has refreshed (a rollout then moves on only when its pools are exported).
        """
        source = self._discovery[index]
        first = not source.listed
        found = await source.run(self.pools, self._add, self._remove)
        if first and found is not None:
            self._static |= set(found.pools)
        if self._unrefreshed is not None:
            self._settle()  # its pools may all have refreshed before the listing (or it found none)

    # -- readiness --

    async def mongodb_reachable(self, *, fresh: bool = False) -> tuple[bool, str | None]:
        """Whether a member the statistics reads may use answers (see MongoDBWatch.reachable)."""
        return await self.mongodb.reachable(fresh=fresh)

    def mongodb_up(self) -> bool | None:
        """The last verdict on MongoDB (a check, or a refresh that reached it or not); None before any."""
        return self.mongodb.up()

    async def readiness(self) -> tuple[bool, list[str]]:
        """Whether the daemon is ready and, if not, every reason why."""
        reasons: list[str] = []
        ok, error = await self.mongodb.reachable()
        if not ok:
            reasons.append(error or "MongoDB unreachable")
        for source in self._discovery:
            if not source.listed:
                reasons.append(f"discovery source {source.index}: its collections not listed yet")
        for pool in self.watched():
            age = pool.age()
            if pool.collection_missing:
                reasons.append(f"pool {pool.name}: {pool.last_error}")
                continue
            if age is None:
                if pool.name not in self._static and self.clock.monotonic() - pool.added <= pool.max_age:
                    continue  # just discovered: its first refresh is on its way
                detail = f": {pool.last_error}" if pool.last_error else ""
                reasons.append(f"pool {pool.name}: no successful refresh yet{detail}")
            elif not pool.fresh:
                reasons.append(
                    f"pool {pool.name}: last successful refresh {age:.0f} s ago (max_age {pool.max_age:g} s)"
                    + (f": {pool.last_error}" if pool.last_error else "")
                )
        return not reasons, reasons

    def pool_status(self) -> dict[str, dict[str, Any]]:
        """Per-pool summary for /readyz."""
        out: dict[str, dict[str, Any]] = {}
        for pool in self.watched():
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
