"""The pool's statistics reads: every count at one snapshot in one aggregation, and the sums on their own."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ConfigurationError
from pymongo.read_preferences import _ServerMode

from exporter.core import queries
from exporter.core.errors import NAMESPACE_NOT_FOUND, OperationFailed
from exporter.core.model import HELD_STATES, Document, State, Statistics, Sums
from exporter.core.operations import DbSession, Runner, driver_session
from exporter.core.options import ClientOptions
from exporter.core.queries import Row, StateRules, Total
from exporter.core.server import ServerView

# The original's count_active and count_locked filters at a server time, for a customised selection (else None).
LegacyFilters = Callable[[datetime], Mapping[str, Mapping[str, Any]] | None]


def fold(
    rows: list[Document], now: datetime, snapshot: bool, *, custom: bool, from_stored: Callable[[datetime], datetime]
) -> Statistics:
    """Fold the statistics pipeline's rows into one Statistics."""
    counts: dict[State | Row, int] = {}
    total = 0
    uses: int | None = None
    successes: int | None = None
    next_unlock: datetime | None = None
    oldest: datetime | None = None
    for row in rows:
        try:
            kind = Row(str(row.get("k")))
        except ValueError:
            continue
        n = int(row.get("n") or 0)
        match kind:
            case Row.SUMS:
                total = int(row.get("total") or 0)
                uses, successes = int(row.get("uses") or 0), int(row.get("successes") or 0)
            case Row.TOTAL:
                total = n
            case Row.OLDEST:
                if isinstance(row.get("v"), datetime):
                    oldest = from_stored(row["v"])
            case Row.HELD:
                state = queries.held_state(row.get("kind"), row.get("bucket"))
                counts[state] = counts.get(state, 0) + n
                first = row.get("first")
                if state in (State.LOCKED, State.BLOCKED) and isinstance(first, datetime):
                    candidate = from_stored(first)
                    next_unlock = candidate if next_unlock is None else min(next_unlock, candidate)
            case _:
                counts[kind] = counts.get(kind, 0) + n
    held = {state: counts.get(state, 0) for state in HELD_STATES}
    inactive = counts.get(Row.INACTIVE, 0)
    states = {State.ACTIVE: max(total - inactive - sum(held.values()), 0), **held, State.INACTIVE: inactive}
    legacy = {"count_blocked": counts.get(Row.DEACTIVATED, 0), "count_total": total}
    if custom:
        legacy |= {"count_active": counts.get(Row.LEGACY_ACTIVE, 0), "count_locked": counts.get(Row.LEGACY_LOCKED, 0)}
    return Statistics(
        time=now,
        states={s: states[s] for s in State},
        total=total,
        uses=uses,
        successes=successes,
        next_unlock=next_unlock,
        oldest_active_last_use=oldest,
        snapshot=snapshot,
        legacy=legacy,
    )


def sums_of(rows: list[Document], now: datetime) -> Sums:
    """The sums pipeline's rows as one Sums."""
    sums = next((r for r in rows if r.get("k") == Row.SUMS), {})
    metadata = next((r for r in rows if r.get("k") == Row.TOTAL), None)
    return Sums(
        time=now,
        total=int(sums.get("total") or 0),
        uses=int(sums.get("uses") or 0),
        successes=int(sums.get("successes") or 0),
        metadata_total=int(metadata["n"]) if metadata is not None else None,
        overruns=int(sums.get("overruns") or 0),
    )


class StatisticsReader:
    """Reads a pool's statistics where the statistics read preference sends them (a caller's session: its own)."""

    def __init__(self, runner: Runner, options: ClientOptions, server: ServerView) -> None:
        self._runner = runner
        self._options = options
        self._server = server

    def read_preference(self, db_session: DbSession) -> _ServerMode | None:
        """The statistics read preference, or None inside a caller's session (a transaction reads the primary)."""
        return self._options.statistics_read if driver_session(db_session) is None else None

    def collection(self, db_session: DbSession) -> AsyncCollection[Document]:
        """The collection for a statistics read: the statistics read preference, unless inside a caller's session."""
        coll = self._runner.coll()
        read = self.read_preference(db_session)
        return coll if read is None else coll.with_options(read_preference=read)

    def pipeline(
        self, now: datetime, rules: StateRules, legacy: Mapping[str, Mapping[str, Any]] | None, total: Total | str
    ) -> list[dict[str, Any]]:
        """The statistics aggregation at the server time `now` (with the original's counts when `legacy` is given)."""
        return queries.statistics_pipeline(rules, self._runner.coll().name, now, legacy or {}, total=total)

    async def statistics(
        self, rules: StateRules, legacy: LegacyFilters, db_session: DbSession, total: Total
    ) -> Statistics:
        """Counts per state, the original's four counts, sums (with Total.SUMS) and key times, for one moment."""
        now = await self._server.time("aggregate_statistics", self.read_preference(db_session))
        extra = legacy(now)
        try:
            rows, snapshot = await self.read_all(
                "aggregate_statistics", self.pipeline(now, rules, extra, total), db_session
            )
        except OperationFailed as exc:
            if exc.code != NAMESPACE_NOT_FOUND or total is not Total.METADATA:
                raise
            # No collection yet ($collStats needs one): an empty pool, counted without it.
            pipeline = self.pipeline(now, rules, extra, Total.COUNT)
            rows, snapshot = await self.read_all("aggregate_statistics", pipeline, db_session)
        stats = fold(rows, now, snapshot, custom=extra is not None, from_stored=self._options.frame.from_stored)
        if total is Total.SUMS and stats.uses is None:
            # An empty collection answers no SUMS row: its sums are zero.
            stats.uses = stats.successes = 0
        return stats

    async def sums(self, rules: StateRules, db_session: DbSession) -> Sums:
        """The sums of `count_use` and `count_success` and the exact total (one pass over every document)."""
        now = await self._server.time("aggregate_sums", self.read_preference(db_session))
        pipeline = queries.sums_pipeline(rules.fields, self._runner.coll().name)
        try:
            rows, _ = await self.read_all("aggregate_sums", pipeline, db_session)
        except OperationFailed as exc:
            if exc.code != NAMESPACE_NOT_FOUND:
                raise
            # No collection (yet): nothing to sum, and nothing for the metadata to disagree with.
            return Sums(time=now, total=0, uses=0, successes=0, metadata_total=0)
        return sums_of(rows, now)

    async def read_all(
        self, operation: str, pipeline: list[dict[str, Any]], db_session: DbSession
    ) -> tuple[list[Document], bool]:
        """Every row of an aggregation, at one snapshot when the server allows it (and no session was given)."""
        coll = self.collection(db_session)
        session = driver_session(db_session)
        snapshot = session is None and self._server.supports_transactions
        client = self._runner.client

        async def read_rows() -> list[Document]:
            nonlocal snapshot
            if snapshot:
                # Snapshot read concern: every branch of the pipeline reads the same instant.
                try:
                    async with client.start_session(snapshot=True) as snap:
                        return await (await coll.aggregate(pipeline, session=snap)).to_list(None)
                except ConfigurationError:
                    # The driver refuses a snapshot on a connection whose handshake did not offer it
                    # (seen right after a server restart): read this once without.
                    snapshot = False
            return await (await coll.aggregate(pipeline, session=session)).to_list(None)

        rows = await self._runner.run(operation, read_rows, self.read_preference(db_session))
        return rows, snapshot
