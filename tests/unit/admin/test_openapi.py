"""The OpenAPI document is generated from the route table and the models, and says what they say."""

from __future__ import annotations

import re
from typing import Any

from exporter.admin import openapi_document
from exporter.admin.endpoints import ENDPOINTS
from exporter.admin.models import REQUEST_ID, SESSION_ID
from exporter.config import NAME


def _resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local $ref."""
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def test_paths_are_the_documented_endpoints() -> None:
    """Every documented endpoint appears with its method; /admin/openapi.json describes the others."""
    document = openapi_document()
    documented = {(e.path, e.method.lower()) for e in ENDPOINTS if e.documented}
    assert {(path, method) for path, item in document["paths"].items() for method in item} == documented
    assert "/admin/openapi.json" not in document["paths"]


def test_every_reference_resolves_and_errors_share_one_schema() -> None:
    """No dangling $ref; every error status uses the ErrorBody schema."""
    document = openapi_document()
    text = str(document)
    for ref in set(re.findall(r"'\$ref': '([^']+)'", text)):
        _resolve(document, {"$ref": ref})
    for item in document["paths"].values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                if status != "200":
                    assert response["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/ErrorBody"
                    }


def test_patterns_come_from_the_code_that_checks_them() -> None:
    """Path and query patterns are the very regexes the config and the models validate with."""
    document = openapi_document()
    params = {
        (p["in"], p["name"]): p["schema"]
        for item in document["paths"].values()
        for operation in item.values()
        for p in operation.get("parameters", [])
    }
    assert params[("path", "pool")]["pattern"] == NAME.pattern
    assert params[("path", "session_id")]["pattern"] == SESSION_ID.pattern
    assert params[("query", "request_id")]["pattern"] == REQUEST_ID.pattern
    assert params[("query", "actor")]["pattern"] == NAME.pattern
    assert params[("path", "action")]["enum"] == ["unlock", "deactivate", "activate", "lock", "block"]


def test_a_copy_each_call() -> None:
    """Changing one answer cannot change the next."""
    first = openapi_document()
    first["paths"].clear()
    assert openapi_document()["paths"]
