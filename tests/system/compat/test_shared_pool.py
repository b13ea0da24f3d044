"""A pool shared by workers of the original library and of this one: the daemon reports true states."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import MongoClient

from exporter import MongoSessions, State
from exporter.assembly import Daemon, build
from exporter.config import Config
from exporter.core import queries
from tests.system.compat.conftest import DB, Legacy, NewPool

SyncClient = MongoClient[dict[str, Any]]


@pytest.fixture
async def daemon(mongo_uri: str, collection: str) -> AsyncIterator[Daemon]:
    """The daemon's parts, watching the test's collection as pool `p` (refreshed by hand)."""
    config = Config.model_validate(
        {
            "mongodb": {"uri": mongo_uri, "timeout": 5},
            "pools": [{"name": "p", "database": DB, "collection": collection, "refresh_timeout": 5}],
        }
    )
    built = build(config)
    yield built
    await built.collector.stop()


async def states(daemon: Daemon) -> dict[State, int]:
    """The five state counts after one refresh."""
    pool = await daemon.collector.refresh("p")
    assert pool.up and pool.stats is not None, pool.last_error
    return pool.stats.states


async def test_an_original_lock_or_block_after_a_new_pick_up_is_reported_as_such(
    new_pool: NewPool, legacy: Legacy, daemon: Daemon
) -> None:
    """Original: `session_lock`/`session_block` write `next_use` only. After this library's `get_session` left
    a `use` marker, the marker no longer matches `next_use`, so the daemon reports the lock and the block
    (by time left), not `in_use`.
    """
    new, old = await new_pool(), legacy()
    ids = [(await new.add({"session": {"n": i}})).inserted_id for i in range(3)]
    for _ in ids:
        assert await new.get_session(next_use_delay=30) is not None
    assert (await states(daemon))[State.IN_USE] == 3
    await old.session_lock({"_id": ids[0]})
    await old.session_block({"_id": ids[1]})
    got = await states(daemon)
    assert (got[State.LOCKED], got[State.BLOCKED], got[State.IN_USE]) == (1, 1, 1)


async def test_an_original_success_after_a_new_lock_is_a_short_hold(
    new_pool: NewPool, legacy: Legacy, daemon: Daemon
) -> None:
    """Original: `session_success` sets `next_use` to now + 1 s. After this library locked the session (a
    `lock` marker), the 1 s hold is what counts: in use, not locked."""
    new, old = await new_pool(), legacy()
    (sid,) = [(await new.add({"session": {}})).inserted_id]
    await new.session_lock(sid)
    assert (await states(daemon))[State.LOCKED] == 1
    await old.session_success({"_id": sid})
    got = await states(daemon)
    assert (got[State.LOCKED], got[State.IN_USE]) == (0, 1)


async def test_session_update_of_next_use_makes_the_marker_stale(new_pool: NewPool, daemon: Daemon) -> None:
    """Original callers set `next_use` with `session_update` (e.g. to hold a session for a day). The old marker
    does not describe that hold: the document is classified by time left, and aware datetimes are stored
    in the pool's frame."""
    new = await new_pool()
    (sid,) = [(await new.add({"session": {}})).inserted_id]
    await new.session_lock(sid)
    await new.session_update(sid, {"next_use": datetime.now(UTC) + timedelta(days=1)})
    got = await states(daemon)
    assert (got[State.BLOCKED], got[State.LOCKED]) == (1, 0)


async def test_original_connect_drops_the_indexes_and_the_daemon_rebuilds_them(
    new_pool: NewPool, legacy: Legacy, daemon: Daemon, raw: Any
) -> None:
    """Original: `connect()` drops every index but `_id_` and `last_use_1`. The daemon notices at its next
    refresh, rebuilds them in the background (one build at a time, counted and logged), and the held
    counts are index-only again: no document read.
    """
    new = await new_pool()
    for i in range(20):
        await new.add({"session": {"n": i}})
    for _ in range(5):
        await new.get_session(next_use_delay=600)
    specs = [keys for keys, _ in new.index_specs()]
    await legacy().connect()
    assert set(raw.index_information()) == {"_id_", "last_use_1"}
    await daemon.collector.refresh("p")
    await daemon.collector.wait_indexes("p")
    present = [[(k, int(d)) for k, d in spec["key"]] for spec in raw.index_information().values()]
    assert all(keys in present for keys in specs)
    registry = daemon.metrics.registry
    assert registry.get_sample_value("session_pool_index_builds_total", {"pool": "p"}) == 1
    # A second refresh finds nothing missing and builds nothing.
    await daemon.collector.refresh("p")
    await daemon.collector.wait_indexes("p")
    assert registry.get_sample_value("session_pool_index_builds_total", {"pool": "p"}) == 1
    sessions = daemon.collector.pools["p"].sessions
    now = await sessions.server_time()
    held_part = queries.statistics_pipeline(sessions.rules, sessions.collection.name, now)[:4]
    plan = await sessions.collection.database.command(
        "explain", {"aggregate": sessions.collection.name, "pipeline": held_part, "cursor": {}},
        verbosity="executionStats",
    )  # fmt: skip
    text = str(plan)
    assert "'totalDocsExamined': 0" in text and "'totalKeysExamined': 5" in text, text[:2000]


async def test_a_moscow_pool_shared_by_old_and_new_workers(new_pool: NewPool, legacy: Legacy, mongo_uri: str) -> None:
    """Original workers in Europe/Moscow write Moscow wall times. New workers and the daemon with
    `stored_timezone: Europe/Moscow` agree with them on every hold: an old 5-minute lock is locked, not
    blocked (3 h 5 min as UTC), and a session the old worker freed an hour ago is handed out.
    """
    old = legacy(zone="Europe/Moscow")
    for i in range(3):
        await old.add({"session": {"n": i}})
    first = await old.get_session()
    assert first is not None
    await old.session_lock(first, {"minutes": 5})
    new = await new_pool(stored_timezone="Europe/Moscow")
    taken = await new.get_session(next_use_delay=120)
    assert taken is not None and taken["_id"] != first["_id"]
    stats = await new.aggregate_statistics()
    assert (stats.states[State.LOCKED], stats.states[State.IN_USE], stats.states[State.ACTIVE]) == (1, 1, 1)
    assert stats.next_unlock is not None
    assert timedelta(minutes=4) < stats.next_unlock - datetime.now(UTC) <= timedelta(minutes=5)
    # The original's own view of the same pool agrees on what is free.
    assert await old.count_active() == stats["count_active"] == 1
    utc_reader = MongoSessions(mongo_uri, DB, new.collection.name)
    assert (await utc_reader.aggregate_statistics()).states[State.BLOCKED] >= 1  # what a wrong frame would say
    await utc_reader.close()
