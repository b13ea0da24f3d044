"""Documents the state rules cannot classify as intended: a count per odd shape and one example, server-side."""

from __future__ import annotations

import json
import time
from typing import Any

from bson import ObjectId

from exporter.config import PoolDefinition
from exporter.core import MongoSessions, format_duration
from exporter.core.shapes import ShapeCount, census_pipeline, read_census
from exporter.doctor.findings import Finding, error, ok, warn

# What to do about each shape; the admin API fixes one session at a time.
_FIXES = {
    "active_missing": "set it to true or false (the admin API's activate or deactivate does, per session)",
    "active_not_bool": "set it to true or false (the admin API's activate or deactivate does, per session)",
    "next_use_not_date": "set it to null or a date (the admin API's unlock sets null, per session)",
    "last_use_not_date": "set it to null or a date",
    "hold_malformed": "unset it; the hold then counts by the time left, as now (the admin API's unlock clears it)",
    "count_use_not_number": "set it to a number, e.g. 0",
    "count_success_not_number": "set it to a number, e.g. 0",
}


def show_id(value: Any) -> str:
    """An `_id` as an operator types it in mongosh."""
    if isinstance(value, ObjectId):
        return f'ObjectId("{value}")'
    if isinstance(value, str | int | float | bool) or value is None:
        return json.dumps(value)
    return repr(value)[:80]


async def census(sessions: MongoSessions) -> tuple[int, list[ShapeCount], float]:
    """The pool's document count (from the collection's metadata), the odd shapes found, and the pass's seconds."""
    coll = sessions.collection
    started = time.monotonic()
    async with sessions.guard("odd_documents"):
        rows = await (await coll.aggregate(census_pipeline(sessions.fields))).to_list(None)
        total = await coll.estimated_document_count()
    return total, read_census(rows[0] if rows else None, sessions.fields), time.monotonic() - started


def document_findings(pool: PoolDefinition, total: int, found: list[ShapeCount], seconds: float) -> list[Finding]:
    """One finding per odd shape (count, BSON types, an example `_id`), or one saying there are none."""
    took = format_duration(round(seconds, 3))
    if not found:
        return [ok("documents", f"{total:,} documents, none of an odd shape (one pass over the pool: {took})")]
    out = []
    coll = f'db.getSiblingDB("{pool.database}").getCollection("{pool.collection}")'
    for item in found:
        shape = item.shape
        types = f" ({', '.join(item.types)})" if item.types and shape.key != "active_missing" else ""
        what = "is missing" if shape.key == "active_missing" else f"is not {shape.expected}{types}"
        text = (
            f"{shape.field} {what} in {item.count:,} of {total:,} documents, e.g. _id {show_id(item.example)}: "
            f"{shape.effect} (one pass over the pool: {took})"
        )
        fix = f"{_FIXES.get(shape.key, 'fix the field')}; list them: {coll}.find({json.dumps({'$expr': shape.expr})})"
        out.append(error("documents", text, fix) if shape.severe else warn("documents", text, fix))
    return out
