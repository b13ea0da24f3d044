"""The admin service: the actions operators take on sessions, applied with their audit events (no HTTP)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, TypeVar

import structlog
from bson import ObjectId
from pymongo.write_concern import WriteConcern

from exporter.admin.errors import AdminError, Conflict, InvalidRequest, PoolNotFound
from exporter.admin.models import (
    Action,
    ActionResult,
    AuditEvent,
    AuditPage,
    AuditQuery,
    BulkUnlockResult,
    PoolList,
    PoolView,
    SessionView,
    StatisticsView,
)
from exporter.audit import AuditFilters, AuditLog, event_document
from exporter.config import AdminConfig, WriteConcernConfig
from exporter.core import (
    Document,
    Hold,
    InvalidInput,
    MongoSessions,
    OperationFailed,
    SessionNotFound,
    SessionPoolError,
    State,
    Transaction,
    guard,
    parse_period,
)
from exporter.core.queries import unlock_update
from exporter.metrics import Metrics
from exporter.runtime import PoolRuntime

log = structlog.get_logger("exporter.admin")

_TRANSACTION_ATTEMPTS = 5
_T = TypeVar("_T")
BULK_UNLOCK = "bulk_unlock"
SET_BY = {Hold.USE: "get_session", Hold.LOCK: "session_lock", Hold.BLOCK: "session_block"}


@dataclass(frozen=True)
class Caller:
    """Who acts: the token's name (the audit actor) and role."""

    name: str
    role: Literal["read", "write"]


class Plan(StrEnum):
    """What an action will do to a session in a given state."""

    APPLY = "apply"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class ActionSpec:
    """One row of the action table: the core method, the states it changes, and its period."""

    method: str
    changes: frozenset[State]
    refuses: frozenset[State] = frozenset()
    period: Literal["lock_time", "block_time"] | None = None

    def plan(self, action: Action, before: State) -> Plan:
        """APPLY or UNCHANGED for a session in state `before`; Conflict when the action cannot apply."""
        if before in self.refuses:
            raise Conflict(f"session is {before}; activate it before you {action} it")
        return Plan.APPLY if before in self.changes else Plan.UNCHANGED


_ALL = frozenset(State)
ACTIONS: dict[Action, ActionSpec] = {
    Action.UNLOCK: ActionSpec("session_unlock", frozenset({State.LOCKED, State.BLOCKED, State.IN_USE})),
    Action.DEACTIVATE: ActionSpec("session_inactive", _ALL - {State.INACTIVE}),
    Action.ACTIVATE: ActionSpec("session_activate", _ALL - {State.ACTIVE}),
    Action.LOCK: ActionSpec(
        "session_lock", _ALL - {State.LOCKED, State.INACTIVE}, frozenset({State.INACTIVE}), "lock_time"
    ),
    Action.BLOCK: ActionSpec(
        "session_block", _ALL - {State.BLOCKED, State.INACTIVE}, frozenset({State.INACTIVE}), "block_time"
    ),
}


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


class AdminService:
    """Reads and writes operators make on the daemon's pools, each write with its audit event."""

    def __init__(
        self,
        config: AdminConfig,
        pools: Mapping[str, PoolRuntime],
        audit: AuditLog,
        refresh: Callable[[str], Awaitable[object]],
        metrics: Metrics,
        write_concern: WriteConcernConfig | None = None,
    ) -> None:
        self.config = config
        self.pools = pools
        self.audit = audit
        self.refresh = refresh
        self.metrics = metrics
        self._write_concern = write_concern
        self._audit_ready = False
        # Known label values start at 0, so rate() and increase() see the first action or failure.
        for name in pools:
            metrics.add_pool(name, actions=[*(a.value for a in Action), BULK_UNLOCK])

    # -- helpers --

    def pool(self, name: str) -> PoolRuntime:
        """The pool of that name; PoolNotFound otherwise."""
        pool = self.pools.get(name)
        if pool is None:
            raise PoolNotFound(name)
        return pool

    def reason(self, reason: str | None) -> str | None:
        """The reason, refused when longer than admin.reason_max_length."""
        if reason is not None and len(reason) > self.config.reason_max_length:
            raise InvalidRequest(
                f"reason is {len(reason)} characters long; at most {self.config.reason_max_length} are allowed",
                errors=[{"loc": ["reason"], "msg": "too long"}],
            )
        return reason

    def period(self, action: Action, period: Mapping[str, float] | None, sessions: MongoSessions) -> timedelta | None:
        """The period of a lock or block (its default when not given), within admin.max_period."""
        spec = ACTIONS[action]
        if spec.period is None:
            if period is not None:
                raise InvalidRequest(f"period only applies to lock and block, not {action}")
            return None
        try:
            delta = parse_period(period, getattr(sessions, spec.period))
        except InvalidInput as exc:
            raise InvalidRequest(exc.message, errors=[{"loc": ["period"], "msg": exc.message}]) from None
        limit = timedelta(seconds=self.config.max_period)
        if delta > limit:
            raise InvalidRequest(
                f"period {delta} is longer than the allowed maximum {limit} (admin.max_period)",
                errors=[{"loc": ["period"], "msg": "too long"}],
            )
        return delta

    async def _prepare(self, sessions: MongoSessions) -> None:
        # Lazily, so a daemon started while MongoDB is down still comes up.
        if sessions.topology is None:
            await sessions.connect()
        if not self._audit_ready:
            async with guard("audit_indexes", sessions.timeout):
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

    def _count_failure(self, pool: str, action: str, exc: Exception) -> bool:
        """Count a write MongoDB failed (not a client error); True when it was counted."""
        if isinstance(exc, InvalidInput | SessionNotFound | AdminError):
            return False
        self.metrics.admin_action_failures.labels(pool=pool, action=action).inc()
        return True

    async def _after_write(self, pool: str) -> None:
        try:
            await self.refresh(pool)
        except Exception as exc:  # the change is committed; a failed refresh only delays the gauges
            log.warning("admin_refresh_failed", pool=pool, error=str(exc))

    # -- reads --

    def list_pools(self) -> PoolList:
        """Every pool with its last statistics and refresh status."""
        views = []
        for name, pool in self.pools.items():
            stats = pool.stats
            views.append(
                PoolView(
                    name=name,
                    database=pool.sessions.collection.database.name,
                    collection=pool.sessions.collection.name,
                    up=pool.up,
                    last_success=(
                        datetime.fromtimestamp(pool.last_success, UTC).isoformat() if pool.last_success else None
                    ),
                    last_error=pool.last_error,
                    active=pool.active,
                    statistics=StatisticsView.model_validate(stats.to_dict()) if stats else None,
                )
            )
        return PoolList(pools=views)

    def view(self, pool: PoolRuntime, doc: Document, now: datetime) -> SessionView:
        """What an operator sees of one session document."""
        sessions = pool.sessions
        f = sessions.fields
        hold = doc.get(f.hold)
        state = sessions.state_of(doc, now)
        held = state in (State.LOCKED, State.BLOCKED, State.IN_USE)
        extra: dict[str, Any] = {}
        if self.config.expose_credentials:
            extra["session"] = json.loads(json.dumps(doc.get(f.session), default=_json_default))
        return SessionView(
            pool=pool.name,
            id=str(doc["_id"]),
            state=state,
            active=doc.get(f.active),
            next_use=_iso(doc.get(f.next_use)),
            last_use=_iso(doc.get(f.last_use)),
            created=_iso(doc.get(f.created)),
            count_use=doc.get(f.count_use),
            count_success=doc.get(f.count_success),
            hold=hold,
            set_by=SET_BY[Hold(hold)] if hold in set(Hold) else ("unknown (legacy document)" if held else None),
            **extra,
        )

    async def session(self, pool_name: str, oid: ObjectId) -> SessionView:
        """One session as an operator sees it."""
        pool = self.pool(pool_name)
        doc = await pool.sessions.get(oid)
        now = await pool.sessions.server_time()
        return self.view(pool, doc, now)

    async def search_audit(self, query: AuditQuery) -> AuditPage:
        """Search the audit trail by pool, action, session, actor, time range; paginated."""
        filters = AuditFilters(
            pool=query.pool,
            action=str(query.action) if query.action else None,
            session_id=query.session_id,
            actor=query.actor,
            request_id=query.request_id,
            since=query.since,
            until=query.until,
        )
        try:
            filters.query()
        except InvalidInput as exc:
            raise InvalidRequest(exc.message) from None
        timeout = next(iter(self.pools.values())).sessions.timeout if self.pools else 10.0
        async with guard("audit_search", timeout):
            events, total = await self.audit.search(
                filters, page=query.page, page_size=query.page_size, order=query.order
            )
        return AuditPage(
            events=[
                AuditEvent.model_validate({**{k: _iso(v) for k, v in e.items() if k != "_id"}, "id": str(e["_id"])})
                for e in events
            ],
            page=query.page,
            page_size=query.page_size,
            order=query.order,
            total=total,
        )

    # -- one session --

    async def act(
        self,
        pool_name: str,
        oid: ObjectId,
        action: Action,
        *,
        period: Mapping[str, float] | None,
        reason: str | None,
        caller: Caller,
        request_id: str,
    ) -> ActionResult:
        """Apply one action to one session, with its audit event, atomically where the server allows."""
        pool = self.pool(pool_name)
        reason = self.reason(reason)
        delta = self.period(action, period, pool.sessions)
        try:
            result = await self._apply(pool, oid, action, delta, reason, caller, request_id)
        except (SessionPoolError, AdminError) as exc:
            if self._count_failure(pool.name, str(action), exc):
                log.warning(
                    "admin_action_failed", pool=pool.name, action=str(action), actor=caller.name,
                    session_id=str(oid), request_id=request_id, error=str(exc),
                )  # fmt: skip
            raise
        self.metrics.admin_actions.labels(pool=pool.name, action=str(action)).inc()
        log.info(
            "admin_action", pool=pool.name, action=str(action), actor=caller.name, session_id=str(oid),
            result=result.result, request_id=request_id,
        )  # fmt: skip
        if result.result == "changed":
            await self._after_write(pool.name)
        return result

    async def _change(
        self, sessions: MongoSessions, oid: ObjectId, action: Action, period: timedelta | None, db_session: Any
    ) -> None:
        method = getattr(sessions, ACTIONS[action].method)
        if period is not None:
            await method(oid, {"seconds": period.total_seconds()}, db_session=db_session)
        else:
            await method(oid, db_session=db_session)

    def _result(
        self, pool: PoolRuntime, oid: ObjectId, action: Action, plan: Plan, before: State, doc: Document,
        now: datetime, rid: str,
    ) -> ActionResult:  # fmt: skip
        view = self.view(pool, doc, now)
        return ActionResult(
            pool=pool.name,
            id=str(oid),
            action=action,
            result="changed" if plan is Plan.APPLY else "unchanged",
            state_before=before,
            state_after=view.state,
            request_id=rid,
            session=view,
        )

    async def _apply(
        self,
        pool: PoolRuntime,
        oid: ObjectId,
        action: Action,
        period: timedelta | None,
        reason: str | None,
        caller: Caller,
        rid: str,
    ) -> ActionResult:
        sessions = pool.sessions
        await self._prepare(sessions)
        details = {"period_seconds": period.total_seconds()} if period else None
        if not sessions.supports_transactions:
            return await self._apply_standalone(pool, oid, action, period, reason, caller, rid, details)

        async def unit(txn: Transaction) -> ActionResult:
            doc = await sessions.get(oid, db_session=txn)
            now = await sessions.server_time()
            before = sessions.state_of(doc, now)
            plan = ACTIONS[action].plan(action, before)
            if plan is Plan.APPLY:
                await self._change(sessions, oid, action, period, txn)
                doc = await sessions.get(oid, db_session=txn)
            result = self._result(pool, oid, action, plan, before, doc, now, rid)
            event = event_document(
                time=now,
                actor=caller.name,
                action=str(action),
                pool=pool.name,
                session_id=str(oid),
                state_before=str(result.state_before),
                state_after=str(result.state_after),
                result=result.result,
                reason=reason,
                request_id=rid,
                details=details,
            )
            async with guard("audit", sessions.timeout):
                await self.audit.record(event, db_session=txn.db_session)
            return result

        return await self._in_transaction(sessions, unit)

    async def _apply_standalone(
        self,
        pool: PoolRuntime,
        oid: ObjectId,
        action: Action,
        period: timedelta | None,
        reason: str | None,
        caller: Caller,
        rid: str,
        details: dict[str, Any] | None,
    ) -> ActionResult:
        # No transactions: record the intent first, then change, then settle the event. A crash
        # in between leaves a "pending" event, never a change without an event.
        sessions = pool.sessions
        doc = await sessions.get(oid)
        now = await sessions.server_time()
        before = sessions.state_of(doc, now)
        plan = ACTIONS[action].plan(action, before)
        event = event_document(
            time=now,
            actor=caller.name,
            action=str(action),
            pool=pool.name,
            session_id=str(oid),
            state_before=str(before),
            state_after=None,
            result="pending" if plan is Plan.APPLY else "unchanged",
            reason=reason,
            request_id=rid,
            details=details,
        )
        async with guard("audit", sessions.timeout):
            event_id = await self.audit.record(event)
        if plan is Plan.APPLY:
            try:
                await self._change(sessions, oid, action, period, None)
            except SessionPoolError as exc:
                async with guard("audit", sessions.timeout):
                    await self.audit.update(event_id, {"result": "failed", "error": str(exc)})
                raise
            doc = await sessions.get(oid)
        result = self._result(pool, oid, action, plan, before, doc, now, rid)
        async with guard("audit", sessions.timeout):
            await self.audit.update(event_id, {"result": result.result, "state_after": str(result.state_after)})
        return result

    # -- a whole state --

    async def bulk_unlock(
        self,
        pool_name: str,
        state: Literal["locked", "blocked"],
        *,
        dry_run: bool,
        reason: str | None,
        caller: Caller,
        request_id: str,
    ) -> BulkUnlockResult:
        """Unlock every session of a pool in state locked or blocked (dry_run counts them)."""
        pool = self.pool(pool_name)
        reason = self.reason(reason)
        sessions = pool.sessions
        target = State(state)
        cap = self.config.bulk_unlock_cap
        now = await sessions.server_time()
        matched = await sessions.count_documents(filter=sessions.state_filter(target, now), _op=BULK_UNLOCK)
        if dry_run:
            return BulkUnlockResult(
                pool=pool.name, state=state, dry_run=True, matched=matched, would_change=min(matched, cap), cap=cap,
                request_id=request_id,
            )  # fmt: skip
        if matched > cap:
            raise Conflict(
                f"{matched} sessions are {target}, more than admin.bulk_unlock_cap ({cap}); nothing was changed"
            )
        try:
            changed = await self._bulk(pool, target, reason, caller, request_id)
        except (SessionPoolError, AdminError) as exc:
            self._count_failure(pool.name, BULK_UNLOCK, exc)
            raise
        self.metrics.admin_actions.labels(pool=pool.name, action=BULK_UNLOCK).inc()
        log.info(
            "admin_bulk_unlock", pool=pool.name, state=state, actor=caller.name, changed=changed, request_id=request_id
        )
        if changed:
            await self._after_write(pool.name)
        return BulkUnlockResult(
            pool=pool.name, state=state, dry_run=False, matched=changed, changed=changed, cap=cap, request_id=request_id
        )

    async def _bulk(self, pool: PoolRuntime, state: State, reason: str | None, caller: Caller, rid: str) -> int:
        sessions = pool.sessions
        await self._prepare(sessions)
        cap = self.config.bulk_unlock_cap
        unlock = unlock_update(sessions.fields)

        def events(ids: list[ObjectId], now: datetime, result: str) -> list[Document]:
            return [
                event_document(
                    time=now,
                    actor=caller.name,
                    action="unlock",
                    pool=pool.name,
                    session_id=str(oid),
                    state_before=str(state),
                    state_after=str(State.ACTIVE) if result == "changed" else None,
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
            ids, now = await ids_now(None)
            async with guard("audit", sessions.timeout):
                await self.audit.record_many(events(ids, now, "pending"))
            await sessions.update_many(filter={"_id": {"$in": ids}}, update=unlock, _op=BULK_UNLOCK)
            async with guard("audit", sessions.timeout):
                await self.audit.collection.update_many(
                    {"request_id": rid, "result": "pending"}, {"$set": {"result": "changed", "state_after": "active"}}
                )
            return len(ids)

        async def unit(txn: Transaction) -> int:
            ids, now = await ids_now(txn.db_session)
            if ids:
                await sessions.update_many(
                    filter={"_id": {"$in": ids}}, update=unlock, session=txn.db_session, _op=BULK_UNLOCK
                )
                async with guard("audit", sessions.timeout):
                    await self.audit.record_many(events(ids, now, "changed"), db_session=txn.db_session)
            return len(ids)

        return await self._in_transaction(sessions, unit)
