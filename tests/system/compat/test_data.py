"""What the original's callers store, read and pass: datetimes, positional calls, ids and odd keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from bson import ObjectId

from exporter import InvalidInput, State
from tests.system.compat.conftest import Legacy, NewPool


async def test_datetimes_are_naive_as_stored_unless_asked(new_pool: NewPool, raw: Any) -> None:
    """Original: returned documents carry naive datetimes (the driver's default), nested ones included, so
    callers do `datetime.now() - session["last_use"]`. With `tz_aware=True`, aware ones, as in PyMongo.
    """
    mongo = await new_pool(projection=None)
    when = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    await mongo.add({"session": {"cookies": [{"expires": when}], "issued": when}})
    got = await mongo.get_session()
    assert got is not None
    assert got["last_use"] is None and got["created"].tzinfo is None
    assert got["session"]["issued"] == when.replace(tzinfo=None)
    assert got["session"]["cookies"][0]["expires"] == when.replace(tzinfo=None)
    doc = await mongo.get(got["_id"])
    assert isinstance(datetime.now() - doc["last_use"], timedelta)
    assert doc["hold"]["until"].tzinfo is None and doc["hold"]["until"] == doc["next_use"]
    aware = await new_pool(tz_aware=True, projection=None)
    again = await aware.get(got["_id"])
    assert again["session"]["issued"] == when and again["last_use"].tzinfo is not None


async def test_a_moscow_pool_reads_and_writes_moscow_wall_times(new_pool: NewPool, legacy: Legacy, raw: Any) -> None:
    """Original on a machine in Europe/Moscow: stored times are Moscow wall times. With
    `stored_timezone="Europe/Moscow"` the drop-in writes the same frame and hands the same naive values back,
    so `datetime.now() - session["last_use"]` stays right on that machine; aware reads are true UTC.
    """
    moscow = ZoneInfo("Europe/Moscow")
    old = legacy(zone="Europe/Moscow")
    await old.add({"session": {"n": 1}})
    mongo = await new_pool(stored_timezone="Europe/Moscow", projection=None)
    got = await mongo.get_session()
    assert got is not None
    doc = await mongo.get(got["_id"])
    local_now = datetime.now(moscow).replace(tzinfo=None)
    assert abs(doc["last_use"] - local_now) < timedelta(seconds=30)
    assert abs(doc["created"] - local_now) < timedelta(seconds=30)
    stored = raw.find_one({"_id": got["_id"]})
    assert abs(stored["last_use"].replace(tzinfo=None) - local_now) < timedelta(seconds=30)
    aware = await new_pool(stored_timezone="Europe/Moscow", tz_aware=True)
    true_now = datetime.now(UTC)
    assert abs((await aware.get(got["_id"]))["last_use"] - true_now) < timedelta(seconds=30)
    # session_update with an aware datetime stores it in the pool's frame.
    await mongo.session_update(got, {"session.checked": true_now})
    assert abs(raw.find_one({"_id": got["_id"]})["session"]["checked"].replace(tzinfo=None) - local_now) < timedelta(
        seconds=30
    )


async def test_positional_and_empty_arguments(new_pool: NewPool, raw: Any) -> None:
    """Original: `get_session(0, next_use_delay=-1)` (take without holding, count unchanged),
    `session_lock(s, {})` (the default period), `session_success(s, 1)`, and the driver wrappers called
    positionally: `count_documents({...})`, `update_one(filter, update)`, `find({...})`.
    """
    mongo = await new_pool()
    (sid,) = [(await mongo.add({"session": {}})).inserted_id]
    peek = await mongo.get_session(0, next_use_delay=-1)
    assert peek is not None and peek["_id"] == sid
    doc = raw.find_one({"_id": sid})
    assert doc["count_use"] == 0 and doc["next_use"] < doc["last_use"]  # not held: in the past
    assert await mongo.count_active() == 1
    await mongo.session_lock(peek, {})
    doc = raw.find_one({"_id": sid})
    assert timedelta(minutes=10) <= doc["next_use"] - doc["last_use"] <= timedelta(minutes=10, seconds=5)
    await mongo.session_success(peek, 1)
    assert raw.find_one({"_id": sid})["count_success"] == 1
    assert await mongo.count_documents({"count_success": 1}) == 1
    assert (await mongo.update_one({"_id": sid}, {"$set": {"tag": "x"}})).modified_count == 1
    assert [d["tag"] for d in await mongo.find({"tag": "x"})] == ["x"]


async def test_cookie_jars_and_ids_that_are_not_object_ids(new_pool: NewPool, raw: Any) -> None:
    """Original: stores whatever it is given: cookie jars with keys like `.ASPXAUTH` or `$Version`, and
    `_id` values that are strings or integers, which every single-session method then finds.
    """
    mongo = await new_pool()
    jar = {".ASPXAUTH": "token", "$Version": "1", "a.b": 2}
    await mongo.add({"_id": "acc-42", "session": {"cookies": jar}})
    await mongo.add({"_id": 42, "session": {}})
    assert raw.find_one({"_id": "acc-42"})["session"]["cookies"] == jar
    await mongo.session_update({"_id": "acc-42"}, {"session.cookies.$Version": "2"})
    assert raw.find_one({"_id": "acc-42"})["session"]["cookies"]["$Version"] == "2"
    await mongo.session_lock({"_id": 42})
    await mongo.session_block("acc-42")
    assert (await mongo.get(42))["hold"]["kind"] == "lock"
    assert mongo.state_of(await mongo.get("acc-42"), datetime.now(UTC)) is State.BLOCKED
    assert (await mongo.session_delete(42)).deleted_count == 1
    # A 24-hex string matches both itself and its ObjectId.
    hexid = "64b0f1c2a1b2c3d4e5f60718"
    await mongo.add({"_id": ObjectId(hexid), "session": {}})
    await mongo.session_inactive(hexid)
    assert raw.find_one({"_id": ObjectId(hexid)})["active"] is False
    # Only what could act as a query in the filter is refused.
    for smuggled in ({"_id": {"$ne": None}}, {"_id": {"$regex": "."}}, {"_id": ["acc-42"]}):
        with pytest.raises(InvalidInput, match="malformed session id"):
            await mongo.session_inactive(smuggled)
    assert raw.count_documents({"active": False}) == 1


async def test_documents_without_active_are_never_handed_out(new_pool: NewPool, raw: Any) -> None:
    """Original: the default filter is `{active: true}`, so a document without `active` (or with `null`,
    `1`, `"yes"`) is never handed out nor counted active; the daemon reports it as inactive.
    """
    mongo = await new_pool()
    raw.insert_many([{"session": {}, "next_use": None}, {"active": None}, {"active": 1}, {"active": "yes"}])
    assert await mongo.get_session() is None and await mongo.count_active() == 0
    stats = await mongo.aggregate_statistics()
    assert stats.states[State.INACTIVE] == 4 and stats["count_blocked"] == 0
