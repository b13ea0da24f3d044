"""Pure builders of the filters, updates and pipelines the pool runs (no server needed to test them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from exporter.core.model import Fields, Hold, State
from exporter.core.timeframe import TimeFrame

LIVE = {"$in": [True, None]}
LEGACY = {"$nin": [str(h) for h in Hold]}


@dataclass(frozen=True)
class StateRules:
    """Everything the state of a document depends on besides the document and the time."""

    fields: Fields
    lock_time: timedelta
    grace: timedelta
    frame: TimeFrame


def index_specs(fields: Fields) -> list[tuple[list[tuple[str, int]], str]]:
    """The indexes the pool needs: keys and why."""
    f = fields
    return [
        # Equality, Sort, Range: `active` is two points (true, null) the planner merge-sorts
        # on last_use, so get_session reads a handful of keys instead of sorting the pool.
        ([(f.active, 1), (f.last_use, 1), (f.next_use, 1)], "get_session, count_active, oldest active"),
        ([(f.active, 1), (f.hold, 1), (f.next_use, 1)], "state counts and the next unlock"),
    ]


def state_branches(rules: StateRules, now: datetime) -> dict[State, list[dict[str, Any]]]:
    """Index-friendly filters whose union is each state (active has none: it is the rest)."""
    f = rules.fields
    now_s = rules.frame.to_stored(now)

    def held(hold: Any, low: datetime, high: datetime | None = None) -> dict[str, Any]:
        bounds: dict[str, Any] = {"$gt": low}
        if high is not None:
            bounds["$lte"] = high
        return {f.active: LIVE, f.hold: hold, f.next_use: bounds}

    return {
        State.INACTIVE: [{f.active: {"$nin": [True, None]}}],
        State.BLOCKED: [held(str(Hold.BLOCK), now_s), held(LEGACY, now_s + rules.lock_time)],
        State.LOCKED: [
            held(str(Hold.LOCK), now_s),
            held(LEGACY, now_s + rules.grace, now_s + rules.lock_time),
        ],
        State.IN_USE: [held(str(Hold.USE), now_s), held(LEGACY, now_s, now_s + rules.grace)],
    }


def state_filter(rules: StateRules, state: State, now: datetime) -> dict[str, Any]:
    """A query filter matching exactly the sessions in `state` at `now` (server time)."""
    f = rules.fields
    if state is State.ACTIVE:
        return {f.active: LIVE, f.next_use: {"$not": {"$gt": rules.frame.to_stored(now)}}}
    branches = state_branches(rules, now)[state]
    return branches[0] if len(branches) == 1 else {"$or": branches}


def statistics_pipeline(rules: StateRules, collection: str, now: datetime) -> list[dict[str, Any]]:
    """One aggregation answering every state count, the sums and the two key times at `now`."""
    f = rules.fields
    now_s = rules.frame.to_stored(now)

    def union(pipeline: list[dict[str, Any]]) -> dict[str, Any]:
        return {"$unionWith": {"coll": collection, "pipeline": pipeline}}

    def count(key: str, match: dict[str, Any]) -> dict[str, Any]:
        return union([{"$match": match}, {"$count": "n"}, {"$set": {"k": key}}])

    branches = state_branches(rules, now)
    inactive = branches.pop(State.INACTIVE)[0]
    return [
        {"$match": inactive},
        {"$count": "n"},
        {"$set": {"k": "inactive"}},
        *(count(str(state), match) for state, matches in branches.items() for match in matches),
        union(
            [
                {
                    "$group": {
                        "_id": None,
                        "total": {"$sum": 1},
                        "uses": {"$sum": f"${f.count_use}"},
                        "successes": {"$sum": f"${f.count_success}"},
                    }
                },
                {"$set": {"k": "sums"}},
            ]
        ),
        # The earliest end of a lock or block: recorded ones, and legacy holds beyond the grace.
        *(
            union(
                [
                    {"$match": {f.active: LIVE, f.hold: hold, f.next_use: {"$gt": after}}},
                    {"$sort": {f.next_use: 1}},
                    {"$limit": 1},
                    {"$project": {"_id": 0, "k": "next_unlock", "v": f"${f.next_use}"}},
                ]
            )
            for hold, after in (
                ({"$in": [str(Hold.LOCK), str(Hold.BLOCK)]}, now_s),
                (LEGACY, now_s + rules.grace),
            )
        ),
        union(
            [
                {
                    "$match": {
                        f.active: LIVE,
                        f.last_use: {"$type": "date"},
                        "$expr": {"$lte": [f"${f.next_use}", now_s]},
                    }
                },
                {"$sort": {f.last_use: 1}},
                {"$limit": 1},
                {"$project": {"_id": 0, "k": "oldest", "v": f"${f.last_use}"}},
            ]
        ),
    ]


def and_filters(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Both filters at once, without one's keys silently replacing the other's."""
    if set(base) & set(extra):
        return {"$and": [dict(base), dict(extra)]}
    return {**base, **extra}


def available(fields: Fields, frame: TimeFrame) -> dict[str, Any]:
    """Not held at the server's now ($$NOW, so the worker's own clock never matters)."""
    return {"$expr": {"$lte": [f"${fields.next_use}", frame.now_expr()]}}


def hold_update(fields: Fields, frame: TimeFrame, hold: Hold, delta: timedelta) -> list[dict[str, Any]]:
    """Hold a session for `delta` from the server's now, recording what set the hold."""
    return [{"$set": {fields.next_use: frame.now_expr(delta), fields.hold: str(hold)}}]


def take_update(fields: Fields, frame: TimeFrame, count: int, delay: timedelta) -> list[dict[str, Any]]:
    """What `get_session` writes: used now, held `delay`, `count` more uses."""
    f = fields
    return [
        {
            "$set": {
                f.last_use: frame.now_expr(),
                f.next_use: frame.now_expr(delay),
                f.hold: str(Hold.USE),
                f.count_use: {"$add": [{"$ifNull": [f"${f.count_use}", 0]}, count]},
            }
        }
    ]


def success_update(fields: Fields, frame: TimeFrame, count: int, delay: timedelta) -> list[dict[str, Any]]:
    """What `session_success` writes: `count` more successes, held `delay`."""
    f = fields
    return [
        {
            "$set": {
                f.count_success: {"$add": [{"$ifNull": [f"${f.count_success}", 0]}, count]},
                f.next_use: frame.now_expr(delay),
                f.hold: str(Hold.USE),
            }
        }
    ]


def unlock_update(fields: Fields, *, activate: bool = False) -> dict[str, Any]:
    """Clear any hold; with `activate`, make the session active again too."""
    changes: dict[str, Any] = {fields.next_use: None}
    if activate:
        changes = {fields.active: True, **changes}
    return {"$set": changes, "$unset": {fields.hold: ""}}
