"""The admin API over HTTP: the route table, bearer-token authentication and request parsing."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from bson import ObjectId
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from exporter.admin.auth import Caller, Role
from exporter.admin.console import Console
from exporter.admin.endpoints import ENDPOINTS
from exporter.admin.errors import (
    AdminDisabled,
    BadRequest,
    BodyTooLarge,
    Forbidden,
    InvalidRequest,
    Unauthorized,
    UnsupportedMediaType,
)
from exporter.admin.models import (
    REQUEST_ID,
    REQUEST_ID_RULE,
    Action,
    ActionBody,
    AuditQuery,
    Body,
    BulkUnlockBody,
    HistoryQuery,
    SessionsQuery,
)
from exporter.admin.openapi import openapi_document
from exporter.admin.service import AdminService
from exporter.config import AdminConfig
from exporter.core import InvalidInput, budget, parse_session_id

MAX_BODY_BYTES = 16 * 1024
ADMIN_OFF = "the admin API is off: configure a token (admin.tokens, or SESSION_POOL_EXPORTER_ADMIN_TOKEN) to turn it on"
_B = TypeVar("_B", bound=Body)
Handler = Callable[[Request], Awaitable[Response]]


def invalid(exc: ValidationError, where: str = "body") -> InvalidRequest:
    """A pydantic validation error as the API's 422, every problem located (`body.period.minutes`)."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        location = ".".join([where, *(str(part) for part in error["loc"])])
        message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
        problems.append({"location": location, "message": message})
    summary = "; ".join(f"{p['location']}: {p['message']}" for p in problems)
    return InvalidRequest(f"invalid request: {summary}", location=where, problems=problems)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object hook refusing a key given twice."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise InvalidRequest(f"request body names {key!r} twice; send each field once", location=f"body.{key}")
        out[key] = value
    return out


def _lone_surrogate(value: Any, where: str) -> str | None:
    """The location of the first string (key or value) holding a lone surrogate, which no UTF-8 can carry."""
    if isinstance(value, str):
        return where if any("\ud800" <= c <= "\udfff" for c in value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _lone_surrogate(key, where) or _lone_surrogate(item, f"{where}.{key}")
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _lone_surrogate(item, f"{where}.{index}")
            if found is not None:
                return found
    return None


def check_media_type(header: str) -> None:
    """A body must be `application/json`, in UTF-8 if a charset is named (415 otherwise)."""
    media, *params = (part.strip() for part in header.split(";"))
    media = media.lower()
    if media != "application/json":
        raise UnsupportedMediaType(
            f"send the body as JSON with 'Content-Type: application/json', not {media or 'no content type'!r}",
            location="header.Content-Type",
        )
    for param in params:
        name, _, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            raise UnsupportedMediaType(
                f"send the JSON body in UTF-8 (charset=utf-8 or no charset), not charset={charset or 'empty'!r}",
                location="header.Content-Type",
            )


class AdminHTTP:
    """The admin routes: authenticate, parse, call the service, answer JSON."""

    def __init__(self, config: AdminConfig, service: AdminService) -> None:
        self.service = service
        self.request_timeout = config.request_timeout
        self._tokens = [
            (hashlib.sha256(t.secret().encode()).digest(), Caller(t.name, Role(t.role))) for t in config.tokens
        ]
        self._console = Console()

    def routes(self) -> list[BaseRoute]:
        """The admin routes (all under /admin), from the endpoint table."""
        return [Route(e.path, self._bounded(getattr(self, e.handler)), methods=[e.method]) for e in ENDPOINTS]

    def _bounded(self, handler: Handler) -> Handler:
        """The handler with every MongoDB call it makes sharing admin.request_timeout."""

        @functools.wraps(handler)
        async def bounded(request: Request) -> Response:
            with budget("admin.request_timeout", self.request_timeout):
                return await handler(request)

        return bounded

    # -- plumbing --

    def authenticate(self, request: Request, *, write: bool) -> Caller:
        """Return the caller of a valid bearer token; 404 when admin is off, 401/403 otherwise."""
        if not self._tokens:
            raise AdminDisabled(ADMIN_OFF)
        headers = request.headers.getlist("authorization")
        if len(headers) > 1:
            raise BadRequest("send one Authorization header, not several", location="header.Authorization")
        scheme, _, presented = (headers[0] if headers else "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise Unauthorized(
                "missing bearer token: send 'Authorization: Bearer <token>'", location="header.Authorization"
            )
        candidate = hashlib.sha256(presented.strip().encode()).digest()
        found: Caller | None = None
        for secret, caller in self._tokens:
            # Digests of equal length, compared against every token: timing reveals neither which
            # token nor how long it is.
            if hmac.compare_digest(candidate, secret):
                found = caller
        if found is None:
            raise Unauthorized("invalid token", location="header.Authorization")
        if write and found.role != "write":
            raise Forbidden(
                f"token {found.name!r} has role {found.role.value!r}; this route needs 'write'", role=found.role.value
            )
        request.state.actor = found.name
        return found

    @staticmethod
    def request_id(request: Request) -> str:
        """The caller's X-Request-ID (refused when malformed), else a fresh one.

        It only labels the request in answers, logs and the audit trail: events are settled by
        their own `_id`, so no caller-chosen id can reach another request's events.
        """
        given = request.headers.getlist("x-request-id")
        if len(given) > 1:
            raise BadRequest("send one X-Request-ID header, not several", location="header.X-Request-ID")
        if given and not REQUEST_ID.match(given[0]):
            raise BadRequest(f"X-Request-ID {REQUEST_ID_RULE}", location="header.X-Request-ID")
        rid = given[0] if given else uuid.uuid4().hex
        request.state.request_id = rid
        return rid

    @staticmethod
    def session_id(request: Request) -> ObjectId:
        """The session id of the path; a malformed one is a 400 located at `path.session_id`."""
        try:
            return parse_session_id(request.path_params["session_id"])
        except InvalidInput as exc:
            raise BadRequest(exc.message, location="path.session_id") from None

    @staticmethod
    async def body(request: Request, model: type[_B]) -> _B:
        """The JSON body validated by `model` (an empty body is the model's defaults)."""
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise BodyTooLarge(MAX_BODY_BYTES)
        raw = bytearray()
        async for chunk in request.stream():
            raw.extend(chunk)
            if len(raw) > MAX_BODY_BYTES:
                raise BodyTooLarge(MAX_BODY_BYTES)
        if not raw.strip():
            # No body is an empty object: the same 422 as `{}` when the model needs a field.
            try:
                return model.model_validate({})
            except ValidationError as exc:
                raise invalid(exc) from None
        check_media_type(request.headers.get("content-type", ""))
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequest(f"request body is not valid UTF-8 (byte {exc.start})") from None
        try:
            data = json.loads(text, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(
                f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
        except RecursionError:
            raise InvalidRequest("request body is nested too deeply") from None
        if not isinstance(data, dict):
            raise InvalidRequest("request body must be a JSON object")
        lone = _lone_surrogate(data, "body")
        if lone is not None:
            raise InvalidRequest(
                f"{lone}: a lone UTF-16 surrogate (\\ud800-\\udfff without its pair) is not text", location=lone
            )
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise invalid(exc) from None

    @staticmethod
    def query(request: Request, model: type[BaseModel]) -> Any:
        """The query string validated by `model`; a parameter given twice is refused."""
        params: dict[str, Any] = {}
        for key, value in request.query_params.multi_items():
            if key in params:
                raise InvalidRequest(f"query parameter {key!r} given more than once", location=f"query.{key}")
            params[key] = value
        try:
            return model.model_validate(params)
        except ValidationError as exc:
            raise invalid(exc, "query") from None

    @staticmethod
    def answer(model: BaseModel, headers: dict[str, str] | None = None) -> JSONResponse:
        """A response model as JSON (optional fields left unset are left out)."""
        return JSONResponse(model.model_dump(mode="json", exclude_unset=True), headers=headers)

    # -- routes --

    async def openapi(self, request: Request) -> Response:
        """GET /admin/openapi.json."""
        self.authenticate(request, write=False)
        return JSONResponse(openapi_document())

    async def console(self, request: Request) -> Response:
        """GET /admin/ui/: the console's page (public code; every call it makes needs a token)."""
        if not self._tokens:
            raise AdminDisabled(ADMIN_OFF)
        return self._console.page()

    async def asset(self, request: Request) -> Response:
        """GET /admin/ui/{asset}: a script, style sheet or icon of the console."""
        if not self._tokens:
            raise AdminDisabled(ADMIN_OFF)
        return self._console.asset(request.path_params["asset"])

    async def pool_states(self, request: Request) -> Response:
        """GET /admin/pools/{pool}/states."""
        self.authenticate(request, write=False)
        return self.answer(self.service.states(request.path_params["pool"]))

    async def list_sessions(self, request: Request) -> Response:
        """GET /admin/pools/{pool}/sessions."""
        caller = self.authenticate(request, write=False)
        self.service.pool(request.path_params["pool"])
        query: SessionsQuery = self.query(request, SessionsQuery)
        return self.answer(await self.service.list_sessions(request.path_params["pool"], query, caller))

    async def session_history(self, request: Request) -> Response:
        """GET /admin/pools/{pool}/sessions/{session_id}/history."""
        self.authenticate(request, write=False)
        self.service.pool(request.path_params["pool"])
        oid = self.session_id(request)
        query: HistoryQuery = self.query(request, HistoryQuery)
        return self.answer(await self.service.history(request.path_params["pool"], oid, query))

    async def list_pools(self, request: Request) -> Response:
        """GET /admin/pools."""
        self.authenticate(request, write=False)
        return self.answer(self.service.list_pools())

    async def get_session(self, request: Request) -> Response:
        """GET /admin/pools/{pool}/sessions/{session_id}."""
        self.authenticate(request, write=False)
        self.service.pool(request.path_params["pool"])
        oid = self.session_id(request)
        return self.answer(await self.service.session(request.path_params["pool"], oid))

    async def act(self, request: Request) -> Response:
        """POST /admin/pools/{pool}/sessions/{session_id}/{action}."""
        caller = self.authenticate(request, write=True)
        rid = self.request_id(request)
        self.service.pool(request.path_params["pool"])
        try:
            action = Action(request.path_params["action"])
        except ValueError:
            raise InvalidRequest(
                f"unknown action {request.path_params['action']!r}; use one of {', '.join(a.value for a in Action)}",
                location="path.action",
            ) from None
        oid = self.session_id(request)
        body = await self.body(request, ActionBody)
        result = await self.service.act(
            request.path_params["pool"], oid, action, period=body.period, reason=body.reason, caller=caller,
            request_id=rid,
        )  # fmt: skip
        return self.answer(result, headers={"X-Request-ID": rid})

    async def bulk_unlock(self, request: Request) -> Response:
        """POST /admin/pools/{pool}/unlock."""
        caller = self.authenticate(request, write=True)
        rid = self.request_id(request)
        self.service.pool(request.path_params["pool"])
        body = await self.body(request, BulkUnlockBody)
        result = await self.service.bulk_unlock(
            request.path_params["pool"], body.state, dry_run=body.dry_run, reason=body.reason, caller=caller,
            request_id=rid,
        )  # fmt: skip
        return self.answer(result)

    async def search_audit(self, request: Request) -> Response:
        """GET /admin/audit."""
        self.authenticate(request, write=False)
        query: AuditQuery = self.query(request, AuditQuery)
        return self.answer(await self.service.search_audit(query))
