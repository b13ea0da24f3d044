"""No value of a stored document reaches an answer, a log line, a metric or an audit event.

MongoDB quotes documents in its errors: a validator failure carries the whole document in
`errInfo`, a duplicate key its value. Each case below makes an admin action fail that way on a
session whose credentials hold a known secret, then greps every output channel for it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from bson import ObjectId
from pymongo import MongoClient

from exporter.mongod import Mongod
from tests.support.daemon import WRITE_TOKEN, Daemon, config, running
from tests.support.figures import Report

SECRET = "Pa55w0rd-" + uuid.uuid4().hex
SyncClient = MongoClient[dict[str, Any]]


def channels(daemon: Daemon, client: SyncClient, answers: list[httpx.Response], audit: tuple[str, str]) -> str:
    """Everything the daemon said: answers, its log, /metrics and the audit trail."""
    events = list(client[audit[0]][audit[1]].find())
    return "\n".join(
        [
            *(r.text for r in answers),
            daemon.logs(),
            daemon.get("/metrics").text,
            json.dumps(events, default=str),
        ]
    )


def seed(client: SyncClient, db: str) -> tuple[ObjectId, ObjectId, ObjectId]:
    """Three sessions carrying the secret: one the validator rejects, two sharing a unique login."""
    coll = client[db]["vault"]
    client[db].create_collection(
        "vault", validator={"$jsonSchema": {"properties": {"session": {"bsonType": "object", "required": ["login"]}}}}
    )
    coll.create_index([("session.login", 1), ("active", 1)], unique=True)
    invalid = coll.insert_one(
        {"active": True, "next_use": None, "session": {"password": SECRET}}, bypass_document_validation=True
    ).inserted_id
    dup_a = coll.insert_one({"active": False, "next_use": None, "session": {"login": SECRET}}).inserted_id
    dup_b = coll.insert_one({"active": True, "next_use": None, "session": {"login": SECRET, "n": 2}}).inserted_id
    return invalid, dup_a, dup_b


@pytest.fixture(params=["replica_set", "standalone"])
def server(request: pytest.FixtureRequest, mongod_factory: Callable[..., Mongod]) -> Mongod:
    """A mongod of its own: a replica set (transactions) or a standalone server (intent-first audit)."""
    return mongod_factory(replica_set="rs0" if request.param == "replica_set" else None)


def test_driver_errors_never_carry_document_values(server: Mongod, report: Report) -> None:
    """Validator failure, duplicate key and write conflict: 502 with the code and its name, no value anywhere."""
    client: SyncClient = MongoClient(server.uri, tz_aware=True)
    invalid, _dup_a, dup_b = seed(client, "leaks")
    cfg = config(server.uri, [{"name": "vault", "database": "leaks", "collection": "vault"}],
                 admin={"audit": {"database": "leaks_audit", "collection": "events"}},
                 log={"level": "debug", "format": "json"})  # fmt: skip
    answers: list[httpx.Response] = []
    with running(cfg, ready=True) as daemon, daemon.client(WRITE_TOKEN) as http:
        base = "/admin/pools/vault/sessions"
        validation = http.post(f"{base}/{invalid}/lock", json={"reason": "x"})
        duplicate = http.post(f"{base}/{dup_b}/deactivate")
        answers += [validation, duplicate]
        assert validation.status_code == 502, validation.text
        assert "DocumentValidationFailure (121)" in validation.json()["message"]
        assert duplicate.status_code == 502, duplicate.text
        assert "DuplicateKey (11000)" in duplicate.json()["message"]
        client.admin.command(
            "configureFailPoint", "failCommand", mode={"times": 12},
            data={"failCommands": ["update"], "errorCode": 112, "errorLabels": ["TransientTransactionError"],
                  "errmsg": f"WriteConflict on {{ session: {{ login: \"{SECRET}\" }} }}",
                  "appName": "session-pool-exporter"},
        )  # fmt: skip
        try:
            conflict = http.post(f"{base}/{dup_b}/lock")
        finally:
            client.admin.command("configureFailPoint", "failCommand", mode="off")
        answers.append(conflict)
        assert conflict.status_code == 502 and "WriteConflict (112)" in conflict.json()["message"], conflict.text
        daemon.wait_for(lambda: "admin_action_failed" in daemon.logs(), "the failure logs")
        everything = channels(daemon, client, answers, ("leaks_audit", "events"))
    assert SECRET not in everything
    assert "errInfo" not in everything and "keyValue" not in everything
    topology = "replica set" if server.replica_set else "standalone"
    for name, answer in (("validator failure", validation), ("duplicate key", duplicate), ("write conflict", conflict)):
        report.record("security", f"leak: {name} ({topology})", {
            "answer": f"{answer.status_code} {answer.json()['message'][:90]}",
            "secrets_found": everything.count(SECRET),
        })  # fmt: skip
    client.close()
