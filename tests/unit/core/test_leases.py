"""Holds nobody can clobber: a late report, an operator's lock during a hold, and which hand-out a report is about."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient

from exporter import MongoSessions
from exporter.core.leases import Leases
from tests.conftest import PoolFactory
from tests.support.daemon import InProcess, config, serving, write_config
from tests.support.legacy import LegacyWorker
from tests.support.metrics import parse_metrics, value

SyncClient = MongoClient[dict[str, Any]]
DB = "spe_test"


def raw(sync_client: SyncClient, pool: MongoSessions) -> Any:
    """The same collection through plain synchronous PyMongo (aware datetimes)."""
    return sync_client[pool.collection.database.name][pool.collection.name]


def remaining(doc: Any, sync_client: SyncClient) -> timedelta:
    """How long the document's hold lasts from the server's now."""
    now: datetime = sync_client.admin.command("hello")["localTime"]
    left: timedelta = doc["next_use"] - (now if now.tzinfo else now.replace(tzinfo=UTC))
    return left


# --- which hand-out a report is about (no server) -----------------------------------------------


def test_a_report_is_tied_to_the_document_object_it_was_handed() -> None:
    """Two hand-outs of one session in one process: each document finds its own lease, once."""
    leases = Leases()
    first, second = {"_id": 1, "session": {}}, {"_id": 1, "session": {}}
    a, b = ObjectId(), ObjectId()
    leases.remember(first, a)
    leases.remember(second, b)
    assert leases.find(first) == (id(first), a) and leases.find(second) == (id(second), b)
    # By id or a copy, the session is ambiguous: no lease (a report without one).
    assert leases.find(1) is None and leases.find({"_id": 1}) is None
    found = leases.find(first)
    assert found is not None
    leases.forget(found[0])
    # Only the second hand-out is outstanding now: its id decides.
    assert leases.find({"_id": 1}) == (id(second), b) and leases.find(1) == (id(second), b)
    assert len(leases) == 1


def test_ids_match_as_session_filter_does_and_memory_is_bounded() -> None:
    """A 24-hex string finds its ObjectId's hand-out; odd ids work; beyond the limit the oldest is forgotten."""
    leases = Leases(limit=3)
    first, oid = ObjectId(), ObjectId()
    docs: list[dict[str, Any]] = [{"_id": first}, {"_id": oid}, {"_id": {"a": 1}}, {"_id": "acc-42"}]
    for doc in docs:
        leases.remember(doc, ObjectId())
    assert len(leases) == 3
    assert leases.find(first) is None  # the oldest, forgotten
    assert leases.find(str(oid)) is not None and leases.find(oid) is not None
    # A mapping is a document (its `_id` decides), as session_filter reads it.
    assert leases.find({"_id": {"a": 1}}) is not None and leases.find("acc-42") is not None
    assert leases.find({"_id": 8}) is None and leases.find(None) is None and leases.find({"a": 1}) is None


# --- against a real mongod ---------------------------------------------------------------------


async def one_session(pool_factory: PoolFactory, **options: Any) -> tuple[MongoSessions, ObjectId]:
    """A pool with a single session, so a second hand-out is necessarily of the same one."""
    pool = await pool_factory(**options)
    sid = (await pool.add({"session": {"login": "only"}})).inserted_id
    return pool, sid


async def test_a_stale_success_leaves_the_new_holders_hold_and_counts_as_an_overrun(
    pool_factory: PoolFactory, sync_client: SyncClient
) -> None:
    """A handler whose work outlasted its hold reports success after the session went to another handler:
    its success is counted, the new holder keeps its hold, and the report counts one overrun."""
    pool, sid = await one_session(pool_factory)
    late = await pool.get_session(next_use_delay=0.3)
    assert late is not None
    await asyncio.sleep(0.5)  # its hold ends while it still works
    current = await pool.get_session(next_use_delay=120)
    assert current is not None and current["_id"] == sid
    before = raw(sync_client, pool).find_one({"_id": sid})
    # The late handler reports with a short cooldown: before, this ended the new holder's hold.
    await pool.session_success(late, next_use_delay=0)
    after = raw(sync_client, pool).find_one({"_id": sid})
    assert after["next_use"] == before["next_use"] and after["hold"] == before["hold"]
    assert remaining(after, sync_client) > timedelta(seconds=100)
    assert after["count_success"] == 1 and after["count_overrun"] == 1
    assert await pool.get_session() is None  # nobody else gets it while its holder works
    # The current holder's own report is not an overrun and sets its cooldown.
    await pool.session_success(current, next_use_delay=5)
    done = raw(sync_client, pool).find_one({"_id": sid})
    assert done["count_success"] == 2 and done["count_overrun"] == 1
    assert timedelta(seconds=3) < remaining(done, sync_client) <= timedelta(seconds=5)
    assert (await pool.aggregate_sums()).overruns == 1


async def test_a_stale_lock_only_lengthens_and_the_new_holders_success_keeps_it(
    pool_factory: PoolFactory, sync_client: SyncClient
) -> None:
    """A late handler's lock (the source rate-limited the account) is not lost: it lengthens the hold to a lock,
    counts an overrun, and the new holder's success no longer erases it."""
    pool, sid = await one_session(pool_factory)
    late = await pool.get_session(next_use_delay=0.3)
    await asyncio.sleep(0.5)
    current = await pool.get_session(next_use_delay=60)
    assert late is not None and current is not None
    await pool.session_lock(late, {"minutes": 10})
    locked = raw(sync_client, pool).find_one({"_id": sid})
    assert locked["hold"]["kind"] == "lock" and locked["count_overrun"] == 1
    assert remaining(locked, sync_client) > timedelta(minutes=9)
    await pool.session_success(current)
    kept = raw(sync_client, pool).find_one({"_id": sid})
    assert kept["next_use"] == locked["next_use"] and kept["hold"]["kind"] == "lock"
    assert kept["count_success"] == 1 and kept["count_overrun"] == 1


async def test_a_stale_lock_shorter_than_the_new_hold_survives_the_new_holders_success(
    pool_factory: PoolFactory, sync_client: SyncClient
) -> None:
    """The new holder's hold ends after the late handler's lock would: the hold becomes the lock (same end),
    so the new holder's success keeps the session until then instead of releasing it after its cooldown
    (found by the fault lab: a session handed out 4.5 s into an acknowledged 5 s lock)."""
    pool, sid = await one_session(pool_factory)
    late = await pool.get_session(next_use_delay=0.3)
    await asyncio.sleep(0.5)
    current = await pool.get_session(next_use_delay=60)
    assert late is not None and current is not None
    before = raw(sync_client, pool).find_one({"_id": sid})
    await pool.session_lock(late, {"seconds": 5})
    marked = raw(sync_client, pool).find_one({"_id": sid})
    assert marked["next_use"] == before["next_use"] and marked["hold"]["kind"] == "lock"
    assert marked["hold"]["lease"] == before["hold"]["lease"] and marked["count_overrun"] == 1
    await pool.session_success(current, next_use_delay=0)
    assert await pool.get_session() is None  # not before the lock's end (nor the hold it became)
    kept = raw(sync_client, pool).find_one({"_id": sid})
    assert kept["next_use"] == before["next_use"] and kept["hold"]["kind"] == "lock"


async def test_a_stale_report_by_a_second_process_after_an_original_hand_out(
    pool_factory: PoolFactory, mongo_uri: str, sync_client: SyncClient
) -> None:
    """The original library's hand-out writes next_use and last_use only: the late report is still stale."""
    pool, sid = await one_session(pool_factory)
    late = await pool.get_session(next_use_delay=0.3)
    assert late is not None
    await asyncio.sleep(0.5)
    old = LegacyWorker(mongo_uri, DB, pool.collection.name)
    try:
        assert (await old.get_session(next_use_delay=120)) is not None
    finally:
        await old.close()
    before = raw(sync_client, pool).find_one({"_id": sid})
    await pool.session_success(late, next_use_delay=0)
    after = raw(sync_client, pool).find_one({"_id": sid})
    assert after["next_use"] == before["next_use"] and after["count_overrun"] == 1


async def test_a_report_by_id_never_shortens_a_hold_it_cannot_tie_to_its_hand_out(
    pool_factory: PoolFactory, sync_client: SyncClient
) -> None:
    """Two outstanding hand-outs of one session in one process, reported by `_id`: ambiguous, so no lease; the
    success is counted and may not shorten the hold in force (nor count an overrun it cannot prove)."""
    pool, sid = await one_session(pool_factory)
    late = await pool.get_session(next_use_delay=0.3)
    await asyncio.sleep(0.5)
    assert late is not None and await pool.get_session(next_use_delay=120) is not None
    before = raw(sync_client, pool).find_one({"_id": sid})
    await pool.session_success(late["_id"], next_use_delay=0)
    after = raw(sync_client, pool).find_one({"_id": sid})
    assert after["next_use"] == before["next_use"] and after["count_success"] == 1 and "count_overrun" not in after


async def test_a_success_after_the_hold_ended_with_nobody_else_is_an_ordinary_report(
    pool_factory: PoolFactory, sync_client: SyncClient
) -> None:
    """Late but harmless (nobody took the session meanwhile): not an overrun, the cooldown is set as asked."""
    pool, sid = await one_session(pool_factory)
    late = await pool.get_session(next_use_delay=0.2)
    await asyncio.sleep(0.4)
    await pool.session_success(late, next_use_delay=30)
    doc = raw(sync_client, pool).find_one({"_id": sid})
    assert "count_overrun" not in doc and doc["hold"]["kind"] == "use"
    assert timedelta(seconds=25) < remaining(doc, sync_client) <= timedelta(seconds=30)


# --- an operator's lock during a hold, through the daemon's admin API ---------------------------


@pytest.fixture
async def daemon(tmp_path: Path, mongo_uri: str, unique_name: str) -> AsyncIterator[InProcess]:
    """The daemon watching pool `unique_name` (admin API on, audit trail beside it)."""
    data = config(
        mongo_uri,
        [{"name": "p", "database": DB, "collection": unique_name, "sums_interval": 3600}],
        admin={"audit": {"database": DB, "collection": f"{unique_name}_audit"}},
    )
    async with serving(write_config(tmp_path, data)) as d:
        yield d


async def test_an_operators_lock_during_a_hold_sticks_when_the_handler_reports_success(
    daemon: InProcess, mongo_uri: str, unique_name: str, sync_client: SyncClient
) -> None:
    """An operator locks a session from the console while a handler holds it; the handler's success counts
    but does not replace the lock (before, success rewrote next_use and the lock was gone)."""
    pool = MongoSessions(mongo_uri, DB, unique_name, tz_aware=True)
    await pool.connect()
    try:
        sid = (await pool.add({"session": {"login": "held"}})).inserted_id
        taken = await pool.get_session(next_use_delay=30)
        assert taken is not None
        async with daemon.client() as http:
            response = await http.post(
                f"/admin/pools/p/sessions/{sid}/lock", json={"period": {"hours": 1}, "reason": "console"}
            )
        assert response.status_code == 200, response.text
        await pool.session_success(taken)
        doc: Any = sync_client[DB][unique_name].find_one({"_id": sid})
        assert doc["hold"]["kind"] == "lock" and doc["count_success"] == 1 and "count_overrun" not in doc
        assert remaining(doc, sync_client) > timedelta(minutes=59)
        async with daemon.client() as http:
            view = (await http.get(f"/admin/pools/p/sessions/{sid}")).json()
        assert view["state"] == "locked"
    finally:
        await pool.close()


async def test_the_daemon_counts_overruns_from_the_sums(daemon: InProcess, mongo_uri: str, unique_name: str) -> None:
    """Overruns recorded by handlers in another process reach session_pool_lease_overruns_total at the next
    reading of the sums (the first reading is the baseline)."""
    pool = MongoSessions(mongo_uri, DB, unique_name, tz_aware=True)
    await pool.connect()
    try:
        await pool.add({"session": {}})
        await daemon.collector.read_sums("p")
        for _ in range(2):
            late = await pool.get_session(next_use_delay=0.2)
            await asyncio.sleep(0.3)
            current = await pool.get_session(next_use_delay=0.2)
            assert late is not None and current is not None
            await pool.session_success(late)
            await asyncio.sleep(0.3)
        await daemon.collector.read_sums("p")
    finally:
        await pool.close()
    async with daemon.metrics_client() as http:
        samples = parse_metrics((await http.get("/metrics")).text)
    assert value(samples, "session_pool_lease_overruns_total", pool="p") == 2
