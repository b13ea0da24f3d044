"""The OpenAPI 3.1 document of the admin API, generated from the route table and the models."""

from __future__ import annotations

import copy
import re
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from exporter.admin.endpoints import ENDPOINTS, PATH_PARAMETERS
from exporter.admin.models import ErrorBody

STATUS_TEXT = {
    400: "malformed input",
    401: "missing or invalid token",
    403: "token role too weak",
    404: "admin API off, unknown pool or session",
    409: "conflict with the current state",
    413: "body too large",
    415: "body not sent as application/json, or in another charset than UTF-8",
    422: "invalid body or query",
    429: "a read token's searches of masked fields over admin.read_searches_per_minute (Retry-After)",
    502: "MongoDB refused the operation",
    503: "MongoDB unreachable or refusing the login (Retry-After), or the daemon is shutting down",
    504: "MongoDB did not answer in time (mongodb.timeout or admin.request_timeout)",
}
_REF = "#/components/schemas/{model}"


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent rather than null: drop the null branch of an optional."""
    branches = schema.get("anyOf")
    if isinstance(branches, list):
        rest = [b for b in branches if b.get("type") != "null"]
        if len(rest) == 1:
            out = {k: v for k, v in schema.items() if k != "anyOf"}
            return {**out, **rest[0]}
    return schema


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of the admin API (a fresh copy each call)."""
    return copy.deepcopy(_document())


@cache
def _document() -> dict[str, Any]:
    """Built once: the endpoint table and the models do not change at run time."""
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
    for e in ENDPOINTS:
        if e.body is not None:
            models.append((e.body, "validation"))
        if e.answer is not None:
            models.append((e.answer, "serialization"))
    refs, defs = models_json_schema(models, ref_template=_REF)
    error = refs[(ErrorBody, "serialization")]
    paths: dict[str, dict[str, Any]] = {}
    for e in ENDPOINTS:
        if not e.documented:
            continue
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": PATH_PARAMETERS[name]}
            for name in re.findall(r"\{(\w+)\}", e.path)
        ]
        if e.query is not None:
            schema = e.query.model_json_schema(ref_template=_REF)
            parameters += [
                {"name": name, "in": "query", "required": False, "schema": _without_null(prop)}
                for name, prop in schema["properties"].items()
            ]
        ok: dict[str, Any] = {"description": e.summary}
        if e.answer is not None:
            ok["content"] = {"application/json": {"schema": refs[(e.answer, "serialization")]}}
        operation: dict[str, Any] = {
            "operationId": e.operation_id,
            "summary": e.summary,
            # The token role the route needs (read: GET routes; write: the actions).
            "x-role": e.role.value,
            "responses": {
                "200": ok,
                **{
                    str(code): {"description": STATUS_TEXT[code], "content": {"application/json": {"schema": error}}}
                    for code in e.errors
                },
            },
        }
        if parameters:
            operation["parameters"] = parameters
        if e.body is not None:
            operation["requestBody"] = {
                "required": e.body_required,
                "content": {"application/json": {"schema": refs[(e.body, "validation")]}},
            }
        paths.setdefault(e.path, {})[e.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "session-pool-exporter admin API", "version": "1"},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": defs.get("$defs", {}),
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }
