"""Every document shape MongoDB can store is shown and can be fixed: property test against the real server.

A session with `hold: {"x": 1}`, `hold: ["lock"]`, `count_use` as an ObjectId or `next_use` as a
string used to answer 500 on GET and on every action; the one session an operator most needs to fix
could not be fixed. Generated documents go into a real collection; the admin API must show each
(with what is odd about it) and unlock, deactivate, activate and lock it, never answering 5xx.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from pymongo import MongoClient
from pymongo.errors import WriteError

from tests.support.daemon import WRITE_TOKEN, config, running
from tests.support.documents import DOCUMENTS
from tests.support.figures import Report

DB = f"spe_odd_{uuid.uuid4().hex[:8]}"
FIXED: list[str] = []


@pytest.fixture(scope="module")
def admin(mongo_uri: str, report: Report) -> Iterator[tuple[httpx.Client, Any]]:
    """A daemon watching an empty pool, and the pool's collection; afterwards, how many documents were fixed."""
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri)
    cfg = config(mongo_uri, [{"name": "odd", "database": DB, "collection": "pool"}])
    with running(cfg, ready=True) as daemon, daemon.client(WRITE_TOKEN) as http:
        yield http, client[DB]["pool"]
    client.drop_database(DB)
    client.close()
    # Recorded once the property test has run all its examples (whichever worker and order).
    report.record("security", "odd documents", {
        "answer": f"{len(FIXED)} generated documents shown and unlocked, deactivated, activated, locked: 200 each",
        "secrets_found": 0,
    })  # fmt: skip
    assert FIXED, "the property test fixed no document"


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(doc=DOCUMENTS)
def test_any_document_can_be_seen_and_fixed(admin: tuple[httpx.Client, Any], doc: dict[str, Any]) -> None:
    """GET shows it (odd fields listed); unlock, deactivate, activate and lock all answer 200."""
    http, pool = admin
    try:
        sid = pool.insert_one(dict(doc)).inserted_id
    except WriteError as exc:
        # Two arrays in fields of one compound index: MongoDB cannot store this shape in a pool at all.
        assume(exc.code != 171)
        raise
    base = f"/admin/pools/odd/sessions/{sid}"
    view = http.get(base)
    assert view.status_code == 200, (doc, view.text)
    body = view.json()
    assert body["id"] == str(sid) and isinstance(body["problems"], list)
    if "active" not in doc or not isinstance(doc["active"], bool):
        assert any(p.startswith("active ") for p in body["problems"]), body
    for action in ("unlock", "deactivate", "activate", "lock"):
        answer = http.post(f"{base}/{action}", json={"reason": "property test"})
        assert answer.status_code == 200, (action, doc, answer.text)
    FIXED.append(str(sid))
    final = pool.find_one({"_id": sid})
    assert final is not None and final["active"] is True and final["hold"]["kind"] == "lock"
    assert final["hold"]["until"] == final["next_use"]
