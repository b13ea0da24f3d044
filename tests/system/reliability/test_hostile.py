"""Hostile input over real HTTP: schemathesis on the admin OpenAPI, NoSQL injection, bad bodies."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from pymongo import MongoClient
from schemathesis import GenerationMode

from exporter.admin import openapi_document
from tests.support.daemon import READ_TOKEN, WRITE_TOKEN, Daemon, running
from tests.support.figures import Report
from tests.system.reliability.harness import base_config, snapshot

SyncClient = MongoClient[dict[str, Any]]
POOL = "p"


class Target:
    """The daemon under attack and where its data lives."""

    def __init__(self, daemon: Daemon, client: SyncClient, db: str, audit_db: str, ids: list[ObjectId]) -> None:
        self.daemon = daemon
        self.client = client
        self.db = db
        self.audit_db = audit_db
        self.ids = ids

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """The pool and the audit trail, every document."""
        return snapshot(self.client, (self.db, POOL), (self.audit_db, "events"))


@pytest.fixture(scope="module")
def target(mongo_uri: str) -> Iterator[Target]:
    """A daemon subprocess with one pool of 8 sessions, on the session's shared mongod."""
    suffix = uuid.uuid4().hex[:8]
    db, audit_db = f"rel_hostile_{suffix}", f"rel_hostile_audit_{suffix}"
    client: SyncClient = MongoClient(mongo_uri, tz_aware=True)
    docs = [{"active": True, "count_use": 0, "count_success": 0, "next_use": None, "last_use": None,
             "session": {"login": f"u{i}"}} for i in range(8)]  # fmt: skip
    ids = list(client[db][POOL].insert_many(docs).inserted_ids)
    config = base_config(mongo_uri, [{"name": POOL, "database": db, "collection": POOL}],
                         admin={"audit": {"database": audit_db, "collection": "events"}})  # fmt: skip
    with running(config, ready=True) as daemon:
        yield Target(daemon, client, db, audit_db, ids)
    client.drop_database(db)
    client.drop_database(audit_db)
    client.close()


# --- schemathesis over /admin/openapi.json -------------------------------------------------------


@pytest.fixture(scope="module")
def admin_schema(target: Target) -> Any:
    """The admin OpenAPI document as the daemon serves it (needs a valid token)."""
    return schemathesis.openapi.from_url(
        target.daemon.url + "/admin/openapi.json", headers={"Authorization": f"Bearer {WRITE_TOKEN}"}
    )


OPERATIONS = [(path, method) for path, item in openapi_document()["paths"].items() for method in item]
# Each operation as generated, and those with a {pool} aimed at the real pool (and session) too,
# so that the fuzzing reaches past the 404s into the parsing and the writes.
CASES = [(p, m, "generated") for p, m in OPERATIONS] + [(p, m, "real") for p, m in OPERATIONS if "{pool}" in p]
FUZZ_STATUSES: dict[str, int] = {}
FUZZ_EXAMPLES = 40


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize(("path", "method", "aim"), CASES, ids=[f"{m.upper()} {p} {a}" for p, m, a in CASES])
def test_schemathesis_finds_no_server_error(
    admin_schema: Any, target: Target, report: Report, path: str, method: str, mode: GenerationMode, aim: str
) -> None:
    """Generated requests (valid and invalid), never a 5xx, and responses conform to the document."""
    operation = admin_schema[path][method.upper()]
    fixed: dict[str, Any] = {}
    if aim == "real":
        fixed = {"pool": POOL}
        if "{session_id}" in path:
            fixed["session_id"] = str(target.ids[0])
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed or None)
    headers = {"Authorization": f"Bearer {WRITE_TOKEN}"}

    @given(case=strategy)
    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def attack(case: Any) -> None:
        response = case.call(base_url=target.daemon.url, headers=headers)
        key = f"{method.upper()} {path}: {response.status_code}"
        FUZZ_STATUSES[key] = FUZZ_STATUSES.get(key, 0) + 1
        assert response.status_code < 500, (case.as_curl_command(), response.text)
        assert "Traceback" not in response.text
        # positive_data_acceptance is left out: a schema-valid request may still be refused for what
        # no schema says (since later than until, a period over admin.max_period, a lock of an
        # inactive session); those answers are 409/422 by design.
        case.validate_response(response, excluded_checks=[schemathesis.checks.positive_data_acceptance])

    attack()
    report.record("hostile", "schemathesis_responses", dict(sorted(FUZZ_STATUSES.items())))
    report.record("hostile", "schemathesis_requests", sum(FUZZ_STATUSES.values()))


# --- injection, oversized, nested, invalid UTF-8, unknown fields ----------------------------------

SID = "{sid}"  # replaced by a real session id
NEST = 3000


def _attacks() -> list[tuple[str, str, str, str, Any]]:
    """(category, method, path with query, expected message fragment, body: dict/list = JSON, bytes = raw)."""
    act = f"/admin/pools/{POOL}/sessions/{SID}"
    bulk = f"/admin/pools/{POOL}/unlock"
    out: list[tuple[str, str, str, str, Any]] = []
    for bad_id in ['{"$ne": null}', "$ne", "$where", '{"$gt": ""}', "$gt", "000000000000000000000000' || '1'=='1",
                   "this.active == true", "5f0c9a7e3b2d41c8a1b2c3d", "5f0c9a7e3b2d41c8a1b2c3d4e", "%00", "..",
                   "\u0660" * 24, '{"$where": "sleep(5000) || true"}']:  # fmt: skip
        enc = quote(bad_id, safe="")
        # ".." is resolved by the client to another path, which no route serves.
        needle = "no such path" if bad_id == ".." else "session id"
        out.append(("injection: session id in path", "GET", f"/admin/pools/{POOL}/sessions/{enc}", needle, None))
        out.append(("injection: session id in path", "POST", f"/admin/pools/{POOL}/sessions/{enc}/lock", needle,
                    None))  # fmt: skip
    for bad_pool in ['{"$ne": null}', "$where", "p.$", "p%00", "p'||'1", "..%2F.."]:
        enc = quote(bad_pool, safe="%")
        needle = "no such path" if ".." in bad_pool else "pool"
        out.append(("injection: pool in path", "POST", f"/admin/pools/{enc}/unlock", needle, {"state": "locked"}))
        out.append(("injection: pool in path", "GET", f"/admin/pools/{enc}/sessions/{SID}", needle, None))
    for body, needle in [
        ({"reason": {"$ne": None}}, "reason"),
        ({"period": {"$gt": 0}}, "unknown unit"),
        ({"period": {"hours": {"$gt": 0}}}, "period"),
        ({"$where": "this.active"}, "unknown field"),
        ({"reason": "x", "$set": {"active": False}}, "unknown field"),
        ({"period": {"hours": "1"}}, "period"),
        ({"period": {"hours": True}}, "period"),
        ({"period": {"hours": 1e308}}, "period"),
        ({"period": {"hours": -1}}, "negative"),
        ({"period": {}}, "period"),
        ({"period": "1h"}, "period"),
    ]:
        out.append(("injection: action body", "POST", f"{act}/lock", needle, body))
    for raw, needle in [(b'{"period": {"hours": NaN}}', "finite"), (b'{"period": {"hours": Infinity}}', "finite"),
                        (b'{"period": {"hours": -Infinity}}', "period"),
                        (b'{"period": {"hours": 1' + b"0" * 400 + b"}}", "period")]:  # fmt: skip
        out.append(("injection: action body", "POST", f"{act}/block", needle, raw))
    for body, needle in [
        ({"state": {"$ne": "locked"}}, "state"),
        ({"state": "locked", "filter": {"$where": "1"}}, "unknown field"),
        ({"state": "locked", "dry_run": "yes"}, "dry_run"),
        ({"state": "active"}, "state"),
        ({"state": "locked", "query": {"active": {"$exists": True}}}, "unknown field"),
        ({"$or": [{"state": "locked"}]}, "state"),
    ]:
        out.append(("injection: bulk body", "POST", bulk, needle, body))
    for query, needle in [
        ("pool[$ne]=x", "unknown field"), ("pool=%24where", "pool"), ("session_id[$gt]=", "unknown field"),
        ("session_id=%7B%22%24ne%22%3Anull%7D", "ObjectId"), ("action[$ne]=lock", "unknown field"),
        ("action=%24where", "action"), ("since[$gt]=2020-01-01", "unknown field"),
        ("pool=%7B%22%24ne%22%3Anull%7D", "pool"), ("actor=alice%27%20%7C%7C%201%3D%3D1", "actor"),
        ("request_id=%24where", "request_id"), ("page_size=-1", "page_size"), ("page=1e9", "page"),
        ("order=1", "order"), ("order[$ne]=asc", "unknown field"), ("until=0.5", "until"),
        ("since=1700000000", "since"), ("pool=a&pool=b", "more than once"), ("%24where=1", "unknown field"),
    ]:  # fmt: skip
        out.append(("injection: audit query string", "GET", f"/admin/audit?{query}", needle, None))
    too_big = b'{"reason": "' + b"a" * (16 * 1024) + b'"}'
    out.append(("oversized body", "POST", f"{act}/lock", "larger than", too_big))
    out.append(("oversized body", "POST", bulk, "larger than", b'{"state": "locked", "reason": "' + b"b" * 20_000))
    out.append(("oversized body", "POST", f"{act}/block", "larger than", b"[" * 200_000))
    out.append(("deeply nested body", "POST", f"{act}/lock", "", b"[" * NEST + b"]" * NEST))
    out.append(("deeply nested body", "POST", f"{act}/lock", "",
                b'{"period": ' + b'{"a": ' * NEST + b"1" + b"}" * NEST + b"}"))  # fmt: skip
    out.append(("deeply nested body", "POST", f"{act}/lock", "nested",
                b'{"reason": ' + b"[" * 2000 + b"]" * 2000 + b"}"))  # fmt: skip
    out.append(("deeply nested body", "POST", bulk, "", b'{"state": ' + b"{" * 4000 + b"}" * 4000 + b"}"))
    for raw in [b'{"reason": "\xff"}', b'{"reason": "\xc0\xaf"}', b'{"reason": "\xed\xa0\x80"}',
                b'{"reason": "\x80"}', b"\xfe\xff", b'{"state": "locked\xf5"}']:  # fmt: skip
        path = bulk if b"state" in raw else f"{act}/lock"
        out.append(("invalid UTF-8", "POST", path, "UTF-8", raw))
    out.append(("invalid UTF-8", "GET", f"/admin/pools/{POOL}/sessions/%FF%FE", "session id", None))
    out.append(("invalid UTF-8", "GET", "/admin/audit?pool=%FF", "pool", None))
    for body, path in [
        ({"reasn": "x"}, f"{act}/lock"),
        ({"reason": "x", "extra": 1}, f"{act}/unlock"),
        ({"state": "locked", "force": True}, bulk),
        ({"period": {"hours": 1}, "hold": "use"}, f"{act}/lock"),
    ]:
        out.append(("unknown field", "POST", path, "unknown field", body))
    out.append(("unknown field", "GET", "/admin/audit?foo=bar", "unknown field", None))
    out.append(("unknown action", "POST", f"{act}/drop", "unknown action", None))
    out.append(("unknown action", "POST", f"{act}/%24where", "unknown action", None))
    for method in ("PUT", "PATCH", "DELETE"):
        out.append(("wrong method", method, f"{act}/lock", "", None))
        out.append(("wrong method", method, "/admin/pools", "", None))
    out.append(("not JSON", "POST", f"{act}/lock", "JSON", b"reason=x&period=1"))
    out.append(("not JSON", "POST", bulk, "JSON object", b'"locked"'))
    return out


ATTACKS = _attacks()


def test_hostile_requests_are_rejected_and_change_nothing(target: Target, report: Report) -> None:
    """Every hostile request gets a 4xx with a JSON error and a clear message; the database is unchanged."""
    before = target.snapshot()
    tried: dict[str, int] = {}
    statuses: dict[str, int] = {}
    wrong: list[str] = []
    with target.daemon.client(WRITE_TOKEN) as http:
        for category, method, path, needle, body in ATTACKS:
            url = path.replace(SID, str(target.ids[1]))
            if isinstance(body, bytes):
                response = http.request(method, url, content=body, headers={"Content-Type": "application/json"})
            else:
                response = http.request(method, url, json=body)
            where = f"{category}: {method} {url[:100]} {str(body)[:60]} -> {response.status_code} {response.text[:200]}"
            try:
                error = response.json()
            except ValueError:
                error = {}
            if not (
                400 <= response.status_code < 500
                and isinstance(error.get("error"), str) and error["error"]
                and isinstance(error.get("message"), str) and len(error["message"]) >= 8
                and needle.lower() in error["message"].lower()
                and "Traceback" not in response.text
            ):  # fmt: skip
                wrong.append(where)
            tried[category] = tried.get(category, 0) + 1
            statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1
    assert not wrong, "\n".join(wrong)
    assert target.snapshot() == before
    assert target.daemon.alive()
    report.record("hostile", "rejected_by_category", tried)
    report.record("hostile", "rejected_statuses", statuses)
    report.record("hostile", "hostile_requests", len(ATTACKS))


def test_chunked_oversized_body_is_refused(target: Target, report: Report) -> None:
    """A body streamed without Content-Length is cut off at the limit, not read into memory."""
    before = target.snapshot()

    def stream() -> Iterator[bytes]:
        yield b'{"reason": "'
        for _ in range(1024):
            yield b"x" * 1024  # 1 MiB in total

    url = f"/admin/pools/{POOL}/sessions/{target.ids[2]}/lock"
    with target.daemon.client(WRITE_TOKEN) as http:
        response = http.post(url, content=stream(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert "larger than" in response.json()["message"]
    assert target.snapshot() == before
    report.add("hostile", "rejected_by_category_chunked", 1)


def test_read_token_and_no_token_cannot_reach_hostile_paths(target: Target) -> None:
    """Authentication comes before parsing: hostile bodies from a read token or no token get 403/401."""
    before = target.snapshot()
    with target.daemon.client(READ_TOKEN) as reader, target.daemon.client(None) as anonymous:
        for _category, method, path, _needle, body in ATTACKS:
            if method != "POST":
                continue
            url = path.replace(SID, str(target.ids[3]))
            kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
            assert reader.request(method, url, **kwargs).status_code in (403, 404), url
            assert anonymous.request(method, url, **kwargs).status_code in (401, 404), url
    assert target.snapshot() == before
