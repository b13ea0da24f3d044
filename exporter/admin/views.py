"""What an operator sees of a session document: every BSON value as JSON (what is odd about it: core.shapes)."""

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

from exporter.admin.models import AuditEvent, SessionView
from exporter.core import Document, Hold, State, recorded_hold
from exporter.core.shapes import oddities
from exporter.state import PoolState

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


MASK_WIDTH = 6


def mask(value: Any, reveal: int = 2) -> str:
    """A credential shown in part: its last `reveal` characters at most (`••••••67`), at most a quarter of it,
    behind a mask of fixed width that hides its length; never enough to use or rebuild it."""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return MASK * MASK_WIDTH
    text = str(value)
    shown = min(reveal, len(text) // 4)
    return MASK * MASK_WIDTH + (text[-shown:] if shown else "")


def subfield(doc: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of nested documents, or None."""
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def shown_fields(credentials: Any, search: Sequence[str], show: Sequence[str], reveal: int = 2) -> dict[str, Any]:
    """The sub-fields of `session` an operator may see: `show` ones as stored, `search` ones masked in part."""
    if not isinstance(credentials, Mapping):
        return {}
    out: dict[str, Any] = {}
    for name in search:
        value = subfield(credentials, name)
        if value is not None and name not in show:
            out[name] = mask(value, reveal)
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


def session_view(pool: PoolState, doc: Document, now: datetime, *, expose_credentials: bool) -> SessionView:
    """What an operator sees of one session document, whatever shapes its fields have."""
    sessions = pool.sessions
    f = sessions.fields
    recorded = recorded_hold(doc, f)
    state = sessions.state_of(doc, now)
    held = state in (State.LOCKED, State.BLOCKED, State.IN_USE)
    extra: dict[str, Any] = {}
    if expose_credentials:
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


def audit_event(doc: Document) -> AuditEvent:
    """A stored audit event as the API shows it."""
    return AuditEvent.model_validate({**{k: plain(v) for k, v in doc.items() if k != "_id"}, "id": str(doc["_id"])})
