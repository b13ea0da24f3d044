"""The admin service: operators' reads and actions on pools, checked, counted and logged (no HTTP)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Literal

import structlog
from bson import ObjectId

from exporter.admin.actions import ACTIONS
from exporter.admin.auth import Caller
from exporter.admin.errors import AdminError, Conflict, InvalidRequest, PoolNotFound
from exporter.admin.listing import SessionLists
from exporter.admin.models import (
    Action,
    ActionResult,
    AuditPage,
    AuditQuery,
    BulkUnlockResult,
    HistoryQuery,
    PoolList,
    SessionHistory,
    SessionPage,
    SessionsQuery,
    SessionView,
    StatesTimeline,
)
from exporter.admin.overview import pool_list, states_timeline
from exporter.admin.views import audit_event, session_view
from exporter.admin.writes import AuditedWrites, Outcome
from exporter.audit import AuditFilters, AuditLog, Result
from exporter.config import AdminConfig, WriteConcernConfig
from exporter.core import (
    Document,
    InvalidInput,
    MongoSessions,
    SessionNotFound,
    SessionPoolError,
    State,
    format_duration,
    parse_period,
)
from exporter.metrics import Metrics
from exporter.state import PoolState

log = structlog.get_logger("exporter.admin")

BULK_UNLOCK = "bulk_unlock"


class AdminService:
    """Reads and writes operators make on the daemon's pools, each write with its audit event."""

    def __init__(
        self,
        config: AdminConfig,
        pools: Mapping[str, PoolState],
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
        self.writes = AuditedWrites(audit, write_concern)
        self.lists = SessionLists(config)
        # Known label values start at 0, so rate() and increase() see the first action or failure.
        for name, state in pools.items():
            if state.watched:  # a pool other daemons watch has its series there (shard)
                metrics.add_pool(name, actions=[*(a.value for a in Action), BULK_UNLOCK])

    # -- helpers --

    def pool(self, name: str) -> PoolState:
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
                location="body.reason",
            )
        return reason

    def period(self, action: Action, period: Mapping[str, float] | None, sessions: MongoSessions) -> timedelta | None:
        """The period of a lock or block (its default when not given), within admin.max_period."""
        spec = ACTIONS[action]
        if spec.default_period is None:
            if period is not None:
                raise InvalidRequest(f"period only applies to lock and block, not {action}", location="body.period")
            return None
        try:
            delta = parse_period(period, spec.default_period(sessions))
        except InvalidInput as exc:
            raise InvalidRequest(exc.message, location="body.period") from None
        limit = timedelta(seconds=self.config.max_period)
        if delta > limit:
            raise InvalidRequest(
                f"period {format_duration(delta)} is longer than the allowed maximum {format_duration(limit)} "
                "(admin.max_period)",
                location="body.period",
            )
        return delta

    def _count_failure(self, pool: str, action: str, exc: Exception) -> bool:
        """Count a write MongoDB failed (not a client error); True when it was counted."""
        if isinstance(exc, InvalidInput | SessionNotFound | AdminError):
            return False
        self.metrics.admin_action_failures.labels(pool=pool, action=action).inc()
        self.metrics.changed(pool)
        return True

    async def _after_write(self, pool: str) -> None:
        try:
            await self.refresh(pool)
        except Exception as exc:  # the change is committed; a failed refresh only delays the gauges
            log.warning("admin_refresh_failed", pool=pool, error=str(exc))

    # -- reads --

    def list_pools(self) -> PoolList:
        """Every pool with its last statistics and refresh status."""
        return pool_list(self.pools.values())

    def states(self, pool_name: str) -> StatesTimeline:
        """The pool's state counts over the last hour, as the daemon's refreshes saw them."""
        return states_timeline(self.pool(pool_name))

    def view(self, pool: PoolState, doc: Document, now: datetime) -> SessionView:
        """What an operator sees of one session document, whatever shapes its fields have."""
        return session_view(pool, doc, now, expose_credentials=self.config.expose_credentials)

    async def session(self, pool_name: str, oid: ObjectId) -> SessionView:
        """One session as an operator sees it."""
        pool = self.pool(pool_name)
        doc = await pool.sessions.get(oid)
        now = await pool.sessions.server_time()
        return self.view(pool, doc, now)

    async def list_sessions(self, pool_name: str, query: SessionsQuery, caller: Caller) -> SessionPage:
        """One page of a pool's sessions: in a state, found by a search field, or underperforming."""
        return await self.lists.page(self.pool(pool_name), query, caller)

    async def history(self, pool_name: str, oid: ObjectId, query: HistoryQuery) -> SessionHistory:
        """A session now (its hold and what set it) and the audit events of it, newest first."""
        pool = self.pool(pool_name)
        current = await self.session(pool_name, oid)
        async with pool.sessions.guard("session_history"):
            events, total = await self.audit.search(
                AuditFilters(pool=pool.name, session_id=str(oid)), page=query.page, page_size=query.page_size
            )
        return SessionHistory(
            session=current,
            events=[audit_event(e) for e in events],
            page=query.page,
            page_size=query.page_size,
            total=total,
        )

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
            raise InvalidRequest(exc.message, location=f"query.{exc.field}" if exc.field else "query") from None
        # Every pool shares the daemon's client and timeout; there is always at least one pool.
        async with next(iter(self.pools.values())).sessions.guard("audit_search"):
            events, total = await self.audit.search(
                filters, page=query.page, page_size=query.page_size, order=query.order
            )
        return AuditPage(
            events=[audit_event(e) for e in events],
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
            outcome = await self.writes.apply(pool, oid, action, delta, reason, caller, request_id)
        except (SessionPoolError, AdminError) as exc:
            if self._count_failure(pool.name, str(action), exc):
                log.warning(
                    "admin_action_failed", pool=pool.name, action=str(action), actor=caller.name,
                    session_id=str(oid), request_id=request_id, error=str(exc),
                )  # fmt: skip
            raise
        result = self._result(pool, oid, action, outcome, request_id)
        self.metrics.admin_actions.labels(pool=pool.name, action=str(action)).inc()
        self.metrics.changed(pool.name)
        log.info(
            "admin_action", pool=pool.name, action=str(action), actor=caller.name, session_id=str(oid),
            result=str(result.result), request_id=request_id,
        )  # fmt: skip
        if result.result is Result.CHANGED:
            await self._after_write(pool.name)
        return result

    def _result(self, pool: PoolState, oid: ObjectId, action: Action, outcome: Outcome, rid: str) -> ActionResult:
        return ActionResult(
            pool=pool.name,
            id=str(oid),
            action=action,
            result=outcome.result,
            state_before=outcome.before,
            state_after=outcome.after,
            request_id=rid,
            session=self.view(pool, outcome.doc, outcome.now),
        )

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
        matched = await sessions.count_documents(filter=sessions.state_filter(target, now), comment=BULK_UNLOCK)
        over_cap = (
            f"{matched} sessions are {target}, more than admin.bulk_unlock_cap ({cap}); nothing was changed"
            if matched > cap
            else None
        )
        if dry_run:
            # Over the cap the real call is refused whole: the dry run says so rather than a count it would not change.
            return BulkUnlockResult(
                pool=pool.name, state=state, dry_run=True, matched=matched, cap=cap, request_id=request_id,
                would_change=0 if over_cap else matched, would_status=409 if over_cap else 200, refusal=over_cap,
            )  # fmt: skip
        if over_cap:
            raise Conflict(over_cap)
        try:
            changed = await self.writes.unlock_state(pool, target, cap, reason, caller, request_id)
        except (SessionPoolError, AdminError) as exc:
            self._count_failure(pool.name, BULK_UNLOCK, exc)
            raise
        self.metrics.admin_actions.labels(pool=pool.name, action=BULK_UNLOCK).inc()
        self.metrics.changed(pool.name)
        log.info(
            "admin_bulk_unlock", pool=pool.name, state=state, actor=caller.name, changed=changed, request_id=request_id
        )
        if changed:
            await self._after_write(pool.name)
        return BulkUnlockResult(
            pool=pool.name, state=state, dry_run=False, matched=changed, changed=changed, cap=cap, request_id=request_id
        )
