"""Discovery and the refresh cap, in-process against a real mongod: pools come and go without a restart."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC
from typing import Any

import pytest
from apscheduler.jobstores.base import JobLookupError
from pymongo import AsyncMongoClient, MongoClient
from structlog.testing import capture_logs

from exporter.collector import Collector, PoolJob
from exporter.config import Config, ConfigError, load_config
from exporter.metrics import Metrics
from tests.support.clock import ManualClock
from tests.support.metrics import parse_metrics, value

Doc = dict[str, Any]


@pytest.fixture
def database(sync_client: MongoClient[Doc]) -> Iterator[str]:
    """A fresh database for one test, dropped after it."""
    name = f"spe_disc_{uuid.uuid4().hex[:8]}"
    yield name
    sync_client.drop_database(name)


def config(uri: str, database: str, *, pools: list[dict[str, Any]] | None = None, **source: Any) -> Config:
    """One discovery source on `database` (and optional static pools)."""
    return Config.model_validate(
        {
            "mongodb": {"uri": uri, "timeout": 5, "server_selection_timeout": 2},
            "defaults": {"interval": 3600, "jitter": 0},
            "pools": pools or [],
            "discovery": [{"databases": [database], **source}],
        }
    )


def samples(metrics: Metrics) -> Any:
    """The exposition, parsed."""
    return parse_metrics(metrics.render()[0].decode())


async def test_pools_appear_and_vanish_without_a_restart(
    mongo_uri: str, sync_client: MongoClient[Doc], database: str
) -> None:
    """Matching collections become pools; a new one appears at the next listing, a dropped one vanishes
    with every series it had; views, excluded names and collections a static pool watches are left out."""
    db = sync_client[database]
    for name in ("tg_a", "tg_b", "tg_old", "ig_x", "static_one"):
        db[name].insert_one({"active": True, "next_use": None})
    db.command("create", "tg_view", viewOn="tg_a", pipeline=[])
    static = [{"name": "mine", "database": database, "collection": "tg_a"}]
    cfg = config(mongo_uri, database, pools=static, include=["tg_*"], exclude=["*_old"], name="d_{collection}")
    metrics = Metrics()
    collector = Collector(cfg, metrics)
    try:
        with capture_logs() as logs:
            await collector.discover(0)
        assert set(collector.pools) == {"mine", "d_tg_b"}
        assert [e["pool"] for e in logs if e["event"] == "pool_discovered"] == ["d_tg_b"]
        await collector.refresh("d_tg_b")
        assert value(samples(metrics), "session_pool_up", pool="d_tg_b") == 1

        db["tg_c"].insert_one({"active": True, "next_use": None})
        db["tg_b"].drop()
        with capture_logs() as logs:
            await collector.discover(0)
        assert set(collector.pools) == {"mine", "d_tg_c"}
        assert [e["event"] for e in logs if e["event"].startswith("pool_")] == ["pool_discovered", "pool_vanished"]
        exposition = metrics.render()[0].decode()
        assert 'pool="d_tg_b"' not in exposition  # gauges and counters both withdrawn
        assert 'session_pool_refreshes_total{pool="d_tg_c"} 0.0' in exposition
        # The admin API sees the same pools (it shares the collector's mapping).
        assert collector.pools["d_tg_c"].config.collection == "tg_c"
    finally:
        await collector.stop()


async def test_a_vanished_pool_leaves_no_job_behind(
    mongo_uri: str, sync_client: MongoClient[Doc], database: str
) -> None:
    """A discovered pool gets its refresh, sums and underperformers jobs; when its collection goes, they go."""
    sync_client[database]["p"].insert_one({})
    clock = ManualClock()
    clock.advance(3600)  # every first run an hour ahead: none runs during the test, discovery is called here
    collector = Collector(config(mongo_uri, database), Metrics(), clock=clock)
    collector.start()
    try:
        await collector.discover(0)
        jobs = dict(collector.scheduler.jobs("p"))
        assert set(jobs) == set(PoolJob)
        sync_client[database]["p"].drop()
        await collector.discover(0)
        assert "p" not in collector.pools
        assert collector.scheduler.jobs("p") == {}
        assert all(collector.scheduler.owner(job.id) is None for job in jobs.values())
        for job in jobs.values():
            with pytest.raises(JobLookupError):
                job.remove()  # gone from the scheduler itself, not only from the collector's books
    finally:
        await collector.stop()


async def test_unusable_names_are_skipped_and_said_once(
    mongo_uri: str, sync_client: MongoClient[Doc], database: str
) -> None:
    """A collection whose pool name would not be a valid label is skipped with the reason, logged once."""
    db = sync_client[database]
    db["good"].insert_one({})
    db["bad name"].insert_one({})
    collector = Collector(config(mongo_uri, database), Metrics())
    try:
        with capture_logs() as logs:
            await collector.discover(0)
            await collector.discover(0)
        assert set(collector.pools) == {"good"}
        skipped = [e for e in logs if e["event"] == "discovery_skipped"]
        assert len(skipped) == 1 and skipped[0]["collection"] == f"{database}.bad name"
        assert skipped[0]["reason"].startswith("name: ")
    finally:
        await collector.stop()


async def test_a_just_discovered_pool_does_not_make_the_daemon_unready(
    mongo_uri: str, sync_client: MongoClient[Doc], database: str
) -> None:
    """Until its max_age has passed without a refresh, a pool discovered while the daemon runs is not a reason
    to be unready."""
    sync_client[database]["first"].insert_one({})
    clock = ManualClock()
    collector = Collector(config(mongo_uri, database), Metrics(), clock=clock)
    try:
        await collector.discover(0)
        await collector.refresh("first")
        sync_client[database]["p"].insert_one({})
        await collector.discover(0)
        ready, reasons = await collector.readiness()
        assert ready, reasons
        clock.advance(collector.pools["p"].max_age + 1)
        await collector.refresh("first")  # the pool of the first listing stays fresh
        ready, reasons = await collector.readiness()
        assert not ready and reasons == ["pool p: no successful refresh yet"]
    finally:
        await collector.stop()


async def test_the_daemon_is_ready_once_it_has_listed_and_refreshed_its_first_pools(
    mongo_uri: str, sync_client: MongoClient[Doc], database: str
) -> None:
    """A daemon just started knows its pools only after discovery's first listing, and exports them only after
    their first refresh: it is not ready before (a rollout of several daemons moves on when it is)."""
    sync_client[database]["p"].insert_one({})
    collector = Collector(config(mongo_uri, database), Metrics())
    try:
        ready, reasons = await collector.readiness()
        assert not ready and reasons == ["discovery source 0: its collections not listed yet"]
        await collector.discover(0)
        ready, reasons = await collector.readiness()
        assert not ready and reasons == ["pool p: no successful refresh yet"]
        await collector.refresh("p")
        ready, reasons = await collector.readiness()
        assert ready, reasons
    finally:
        await collector.stop()


async def test_the_settled_hooks_run_once_after_the_start_up_round(
    mongo_uri: str, sync_client: MongoClient[Doc], database: str
) -> None:
    """on_settled runs once, when discovery has listed and every pool of the start-up round (static and
    discovered) has refreshed; not before, and not again for a pool found later."""
    sync_client[database]["found"].insert_one({})
    sync_client[database]["kept"].insert_one({})
    static = [{"name": "static", "database": database, "collection": "kept"}]
    collector = Collector(config(mongo_uri, database, pools=static), Metrics())
    calls: list[set[str]] = []
    collector.on_settled.append(lambda: calls.append({p.name for p in collector.pools.values() if p.stats}))
    try:
        await collector.refresh("static")
        assert calls == []  # discovery has not listed yet
        await collector.discover(0)
        assert calls == []  # `found` has not refreshed yet
        await collector.refresh("found")
        assert calls == [{"static", "found"}]
        sync_client[database]["later"].insert_one({})
        await collector.discover(0)
        await collector.refresh("later")
        assert len(calls) == 1
    finally:
        await collector.stop()


async def test_refreshes_wait_for_one_of_the_slots(
    mongo_uri: str, sync_client: MongoClient[Doc], database: str
) -> None:
    """With max_concurrent_refreshes 2, twelve pools never run more than two aggregations at once."""
    db = sync_client[database]
    for i in range(12):
        db[f"p{i:02d}"].insert_one({"active": True, "next_use": None})
    cfg = config(mongo_uri, database)
    cfg.max_concurrent_refreshes = 2
    app = f"spe-slots-{uuid.uuid4().hex[:6]}"
    # The collector's client under a name of the test's own: the fail point and the watcher pick it out.
    client: AsyncMongoClient[Doc] = AsyncMongoClient(mongo_uri, appname=app, tz_aware=True, tzinfo=UTC)
    collector = Collector(cfg, Metrics(), client=client)
    # Every aggregation of this test's client takes 300 ms on the server, so overlaps are visible.
    sync_client.admin.command(
        "configureFailPoint", "failCommand", mode="alwaysOn",
        data={"failCommands": ["aggregate"], "blockConnection": True, "blockTimeMS": 300, "appName": app},
    )  # fmt: skip
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            ops = sync_client.admin.aggregate([{"$currentOp": {}}, {"$match": {"appName": app, "op": "command"}}])
            peak = max(peak, sum(1 for op in ops if "aggregate" in op.get("command", {})))
            time.sleep(0.02)

    try:
        await collector.discover(0)
        watcher = threading.Thread(target=watch)
        watcher.start()
        started = time.monotonic()
        await asyncio.gather(*(collector.refresh(name) for name in collector.pools))
        elapsed = time.monotonic() - started
        done.set()
        watcher.join()
        assert all(p.up for p in collector.pools.values()), [p.last_error for p in collector.pools.values()]
        assert 1 <= peak <= 2, peak
        # Twelve refreshes of at least 300 ms, two at a time: six rounds.
        assert elapsed >= 6 * 0.3
        assert max(p.refresh.wait or 0 for p in collector.pools.values()) >= 4 * 0.3
    finally:
        done.set()
        sync_client.admin.command("configureFailPoint", "failCommand", mode="off")
        await collector.stop()
        await client.close()


def test_discovery_needs_no_static_pool_and_checks_its_settings(tmp_path: Any) -> None:
    """A source alone is a valid config; a bad database name or template is located."""
    path = tmp_path / "c.yaml"
    path.write_text("mongodb: {uri: 'mongodb://h/'}\ndiscovery: [{databases: [sessions], include: ['tg_*']}]\n")
    assert load_config(path, {}, {}).discovery[0].include == ["tg_*"]
    path.write_text("mongodb: {uri: 'mongodb://h/'}\ndiscovery: [{databases: ['a.b'], name: '{nope}'}]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {}, {})
    locations = [loc for loc, _ in info.value.problems]
    assert "discovery[0].databases[0]" in locations and "discovery[0].name" in locations
    path.write_text("mongodb: {uri: 'mongodb://h/'}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {}, {})
    assert "at least one pool or discovery source is required" in str(info.value)
