"""The statistics pipeline's rows folded into one Statistics (each tagged by a Row); Total modes; the server's time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient, MongoClient

from exporter import MongoSessions, State
from exporter.core.clocks import ESTIMATE_UNCERTAINTY
from exporter.core.model import Fields
from exporter.core.queries import Row, StateRules, Total, statistics_pipeline
from exporter.core.statistics import fold, sums_of
from exporter.core.timeframe import TimeFrame
from tests.conftest import PoolFactory
from tests.support.commands import Commands

NOW = datetime(2026, 1, 1, tzinfo=UTC)
RULES = StateRules(Fields(), timedelta(minutes=10), timedelta(seconds=60), TimeFrame())


def test_rows_fold_by_their_tag() -> None:
    soon, later = NOW + timedelta(minutes=5), NOW + timedelta(hours=5)
    rows: list[dict[str, Any]] = [
        {"k": "held", "kind": "lock", "bucket": None, "n": 2, "first": later},
        {"k": "held", "kind": None, "bucket": 1, "n": 1, "first": soon},  # a legacy hold, by time left
        {"k": "held", "kind": "use", "bucket": None, "n": 3, "first": NOW},
        {"k": "inactive", "n": 4},
        {"k": "deactivated", "n": 1},
        {"k": "total", "n": 20},
        {"k": "oldest", "v": NOW - timedelta(days=1)},
        {"k": "legacy_active", "n": 9},
        {"k": "not_a_row", "n": 100},  # unknown tags change nothing
    ]
    stats = fold(rows, NOW, True, custom=True, from_stored=lambda t: t)
    assert stats.states[State.LOCKED] == 3 and stats.states[State.IN_USE] == 3
    assert stats.states[State.INACTIVE] == 4 and stats.states[State.ACTIVE] == 20 - 4 - 6
    assert stats.total == 20 and stats.uses is None and stats.next_unlock == soon
    assert stats.oldest_active_last_use == NOW - timedelta(days=1) and stats.snapshot
    assert dict(stats) == {"count_blocked": 1, "count_total": 20, "count_active": 9, "count_locked": 0}
    plain = fold(rows, NOW, False, custom=False, from_stored=lambda t: t)
    # The original's counts from the states when the selection is not customised.
    assert dict(plain) == {"count_blocked": 1, "count_total": 20, "count_active": 10, "count_locked": 6}


def test_sums_row_gives_total_and_sums() -> None:
    rows: list[dict[str, Any]] = [
        {"k": Row.SUMS, "total": 5, "uses": 40, "successes": 30, "overruns": 2},
        {"k": Row.TOTAL, "n": 6},
    ]
    stats = fold(rows[:1], NOW, False, custom=False, from_stored=lambda t: t)
    assert (stats.total, stats.uses, stats.successes) == (5, 40, 30)
    sums = sums_of(rows, NOW)
    assert (sums.total, sums.uses, sums.successes, sums.metadata_total, sums.overruns) == (5, 40, 30, 6, 2)


def test_total_modes() -> None:
    assert Total.of(sums=True, fast_total=False) is Total.SUMS
    assert Total.of(sums=False, fast_total=True) is Total.METADATA
    assert Total.of(sums=False, fast_total=False) is Total.COUNT
    # The names callers pass today still mean the same pipeline.
    assert statistics_pipeline(RULES, "c", NOW, total="metadata") == statistics_pipeline(
        RULES, "c", NOW, total=Total.METADATA
    )
    tags = {str(stage) for stage in statistics_pipeline(RULES, "c", NOW, total=Total.COUNT)}
    assert not any("'sums'" in t for t in tags) and any("'total'" in t for t in tags)


async def test_a_statistics_read_takes_the_primarys_clock_from_the_heartbeats(
    pool_factory: PoolFactory, mongo_uri: str, sync_client: MongoClient[dict[str, Any]]
) -> None:
    """With the driver's heartbeats reading the primary's clock, a refresh is one round trip, at the server's time;
    a client without those readings asks the server (`hello`) first."""
    commands = Commands()
    pool = await pool_factory(event_listeners=[commands])
    await pool.add({"session": {"login": "a"}})
    commands.sent.clear()
    before = sync_client.admin.command("hello")["localTime"].replace(tzinfo=UTC)
    stats = await pool.aggregate_statistics(sums=False)
    after = sync_client.admin.command("hello")["localTime"].replace(tzinfo=UTC)
    assert commands.names() == ["aggregate"]
    slack = timedelta(seconds=ESTIMATE_UNCERTAINTY)
    assert before - slack <= stats.time <= after + slack
    assert stats.total == 1

    asked = Commands()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, tz_aware=True, event_listeners=[asked])
    try:
        plain = MongoSessions(client=client, db=pool.db.name, collection=pool.collection.name)
        assert (await plain.aggregate_statistics(sums=False)).total == 1
        asked.sent.clear()  # the first read also waited for a server (ping)
        await plain.aggregate_statistics(sums=False)
        assert asked.names() == ["hello", "aggregate"]
    finally:
        await client.close()
