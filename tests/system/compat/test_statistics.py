"""aggregate_statistics() read as the original's dict, with the original's meaning of each key."""

from __future__ import annotations

import json
from typing import Any

import pydash

from exporter import State
from tests.system.compat.conftest import Legacy, NewPool


async def seed(new_pool: NewPool) -> Any:
    """A pool with every kind of session: free, used, locked, blocked, deactivated, and no `active` at all."""
    mongo = await new_pool()
    ids = [(await mongo.add({"session": {"n": i}})).inserted_id for i in range(9)]
    await mongo.session_lock(ids[0])
    await mongo.session_block(ids[1])
    await mongo.session_inactive(ids[2])
    await mongo.session_inactive(ids[3])
    await mongo.get_session(next_use_delay=300)  # ids[4], held
    await mongo.sessions.insert_one({"session": {"n": "bare"}, "next_use": None})  # type: ignore[union-attr]
    return mongo


async def test_the_four_keys_mean_what_they_meant(new_pool: NewPool, legacy: Legacy) -> None:
    """Original: `count_active` (default_filter, not held), `count_blocked` (`active: false`: deactivated,
    whatever the name says), `count_locked` (default_filter and held: locks, blocks and pick-ups alike),
    `count_total`. The original's own code, run on the same pool, gives the same four numbers.
    """
    mongo = await seed(new_pool)
    stats = await mongo.aggregate_statistics()
    original = await legacy().aggregate_statistics()
    assert dict(stats) == original == {"count_active": 4, "count_blocked": 2, "count_locked": 3, "count_total": 10}
    # The five states stay available as attributes; the bare document (no `active`) is inactive.
    assert stats.states == {
        State.ACTIVE: 4, State.IN_USE: 1, State.LOCKED: 1, State.BLOCKED: 1, State.INACTIVE: 3,
    }  # fmt: skip
    assert stats.total == 10


async def test_read_like_a_dict(new_pool: NewPool) -> None:
    """Original callers: `stats["count_total"] = stats["count_total"] or 1`, `{**stats}`,
    `pydash.get(stats, "count_total")`, logging and JSON of the dict.
    """
    mongo = await seed(new_pool)
    stats = await mongo.aggregate_statistics()
    stats["count_total"] = stats["count_total"] if stats["count_total"] else 1
    percent = int(stats["count_active"] / stats["count_total"] * 100)
    assert percent == 40
    assert {**stats} == dict(stats) and pydash.get(stats, "count_total") == 10
    assert json.loads(json.dumps(stats)) == dict(stats)
    assert "count_active" in f"{stats}" and isinstance(stats, dict)


async def test_empty_pool(new_pool: NewPool) -> None:
    """Original: every count 0 on an empty collection."""
    mongo = await new_pool()
    stats = await mongo.aggregate_statistics()
    assert dict(stats) == {"count_active": 0, "count_blocked": 0, "count_locked": 0, "count_total": 0}
