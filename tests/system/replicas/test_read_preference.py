"""mongodb.read_preference on a real replica set: statistics reads go where it says, writes stay on the primary."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from pymongo import MongoClient, ReadPreference

from exporter.core import MongoSessions, SessionPoolError
from exporter.mongod import Mongod
from tests.support.replset import ReplicaSet

DB, POOL = "spe_rp", "pool"


def _fail_reads(member: Mongod, mode: Any) -> None:
    """Make `member` refuse every statistics read (aggregate, count) with an error."""
    client: MongoClient[dict[str, Any]] = MongoClient(member.uri, serverSelectionTimeoutMS=5000)
    try:
        data = {"failCommands": ["aggregate", "count"], "errorCode": 2, "errmsg": "reads refused by the test"}
        client.admin.command("configureFailPoint", "failCommand", mode=mode, data=data)
    finally:
        client.close()


async def test_statistics_follow_the_read_preference(replica_set: ReplicaSet) -> None:
    """With the primary refusing reads, secondaryPreferred statistics still come (from a secondary) and primary ones
    fail; get_session and admin-style writes go to the primary either way."""
    primary = replica_set.primary()
    assert primary is not None
    seed: MongoClient[dict[str, Any]] = MongoClient(replica_set.uri, w=3)  # every member has them
    seed[DB][POOL].insert_many([{"active": True, "next_use": None, "count_use": 0, "count_success": 0}
                                for _ in range(10)])  # fmt: skip
    seed.close()
    pools = {
        name: MongoSessions(
            replica_set.uri, DB, POOL, tz_aware=True, create_indexes=False, statistics_read_preference=name
        )
        for name in ("primary", "secondaryPreferred")
    }
    for pool in pools.values():
        await pool.connect()
    # secondaryPreferred falls back to the primary while the client knows no secondary: on a set just
    # started, its monitors may not have reached one yet.
    client = pools["secondaryPreferred"].client
    deadline = time.monotonic() + 30
    while not client.topology_description.has_readable_server(ReadPreference.SECONDARY):
        assert time.monotonic() < deadline, "the client never saw a readable secondary"
        await asyncio.sleep(0.1)
    _fail_reads(primary, "alwaysOn")
    try:
        stats = await pools["secondaryPreferred"].aggregate_statistics(sums=False)
        assert stats.total == 10 and stats["count_active"] == 10
        assert await pools["secondaryPreferred"].count_active() == 10
        assert (await pools["secondaryPreferred"].aggregate_sums()).total == 10
        with pytest.raises(SessionPoolError, match="BadValue"):
            await pools["primary"].aggregate_statistics(sums=False)
        with pytest.raises(SessionPoolError, match="BadValue"):
            await pools["primary"].count_active()
        # Writes and hand-outs are not statistics: they go to the primary with any setting.
        taken = await pools["secondaryPreferred"].get_session(next_use_delay=3600)
        assert taken is not None
        assert (await pools["secondaryPreferred"].session_inactive(taken["_id"])).modified_count == 1
    finally:
        _fail_reads(primary, "off")
        for pool in pools.values():
            await pool.close()
    assert pools["secondaryPreferred"].statistics_read_preference == "secondaryPreferred"
