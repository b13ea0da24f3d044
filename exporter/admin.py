"""The admin HTTP API: authenticated unlock, deactivate, activate, lock, block, with an audit trail."""

from __future__ import annotations

import hmac
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, Protocol, TypeVar

import structlog
from bson import ObjectId
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pymongo.write_concern import WriteConcern
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from exporter.audit import AuditFilters, AuditLog, event_document
from exporter.collector import Collector
from exporter.config import AdminConfig, Config, WriteConcernConfig, check_name
from exporter.core import (
    PERIOD_UNITS,
    Document,
    Hold,
    InvalidInput,
    MongoSessions,
    OperationFailed,
    SessionNotFound,
    SessionPoolError,
    State,
    Statistics,
    Transaction,
    guard,
    parse_period,
    parse_session_id,
)
from exporter.metrics import Metrics

log = structlog.get_logger("exporter.admin")

MAX_BODY_BYTES = 16 * 1024
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_TRANSACTION_ATTEMPTS = 5
_T = TypeVar("_T")


class Action(StrEnum):
    """What an operator can do to one session."""

    UNLOCK = "unlock"
    DEACTIVATE = "deactivate"
    ACTIVATE = "activate"
    LOCK = "lock"
    BLOCK = "block"


# --- errors (mapped to HTTP codes in exporter.api) ----------------------------------------------


class AdminError(Exception):
    """Base of the admin API's own errors."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class Unauthorized(AdminError):
    """No token, or a token that matches none configured."""


class Forbidden(AdminError):
    """The token's role does not allow this route."""

    def __init__(self, message: str, *, role: str) -> None:
        self.role = role
        super().__init__(message)


class PoolNotFound(AdminError):
    """The pool named in the path is not configured."""

    def __init__(self, pool: str) -> None:
        self.pool = pool
        super().__init__(f"unknown pool {pool!r}")


class AdminDisabled(AdminError):
    """No admin token is configured, so the admin API does not exist."""


class Conflict(AdminError):
    """The action cannot apply to the session or pool as it is now."""


class BodyTooLarge(AdminError):
    """The request body is larger than the admin API accepts."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"request body larger than {limit} bytes")


class InvalidRequest(AdminError):
    """The request's JSON body or query string does not validate."""

    def __init__(self, message: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        self.errors = errors or []
        super().__init__(message)


# --- request models --------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ActionBody(_Body):
    """Optional body of a single-session action."""

    reason: str | None = Field(default=None, description="Free text recorded in the audit trail.")
    period: dict[str, float | int] | None = Field(
        default=None,
        description='Lock or block period, e.g. {"hours": 10}; units: ' + ", ".join(PERIOD_UNITS),
    )


class BulkUnlockBody(_Body):
    """Body of a bulk unlock."""

    state: Literal["locked", "blocked"]
    dry_run: bool = False
    reason: str | None = None


class AuditQuery(BaseModel):
    """Query string of an audit search."""

    model_config = ConfigDict(extra="forbid")

    pool: str | None = None
    action: Action | None = None
    session_id: str | None = None
    actor: str | None = None
    request_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    page: int = Field(default=1, ge=1, le=1_000_000)
    page_size: int = Field(default=100, ge=1, le=1000)
    order: Literal["asc", "desc"] = "desc"

    @field_validator("pool", "actor")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return check_name(value) if value is not None else None

    @field_validator("request_id")
    @classmethod
    def _request_id(cls, value: str | None) -> str | None:
        if value is not None and not _REQUEST_ID.match(value):
            raise ValueError("must be 1-128 characters of letters, digits, '.', '_', ':' or '-'")
        return value

    @field_validator("session_id")
    @classmethod
    def _session_id(cls, value: str | None) -> str | None:
        if value is not None and not ObjectId.is_valid(value):
            raise ValueError("must be a 24-character hex ObjectId")
        return value

    @field_validator("since", "until", mode="before")
    @classmethod
    def _iso(cls, value: object) -> object:
        # pydantic would read "0.5" or "1700000000" as a Unix time: only ISO 8601 is documented.
        if isinstance(value, str):
            try:
                float(value)
            except ValueError:
                return value
            raise ValueError("must be an ISO 8601 date-time such as 2026-11-01T00:00:00Z, not a number")
        return value

    @field_validator("since", "until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


# --- what the admin API needs from the daemon ---------------------------------------------------


class PoolRuntime(Protocol):
    """The daemon's view of one pool (exporter.collector provides it)."""

    name: str
    sessions: MongoSessions
    stats: Statistics | None
    active: int | None
    up: bool
    last_success: float | None
    last_error: str | None


@dataclass(frozen=True)
class Caller:
    """Who is calling: the token's name (the audit actor) and role."""

    name: str
    role: Literal["read", "write"]


SET_BY = {Hold.USE: "get_session", Hold.LOCK: "session_lock", Hold.BLOCK: "session_block"}


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


class Admin:
    """Admin routes bound to the daemon's pools, metrics and audit log."""

    def __init__(
        self,
        config: AdminConfig,
        pools: Mapping[str, PoolRuntime],
        audit: AuditLog,
        refresh: Callable[[str], Awaitable[object]],
        actions: Counter,
        failures: Counter,
        write_concern: WriteConcernConfig | None = None,
    ) -> None:
        self.config = config
        self.pools = pools
        self.audit = audit
        self.refresh = refresh
        self.actions = actions
        self.failures = failures
        self._write_concern = write_concern
        self._tokens = [(t.secret().encode(), Caller(t.name, t.role)) for t in config.tokens]
        self._audit_ready = False
        # Known label values start at 0, so rate() and increase() see the first action or failure.
        for name in pools:
            for action in [*(a.value for a in Action), "bulk_unlock"]:
                actions.labels(pool=name, action=action)
                failures.labels(pool=name, action=action)

    async def _prepare(self, sessions: MongoSessions) -> None:
        # Lazily, so a daemon started while MongoDB is down still comes up.
        if sessions.topology is None:
            await sessions.connect()
        if not self._audit_ready:
            async with guard("audit_indexes", sessions.timeout):
                await self.audit.ensure()
            self._audit_ready = True

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
        self.failures.labels(pool=pool, action=action).inc()
        return True

    def _answer(
        self,
        pool: PoolRuntime,
        oid: ObjectId,
        action: Action,
        result: str,
        before: State,
        doc: Document,
        now: datetime,
        rid: str,
    ) -> dict[str, Any]:
        """The JSON answer of a single-session action."""
        return {
            "pool": pool.name,
            "id": str(oid),
            "action": str(action),
            "result": result,
            "state_before": str(before),
            "state_after": str(pool.sessions.state_of(doc, now)),
            "request_id": rid,
            "session": self._view(pool, doc, now),
        }

    # -- plumbing --

    def routes(self) -> list[BaseRoute]:
        """The admin routes (all under /admin)."""
        return [
            Route("/admin/openapi.json", self.openapi, methods=["GET"]),
            Route("/admin/pools", self.list_pools, methods=["GET"]),
            Route("/admin/pools/{pool}/unlock", self.bulk_unlock, methods=["POST"]),
            Route("/admin/pools/{pool}/sessions/{session_id}", self.get_session, methods=["GET"]),
            Route("/admin/pools/{pool}/sessions/{session_id}/{action}", self.act, methods=["POST"]),
            Route("/admin/audit", self.search_audit, methods=["GET"]),
        ]

    def authenticate(self, request: Request, *, write: bool) -> Caller:
        """Return the caller of a valid bearer token; 404 when admin is off, 401/403 otherwise."""
        if not self._tokens:
            raise AdminDisabled("the admin API is disabled: no admin token is configured")
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
        candidate = presented.strip().encode()
        found: Caller | None = None
        for secret, caller in self._tokens:
            # Compare against every token, in constant time, so timing reveals nothing.
            if hmac.compare_digest(candidate, secret):
                found = caller
        if found is None:
            raise Unauthorized("invalid token")
        if write and found.role != "write":
            raise Forbidden(f"token {found.name!r} has role {found.role!r}; this route needs 'write'", role=found.role)
        request.state.actor = found.name
        return found

    def _pool(self, name: str) -> PoolRuntime:
        pool = self.pools.get(name)
        if pool is None:
            raise PoolNotFound(name)
        return pool

    @staticmethod
    def request_id(request: Request) -> str:
        """The caller's X-Request-ID when well formed, else a fresh one."""
        given = request.headers.get("x-request-id", "")
        rid = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        request.state.request_id = rid
        return rid

    async def _body(self, request: Request, model: type[_Body]) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise BodyTooLarge(MAX_BODY_BYTES)
        raw = bytearray()
        async for chunk in request.stream():
            raw.extend(chunk)
            if len(raw) > MAX_BODY_BYTES:
                raise BodyTooLarge(MAX_BODY_BYTES)
        if not raw.strip():
            return model()
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequest(f"request body is not valid UTF-8 (byte {exc.start})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(
                f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
        except RecursionError:
            raise InvalidRequest("request body is nested too deeply") from None
        if not isinstance(data, dict):
            raise InvalidRequest("request body must be a JSON object")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise _invalid(exc) from None

    def _reason(self, reason: str | None) -> str | None:
        if reason is None:
            return None
        if len(reason) > self.config.reason_max_length:
            raise InvalidRequest(
                f"reason is {len(reason)} characters long; at most {self.config.reason_max_length} are allowed",
                errors=[{"loc": ["reason"], "msg": "too long"}],
            )
        return reason

    def _period(self, action: Action, period: Mapping[str, float] | None, sessions: MongoSessions) -> timedelta | None:
        if action not in (Action.LOCK, Action.BLOCK):
            if period is not None:
                raise InvalidRequest(f"period only applies to lock and block, not {action}")
            return None
        default = sessions.lock_time if action is Action.LOCK else sessions.block_time
        try:
            delta = parse_period(period, default)
        except InvalidInput as exc:
            raise InvalidRequest(exc.message, errors=[{"loc": ["period"], "msg": exc.message}]) from None
        limit = timedelta(seconds=self.config.max_period)
        if delta > limit:
            raise InvalidRequest(
                f"period {delta} is longer than the allowed maximum {limit} (admin.max_period)",
                errors=[{"loc": ["period"], "msg": "too long"}],
            )
        return delta

    def _transaction_write_concern(self, sessions: MongoSessions) -> WriteConcern | None:
        wc = self._write_concern
        if wc is not None and (wc.w is not None or wc.j is not None or wc.wtimeout is not None):
            return WriteConcern(w=wc.w, j=wc.j, wtimeout=wc.wtimeout)
        # Majority where the deployment has one (a replica set), acknowledged otherwise.
        return WriteConcern(w="majority") if sessions.supports_transactions else None

    async def _after_write(self, pool: str) -> None:
        try:
            await self.refresh(pool)
        except Exception as exc:  # the change is committed; a failed refresh only delays the gauges
            log.warning("admin_refresh_failed", pool=pool, error=str(exc))

    # -- routes --

    async def openapi(self, request: Request) -> Response:
        """The OpenAPI document of the admin API."""
        self.authenticate(request, write=False)
        return JSONResponse(openapi_document())

    async def list_pools(self, request: Request) -> Response:
        """Every pool with its last statistics and refresh status."""
        self.authenticate(request, write=False)
        pools = []
        for name, pool in self.pools.items():
            stats = pool.stats
            pools.append(
                {
                    "name": name,
                    "database": pool.sessions.collection.database.name,
                    "collection": pool.sessions.collection.name,
                    "up": pool.up,
                    "last_success": (
                        datetime.fromtimestamp(pool.last_success, UTC).isoformat() if pool.last_success else None
                    ),
                    "last_error": pool.last_error,
                    "active": pool.active,
                    "statistics": stats.to_dict() if stats else None,
                }
            )
        return JSONResponse({"pools": pools})

    def _view(self, pool: PoolRuntime, doc: Document, now: datetime) -> dict[str, Any]:
        sessions = pool.sessions
        f = sessions.fields
        hold = doc.get(f.hold)
        state = sessions.state_of(doc, now)
        view: dict[str, Any] = {
            "pool": pool.name,
            "id": str(doc["_id"]),
            "state": str(state),
            "active": doc.get(f.active),
            "next_use": _iso(doc.get(f.next_use)),
            "last_use": _iso(doc.get(f.last_use)),
            "created": _iso(doc.get(f.created)),
            "count_use": doc.get(f.count_use),
            "count_success": doc.get(f.count_success),
            "hold": hold,
            "set_by": SET_BY.get(Hold(hold))
            if hold in set(Hold)
            else ("unknown (legacy document)" if state in (State.LOCKED, State.BLOCKED, State.IN_USE) else None),
        }
        if self.config.expose_credentials:
            view["session"] = json.loads(json.dumps(doc.get(f.session), default=_json_default))
        return view

    async def get_session(self, request: Request) -> Response:
        """State, times, counters and hold cause of one session (credentials only if allowed)."""
        self.authenticate(request, write=False)
        pool = self._pool(request.path_params["pool"])
        oid = parse_session_id(request.path_params["session_id"])
        doc = await pool.sessions.get(oid)
        now = await pool.sessions.server_time()
        return JSONResponse(self._view(pool, doc, now))

    async def act(self, request: Request) -> Response:
        """Apply one action to one session, with its audit event, atomically."""
        caller = self.authenticate(request, write=True)
        rid = self.request_id(request)
        pool = self._pool(request.path_params["pool"])
        try:
            action = Action(request.path_params["action"])
        except ValueError:
            raise InvalidRequest(
                f"unknown action {request.path_params['action']!r}; use one of {', '.join(a.value for a in Action)}"
            ) from None
        oid = parse_session_id(request.path_params["session_id"])
        body: ActionBody = await self._body(request, ActionBody)
        reason = self._reason(body.reason)
        period = self._period(action, body.period, pool.sessions)
        try:
            result = await self._apply(pool, oid, action, period, reason, caller, rid)
        except (SessionPoolError, AdminError) as exc:
            if self._count_failure(pool.name, str(action), exc):
                log.warning(
                    "admin_action_failed",
                    pool=pool.name,
                    action=str(action),
                    actor=caller.name,
                    session_id=str(oid),
                    request_id=rid,
                    error=str(exc),
                )
            raise
        self.actions.labels(pool=pool.name, action=str(action)).inc()
        log.info(
            "admin_action",
            pool=pool.name,
            action=str(action),
            actor=caller.name,
            session_id=str(oid),
            result=result["result"],
            request_id=rid,
        )
        if result["result"] == "changed":
            await self._after_write(pool.name)
        return JSONResponse(result, headers={"X-Request-ID": rid})

    @staticmethod
    def _plan(action: Action, before: State) -> str:
        """'apply', 'unchanged' or a conflict message for `action` on a session in state `before`."""
        if action is Action.UNLOCK:
            return "apply" if before in (State.LOCKED, State.BLOCKED, State.IN_USE) else "unchanged"
        if action is Action.DEACTIVATE:
            return "unchanged" if before is State.INACTIVE else "apply"
        if action is Action.ACTIVATE:
            return "unchanged" if before is State.ACTIVE else "apply"
        target = State.LOCKED if action is Action.LOCK else State.BLOCKED
        if before is State.INACTIVE:
            return f"session is inactive; activate it before you {action} it"
        return "unchanged" if before is target else "apply"

    async def _change(
        self, sessions: MongoSessions, oid: ObjectId, action: Action, period: timedelta | None, db_session: Any
    ) -> None:
        if action is Action.UNLOCK:
            await sessions.session_unlock(oid, db_session=db_session)
        elif action is Action.DEACTIVATE:
            await sessions.session_inactive(oid, db_session=db_session)
        elif action is Action.ACTIVATE:
            await sessions.session_activate(oid, db_session=db_session)
        elif action is Action.LOCK:
            await sessions.session_lock(
                oid, {"seconds": (period or sessions.lock_time).total_seconds()}, db_session=db_session
            )
        else:
            await sessions.session_block(
                oid, {"seconds": (period or sessions.block_time).total_seconds()}, db_session=db_session
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
    ) -> dict[str, Any]:
        sessions = pool.sessions
        await self._prepare(sessions)
        details = {"period_seconds": period.total_seconds()} if period else None
        if not sessions.supports_transactions:
            return await self._apply_standalone(pool, oid, action, period, reason, caller, rid, details)

        async def unit(txn: Transaction) -> dict[str, Any]:
            doc = await sessions.get(oid, db_session=txn)
            now = await sessions.server_time()
            before = sessions.state_of(doc, now)
            plan = self._plan(action, before)
            if plan not in ("apply", "unchanged"):
                raise Conflict(plan)
            if plan == "apply":
                await self._change(sessions, oid, action, period, txn)
                doc = await sessions.get(oid, db_session=txn)
            answer = self._answer(
                pool, oid, action, "changed" if plan == "apply" else "unchanged", before, doc, now, rid
            )
            event = event_document(
                time=now,
                actor=caller.name,
                action=str(action),
                pool=pool.name,
                session_id=str(oid),
                state_before=answer["state_before"],
                state_after=answer["state_after"],
                result=answer["result"],
                reason=reason,
                request_id=rid,
                details=details,
            )
            async with guard("audit", sessions.timeout):
                await self.audit.record(event, db_session=txn.db_session)
            return answer

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
    ) -> dict[str, Any]:
        # No transactions: record the intent first, then change, then settle the event. A crash
        # in between leaves a "pending" event, never a change without an event.
        sessions = pool.sessions
        doc = await sessions.get(oid)
        now = await sessions.server_time()
        before = sessions.state_of(doc, now)
        plan = self._plan(action, before)
        if plan not in ("apply", "unchanged"):
            raise Conflict(plan)
        event = event_document(
            time=now,
            actor=caller.name,
            action=str(action),
            pool=pool.name,
            session_id=str(oid),
            state_before=str(before),
            state_after=None,
            result="pending" if plan == "apply" else "unchanged",
            reason=reason,
            request_id=rid,
            details=details,
        )
        async with guard("audit", sessions.timeout):
            event_id = await self.audit.record(event)
        if plan == "apply":
            try:
                await self._change(sessions, oid, action, period, None)
            except SessionPoolError as exc:
                async with guard("audit", sessions.timeout):
                    await self.audit.update(event_id, {"result": "failed", "error": str(exc)})
                raise
            doc = await sessions.get(oid)
        answer = self._answer(pool, oid, action, "changed" if plan == "apply" else "unchanged", before, doc, now, rid)
        async with guard("audit", sessions.timeout):
            await self.audit.update(event_id, {"result": answer["result"], "state_after": answer["state_after"]})
        return answer

    async def bulk_unlock(self, request: Request) -> Response:
        """Unlock every session of a pool in state locked or blocked (dry_run counts them)."""
        caller = self.authenticate(request, write=True)
        rid = self.request_id(request)
        pool = self._pool(request.path_params["pool"])
        body: BulkUnlockBody = await self._body(request, BulkUnlockBody)
        reason = self._reason(body.reason)
        sessions = pool.sessions
        state = State(body.state)
        cap = self.config.bulk_unlock_cap
        now = await sessions.server_time()
        matched = await sessions.count_documents(filter=sessions.state_filter(state, now), _op="bulk_unlock")
        if body.dry_run:
            return JSONResponse(
                {
                    "pool": pool.name,
                    "state": str(state),
                    "dry_run": True,
                    "matched": matched,
                    "would_change": min(matched, cap),
                    "cap": cap,
                    "request_id": rid,
                }
            )
        if matched > cap:
            raise Conflict(
                f"{matched} sessions are {state}, more than admin.bulk_unlock_cap ({cap}); nothing was changed"
            )
        try:
            changed = await self._bulk(pool, state, reason, caller, rid)
        except (SessionPoolError, AdminError) as exc:
            self._count_failure(pool.name, "bulk_unlock", exc)
            raise
        self.actions.labels(pool=pool.name, action="bulk_unlock").inc()
        log.info(
            "admin_bulk_unlock", pool=pool.name, state=str(state), actor=caller.name, changed=changed, request_id=rid
        )
        if changed:
            await self._after_write(pool.name)
        return JSONResponse(
            {
                "pool": pool.name,
                "state": str(state),
                "dry_run": False,
                "matched": changed,
                "changed": changed,
                "cap": cap,
                "request_id": rid,
            }
        )

    async def _bulk(self, pool: PoolRuntime, state: State, reason: str | None, caller: Caller, rid: str) -> int:
        sessions = pool.sessions
        await self._prepare(sessions)
        f = sessions.fields
        cap = self.config.bulk_unlock_cap
        unlock = {"$set": {f.next_use: None}, "$unset": {f.hold: ""}}

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

        if not sessions.supports_transactions:
            now = await sessions.server_time()
            docs = await sessions.find(filter=sessions.state_filter(state, now), projection={"_id": 1}, limit=cap + 1)
            ids = [d["_id"] for d in docs]
            if len(ids) > cap:
                raise Conflict(f"more than admin.bulk_unlock_cap ({cap}) sessions are {state}; nothing was changed")
            async with guard("audit", sessions.timeout):
                await self.audit.record_many(events(ids, now, "pending"))
            await sessions.update_many(filter={"_id": {"$in": ids}}, update=unlock, _op="bulk_unlock")
            async with guard("audit", sessions.timeout):
                await self.audit.collection.update_many(
                    {"request_id": rid, "result": "pending"}, {"$set": {"result": "changed", "state_after": "active"}}
                )
            return len(ids)

        async def unit(txn: Transaction) -> int:
            now = await sessions.server_time()
            docs = await sessions.find(
                filter=sessions.state_filter(state, now), projection={"_id": 1}, limit=cap + 1, session=txn.db_session
            )
            ids = [d["_id"] for d in docs]
            if len(ids) > cap:
                raise Conflict(f"more than admin.bulk_unlock_cap ({cap}) sessions are {state}; nothing was changed")
            if ids:
                await sessions.update_many(
                    filter={"_id": {"$in": ids}}, update=unlock, session=txn.db_session, _op="bulk_unlock"
                )
                async with guard("audit", sessions.timeout):
                    await self.audit.record_many(events(ids, now, "changed"), db_session=txn.db_session)
            return len(ids)

        return await self._in_transaction(sessions, unit)

    async def search_audit(self, request: Request) -> Response:
        """Search the audit trail by pool, action, session, actor, time range; paginated."""
        self.authenticate(request, write=False)
        params: dict[str, Any] = {}
        for key, value in request.query_params.multi_items():
            if key in params:
                raise InvalidRequest(f"query parameter {key!r} given more than once")
            params[key] = value
        try:
            query = AuditQuery.model_validate(params)
        except ValidationError as exc:
            raise _invalid(exc) from None
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
        return JSONResponse(
            {
                "events": [{**{k: _iso(v) for k, v in e.items() if k != "_id"}, "id": str(e["_id"])} for e in events],
                "page": query.page,
                "page_size": query.page_size,
                "order": query.order,
                "total": total,
            }
        )


def build_admin(config: Config, collector: Collector, metrics: Metrics) -> Admin | None:
    """The admin API for a running daemon, or None when no admin token is configured."""
    if not config.admin.enabled:
        return None
    audit_config = config.admin.audit
    wc = config.admin_write_concern()
    audit = AuditLog(
        collector.client,
        audit_config.database,
        audit_config.collection,
        retention=timedelta(seconds=audit_config.retention),
        write_concern=WriteConcern(w=wc.w, j=wc.j, wtimeout=wc.wtimeout) if wc.w or wc.j or wc.wtimeout else None,
    )
    return Admin(
        config.admin,
        collector.pools,
        audit,
        collector.refresh,
        metrics.admin_actions,
        metrics.admin_action_failures,
        write_concern=config.admin.write_concern,
    )


def _invalid(exc: ValidationError) -> InvalidRequest:
    errors = [
        {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    summary = "; ".join(
        f"{'.'.join(e['loc']) or 'body'}: {'unknown field' if e['type'] == 'extra_forbidden' else e['msg']}"
        for e in errors
    )
    return InvalidRequest(f"invalid request: {summary}", errors=errors)


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of the admin API."""
    error = {"$ref": "#/components/schemas/Error"}

    def responses(ok: str, *codes: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "200": {"description": ok, "content": {"application/json": {"schema": {"type": "object"}}}}
        }
        texts = {
            400: "malformed input",
            401: "missing or invalid token",
            403: "token role too weak",
            404: "admin API off, unknown pool or session",
            409: "conflict with the current state",
            413: "body too large",
            422: "invalid body or query",
            503: "MongoDB unreachable",
        }
        for code in codes:
            out[str(code)] = {"description": texts[code], "content": {"application/json": {"schema": error}}}
        return out

    pool_param = {
        "name": "pool",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
    }
    sid_param = {
        "name": "session_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{24}$"},
    }
    name = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
    audit_params = [
        {"name": key, "in": "query", "required": False, "schema": schema}
        for key, schema in {
            "pool": name,
            "action": {"type": "string", "enum": [a.value for a in Action]},
            "session_id": {"type": "string", "pattern": "^[0-9a-fA-F]{24}$"},
            "actor": name,
            "request_id": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
            "since": {"type": "string", "format": "date-time"},
            "until": {"type": "string", "format": "date-time"},
            "page": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
            "page_size": {"type": "integer", "minimum": 1, "maximum": 1000},
            "order": {"type": "string", "enum": ["asc", "desc"]},
        }.items()
    ]
    action_body = _strip_titles(ActionBody.model_json_schema())
    # The model takes any dict; parse_period accepts only these units, non-negative and finite.
    action_body["properties"]["period"]["anyOf"][0] = {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": False,
        "properties": {unit: {"type": "number", "minimum": 0} for unit in PERIOD_UNITS},
    }
    bulk_body = _strip_titles(BulkUnlockBody.model_json_schema())
    return {
        "openapi": "3.1.0",
        "info": {"title": "session-pool-exporter admin API", "version": "1"},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
                },
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/admin/pools": {"get": {"operationId": "listPools", "responses": responses("pools", 401, 403, 404)}},
            "/admin/pools/{pool}/sessions/{session_id}": {
                "get": {
                    "operationId": "getSession",
                    "parameters": [pool_param, sid_param],
                    "responses": responses("the session", 400, 401, 404, 503),
                },
            },
            "/admin/pools/{pool}/sessions/{session_id}/{action}": {
                "post": {
                    "operationId": "sessionAction",
                    "parameters": [
                        pool_param,
                        sid_param,
                        {
                            "name": "action",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "enum": [a.value for a in Action]},
                        },
                    ],
                    "requestBody": {"required": False, "content": {"application/json": {"schema": action_body}}},
                    "responses": responses("before and after", 400, 401, 403, 404, 409, 413, 422, 503),
                },
            },
            "/admin/pools/{pool}/unlock": {
                "post": {
                    "operationId": "bulkUnlock",
                    "parameters": [pool_param],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": bulk_body}}},
                    "responses": responses("how many changed", 400, 401, 403, 404, 409, 413, 422, 503),
                },
            },
            "/admin/audit": {
                "get": {
                    "operationId": "searchAudit",
                    "parameters": audit_params,
                    "responses": responses("a page of events", 400, 401, 403, 404, 422, 503),
                },
            },
        },
    }


def _strip_titles(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_titles(v) for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema
