"""What admin writes accept and what the audit trail keeps (review three, findings 4, 5, 6, 8 and 9).

Strict bodies (a lone surrogate, a key given twice, a charset that is not UTF-8), every reason of a
repeated action, the failed attempt of a write the server refused, and a dry run over the bulk cap
that says the real call would be refused. One daemon on the test replica set serves them all.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient
from pymongo.collection import Collection

from exporter.core import Fields
from exporter.core.browse import console_index_specs
from exporter.core.queries import index_specs
from tests.support.daemon import WRITE_TOKEN, Daemon, config, running
from tests.support.figures import Report

SyncClient = MongoClient[dict[str, Any]]
DB = "spe_writes"
CAP = 3


@dataclass
class Setup:
    """The daemon, its pools' collections and the audit trail."""

    daemon: Daemon
    pools: dict[str, Collection[dict[str, Any]]]
    audit: Collection[dict[str, Any]]

    def new_session(self, pool: str, **fields: Any) -> ObjectId:
        """Insert an active, unheld session (validation bypassed: a test may plant a refused shape)."""
        doc = {"active": True, "next_use": None, "last_use": None, "count_use": 0, "count_success": 0, **fields}
        inserted: ObjectId = self.pools[pool].insert_one(doc, bypass_document_validation=True).inserted_id
        return inserted

    def events(self, sid: ObjectId) -> list[dict[str, Any]]:
        """The audit events of one session, oldest first."""
        return list(self.audit.find({"session_id": str(sid)}).sort("time", 1))


@pytest.fixture(scope="module")
def setup(mongo_uri: str) -> Iterator[Setup]:
    """Pools `p` (plain), `refuse` (a validator refuses some writes) and `bulk`, bulk cap 3."""
    suffix = uuid.uuid4().hex[:8]
    client: SyncClient = MongoClient(mongo_uri, tz_aware=True)
    names = {pool: f"{pool}_{suffix}" for pool in ("p", "refuse", "bulk")}
    audit = client["spe_writes_audit"][f"events_{suffix}"]
    cfg = config(mongo_uri, [{"name": pool, "database": DB, "collection": coll} for pool, coll in names.items()],
                 admin={"bulk_unlock_cap": CAP, "audit": {"database": audit.database.name,
                                                          "collection": audit.name}})  # fmt: skip
    pools = {pool: client[DB][coll] for pool, coll in names.items()}
    for coll in pools.values():
        coll.insert_one({"active": True, "next_use": None})
    with running(cfg, ready=True) as daemon:
        # The daemon builds the pools' indexes in the background; a collMod meanwhile would be refused.
        wanted = len(index_specs(Fields())) + len(console_index_specs(Fields(), [])) + 1

        def indexed() -> bool:
            return all(len(coll.index_information()) >= wanted for coll in pools.values())

        daemon.wait_for(indexed, "the pools' indexes")
        yield Setup(daemon, pools, audit)
    client.close()


def test_a_lone_surrogate_in_reason_is_a_422_and_nothing_is_written(setup: Setup, report: Report) -> None:
    """`"\\ud800"` is valid JSON but no UTF-8 (nor BSON) can carry it: 422 at body.reason, not a 500."""
    sid = setup.new_session("p")
    before = setup.pools["p"].find_one({"_id": sid})
    with setup.daemon.client(WRITE_TOKEN) as http:
        answer = http.post(f"/admin/pools/p/sessions/{sid}/lock", content=b'{"reason": "x\\ud800y"}',
                           headers={"Content-Type": "application/json"})  # fmt: skip
    assert answer.status_code == 422, answer.text
    assert answer.json()["problems"][0]["location"] == "body.reason" and "surrogate" in answer.json()["message"]
    assert setup.pools["p"].find_one({"_id": sid}) == before and setup.events(sid) == []
    report.record("security", "lone UTF-16 surrogate in reason", {
        "answer": f"{answer.status_code} at body.reason; nothing written", "secrets_found": 0,
    })  # fmt: skip


def test_duplicate_keys_and_a_foreign_charset_are_refused(setup: Setup, report: Report) -> None:
    """`{"reason": "a", "reason": "b"}` is a 422 naming the key; `charset=utf-16` is a 415; nothing is written."""
    sid = setup.new_session("p")
    before = setup.pools["p"].find_one({"_id": sid})
    url = f"/admin/pools/p/sessions/{sid}/lock"
    with setup.daemon.client(WRITE_TOKEN) as http:
        twice = http.post(url, content=b'{"reason": "a", "reason": "b"}', headers={"Content-Type": "application/json"})
        utf16 = http.post(url, content=b'{"reason": "a"}',
                          headers={"Content-Type": "application/json; charset=utf-16"})  # fmt: skip
        assert setup.pools["p"].find_one({"_id": sid}) == before and setup.events(sid) == []
        utf8 = http.post(url, content=b'{"reason": "a"}', headers={"Content-Type": 'application/json; charset="UTF-8"'})
    assert twice.status_code == 422 and "'reason' twice" in twice.json()["message"], twice.text
    assert twice.json()["problems"][0]["location"] == "body.reason"
    assert utf16.status_code == 415 and "charset='utf-16'" in utf16.json()["message"], utf16.text
    assert utf8.status_code == 200, utf8.text  # UTF-8 named explicitly is fine
    report.record("security", "lenient bodies: duplicate key, charset=utf-16", {
        "answer": f"duplicate key {twice.status_code}, charset=utf-16 {utf16.status_code}; nothing written",
        "secrets_found": 0,
    })  # fmt: skip


def test_repeated_actions_keep_every_reason(setup: Setup, report: Report) -> None:
    """Three activates of an active session with reasons r1, r2, r3: each reason is in the trail; an identical
    repeat still folds into its event."""
    sid = setup.new_session("p")
    with setup.daemon.client(WRITE_TOKEN) as http:
        for reason in ("r1", "r2", "r3", "r3"):
            answer = http.post(f"/admin/pools/p/sessions/{sid}/activate", json={"reason": reason})
            assert answer.status_code == 200 and answer.json()["result"] == "unchanged", answer.text
        shown = http.get("/admin/audit", params={"session_id": str(sid), "order": "asc"}).json()["events"]
    assert [e["reason"] for e in shown] == ["r1", "r2", "r3"], shown
    assert [e.get("repeats", 0) for e in shown] == [0, 0, 1]
    report.record("security", "repeated actions with different reasons", {
        "answer": "3 activates (r1, r2, r3) and r3 again: 3 events, each reason kept, the identical repeat folded",
        "secrets_found": 0,
    })  # fmt: skip


def test_a_write_the_server_refuses_leaves_a_failed_event(setup: Setup, report: Report) -> None:
    """A validator refuses the lock inside the transaction: 502, the session unchanged, and the trail shows the
    failed attempt (its state before, the error) although the transaction rolled back."""
    coll = setup.pools["refuse"]
    coll.database.command("collMod", coll.name, validator={"planted": {"$exists": False}}, validationLevel="strict")
    sid = setup.new_session("refuse", planted=True)
    before = coll.find_one({"_id": sid})
    with setup.daemon.client(WRITE_TOKEN) as http:
        refused = http.post(f"/admin/pools/refuse/sessions/{sid}/lock", json={"reason": "try"})
        shown = http.get("/admin/audit", params={"session_id": str(sid)}).json()["events"]
    assert refused.status_code == 502 and "DocumentValidationFailure (121)" in refused.json()["message"], refused.text
    assert coll.find_one({"_id": sid}) == before
    (event,) = shown
    assert (event["result"], event["action"], event["actor"], event["reason"]) == ("failed", "lock", "alice", "try")
    assert event["state_before"] == "active" and event["state_after"] is None
    assert "DocumentValidationFailure (121)" in event["error"]
    report.record("security", "a write the server refuses (replica set)", {
        "answer": f"{refused.status_code}; rolled back; audit event result={event['result']} with the error",
        "secrets_found": 0,
    })  # fmt: skip


def test_the_bulk_dry_run_over_the_cap_says_the_call_would_be_refused(setup: Setup, report: Report) -> None:
    """5 blocked sessions, cap 3: the dry run answers would_status 409 with the count and the cap, not
    would_change 3; the real call is that 409 and changes nothing."""
    until = datetime.now(UTC) + timedelta(hours=5)
    ids = [setup.new_session("bulk", next_use=until, hold={"kind": "block", "until": until}) for _ in range(5)]
    url = "/admin/pools/bulk/unlock"
    with setup.daemon.client(WRITE_TOKEN) as http:
        dry = http.post(url, json={"state": "blocked", "dry_run": True})
        real = http.post(url, json={"state": "blocked"})
    body = dry.json()
    assert dry.status_code == 200 and body["matched"] == 5 and body["cap"] == CAP, dry.text
    assert (body["would_change"], body["would_status"]) == (0, 409), dry.text
    assert "5 sessions are blocked, more than admin.bulk_unlock_cap (3)" in body["refusal"]
    assert real.status_code == 409 and real.json()["message"] == body["refusal"], real.text
    assert setup.pools["bulk"].count_documents({"_id": {"$in": ids}, "next_use": until}) == 5
    report.record("security", "bulk dry run over the cap", {
        "answer": f"dry run would_status {body['would_status']}, would_change 0 (5 blocked, cap 3); real call "
                  f"{real.status_code}",
        "secrets_found": 0,
    })  # fmt: skip
