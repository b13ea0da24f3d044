"""The admin routes' handlers: each reads its request's path, query and body, calls the service, answers JSON."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from exporter.admin import parsing
from exporter.admin.auth import Caller
from exporter.admin.console import Console
from exporter.admin.models import ActionBody, AuditQuery, BulkUnlockBody, HistoryQuery, SessionsQuery
from exporter.admin.service import AdminService


@dataclass(frozen=True)
class Context:
    """What every handler may use: the service, the console's files and the API's OpenAPI document."""

    service: AdminService
    console: Console
    # Built on the first request for it, not at start (admin/openapi.py keeps it once built).
    openapi: Callable[[], Mapping[str, Any]]


# A handler gets its request once the caller holds the route's role (authorization is the route's, not its).
Handler = Callable[[Context, Request, Caller], Awaitable[Response]]


def _pool(context: Context, request: Request) -> str:
    """The pool the path names, checked first: an unknown one is a 404 whatever else the request holds."""
    name: str = request.path_params["pool"]
    context.service.pool(name)
    return name


async def openapi(context: Context, request: Request, caller: Caller) -> Response:
    """GET /admin/openapi.json."""
    return JSONResponse(context.openapi())


async def console(context: Context, request: Request, caller: Caller) -> Response:
    """GET /admin/ui/: the console's page (public code; every call it makes needs a token)."""
    return context.console.page()


async def asset(context: Context, request: Request, caller: Caller) -> Response:
    """GET /admin/ui/{asset}: a script, style sheet or icon of the console."""
    return context.console.asset(request.path_params["asset"])


async def list_pools(context: Context, request: Request, caller: Caller) -> Response:
    """GET /admin/pools."""
    return parsing.answer(context.service.list_pools())


async def pool_states(context: Context, request: Request, caller: Caller) -> Response:
    """GET /admin/pools/{pool}/states."""
    return parsing.answer(context.service.states(request.path_params["pool"]))


async def list_sessions(context: Context, request: Request, caller: Caller) -> Response:
    """GET /admin/pools/{pool}/sessions."""
    pool = _pool(context, request)
    query = parsing.query(request, SessionsQuery)
    return parsing.answer(await context.service.list_sessions(pool, query, caller))


async def session_history(context: Context, request: Request, caller: Caller) -> Response:
    """GET /admin/pools/{pool}/sessions/{session_id}/history."""
    pool = _pool(context, request)
    oid = parsing.session_id(request)
    query = parsing.query(request, HistoryQuery)
    return parsing.answer(await context.service.history(pool, oid, query))


async def get_session(context: Context, request: Request, caller: Caller) -> Response:
    """GET /admin/pools/{pool}/sessions/{session_id}."""
    pool = _pool(context, request)
    oid = parsing.session_id(request)
    return parsing.answer(await context.service.session(pool, oid))


async def act(context: Context, request: Request, caller: Caller) -> Response:
    """POST /admin/pools/{pool}/sessions/{session_id}/{action}."""
    rid = parsing.request_id(request)
    pool = _pool(context, request)
    action = parsing.action(request)
    oid = parsing.session_id(request)
    body = await parsing.body(request, ActionBody)
    result = await context.service.act(
        pool, oid, action, period=body.period, reason=body.reason, caller=caller, request_id=rid
    )
    return parsing.answer(result, headers={"X-Request-ID": rid})


async def bulk_unlock(context: Context, request: Request, caller: Caller) -> Response:
    """POST /admin/pools/{pool}/unlock."""
    rid = parsing.request_id(request)
    pool = _pool(context, request)
    body = await parsing.body(request, BulkUnlockBody)
    result = await context.service.bulk_unlock(
        pool, body.state, dry_run=body.dry_run, reason=body.reason, caller=caller, request_id=rid
    )
    return parsing.answer(result)


async def search_audit(context: Context, request: Request, caller: Caller) -> Response:
    """GET /admin/audit."""
    query = parsing.query(request, AuditQuery)
    return parsing.answer(await context.service.search_audit(query))
