"""Nobody rewrites an audit event that is not theirs; a failed or raced bulk action says what happened.

On a standalone server (no transactions) events are written first as "pending" and settled after
the change. Settling used to match `request_id`, which the caller chooses with X-Request-ID, so one
write caller could settle (rewrite) another actor's pending event. Events are now settled by their
own `_id`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from exporter.core import Fields
from exporter.core.queries import index_specs
from exporter.mongod import Mongod
from tests.support.daemon import WRITE_TOKEN, Daemon, config, running
from tests.support.figures import Report

SyncClient = MongoClient[dict[str, Any]]
AUDIT = ("audit", "events")
BACKGROUND_OPERATION_IN_PROGRESS = 12587


class Standalone:
    """A standalone mongod with a pool of locked sessions and the daemon watching it."""

    def __init__(self, server: Mongod, daemon: Daemon, client: SyncClient, ids: list[ObjectId]) -> None:
        self.server, self.daemon, self.client, self.ids = server, daemon, client, ids

    def events(self, **query: Any) -> list[dict[str, Any]]:
        """Audit events matching `query`, oldest first."""
        return list(self.client[AUDIT[0]][AUDIT[1]].find(query).sort("time", 1))

    def lock_all(self) -> None:
        """Every session locked for an hour (with a valid marker)."""
        until = datetime.now(UTC) + timedelta(hours=1)
        self.client.db.pool.update_many({}, {"$set": {"active": True, "next_use": until,
                                                      "hold": {"kind": "lock", "until": until}}})  # fmt: skip


@pytest.fixture
def standalone(mongod_factory: Callable[..., Mongod]) -> Iterator[Standalone]:
    """Three sessions on a standalone server, the daemon with the admin API on it."""
    server = mongod_factory(replica_set=None)
    client: SyncClient = MongoClient(server.uri, tz_aware=True)
    ids = list(client.db.pool.insert_many([{"active": True, "next_use": None} for _ in range(3)]).inserted_ids)
    cfg = config(server.uri, [{"name": "p", "database": "db", "collection": "pool"}],
                 admin={"audit": {"database": AUDIT[0], "collection": AUDIT[1]}})  # fmt: skip
    with running(cfg, ready=True) as daemon:
        # The daemon builds the pool's indexes in the background; a collMod meanwhile would be refused.
        wanted = len(index_specs(Fields())) + 1
        daemon.wait_for(lambda: len(client.db.pool.index_information()) >= wanted, "the pool's indexes")
        # The list names an index while it is still being built: wait until a collMod (changing nothing) passes.
        daemon.wait_for(lambda: _no_index_build(client), "the pool's index builds")
        yield Standalone(server, daemon, client, ids)
    client.close()


def _no_index_build(client: SyncClient) -> bool:
    """Whether the pool takes a collMod now (refused while one of its indexes is being built)."""
    try:
        client.db.command("collMod", "pool")
    except OperationFailure as exc:
        if exc.code == BACKGROUND_OPERATION_IN_PROGRESS:
            return False
        raise
    return True


def test_a_chosen_request_id_cannot_settle_another_actors_event(standalone: Standalone, report: Report) -> None:
    """bob's pending event (a crash left it) keeps its result when alice sends bob's request id."""
    foreign = {"time": datetime.now(UTC), "actor": "bob", "action": "unlock", "pool": "p",
               "session_id": str(standalone.ids[0]), "state_before": "locked", "state_after": None,
               "result": "pending", "reason": None, "request_id": "shared-id"}  # fmt: skip
    bob_id = standalone.client[AUDIT[0]][AUDIT[1]].insert_one(foreign).inserted_id
    standalone.lock_all()
    with standalone.daemon.client(WRITE_TOKEN) as http:
        headers = {"X-Request-ID": "shared-id"}
        bulk = http.post("/admin/pools/p/unlock", json={"state": "locked"}, headers=headers)
        one = http.post(f"/admin/pools/p/sessions/{standalone.ids[0]}/lock", headers=headers)
    assert bulk.status_code == 200 and bulk.json()["changed"] == 3, bulk.text
    assert one.status_code == 200, one.text
    bob = standalone.events(_id=bob_id)[0]
    assert (bob["result"], bob["state_after"], bob["actor"]) == ("pending", None, "bob")
    mine = standalone.events(actor="alice")
    assert [e["result"] for e in mine] == ["changed"] * 4 and all(e["request_id"] == "shared-id" for e in mine)
    report.record("security", "another actor's request id", {
        "answer": f"bulk {bulk.status_code}, action {one.status_code}; the other actor's event stays {bob['result']}",
        "secrets_found": 0,
    })  # fmt: skip


def test_a_malformed_request_id_is_refused(standalone: Standalone) -> None:
    """A bad X-Request-ID is a 400 saying what is allowed, not silently replaced; nothing is written."""
    with standalone.daemon.client(WRITE_TOKEN) as http:
        bad = http.post(f"/admin/pools/p/sessions/{standalone.ids[0]}/lock", headers={"X-Request-ID": "a b$c"})
        both = http.post(f"/admin/pools/p/sessions/{standalone.ids[0]}/lock",
                         headers=[("X-Request-ID", "one"), ("X-Request-ID", "two")])  # fmt: skip
    assert bad.status_code == 400 and "X-Request-ID must be 1-128 characters" in bad.json()["message"]
    assert both.status_code == 400 and "one X-Request-ID" in both.json()["message"]
    assert standalone.events() == []
    assert standalone.client.db.pool.count_documents({"hold": {"$exists": True}}) == 0


def test_a_failed_bulk_unlock_marks_its_unapplied_events_failed(standalone: Standalone) -> None:
    """The second session's update fails (a validator refuses it): one event changed, the rest failed with the
    reason; no event stays pending."""
    standalone.lock_all()
    standalone.client.db.command("collMod", "pool", validator={"bad": {"$exists": False}}, validationLevel="strict")
    standalone.client.db.pool.update_one({"_id": standalone.ids[1]}, {"$set": {"bad": 1}},
                                         bypass_document_validation=True)  # fmt: skip
    with standalone.daemon.client(WRITE_TOKEN) as http:
        failed = http.post("/admin/pools/p/unlock", json={"state": "locked"})
    assert failed.status_code == 502, failed.text
    events = {e["session_id"]: e for e in standalone.events()}
    assert [events[str(i)]["result"] for i in standalone.ids] == ["changed", "failed", "failed"]
    assert all("DocumentValidationFailure (121)" in events[str(i)]["error"] for i in standalone.ids[1:])
    assert standalone.client.db.pool.count_documents({"hold": {"$exists": False}}) == 1


def test_each_session_is_rechecked_inside_a_bulk_unlock(standalone: Standalone) -> None:
    """A session unlocked by someone else while the bulk runs is not counted as changed by it."""
    standalone.lock_all()
    standalone.client.admin.command(
        "configureFailPoint", "failCommand", mode={"times": 1},
        data={"failCommands": ["update"], "blockConnection": True, "blockTimeMS": 1500,
              "appName": "session-pool-exporter"},
    )  # fmt: skip
    answer: dict[str, Any] = {}

    def bulk() -> None:
        with standalone.daemon.client(WRITE_TOKEN) as http:
            answer.update(http.post("/admin/pools/p/unlock", json={"state": "locked"}).json())

    runner = threading.Thread(target=bulk)
    runner.start()
    time.sleep(0.7)  # the first update is stalled; the others are still ahead
    standalone.client.db.pool.update_one({"_id": standalone.ids[2]}, {"$set": {"next_use": None},
                                                                       "$unset": {"hold": ""}})  # fmt: skip
    runner.join(timeout=30)
    standalone.client.admin.command("configureFailPoint", "failCommand", mode="off")
    assert answer.get("changed") == 2, answer
    results = {e["session_id"]: e["result"] for e in standalone.events()}
    assert results[str(standalone.ids[2])] == "unchanged"


def test_repeating_a_harmless_action_does_not_grow_the_trail(standalone: Standalone) -> None:
    """Thirty unlocks of an active session: one "unchanged" event counting 29 repeats."""
    with standalone.daemon.client(WRITE_TOKEN) as http:
        for _ in range(30):
            assert http.post(f"/admin/pools/p/sessions/{standalone.ids[1]}/unlock").status_code == 200
    (event,) = standalone.events()
    assert (event["result"], event["repeats"]) == ("unchanged", 29)
    assert event["last_time"] >= event["time"]
