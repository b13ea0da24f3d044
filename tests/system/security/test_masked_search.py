"""A read token cannot rebuild a masked search field (review three, finding 1).

The prefix search answered "does this session's phone start with this", so a read token rebuilt a
masked phone a digit at a time (258 requests in the review), helped by a masked form showing its
first three characters. Now a read token matches masked fields whole, a limited number of times a
minute, and the masked form shows the last `session_fields.reveal` characters only.
"""

from __future__ import annotations

from typing import Any

import httpx
from pymongo import MongoClient

from tests.support.daemon import READ_TOKEN, WRITE_TOKEN, config, running
from tests.support.figures import Report

TARGET = "+79000002999"
LIMIT = 20


def rebuild(http: httpx.Client, sid: str, start: str, budget: int = 300) -> tuple[str, int]:
    """The review's attack: extend the known prefix by the digit whose search still finds the session."""
    known, requests = start, 0
    while requests < budget:
        for digit in "0123456789":
            answer = http.get("/admin/pools/p/sessions", params={"q": known + digit, "page_size": 200})
            requests += 1
            if answer.status_code == 200 and sid in {s["id"] for s in answer.json()["sessions"]}:
                known += digit
                break
        else:
            return known, requests  # no digit extends it: the attack is stuck
    return known, requests


def test_a_read_token_cannot_rebuild_a_masked_phone(
    mongo_uri: str, unique_name: str, sync_client: MongoClient[dict[str, Any]], report: Report
) -> None:
    """The prefix attack with a read token gets nowhere; the masked form shows the last 2 characters only; a read
    token still finds a session by its whole phone (until its allowance is spent: 429), a write token by prefix."""
    coll = sync_client["spe_masked"][unique_name]
    phones = [f"+7900000{n:04d}" for n in range(0, 2999, 61)]
    coll.insert_many([{"active": True, "next_use": None, "session": {"phone": p, "password": "x"}} for p in phones])
    sid = str(coll.insert_one({"active": True, "next_use": None, "session": {"phone": TARGET}}).inserted_id)
    cfg = config(mongo_uri, [{"name": "p", "database": "spe_masked", "collection": unique_name,
                              "session_fields": {"search": ["phone"]}}],
                 admin={"read_searches_per_minute": LIMIT})  # fmt: skip
    with running(cfg, ready=True) as daemon, daemon.client(READ_TOKEN) as reader:
        shown = reader.get(f"/admin/pools/p/sessions/{sid}").json()["fields"]["phone"]
        # The attacker starts from what the masked form gives away (the review's began with "+79").
        start = shown.rstrip("0123456789")[:3].strip("•") or "+"
        rebuilt, spent = rebuild(reader, sid, start)
        whole = reader.get("/admin/pools/p/sessions", params={"q": TARGET})
        for _ in range(LIMIT):
            limited = reader.get("/admin/pools/p/sessions", params={"q": TARGET})
            if limited.status_code == 429:
                break
        with daemon.client(WRITE_TOKEN) as writer:
            prefix = writer.get("/admin/pools/p/sessions", params={"q": "+790000029", "page_size": 200})
    assert rebuilt != TARGET and len(rebuilt) <= 1, (rebuilt, spent)
    assert shown == "••••••99", shown
    assert whole.status_code == 200 and [s["id"] for s in whole.json()["sessions"]] == [sid], whole.text
    assert (whole.json()["match"], whole.json()["exact_fields"]) == ("exact", ["phone"])
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1, limited.text
    assert "searches of masked fields" in limited.json()["message"]
    starting = 1 + sum(p.startswith("+790000029") for p in phones)
    assert prefix.status_code == 200 and prefix.json()["match"] == "prefix" and prefix.json()["total"] == starting
    assert sid in {s["id"] for s in prefix.json()["sessions"]}
    report.record("security", "read token rebuilding a masked phone by prefix search", {
        "answer": f"masked {shown}; {spent} prefix probes rebuilt {rebuilt!r} (exact match only for read tokens, "
                  f"then 429 after {LIMIT} a minute); write token prefix search 200",
        "secrets_found": 0,
    })  # fmt: skip
