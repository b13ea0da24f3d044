"""`session-pool-exporter doctor` against real mongod servers: pools built to show each problem, and healthy ones."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from bson import ObjectId
from pymongo import MongoClient

from exporter.core import MongoSessions
from exporter.mongod import Mongod, free_port
from tests.support.auth import auth_server
from tests.support.daemon import WRITE_TOKEN, config, write_config
from tests.support.doctor import doctor, json_checks, lines, text_rows
from tests.support.legacy import LegacyWorker

Doc = dict[str, Any]
SyncClient = MongoClient[Doc]
INDEXES = [[("active", 1), ("last_use", 1), ("next_use", 1), ("_id", 1)],
           [("active", 1), ("next_use", 1), ("hold.kind", 1), ("hold.until", 1), ("_id", 1)],
           # the console's: held lists in hold order, the underperformers (covered)
           [("active", 1), ("hold.kind", 1), ("next_use", 1), ("hold.until", 1), ("_id", 1)],
           [("active", 1), ("count_use", 1), ("count_success", 1), ("_id", 1)]]  # fmt: skip


@pytest.fixture
def db(sync_client: SyncClient) -> Iterator[str]:
    """A database of this test's own, dropped afterwards."""
    name = f"spe_doctor_{uuid.uuid4().hex[:8]}"
    yield name
    sync_client.drop_database(name)


def pools_config(tmp_path: Path, uri: str, pools: list[Doc], **sections: Any) -> Path:
    """A config file watching `pools` on `uri`, without admin tokens unless `sections` adds some."""
    return write_config(tmp_path, config(uri, pools, tokens=False, **sections))


def index_names(client: SyncClient, db: str, collection: str) -> set[str]:
    """The indexes a collection has right now."""
    return set(client[db][collection].index_information())


async def healthy_pool(mongo_uri: str, db: str, collection: str, **options: Any) -> None:
    """A pool written by this library only: added, taken, succeeded, locked, blocked."""
    pool = MongoSessions(mongo_uri, db, collection, tz_aware=True, console_indexes=[], **options)
    await pool.connect()
    try:
        for i in range(30):
            await pool.add({"session": {"n": i}})
        for i in range(12):
            taken = await pool.get_session(next_use_delay=120)
            assert taken is not None
            if i % 3 == 0:
                await pool.session_success(taken, next_use_delay=3600)
            elif i % 3 == 1:
                await pool.session_lock(taken)
            else:
                await pool.session_block(taken)
    finally:
        await pool.close()


async def test_a_healthy_pool_is_all_ok(mongo_uri: str, sync_client: SyncClient, db: str, tmp_path: Path) -> None:
    """A UTC pool of this library, old documents included: every check ok, exit 0, nothing written."""
    await healthy_pool(mongo_uri, db, "healthy")
    # Sessions added 200 days ago and last used 20 days ago, by a UTC writer: old is not wrong.
    long_ago = datetime.now(UTC) - timedelta(days=200)
    sync_client[db]["healthy"].insert_many(
        [{"_id": ObjectId.from_datetime(long_ago + timedelta(seconds=i)), "active": True, "count_use": 3,
          "count_success": 1, "created": long_ago + timedelta(seconds=i, milliseconds=5),
          "last_use": long_ago + timedelta(days=180), "next_use": None} for i in range(10)]
    )  # fmt: skip
    before = index_names(sync_client, db, "healthy")
    result = doctor(pools_config(tmp_path, mongo_uri, [{"name": "healthy", "database": db, "collection": "healthy"}]))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = text_rows(result.stdout)
    assert {verdict for _pool, _check, verdict in rows} == {"ok"}, result.stdout
    checks = [check for pool, check, _v in rows if pool == "healthy"]
    assert checks == ["rights", "indexes", "plans", "documents", "timezone", "refresh", "sums"]
    assert [check for pool, check, _v in rows if pool is None] == ["version", "topology", "clock", "access"]
    plans = lines(result.stdout, "healthy", "plans")[0]
    held = re.search(r"held counts index-only \(([\d,]+) index keys, 0 documents read", plans)
    assert held is not None and int(held.group(1).replace(",", "")) >= 12, plans  # 4 in use, 4 locked, 4 blocked
    assert "COLLSCAN" not in plans.split("sums")[0]
    assert "40 documents, none of an odd shape" in lines(result.stdout, "healthy", "documents")[0]
    assert "agree with UTC" in lines(result.stdout, "healthy", "timezone")[0]
    refresh = lines(result.stdout, "healthy", "refresh")[0]
    assert "40 sessions: 28 active, 4 in_use, 4 locked, 4 blocked, 0 inactive" in refresh, refresh
    assert "the total: $collStats" in plans, plans  # the daemon's per-interval total: metadata, no scan
    sums = lines(result.stdout, "healthy", "sums")[0]
    # 30 added with 0 uses, 12 taken once, 4 of them a success; the 10 old ones: 3 uses, 1 success each.
    assert "(40 documents read: 42 uses, 14 successes)" in sums, sums
    assert result.stdout.splitlines()[-1].startswith("doctor: ok (")
    assert index_names(sync_client, db, "healthy") == before


def test_a_mistyped_collection_is_the_first_finding(
    mongo_uri: str, sync_client: SyncClient, db: str, tmp_path: Path
) -> None:
    """A pool whose collection does not exist: its first and only finding says so and names the close
    collections; no createIndex advice (that would create it); nothing is created; exit 4."""
    sync_client[db]["telegram"].insert_one({"active": True, "next_use": None})
    sync_client[db]["telegram_archive"].insert_one({"active": True})
    path = pools_config(tmp_path, mongo_uri, [{"name": "tg", "database": db, "collection": "telegarm"}])
    result = doctor(path)
    assert result.returncode == 4, result.stdout
    assert [(check, verdict) for pool, check, verdict in text_rows(result.stdout) if pool == "tg"] == [
        ("collection", "error")
    ], result.stdout
    finding = lines(result.stdout, "tg", "collection")[0]
    assert f"collection {db}.telegarm does not exist" in finding and "did you mean telegram" in finding, finding
    assert "createIndex" not in result.stdout
    assert "telegarm" not in sync_client[db].list_collection_names()


async def test_missing_indexes_and_the_scans_they_cause(
    mongo_uri: str, sync_client: SyncClient, db: str, tmp_path: Path
) -> None:
    """Explain shows COLLSCAN without the indexes: an error when nobody builds them, a warning when the
    daemon will; the legacy index of 0.1.0 is mentioned; the doctor itself builds nothing."""
    docs: list[Doc] = [{"active": True, "count_use": 0, "next_use": None} for _ in range(25)]
    sync_client[db]["bare"].insert_many([dict(d) for d in docs])
    sync_client[db]["old"].insert_many([dict(d) for d in docs])
    for keys in INDEXES:
        sync_client[db]["old"].create_index(keys)
    sync_client[db]["old"].create_index([("active", 1), ("hold", 1), ("next_use", 1)])
    path = pools_config(tmp_path, mongo_uri, [
        {"name": "manual", "database": db, "collection": "bare", "create_indexes": False},
        {"name": "auto", "database": db, "collection": "bare"},
        {"name": "old", "database": db, "collection": "old"},
    ])  # fmt: skip
    result = doctor(path)
    assert result.returncode == 4, result.stdout
    manual = lines(result.stdout, "manual", "indexes")
    assert [line.split()[0] for line in manual] == ["error"] * 4, manual  # two statistics, two console indexes
    assert "the statistics read every document" in manual[1] and "those reads scan the pool" in manual[3]
    assert 'createIndex({"active": 1, "next_use": 1, "hold.kind": 1, "hold.until": 1, "_id": 1})' in manual[1]
    plans = lines(result.stdout, "manual", "plans")
    assert len(plans) == 1 and plans[0].split()[0] == "error"
    assert "COLLSCAN" in plans[0] and "held sessions' counts per state (25 documents read)" in plans[0], plans
    auto = lines(result.stdout, "auto", "indexes") + lines(result.stdout, "auto", "plans")
    assert [line.split()[0] for line in auto] == ["warn"] * 5, auto
    old = lines(result.stdout, "old", "indexes")
    assert [line.split()[0] for line in old] == ["ok", "warn"], old
    assert "legacy index active_1_hold_1_next_use_1" in old[1] and 'dropIndex("active_1_hold_1_next_use_1")' in old[1]
    assert "0 documents read" in lines(result.stdout, "old", "plans")[0]
    assert index_names(sync_client, db, "bare") == {"_id_"}


async def test_odd_documents_are_counted_server_side_with_one_example_each(
    mongo_uri: str, sync_client: SyncClient, db: str, tmp_path: Path
) -> None:
    """Each malformed shape: its count, the smallest _id as the example, the BSON types; custom field names."""
    coll = sync_client[db]["odd"]
    shapes: dict[str, list[Doc]] = {
        "active is missing": [{"count_use": 1}, {}],
        "active is not true/false (int, string)": [{"active": "yes"}, {"active": 1}, {"active": "no"}],
        "hold is not a {kind: use|lock|block, until: date} marker (object, string)": [
            {"active": True, "hold": "lock"}, {"active": True, "hold": {"kind": "nap", "until": datetime.now(UTC)}}],
        "next_use is not a date (string)": [{"active": True, "next_use": "tomorrow"}],
        "count_success is not a number (bool)": [{"active": True, "count_success": True}],
    }  # fmt: skip
    expected: dict[str, tuple[int, ObjectId]] = {}
    for text, docs in shapes.items():
        ids = coll.insert_many(docs).inserted_ids
        expected[text] = (len(ids), min(ids))
    coll.insert_many([{"active": True, "count_use": 2, "next_use": None} for _ in range(20)])
    total = coll.count_documents({})
    renamed = sync_client[db]["renamed"]
    renamed.insert_many(
        [{"enabled": True, "uses": 1}, {"enabled": True, "uses": "7"}, {"active": "x", "enabled": True}]
    )
    fields = {"active": "enabled", "count_use": "uses"}
    path = pools_config(tmp_path, mongo_uri, [
        {"name": "odd", "database": db, "collection": "odd"},
        {"name": "renamed", "database": db, "collection": "renamed", "fields": fields},
    ])  # fmt: skip
    result = doctor(path)
    found = lines(result.stdout, "odd", "documents")
    assert len(found) == len(shapes), found
    for text, (count, example) in expected.items():
        line = next(line for line in found if text in line)
        assert f'in {count} of {total} documents, e.g. _id ObjectId("{example}")' in line, line
        severe = "count_success" in text
        assert line.split()[0] == ("error" if severe else "warn"), line
    renamed_lines = lines(result.stdout, "renamed", "documents")
    assert len(renamed_lines) == 1 and "uses is not a number (string) in 1 of 3 documents" in renamed_lines[0]
    assert '{"$isNumber": "$uses"}' in renamed_lines[0]
    assert result.returncode == 4


async def test_legacy_pools_written_in_other_zones(mongo_uri: str, db: str, tmp_path: Path) -> None:
    """Original-library workers at UTC+3 and UTC-5: the offset, candidate zones and the evidence behind it;
    a pool whose stored_timezone is right agrees, one whose stored_timezone is wrong says so."""
    for zone, collection in (("Europe/Moscow", "msk"), ("Etc/GMT+5", "west"), ("Europe/Moscow", "msk_ok")):
        worker = LegacyWorker(mongo_uri, db, collection, zone=zone)
        try:
            for i in range(30):
                await worker.add({"session": {"n": i}})
            for _ in range(10):
                taken = await worker.get_session()
                assert taken is not None
                await worker.session_lock(taken)
        finally:
            await worker.close()
    await healthy_pool(mongo_uri, db, "utc_as_msk")
    path = pools_config(tmp_path, mongo_uri, [
        {"name": "msk", "database": db, "collection": "msk"},
        {"name": "west", "database": db, "collection": "west"},
        {"name": "msk_ok", "database": db, "collection": "msk_ok", "stored_timezone": "Europe/Moscow"},
        {"name": "wrong", "database": db, "collection": "utc_as_msk", "stored_timezone": "Europe/Moscow"},
    ])  # fmt: skip
    result = doctor(path)
    now = datetime.now(UTC)
    for pool, offset in (("msk", timedelta(hours=3)), ("west", timedelta(hours=-5))):
        (line,) = lines(result.stdout, pool, "timezone")
        name = "UTC+3" if offset > timedelta(0) else "UTC-5"
        assert line.split()[0] == "error", line
        assert f"stored times look written at {name}, not UTC" in line, line
        assert "confidence high: 30 of 30 sampled documents fit" in line and "30 are impossible in UTC" in line
        named = re.search(r"set stored_timezone: (\S+) on pool", line)
        assert named is not None, line
        assert now.astimezone(ZoneInfo(named.group(1))).utcoffset() == offset, line
    assert "stored_timezone: Europe/Moscow on pool msk" in lines(result.stdout, "msk", "timezone")[0]
    assert "too long (their locks count as blocks)" in lines(result.stdout, "msk", "timezone")[0]
    assert "too short (sessions they hold are handed out)" in lines(result.stdout, "west", "timezone")[0]
    ok_line = lines(result.stdout, "msk_ok", "timezone")[0]
    assert ok_line.split()[0] == "ok" and "agree with Europe/Moscow" in ok_line, ok_line
    wrong = lines(result.stdout, "wrong", "timezone")[0]
    assert "look written at UTC, not Europe/Moscow" in wrong and "remove stored_timezone from pool wrong" in wrong


async def test_a_user_without_create_index(mongod_factory: Callable[..., Mongod], tmp_path: Path) -> None:
    """A read-only monitoring user: missing createIndex is a warning while the indexes exist, an error when
    they are missing; with the admin API on, update and the audit collection's rights are missing too. The
    doctor runs with that user (it needs no write) and neither its password nor the admin token is printed."""
    server = auth_server(mongod_factory)
    with server.root() as root:
        for name in ("indexed", "bare"):
            root["sessions"][name].insert_many([{"active": True, "count_use": 0} for _ in range(5)])
        for keys in INDEXES:
            root["sessions"]["indexed"].create_index(keys)
    uri = server.add_user("monitor", "monitor-secret-31415", [{"role": "read", "db": "sessions"}])
    pools = [{"name": n, "database": "sessions", "collection": n} for n in ("indexed", "bare")]
    path = write_config(tmp_path, config(uri, pools))  # with the two admin tokens
    result = doctor(path)
    as_json = doctor(path, "--json")
    for output in (result.stdout + result.stderr, as_json.stdout + as_json.stderr):
        assert "monitor-secret-31415" not in output and WRITE_TOKEN not in output
    assert result.returncode == 4, result.stdout
    assert "logged in as monitor@admin" in lines(result.stdout, None, "access")[0]
    indexed = lines(result.stdout, "indexed", "rights")
    assert [line.split()[0] for line in indexed] == ["warn", "warn"], indexed
    assert "has no createIndex on sessions.indexed: the indexes exist now" in indexed[0]
    assert "has no update on sessions.indexed: admin actions on this pool fail" in indexed[1]
    bare = lines(result.stdout, "bare", "rights")
    assert bare[0].split()[0] == "error" and "has no createIndex on sessions.bare: the missing indexes" in bare[0]
    audit = lines(result.stdout, None, "audit")
    assert len(audit) == 4 and all(line.split()[0] == "warn" for line in audit), audit
    # Everything ran with a read-only user: a write would have failed and shown as "could not check".
    assert "could not check" not in result.stdout
    assert "one refresh took" in lines(result.stdout, "indexed", "refresh")[0]
    with server.root() as root:
        assert set(root["sessions"]["bare"].index_information()) == {"_id_"}
        assert "session_pool_exporter" not in root.list_database_names()
    anonymous = doctor(write_config(tmp_path, config(server.server.uri, pools, tokens=False)))
    assert anonymous.returncode == 4
    assert "enforces access control and mongodb.uri has no user" in lines(anonymous.stdout, None, "access")[0]
    wrong = doctor(write_config(tmp_path, config(server.uri("monitor", "not-the-password-2718"), pools, tokens=False)))
    assert wrong.returncode == 4 and "not-the-password-2718" not in wrong.stdout + wrong.stderr
    assert "MongoDB cannot be used: authentication failed" in lines(wrong.stdout, None, "connect")[0]


@pytest.mark.integration
def test_an_unreachable_server(tmp_path: Path) -> None:
    """Nothing listens: exit 4, the cause in a few words, every pool not checked; no host, no password."""
    port = free_port()
    uri = f"mongodb://admin:hunter2-secret@127.0.0.1:{port}/?directConnection=true"
    path = write_config(tmp_path, config(uri, [{"name": "p", "database": "d", "collection": "c"}], tokens=False,
                                         mongodb={"server_selection_timeout": 1}))  # fmt: skip
    result = doctor(path)
    assert result.returncode == 4, result.stdout + result.stderr
    (connect,) = lines(result.stdout, None, "connect")
    assert "MongoDB cannot be used: connection refused" in connect
    assert "is mongod running" in connect
    assert lines(result.stdout, "p", "checks")[0].split()[0] == "error"
    as_json = doctor(path, "--json")
    verdict, checks = json_checks(as_json.stdout)
    assert verdict == "error" and checks[0]["check"] == "connect" and as_json.returncode == 4
    assert all(c["fix"] for c in checks if c["verdict"] != "ok"), checks
    for output in (result.stdout + result.stderr, as_json.stdout + as_json.stderr):
        assert "hunter2-secret" not in output and f"127.0.0.1:{port}" not in output and "Topology" not in output


async def test_json_says_what_the_text_says(mongo_uri: str, sync_client: SyncClient, db: str, tmp_path: Path) -> None:
    """One JSON document whose checks are the text's lines, in order, with the same verdicts and exit code."""
    await healthy_pool(mongo_uri, db, "good")
    sync_client[db]["bad"].insert_many([{"active": "yes"}, {"active": True, "count_use": "1"}])
    path = pools_config(tmp_path, mongo_uri, [
        {"name": "good", "database": db, "collection": "good"},
        {"name": "bad", "database": db, "collection": "bad", "create_indexes": False},
    ])  # fmt: skip
    text, as_json = doctor(path), doctor(path, "--json")
    verdict, checks = json_checks(as_json.stdout)
    assert text_rows(text.stdout) == [(c["pool"], c["check"], c["verdict"]) for c in checks]
    assert verdict == "error" and text.stdout.splitlines()[-1].startswith("doctor: error (")
    assert text.returncode == as_json.returncode == 4
    assert {c["verdict"] for c in checks if c["pool"] == "good"} == {"ok"}
    assert all(c["fix"] for c in checks if c["verdict"] != "ok")


async def test_a_standalone_server_warns(mongod_factory: Callable[..., Mongod], tmp_path: Path) -> None:
    """Everything fine but no replica set: one warning (admin writes not transactional), exit 1."""
    server = mongod_factory(replica_set=None)
    await healthy_pool(server.uri, "sessions", "p")
    path = write_config(tmp_path, config(server.uri, [{"name": "p", "database": "sessions", "collection": "p"}]))
    result = doctor(path)
    assert result.returncode == 1, result.stdout
    warnings = [row for row in text_rows(result.stdout) if row[2] != "ok"]
    assert warnings == [(None, "topology", "warn")]
    assert "admin writes are not transactional" in lines(result.stdout, None, "topology")[0]


async def test_refresh_cost_against_the_interval(mongo_uri: str, db: str, tmp_path: Path) -> None:
    """The real statistics timed: a share of a tiny interval is a warning; beyond refresh_timeout an error."""
    await healthy_pool(mongo_uri, db, "p")
    path = pools_config(tmp_path, mongo_uri, [
        {"name": "busy", "database": db, "collection": "p", "interval": 0.004, "refresh_timeout": 10},
        {"name": "failing", "database": db, "collection": "p", "interval": 1, "refresh_timeout": 0.0001,
         "sums_interval": 1, "sums_timeout": 0.0001},
    ])  # fmt: skip
    result = doctor(path)
    sums = lines(result.stdout, "failing", "sums")[0]
    assert sums.split()[0] == "error" and "longer than sums_timeout (0s)" in sums, sums
    assert lines(result.stdout, "busy", "sums")[0].split()[0] == "ok"
    busy = lines(result.stdout, "busy", "refresh")[0]
    assert busy.split()[0] == "warn" and "of the 0.004s interval" in busy, busy
    failing = lines(result.stdout, "failing", "refresh")[0]
    assert failing.split()[0] == "error" and "longer than refresh_timeout (0s)" in failing, failing


@pytest.mark.integration
def test_an_invalid_config_exits_2_like_check_config(tmp_path: Path) -> None:
    """Every problem on stderr, exit 2; with --json also a JSON report of them; no password printed."""
    path = write_config(tmp_path, config("mongodb://u:pw-secret-9@127.0.0.1:1/", [
        {"name": "p", "database": "d", "collection": "c", "interval": -1}], tokens=False))  # fmt: skip
    result = doctor(path)
    assert result.returncode == 2 and "configuration invalid (1 problem(s))" in result.stderr
    assert "pools[0].interval" in result.stderr
    as_json = doctor(path, "--json")
    verdict, checks = json_checks(as_json.stdout)
    assert as_json.returncode == 2 and verdict == "error"
    assert [c["check"] for c in checks] == ["config"] and "pools[0].interval" in checks[0]["found"]
    assert "pw-secret-9" not in result.stdout + result.stderr + as_json.stdout + as_json.stderr
