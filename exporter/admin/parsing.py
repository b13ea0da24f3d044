"""What an admin request carries, checked: its JSON body, query string, path ids, request id; answers as JSON."""

from __future__ import annotations

import json
import uuid
from typing import Any, TypeVar

from bson import ObjectId
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from exporter.admin.errors import BadRequest, BodyTooLarge, InvalidRequest, UnsupportedMediaType
from exporter.admin.models import REQUEST_ID, REQUEST_ID_RULE, Action, Body
from exporter.core import InvalidInput, parse_session_id

MAX_BODY_BYTES = 16 * 1024
_B = TypeVar("_B", bound=Body)
_Q = TypeVar("_Q", bound=BaseModel)


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
    return given[0] if given else uuid.uuid4().hex


def session_id(request: Request) -> ObjectId:
    """The session id of the path; a malformed one is a 400 located at `path.session_id`."""
    try:
        return parse_session_id(request.path_params["session_id"])
    except InvalidInput as exc:
        raise BadRequest(exc.message, location="path.session_id") from None


def action(request: Request) -> Action:
    """The action of the path; an unknown one is a 422 located at `path.action` that lists them."""
    try:
        return Action(request.path_params["action"])
    except ValueError:
        raise InvalidRequest(
            f"unknown action {request.path_params['action']!r}; use one of {', '.join(a.value for a in Action)}",
            location="path.action",
        ) from None


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


def query(request: Request, model: type[_Q]) -> _Q:
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


def answer(model: BaseModel, headers: dict[str, str] | None = None) -> JSONResponse:
    """A response model as JSON (optional fields left unset are left out)."""
    return JSONResponse(model.model_dump(mode="json", exclude_unset=True), headers=headers)
