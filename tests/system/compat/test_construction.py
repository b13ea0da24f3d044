"""Constructing the client as the original's callers do, and the handles they use directly."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from pymongo import MongoClient

from exporter import InvalidInput, MongoSessions, OperationTimeout
from tests.system.compat.conftest import DB, NewPool

SyncClient = MongoClient[dict[str, Any]]


async def test_extra_keywords_of_the_original_constructor(mongo_uri: str, collection: str) -> None:
    """Original: `MongoSessions(url, db=..., collection=..., max_allowed_reconnect=5)` (half of all call sites)
    and `allow_reconnect=...` are accepted; positional `(url, db, collection)` too; `connect()` returns self.
    """
    mongo = await MongoSessions(mongo_uri, db=DB, collection=collection, max_allowed_reconnect=5).connect()
    assert mongo.max_allowed_reconnect == 5 and mongo.allow_reconnect is False
    await mongo.close()
    mongo = await MongoSessions(mongo_uri, DB, collection, max_allowed_reconnect=5, allow_reconnect=True).connect()
    assert mongo.allow_reconnect is True
    assert await mongo.count_active() == 0
    await mongo.close()
    with pytest.raises(InvalidInput, match="max_allowed_reconnect"):
        MongoSessions(mongo_uri, DB, collection, max_allowed_reconnect=-1)


@pytest.mark.parametrize("allow_reconnect", [False, True])
async def test_allow_reconnect_tries_once_more_after_a_network_timeout(
    mongo_uri: str, collection: str, sync_client: SyncClient, allow_reconnect: bool
) -> None:
    """Original: with `allow_reconnect`, an operation that hit a network timeout is run once more; without
    it, the timeout is raised. (The server is made to stall the first command past the timeout.)
    """
    app = f"compat-reconnect-{allow_reconnect}"
    mongo = MongoSessions(mongo_uri, DB, collection, allow_reconnect=allow_reconnect, timeout=0.5, appname=app)
    await mongo.connect()
    sync_client[DB][collection].insert_one({"active": True, "next_use": None})
    sync_client.admin.command(
        "configureFailPoint", "failCommand", mode={"times": 1},
        data={"failCommands": ["aggregate"], "blockConnection": True, "blockTimeMS": 1500, "appName": app},
    )  # fmt: skip
    try:
        if allow_reconnect:
            assert await mongo.count_active() == 1
        else:
            with pytest.raises(OperationTimeout) as info:
                await mongo.count_active()
            assert info.value.network
    finally:
        sync_client.admin.command("configureFailPoint", "failCommand", mode="off")
        await mongo.close()


async def test_no_collection_first_then_switch_collection(mongo_uri: str, raw: Any, collection: str) -> None:
    """Original (the old monitoring service): `MongoSessions(url, db=..., collection=None, ...)`, `connect()`,
    `await mongo.db.list_collection_names()`, then `switch_collection(name)` per collection and
    `aggregate_statistics()` on each.
    """
    raw.insert_many([{"active": True, "next_use": None}, {"active": False}])
    mongo = MongoSessions(mongo_uri, db=DB, collection=None, max_allowed_reconnect=5)
    await mongo.connect()
    try:
        assert mongo.sessions is None
        with pytest.raises(InvalidInput, match="switch_collection"):
            await mongo.count_active()
        mongo.projection = {"active": 1, "next_use": 1}
        assert collection in await mongo.db.list_collection_names()
        mongo.switch_collection(collection)
        assert mongo.sessions is not None and mongo.sessions.name == collection
        stats = await mongo.aggregate_statistics()
        assert stats["count_total"] == 2 and stats["count_active"] == 1 and stats["count_blocked"] == 1
    finally:
        await mongo.close()


async def test_db_and_sessions_handles_are_the_drivers(new_pool: NewPool, raw: Any) -> None:
    """Original: callers use `.db` and `.sessions` directly: `await mongo.sessions.find_one(...)`,
    `await mongo.sessions.count_documents(...)`, `mongo.sessions.find(...)`; times come back naive.
    """
    mongo = await new_pool()
    await mongo.add({"session": {"login": "a"}})
    assert mongo.sessions is not None
    doc = await mongo.sessions.find_one({"session.login": "a"})
    assert doc is not None and doc["active"] is True
    assert isinstance(doc["created"], datetime) and doc["created"].tzinfo is None
    assert await mongo.sessions.count_documents({"active": True}) == 1
    assert [d["session"] async for d in mongo.sessions.find({}, {"session": 1})] == [{"login": "a"}]
    assert (await mongo.db.command("ping"))["ok"] == 1
    assert mongo.db.name == DB and raw.count_documents({}) == 1


def test_constructed_outside_an_event_loop() -> None:
    """Original callers build the client at import time or in sync code, before any event loop runs; the
    client then works inside one (the members' clocks and the primary watch need no loop to be set up)."""
    mongo = MongoSessions("mongodb://127.0.0.1:9/", "db", "sessions", serverSelectionTimeoutMS=100)
    assert mongo.sessions is not None and mongo.db.name == "db"
