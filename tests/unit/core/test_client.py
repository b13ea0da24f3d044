"""Tests of the client core against a real mongod."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from bson import ObjectId
from bson.regex import Regex
from pymongo import MongoClient, monitoring

from exporter import (
    STATES,
    CollectionMissing,
    InvalidInput,
    MongoSessions,
    OperationFailed,
    OperationTimeout,
    SessionNotFound,
    State,
    TransactionsUnsupported,
    Unavailable,
)
from exporter.mongod import Mongod
from tests.conftest import PoolFactory

SyncClient = MongoClient[dict[str, Any]]


def raw(sync_client: SyncClient, pool: MongoSessions) -> Any:
    """The same collection through plain synchronous PyMongo."""
    return sync_client[pool.collection.database.name][pool.collection.name]


def server_now(sync_client: SyncClient) -> datetime:
    now: datetime = sync_client.admin.command("hello")["localTime"]
    return now if now.tzinfo else now.replace(tzinfo=UTC)


async def fill(pool: MongoSessions, n: int) -> list[ObjectId]:
    return [(await pool.add({"session": {"login": f"user{i}"}})).inserted_id for i in range(n)]


# --- construction and configuration ---------------------------------------------------------


async def test_bad_options_are_rejected(mongo_uri: str) -> None:
    with pytest.raises(InvalidInput, match="w=0"):
        MongoSessions(mongo_uri, "db", "c", w=0)
    with pytest.raises(InvalidInput, match="IANA"):
        MongoSessions(mongo_uri, "db", "c", stored_timezone="Mars/Olympus")
    with pytest.raises(InvalidInput, match="timeout"):
        MongoSessions(mongo_uri, "db", "c", timeout=-1)
    with pytest.raises(InvalidInput, match="distinct"):
        MongoSessions(mongo_uri, "db", "c", next_use="active")
    with pytest.raises(InvalidInput, match="collection"):
        MongoSessions(mongo_uri, "db", "bad$name")
    with pytest.raises(InvalidInput, match="database"):
        MongoSessions(mongo_uri, None, "c")


async def test_write_concern_is_applied(pool_factory: PoolFactory) -> None:
    pool = await pool_factory(w="majority", j=True, wtimeout=5000)
    wc = pool.collection.write_concern
    assert wc.document == {"w": "majority", "j": True, "wtimeout": 5000}
    assert wc.acknowledged
    await pool.add({"session": {}})
    default = await pool_factory()
    assert default.collection.write_concern.acknowledged


async def test_async_with_connects_and_detects_replica_set(mongo_uri: str, unique_name: str) -> None:
    async with MongoSessions(mongo_uri, "spe_test", unique_name) as pool:
        assert pool.topology == "replica_set"
        assert pool.supports_transactions
        await pool.add({"session": {"a": 1}})
        assert await pool.count_active() == 1


async def test_connect_creates_indexes_idempotently_and_keeps_others(
    pool_factory: PoolFactory, sync_client: SyncClient, unique_name: str
) -> None:
    coll = sync_client["spe_test"][unique_name]
    coll.create_index("last_use")  # the original library's index
    coll.create_index([("session.login", 1)], unique=True)  # someone else's
    pool = await pool_factory(unique_name)
    await pool.connect()
    await pool.connect()
    names = set(coll.index_information())
    assert {"_id_", "last_use_1", "session.login_1"} <= names
    assert "active_1_last_use_1_next_use_1__id_1" in names
    assert "active_1_next_use_1_hold.kind_1_hold.until_1__id_1" in names
    assert await pool.missing_indexes() == []
    coll.drop_index("active_1_last_use_1_next_use_1__id_1")  # what the original's connect() does to foreign indexes
    assert await pool.missing_indexes() == [[("active", 1), ("last_use", 1), ("next_use", 1), ("_id", 1)]]
    info = await pool.index_information()
    assert info.keys() == set(coll.index_information())


async def test_a_missing_collection_is_never_created_by_accident(
    mongo_uri: str, sync_client: SyncClient, unique_name: str
) -> None:
    """connect() and ensure_indexes() build nothing on a collection that does not exist (that would create
    it, and a mistyped name would look like a healthy empty pool); the first add() creates it, with its indexes."""
    database = sync_client["spe_test"]
    database.create_collection(unique_name + "_telegram")
    pool = MongoSessions(mongo_uri, "spe_test", unique_name + "_telegarm", tz_aware=True)
    try:
        await pool.connect()
        assert unique_name + "_telegarm" not in database.list_collection_names()
        assert not await pool.collection_exists()
        with pytest.raises(CollectionMissing) as missing:
            await pool.ensure_indexes()
        assert missing.value.status == 404 and missing.value.close == (unique_name + "_telegram",)
        assert missing.value.message == (
            f"collection spe_test.{unique_name}_telegarm does not exist (did you mean {unique_name}_telegram?)"
        )
        with pytest.raises(CollectionMissing):
            await pool.missing_indexes()
        # Reads and statistics of a missing collection answer as the original did: nothing there.
        assert await pool.count_active() == 0 and await pool.get_session() is None
        assert (await pool.aggregate_statistics()).total == 0
        assert unique_name + "_telegarm" not in database.list_collection_names()
        await pool.add({"session": {"phone": "+1"}})  # adding the first session is how a pool is created
        assert await pool.collection_exists()
        assert "active_1_last_use_1_next_use_1__id_1" in database[unique_name + "_telegarm"].index_information()
    finally:
        await pool.close()


class HandOuts(monitoring.CommandListener):
    """The findAndModify commands a client sends (the hand-outs of get_session), as sent."""

    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "findAndModify":
            self.commands.append(dict(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_get_session_uses_the_lru_index(pool_factory: PoolFactory, sync_client: SyncClient) -> None:
    """The filter and sort get_session really sends are answered from the LRU index, a few keys read."""
    handouts = HandOuts()
    pool = await pool_factory(event_listeners=[handouts])
    await fill(pool, 200)
    assert await pool.get_session() is not None
    sent = handouts.commands[-1]
    assert dict(sent["sort"]) == {"last_use": 1}
    explain = sync_client["spe_test"].command(
        "explain",
        {"find": pool.collection.name, "filter": sent["query"], "sort": sent["sort"], "limit": 1},
        verbosity="executionStats",
    )
    stats = explain["executionStats"]
    assert stats["totalKeysExamined"] <= 5, stats
    assert "active_1_last_use_1_next_use_1__id_1" in str(explain["queryPlanner"]["winningPlan"])


async def test_renamed_fields_carry_everywhere(pool_factory: PoolFactory, sync_client: SyncClient) -> None:
    pool = await pool_factory(active="enabled", next_use="free_at", last_use="used_at", hold="why")
    assert pool.default_filter == {"enabled": True}
    ids = await fill(pool, 3)
    doc = raw(sync_client, pool).find_one({"_id": ids[0]})
    assert doc is not None and doc["enabled"] is True and "active" not in doc
    await pool.session_inactive({"_id": ids[0]})
    await pool.session_lock({"_id": ids[1]})
    taken = await pool.get_session()
    assert taken is not None and taken["_id"] == ids[2]
    doc = raw(sync_client, pool).find_one({"_id": ids[1]})
    assert doc is not None and doc["why"]["kind"] == "lock" and doc["free_at"] > server_now(sync_client)
    assert doc["why"]["until"] == doc["free_at"]
    stats = await pool.aggregate_statistics()
    assert stats.states[State.INACTIVE] == 1
    assert stats.states[State.LOCKED] == 1
    assert stats.states[State.IN_USE] == 1
    assert await pool.count_active() == 0


async def test_custom_default_filter_and_projection(pool_factory: PoolFactory) -> None:
    pool = await pool_factory(default_filter={"kind": "phone"}, projection={"session": 1, "kind": 1})
    await pool.add({"kind": "web", "session": {"n": 1}})
    phone = (await pool.add({"kind": "phone", "session": {"n": 2}})).inserted_id
    assert await pool.count_active() == 1
    got = await pool.get_session()
    assert got is not None and got["_id"] == phone and set(got) == {"_id", "session", "kind"}
    assert [d["kind"] for d in await pool.get_sessions()] == ["phone"]


# --- the original library's methods and state transitions ------------------------------------


async def test_add_writes_the_original_document_shape(pool_factory: PoolFactory, sync_client: SyncClient) -> None:
    pool = await pool_factory()
    result = await pool.add({"session": {"login": "a", "password": "p"}, "tag": 1})
    doc = raw(sync_client, pool).find_one({"_id": result.inserted_id})
    assert doc is not None
    assert doc["active"] is True and doc["count_use"] == 0 and doc["count_success"] == 0
    assert doc["last_use"] is None and doc["next_use"] is None
    assert doc["session"] == {"login": "a", "password": "p"} and doc["tag"] == 1
    assert abs(doc["created"] - server_now(sync_client)) < timedelta(seconds=30)
    assert doc["created"].tzinfo is not None


async def test_every_state_transition(pool_factory: PoolFactory, sync_client: SyncClient) -> None:
    pool = await pool_factory(next_use_delay=30)
    (sid,) = await fill(pool, 1)

    async def state() -> State:
        return pool.state_of(await pool.get(sid), await pool.server_time())

    assert await state() is State.ACTIVE
    got = await pool.get_session()
    assert got is not None and got["_id"] == sid and got["session"] == {"login": "user0"}
    assert await state() is State.IN_USE
    assert await pool.get_session() is None  # held: nobody else gets it
    await pool.session_success(got, count_success=2)
    assert await state() is State.IN_USE
    await pool.session_lock(got)
    assert await state() is State.LOCKED
    doc = await pool.get(sid)
    remaining = doc["next_use"] - await pool.server_time()
    assert timedelta(minutes=9) < remaining <= timedelta(minutes=10)
    await pool.session_block(got, {"hours": 10})
    assert await state() is State.BLOCKED
    remaining = (await pool.get(sid))["next_use"] - await pool.server_time()
    assert timedelta(hours=9, minutes=59) < remaining <= timedelta(hours=10)
    await pool.session_unlock(got)
    assert await state() is State.ACTIVE
    await pool.session_inactive(got)
    assert await state() is State.INACTIVE
    assert await pool.get_session() is None
    await pool.session_lock(got)
    assert await state() is State.INACTIVE  # inactive wins over a hold
    await pool.session_activate(got)
    assert await state() is State.ACTIVE
    doc = raw(sync_client, pool).find_one({"_id": sid})
    assert doc is not None
    assert doc["count_use"] == 1 and doc["count_success"] == 2 and doc["active"] is True
    assert doc["next_use"] is None and "hold" not in doc


async def test_block_default_and_lock_period(pool_factory: PoolFactory) -> None:
    pool = await pool_factory(lock_time={"minutes": 3}, block_time=3600)
    (sid,) = await fill(pool, 1)
    await pool.session_block(sid)
    left = (await pool.get(sid))["next_use"] - await pool.server_time()
    assert timedelta(minutes=59) < left <= timedelta(hours=1)
    await pool.session_lock(str(sid))
    left = (await pool.get(sid))["next_use"] - await pool.server_time()
    assert timedelta(minutes=2) < left <= timedelta(minutes=3)


async def test_get_session_order_counts_and_delay(pool_factory: PoolFactory, sync_client: SyncClient) -> None:
    pool = await pool_factory()
    ids = await fill(pool, 3)
    coll = raw(sync_client, pool)
    now = server_now(sync_client)
    coll.update_one({"_id": ids[0]}, {"$set": {"last_use": now - timedelta(minutes=1)}})
    coll.update_one({"_id": ids[1]}, {"$set": {"last_use": now - timedelta(minutes=5)}})
    # ids[2] was never used (last_use null): it goes first, then the oldest use.
    order = [(await pool.get_session(count_use=3, next_use_delay=60))["_id"] for _ in range(3)]  # type: ignore[index]
    assert order == [ids[2], ids[1], ids[0]]
    doc = coll.find_one({"_id": ids[1]})
    assert doc is not None and doc["count_use"] == 3
    # The marker: a use hold until next_use, and the hand-out's lease with its last_use.
    assert doc["hold"] == {
        "kind": "use",
        "until": doc["next_use"],
        "lease": doc["hold"]["lease"],
        "taken": doc["last_use"],
    }
    assert isinstance(doc["hold"]["lease"], ObjectId)
    assert timedelta(seconds=55) < doc["next_use"] - doc["last_use"] <= timedelta(seconds=60)


async def test_64_concurrent_get_session_never_duplicate(pool_factory: PoolFactory) -> None:
    pool = await pool_factory(next_use_delay=120)
    ids = await fill(pool, 48)
    results = await asyncio.gather(*(pool.get_session() for _ in range(64)))
    taken = [r["_id"] for r in results if r is not None]
    assert len(taken) == 48 and len(set(taken)) == 48 and set(taken) == set(ids)
    assert results.count(None) == 16
    assert await pool.get_session() is None


async def test_session_update_and_delete(pool_factory: PoolFactory, sync_client: SyncClient) -> None:
    pool = await pool_factory()
    (sid,) = await fill(pool, 1)
    await pool.session_update({"_id": sid}, {"session.phone": "+7900", "note": "x"}, unset_payload=["session.login"])
    doc = raw(sync_client, pool).find_one({"_id": sid})
    assert doc is not None and doc["session"] == {"phone": "+7900"} and doc["note"] == "x"
    await pool.session_update(sid, {}, unset_payload={"note": ""})
    doc = raw(sync_client, pool).find_one({"_id": sid})
    assert doc is not None and "note" not in doc
    result = await pool.session_delete(sid)
    assert result.deleted_count == 1
    with pytest.raises(SessionNotFound) as info:
        await pool.get(sid)
    assert info.value.session_id == sid


async def test_get_sessions_excludes_inactive(pool_factory: PoolFactory) -> None:
    pool = await pool_factory()
    ids = await fill(pool, 3)
    await pool.session_inactive(ids[0])
    sessions = await pool.get_sessions()
    assert {s["_id"] for s in sessions} == set(ids[1:])
    assert all(set(s) == {"_id", "session"} for s in sessions)


async def test_operation_wrappers(pool_factory: PoolFactory) -> None:
    pool = await pool_factory()
    inserted = await pool.insert_one(document={"active": True, "x": 1})
    assert await pool.count_documents(filter={"x": 1}) == 1
    assert (await pool.update_one(filter={"x": 1}, update={"$set": {"x": 2}})).modified_count == 1
    doc = await pool.find_one_and_update(filter={"x": 2}, update={"$set": {"x": 3}}, return_document=True)
    assert doc is not None and doc["x"] == 3
    name = await pool.create_index(keys=[("x", 1)])
    assert name in await pool.index_information()
    await pool.drop_index(index_or_name=name)
    assert name not in await pool.index_information()
    assert (await pool.delete_one(filter={"_id": inserted.inserted_id})).deleted_count == 1
    with pytest.raises(OperationFailed) as info:
        await pool.drop_index(index_or_name="no_such_index")
    assert info.value.code == 27 and "index not found" in info.value.message.lower()


async def test_switch_collection(pool_factory: PoolFactory, unique_name: str) -> None:
    pool = await pool_factory()
    await fill(pool, 2)
    pool.switch_collection(unique_name)
    assert pool.collection.name == unique_name
    assert await pool.count_active() == 0
    await pool.add({"session": {}})
    assert await pool.count_active() == 1


# --- statistics --------------------------------------------------------------------------------


async def test_aggregate_statistics_matches_independent_counts(
    pool_factory: PoolFactory, sync_client: SyncClient
) -> None:
    pool = await pool_factory(next_use_delay=30)
    ids = await fill(pool, 20)
    coll = raw(sync_client, pool)
    for sid in ids[:3]:
        await pool.session_inactive(sid)
    for sid in ids[3:5]:
        await pool.session_block(sid)
    for sid in ids[5:9]:
        await pool.session_lock(sid, {"minutes": 1})
    for _ in range(5):
        got = await pool.get_session()
        assert got is not None
        await pool.session_success(got, count_success=1)
    now = server_now(sync_client)
    coll.update_one(
        {"_id": ids[19]}, {"$set": {"last_use": now - timedelta(hours=3), "next_use": now - timedelta(hours=2)}}
    )
    # Independent view: plain PyMongo queries with the documented rules.
    # Every hold here was written by this library, so every marker is valid.
    expected = {
        State.INACTIVE: coll.count_documents({"active": False}),
        State.BLOCKED: coll.count_documents({"active": True, "hold.kind": "block", "next_use": {"$gt": now}}),
        State.LOCKED: coll.count_documents({"active": True, "hold.kind": "lock", "next_use": {"$gt": now}}),
        State.IN_USE: coll.count_documents({"active": True, "hold.kind": "use", "next_use": {"$gt": now}}),
    }
    expected[State.ACTIVE] = coll.count_documents({}) - sum(expected.values())
    stats = await pool.aggregate_statistics()
    assert stats.snapshot is True
    assert stats.states == expected
    assert expected == {State.INACTIVE: 3, State.BLOCKED: 2, State.LOCKED: 4, State.IN_USE: 5, State.ACTIVE: 6}
    assert stats.total == 20 == sum(stats.states.values())
    assert stats.uses == sum(d["count_use"] for d in coll.find()) == 5
    assert stats.successes == 5
    locks = [d["next_use"] for d in coll.find({"hold.kind": {"$in": ["lock", "block"]}, "active": True})]
    assert stats.next_unlock == min(locks)
    assert stats.oldest_active_last_use == now - timedelta(hours=3)
    assert abs(stats.time - now) < timedelta(seconds=30)
    assert await pool.count_active() == 6
    assert dict(stats) == {"count_active": 6, "count_blocked": 3, "count_locked": 11, "count_total": 20}
    assert set(stats.to_dict()["states"]) == {s.value for s in STATES}
    # state_filter (used by the admin bulk unlock) selects exactly the same sessions.
    for state in STATES:
        assert coll.count_documents(pool.state_filter(state, stats.time)) == stats.states[state], state


async def test_statistics_of_an_empty_pool_has_every_state(pool_factory: PoolFactory) -> None:
    pool = await pool_factory()
    stats = await pool.aggregate_statistics()
    assert stats.states == dict.fromkeys(STATES, 0)
    assert stats.total == 0 and stats.uses == 0 and stats.next_unlock is None
    assert stats.oldest_active_last_use is None


async def test_legacy_documents_classify_by_remaining_time(pool_factory: PoolFactory, sync_client: SyncClient) -> None:
    pool = await pool_factory()
    coll = raw(sync_client, pool)
    now = server_now(sync_client)
    base = {"count_use": 1, "count_success": 0, "session": {}, "last_use": now - timedelta(minutes=1)}
    coll.insert_many(
        [
            {**base, "active": True, "next_use": now + timedelta(hours=8)},  # original block
            {**base, "active": True, "next_use": now + timedelta(minutes=10) - timedelta(seconds=5)},  # lock
            {**base, "active": True, "next_use": now + timedelta(seconds=20)},  # pick-up hold
            {**base, "active": True, "next_use": now - timedelta(seconds=20)},
            {**base, "next_use": None},  # no active field at all: the original never hands it out
            {**base, "active": False, "next_use": None},
        ]
    )
    stats = await pool.aggregate_statistics()
    # The pick-up hold (20 s) is no unlock: the earliest unlock is the legacy lock's end.
    assert stats.next_unlock == now + timedelta(minutes=10) - timedelta(seconds=5)
    assert stats.states == {
        State.BLOCKED: 1, State.LOCKED: 1, State.IN_USE: 1, State.ACTIVE: 1, State.INACTIVE: 2,
    }  # fmt: skip
    assert await pool.count_active() == 1


async def test_stored_timezone_reads_naive_local_times(pool_factory: PoolFactory, sync_client: SyncClient) -> None:
    zone = ZoneInfo("Europe/Moscow")  # UTC+3, no DST
    pool = await pool_factory(stored_timezone="Europe/Moscow")
    coll = raw(sync_client, pool)
    now = server_now(sync_client)

    def local(when: datetime) -> datetime:
        """What the original library stored: local wall time labelled as UTC."""
        return when.astimezone(zone).replace(tzinfo=UTC)

    # Locked for 5 more minutes in real time; read as UTC it would look 3 h 5 min away (blocked).
    locked = coll.insert_one(
        {"active": True, "next_use": local(now + timedelta(minutes=5)), "last_use": local(now)}
    ).inserted_id
    # Free since 1 hour in real time; read as UTC it would look held for 2 more hours.
    free = coll.insert_one(
        {"active": True, "next_use": local(now - timedelta(hours=1)), "last_use": local(now - timedelta(hours=2))}
    ).inserted_id
    stats = await pool.aggregate_statistics()
    assert stats.states[State.LOCKED] == 1 and stats.states[State.ACTIVE] == 1
    assert stats.oldest_active_last_use is not None
    assert abs(stats.oldest_active_last_use - (now - timedelta(hours=2))) < timedelta(seconds=1)
    got = await pool.get_session(next_use_delay=10)
    assert got is not None and got["_id"] == free
    doc = await pool.get(free)
    assert abs(doc["last_use"] - server_now(sync_client)) < timedelta(seconds=30)
    stored = coll.find_one({"_id": free})
    assert stored is not None
    assert abs(stored["last_use"] - local(server_now(sync_client))) < timedelta(seconds=30)
    assert (await pool.get(locked))["next_use"] > now
    utc_pool = await pool_factory(pool.collection.name)
    assert (await utc_pool.aggregate_statistics()).states[State.BLOCKED] == 1


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "session",
    [
        {"_id": {"$ne": None}},
        {"_id": {"$gt": ""}},
        {"_id": {"a": {"$where": "1"}}},
        {"no_id": 1},
        ["x"],
        {"_id": ["x"]},
        re.compile(".*"),
        {"_id": Regex(".*")},
    ],
)
async def test_query_operators_never_reach_a_filter(
    pool_factory: PoolFactory, sync_client: SyncClient, session: Any
) -> None:
    """An id that could act as a query (operators, patterns, arrays) is refused before the database."""
    pool = await pool_factory()
    await fill(pool, 2)
    before = list(raw(sync_client, pool).find())
    for call in (pool.session_lock, pool.session_inactive, pool.session_delete, pool.session_unlock, pool.get):
        with pytest.raises(InvalidInput, match=r"malformed session id|no '_id'"):
            await call(session)
    assert list(raw(sync_client, pool).find()) == before


@pytest.mark.parametrize(
    ("payload", "unset"),
    [
        ({"$set": {"active": False}}, None),
        ({"": 1}, None),
        ({"a..b": 1}, None),
        ({"_id": "x"}, None),
        ({"ok": 1}, ["$unset"]),
        ({"ok": 1}, ["ok"]),
        ({}, None),
        ("not a dict", None),
    ],
)
async def test_bad_update_payloads_are_rejected(
    pool_factory: PoolFactory, sync_client: SyncClient, payload: Any, unset: Any
) -> None:
    pool = await pool_factory()
    (sid,) = await fill(pool, 1)
    before = raw(sync_client, pool).find_one({"_id": sid})
    with pytest.raises(InvalidInput):
        await pool.session_update(sid, payload, unset)
    assert raw(sync_client, pool).find_one({"_id": sid}) == before


async def test_bad_numbers_and_periods_are_rejected(pool_factory: PoolFactory) -> None:
    pool = await pool_factory()
    (sid,) = await fill(pool, 1)
    with pytest.raises(InvalidInput, match="unknown unit"):
        await pool.session_lock(sid, {"years": 1})
    with pytest.raises(InvalidInput, match="negative"):
        await pool.session_block(sid, {"hours": -5})
    with pytest.raises(InvalidInput, match="count_use"):
        await pool.get_session(count_use=-1)
    with pytest.raises(InvalidInput, match="next_use_delay"):
        await pool.get_session(next_use_delay=float("nan"))
    with pytest.raises(InvalidInput, match="count_success"):
        await pool.session_success(sid, count_success="1")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="data must be a dict"):
        await pool.add([("session", 1)])  # type: ignore[arg-type]
    assert pool.state_of(await pool.get(sid), await pool.server_time()) is State.ACTIVE


# --- errors from the server ----------------------------------------------------------------------


async def test_timeout_carries_the_driver_message(pool_factory: PoolFactory, sync_client: SyncClient) -> None:
    pool = await pool_factory(timeout=0.5)
    await fill(pool, 1)
    sync_client.admin.command(
        "configureFailPoint", "failCommand",
        mode={"times": 1},
        data={"failCommands": ["aggregate"], "blockConnection": True, "blockTimeMS": 1500,
              "appName": "spe-timeout"},
    )  # fmt: skip
    slow = await pool_factory(pool.collection.name, timeout=0.5, appname="spe-timeout")
    try:
        with pytest.raises(OperationTimeout) as info:
            await slow.count_active()
        assert info.value.timeout == 0.5 and info.value.operation == "count_active"
        assert "timed out" in info.value.message
    finally:
        sync_client.admin.command("configureFailPoint", "failCommand", mode="off")
    assert await pool.count_active() == 1


async def test_server_error_becomes_operation_failed(pool_factory: PoolFactory, sync_client: SyncClient) -> None:
    pool = await pool_factory(appname="spe-fail")
    (sid,) = await fill(pool, 1)
    sync_client.admin.command(
        "configureFailPoint", "failCommand",
        mode={"times": 1},
        data={"failCommands": ["update"], "errorCode": 2, "errmsg": "injected failure", "appName": "spe-fail"},
    )  # fmt: skip
    try:
        with pytest.raises(OperationFailed) as info:
            await pool.session_lock(sid)
    finally:
        sync_client.admin.command("configureFailPoint", "failCommand", mode="off")
    # The server's code, its name and its wording; quoted values are left out (they may be stored data).
    assert info.value.code == 2 and "BadValue (2): Failing command via" in info.value.message
    assert info.value.operation == "session_lock"


async def test_stopped_server_is_unavailable_then_recovers(mongod_factory: Callable[..., Mongod]) -> None:
    server = mongod_factory()
    pool = MongoSessions(server.uri, "db", "c", timeout=2, serverSelectionTimeoutMS=1000)
    try:
        await pool.connect()
        await pool.add({"session": {}})
        server.stop()
        with pytest.raises(Unavailable) as info:
            await pool.count_active()
        assert info.value.operation == "count_active" and "MongoDB" in info.value.message
        with pytest.raises(Unavailable) as again:
            await pool.get_session()
        assert again.value.operation == "get_session" and "unreachable" in again.value.message
        server.start()
        assert await pool.count_active() == 1
    finally:
        await pool.close()


# --- transactions ----------------------------------------------------------------------------


async def test_transaction_commits_together(pool_factory: PoolFactory, sync_client: SyncClient) -> None:
    pool = await pool_factory()
    ids = await fill(pool, 2)
    async with pool.transaction() as txn:
        assert txn.atomic and txn.mode == "transaction"
        await pool.session_inactive(ids[0], db_session=txn)
        await pool.session_block(ids[1], db_session=txn)
        # Not visible outside the transaction before commit.
        assert raw(sync_client, pool).count_documents({"active": False}) == 0
    assert raw(sync_client, pool).count_documents({"active": False}) == 1
    assert raw(sync_client, pool).count_documents({"hold.kind": "block"}) == 1


async def test_aborted_transaction_leaves_nothing(pool_factory: PoolFactory, sync_client: SyncClient) -> None:
    pool = await pool_factory()
    ids = await fill(pool, 2)
    before = list(raw(sync_client, pool).find())
    with pytest.raises(RuntimeError, match="boom"):
        async with pool.transaction() as txn:
            await pool.session_inactive(ids[0], db_session=txn)
            await pool.add({"session": {"new": True}}, db_session=txn)
            await pool.session_delete(ids[1], db_session=txn.db_session)
            raise RuntimeError("boom")
    assert list(raw(sync_client, pool).find()) == before


async def test_standalone_refuses_or_falls_back(mongod_factory: Callable[..., Mongod]) -> None:
    server = mongod_factory(replica_set=None)
    strict = MongoSessions(server.uri, "db", "c")
    loose = MongoSessions(server.uri, "db", "c", transactions="fallback")
    try:
        await strict.connect()
        assert strict.topology == "standalone" and not strict.supports_transactions
        with pytest.raises(TransactionsUnsupported, match="standalone"):
            async with strict.transaction():
                pass
        async with loose.transaction() as txn:
            assert not txn.atomic and txn.mode == "no-transaction"
            await loose.add({"session": {}}, db_session=txn)
        assert await loose.count_active() == 1
        stats = await loose.aggregate_statistics()
        assert stats.snapshot is False and stats.states[State.ACTIVE] == 1
    finally:
        await strict.close()
        await loose.close()
