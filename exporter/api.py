"""The HTTP side: /metrics from memory, /healthz, /readyz, the admin routes, and one error mapping."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exporter.admin import AdminError, InvalidRequest, TooManyRequests
from exporter.admin.auth import ADMIN_OFF
from exporter.admin.parsing import invalid
from exporter.collector import Collector
from exporter.config import Config
from exporter.core import InvalidInput, SessionPoolError, Unavailable
from exporter.log import get_logger
from exporter.metrics import Metrics

log = get_logger("exporter.api")

RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class MainRoute:
    """A route of the main listener and its handler (the admin routes are the admin package's endpoint table)."""

    path: str
    methods: tuple[str, ...]
    summary: str
    # The route's handler for a daemon's collector and metrics.
    handler: Callable[[Collector, Metrics], Callable[..., Any]]


def _scrape(collector: Collector, metrics: Metrics) -> Callable[..., Any]:
    """GET /metrics for routing (the daemon's listener hands scrapes to `Scrape` before it: `ScrapeFirst`)."""
    return Scrape(metrics)


def _healthz(collector: Collector, metrics: Metrics) -> Callable[..., Any]:
    """GET /healthz."""
    return healthz


def _readyz(collector: Collector, metrics: Metrics) -> Callable[..., Any]:
    """GET /readyz of this collector."""

    async def readyz(request: Request) -> Response:
        """GET /readyz."""
        ready, reasons = await collector.readiness()
        body = {"ready": ready, "reasons": reasons, "pools": collector.pool_status()}
        return JSONResponse(body, status_code=200 if ready else 503, headers={"Cache-Control": "no-store"})

    return readyz


MAIN_ROUTES: tuple[MainRoute, ...] = (
    MainRoute(
        "/metrics",
        ("GET", "HEAD"),
        "The exposition, from memory (never waits for MongoDB): Prometheus text, or OpenMetrics on "
        "`Accept: application/openmetrics-text`; gzipped on `Accept-Encoding: gzip`.",
        _scrape,
    ),
    MainRoute(
        "/healthz", ("GET",), "`200 ok`: the process is alive and serving (on the admin listener too).", _healthz
    ),
    MainRoute(
        "/readyz",
        ("GET",),
        "`200` JSON when every pool has refreshed successfully within its `max_age` and MongoDB answers a ping "
        "(1 s, cached 1 s); otherwise `503` JSON `{ready: false, reasons: [...], pools: {...}}`, each reason a "
        "cause in words (a missing collection, MongoDB unreachable and why).",
        _readyz,
    ),
)


def error_response(exc: BaseException) -> JSONResponse:
    """The single place mapping an exception to an HTTP status and a JSON body (no stack traces).

    Every error answers `{"error": kind, "message": summary, "problems": [{"location", "message"}]}`.
    """
    headers: dict[str, str] = {}
    if isinstance(exc, HTTPException):
        where = "method" if exc.status_code == 405 else "path"
        return _problem(exc.status_code, _http_error_name(exc.status_code), exc.detail, where, exc.headers)
    if isinstance(exc, ValidationError):
        bad = invalid(exc, "")
        return _problem(400, "invalid_input", bad.message, "", problems=bad.problems)
    if isinstance(exc, AdminError):
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="admin"'
        if isinstance(exc, TooManyRequests):
            headers["Retry-After"] = str(exc.retry_after)
        problems = exc.problems if isinstance(exc, InvalidRequest) else None
        return _problem(exc.status, exc.kind, exc.message, exc.location, headers, problems)
    if isinstance(exc, SessionPoolError):
        if isinstance(exc, Unavailable):
            headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        location = (exc.field or "") if isinstance(exc, InvalidInput) else ""
        return _problem(exc.status, exc.kind, exc.message, location, headers)
    return _problem(500, "internal", "internal server error", "")


def _problem(
    status: int,
    kind: str,
    message: str,
    location: str,
    headers: Mapping[str, str] | None = None,
    problems: list[dict[str, str]] | None = None,
) -> JSONResponse:
    """The one error body: a kind, a summary, and every problem with its location."""
    body = {"error": kind, "message": message, "problems": problems or [{"location": location, "message": message}]}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _http_error_name(status: int) -> str:
    """Short error kind for an HTTP status."""
    return {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
            405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
            422: "invalid_input", 429: "too_many_requests"}.get(status, "http_error")  # fmt: skip


async def _handle(request: Request, exc: Exception) -> Response:
    """Starlette exception handler delegating to error_response (a wrong path or method is named)."""
    if isinstance(exc, HTTPException) and exc.status_code == 404:
        return _problem(404, "not_found", f"no such path: {request.url.path}", "path")
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        allowed = exc.headers.get("Allow", "") if exc.headers else ""
        message = f"{request.method} is not allowed on {request.url.path}" + (f" (use {allowed})" if allowed else "")
        return _problem(405, "method_not_allowed", message, "method", exc.headers)
    return error_response(exc)


class CatchAllMiddleware:
    """Outermost guard: unhandled errors become the generic JSON 500; debug-level access log without query."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; on an unhandled error answer 500 unless a response already started."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0
        started_at = time.monotonic()

        async def guarded_send(message: Message) -> None:
            """Pass the message on, remembering the response status once it started."""
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, guarded_send)
        except Exception as exc:
            log.error("request_failed", path=scope.get("path"), error_type=type(exc).__name__)
            if not status:
                status = 500
                await error_response(exc)(scope, receive, send)
        finally:
            # The path only: a query string may carry a secret a client put there by mistake.
            log.debug(
                "request", method=scope.get("method"), path=scope.get("path"), status=status,
                duration_ms=round((time.monotonic() - started_at) * 1000, 1),
            )  # fmt: skip


def _starlette(routes: list[BaseRoute], lifespan: Any = None) -> Starlette:
    """An app with the one error mapping and the catch-all guard; no slash redirects (they echo Host)."""
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(CatchAllMiddleware)],
        exception_handlers={
            HTTPException: _handle,
            SessionPoolError: _handle,
            ValidationError: _handle,
            AdminError: _handle,
        },
    )
    app.router.redirect_slashes = False
    return app


class Scrape:
    """GET /metrics as a bare ASGI app: the cached exposition's bytes (never waits for MongoDB)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer with the exposition the Accept header asks for, gzipped when Accept-Encoding allows it."""
        accept: str | None = None
        gzipped = False
        for name, value in scope["headers"]:
            if name == b"accept":
                accept = value.decode("latin-1")
            elif name == b"accept-encoding":
                gzipped = _accepts_gzip(value.decode("latin-1"))
        body, content_type = await self.metrics.serve(accept, gzipped)
        headers = [
            (b"content-type", content_type.encode("latin-1")),
            (b"content-length", str(len(body)).encode("ascii")),
            (b"cache-control", b"no-store"),
            (b"vary", b"Accept, Accept-Encoding"),
        ]
        if gzipped:
            headers.append((b"content-encoding", b"gzip"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


def _accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding header admits gzip (`gzip`, `gzip;q=0.5`, not `gzip;q=0`)."""
    for part in header.split(","):
        token, _, params = part.strip().partition(";")
        if token.strip().lower() in ("gzip", "*"):
            q = params.strip().lower()
            return not (q.startswith("q=") and _quality(q[2:]) == 0)
    return False


def _quality(text: str) -> float:
    """A q-value, 1 when unreadable."""
    try:
        return float(text)
    except ValueError:
        return 1.0


class ScrapeFirst:
    """Hand GET/HEAD /metrics to `scrape` before any routing or middleware; everything else to `app`.

    Scrapes are the daemon's hot path: this keeps them to a dictionary lookup and two sends.
    """

    def __init__(self, app: ASGIApp, scrape: Scrape) -> None:
        self.app = app
        self.scrape = scrape

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch."""
        if scope["type"] == "http" and scope["path"] == "/metrics" and scope["method"] in ("GET", "HEAD"):
            await self.scrape(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(
    config: Config,
    collector: Collector,
    metrics: Metrics,
    admin_routes: Sequence[BaseRoute] | None = None,
) -> Starlette:
    """The main app (/metrics, /healthz, /readyz); `admin_routes` too when the admin API shares its listener."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        """Start the collector with the server and stop it on shutdown."""
        collector.start()
        try:
            yield
        finally:
            await collector.stop()

    routes: list[BaseRoute] = [
        *(Route(r.path, r.handler(collector, metrics), methods=list(r.methods)) for r in MAIN_ROUTES),
        *(admin_routes or []),
    ]
    if admin_routes is None:
        # Say why /admin/... is not here rather than a bare 404 a wrong path would get.
        elsewhere = _admin_elsewhere if config.admin.enabled else _admin_off
        routes.append(Route("/admin/{rest:path}", elsewhere, methods=["GET", "POST"]))
    app = _starlette(routes, lifespan)
    app.state.config = config
    app.state.collector = collector
    app.state.metrics = metrics
    return app


def create_admin_app(admin_routes: Sequence[BaseRoute]) -> Starlette:
    """The admin API on a listener of its own (and /healthz, for a probe of that port)."""
    return _starlette([Route("/healthz", healthz, methods=["GET"]), *admin_routes])


async def healthz(request: Request) -> Response:
    """GET /healthz."""
    return PlainTextResponse("ok\n")


async def _admin_elsewhere(request: Request) -> Response:
    """/admin/... on the metrics listener when the admin API has its own: say so, without saying where."""
    return _problem(404, "not_found", "the admin API is not served on this listener (see admin.listen)", "path")


async def _admin_off(request: Request) -> Response:
    """/admin/... while no admin token is configured."""
    return _problem(404, "not_found", ADMIN_OFF, "path")
