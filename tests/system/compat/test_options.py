"""Options set after construction, subclasses overriding properties and the original's filter hooks."""

from __future__ import annotations

import asyncio
import types
from datetime import timedelta
from typing import Any

import pytest

from exporter import InvalidInput, MongoSessions, State
from tests.system.compat.conftest import NewPool


async def fill(mongo: MongoSessions, n: int, **extra: Any) -> list[Any]:
    """n sessions added through the client."""
    return [(await mongo.add({"session": {"n": i}, **extra})).inserted_id for i in range(n)]


async def test_setters_of_the_original(new_pool: NewPool, raw: Any) -> None:
    """Original (MongoFields setters): `mongo.default_filter = {...}`, `mongo.projection = {...}` or `None`
    (every field), `mongo.next_use_delay = 45` (negative: 1), `lock_time`/`block_time` as period dicts
    (read back as timedelta), and each field name.
    """
    mongo = await new_pool()
    await fill(mongo, 2, kind="web")
    (phone,) = await fill(mongo, 1, kind="phone")
    mongo.default_filter = {"active": True, "kind": "phone"}
    mongo.projection = {"kind": 1}
    assert await mongo.count_active() == 1
    got = await mongo.get_session()
    assert got == {"_id": phone, "kind": "phone"}
    mongo.projection = None
    assert {"active", "count_use", "next_use", "session", "kind"} <= set((await mongo.get_sessions())[0])
    mongo.projection = {}
    assert "count_use" in (await mongo.get_sessions())[0]
    mongo.next_use_delay = 45
    assert mongo.next_use_delay == 45
    mongo.next_use_delay = -5
    assert mongo.next_use_delay == 1
    mongo.lock_time = {"minutes": 3}
    mongo.block_time = {"hours": 2}
    assert (mongo.lock_time, mongo.block_time) == (timedelta(minutes=3), timedelta(hours=2))
    mongo.default_filter = {"active": True}
    mongo.next_use_delay = 45
    taken = await mongo.get_session()
    assert taken is not None
    doc = raw.find_one({"_id": taken["_id"]})
    assert timedelta(seconds=44) < doc["next_use"] - doc["last_use"] <= timedelta(seconds=45)
    await mongo.session_lock(taken)
    doc = raw.find_one({"_id": taken["_id"]})
    assert timedelta(minutes=3) <= doc["next_use"] - doc["last_use"] <= timedelta(minutes=3, seconds=5)
    mongo.active = "enabled"
    assert mongo.default_filter == {"active": True}  # set explicitly above: kept as set
    mongo.default_filter = None  # back to the default, which follows a renamed field (the original's did not)
    assert mongo.default_filter == {"enabled": True}
    with pytest.raises(InvalidInput, match="distinct"):
        mongo.next_use = "enabled"


async def test_default_sort_is_what_get_session_uses(new_pool: NewPool) -> None:
    """Original: `mongo.default_sort = [(...), ...]` changes the order `get_session` hands sessions out in."""
    mongo = await new_pool()
    ids = [(await mongo.add({"session": {}, "rank": rank})).inserted_id for rank in (2, 3, 1)]
    mongo.default_sort = [("rank", -1)]
    order = [(await mongo.get_session(next_use_delay=60))["_id"] for _ in range(3)]  # type: ignore[index]
    assert order == [ids[1], ids[0], ids[2]]


async def test_subclass_hook_returning_nothing_hands_out_held_sessions(new_pool: NewPool) -> None:
    """Original: a subclass whose `_filter_exclude_lock` returns `{}` gets held sessions too from
    `get_session` (and counts them in `count_active`); the default hook never does.
    """

    class EveryoneWelcome(MongoSessions):
        def _filter_exclude_lock(self, offset: float = 0) -> dict[str, Any]:
            return {}

    plain = await new_pool()
    (sid,) = await fill(plain, 1)
    await plain.session_lock(sid)
    assert await plain.get_session() is None and await plain.count_active() == 0
    welcoming = await new_pool(EveryoneWelcome)
    got = await welcoming.get_session()
    assert got is not None and got["_id"] == sid
    assert await welcoming.count_active() == 1


async def test_offset_hooks_and_callers_building_their_own_filters(new_pool: NewPool) -> None:
    """Original (MyMongoSessions of the old monitoring service): hooks overridden with an offset, also set
    per instance with types.MethodType in switch_collection; callers call `_filter_exclude_lock(offset=10)`
    to build filters of their own. The statistics' count_locked/count_active follow the hooks.
    """
    mongo = await new_pool()
    ids = await fill(mongo, 3)
    await mongo.session_lock(ids[0], {"seconds": 30})
    await mongo.session_lock(ids[1], {"minutes": 5})
    base = await mongo.aggregate_statistics()
    assert (base["count_active"], base["count_locked"]) == (1, 2)
    # Holds ending within the next 60 s are not counted as locked (the service's grace).
    own = await mongo.count_documents({**mongo.default_filter, **mongo._filter_exclude_lock(offset=60)})
    assert own == 2

    class Graceful(MongoSessions):
        def _filter_exclude_lock(self, offset: float = 0) -> dict[str, Any]:
            return super()._filter_exclude_lock(60)

        def _filter_include_lock(self, offset: float = 0) -> dict[str, Any]:
            return super()._filter_include_lock(60)

    graceful = await new_pool(Graceful)
    stats = await graceful.aggregate_statistics()
    assert (stats["count_active"], stats["count_locked"], stats["count_total"]) == (2, 1, 3)
    assert stats.states[State.LOCKED] == 2  # the five states keep the documented rules
    assert await graceful.count_active() == 2
    # The same override bound to one instance, as the service's switch_collection did.
    per_instance = await new_pool()

    def exclude(self: MongoSessions, offset: float = 0) -> dict[str, Any]:
        return MongoSessions._filter_exclude_lock(self, 60)

    per_instance._filter_exclude_lock = types.MethodType(exclude, per_instance)  # type: ignore[method-assign]
    assert await per_instance.count_active() == 2
    got = await per_instance.get_session(next_use_delay=120)
    assert got is not None and got["_id"] in (ids[0], ids[2])


class Renamed(MongoSessions):
    """A subclass overriding field-name properties, as the original's MongoFields allowed."""

    # Read-only, as callers wrote them: mypy objects to narrowing a settable property, Python does not.
    @property  # type: ignore[misc]
    def next_use(self) -> str:
        return "free_at"

    @property  # type: ignore[misc]
    def last_use(self) -> str:
        return "used_at"

    @property  # type: ignore[misc]
    def active(self) -> str:
        return "enabled"


async def test_subclass_overriding_field_names_never_hands_out_twice(new_pool: NewPool, raw: Any) -> None:
    """Original: a subclass may override `next_use`, `last_use`, `active`; every query follows. 64 callers on
    48 sessions get 48 distinct ones, then None.
    """
    mongo = await new_pool(Renamed, next_use_delay=120)
    ids = await fill(mongo, 48)
    doc = raw.find_one({"_id": ids[0]})
    assert doc["enabled"] is True and "free_at" in doc and "active" not in doc and "next_use" not in doc
    results = await asyncio.gather(*(mongo.get_session() for _ in range(64)))
    taken = [r["_id"] for r in results if r is not None]
    assert sorted(map(str, taken)) == sorted(map(str, ids)) and results.count(None) == 16
    assert raw.count_documents({"free_at": {"$type": "date"}, "hold.until": {"$type": "date"}}) == 48
    assert {("enabled", 1), ("used_at", 1), ("free_at", 1)} <= {
        k for spec in raw.index_information().values() for k in spec["key"]
    }
    stats = await mongo.aggregate_statistics()
    assert stats.states[State.IN_USE] == 48 and stats["count_active"] == 0
