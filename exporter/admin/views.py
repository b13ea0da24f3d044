"""What an operator sees of a session document: every BSON value as JSON, and what is odd about it."""

from __future__ import annotations

import base64
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from bson import ObjectId
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.regex import Regex
from bson.timestamp import Timestamp

from exporter.core import Fields, Hold

MASK = "•"

SET_BY = {Hold.USE: "get_session", Hold.LOCK: "session_lock", Hold.BLOCK: "session_block"}
UNKNOWN_CAUSE = "unknown: set by a worker of the original library (classified by the time left)"


def plain(value: Any, depth: int = 0) -> Any:
    """Any value MongoDB can store, as JSON can carry it (ids and decimals as strings, bytes as base64)."""
    if depth > 64:
        return "…"
    if value is None or isinstance(value, bool | str | int):
        return int(value) if isinstance(value, Int64) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v, depth + 1) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Regex | re.Pattern):
        return f"/{value.pattern}/"
    if isinstance(value, Timestamp):
        return {"t": value.time, "i": value.inc}
    if isinstance(value, ObjectId | Decimal128 | uuid.UUID):
        return str(value)
    return f"{type(value).__name__}: {value}"[:200]


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def oddities(doc: Mapping[str, Any], fields: Fields) -> list[str]:
    """What about a document the state rules or the handlers cannot use as intended, one line each."""
    out: list[str] = []
    active = doc.get(fields.active)
    if fields.active not in doc:
        out.append(f"{fields.active} is missing: the session counts as inactive")
    elif not isinstance(active, bool):
        out.append(f"{fields.active} is a {_kind(active)}, not true/false: the session counts as inactive")
    for name in (fields.next_use, fields.last_use):
        value = doc.get(name)
        if value is not None and not isinstance(value, datetime):
            out.append(f"{name} is a {_kind(value)}, not a date")
    hold = doc.get(fields.hold)
    if fields.hold in doc and not (
        isinstance(hold, Mapping)
        and hold.get("kind") in [str(h) for h in Hold]
        and isinstance(hold.get("until"), datetime)
    ):
        out.append(f"{fields.hold} is not a {{kind, until}} marker: the hold counts by the time left")
    for name in (fields.count_use, fields.count_success):
        value = doc.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            out.append(f"{name} is a {_kind(value)}, not a number: get_session and session_success fail on it")
    return out


def mask(value: Any) -> str:
    """A credential shown in part: enough to recognise it (`+79•••••67`), never enough to use it."""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return MASK * 3
    text = str(value)
    if len(text) >= 8:
        return text[:3] + MASK * (len(text) - 5) + text[-2:]
    return text[:1] + MASK * max(len(text) - 1, 2)


def subfield(doc: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of nested documents, or None."""
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def shown_fields(credentials: Any, search: Sequence[str], show: Sequence[str]) -> dict[str, Any]:
    """The sub-fields of `session` an operator may see: `show` ones as stored, `search` ones masked in part."""
    if not isinstance(credentials, Mapping):
        return {}
    out: dict[str, Any] = {}
    for name in search:
        value = subfield(credentials, name)
        if value is not None and name not in show:
            out[name] = mask(value)
    for name in show:
        value = subfield(credentials, name)
        if value is not None:
            out[name] = plain(value)
    return out


def success_ratio(uses: Any, successes: Any) -> float | None:
    """count_success / count_use when both are numbers and there was a use."""
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (uses, successes))
    if not numbers or uses <= 0:
        return None
    return round(float(successes) / float(uses), 4)
