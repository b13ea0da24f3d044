"""Whether a pool's stored times are in the frame its `stored_timezone` says: a sample of the pool, then an estimate."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bson import ObjectId

from exporter.config import PoolDefinition
from exporter.core import MongoSessions, format_duration
from exporter.doctor.documents import show_id
from exporter.doctor.findings import Finding, error, ok, warn
from exporter.doctor.timezone import Estimate, Sample, estimate, made_at, offset_name, zone_name, zones_at

# The newest documents (ObjectId order: the _id index) and the most recently used active ones (the
# {active, last_use, next_use} index): both index reads, so the sample costs the same at any pool size.
NEWEST = 500
RECENT = 200


def _get(doc: Mapping[str, Any], path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def sample_of(doc: Mapping[str, Any], created: str, last_use: str) -> Sample:
    """What one document's `_id`, `created` and `last_use` carry (anything but a date is left out)."""
    oid = doc.get("_id")
    made, used = _get(doc, created), _get(doc, last_use)
    return Sample(
        doc_id=oid,
        id_time=oid.generation_time if isinstance(oid, ObjectId) else None,
        created=made if isinstance(made, datetime) else None,
        last_use=used if isinstance(used, datetime) else None,
    )


async def read_samples(sessions: MongoSessions) -> tuple[datetime, list[Sample]]:
    """The server's now and the sampled documents (stored times read as if UTC, as the pool holds them)."""
    f = sessions.fields
    now = await sessions.server_time("timezone")
    projection = {"_id": 1, f.created: 1, f.last_use: 1}
    coll = sessions.collection
    async with sessions.guard("timezone_sample"):
        newest = await coll.find({"_id": {"$type": "objectId"}}, projection).sort("_id", -1).limit(NEWEST).to_list()
        recent = await (
            coll.find({f.active: True, f.last_use: {"$type": "date"}}, projection)
            .sort(f.last_use, -1)
            .limit(RECENT)
            .to_list()
        )
    seen: dict[Any, Sample] = {}
    for doc in [*newest, *recent]:
        sample = sample_of(doc, f.created, f.last_use)
        key = str(sample.doc_id)
        if key not in seen:
            seen[key] = sample
    return now, list(seen.values())


def _bound_text(result: Estimate) -> str:
    if result.bound == "at_least":
        return " or more (a lower bound: the newest writes may be older than they look)"
    if result.bound == "at_most":
        return " or less (an upper bound)"
    if result.bound == "range" and result.low is not None and result.high is not None:
        return f" (anywhere from {offset_name(result.low)} to {offset_name(result.high)})"
    return ""


def _newest_use(samples: list[Sample], sessions: MongoSessions, now: datetime) -> str:
    used = [s.last_use for s in samples if s.last_use is not None]
    if not used:
        return "no session used yet"
    age = now - sessions.from_stored(max(used))
    if age.total_seconds() < 0:
        return f"newest last_use {format_duration(round(-age.total_seconds()))} in the future"
    return f"newest last_use {format_duration(round(age.total_seconds()))} ago"


def frame_findings(
    pool: PoolDefinition, sessions: MongoSessions, now: datetime, samples: list[Sample]
) -> list[Finding]:
    """The documents agree with the configured frame, or the offset their writers seem to use, and how sure."""
    zone = sessions.stored_timezone
    frame = zone_name(zone)
    result = estimate(samples, now, zone)
    with_ids = sum(1 for s in samples if made_at(s) is not None)
    newest = _newest_use(samples, sessions, now)
    if result.checked == 0:
        return [ok("timezone", f"no document has a date in created or last_use yet: nothing to compare with {frame}")]
    basis = f"{result.checked} sampled documents, {with_ids} with created and an ObjectId to compare; {newest}"
    if result.agrees:
        return [ok("timezone", f"stored times agree with {frame} ({basis})")]
    example = show_id(result.examples[0]) if result.examples else "?"
    if result.offset == result.configured:
        return [
            warn(
                "timezone",
                f"{result.contradicting} of {result.checked} sampled documents are impossible in {frame} "
                f"(e.g. _id {example}), the others agree: some writers seem to run at another offset ({newest})",
                "check the time zone and clock of every machine running handlers of the original library",
            )
        ]
    assert result.offset is not None
    offset = offset_name(result.offset)
    confidence = (
        f"confidence {result.confidence}: {result.supporting} of {result.checked} sampled documents fit {offset}, "
        f"{result.contradicting} are impossible in {frame}"
    )
    gap = format_duration(abs(result.offset - result.configured))
    effect = (
        f"holds of the original library's workers read {gap} too long (their locks count as blocks)"
        if result.offset > result.configured
        else f"holds of the original library's workers read {gap} too short (sessions they hold are handed out)"
    )
    found = (
        f"stored times look written at {offset}{_bound_text(result)}, not {frame}: {effect} ({confidence}; "
        f"e.g. _id {example}; {newest})"
    )
    if result.offset.total_seconds() == 0:
        fix = f"remove stored_timezone from pool {pool.name}: its writers store UTC"
    else:
        zones = zones_at(result.offset, now)
        named = f"stored_timezone: {zones[0]}" if zones else f"the stored_timezone of the writers' machines ({offset})"
        others = f" (others at {offset} now: {', '.join(zones[1:])})" if len(zones) > 1 else ""
        fix = (
            f"set {named} on pool {pool.name}{others}; use the zone of the writers' machines: "
            "one with daylight saving time changes its offset twice a year"
        )
    return [error("timezone", found, fix) if result.confidence != "low" else warn("timezone", found, fix)]
