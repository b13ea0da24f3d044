"""Tests of the admin API over real HTTP against a real mongod."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient

from exporter import MongoSessions, State
from exporter.admin.auth import Role
from exporter.admin.endpoints import ENDPOINTS
from exporter.mongod import Mongod
from tests.support.daemon import READ_TOKEN, WRITE_TOKEN, config, serving, write_config
from tests.support.daemon import InProcess as Daemon

SyncClient = MongoClient[dict[str, Any]]
AUDIT_DB = "session_pool_exporter"


@pytest.fixture
async def pool_name(sync_client: SyncClient, unique_name: str) -> str:
    """A fresh collection with 6 sessions; its name doubles as the pool name."""
    coll = sync_client["spe_admin"][unique_name]
    coll.insert_many(
        [
            {"active": True, "count_use": 0, "count_success": 0, "last_use": None, "next_use": None,
             "session": {"login": f"u{i}", "password": f"secret-password-{i}"}}
            for i in range(6)
        ]
    )  # fmt: skip
    return unique_name


@pytest.fixture
async def daemon(tmp_path: Path, mongo_uri: str, pool_name: str) -> AsyncIterator[Daemon]:
    """The daemon with admin tokens and one pool."""
    path = write_config(
        tmp_path,
        config(
            mongo_uri,
            [{"name": pool_name, "database": "spe_admin", "collection": pool_name}],
            admin={
                "max_period": 86400,
                "bulk_unlock_cap": 3,
                "reason_max_length": 50,
                "audit": {"database": AUDIT_DB, "collection": pool_name},
            },
        ),
    )
    async with serving(path) as d:
        yield d


def ids(sync_client: SyncClient, pool: str) -> list[ObjectId]:
    return [d["_id"] for d in sync_client["spe_admin"][pool].find().sort("_id", 1)]


def audit(sync_client: SyncClient, pool: str) -> list[dict[str, Any]]:
    return list(sync_client[AUDIT_DB][pool].find().sort("time", 1))


async def test_admin_routes_are_off_without_tokens(tmp_path: Path, mongo_uri: str, pool_name: str) -> None:
    path = write_config(
        tmp_path,
        config(mongo_uri, [{"name": pool_name, "database": "spe_admin", "collection": pool_name}], tokens=False),
    )
    async with serving(path) as d, d.client(WRITE_TOKEN) as http:
        assert d.admin is None
        for method, url in [("GET", "/admin/pools"), ("POST", f"/admin/pools/{pool_name}/unlock"),
                            ("GET", "/admin/openapi.json"), ("GET", "/admin/audit")]:  # fmt: skip
            response = await http.request(method, url)
            assert response.status_code == 404, (method, url)
            assert response.json()["message"].startswith("the admin API is off: configure a token"), response.text
        assert (await http.get("/metrics")).status_code == 200


async def test_auth_matrix(daemon: Daemon, pool_name: str, sync_client: SyncClient) -> None:
    sid = ids(sync_client, pool_name)[0]
    write_url = f"/admin/pools/{pool_name}/sessions/{sid}/lock"
    read_url = f"/admin/pools/{pool_name}/sessions/{sid}"
    for token, read_code, write_code in [
        (None, 401, 401),
        ("wrong-token", 401, 401),
        (READ_TOKEN, 200, 403),
        (WRITE_TOKEN, 200, 200),
    ]:
        async with daemon.client(token) as http:
            r = await http.get(read_url)
            assert r.status_code == read_code, (token, r.text)
            w = await http.post(write_url)
            assert w.status_code == write_code, (token, w.text)
            if write_code == 401:
                assert w.headers["www-authenticate"].startswith("Bearer")
                assert w.json()["error"] == "unauthorized"
            if write_code == 403:
                assert "role 'read'" in w.json()["message"]
    async with daemon.client(None) as http:
        basic = await http.get(read_url, headers={"Authorization": "Basic YWxpY2U6cHc="})
        assert basic.status_code == 401
    # Only the one authorised write happened, and it was audited under the token's name.
    events = audit(sync_client, pool_name)
    assert [(e["actor"], e["action"], e["result"]) for e in events] == [("alice", "lock", "changed")]


def operations(document: dict[str, Any], values: dict[str, str]) -> list[tuple[str, str, str]]:
    """Every (method, URL, role) the OpenAPI document describes, each enum path parameter at each of its values."""
    found = []
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            urls = [path]
            for parameter in operation.get("parameters", []):
                if parameter["in"] != "path":
                    continue
                name = parameter["name"]
                choices = parameter["schema"].get("enum", [values.get(name)])
                urls = [url.replace(f"{{{name}}}", str(choice)) for url in urls for choice in choices]
            found += [(method.upper(), url, operation["x-role"]) for url in urls]
    return found


async def test_every_route_refuses_no_token_and_every_write_route_a_read_token(
    daemon: Daemon, pool_name: str, sync_client: SyncClient
) -> None:
    """Walks the API's own OpenAPI document: without a token every route answers 401, with a read token every
    write (non-GET) route answers 403, and nothing is written; the roles are the endpoint table's."""
    sid = ids(sync_client, pool_name)[0]
    before = list(sync_client["spe_admin"][pool_name].find().sort("_id", 1))
    async with daemon.client(READ_TOKEN) as http:
        document = (await http.get("/admin/openapi.json")).json()
    routes = [
        ("GET", "/admin/openapi.json", "read"),
        *operations(document, {"pool": pool_name, "session_id": str(sid)}),
    ]
    table = {(e.path, e.method, e.role.value) for e in ENDPOINTS if e.role is not Role.PUBLIC}
    described = {
        (path, method.upper(), op["x-role"]) for path, ops in document["paths"].items() for method, op in ops.items()
    }
    assert table == described | {("/admin/openapi.json", "GET", "read")}
    assert all((method != "GET") == (role == "write") for method, _, role in routes)
    writes = [(method, url) for method, url, role in routes if role == "write"]
    assert len(writes) == 1 + 5  # the bulk unlock and each of the five actions
    bodies = {f"/admin/pools/{pool_name}/unlock": {"state": "locked"}}
    async with daemon.client(None) as anonymous, daemon.client(READ_TOKEN) as reader:
        for method, url, _ in routes:
            response = await anonymous.request(method, url, json=bodies.get(url, {}) if method == "POST" else None)
            assert response.status_code == 401, (method, url, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer"), (method, url)
            assert response.json()["error"] == "unauthorized", (method, url)
        for method, url in writes:
            response = await reader.request(method, url, json=bodies.get(url, {}))
            assert response.status_code == 403, (method, url, response.text)
            assert response.json()["message"] == "token 'reader' has role 'read'; this route needs 'write'", url
        for method, url, role in routes:
            if role == "read":
                response = await reader.request(method, url)
                assert response.status_code not in (401, 403), (method, url, response.text)
    assert list(sync_client["spe_admin"][pool_name].find().sort("_id", 1)) == before
    assert audit(sync_client, pool_name) == []


async def test_list_pools_and_openapi(daemon: Daemon, pool_name: str) -> None:
    await daemon.collector.refresh(pool_name)
    await daemon.collector.read_sums(pool_name)
    async with daemon.client(READ_TOKEN) as http:
        body = (await http.get("/admin/pools")).json()
        (pool,) = body["pools"]
        assert pool["name"] == pool_name and pool["up"] is True and pool["active"] == 6
        assert pool["statistics"]["states"] == {"active": 6, "in_use": 0, "locked": 0, "blocked": 0, "inactive": 0}
        assert pool["statistics"]["total"] == 6
        # The sums come from their own, slower pass; the view carries them with their time.
        assert (pool["statistics"]["uses"], pool["statistics"]["successes"]) == (0, 0)
        assert pool["statistics"]["sums_time"] is not None
        spec = (await http.get("/admin/openapi.json")).json()
        assert spec["openapi"].startswith("3.")
        assert set(spec["paths"]) == {
            "/admin/pools", "/admin/pools/{pool}/sessions/{session_id}",
            "/admin/pools/{pool}/sessions/{session_id}/{action}", "/admin/pools/{pool}/unlock", "/admin/audit",
            "/admin/pools/{pool}/sessions", "/admin/pools/{pool}/sessions/{session_id}/history",
            "/admin/pools/{pool}/states",
        }  # fmt: skip


async def test_get_session_view_hides_credentials(daemon: Daemon, pool_name: str, sync_client: SyncClient) -> None:
    sid = ids(sync_client, pool_name)[0]
    async with daemon.client(READ_TOKEN) as http:
        view = (await http.get(f"/admin/pools/{pool_name}/sessions/{sid}")).json()
    assert view["id"] == str(sid) and view["state"] == "active" and view["count_use"] == 0
    assert "session" not in view and "secret-password" not in str(view)
    assert view["set_by"] is None


async def test_credentials_only_when_config_allows(
    tmp_path: Path, mongo_uri: str, pool_name: str, sync_client: SyncClient
) -> None:
    path = write_config(
        tmp_path,
        config(
            mongo_uri,
            [{"name": pool_name, "database": "spe_admin", "collection": pool_name}],
            admin={"expose_credentials": True},
        ),
    )
    sid = ids(sync_client, pool_name)[0]
    async with serving(path) as d, d.client(READ_TOKEN) as http:
        view = (await http.get(f"/admin/pools/{pool_name}/sessions/{sid}")).json()
    assert view["session"] == {"login": "u0", "password": "secret-password-0"}


async def test_every_action_before_after_and_unchanged(daemon: Daemon, pool_name: str, sync_client: SyncClient) -> None:
    sid = ids(sync_client, pool_name)[0]
    base = f"/admin/pools/{pool_name}/sessions/{sid}"
    steps = [
        ("lock", {"period": {"minutes": 5}, "reason": "rate limited"}, "active", "locked", "changed"),
        ("lock", None, "locked", "locked", "unchanged"),
        ("block", {"period": {"hours": 2}}, "locked", "blocked", "changed"),
        ("unlock", None, "blocked", "active", "changed"),
        ("unlock", None, "active", "active", "unchanged"),
        ("deactivate", {"reason": "leaks failures"}, "active", "inactive", "changed"),
        ("deactivate", None, "inactive", "inactive", "unchanged"),
        ("activate", None, "inactive", "active", "changed"),
        ("activate", None, "active", "active", "unchanged"),
    ]
    async with daemon.client() as http:
        for action, body, before, after, result in steps:
            r = await http.post(f"{base}/{action}", json=body, headers={"X-Request-ID": f"req-{action}"})
            assert r.status_code == 200, r.text
            answer = r.json()
            assert (answer["state_before"], answer["state_after"], answer["result"]) == (before, after, result), action
            assert answer["session"]["state"] == after
            assert r.headers["x-request-id"] == f"req-{action}"
        view = (await http.get(base)).json()
    assert view["state"] == "active"
    events = audit(sync_client, pool_name)
    assert [(e["action"], e["state_before"], e["state_after"], e["result"]) for e in events] == [
        (a, b, c, r) for a, _, b, c, r in steps
    ]
    lock_event = events[0]
    assert lock_event["actor"] == "alice" and lock_event["reason"] == "rate limited"
    assert lock_event["session_id"] == str(sid) and lock_event["pool"] == pool_name
    assert lock_event["request_id"] == "req-lock" and lock_event["period_seconds"] == 300
    assert abs(lock_event["time"].replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=1)
    # Tokens never reach the audit trail.
    assert WRITE_TOKEN not in str(events) and READ_TOKEN not in str(events)
    # Metrics count applied actions per pool and action.
    async with daemon.client(None) as http:
        metrics = (await http.get("/metrics")).text
    assert f'session_pool_admin_actions_total{{action="lock",pool="{pool_name}"}} 2.0' in metrics
    # Every action starts at 0 so rate() sees the first one.
    assert f'session_pool_admin_action_failures_total{{action="block",pool="{pool_name}"}} 0.0' in metrics
    assert f'session_pool_admin_actions_total{{action="bulk_unlock",pool="{pool_name}"}} 0.0' in metrics
    assert WRITE_TOKEN not in metrics


async def test_write_refreshes_the_gauges_at_once(daemon: Daemon, pool_name: str, sync_client: SyncClient) -> None:
    await daemon.collector.refresh(pool_name)
    sid = ids(sync_client, pool_name)[1]
    async with daemon.client() as http:
        r = await http.post(f"/admin/pools/{pool_name}/sessions/{sid}/deactivate")
        assert r.status_code == 200
        metrics = (await http.get("/metrics")).text
    assert f'session_pool_sessions{{pool="{pool_name}",state="inactive"}} 1.0' in metrics
    assert f'session_pool_active_sessions{{pool="{pool_name}"}} 5.0' in metrics


async def test_lock_of_an_inactive_session_conflicts(daemon: Daemon, pool_name: str, sync_client: SyncClient) -> None:
    sid = ids(sync_client, pool_name)[2]
    sync_client["spe_admin"][pool_name].update_one({"_id": sid}, {"$set": {"active": False}})
    async with daemon.client() as http:
        r = await http.post(f"/admin/pools/{pool_name}/sessions/{sid}/block")
    assert r.status_code == 409 and "activate it" in r.json()["message"]
    doc = sync_client["spe_admin"][pool_name].find_one({"_id": sid})
    assert doc is not None and doc["next_use"] is None
    assert audit(sync_client, pool_name) == []


@pytest.mark.parametrize(
    ("path_tail", "body", "status", "needle", "where"),
    [
        ("sessions/not-an-id/lock", None, 400, "malformed session id", "path.session_id"),
        ("sessions/{sid}/explode", None, 422, "unknown action", "path.action"),
        ("sessions/{sid}/lock", {"period": {"years": 1}}, 422, "unknown unit", "body.period"),
        ("sessions/{sid}/lock", {"period": {"hours": -1}}, 422, "negative", "body.period"),
        ("sessions/{sid}/lock", {"period": {"days": 2}}, 422, "period 2d is longer than the allowed maximum 1d",
         "body.period"),
        ("sessions/{sid}/unlock", {"period": {"hours": 1}}, 422, "only applies", "body.period"),
        ("sessions/{sid}/lock", {"perod": {"hours": 1}}, 422, "unknown field", "body.perod"),
        ("sessions/{sid}/lock", {"reason": "x" * 51}, 422, "at most 50", "body.reason"),
        ("sessions/{sid}/lock", {"reason": {"$ne": None}}, 422, "reason", "body.reason"),
        ("sessions/{sid}/lock", [1, 2], 422, "JSON object", "body"),
        ('sessions/{"$ne": null}/lock', None, 400, "malformed session id", "path.session_id"),
        ("unlock", {"state": "inactive"}, 422, "state", "body.state"),
        ("unlock", {}, 422, "state", "body.state"),
        # No body at all is the same answer as `{}`.
        ("unlock", None, 422, "state", "body.state"),
    ],
)  # fmt: skip
async def test_bad_input_is_rejected_and_changes_nothing(
    daemon: Daemon,
    pool_name: str,
    sync_client: SyncClient,
    path_tail: str,
    body: Any,
    status: int,
    needle: str,
    where: str,
) -> None:
    sid = ids(sync_client, pool_name)[0]
    before = list(sync_client["spe_admin"][pool_name].find())
    async with daemon.client() as http:
        r = await http.post(f"/admin/pools/{pool_name}/" + path_tail.replace("{sid}", str(sid)), json=body)
    assert r.status_code == status, r.text
    answer = r.json()
    assert needle in answer["message"], answer
    # One shape for every 4xx: each problem located, the first where the request went wrong.
    assert set(answer) == {"error", "message", "problems"}, answer
    assert all(set(p) == {"location", "message"} for p in answer["problems"]), answer
    assert answer["problems"][0]["location"] == where, answer
    assert list(sync_client["spe_admin"][pool_name].find()) == before
    assert audit(sync_client, pool_name) == []


async def test_raw_body_problems(daemon: Daemon, pool_name: str, sync_client: SyncClient) -> None:
    sid = ids(sync_client, pool_name)[0]
    url = f"/admin/pools/{pool_name}/sessions/{sid}/lock"
    json_type = {"Content-Type": "application/json"}
    async with daemon.client() as http:
        untyped = await http.post(url, content=b'{"reason": "x"}')
        assert untyped.status_code == 415 and "application/json" in untyped.json()["message"]
        assert untyped.json()["problems"][0]["location"] == "header.Content-Type"
        big = await http.post(url, content=b'{"reason": "' + b"a" * 20000 + b'"}')
        assert big.status_code == 413 and "larger than" in big.json()["message"]
        bad_utf8 = await http.post(url, content=b'{"reason": "\xff\xfe"}', headers=json_type)
        assert bad_utf8.status_code == 422 and "UTF-8" in bad_utf8.json()["message"]
        bad_json = await http.post(url, content=b'{"reason": ', headers=json_type)
        assert bad_json.status_code == 422 and "not valid JSON" in bad_json.json()["message"]
        deep = await http.post(url, content=b"[" * 5000 + b"]" * 5000, headers=json_type)
        assert deep.status_code == 422
    assert audit(sync_client, pool_name) == []


async def test_unknown_pool_and_session(daemon: Daemon, pool_name: str) -> None:
    async with daemon.client() as http:
        r = await http.get(f"/admin/pools/nope/sessions/{ObjectId()}")
        assert r.status_code == 404 and "unknown pool" in r.json()["message"]
        r = await http.post(f"/admin/pools/{pool_name}/sessions/{ObjectId()}/unlock")
        assert r.status_code == 404 and "not found" in r.json()["message"]


async def test_bulk_unlock_dry_run_cap_and_apply(daemon: Daemon, pool_name: str, sync_client: SyncClient) -> None:
    coll = sync_client["spe_admin"][pool_name]
    all_ids = ids(sync_client, pool_name)
    now = datetime.now(UTC)
    coll.update_many({"_id": {"$in": all_ids[:4]}}, {"$set": {"hold": "lock", "next_use": now + timedelta(minutes=5)}})
    coll.update_one({"_id": all_ids[4]}, {"$set": {"hold": "block", "next_use": now + timedelta(hours=5)}})
    url = f"/admin/pools/{pool_name}/unlock"
    async with daemon.client() as http:
        dry = (await http.post(url, json={"state": "locked", "dry_run": True})).json()
        assert dry["matched"] == 4 and dry["dry_run"] is True and dry["cap"] == 3
        over = await http.post(url, json={"state": "locked"})
        assert over.status_code == 409 and "nothing was changed" in over.json()["message"]
        assert coll.count_documents({"hold": "lock"}) == 4
        coll.update_one({"_id": all_ids[0]}, {"$set": {"active": False}})  # inactive: not "locked" any more
        done = await http.post(url, json={"state": "locked", "reason": "source recovered"})
        assert done.status_code == 200 and done.json()["changed"] == 3
        blocked = await http.post(url, json={"state": "blocked"})
        assert blocked.json()["changed"] == 1
    assert coll.count_documents({"hold": {"$exists": True}}) == 1  # the inactive one keeps its lock
    events = audit(sync_client, pool_name)
    assert sorted(e["session_id"] for e in events) == sorted(str(i) for i in all_ids[1:5])
    assert all(e["bulk"] is True and e["action"] == "unlock" and e["result"] == "changed" for e in events)


async def test_audit_search_filters_ranges_pages_order(daemon: Daemon, pool_name: str, sync_client: SyncClient) -> None:
    all_ids = ids(sync_client, pool_name)
    async with daemon.client() as http:
        for sid in all_ids[:5]:
            assert (await http.post(f"/admin/pools/{pool_name}/sessions/{sid}/lock")).status_code == 200
        middle = datetime.now(UTC)
        await asyncio.sleep(0.05)
        for sid in all_ids[:2]:
            assert (await http.post(f"/admin/pools/{pool_name}/sessions/{sid}/unlock")).status_code == 200
    async with daemon.client(READ_TOKEN) as http:

        async def search(**params: Any) -> dict[str, Any]:
            r = await http.get("/admin/audit", params={"pool": pool_name, **params})
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            return body

        everything = await search(page_size=100)
        assert everything["total"] == 7
        times = [e["time"] for e in everything["events"]]
        assert times == sorted(times, reverse=True)
        ascending = await search(order="asc")
        assert [e["id"] for e in ascending["events"]] == [e["id"] for e in reversed(everything["events"])]
        assert (await search(action="unlock"))["total"] == 2
        assert (await search(action="lock", session_id=str(all_ids[3])))["total"] == 1
        assert (await search(actor="alice"))["total"] == 7 and (await search(actor="bob"))["total"] == 0
        assert (await search(since=middle.isoformat()))["total"] == 2
        assert (await search(until=middle.isoformat()))["total"] == 5
        pages = [await search(page=p, page_size=3, order="asc") for p in (1, 2, 3)]
        assert [len(p["events"]) for p in pages] == [3, 3, 1]
        assert [e["id"] for p in pages for e in p["events"]] == [e["id"] for e in ascending["events"]]
        for params, needle in [
            ({"session_id": '{"$ne": null}'}, "ObjectId"),
            ({"order": "sideways"}, "order"),
            ({"page": "0"}, "page"),
            ({"page_size": "100000"}, "page_size"),
            ({"since": "yesterday"}, "since"),
            ({"pool[$ne]": "x"}, "unknown field"),
            ({"actor": "$where"}, "actor"),
        ]:
            r = await http.get("/admin/audit", params=params)
            assert r.status_code == 422 and needle in r.json()["message"], (params, r.text)
        both = await http.get("/admin/audit", params=[("pool", "a"), ("pool", "b")])
        assert both.status_code == 422


async def test_audit_retention_is_a_ttl_index(daemon: Daemon, pool_name: str, sync_client: SyncClient) -> None:
    sid = ids(sync_client, pool_name)[0]
    async with daemon.client() as http:
        assert (await http.post(f"/admin/pools/{pool_name}/sessions/{sid}/lock")).status_code == 200
    info = sync_client[AUDIT_DB][pool_name].index_information()
    assert info["ttl_time"]["expireAfterSeconds"] == 7_776_000


async def test_failed_audit_write_rolls_back_the_change(
    daemon: Daemon, pool_name: str, sync_client: SyncClient
) -> None:
    sid = ids(sync_client, pool_name)[0]
    before = sync_client["spe_admin"][pool_name].find_one({"_id": sid})
    sync_client.admin.command(
        "configureFailPoint", "failCommand", mode={"times": 1},
        data={"failCommands": ["insert"], "errorCode": 2, "appName": "session-pool-exporter"},
    )  # fmt: skip
    try:
        async with daemon.client() as http:
            r = await http.post(f"/admin/pools/{pool_name}/sessions/{sid}/deactivate")
    finally:
        sync_client.admin.command("configureFailPoint", "failCommand", mode="off")
    assert r.status_code == 502 and "Traceback" not in r.text
    assert sync_client["spe_admin"][pool_name].find_one({"_id": sid}) == before
    # The rolled-back attempt is recorded outside the transaction, as failed with the server's error.
    (event,) = audit(sync_client, pool_name)
    assert (event["result"], event["state_after"], event["session_id"]) == ("failed", None, str(sid))
    assert "BadValue (2)" in event["error"]
    async with daemon.client(None) as http:
        metrics = (await http.get("/metrics")).text
    assert f'session_pool_admin_action_failures_total{{action="deactivate",pool="{pool_name}"}} 1.0' in metrics


async def test_connection_killed_mid_transaction_leaves_nothing(
    daemon: Daemon, pool_name: str, sync_client: SyncClient
) -> None:
    sid = ids(sync_client, pool_name)[0]
    before = sync_client["spe_admin"][pool_name].find_one({"_id": sid})
    sync_client.admin.command(
        "configureFailPoint", "failCommand", mode={"times": 20},
        data={"failCommands": ["commitTransaction", "insert"], "closeConnection": True,
              "appName": "session-pool-exporter"},
    )  # fmt: skip
    try:
        async with daemon.client() as http:
            r = await http.post(f"/admin/pools/{pool_name}/sessions/{sid}/deactivate")
    finally:
        sync_client.admin.command("configureFailPoint", "failCommand", mode="off")
    assert r.status_code in (502, 503, 504), r.text
    assert sync_client["spe_admin"][pool_name].find_one({"_id": sid}) == before
    assert audit(sync_client, pool_name) == []


async def test_admin_unlocks_racing_handlers_lose_no_update(
    daemon: Daemon, pool_name: str, sync_client: SyncClient, mongo_uri: str
) -> None:
    all_ids = ids(sync_client, pool_name)
    handlers = MongoSessions(mongo_uri, "spe_admin", pool_name, next_use_delay=0.05)
    await handlers.connect()
    taken = 0

    async def handler() -> None:
        nonlocal taken
        for _ in range(10):
            if await handlers.get_session() is not None:
                taken += 1
            await asyncio.sleep(0)

    async def operator(http: Any) -> list[int]:
        codes = []
        for i in range(12):
            sid = all_ids[i % len(all_ids)]
            action = "lock" if i % 2 == 0 else "unlock"
            codes.append((await http.post(f"/admin/pools/{pool_name}/sessions/{sid}/{action}")).status_code)
        return codes

    try:
        async with daemon.client() as http:
            results = await asyncio.gather(*(handler() for _ in range(32)), operator(http))
    finally:
        await handlers.close()
    codes = results[-1]
    assert codes == [200] * 12
    total_uses = sum(d["count_use"] for d in sync_client["spe_admin"][pool_name].find())
    assert total_uses == taken > 0
    # Twelve actions, each audited; repeats of an action that changed nothing count on one event.
    assert sum(1 + e.get("repeats", 0) for e in audit(sync_client, pool_name)) == 12


async def test_mongodb_down_gives_503_with_retry_after(tmp_path: Path, mongod_factory: Callable[..., Mongod]) -> None:
    server = mongod_factory()
    seed: SyncClient = MongoClient(server.uri)
    sid = seed["db"]["pool"].insert_one({"active": True, "next_use": None}).inserted_id
    seed.close()
    path = write_config(
        tmp_path,
        config(
            server.uri,
            [{"name": "p", "database": "db", "collection": "pool"}],
            mongodb={"timeout": 2, "server_selection_timeout": 1},
        ),
    )
    async with serving(path) as d:
        server.stop()
        async with d.client() as http:
            r = await http.post(f"/admin/pools/p/sessions/{sid}/lock")
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"].isdigit()
            assert "Traceback" not in r.text
            g = await http.get(f"/admin/pools/p/sessions/{sid}")
            assert g.status_code == 503
        server.start()
        async with d.client() as http:
            r = await http.post(f"/admin/pools/p/sessions/{sid}/lock")
            assert r.status_code == 200, r.text


async def test_standalone_writes_intent_first(tmp_path: Path, mongod_factory: Callable[..., Mongod]) -> None:
    server = mongod_factory(replica_set=None)
    seed: SyncClient = MongoClient(server.uri)
    sid = seed["db"]["pool"].insert_one({"active": True, "next_use": None}).inserted_id
    path = write_config(
        tmp_path,
        config(
            server.uri,
            [{"name": "p", "database": "db", "collection": "pool"}],
            admin={"audit": {"database": "audit", "collection": "events"}},
        ),
    )
    try:
        async with serving(path) as d, d.client() as http:
            ok = await http.post(f"/admin/pools/p/sessions/{sid}/deactivate", json={"reason": "dead"})
            assert ok.status_code == 200 and ok.json()["state_after"] == "inactive"
            (event,) = seed["audit"]["events"].find()
            assert event["result"] == "changed" and event["state_after"] == "inactive"
            seed.admin.command(
                "configureFailPoint", "failCommand", mode={"times": 1},
                data={"failCommands": ["update"], "errorCode": 2, "appName": "session-pool-exporter"},
            )  # fmt: skip
            failed = await http.post(f"/admin/pools/p/sessions/{sid}/activate")
            assert failed.status_code == 502
            events = list(seed["audit"]["events"].find().sort("time", 1))
            assert [e["result"] for e in events] == ["changed", "failed"]
            doc = seed["db"]["pool"].find_one({"_id": sid})
            assert doc is not None and doc["active"] is False
            state = State.INACTIVE
            assert events[-1]["state_before"] == str(state)
    finally:
        seed.admin.command("configureFailPoint", "failCommand", mode="off")
        seed.close()
