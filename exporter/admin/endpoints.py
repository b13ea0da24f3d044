"""The admin API's route table: paths, the handler and role of each, what it takes and answers (routes, OpenAPI)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from exporter.admin import handlers
from exporter.admin.auth import Role
from exporter.admin.handlers import Handler
from exporter.admin.models import (
    SESSION_ID,
    Action,
    ActionBody,
    ActionResult,
    AuditPage,
    AuditQuery,
    BulkUnlockBody,
    BulkUnlockResult,
    HistoryQuery,
    PoolList,
    SessionHistory,
    SessionPage,
    SessionsQuery,
    SessionView,
    StatesTimeline,
)
from exporter.config import NAME

PATH_PARAMETERS: dict[str, dict[str, object]] = {
    "pool": {"type": "string", "pattern": NAME.pattern},
    "session_id": {"type": "string", "pattern": SESSION_ID.pattern},
    "action": {"type": "string", "enum": [a.value for a in Action]},
}


@dataclass(frozen=True)
class Endpoint:
    """One admin route: its handler, the role it needs, what it takes and answers (routes and OpenAPI come from it)."""

    path: str
    method: Literal["GET", "POST"]
    operation_id: str
    summary: str
    handler: Handler
    # Checked for every route before its handler runs (admin/http.py), never by the handler.
    role: Role = Role.READ
    body: type[BaseModel] | None = None
    body_required: bool = False
    query: type[BaseModel] | None = None
    answer: type[BaseModel] | None = None
    errors: tuple[int, ...] = (401, 403, 404)
    documented: bool = True


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("/admin/openapi.json", "GET", "openapi", "This document.", handlers.openapi, documented=False),
    Endpoint(
        "/admin/ui",
        "GET",
        "console",
        "The operator console's page.",
        handlers.console,
        role=Role.PUBLIC,
        documented=False,
    ),
    Endpoint(
        "/admin/ui/",
        "GET",
        "consoleSlash",
        "The operator console's page.",
        handlers.console,
        role=Role.PUBLIC,
        documented=False,
    ),
    Endpoint(
        "/admin/ui/{asset}",
        "GET",
        "consoleAsset",
        "The console's scripts, styles.",
        handlers.asset,
        role=Role.PUBLIC,
        documented=False,
    ),
    Endpoint(
        "/admin/pools", "GET", "listPools", "Every pool with its last statistics.", handlers.list_pools, answer=PoolList
    ),
    Endpoint(
        "/admin/pools/{pool}/states",
        "GET",
        "poolStates",
        "The pool's state counts over the last hour (from the daemon's memory).",
        handlers.pool_states,
        answer=StatesTimeline,
    ),
    Endpoint(
        "/admin/pools/{pool}/sessions",
        "GET",
        "listSessions",
        "A page of the pool's sessions: in a state, found by a search field, or underperforming.",
        handlers.list_sessions,
        query=SessionsQuery,
        answer=SessionPage,
        errors=(400, 401, 404, 409, 422, 429, 503, 504),
    ),
    Endpoint(
        "/admin/pools/{pool}/sessions/{session_id}/history",
        "GET",
        "sessionHistory",
        "A session's hold and what set it, and its audit events (newest first).",
        handlers.session_history,
        query=HistoryQuery,
        answer=SessionHistory,
        errors=(400, 401, 404, 422, 503, 504),
    ),
    Endpoint(
        "/admin/pools/{pool}/unlock",
        "POST",
        "bulkUnlock",
        "Unlock every locked or blocked session of a pool.",
        handlers.bulk_unlock,
        role=Role.WRITE,
        body=BulkUnlockBody,
        body_required=True,
        answer=BulkUnlockResult,
        errors=(400, 401, 403, 404, 409, 413, 415, 422, 502, 503, 504),
    ),
    Endpoint(
        "/admin/pools/{pool}/sessions/{session_id}",
        "GET",
        "getSession",
        "One session.",
        handlers.get_session,
        answer=SessionView,
        errors=(400, 401, 404, 503, 504),
    ),
    Endpoint(
        "/admin/pools/{pool}/sessions/{session_id}/{action}",
        "POST",
        "sessionAction",
        "Unlock, deactivate, activate, lock or block one session.",
        handlers.act,
        role=Role.WRITE,
        body=ActionBody,
        answer=ActionResult,
        errors=(400, 401, 403, 404, 409, 413, 415, 422, 502, 503, 504),
    ),
    Endpoint(
        "/admin/audit",
        "GET",
        "searchAudit",
        "Search the audit trail.",
        handlers.search_audit,
        query=AuditQuery,
        answer=AuditPage,
        errors=(400, 401, 403, 404, 422, 503, 504),
    ),
)
