"""Admin writes with their audit events: in one transaction, or intent-first on a standalone server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

import structlog
from bson import ObjectId
from pymongo.write_concern import WriteConcern

from exporter.admin.actions import ACTIONS, Plan
from exporter.admin.auth import Caller
from exporter.admin.errors import Conflict
from exporter.admin.models import Action
from exporter.audit import AuditLog, Result, event_document
from exporter.config import WriteConcernConfig
from exporter.core import Document, MongoSessions, OperationFailed, SessionPoolError, State, Transaction, own_budget
from exporter.core.queries import unlock_update
from exporter.state import PoolState

_TRANSACTION_ATTEMPTS = 5
# Repeats of an action that changed nothing count on one event for this long (see AuditLog.record_unchanged).
COALESCE = timedelta(minutes=10)
_T = TypeVar("_T")
log = structlog.get_logger("exporter.admin")


@dataclass(frozen=True)
class Outcome:
    """What one action did: the plan, the states before and after, the document after, the server time."""

    plan: Plan
    before: State
    after: State
    doc: Document
    now: datetime

    @property
    def result(self) -> Literal[Result.CHANGED, Result.UNCHANGED]:
        """CHANGED or UNCHANGED, as the audit trail and the API say it."""
        return Result.CHANGED if self.plan is Plan.APPLY else Result.UNCHANGED


class AuditedWrites:
    """Every admin write lands with its audit event, or neither does (a crash leaves 'pending', never silence)."""

    def __init__(self, audit: AuditLog, write_concern: WriteConcernConfig | None = None) -> None:
        self.audit = audit
        self._write_concern = write_concern
        self._audit_ready = False

    async def prepare(self, sessions: MongoSessions) -> None:
        """Connect and create the audit indexes lazily, so a daemon started while MongoDB is down comes up."""
        if sessions.topology is None:
            await sessions.connect()
        if not self._audit_ready:
            async with sessions.guard("audit_indexes"):
                await self.audit.ensure()
            self._audit_ready = True

    def _transaction_write_concern(self, sessions: MongoSessions) -> WriteConcern | None:
        wc = self._write_concern
        if wc is not None and wc.given:
            return WriteConcern(w=wc.w, j=wc.j, wtimeout=wc.wtimeout)
        # Majority where the deployment has one (a replica set), acknowledged otherwise.
        return WriteConcern(w="majority") if sessions.supports_transactions else None

    async def _in_transaction(self, sessions: MongoSessions, unit: Callable[[Transaction], Awaitable[_T]]) -> _T:
        """Run `unit` in a transaction, again from the start after a transient write conflict."""
        for attempt in range(_TRANSACTION_ATTEMPTS):
            try:
                async with sessions.transaction(write_concern=self._transaction_write_concern(sessions)) as txn:
                    result = await unit(txn)
                return result
            except OperationFailed as exc:
                # A write conflict with a handler's get_session: run the whole unit again.
                if not exc.transient or attempt + 1 == _TRANSACTION_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def apply(
        self,
        pool: PoolState,
        oid: ObjectId,
        action: Action,
        period: timedelta | None,
        reason: str | None,
        caller: Caller,
        rid: str,
    ) -> Outcome:
        """Apply one action to one session and record it."""
        sessions = pool.sessions
        await self.prepare(sessions)
        details = {"period_seconds": period.total_seconds()} if period else None

        def event(outcome_before: State, now: datetime, after: State | None, result: Result) -> Document:
            return event_document(
                time=now,
                actor=caller.name,
                action=str(action),
                pool=pool.name,
                session_id=str(oid),
                state_before=str(outcome_before),
                state_after=str(after) if after is not None else None,
                result=result,
                reason=reason,
                request_id=rid,
                details=details,
            )

        if not sessions.supports_transactions:
            return await self._apply_standalone(pool, oid, action, period, event)
        seen: dict[str, Any] = {}

        async def unit(txn: Transaction) -> Outcome:
            doc = await sessions.get(oid, db_session=txn)
            now = await sessions.server_time()
            before = sessions.state_of(doc, now)
            seen.update(before=before, now=now)
            plan = ACTIONS[action].plan(action, before)
            if plan is Plan.APPLY:
                await ACTIONS[action].change(sessions, oid, period, txn)
                doc = await sessions.get(oid, db_session=txn)
            outcome = Outcome(plan, before, sessions.state_of(doc, now), doc, now)
            recorded = event(before, now, outcome.after, outcome.result)
            async with sessions.guard("audit"):
                if plan is Plan.APPLY:
                    await self.audit.record(recorded, db_session=txn.db_session)
                else:
                    await self.audit.record_unchanged(recorded, within=COALESCE, db_session=txn.db_session)
            return outcome

        try:
            return await self._in_transaction(sessions, unit)
        except OperationFailed as exc:
            if "before" in seen:
                failed = event(seen["before"], seen["now"], None, Result.FAILED)
            else:
                failed = {**event(State.ACTIVE, datetime.now(UTC), None, Result.FAILED), "state_before": None}
            await self._record_refusal(sessions, failed, exc)
            raise

    async def _record_refusal(self, sessions: MongoSessions, event: Document, exc: OperationFailed) -> None:
        """Record a write the server refused, outside its rolled-back transaction: the trail shows the attempt.

        Not after a failed commit, whose outcome may be unknown; a failure to record it is only logged.
        """
        if exc.operation == "commit_transaction":
            return
        with own_budget():
            try:
                async with sessions.guard("audit"):
                    await self.audit.record({**event, "error": exc.message})
            except SessionPoolError as again:
                log.warning("audit_refusal_not_recorded", action=event.get("action"), error=again.message)

    async def _apply_standalone(
        self,
        pool: PoolState,
        oid: ObjectId,
        action: Action,
        period: timedelta | None,
        event: Callable[[State, datetime, State | None, Result], Document],
    ) -> Outcome:
        # No transactions: record the intent first, then change, then settle the event. A crash
        # in between leaves a "pending" event, never a change without an event.
        sessions = pool.sessions
        doc = await sessions.get(oid)
        now = await sessions.server_time()
        before = sessions.state_of(doc, now)
        plan = ACTIONS[action].plan(action, before)
        if plan is Plan.UNCHANGED:
            async with sessions.guard("audit"):
                await self.audit.record_unchanged(event(before, now, before, Result.UNCHANGED), within=COALESCE)
            return Outcome(plan, before, before, doc, now)
        async with sessions.guard("audit"):
            event_id = await self.audit.record(event(before, now, None, Result.PENDING))
        try:
            await ACTIONS[action].change(sessions, oid, period, None)
        except SessionPoolError as exc:
            with own_budget():
                async with sessions.guard("audit"):
                    await self.audit.settle([event_id], Result.FAILED, error=exc.message)
            raise
        # The change is applied: reading it back and settling its event must not be cut short.
        with own_budget():
            doc = await sessions.get(oid)
            outcome = Outcome(plan, before, sessions.state_of(doc, now), doc, now)
            async with sessions.guard("audit"):
                await self.audit.settle([event_id], outcome.result, state_after=str(outcome.after))
        return outcome

    async def unlock_state(
        self, pool: PoolState, state: State, cap: int, reason: str | None, caller: Caller, rid: str
    ) -> int:
        """Unlock every session in `state` (at most `cap`, else nothing), one audit event each."""
        sessions = pool.sessions
        await self.prepare(sessions)
        unlock = unlock_update(sessions.fields)

        def events(ids: list[ObjectId], now: datetime, result: Result) -> list[Document]:
            return [
                event_document(
                    time=now,
                    actor=caller.name,
                    action=str(Action.UNLOCK),
                    pool=pool.name,
                    session_id=str(oid),
                    state_before=str(state),
                    state_after=str(State.ACTIVE) if result is Result.CHANGED else None,
                    result=result,
                    reason=reason,
                    request_id=rid,
                    details={"bulk": True},
                )
                for oid in ids
            ]

        async def ids_now(db_session: Any) -> tuple[list[ObjectId], datetime]:
            now = await sessions.server_time()
            docs = await sessions.find(
                filter=sessions.state_filter(state, now), projection={"_id": 1}, limit=cap + 1, session=db_session
            )
            ids = [d["_id"] for d in docs]
            if len(ids) > cap:
                raise Conflict(f"more than admin.bulk_unlock_cap ({cap}) sessions are {state}; nothing was changed")
            return ids, now

        if not sessions.supports_transactions:
            # Intent first, then each session unlocked only if it is still in `state` (it may have
            # changed since it was listed), then every event settled by its own id.
            ids, now = await ids_now(None)
            async with sessions.guard("audit"):
                event_ids = await self.audit.record_many(events(ids, now, Result.PENDING))
            changed: list[ObjectId] = []
            unchanged: list[ObjectId] = []
            try:
                for oid, event_id in zip(ids, event_ids, strict=True):
                    still = {"_id": oid, **sessions.state_filter(state, await sessions.server_time())}
                    result = await sessions.update_one(still, unlock, comment="bulk_unlock")
                    (changed if result.modified_count else unchanged).append(event_id)
            except SessionPoolError as exc:
                done = set(changed) | set(unchanged)
                with own_budget():
                    async with sessions.guard("audit"):
                        await self.audit.settle(changed, Result.CHANGED, state_after=str(State.ACTIVE))
                        await self.audit.settle(unchanged, Result.UNCHANGED)
                        await self.audit.settle(
                            [e for e in event_ids if e not in done], Result.FAILED, error=exc.message
                        )
                raise
            with own_budget():
                async with sessions.guard("audit"):
                    await self.audit.settle(changed, Result.CHANGED, state_after=str(State.ACTIVE))
                    await self.audit.settle(unchanged, Result.UNCHANGED)
            return len(changed)

        async def unit(txn: Transaction) -> int:
            ids, now = await ids_now(txn.db_session)
            if ids:
                await sessions.update_many(
                    filter={"_id": {"$in": ids}}, update=unlock, session=txn.db_session, comment="bulk_unlock"
                )
                async with sessions.guard("audit"):
                    await self.audit.record_many(events(ids, now, Result.CHANGED), db_session=txn.db_session)
            return len(ids)

        try:
            return await self._in_transaction(sessions, unit)
        except OperationFailed as exc:
            # Which sessions it would have changed is unknown once rolled back: one event for the attempt.
            attempt = {**events([ObjectId()], datetime.now(UTC), Result.FAILED)[0], "session_id": None}
            await self._record_refusal(sessions, attempt, exc)
            raise
