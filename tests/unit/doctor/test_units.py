"""The doctor's pure parts: the report and its exit codes, rights, clock and topology verdicts, refresh cost."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from exporter.config import PoolDefinition
from exporter.core import State, Statistics, Sums
from exporter.doctor.findings import Report, Verdict, error, ok, warn
from exporter.doctor.refresh import refresh_findings, sums_findings
from exporter.doctor.rights import parse_rights, pool_needs, rights_findings
from exporter.doctor.server import Server, server_findings
from exporter.exits import EXIT_ERRORS, EXIT_OK, EXIT_WARNINGS
from tests.support.doctor import json_checks, text_rows

POOL = PoolDefinition(
    name="tg", database="sessions", collection="telegram", interval=10, refresh_timeout=5, sums_interval=300,
    sums_timeout=120,
)  # fmt: skip


def test_the_worst_finding_decides_the_verdict_and_the_exit_code() -> None:
    """0 all ok, 1 warnings only, 4 errors; the exit codes differ from run's 1 (start-up), 2 and 3."""
    report = Report({"tg": "sessions.telegram"})
    assert (report.verdict, report.exit_code()) == (Verdict.OK, EXIT_OK)
    report.add([ok("version", "MongoDB 6.0.5")])
    assert report.exit_code() == EXIT_OK == 0
    report.add([warn("indexes", "missing", "build it")], "tg")
    assert (report.verdict, report.exit_code()) == (Verdict.WARN, EXIT_WARNINGS)
    report.add([error("rights", "no find", "grant read")], "tg")
    assert (report.verdict, report.exit_code()) == (Verdict.ERROR, EXIT_ERRORS)
    assert EXIT_ERRORS not in (1, 2, 3)  # run: 1 start-up failed, 2 invalid config, 3 listen address taken


def test_text_and_json_say_the_same() -> None:
    """Every finding appears in both, under its pool, with its verdict; the fix follows an arrow."""
    report = Report({"tg": "sessions.telegram", "vk": "sessions.vk"})
    report.add([ok("version", "MongoDB 6.0.5"), warn("clock", "5s behind", "run NTP")])
    report.add([error("rights", "no find on sessions.telegram", "grant read")], "tg")
    report.add([ok("refresh", "fast")], "vk")
    text = report.to_text()
    assert text.splitlines()[0] == "server"
    assert "pool tg (sessions.telegram)" in text and "no find on sessions.telegram → grant read" in text
    assert text.splitlines()[-1] == "doctor: error (1 error(s), 1 warning(s), 2 ok); exit 4"
    verdict, checks = json_checks(report.to_json())
    assert verdict == "error"
    expected = {"pool": "tg", "check": "rights", "verdict": "error", "found": "no find on sessions.telegram"}
    assert checks[2] == {**expected, "fix": "grant read"}
    assert text_rows(text) == [(c["pool"], c["check"], c["verdict"]) for c in checks]
    assert json.loads(report.to_json())["checks"][0]["pool"] is None


READ_ONLY = {
    "authInfo": {
        "authenticatedUsers": [{"user": "monitor", "db": "admin"}],
        "authenticatedUserPrivileges": [
            {"resource": {"db": "sessions", "collection": ""}, "actions": ["find", "listIndexes", "collStats"]},
            {"resource": {"cluster": True}, "actions": ["serverStatus"]},
        ],
    }
}


def test_rights_follow_the_privileges_mongodb_lists() -> None:
    """A database-wide grant covers its collections (not system ones); cluster grants cover none; anyResource all."""
    rights = parse_rights(READ_ONLY)
    assert rights.allows("sessions", "telegram", "find")
    assert not rights.allows("sessions", "telegram", "createIndex")
    assert not rights.allows("sessions", "system.users", "find")
    assert not rights.allows("other", "telegram", "find")
    anything = [{"resource": {"anyResource": True}, "actions": ["createIndex"]}]
    assert parse_rights({"authInfo": {"authenticatedUserPrivileges": anything}}).allows("x", "y", "createIndex")
    assert parse_rights({"authInfo": {}}, enforced=False).allows("x", "y", "update")


def test_what_each_missing_right_costs() -> None:
    """No createIndex: warn while the indexes exist, error when they are missing; update only with the admin API."""
    rights = parse_rights(READ_ONLY)
    present = rights_findings(
        rights, "sessions", "telegram", pool_needs(POOL, admin_enabled=False, indexes_present=True)
    )
    assert [(f.verdict, f.found.split(":")[0]) for f in present] == [
        (Verdict.WARN, "monitor@admin has no createIndex on sessions.telegram")
    ]
    assert 'grantRolesToUser("monitor", [{"role": "readWrite", "db": "sessions"}])' in (present[0].fix or "")
    missing = rights_findings(
        rights, "sessions", "telegram", pool_needs(POOL, admin_enabled=True, indexes_present=False)
    )
    assert [(f.verdict, f.found.split(" on ")[0]) for f in missing] == [
        (Verdict.ERROR, "monitor@admin has no createIndex"),
        (Verdict.WARN, "monitor@admin has no update"),
    ]

    def granted(*actions: str) -> list[tuple[Verdict, str]]:
        privileges = [{"resource": {"db": "", "collection": ""}, "actions": list(actions)}]
        user = [{"user": "u", "db": "admin"}]
        rights = parse_rights({"authInfo": {"authenticatedUsers": user, "authenticatedUserPrivileges": privileges}})
        needs = pool_needs(POOL, admin_enabled=True, indexes_present=True)
        return [(f.verdict, f.found.split(":")[0]) for f in rights_findings(rights, "sessions", "telegram", needs)]

    assert granted("find", "collStats", "listIndexes", "createIndex", "update") == [
        (Verdict.OK, "u@admin may find, collStats, listIndexes, createIndex, update on sessions.telegram")
    ]
    # Without collStats the daemon's total ($collStats) fails, so every refresh does.
    assert granted("find", "listIndexes", "createIndex", "update") == [
        (Verdict.ERROR, "u@admin has no collStats on sessions.telegram")
    ]


def _server(**changes: object) -> Server:
    values: dict[str, object] = {
        "version": "6.0.5",
        "topology": "replica_set",
        "set_name": "rs0",
        "primary": True,
        "skew": timedelta(milliseconds=3),
        "uncertainty": timedelta(milliseconds=1),
    }
    values.update(changes)
    return Server(**values)  # type: ignore[arg-type]


def test_server_verdicts() -> None:
    """Old versions, standalone servers, secondaries and clocks seconds apart are called out."""
    verdicts = {f.check: f.verdict for f in server_findings(_server(), admin_enabled=True)}
    assert verdicts == {"version": Verdict.OK, "topology": Verdict.OK, "clock": Verdict.OK}
    standalone = server_findings(_server(topology="standalone", set_name=None), admin_enabled=True)[1]
    assert standalone.verdict is Verdict.WARN and "not transactional" in standalone.found
    assert server_findings(_server(version="4.4.29"), admin_enabled=False)[0].verdict is Verdict.ERROR
    assert server_findings(_server(primary=False), admin_enabled=False)[1].verdict is Verdict.WARN
    behind = server_findings(_server(skew=timedelta(seconds=4.2)), admin_enabled=False)[2]
    assert behind.verdict is Verdict.WARN and "4.2s behind" in behind.found and "shorter" in behind.found
    ahead = server_findings(_server(skew=timedelta(seconds=-30)), admin_enabled=False)[2]
    assert "30s ahead of" in ahead.found and "longer" in ahead.found
    # Within the round trip's uncertainty a bigger difference is not proven.
    unsure = _server(skew=timedelta(seconds=2.5), uncertainty=timedelta(seconds=1))
    assert server_findings(unsure, admin_enabled=False)[2].verdict is Verdict.OK
    # The topology line says where the statistics are read.
    assert "from the primary" in server_findings(_server(), admin_enabled=False)[1].found
    secondary = server_findings(_server(), admin_enabled=False, read_preference="secondaryPreferred")[1]
    assert "from read preference secondaryPreferred" in secondary.found


def _stats(total: int = 100) -> Statistics:
    states = {s: 0 for s in State} | {State.ACTIVE: total}
    return Statistics(
        time=datetime.now(UTC), states=states, total=total, uses=0, successes=0, next_unlock=None,
        oldest_active_last_use=None,
    )  # fmt: skip


def test_refresh_cost_against_interval_and_timeout() -> None:
    """Up to 25 % of the interval is fine; more is a warning; beyond refresh_timeout every refresh fails."""
    assert refresh_findings(POOL, _stats(), 0.5)[0].verdict is Verdict.OK
    slow = refresh_findings(POOL, _stats(), 3.0)[0]
    assert slow.verdict is Verdict.WARN and "30.0% of the 10s interval" in slow.found and "12s" in (slow.fix or "")
    failing = refresh_findings(POOL, _stats(), 6.0)[0]
    assert failing.verdict is Verdict.ERROR and "refresh_timeout (5s)" in failing.found
    assert "100 active" in failing.found


def test_sums_cost_and_the_metadata_count() -> None:
    """The sums against sums_interval and sums_timeout; a metadata count that disagrees is a warning."""

    def sums(metadata: int) -> Sums:
        return Sums(time=datetime.now(UTC), total=1000, uses=5000, successes=4000, metadata_total=metadata)

    (fine,) = sums_findings(POOL, sums(1000), 2.0)
    assert fine.verdict is Verdict.OK and "(1,000 documents read: 5,000 uses, 4,000 successes)" in fine.found
    assert sums_findings(POOL, sums(1000), 100.0)[0].verdict is Verdict.WARN  # a third of 5 minutes
    slow = sums_findings(POOL, sums(1000), 130.0)[0]
    assert slow.verdict is Verdict.ERROR and "sums_timeout (2m)" in slow.found
    disagree = sums_findings(POOL, sums(998), 2.0)
    assert [f.verdict for f in disagree] == [Verdict.OK, Verdict.WARN]
    assert "(998) differs from the counted total (1,000)" in disagree[1].found
    assert 'runCommand({validate: "telegram"})' in (disagree[1].fix or "")
