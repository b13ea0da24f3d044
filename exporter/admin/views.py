"""What an operator sees of a session document: every BSON value as JSON (what is odd about it: core.shapes)."""

from __future__ import annotations

import base64
import math
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bson import ObjectId
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.regex import Regex
from bson.timestamp import Timestamp

from exporter.core import Hold

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
