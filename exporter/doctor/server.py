"""The server: whether it answers, its version and topology, and how far this host's clock is from it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient

from exporter.core import SessionPoolError, Unavailable, errors, format_duration, guard
from exporter.core.clocks import TOLERANCE, MemberClocks, Reading, outliers
from exporter.doctor.findings import Finding, error, ok, warn

# $unionWith (4.4) and snapshot reads (5.0) make the statistics one aggregation of one instant.
MIN_VERSION = (5, 0)
# Beyond this, a handler of the original library on this host holds sessions noticeably shorter or longer.
SKEW_WARN = timedelta(seconds=2)
_CLOCK_SAMPLES = 5

_CONNECT_FIXES = {
    errors.REFUSED: "is mongod running and listening on the host and port of mongodb.uri "
    "(its bind_ip included), with no firewall in between?",
    errors.HOST_NOT_FOUND: "check the host name in mongodb.uri (DNS)",
    errors.TLS_FAILED: "check the TLS options of mongodb.uri (tlsCAFile) and the server's certificate",
    errors.AUTH_FAILED: "check the user, password and authSource of mongodb.uri",
    errors.SET_NAME_MISMATCH: "the servers answer, but as members of another replica set: set replicaSet= in "
    "mongodb.uri to the name rs.status() shows (or leave it out with directConnection=true)",
    errors.NO_PRIMARY: "the replica set has no primary: check rs.status() on a member",
    errors.NO_ANSWER: "the server takes connections but does not answer: is it frozen, overloaded or stopped "
    "(SIGSTOP)? Check its log and load, or raise mongodb.server_selection_timeout",
    errors.NO_SERVER: "nothing answered in time: check the network path and that the server runs",
    errors.CONNECTION_CLOSED: "the server closed the connection: check its log (TLS required? connection limit?)",
    errors.CONNECTION_LOST: "the connection dropped: check the server's log and the network path",
}


@dataclass(frozen=True)
class Server:
    """What the server says about itself, and the clock difference measured with the round trip."""

    version: str
    topology: str
    set_name: str | None
    primary: bool
    skew: timedelta
    uncertainty: timedelta
    members: tuple[str, ...] = ()  # host:port of every data-bearing member (hello.hosts and passives)

    @property
    def version_tuple(self) -> tuple[int, ...]:
        """`6.0.5` as (6, 0, 5); unparsable parts end it."""
        parts: list[int] = []
        for part in self.version.split("."):
            if not part.isdigit():
                break
            parts.append(int(part))
        return tuple(parts)


def topology_of(hello: dict[str, Any]) -> str:
    """'sharded', 'replica_set' or 'standalone', as `MongoSessions.connect()` names it."""
    if hello.get("msg") == "isdbgrid":
        return "sharded"
    return "replica_set" if hello.get("setName") else "standalone"


async def probe(client: AsyncMongoClient[dict[str, Any]], timeout: float) -> Server:  # noqa: ASYNC109
    """Ask the server who it is, and sample its clock a few times (the shortest round trip wins)."""
    best: tuple[float, timedelta] | None = None
    hello: dict[str, Any] = {}
    async with guard("hello", timeout, client):
        for _ in range(_CLOCK_SAMPLES):
            started = time.time()
            hello = await client.admin.command("hello")
            ended = time.time()
            server_time = hello.get("localTime")
            if isinstance(server_time, datetime):
                server_time = server_time if server_time.tzinfo else server_time.replace(tzinfo=UTC)
                skew = server_time - datetime.fromtimestamp((started + ended) / 2, UTC)
                if best is None or ended - started < best[0]:
                    best = (ended - started, skew)
        build = await client.admin.command("buildInfo")
    round_trip, skew = best if best is not None else (0.0, timedelta(0))
    return Server(
        version=str(build.get("version", "unknown")),
        topology=topology_of(hello),
        set_name=hello.get("setName"),
        primary=bool(hello.get("isWritablePrimary") or hello.get("msg") == "isdbgrid"),
        skew=skew,
        # localTime has millisecond resolution; the reading happened somewhere within the round trip.
        uncertainty=timedelta(seconds=round_trip / 2) + timedelta(milliseconds=1),
        members=tuple(str(h) for h in [*hello.get("hosts", []), *hello.get("passives", [])]),
    )


async def member_clocks(clocks: MemberClocks, members: tuple[str, ...], wait: float) -> dict[str, Reading]:
    """The clock of every member, from the client's heartbeats (the first are plain hellos), waiting up to `wait` s."""
    deadline = time.monotonic() + wait
    while True:
        offsets = clocks.offsets()
        if all(m in offsets for m in members) or time.monotonic() > deadline:
            return offsets
        await asyncio.sleep(0.05)


def clock_findings(
    members: tuple[str, ...], offsets: dict[str, Reading], tolerance: float = TOLERANCE
) -> list[Finding]:
    """Whether the members' clocks agree within `tolerance`: the leases' bound (see docs/replica-set.md)."""
    if len(members) < 2:
        return []
    limit = format_duration(tolerance)
    fix = (
        f"synchronise the members' clocks (NTP: chrony or systemd-timesyncd); the leases need them within {limit} "
        "of each other"
    )
    out: list[Finding] = []
    for member, ahead, within in outliers({m: r for m, r in offsets.items() if m in members}, tolerance):
        off = format_duration(round(abs(ahead), 3))
        plus = format_duration(round(within, 3))
        if ahead > 0:
            effect = f"once it is primary, every hold with less than {off} left ends at once, while its handler works"
        else:
            effect = f"the holds it sets as primary end {off} early once another member is primary"
        where = "ahead of" if ahead > 0 else "behind"
        found = f"{member}'s clock is {off} {where} the other members' (±{plus}): {effect}"
        out.append(error("member-clocks", found, fix))
    missing = [m for m in members if m not in offsets]
    if missing:
        out.append(warn("member-clocks", f"no heartbeat answer from {', '.join(missing)}: its clock is not checked",
                        "check that every member runs and is reachable from this host"))  # fmt: skip
    if not out:
        values = [offsets[m].offset for m in members]
        spread = format_duration(round(max(values) - min(values), 3))
        out.append(ok("member-clocks", f"the {len(members)} members' clocks agree within {spread} (bound {limit})"))
    return out


def unreachable(exc: SessionPoolError) -> Finding:
    """The server could not be used at all: the cause in a few words, never the driver's topology dump."""
    # A refused login is Unavailable too, with the reason "authentication failed".
    cause = exc.reason if isinstance(exc, Unavailable) else exc.message
    fix = _CONNECT_FIXES.get(cause, "check mongodb.uri and that the server runs")
    return error("connect", f"MongoDB cannot be used: {cause}; nothing else was checked", fix)


def server_findings(server: Server, *, admin_enabled: bool, read_preference: str = "primary") -> list[Finding]:
    """Version, topology and clock findings."""
    out: list[Finding] = []
    version = f"MongoDB {server.version}"
    if server.version_tuple and server.version_tuple < MIN_VERSION:
        out.append(
            error(
                "version",
                f"{version}: the statistics need MongoDB 5.0 or later "
                "($unionWith, snapshot reads); every refresh fails",
                "upgrade MongoDB to 5.0 or later",
            )
        )
    else:
        out.append(ok("version", version))
    out.append(_topology(server, admin_enabled, read_preference))
    out.append(_clock(server))
    return out


def _topology(server: Server, admin_enabled: bool, read_preference: str) -> Finding:
    if server.topology == "standalone":
        admin = (
            "admin writes are not transactional (audit event first, then the change, then the event settled: "
            "a crash in between leaves a pending event)"
            if admin_enabled
            else "admin writes (when the admin API is turned on) would not be transactional"
        )
        return warn(
            "topology",
            f"standalone server: {admin}, and the statistics' parts are read milliseconds apart, not as one snapshot",
            "run mongod as a replica set; one member is enough (mongod --replSet rs0, then rs.initiate())",
        )
    if server.topology == "sharded":
        return ok("topology", "sharded cluster (mongos): transactions and snapshot reads available")
    if not server.primary:
        return warn(
            "topology",
            f"replica set {server.set_name}, but this member is not the primary: index builds and admin writes fail",
            "connect to the replica set (replicaSet=NAME in mongodb.uri, without directConnection)",
        )
    where = "the primary" if read_preference == "primary" else f"read preference {read_preference}"
    return ok(
        "topology",
        f"replica set {server.set_name}: statistics read one snapshot from {where}; "
        "admin writes commit with their audit events",
    )


def _clock(server: Server) -> Finding:
    seconds = abs(server.skew.total_seconds())
    off = format_duration(round(seconds, 3))
    within = format_duration(round(server.uncertainty.total_seconds(), 3))
    if abs(server.skew) - server.uncertainty <= SKEW_WARN:
        return ok("clock", f"this host's clock and the server's differ by {off} (±{within})")
    behind = server.skew > timedelta(0)
    direction = "behind" if behind else "ahead of"
    effect = "shorter" if behind else "longer"
    return warn(
        "clock",
        f"this host's clock is {off} {direction} the server's (±{within}): the daemon and this library use the "
        f"server's time, but handlers of the original library on this host hold sessions {off} {effect}",
        "synchronise this host's clock (NTP: chrony or systemd-timesyncd)",
    )
