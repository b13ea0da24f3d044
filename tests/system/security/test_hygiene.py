"""Small holes: duplicate credentials, untyped bodies, redirects echoing Host, topology dumps in 503s."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient

from exporter.mongod import Mongod
from tests.support.auth import auth_server
from tests.support.daemon import READ_TOKEN, WRITE_TOKEN, config, running, serving, write_config
from tests.support.figures import Report


def test_one_authorization_header_json_bodies_and_no_redirects(
    mongo_uri: str, unique_name: str, sync_client: MongoClient[dict[str, Any]], report: Report
) -> None:
    """Two Authorization headers: 400 (not "the first wins"); a body that is not application/json: 415;
    a trailing slash: 404 without echoing Host; nothing of it writes anything."""
    coll = sync_client["spe_hygiene"][unique_name]
    sid = coll.insert_one({"active": True, "next_use": None}).inserted_id
    cfg = config(mongo_uri, [{"name": "p", "database": "spe_hygiene", "collection": unique_name}])
    with running(cfg, ready=True) as daemon, httpx.Client(base_url=daemon.url, timeout=10) as http:
        url = f"/admin/pools/p/sessions/{sid}/lock"
        two = http.post(url, headers=[("Authorization", f"Bearer {READ_TOKEN}"),
                                      ("Authorization", f"Bearer {WRITE_TOKEN}")])  # fmt: skip
        assert two.status_code == 400 and "one Authorization header" in two.json()["message"]
        auth = {"Authorization": f"Bearer {WRITE_TOKEN}"}
        form = http.post(
            url, content=b"reason=x", headers={**auth, "Content-Type": "application/x-www-form-urlencoded"}
        )
        assert form.status_code == 415 and "application/json" in form.json()["message"]
        slash = http.get("/admin/pools/", headers={**auth, "Host": "evil.example"})
        assert slash.status_code == 404 and "evil.example" not in slash.text and "location" not in slash.headers
        wrong_length = http.get("/admin/pools", headers={"Authorization": "Bearer " + WRITE_TOKEN + "x"})
        assert wrong_length.status_code == 401
    assert coll.find_one({"_id": sid}) == {"_id": sid, "active": True, "next_use": None}
    report.record("security", "request hygiene", {
        "answer": f"two Authorization {two.status_code}, form body {form.status_code}, trailing slash "
                  f"{slash.status_code} without Host echo, longer token {wrong_length.status_code}",
        "secrets_found": 0,
    })  # fmt: skip


def test_unavailable_answers_name_the_cause_not_the_topology(mongod_factory: Callable[..., Mongod]) -> None:
    """MongoDB stopped: the 503 says "connection refused", never the driver's topology or a host:port."""
    server = mongod_factory()
    client: MongoClient[dict[str, Any]] = MongoClient(server.uri)
    sid = client.db.pool.insert_one({"active": True, "next_use": None}).inserted_id
    client.close()
    cfg = config(server.uri, [{"name": "p", "database": "db", "collection": "pool"}],
                 mongodb={"timeout": 2, "server_selection_timeout": 1})  # fmt: skip
    answers: list[httpx.Response] = []
    with running(cfg, ready=True) as daemon, daemon.client(WRITE_TOKEN) as http:
        server.stop()
        # The first call may still meet a pooled connection closing ("connection closed"); then the cause.
        for _ in range(10):
            answers.append(http.get(f"/admin/pools/p/sessions/{sid}"))
            if "connection refused" in answers[-1].text:
                break
        answers.append(daemon.get("/readyz"))
    assert all(a.status_code == 503 for a in answers), [a.text for a in answers]
    expected = "get: MongoDB is unreachable (no server within 1 s, server_selection_timeout): connection refused"
    assert expected in answers[-2].json()["message"], answers[-2].text
    assert "MongoDB unreachable: connection refused" in answers[-1].text
    for answer in answers:
        assert "Topology" not in answer.text and f"127.0.0.1:{server.port}" not in answer.text, answer.text


async def test_a_wrong_mongodb_password_is_a_503_naming_the_cause(
    mongod_factory: Callable[..., Mongod], tmp_path: Path, report: Report
) -> None:
    """A daemon whose MongoDB login is refused answers admin reads and writes 503 with Retry-After and
    "authentication failed", as documented (not 502 operation_failed), and never shows the password.

    The driver forgets the server after a refused login and finds it again at its next heartbeat: a
    request made while it knows the server reaches the login itself, the case that was a 502. The
    daemon runs in-process so the test can wait for that moment (and refreshes rarely, so they do not
    take it).
    """
    server = auth_server(mongod_factory)
    right = server.add_user("spe", "Right-Pw-5d1c", ["root"])
    with server.root() as root:
        sid = root.db.pool.insert_one({"active": True, "next_use": None}).inserted_id
    # The driver checks a forgotten server again every heartbeat: every 0.5 s here instead of 10 s.
    wrong = right.replace("Right-Pw-5d1c", "Wrong-Pw-0b7e") + "&heartbeatFrequencyMS=500"
    cfg = config(wrong, [{"name": "p", "database": "db", "collection": "pool"}],
                 mongodb={"timeout": 2, "server_selection_timeout": 1},
                 defaults={"interval": 60, "jitter": 0, "refresh_timeout": 5})  # fmt: skip
    answers: list[httpx.Response] = []
    async with serving(write_config(tmp_path, cfg)) as daemon, daemon.client(WRITE_TOKEN) as http:
        client = daemon.collector.client
        for request in [("GET", f"/admin/pools/p/sessions/{sid}"), ("POST", f"/admin/pools/p/sessions/{sid}/lock")] * 3:
            for _ in range(100):
                if client.topology_description.has_readable_server():
                    break
                await asyncio.sleep(0.02)
            answers.append(await http.request(*request))
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "5" and answer.json()["error"] == "unavailable"
        assert "authentication failed" in answer.json()["message"] and "Wrong-Pw" not in answer.text
    report.record("security", "wrong MongoDB password on admin routes", {
        "answer": f"{answers[0].status_code} with Retry-After: {answers[0].json()['message']}", "secrets_found": 0,
    })  # fmt: skip
