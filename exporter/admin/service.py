"""The admin service: operators' reads and actions on pools, checked, counted and logged (no HTTP)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import structlog
from bson import ObjectId

from exporter.admin.actions import ACTIONS, Caller, Plan
from exporter.admin.errors import AdminError, Conflict, InvalidRequest, PoolNotFound
from exporter.admin.limits import PerMinute
from exporter.admin.models import (
    MAX_OFFSET,
    Action,
    ActionResult,
    AuditEvent,
    AuditPage,
    AuditQuery,
    BulkUnlockResult,
    HistoryQuery,
    PoolList,
    PoolView,
    SessionHistory,
    SessionPage,
    SessionsQuery,
    SessionView,
    StatesPoint,
    StatesTimeline,
    StatisticsView,
    UnderperformersView,
)
from exporter.admin.views import SET_BY, UNKNOWN_CAUSE, plain, shown_fields, success_ratio
from exporter.admin.writes import AuditedWrites, Outcome
from exporter.audit import AuditFilters, AuditLog
from exporter.config import AdminConfig, WriteConcernConfig
from exporter.core import (
    HELD_STATES,
    Document,
    InvalidInput,
    MongoSessions,
    OperationFailed,
    SessionNotFound,
    SessionPoolError,
    State,
    Statistics,
    Sums,
    format_duration,
    parse_period,
    recorded_hold,
)
from exporter.core.browse import (
    Order,
    held_count_pipeline,
    hold_index,
    list_filter,
    search_filter,
    sort_of,
    underperforming_count_pipeline,
    underperforming_page_pipeline,
    underperforming_threshold,
)
from exporter.core.queries import and_filters
from exporter.core.shapes import oddities
from exporter.metrics import Metrics
from exporter.state import HISTORY_STEP, PoolState

# BadValue: the hinted index does not exist (dropped, not rebuilt yet, or create_indexes is off).
_BAD_HINT = 2
# A search is sorted in memory: past this many matches it asks for more of the value instead.
SEARCH_SORT_LIMIT = 5000

log = structlog.get_logger("exporter.admin")

BULK_UNLOCK = "bulk_unlock"


def statistics_view(stats: Statistics, sums: Sums | None) -> StatisticsView:
    """A pool's last counts, with the sums of its last sums pass (they have their own cadence)."""
    body = stats.to_dict()
    if stats.uses is None and sums is not None:
        body.update(uses=sums.uses, successes=sums.successes)
    body["sums_time"] = sums.time.isoformat() if sums else None
    body["overruns"] = sums.overruns if sums else None
    return StatisticsView.model_validate(body)


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
        self.read_searches = PerMinute(config.read_searches_per_minute, "searches of masked fields")
        # Known label values start at 0, so rate() and increase() see the first action or failure.
        for name in pools:
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
        if spec.period is None:
            if period is not None:
                raise InvalidRequest(f"period only applies to lock and block, not {action}", location="body.period")
            return None
        try:
            delta = parse_period(period, getattr(sessions, spec.period))
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
        views = []
        for name, pool in self.pools.items():
            stats = pool.stats
            found = pool.underperformers
            views.append(
                PoolView(
                    name=name,
                    database=pool.sessions.collection.database.name,
                    collection=pool.sessions.collection.name,
                    up=pool.up,
                    fresh=pool.fresh,
                    last_success=_iso(pool.last_success),
                    last_error=pool.last_error,
                    cause=None if pool.up else pool.last_cause or pool.last_error,
                    collection_missing=pool.collection_missing,
                    active=pool.active,
                    min_active_sessions=pool.min_active_sessions,
                    interval=pool.interval,
                    search_fields=list(pool.config.session_fields.search),
                    statistics=statistics_view(stats, pool.sums) if stats else None,
                    underperformers=UnderperformersView(
                        count=found.count,
                        threshold=found.threshold,
                        pool_ratio=found.pool_ratio,
                        min_uses=pool.config.underperforming.min_uses,
                        time=_iso(found.time) or "",
                    )
                    if found
                    else None,
                )
            )
        return PoolList(pools=views)

    def states(self, pool_name: str) -> StatesTimeline:
        """The pool's state counts over the last hour, as the daemon's refreshes saw them."""
        pool = self.pool(pool_name)
        return StatesTimeline(
            pool=pool.name,
            step_seconds=HISTORY_STEP,
            min_active_sessions=pool.min_active_sessions,
            points=[StatesPoint(time=_iso(p.time) or "", states=p.states) for p in pool.history],
        )

    def view(self, pool: PoolState, doc: Document, now: datetime) -> SessionView:
        """What an operator sees of one session document, whatever shapes its fields have."""
        sessions = pool.sessions
        f = sessions.fields
        recorded = recorded_hold(doc, f)
        state = sessions.state_of(doc, now)
        held = state in (State.LOCKED, State.BLOCKED, State.IN_USE)
        extra: dict[str, Any] = {}
        if self.config.expose_credentials:
            extra["session"] = plain(doc.get(f.session))
        console = pool.config.session_fields
        return SessionView(
            pool=pool.name,
            id=str(doc["_id"]),
            state=state,
            active=plain(doc.get(f.active)),
            next_use=plain(doc.get(f.next_use)),
            last_use=plain(doc.get(f.last_use)),
            created=plain(doc.get(f.created)),
            count_use=plain(doc.get(f.count_use)),
            count_success=plain(doc.get(f.count_success)),
            count_overrun=plain(doc.get(f.count_overrun)),
            hold=plain(doc.get(f.hold)),
            set_by=SET_BY[recorded] if recorded is not None else (UNKNOWN_CAUSE if held else None),
            problems=oddities(doc, f),
            success_ratio=success_ratio(doc.get(f.count_use), doc.get(f.count_success)),
            fields=shown_fields(doc.get(f.session), console.search, console.show, console.reveal),
            **extra,
        )

    async def session(self, pool_name: str, oid: ObjectId) -> SessionView:
        """One session as an operator sees it."""
        pool = self.pool(pool_name)
        doc = await pool.sessions.get(oid)
        now = await pool.sessions.server_time()
        return self.view(pool, doc, now)

    def _projection(self, pool: PoolState) -> dict[str, int]:
        """What a list reads of each document: never `session`, only the sub-fields the config names."""
        f = pool.sessions.fields
        wanted = [f.active, f.next_use, f.last_use, f.created, f.hold, f.count_use, f.count_success]
        console = pool.config.session_fields
        if self.config.expose_credentials:
            wanted.append(f.session)
        else:
            wanted += [f"{f.session}.{name}" for name in (*console.search, *console.show)]
        return dict.fromkeys(wanted, 1)

    def exact_fields(self, pool: PoolState, caller: Caller) -> list[str]:
        """The search fields `caller` matches whole, not by prefix: the masked ones, for a read token.

        A prefix search answers "does this session's value start with this", so a read token could rebuild
        a masked value a character at a time; it gets equality, and a limited number of tries, instead.
        """
        console = pool.config.session_fields
        if caller.role == "write" or self.config.expose_credentials:
            return []
        return [name for name in console.search if name not in console.show]

    async def list_sessions(self, pool_name: str, query: SessionsQuery, caller: Caller) -> SessionPage:
        """One page of a pool's sessions: in a state, found by a search field, or underperforming."""
        pool = self.pool(pool_name)
        sessions, f = pool.sessions, pool.sessions.fields
        search = pool.config.session_fields.search
        if query.underperforming and (query.state is not None or query.q is not None):
            raise InvalidRequest(
                "underperforming lists every active session that lags; leave out state and q",
                location="query.underperforming",
            )
        if query.q is not None and not search:
            raise InvalidRequest(
                f"pool {pool.name!r} has no search fields (configure pools[].session_fields.search)",
                location="query.q",
            )
        if query.state is None and query.q is None and not query.underperforming:
            raise InvalidRequest("give a state, a search (q) or underperforming=1", location="query.state")
        skip = (query.page - 1) * query.page_size
        if skip + query.page_size > MAX_OFFSET:
            raise InvalidRequest(
                f"a list pages through its first {MAX_OFFSET} sessions; search or filter for the rest",
                location="query.page",
            )
        if query.underperforming:
            return await self._underperformers(pool, query, skip)
        order: Order = query.order or ("hold_desc" if query.state in HELD_STATES else "last_use_asc")
        as_of: str | None = None
        now = await sessions.server_time("list_sessions")
        state_part = list_filter(sessions.rules, query.state, now) if query.state is not None else {}
        exact = self.exact_fields(pool, caller) if query.q is not None else []
        if query.q is not None:
            if exact:
                self.read_searches.spend(caller.name, location="query.q")
            found = search_filter(f, search, query.q, exact)
            # Counting stops past the limit: a one-character search of a million phones costs 5001 keys.
            matches = await sessions.count_documents(found, limit=SEARCH_SORT_LIMIT + 1, comment="search_sessions")
            if matches > SEARCH_SORT_LIMIT:
                raise InvalidRequest(
                    f"more than {SEARCH_SORT_LIMIT} sessions start with {query.q!r}; type more of it",
                    location="query.q",
                )
            selector = and_filters(found, state_part)
            total = await sessions.count_documents(selector, comment="list_sessions") if state_part else matches
        else:
            selector = state_part
            assert query.state is not None
            stats = pool.stats
            if stats is not None and pool.fresh:
                # The last refresh counted every state in one snapshot (at most `interval` seconds ago,
                # and again right after every admin write): counting 750,000 keys again per page would not
                # make the number truer.
                total, as_of = stats.states[query.state], stats.time.isoformat()
            elif query.state in HELD_STATES:
                total = await self._held_count(pool, query.state, now)
            else:
                total = await sessions.count_documents(selector, comment="list_sessions")
        docs = await sessions.find(
            selector,
            self._projection(pool),
            sort=sort_of(f, order),
            skip=skip,
            limit=query.page_size,
            comment="list_sessions",
        )
        page = SessionPage(
            pool=pool.name, state=query.state, q=query.q, underperforming=False, order=order, page=query.page,
            page_size=query.page_size, total=total, total_as_of=as_of,
            sessions=[self.view(pool, doc, now) for doc in docs],
        )  # fmt: skip
        if query.q is not None:
            page.match, page.exact_fields = ("exact" if exact else "prefix"), exact
        return page

    async def _held_count(self, pool: PoolState, state: State, now: datetime) -> int:
        """How many sessions are in a held state, from the hold index's keys alone."""
        sessions = pool.sessions
        pipeline = held_count_pipeline(sessions.rules, state, now)
        try:
            # The planner may pick the other index starting with `active` and read every document.
            rows = await sessions.aggregate(pipeline, comment="list_sessions", hint=dict(hold_index(sessions.fields)))
        except OperationFailed as exc:
            if exc.code != _BAD_HINT:
                raise
            rows = await sessions.aggregate(pipeline, comment="list_sessions")  # the index is missing (being rebuilt)
        return int(rows[0]["n"]) if rows else 0

    async def _underperformers(self, pool: PoolState, query: SessionsQuery, skip: int) -> SessionPage:
        """Active sessions with min_uses uses whose success ratio lags the pool's, most used first.

        The total and the threshold are the last scheduled count's (a scan of every often-used session's
        keys); only before the first one is the count made for this answer.
        """
        sessions, f = pool.sessions, pool.sessions.fields
        settings = pool.config.underperforming
        counted = pool.underperformers
        now = await sessions.server_time("list_sessions")
        if counted is not None:
            threshold, total, as_of = counted.threshold, counted.count, _iso(counted.time)
        else:
            source = pool.sums if pool.sums is not None else pool.stats
            if source is None or source.uses is None or source.successes is None:
                raise Conflict(
                    f"pool {pool.name!r} has no sums of uses yet: the underperformers compare with its success ratio"
                )
            threshold = underperforming_threshold(source.uses, source.successes, settings.below)
            total, as_of = 0, None
            if threshold is not None:
                rows = await sessions.aggregate(
                    underperforming_count_pipeline(f, settings.min_uses, threshold), comment="list_sessions"
                )
                total = int(rows[0]["n"]) if rows else 0
        docs: list[Document] = []
        if threshold is not None:
            page = await sessions.aggregate(
                underperforming_page_pipeline(f, settings.min_uses, threshold, skip, query.page_size),
                comment="list_sessions",
            )
            ids = [row["_id"] for row in page]
            if ids:
                fetched = await sessions.find({"_id": {"$in": ids}}, self._projection(pool), comment="list_sessions")
                by_id = {doc["_id"]: doc for doc in fetched}
                docs = [by_id[i] for i in ids if i in by_id]
        return SessionPage(
            pool=pool.name, state=None, q=None, underperforming=True, order="count_use_desc", page=query.page,
            page_size=query.page_size, total=total, total_as_of=as_of,
            sessions=[self.view(pool, doc, now) for doc in docs], threshold=threshold,
        )  # fmt: skip

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
            events=[_event(e) for e in events],
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
            events=[_event(e) for e in events],
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
            result=result.result, request_id=request_id,
        )  # fmt: skip
        if result.result == "changed":
            await self._after_write(pool.name)
        return result

    def _result(self, pool: PoolState, oid: ObjectId, action: Action, outcome: Outcome, rid: str) -> ActionResult:
        return ActionResult(
            pool=pool.name,
            id=str(oid),
            action=action,
            result="changed" if outcome.plan is Plan.APPLY else "unchanged",
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


def _iso(when: float | None) -> str | None:
    """A Unix time as ISO 8601 (UTC), or None."""
    return datetime.fromtimestamp(when, UTC).isoformat() if when else None


def _event(doc: Document) -> AuditEvent:
    """A stored audit event as the API shows it."""
    return AuditEvent.model_validate({**{k: plain(v) for k, v in doc.items() if k != "_id"}, "id": str(doc["_id"])})
