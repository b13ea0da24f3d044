"""The doctor's run: connect with the daemon's settings, check the server, then each pool, and report."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TextIO, TypeVar

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from exporter.collector import mongo_client, pool_sessions
from exporter.config import Config, PoolDefinition, config_warnings
from exporter.core import (
    CollectionMissing,
    MongoSessions,
    OperationFailed,
    OperationTimeout,
    SessionPoolError,
    Unavailable,
    redact,
)
from exporter.core.clocks import MemberClocks
from exporter.doctor.documents import census, document_findings
from exporter.doctor.findings import Finding, Report, error, warn
from exporter.doctor.frame import frame_findings, read_samples
from exporter.doctor.indexes import Indexes, index_findings, read_indexes
from exporter.doctor.plans import explain_statistics, plan_findings
from exporter.doctor.refresh import refresh_findings, sums_findings, timed_refresh, timed_sums
from exporter.doctor.rights import (
    Rights,
    access_finding,
    audit_findings,
    not_authenticated,
    pool_needs,
    read_rights,
    rights_findings,
)
from exporter.doctor.server import clock_findings, member_clocks, probe, server_findings, unreachable

# The doctor's reads may take this long (a scan of a big pool, a slow refresh) so it can say how long
# they took; the daemon's own limits (refresh_timeout) are what the findings compare with.
LONG_READ = 120.0

_T = TypeVar("_T")


class _Failed(Exception):
    """A check could not run; its finding says why."""

    def __init__(self, finding: Finding) -> None:
        self.finding = finding
        super().__init__(finding.found)


async def _attempt(check: str, step: Callable[[], Awaitable[_T]]) -> _T:
    """Run one step of a check; a failure becomes that check's error finding, never a crash of the doctor."""
    try:
        return await step()
    except SessionPoolError as exc:
        raise _Failed(error(check, f"could not check: {exc.message}", _retry_fix(exc))) from None
    except Exception as exc:  # the doctor reports on broken deployments: nothing in one check may stop the rest
        text = redact(f"{type(exc).__name__}: {exc}")[:300]
        raise _Failed(error(check, f"could not check (unexpected {text})", "report this as a bug")) from None


def _retry_fix(exc: SessionPoolError) -> str:
    """What to do when a check could not run."""
    if isinstance(exc, OperationTimeout):
        return "the server is slow or overloaded: look at its load, then run doctor again"
    if isinstance(exc, Unavailable):
        return f"the connection was lost ({exc.reason}): check the server, then run doctor again"
    if isinstance(exc, OperationFailed) and exc.code == 13:
        return "see rights: the user lacks a right this check needs"
    return "see the cause; run doctor again once it is fixed"


async def examine(config: Config, warnings: Sequence[str] = ()) -> Report:
    """Every check against the configured server and pools (read-only: nothing is written, no index built)."""
    report = Report({p.name: f"{p.database}.{p.collection}" for p in config.pools})
    report.add(warn("config", w, "see check-config") for w in warnings)
    clocks = MemberClocks()
    try:
        client = mongo_client(config, appname="session-pool-exporter-doctor", clocks=clocks)
    except PyMongoError as exc:  # an option of the URI the driver refuses, an SRV record that does not resolve
        cause = redact(f"{type(exc).__name__}: {exc}")[:300]
        report.add(
            [error("connect", f"mongodb.uri cannot be used: {cause}; nothing else was checked", "fix mongodb.uri")]
        )
        return report
    try:
        await _examine(config, client, report, clocks)
    finally:
        await client.close()
    return report


async def _examine(
    config: Config, client: AsyncMongoClient[dict[str, Any]], report: Report, clocks: MemberClocks
) -> None:
    timeout = config.mongodb.timeout
    try:
        server = await probe(client, timeout)
    except SessionPoolError as exc:
        report.add([unreachable(exc)])
        for pool in config.pools:
            report.add([error("checks", "not checked: MongoDB cannot be used", "see server")], pool.name)
        return
    report.add(
        server_findings(server, admin_enabled=config.admin.enabled, read_preference=config.mongodb.read_preference)
    )
    if server.topology == "replica_set":
        offsets = await member_clocks(clocks, server.members, min(timeout, 5.0))
        report.add(clock_findings(server.members, offsets))
    try:
        rights = await _attempt("access", lambda: read_rights(client, timeout))
    except _Failed as failed:
        report.add([failed.finding])
        return
    if rights.enforced and not rights.authenticated:
        report.add([not_authenticated()])
        for pool in config.pools:
            report.add([error("checks", "not checked: nobody is logged in", "see server")], pool.name)
        return
    report.add([access_finding(rights)])
    if config.admin.enabled:
        report.add(audit_findings(rights, config))
    for pool in config.pools:
        report.add(await _pool(config, client, pool, rights), pool.name)


async def _pool(
    config: Config, client: AsyncMongoClient[dict[str, Any]], pool: PoolDefinition, rights: Rights
) -> list[Finding]:
    """The checks of one pool, in order: its collection, rights, indexes, plans, documents, timezone, refresh, sums."""
    sessions = pool_sessions(config, pool, client, timeout=LONG_READ)
    db, coll = pool.database, pool.collection
    try:
        missing = await _attempt("collection", lambda: _missing(sessions))
    except _Failed as failed:
        return [failed.finding]
    if missing is not None:
        # First and alone: index advice for a collection that does not exist would create it.
        return [missing]
    out: list[Finding] = []
    indexes: Indexes | None = None
    if rights.allows(db, coll, "listIndexes"):
        try:
            indexes = await _attempt("indexes", lambda: read_indexes(sessions))
        except _Failed as failed:
            out.append(failed.finding)
    present = None if indexes is None else not indexes.missing
    needs = pool_needs(pool, admin_enabled=config.admin.enabled, indexes_present=present)
    out += rights_findings(rights, db, coll, needs)
    can_create = rights.allows(db, coll, "createIndex")
    if indexes is not None:
        out += index_findings(sessions, pool, indexes, can_create=can_create)
    elif not rights.allows(db, coll, "listIndexes"):
        out.append(warn("indexes", f"not checked: the user may not list the indexes of {db}.{coll}", "see rights"))
    if not rights.allows(db, coll, "find"):
        skipped = f"plans, documents, timezone, refresh and sums not checked: no find on {db}.{coll}"
        out.append(error("checks", skipped, "see rights"))
        return out
    index_coming = bool(indexes and indexes.missing and pool.create_indexes and can_create)
    steps: list[tuple[str, Callable[[], Awaitable[list[Finding]]]]] = [
        ("plans", lambda: _plans(sessions, index_coming)),
        ("documents", lambda: _documents(sessions, pool)),
        ("timezone", lambda: _timezone(sessions, pool)),
        ("refresh", lambda: _refresh(sessions, pool)),
        ("sums", lambda: _sums(sessions, pool)),
    ]
    try:
        await _attempt("connect", sessions.connect)  # learns the topology; never builds indexes (see pool_sessions)
    except _Failed as failed:
        return [*out, failed.finding]
    for check, step in steps:
        try:
            out += await _attempt(check, step)
        except _Failed as failed:
            out.append(failed.finding)
    return out


async def _missing(sessions: MongoSessions) -> Finding | None:
    """An error finding when the pool's collection does not exist (with the close names), else None."""
    try:
        await sessions.check_collection()
    except CollectionMissing as exc:
        where = f"pools[].database and pools[].collection ({exc.database}.{exc.collection})"
        close = f"did you mean {' or '.join(exc.close)}? " if exc.close else ""
        return error(
            "collection",
            f"{exc.what}; the daemon reports it (collection_missing) and creates nothing; other checks skipped",
            f"{close}check {where}; names are case-sensitive",
        )
    return None


async def _plans(sessions: MongoSessions, index_coming: bool) -> list[Finding]:
    return plan_findings(await explain_statistics(sessions), index_coming=index_coming)


async def _documents(sessions: MongoSessions, pool: PoolDefinition) -> list[Finding]:
    total, found, seconds = await census(sessions)
    if total == 0:
        return [
            warn(
                "documents",
                f"{pool.database}.{pool.collection} is empty",
                "add sessions (MongoSessions.add), or check pools[].database and pools[].collection",
            )
        ]
    return document_findings(pool, total, found, seconds)


async def _timezone(sessions: MongoSessions, pool: PoolDefinition) -> list[Finding]:
    now, samples = await read_samples(sessions)
    return frame_findings(pool, sessions, now, samples)


async def _refresh(sessions: MongoSessions, pool: PoolDefinition) -> list[Finding]:
    stats, seconds = await timed_refresh(sessions, pool)
    return refresh_findings(pool, stats, seconds)


async def _sums(sessions: MongoSessions, pool: PoolDefinition) -> list[Finding]:
    sums, seconds = await timed_sums(sessions)
    return sums_findings(pool, sums, seconds)


def run_doctor(config: Config, *, as_json: bool = False, out: TextIO | None = None) -> int:
    """Check everything, print the report (text or JSON) and return the exit code: 0, 1 warnings, 4 errors."""
    report = asyncio.run(examine(config, config_warnings(config)))
    print(report.to_json() if as_json else report.to_text(), file=out or sys.stdout)
    return report.exit_code()
