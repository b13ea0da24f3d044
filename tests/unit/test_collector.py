"""Collector in-process against a real mongod: refresh results, isolation of broken/slow pools, state logs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient, MongoClient
from pymongo.collection import Collection
from structlog.testing import capture_logs

from exporter.collector import Collector, PoolJob
from exporter.config import Config
from exporter.core import MongoSessions, State
from exporter.metrics import Metrics
from tests.support.clock import ManualClock
from tests.support.commands import Commands

Doc = dict[str, Any]


def make_config(uri: str, collections: dict[str, str], **defaults: Any) -> Config:
    """A validated config with one pool per (name, collection) in database spe_collector."""
    return Config.model_validate(
        {
            "mongodb": {"uri": uri, "timeout": 2, "server_selection_timeout": 1},
            "defaults": {"interval": 0.3, "jitter": 0, "refresh_timeout": 1, **defaults},
            "pools": [{"name": n, "database": "spe_collector", "collection": c} for n, c in collections.items()],
        }
    )


async def wait_until(predicate: Any, what: str, deadline: float = 30.0) -> None:
    """Poll an in-process condition (liveness, not timing)."""
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def seed_pool(sync_client: MongoClient[Doc], collection: str) -> None:
    """Four usable sessions (2 uses, 1 success each) and two inactive ones (1 use each)."""
    coll = sync_client["spe_collector"][collection]
    coll.insert_many([{"active": True, "next_use": None, "count_use": 2, "count_success": 1} for _ in range(4)])
    coll.insert_many([{"active": False, "count_use": 1} for _ in range(2)])


def seed_ratios(sync_client: MongoClient[Doc], collection: str, *, good: int, bad: int) -> Collection[Doc]:
    """`good` active sessions succeeding 90 % of 200 uses, `bad` ones 10 % (underperformers)."""
    coll = sync_client["spe_collector"][collection]
    ok = {"active": True, "next_use": None, "count_use": 200, "count_success": 180}
    coll.insert_many([dict(ok) for _ in range(good)] + [{**ok, "count_success": 20} for _ in range(bad)])
    return coll


@pytest.fixture
async def seeded(mongo_uri: str, sync_client: MongoClient[Doc], unique_name: str) -> AsyncIterator[Collector]:
    """A collector of one pool `p` on four usable sessions and two inactive ones; stopped after the test."""
    seed_pool(sync_client, unique_name)
    collector = Collector(make_config(mongo_uri, {"p": unique_name}), Metrics())
    yield collector
    await collector.stop()


async def test_refresh_records_statistics_and_active_count(seeded: Collector) -> None:
    """refresh(name) stores the pool's statistics, count_active, success time and up flag."""
    pool = await seeded.refresh("p")
    assert pool is seeded.pools["p"]
    assert pool.up and pool.last_error is None
    assert pool.stats is not None
    assert pool.stats.states[State.ACTIVE] == 4
    assert pool.stats.states[State.INACTIVE] == 2
    assert pool.active == 4
    assert pool.last_success is not None and pool.last_success <= time.time()
    assert pool.fresh
    assert isinstance(pool.sessions, MongoSessions)
    assert pool.config.name == "p"


async def test_sums_are_read_by_their_own_job(seeded: Collector) -> None:
    """A refresh reads no sums; read_sums(name) does, and the metadata count agrees with the counted total."""
    pool = await seeded.refresh("p")
    assert pool.stats is not None
    assert (pool.stats.uses, pool.stats.successes, pool.sums) == (None, None, None)
    await seeded.read_sums("p")
    assert pool.sums is not None and pool.sums_pass.error is None
    assert (pool.sums.total, pool.sums.uses, pool.sums.successes) == (6, 10, 4)
    assert pool.sums.metadata_agrees and pool.fast_total


async def test_writes_through_the_pool_client_show_at_the_next_refresh(seeded: Collector) -> None:
    """A lock made through the pool's own client is counted by the next refresh; each refresh is counted."""
    pool = await seeded.refresh("p")
    doc = await pool.sessions.get_session()
    assert doc is not None
    await pool.sessions.session_lock(doc)
    await seeded.refresh("p")
    assert pool.stats is not None
    assert pool.stats.states[State.LOCKED] == 1
    assert pool.active == 3
    assert seeded.metrics.registry.get_sample_value("session_pool_refreshes_total", {"pool": "p"}) == 2


async def test_ready_once_every_pool_has_refreshed(seeded: Collector) -> None:
    """After a refresh of its only pool the daemon is ready, MongoDB reachable."""
    await seeded.refresh("p")
    assert await seeded.mongodb_reachable() == (True, None)
    ready, reasons = await seeded.readiness()
    assert ready, reasons


async def test_readiness_follows_the_clock_not_a_sleep(
    mongo_uri: str, sync_client: MongoClient[Doc], unique_name: str
) -> None:
    """Once the last success is older than max_age the pool is a reason not to be ready; the state series go."""
    seed_pool(sync_client, unique_name)
    clock = ManualClock()
    metrics = Metrics()
    collector = Collector(make_config(mongo_uri, {"p": unique_name}, max_age=30), metrics, clock=clock)
    try:
        pool = await collector.refresh("p")
        clock.advance(30)
        assert pool.fresh and (await collector.readiness())[0]
        clock.advance(1)
        ready, reasons = await collector.readiness()
        assert not pool.fresh and not ready
        assert reasons == ["pool p: last successful refresh 31 s ago (max_age 30 s)"]
        assert collector.pool_status()["p"]["fresh"] is False
        exposition = metrics.render()[0].decode()
        assert 'session_pool_up{pool="p"} 1.0' in exposition and "session_pool_sessions{" not in exposition
    finally:
        await collector.stop()


async def test_jobs_are_kept_by_their_handles_and_scheduled_from_the_clock() -> None:
    """start() gives each pool its refresh, sums and underperformers jobs (first runs from the clock's time,
    the underperformers' at a random point of its first interval); stop() drops them. No MongoDB needed:
    nothing is due yet."""
    clock = ManualClock()
    clock.advance(3600)  # every first run is an hour ahead of real time: none runs during the test
    config = make_config("mongodb://127.0.0.1:1/?connect=false", {"p": "c"}, sums_interval=60,
                         underperforming={"interval": 600})  # fmt: skip
    collector = Collector(config, Metrics(), clock=clock)
    collector.start()
    try:
        jobs = collector.scheduler.jobs("p")
        assert set(jobs) == set(PoolJob)
        now = datetime.fromtimestamp(clock.time(), UTC)
        assert jobs[PoolJob.REFRESH].next_run_time == now
        assert jobs[PoolJob.REFRESH].trigger.interval.total_seconds() == 0.3
        assert jobs[PoolJob.SUMS].trigger.interval.total_seconds() == 60
        counts = jobs[PoolJob.UNDERPERFORMERS]
        assert now + timedelta(seconds=0.05 * 600) <= counts.next_run_time <= now + timedelta(seconds=600)
        assert counts.trigger.interval.total_seconds() == 600
        assert {collector.scheduler.owner(job.id) for job in jobs.values()} == {("p", kind) for kind in PoolJob}
    finally:
        await collector.stop()
    assert collector.scheduler.jobs("p") == {}


async def test_after_their_first_run_the_pools_runs_spread_over_the_interval(mongo_uri: str) -> None:
    """Pools started together run their first refresh at once, then each its next at a random point of the
    interval (never at once): thousands of pools do not refresh in step."""
    every = 4.0
    names = {f"p{i}": f"c{i}" for i in range(40)}
    collector = Collector(make_config(mongo_uri, names, interval=every, refresh_timeout=2), Metrics())
    collector.start()
    try:
        await wait_until(lambda: all(p.refresh.attempts >= 1 for p in collector.pools.values()), "the first round")
        await asyncio.sleep(0.2)  # the last first run re-phased its job
        ended = datetime.now(UTC)
        nexts = [collector.scheduler.jobs(name)[PoolJob.REFRESH].next_run_time for name in names]
        assert all(ended - timedelta(seconds=every) < n <= ended + timedelta(seconds=every) for n in nexts)
        spread = (max(nexts) - min(nexts)).total_seconds()
        assert spread > every / 2, f"40 pools' next refreshes within {spread:.2f} s of each other"
        # The underperformers' counts too, from their first (the sums pass made each pool's first count).
        counts = [collector.scheduler.jobs(name)[PoolJob.UNDERPERFORMERS].next_run_time for name in names]
        spread = (max(counts) - min(counts)).total_seconds()
        assert spread > 300 / 2, f"40 pools' first underperformers' counts within {spread:.2f} s of each other"
    finally:
        await collector.stop()


async def test_broken_and_slow_pools_do_not_delay_the_others(
    mongo_uri: str, sync_client: MongoClient[Doc], unique_name: str
) -> None:
    """One pool pointing at a dead server and one hanging never stop a healthy pool's schedule."""
    sync_client["spe_collector"].create_collection(unique_name)  # an empty pool, but one that exists
    metrics = Metrics()
    collector = Collector(make_config(mongo_uri, {"good": unique_name, "dead": "x", "slow": "y"}), metrics)
    dead, slow = collector.pools["dead"], collector.pools["slow"]
    # Real unreachable servers: nothing listens on port 1; the blackhole address never answers.
    dead.sessions = MongoSessions(
        "mongodb://user:hunter2@127.0.0.1:1/?directConnection=true", "spe_collector", "x",
        serverSelectionTimeoutMS=200, timeout=5,
    )  # fmt: skip
    slow.sessions = MongoSessions(
        "mongodb://192.0.2.1:27017/?directConnection=true", "spe_collector", "y",
        serverSelectionTimeoutMS=60_000, connectTimeoutMS=60_000, timeout=60,
    )  # fmt: skip
    with capture_logs() as logs:
        collector.start()
        try:
            await wait_until(lambda: collector.pools["good"].refresh.attempts >= 6, "six refreshes of the good pool")
            await wait_until(lambda: slow.last_error is not None, "the slow pool's timeout")
        finally:
            await collector.stop()
            await dead.sessions.close()
            await slow.sessions.close()
    good = collector.pools["good"]
    assert good.up and good.last_error is None
    assert not dead.up and not slow.up
    assert dead.last_error is not None and "hunter2" not in dead.last_error
    # The blackhole address is refused or never answers: either way refresh_timeout ended the wait.
    assert slow.last_error is not None and "1 s, refresh_timeout" in slow.last_error, slow.last_error
    # No overlapping runs: the slow pool (1 s timeout, 0.3 s interval) ran far fewer times.
    assert slow.refresh.attempts < good.refresh.attempts
    failed = [e for e in logs if e["event"] == "refresh_failed"]
    assert sorted(e["pool"] for e in failed) == ["dead", "slow"]  # one event per state change, not per run
    assert all("hunter2" not in str(e) for e in logs)
    assert (
        metrics.registry.get_sample_value("session_pool_refresh_failures_total", {"pool": "dead"})
        == dead.refresh.attempts
    )


async def test_recovery_is_logged_once(mongo_uri: str, sync_client: MongoClient[Doc], unique_name: str) -> None:
    """A pool failing, then working again logs refresh_failed once and refresh_recovered once."""
    sync_client["spe_collector"].create_collection(unique_name)
    collector = Collector(make_config(mongo_uri, {"p": unique_name}), Metrics())
    pool = collector.pools["p"]
    working = pool.sessions
    broken = MongoSessions("mongodb://127.0.0.1:1/?directConnection=true", "spe_collector", unique_name,
                           serverSelectionTimeoutMS=100)  # fmt: skip
    try:
        with capture_logs() as logs:
            await collector.refresh("p")
            pool.sessions = broken
            for _ in range(3):
                await collector.refresh("p")
            assert not pool.up
            pool.sessions = working
            await collector.refresh("p")
        assert pool.up
        events = [e["event"] for e in logs]
        assert events.count("refresh_failed") == 1
        assert events.count("refresh_recovered") == 1
        ready, reasons = await collector.readiness()
        assert ready, reasons
    finally:
        await broken.close()
        await collector.stop()


async def test_readiness_reasons_before_first_refresh(
    mongo_uri: str, sync_client: MongoClient[Doc], unique_name: str
) -> None:
    """Not ready until every pool has refreshed; the reasons name the pool."""
    sync_client["spe_collector"].create_collection(unique_name)
    collector = Collector(make_config(mongo_uri, {"a": unique_name, "b": unique_name + "b"}), Metrics())
    try:
        await collector.refresh("a")
        ready, reasons = await collector.readiness()
        assert not ready
        assert reasons == ["pool b: no successful refresh yet"]
        status = collector.pool_status()
        assert status["a"]["up"] and not status["b"]["up"]
    finally:
        await collector.stop()


async def test_read_only_user_gets_statistics_without_creating_indexes(mongod_factory: Any, unique_name: str) -> None:
    """A monitoring user without createIndex still gets statistics; its password never shows up."""
    server = mongod_factory(replica_set=None, extra_args=["--auth"])
    admin_uri = f"mongodb://root:rootpw-123@127.0.0.1:{server.port}/?authSource=admin"
    # The localhost exception allows creating the first user on a fresh --auth server.
    bootstrap: MongoClient[Doc] = MongoClient(server.uri)
    root: MongoClient[Doc] = MongoClient(admin_uri)
    with bootstrap:
        bootstrap.admin.command("createUser", "root", pwd="rootpw-123", roles=["root"])
    with root:
        docs: list[Doc] = [{"active": True, "next_use": None} for _ in range(3)]
        root["spe_collector"][unique_name].insert_many(docs)
        root.admin.command("createUser", "monitor", pwd="monitor-pw-456",
                           roles=[{"role": "read", "db": "spe_collector"}])  # fmt: skip
    uri = f"mongodb://monitor:monitor-pw-456@127.0.0.1:{server.port}/?authSource=admin"
    collector = Collector(make_config(uri, {"p": unique_name}), Metrics())
    try:
        with capture_logs() as logs:
            pool = await collector.refresh("p")
            await collector.wait_indexes("p")
        assert pool.up, pool.last_error
        assert pool.stats is not None and pool.stats.states[State.ACTIVE] == 3
        # capture_logs sees every logger of the process: keep the events of this user's refusal only.
        refused = [e for e in logs if e["event"] == "create_indexes_failed" and "Unauthorized (13)" in e["error"]]
        assert len(refused) == 1, refused
        assert all("monitor-pw-456" not in str(e) for e in logs)
    finally:
        await collector.stop()


async def test_underperformers_are_counted_on_their_own_cadence(
    mongo_uri: str, sync_client: MongoClient[Doc], unique_name: str
) -> None:
    """The first count follows the first sums pass (the pool's own ratio), then runs as a job of its
    own: with an interval of an hour, refreshes and sums go on and a change in the data leaves the
    count as it was."""
    coll = seed_ratios(sync_client, unique_name, good=8, bad=2)
    collector = Collector(make_config(mongo_uri, {"p": unique_name}, underperforming={"interval": 3600}), Metrics())
    pool = collector.pools["p"]
    collector.start()
    try:
        job = collector.scheduler.jobs("p")[PoolJob.UNDERPERFORMERS]
        assert job.trigger.interval.total_seconds() == 3600
        await wait_until(lambda: pool.underperformers is not None, "the first count")
        assert pool.underperformers is not None and pool.underperformers.count == 2
        assert pool.underperformers.pool_ratio == pytest.approx((8 * 180 + 2 * 20) / 2000)
        coll.update_many({"count_success": 20}, {"$set": {"count_success": 180}})
        refreshes = pool.refresh.attempts
        await wait_until(lambda: pool.refresh.attempts >= refreshes + 3, "three more refreshes")
        await collector.read_sums("p")
        assert pool.sums is not None and pool.sums.successes == 1800
        assert pool.underperformers.count == 2
        await collector.count_underperformers("p")
        assert pool.underperformers.count == 0
    finally:
        await collector.stop()


async def test_an_underperformers_count_waits_for_a_slot(
    mongo_uri: str, sync_client: MongoClient[Doc], unique_name: str
) -> None:
    """Counts share the refreshes' slots: with every slot taken, a count waits (thousands of pools' counts
    never crowd the refreshes out of the client's connections)."""
    coll = seed_ratios(sync_client, unique_name, good=3, bad=1)
    config = make_config(mongo_uri, {"p": unique_name})
    config.max_concurrent_refreshes = 1
    collector = Collector(config, Metrics())
    pool = collector.pools["p"]
    try:
        await collector.read_sums("p")
        assert pool.underperformers is not None and pool.underperformers.count == 1
        coll.update_many({"count_success": 20}, {"$set": {"count_success": 180}})
        await collector.slots.acquire()
        count = asyncio.create_task(collector.count_underperformers("p"))
        await asyncio.sleep(0.5)
        assert not count.done() and collector.slots.waiting == 1
        collector.slots.release()
        await count
        assert pool.underperformers.count == 0
    finally:
        await collector.stop()


async def test_a_pools_first_refresh_and_sums_pass_connect_it_once(
    mongo_uri: str, sync_client: MongoClient[Doc], unique_name: str
) -> None:
    """Started together (as at start-up), a pool's first refresh and first sums pass share one connect: they
    ask `hello` as often as when they run one after the other (thousands of pools start at once)."""
    seed_pool(sync_client, unique_name)
    seed_pool(sync_client, f"{unique_name}_b")
    commands = Commands()
    client: AsyncMongoClient[Doc] = AsyncMongoClient(mongo_uri, tz_aware=True, tzinfo=UTC, event_listeners=[commands])
    collector = Collector(
        make_config(mongo_uri, {"apart": unique_name, "together": f"{unique_name}_b"}), Metrics(), client=client
    )
    try:
        before = len(commands.sent)
        await collector.refresh("apart")
        await collector.read_sums("apart")
        apart = commands.names()[before:].count("hello")
        before = len(commands.sent)
        await asyncio.gather(collector.refresh("together"), collector.read_sums("together"))
        together = commands.names()[before:].count("hello")
        pool = collector.pools["together"]
        assert pool.up and pool.sums is not None and pool.sums.uses == 10
        assert together == apart >= 1
    finally:
        await collector.stop()
        await client.close()
