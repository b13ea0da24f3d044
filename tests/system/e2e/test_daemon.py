"""The daemon as a real subprocess over HTTP against a real mongod: truthful gauges, outages, shutdown."""

from __future__ import annotations

import itertools
import json
import signal
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pymongo import MongoClient
from pymongo.collection import Collection

from exporter.core import STATES
from exporter.mongod import Mongod, free_port
from tests.support.daemon import running
from tests.support.metrics import Samples, value

pytestmark = pytest.mark.integration

LOCK_TIME = 6000.0
GRACE = 3000.0
TOKEN = "daemon-test-token-" + uuid.uuid4().hex

Doc = dict[str, Any]


def _config(pools: list[dict[str, Any]], **defaults: Any) -> dict[str, Any]:
    """A daemon config for the given pools."""
    return {
        "log": {"level": "info", "format": "json"},
        "mongodb": {"timeout": 2, "server_selection_timeout": 1},
        "defaults": {"interval": 0.5, "sums_interval": 0.5, "jitter": 0, "refresh_timeout": 2,
                     "lock_time": LOCK_TIME, "grace": GRACE, **defaults},
        "pools": pools,
    }  # fmt: skip


# --- an independent model of the pool, written with plain PyMongo queries -------------------------


def expected(
    coll: Collection[Doc], now: datetime, active: str = "active", next_use: str = "next_use"
) -> dict[str, Any]:
    """Counts and key values of a pool by the documented rules, computed here (not by the code under test).

    Inactive unless `active` is true; active when `next_use` is missing, null or not later than
    now; a held session counts by its hold marker when `hold.until` equals `next_use`, else by
    the time left (more than lock_time: blocked; more than grace: locked; else in use).
    """
    lock_edge, grace_edge = now + timedelta(seconds=LOCK_TIME), now + timedelta(seconds=GRACE)
    by_kind = {"use": "in_use", "lock": "locked", "block": "blocked"}
    states = dict.fromkeys(["active", "in_use", "locked", "blocked", "inactive"], 0)
    unlocks: list[datetime] = []
    oldest: datetime | None = None
    docs = list(coll.find({}))
    for doc in docs:
        if doc.get(active) is not True:
            states["inactive"] += 1
            continue
        until = doc.get(next_use)
        if not isinstance(until, datetime) or until <= now:
            states["active"] += 1
            last = doc.get("last_use")
            if isinstance(last, datetime) and (oldest is None or last < oldest):
                oldest = last
            continue
        hold = doc.get("hold")
        kind = hold.get("kind") if isinstance(hold, dict) and hold.get("until") == until else None
        state = by_kind.get(str(kind)) or (
            "blocked" if until > lock_edge else "locked" if until > grace_edge else "in_use"
        )
        states[state] += 1
        if state in ("locked", "blocked"):
            unlocks.append(until)
    return {
        "states": states,
        "active_sessions": states["active"],
        "uses": sum(d.get("count_use", 0) for d in docs),
        "successes": sum(d.get("count_success", 0) for d in docs),
        "next_unlock": min(unlocks).timestamp() if unlocks else None,
        "oldest": oldest.timestamp() if oldest else None,
    }


def observed(samples: Samples, pool: str) -> dict[str, Any]:
    """The same values as the daemon exports them."""
    states = {str(s): value(samples, "session_pool_sessions", pool=pool, state=str(s)) for s in STATES}
    return {
        "states": states,
        "active_sessions": value(samples, "session_pool_active_sessions", pool=pool),
        "uses": value(samples, "session_pool_uses", pool=pool),
        "successes": value(samples, "session_pool_successes", pool=pool),
        "next_unlock": value(samples, "session_pool_next_unlock_timestamp_seconds", pool=pool),
        "oldest": value(samples, "session_pool_oldest_active_last_use_timestamp_seconds", pool=pool),
    }


def assert_matches(samples: Samples, pool: str, want: dict[str, Any]) -> None:
    """Exported values equal the independent ones (timestamps to the millisecond BSON keeps)."""
    got = observed(samples, pool)
    assert got["states"] == {k: float(v) for k, v in want["states"].items()}, pool
    for key in ("active_sessions", "uses", "successes"):
        assert got[key] == float(want[key]), (pool, key)
    for key in ("next_unlock", "oldest"):
        if want[key] is None:
            assert got[key] is None, (pool, key)
        else:
            assert got[key] == pytest.approx(want[key], abs=0.002), (pool, key)


# --- data ------------------------------------------------------------------------------------------


def seed_main(coll: Collection[Doc], now: datetime) -> None:
    """Every state, with explicit holds and with the original library's hold-less documents."""
    s = timedelta(seconds=1)
    docs: list[Doc] = []

    def add(n: int, **fields: Any) -> None:
        """Append n documents with the given fields."""
        for _ in range(n):
            i = len(docs)
            docs.append({"active": True, "count_use": i * 3, "count_success": i, "last_use": now - (100 + i) * s,
                         "next_use": None, "session": {"login": f"u{i}"}, **fields})  # fmt: skip

    def marked(kind: str, seconds: int) -> Doc:
        """A hold as this library writes it: next_use and a marker recording the same time."""
        return {"next_use": now + seconds * s, "hold": {"kind": kind, "until": now + seconds * s}}

    add(6)
    add(2, next_use=now - 30 * s)
    add(1, active=None)
    docs.append({"count_use": 2, "session": {"login": "bare"}})  # no active, no next_use at all
    add(3, **marked("use", 3600))
    add(3, **marked("lock", 1000))
    add(1, **marked("lock", 900))
    add(2, **marked("block", 20000))
    add(1, next_use=now + 7000 * s)  # legacy: beyond lock_time -> blocked
    add(2, next_use=now + 4000 * s)  # legacy: beyond grace -> locked
    add(1, next_use=now + 2000 * s)  # legacy: within grace -> in use
    add(1, next_use=now + 7000 * s, hold={"kind": "use", "until": now + 5 * s})  # stale marker -> blocked
    add(1, next_use=now + 2000 * s, hold="lock")  # a 0.1.0 marker: legacy -> in use
    add(3, active=False)
    add(1, active=False, **marked("lock", 1000))
    add(1, active="no")
    coll.insert_many(docs)


def seed_renamed(coll: Collection[Doc], now: datetime) -> None:
    """A pool with renamed `active` and `next_use` fields."""
    docs: list[Doc] = [{"enabled": True, "free_at": None, "count_use": 1, "last_use": now - timedelta(hours=1)}
                       for _ in range(4)]  # fmt: skip
    docs += [{"enabled": False, "free_at": None, "count_use": 5, "count_success": 2} for _ in range(2)]
    blocked_until = now + timedelta(hours=5)
    docs += [{"enabled": True, "free_at": blocked_until, "hold": {"kind": "block", "until": blocked_until}}]
    coll.insert_many(docs)


# --- tests -----------------------------------------------------------------------------------------


def test_gauges_equal_independent_counts_and_follow_changes(
    mongo_uri: str, sync_client: MongoClient[Doc], unique_name: str
) -> None:
    """Every exported value matches plain PyMongo queries, before and after the data changes."""
    db = sync_client["spe_daemon"]
    main, renamed = db[unique_name], db[unique_name + "_r"]
    now = datetime.now(UTC)
    seed_main(main, now)
    seed_renamed(renamed, now)
    pools = [
        {"name": "main", "database": "spe_daemon", "collection": main.name, "min_active_sessions": 3},
        {"name": "renamed", "database": "spe_daemon", "collection": renamed.name, "interval": 0.7,
         "fields": {"active": "enabled", "next_use": "free_at"}},
    ]  # fmt: skip
    env = {"SESSION_POOL_EXPORTER_MONGODB__URI": mongo_uri, "SESSION_POOL_EXPORTER_ADMIN_TOKEN": TOKEN}
    with running(_config(pools), env) as daemon:
        daemon.wait_ready()
        daemon.wait_refreshes(["main", "renamed"])
        samples = daemon.samples()
        t = datetime.now(UTC)
        assert_matches(samples, "main", expected(main, t))
        assert_matches(samples, "renamed", expected(renamed, t, active="enabled", next_use="free_at"))
        assert value(samples, "session_pool_up", pool="main") == 1.0
        assert value(samples, "session_pool_min_active_sessions", pool="main") == 3.0
        assert value(samples, "session_pool_min_active_sessions", pool="renamed") == 1.0
        assert value(samples, "session_pool_refresh_interval_seconds", pool="renamed") == 0.7
        assert value(samples, "session_pool_refresh_failures_total", pool="main") == 0.0
        assert (value(samples, "session_pool_last_success_timestamp_seconds", pool="main") or 0) > now.timestamp()
        assert any(name == "session_pool_build_info" for name, _ in samples)
        assert any(name.startswith("process_") for name, _ in samples)
        assert any(name.startswith("python_") for name, _ in samples)

        # Change the database behind the daemon's back; the next refreshes must show it.
        actives = [d["_id"] for d in main.find({"hold": {"$exists": False}, "active": True, "next_use": None})]
        later = datetime.now(UTC)
        until = later + timedelta(seconds=500)
        main.update_many({"_id": {"$in": actives[:2]}}, {"$set": {"hold": {"kind": "lock", "until": until},
                                                                  "next_use": until}})  # fmt: skip
        main.update_one({"_id": actives[2]}, {"$set": {"active": False}})
        main.delete_one({"hold.kind": "block"})
        main.insert_many([{"active": True, "count_use": 40, "count_success": 7, "last_use": later - timedelta(
            days=3)} for _ in range(3)])  # fmt: skip
        renamed.update_many({"enabled": False}, {"$set": {"enabled": True}})
        daemon.wait_refreshes(["main", "renamed"])
        samples = daemon.samples()
        t = datetime.now(UTC)
        assert_matches(samples, "main", expected(main, t))
        assert_matches(samples, "renamed", expected(renamed, t, active="enabled", next_use="free_at"))
        assert observed(samples, "main")["next_unlock"] == pytest.approx((later + timedelta(seconds=500)).timestamp(),
                                                                         abs=0.002)  # fmt: skip

        assert daemon.terminate(signal.SIGTERM) == 0
        logs = daemon.logs()
    assert TOKEN not in logs
    events = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    startup = next(e for e in events if e["event"] == "startup")
    assert startup["config"]["pools"][1]["fields"]["active"] == "enabled"
    assert startup["config"]["admin"]["tokens"][0]["token"] != TOKEN
    assert not [e for e in events if e["event"] == "refresh_failed"]
    # Once its first round is over the daemon leaves what start-up built out of later full collections.
    names = [e["event"] for e in events]
    assert names.count("heap_frozen") == 1 and names.index("startup_settled") < names.index("heap_frozen")
    assert next(e for e in events if e["event"] == "heap_frozen")["objects"] > 10_000


def test_outage_keeps_serving_and_recovers_without_restart(
    mongod_factory: Callable[..., Mongod], unique_name: str
) -> None:
    """MongoDB stops: /metrics still 200, up 0, /readyz 503, state series go stale; back: up 1 again."""
    server = mongod_factory()
    client: MongoClient[Doc] = MongoClient(server.uri, tz_aware=True)
    coll = client["spe_outage"][unique_name]
    coll.insert_many([{"active": True, "next_use": None, "count_use": 1} for _ in range(5)])
    client.close()
    pools = [{"name": "p", "database": "spe_outage", "collection": unique_name}]
    config = _config(pools, max_age=2)
    config["mongodb"]["uri"] = server.uri
    with running(config) as daemon:
        daemon.wait_ready()
        assert value(daemon.samples(), "session_pool_sessions", pool="p", state="active") == 5.0

        server.stop()
        daemon.wait_for(lambda: value(daemon.samples(), "session_pool_up", pool="p") == 0.0, "up == 0")
        response = daemon.get("/metrics", timeout=3)
        assert response.status_code == 200
        ready = daemon.get("/readyz", timeout=5)
        assert ready.status_code == 503
        body = ready.json()
        assert body["ready"] is False
        assert any("MongoDB" in reason for reason in body["reasons"])
        assert body["pools"]["p"]["up"] is False
        # Past max_age the state series disappear; up, last success and counters stay.
        daemon.wait_for(
            lambda: value(daemon.samples(), "session_pool_sessions", pool="p", state="active") is None,
            "stale series dropped",
        )
        samples = daemon.samples()
        assert value(samples, "session_pool_active_sessions", pool="p") is None
        assert value(samples, "session_pool_uses", pool="p") is None
        assert value(samples, "session_pool_up", pool="p") == 0.0
        assert value(samples, "session_pool_last_success_timestamp_seconds", pool="p") is not None
        assert (value(samples, "session_pool_refresh_failures_total", pool="p") or 0) >= 1
        assert value(samples, "session_pool_mongodb_up") == 0.0  # the cause, for the alerts to fold under
        assert daemon.get("/healthz").status_code == 200
        assert daemon.process is not None and daemon.process.poll() is None

        server.restart()
        daemon.wait_for(lambda: value(daemon.samples(), "session_pool_up", pool="p") == 1.0, "up == 1 again")
        assert value(daemon.samples(), "session_pool_sessions", pool="p", state="active") == 5.0
        assert value(daemon.samples(), "session_pool_mongodb_up") == 1.0
        daemon.wait_ready()
        assert daemon.terminate(signal.SIGTERM) == 0
        logs = daemon.logs()
    events = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    failed = [e for e in events if e["event"] == "refresh_failed"]
    recovered = [e for e in events if e["event"] == "refresh_recovered"]
    # Logged when the pool went down and again only when the cause changed (a pooled connection
    # closing, then connection refused), never once per failed run.
    assert 1 <= len(failed) <= 3 and all(e["pool"] == "p" for e in failed), failed
    assert all(a["error"] != b["error"] for a, b in itertools.pairwise(failed)), failed
    assert len(recovered) == 1


def test_a_mistyped_collection_is_named_and_never_created(
    mongo_uri: str, sync_client: MongoClient[Doc], unique_name: str
) -> None:
    """`--collection telegarm` beside an existing `telegram`: the daemon creates nothing, logs the cause once,
    /readyz and the metric say so (with the close name); once the collection exists, the pool comes up."""
    database = sync_client["spe_daemon"]
    database[unique_name + "_telegram"].insert_one({"active": True, "next_use": None})
    typo = unique_name + "_telegarm"
    env = {"SESSION_POOL_EXPORTER_MONGODB__URI": mongo_uri}
    args = ["--database", "spe_daemon", "--collection", typo, "--interval", "0.5", "--log-format", "json"]
    with running({}, env, args, create_pools=False) as daemon:
        daemon.wait_for(lambda: value(daemon.samples(), "session_pool_collection_missing", pool=typo) == 1.0, "missing")
        daemon.wait_refreshes([typo], more=3)
        ready = daemon.get("/readyz")
        assert ready.status_code == 503
        cause = f"collection spe_daemon.{typo} does not exist (did you mean {unique_name}_telegram?)"
        assert ready.json()["reasons"] == [f"pool {typo}: {cause}"]
        assert ready.json()["pools"][typo]["collection_missing"] is True
        samples = daemon.samples()
        assert value(samples, "session_pool_up", pool=typo) == 0.0
        assert value(samples, "session_pool_sessions", pool=typo, state="active") is None  # no healthy-looking zeros
        assert typo not in database.list_collection_names()  # no index build, no write created it
        database[typo].insert_one({"active": True, "next_use": None})
        daemon.wait_for(lambda: value(daemon.samples(), "session_pool_collection_missing", pool=typo) == 0.0, "found")
        daemon.wait_ready()
        assert value(daemon.samples(), "session_pool_sessions", pool=typo, state="active") == 1.0
        logs = daemon.logs()
    events = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    missing = [e for e in events if e["event"] == "collection_missing"]
    assert len(missing) == 1 and missing[0]["close"] == [unique_name + "_telegram"], missing
    assert missing[0]["error"] == cause
    assert not [e for e in events if e["event"] in ("refresh_failed", "pool_up")]  # the cause, not a symptom
    assert [e["event"] for e in events if e["event"] == "refresh_recovered"] == ["refresh_recovered"]


def test_sigint_and_unknown_routes(mongo_uri: str, unique_name: str) -> None:
    """Unknown paths answer JSON 404, the admin API is off without tokens, SIGINT exits 0."""
    pools = [{"name": "p", "database": "spe_daemon", "collection": unique_name}]
    env = {"SESSION_POOL_EXPORTER_MONGODB__URI": mongo_uri}
    with running(_config(pools), env, ["--log-level", "debug"]) as daemon:
        daemon.wait_ready()
        # At debug level requests are logged, by path only: a query string may carry a secret.
        assert daemon.get("/healthz", params={"token": "query-secret-123"}).status_code == 200
        daemon.wait_for(lambda: '"path": "/healthz"' in daemon.logs(), "the request log line")
        assert "query-secret-123" not in daemon.logs()
        for path in ("/nope", "/admin/pools"):
            response = daemon.get(path)
            assert response.status_code == 404
            assert response.json()["error"] == "not_found"
            assert response.json()["problems"] == [{"location": "path", "message": response.json()["message"]}]
        # A wrong path and the admin API being off are told apart.
        assert daemon.get("/nope").json()["message"] == "no such path: /nope"
        assert daemon.get("/admin/pools").json()["message"].startswith("the admin API is off: configure a token")
        response = daemon.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert response.headers["content-type"].startswith("application/openmetrics-text")
        assert response.text.rstrip().endswith("# EOF")
        # Gzipped when the scraper accepts it (Prometheus does), plain otherwise; HEAD has no body.
        packed = daemon.get("/metrics", headers={"Accept-Encoding": "gzip"})
        assert packed.headers["content-encoding"] == "gzip" and "session_pool_up" in packed.text
        assert int(packed.headers["content-length"]) < len(packed.text)
        assert packed.headers["vary"] == "Accept, Accept-Encoding"
        plain = daemon.get("/metrics", headers={"Accept-Encoding": "identity, gzip;q=0"})
        assert "content-encoding" not in plain.headers and "session_pool_up" in plain.text
        head = httpx.head(daemon.url + "/metrics", timeout=10)
        assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 0
        assert "Refreshed every" in daemon.get("/metrics").text
        # An empty collection still exports all five states, as zeros.
        samples = daemon.samples()
        assert {str(s): value(samples, "session_pool_sessions", pool="p", state=str(s)) for s in STATES} == {
            str(s): 0.0 for s in STATES
        }
        assert value(samples, "session_pool_next_unlock_timestamp_seconds", pool="p") is None
        assert daemon.terminate(signal.SIGINT) == 0


def test_invalid_config_on_run_exits_nonzero(tmp_path: Any) -> None:
    """`run` with an invalid config lists the problems and exits 2 without serving."""
    from tests.support.cli import run_cli

    path = tmp_path / "bad.yaml"
    path.write_text("pools:\n  - name: 'bad name'\n    database: d\n")
    result = run_cli("run", "--config", str(path))
    assert result.returncode == 2
    assert "pools[0].name: must be 1-64 characters" in result.stderr
    assert "pools[0].collection: required" in result.stderr
    assert "mongodb.uri: required" in result.stderr


@pytest.mark.parametrize("busy", ["listen", "admin"])
def test_a_busy_port_exits_3_before_saying_listening(tmp_path: Any, busy: str) -> None:
    """Either listener's port taken: `run` says which address and why, exits 3, never logs "listening"."""
    from tests.support.cli import run_cli
    from tests.support.daemon import WRITE_TOKEN, config, write_config

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        cfg = config("mongodb://127.0.0.1:1/", [{"name": "p", "database": "d", "collection": "c"}])
        cfg["admin"]["listen"] = address if busy == "admin" else f"127.0.0.1:{free_port()}"
        if busy == "listen":
            cfg["listen"] = address
        assert cfg["admin"]["tokens"][0]["token"] == WRITE_TOKEN
        result = run_cli("run", "--config", str(write_config(tmp_path, cfg)), "--log-format", "json")
    assert result.returncode == 3, result.stderr
    assert f"cannot listen on {address}: address already in use" in result.stderr
    events = [json.loads(line)["event"] for line in result.stderr.splitlines() if line.startswith("{")]
    assert "listen_failed" in events and "listening" not in events and "admin_listening" not in events, events


# --- the HTTP error mapping, in-process over a real socket ---------------------------------------


async def test_error_mapping_over_http(mongo_uri: str, unique_name: str) -> None:
    """Core errors map to 400/404/503+Retry-After/504/502; anything else is a generic JSON 500."""
    import asyncio

    import httpx
    from pydantic import BaseModel
    from starlette.requests import Request
    from starlette.responses import Response

    from exporter.assembly import build
    from exporter.config import load_config
    from exporter.core import InvalidInput, OperationFailed, OperationTimeout, SessionNotFound, Unavailable
    from exporter.mongod import free_port

    class Body(BaseModel):
        """A request body with a typed field."""

        period: int

    errors: dict[str, Exception] = {
        "invalid": InvalidInput("period must be positive", field="period", operation="session_lock"),
        "missing": SessionNotFound("64b000000000000000000000", operation="get"),
        "down": Unavailable("get: MongoDB is unreachable: mongodb://u:pw@h:1", operation="get"),
        "slow": OperationTimeout("get timed out after 2 s", timeout=2, operation="get"),
        "refused": OperationFailed("update failed: not primary", code=10107, operation="session_lock"),
        "bug": RuntimeError("secret detail mongodb://u:pw@h:1"),
    }

    async def boom(request: Request) -> Response:
        """Raise the error named in the path."""
        kind = request.path_params["kind"]
        if kind == "validation":
            Body.model_validate({"period": "soon"})
        raise errors[kind]

    port = free_port()
    config = load_config(None, {}, {"mongo_uri": mongo_uri, "database": "spe_daemon", "collection": unique_name,
                                    "listen": f"127.0.0.1:{port}"})  # fmt: skip
    daemon = build(config)
    daemon.app.add_route("/boom/{kind}", boom)
    server = daemon.server(install_signals=False)
    serving = asyncio.create_task(server.serve())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            for _ in range(200):
                if server.started:
                    break
                await asyncio.sleep(0.05)
            expected = {"invalid": 400, "missing": 404, "down": 503, "slow": 504, "refused": 502, "bug": 500,
                        "validation": 400}  # fmt: skip
            for kind, status in expected.items():
                response = await http.get(f"/boom/{kind}")
                assert response.status_code == status, (kind, response.text)
                body = response.json()
                assert set(body) >= {"error", "message"}
                assert "pw" not in response.text and "Traceback" not in response.text
            invalid_body = (await http.get("/boom/invalid")).json()
            assert invalid_body["problems"] == [{"location": "period", "message": invalid_body["message"]}]
            assert (await http.get("/boom/down")).headers["retry-after"] == "5"
            assert (await http.get("/boom/bug")).json() == {
                "error": "internal", "message": "internal server error",
                "problems": [{"location": "", "message": "internal server error"}],
            }  # fmt: skip
            response = await http.post("/metrics")
            assert response.status_code == 405
            assert response.json()["error"] == "method_not_allowed"
            assert (await http.get("/healthz")).text == "ok\n"
    finally:
        server.should_exit = True
        await serving


def test_tls_listener(mongo_uri: str, unique_name: str, tmp_path: Any) -> None:
    """With tls.cert_file/key_file the daemon serves HTTPS."""
    import shutil
    import ssl
    import subprocess

    import httpx

    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make a test certificate"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    pools = [{"name": "p", "database": "spe_daemon", "collection": unique_name}]
    config = {**_config(pools), "tls": {"cert_file": str(cert), "key_file": str(key)}}
    trust = ssl.create_default_context(cafile=str(cert))
    with running(config, {"SESSION_POOL_EXPORTER_MONGODB__URI": mongo_uri}) as daemon:
        url = f"https://127.0.0.1:{daemon.port}"

        def ready() -> bool:
            """True when HTTPS /readyz answers 200."""
            return httpx.get(url + "/readyz", verify=trust, timeout=5).status_code == 200

        daemon.wait_for(ready, "HTTPS /readyz 200")
        assert "session_pool_up" in httpx.get(url + "/metrics", verify=trust, timeout=5).text
        assert daemon.terminate(signal.SIGTERM) == 0


def test_starts_while_mongodb_is_down_and_connects_later(
    mongod_factory: Callable[..., Mongod], unique_name: str
) -> None:
    """MongoDB down at startup: the daemon serves (up 0, /readyz 503) and connects once it is back."""
    server = mongod_factory()
    client: MongoClient[Doc] = MongoClient(server.uri)
    with client:
        docs: list[Doc] = [{"active": True} for _ in range(2)]
        client["spe_late"][unique_name].insert_many(docs)
    server.stop()
    config = _config([{"name": "late", "database": "spe_late", "collection": unique_name}])
    config["mongodb"]["uri"] = server.uri
    with running(config) as daemon:
        daemon.wait_for(lambda: daemon.refreshes("late") >= 2, "failed refreshes")
        samples = daemon.samples()
        assert value(samples, "session_pool_up", pool="late") == 0.0
        assert value(samples, "session_pool_sessions", pool="late", state="active") is None
        ready = daemon.get("/readyz")
        assert ready.status_code == 503
        assert "pool late: no successful refresh yet" in " ".join(ready.json()["reasons"])
        server.restart()
        daemon.wait_ready()
        # A scrape may be served the rendering made just before (under load, renderings are made aside).
        daemon.wait_for(
            lambda: value(daemon.samples(), "session_pool_sessions", pool="late", state="active") == 2.0, "the counts"
        )
        assert daemon.terminate(signal.SIGTERM) == 0
