"""Paging never repeats or skips a session (review three, finding 3).

A list sorted on one key alone left the order of equal keys to the plan: paging a search of 3001
matches by 200 gave 3001 rows but 1553 distinct ids. Every list and search now sorts in a total
order (the serving index's keys, then `_id`). Each list below is paged through a set of sessions
whose sort keys are all equal, and every id must come back exactly once.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pymongo import MongoClient

from tests.support.daemon import READ_TOKEN, WRITE_TOKEN, config, running
from tests.support.figures import Report

PAGE = 25


def page_through(http: httpx.Client, params: dict[str, Any]) -> list[str]:
    """Every id of a list, page by page, in the order the pages gave them."""
    ids: list[str] = []
    page = 1
    while True:
        answer = http.get("/admin/pools/p/sessions", params={**params, "page": page, "page_size": PAGE})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        ids += [s["id"] for s in body["sessions"]]
        if page * PAGE >= body["total"]:
            return ids
        page += 1


def test_every_list_pages_each_session_exactly_once(
    mongo_uri: str, unique_name: str, sync_client: MongoClient[dict[str, Any]], report: Report
) -> None:
    """Never-used sessions (null last_use), locked ones with one hold end, inactive ones and underperformers with
    equal counters: searched and listed in every order, 25 a page, each id once and none missing."""
    coll = sync_client["spe_order"][unique_name]
    until = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)

    def sessions(n: int, **fields: Any) -> list[dict[str, Any]]:
        return [{"active": True, "next_use": None, "last_use": None, "count_use": 0, "count_success": 0,
                 "session": {"phone": "+7900555"}, **fields} for _ in range(n)]  # fmt: skip

    coll.insert_many(
        sessions(160)
        + sessions(60, count_use=100, count_success=100)  # the pool's good ratio
        + sessions(60, count_use=10)  # underperformers, all alike
        + sessions(90, active=False)
        + sessions(90, next_use=until, hold={"kind": "lock", "until": until})
    )
    expected = {
        "active": {str(d["_id"]) for d in coll.find({"active": True, "next_use": None})},
        "inactive": {str(d["_id"]) for d in coll.find({"active": False})},
        "locked": {str(d["_id"]) for d in coll.find({"hold.kind": "lock"})},
        "underperforming": {str(d["_id"]) for d in coll.find({"count_use": 10})},
        "search": {str(d["_id"]) for d in coll.find()},
    }
    lists: list[tuple[str, str, dict[str, Any]]] = [
        ("search q=+7900 (least recently used first)", "search", {"q": "+7900"}),
        ("search q=+7900 newest hold end first", "search", {"q": "+7900", "order": "hold_desc"}),
        ("active, least recently used first", "active", {"state": "active"}),
        ("active, most recently used first", "active", {"state": "active", "order": "last_use_desc"}),
        ("inactive", "inactive", {"state": "inactive"}),
        ("locked, newest hold end first", "locked", {"state": "locked"}),
        ("locked, soonest hold end first", "locked", {"state": "locked", "order": "hold_asc"}),
        ("locked, least recently used first", "locked", {"state": "locked", "order": "last_use_asc"}),
        ("underperforming", "underperforming", {"underperforming": 1}),
    ]
    cfg = config(mongo_uri, [{"name": "p", "database": "spe_order", "collection": unique_name,
                              "session_fields": {"search": ["phone"]}, "sums_interval": 1,
                              "underperforming": {"min_uses": 5, "interval": 1}}])  # fmt: skip
    wrong: dict[str, Any] = {}
    with running(cfg, ready=True) as daemon, daemon.client(WRITE_TOKEN) as http:
        daemon.wait_for(lambda: http.get("/admin/pools").json()["pools"][0]["underperformers"] is not None,
                        "the first count of underperformers")  # fmt: skip
        for what, kind, params in lists:
            ids = page_through(http, params)
            repeated = {i: n for i, n in Counter(ids).items() if n > 1}
            if repeated or set(ids) != expected[kind]:
                wrong[what] = {"rows": len(ids), "distinct": len(set(ids)), "expected": len(expected[kind])}
        with daemon.client(READ_TOKEN) as reader:  # a read token's search (a whole value) pages the same way
            whole = page_through(reader, {"q": "+7900555"})
    assert wrong == {}, wrong
    assert sorted(whole) == sorted(expected["search"])
    report.record("security", "paging equal sort keys (9 lists and searches, 25 a page)", {
        "answer": f"every id once in each: {', '.join(f'{k} {len(v)}' for k, v in expected.items())}",
        "secrets_found": 0,
    })  # fmt: skip
