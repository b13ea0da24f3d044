"""Pure builders of the filters, updates and pipelines the pool runs (no server needed to test them)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from bson import MinKey, ObjectId

from exporter.core.errors import InvalidInput
from exporter.core.model import HOLD_KINDS, HOLD_STATE, Document, Fields, Hold, State, check_payload, classify
from exporter.core.timeframe import TimeFrame

IndexSpec = tuple[list[tuple[str, int]], str]


class Row(StrEnum):
    """What one row of the statistics and sums pipelines answers (its `k`)."""

    HELD = "held"  # held sessions of one marker kind or one legacy bucket: n, first
    INACTIVE = "inactive"  # `active` is not true: n
    DEACTIVATED = "deactivated"  # `active` is false (the original's count_blocked): n
    SUMS = "sums"  # one pass over every document: total, uses, successes, overruns
    TOTAL = "total"  # the document count, from the metadata or the `_id` index: n
    OLDEST = "oldest"  # the oldest `last_use` of a selectable session: v
    LEGACY_ACTIVE = "legacy_active"  # the original's count_active, for a customised selection: n
    LEGACY_LOCKED = "legacy_locked"  # the original's count_locked, for a customised selection: n


class Total(StrEnum):
    """How the statistics count the pool's total."""

    SUMS = "sums"  # with the sums: one pass over every document
    METADATA = "metadata"  # the collection's document count (O(1), $collStats)
    COUNT = "count"  # a count of the `_id` index

    @classmethod
    def of(cls, *, sums: bool, fast_total: bool) -> Total:
        """The mode of `aggregate_statistics(sums=..., fast_total=...)`."""
        if sums:
            return cls.SUMS
        return cls.METADATA if fast_total else cls.COUNT


@dataclass(frozen=True)
class StateRules:
    """Everything the state of a document depends on besides the document and the time."""

    fields: Fields
    lock_time: timedelta
    grace: timedelta
    frame: TimeFrame


def index_specs(fields: Fields) -> list[IndexSpec]:
    """The indexes the pool needs: keys and why."""
    f = fields
    return [
        # Equality, Sort, Range: get_session reads the least recently used keys of active sessions
        # and stops at the first one not held. `_id` last: the console's lists by last use page in
        # a total order (ties broken by id) straight from the index.
        ([(f.active, 1), (f.last_use, 1), (f.next_use, 1), ("_id", 1)], "get_session, the oldest active last_use"),
        # Held sessions are a range of next_use; the hold marker's two parts let the server tell
        # a recorded hold from a stale one without reading a single document. `_id` last, as above.
        (
            [(f.active, 1), (f.next_use, 1), (f"{f.hold}.kind", 1), (f"{f.hold}.until", 1), ("_id", 1)],
            "the per-state counts (covered), count_active, the next unlock",
        ),
    ]


def held(rules: StateRules, now: datetime) -> dict[str, Any]:
    """Sessions that are active and held at `now` (in some state of in_use, locked, blocked)."""
    return {rules.fields.active: True, rules.fields.next_use: {"$gt": rules.frame.to_stored(now)}}


def state_expr(rules: StateRules, now: datetime) -> dict[str, Any]:
    """An aggregation expression naming the state of a held session: the twin of `classify` for the server.

    A recorded hold counts when `hold.until` equals `next_use` (nobody moved `next_use` since);
    otherwise the hold is a legacy one, classified by the time remaining.
    """
    f = rules.fields
    now_s = rules.frame.to_stored(now)
    next_use, kind, until = f"${f.next_use}", f"${f.hold}.kind", f"${f.hold}.until"
    by_remaining = {
        "$switch": {
            "branches": [
                {"case": {"$gt": [next_use, now_s + rules.lock_time]}, "then": str(State.BLOCKED)},
                {"case": {"$gt": [next_use, now_s + rules.grace]}, "then": str(State.LOCKED)},
            ],
            "default": str(State.IN_USE),
        }
    }
    recorded = [
        {"case": {"$and": [{"$eq": [until, next_use]}, {"$eq": [kind, str(hold)]}]}, "then": str(HOLD_STATE[hold])}
        for hold in Hold
    ]
    return {"$switch": {"branches": recorded, "default": by_remaining}}


# A held session without a valid hold marker is classified by the time its hold has left: bucket 0, 1, 2.
LEGACY_BUCKETS: tuple[State, ...] = (State.IN_USE, State.LOCKED, State.BLOCKED)


def held_groups(rules: StateRules, now: datetime) -> list[dict[str, Any]]:
    """Stages counting the held sessions by what their state depends on: rows `{k: "held", kind, bucket, n, first}`.

    One group per deciding marker kind, and per remaining-time bucket for the sessions whose
    marker does not decide (missing, stale, odd), so the server compares two fields per session and
    nothing more; `held_state` names the state of each row. Cheaper than naming the state on the
    server (a `$switch` per session), with the same answer as `state_expr`.
    """
    f = rules.fields
    now_s = rules.frame.to_stored(now)
    next_use, kind, until = f"${f.next_use}", f"${f.hold}.kind", f"${f.hold}.until"
    decides = {"$and": [{"$eq": [until, next_use]}, {"$in": [kind, [str(h) for h in Hold]]}]}
    bucket = {
        "$switch": {
            "branches": [
                {"case": {"$gt": [next_use, now_s + rules.lock_time]}, "then": 2},
                {"case": {"$gt": [next_use, now_s + rules.grace]}, "then": 1},
            ],
            "default": 0,
        }
    }
    key = {"kind": {"$cond": [decides, kind, None]}, "bucket": {"$cond": [decides, None, bucket]}}
    return [
        {"$match": held(rules, now)},
        {"$group": {"_id": key, "n": {"$sum": 1}, "first": {"$min": next_use}}},
        {"$project": {"_id": 0, "k": Row.HELD.value, "kind": "$_id.kind", "bucket": "$_id.bucket", "n": 1, "first": 1}},
    ]


def held_state(kind: object, bucket: object) -> State:
    """The state of a `held_groups` row: the marker's, or the legacy one by remaining time."""
    if isinstance(kind, str) and kind in HOLD_KINDS:
        return HOLD_STATE[Hold(kind)]
    return LEGACY_BUCKETS[bucket if isinstance(bucket, int) and 0 <= bucket < len(LEGACY_BUCKETS) else 0]


def state_filter(rules: StateRules, state: State, now: datetime) -> dict[str, Any]:
    """A query filter matching exactly the sessions in `state` at `now` (server time)."""
    f = rules.fields
    if state is State.INACTIVE:
        return {f.active: {"$ne": True}}
    if state is State.ACTIVE:
        return {f.active: True, f.next_use: {"$not": {"$gt": rules.frame.to_stored(now)}}}
    return {**held(rules, now), "$expr": {"$eq": [state_expr(rules, now), str(state)]}}


def _union(collection: str, pipeline: list[dict[str, Any]]) -> dict[str, Any]:
    return {"$unionWith": {"coll": collection, "pipeline": pipeline}}


def _count(collection: str, key: Row, match: Mapping[str, Any]) -> dict[str, Any]:
    return _union(collection, [{"$match": dict(match)}, {"$count": "n"}, {"$set": {"k": key.value}}])


def _total(collection: str, how: Total) -> dict[str, Any]:
    """A row `{k: "total", n}`: from the collection's metadata (O(1)) or counted on the `_id` index."""
    if how is Total.METADATA:
        # $collStats answers one row per shard; their sum is the collection's document count.
        stages: list[dict[str, Any]] = [
            {"$collStats": {"count": {}}},
            {"$group": {"_id": None, "n": {"$sum": "$count"}}},
        ]
    else:
        stages = [{"$match": {"_id": {"$gte": MinKey()}}}, {"$count": "n"}]
    return _union(collection, [*stages, {"$project": {"_id": 0, "k": Row.TOTAL.value, "n": 1}}])


def _sums(fields: Fields) -> list[dict[str, Any]]:
    """Stages answering a row `{k: "sums", total, uses, successes, overruns}`: one pass over every document."""
    f = fields
    group = {
        "_id": None,
        "total": {"$sum": 1},
        "uses": {"$sum": f"${f.count_use}"},
        "successes": {"$sum": f"${f.count_success}"},
        "overruns": {"$sum": f"${f.count_overrun}"},
    }
    return [{"$group": group}, {"$set": {"k": Row.SUMS.value}}]


def statistics_pipeline(
    rules: StateRules,
    collection: str,
    now: datetime,
    extra_counts: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    total: Total | str = Total.SUMS,
) -> list[dict[str, Any]]:
    """One aggregation answering every state count and the key times at `now` (and the sums).

    Rows, tagged by `Row`: the held sessions' groups (HELD, see `held_groups`; `first`: earliest
    `next_use`), INACTIVE, DEACTIVATED (`active` is false), OLDEST, one per `extra_counts` filter
    (keyed by Row), and the total: with `Total.SUMS` a SUMS row (`total`, `uses`, `successes`: one
    pass over every document); with METADATA or COUNT a TOTAL row from the collection's document
    count or from a count of the `_id` index, and no sums. Every count but the total costs the held and inactive
    sessions' index keys, not the whole pool.
    """
    f = rules.fields
    now_s = rules.frame.to_stored(now)
    how = Total(total)
    return [
        # Held sessions only, from the index alone: their count per state (see held_groups).
        *held_groups(rules, now),
        _count(collection, Row.INACTIVE, {f.active: {"$ne": True}}),
        _count(collection, Row.DEACTIVATED, {f.active: False}),
        _union(collection, _sums(f)) if how is Total.SUMS else _total(collection, how),
        _union(
            collection,
            [
                {
                    "$match": {
                        f.active: True,
                        f.last_use: {"$type": "date"},
                        "$expr": {"$lte": [f"${f.next_use}", now_s]},
                    }
                },
                {"$sort": {f.last_use: 1}},
                {"$limit": 1},
                {"$project": {"_id": 0, "k": Row.OLDEST.value, "v": f"${f.last_use}"}},
            ],
        ),
        *(_count(collection, Row(key), match) for key, match in (extra_counts or {}).items()),
    ]


def sums_pipeline(fields: Fields, collection: str) -> list[dict[str, Any]]:
    """The sums of `count_use`/`count_success` and the exact total, with the metadata count beside them.

    The two totals differ only if documents came or went during the pass, or if the collection's
    metadata count is wrong (after an unclean shutdown): the caller compares them.
    """
    return [*_sums(fields), _total(collection, Total.METADATA)]


def and_filters(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Both filters at once, without one's keys silently replacing the other's."""
    if set(base) & set(extra):
        return {"$and": [dict(base), dict(extra)]}
    return {**base, **extra}


def available(fields: Fields, frame: TimeFrame) -> dict[str, Any]:
    """Not held at the server's now ($$NOW, so the worker's own clock never matters; `frame` may move it back)."""
    return {"$expr": {"$lte": [f"${fields.next_use}", frame.now_expr()]}}


def _marker(fields: Fields, hold: Hold, until: Any, lease: ObjectId | None = None, taken: Any = None) -> dict[str, Any]:
    """The hold marker: what set the hold and until when, with the lease of the hand-out it belongs to.

    Without `lease` the marker keeps the document's lease (a lock keeps the hand-out it happened
    during); `$mergeObjects` makes it replace the whole marker (a `$set` of a literal object merges).
    """
    f = fields
    kept = {"lease": f"${f.hold}.lease", "taken": f"${f.hold}.taken"}
    lease_part: dict[str, Any] = {"lease": lease, "taken": taken} if lease is not None else kept
    return {"$mergeObjects": [{"kind": str(hold), "until": until, **lease_part}]}


def _hold(fields: Fields, frame: TimeFrame, hold: Hold, delta: timedelta) -> dict[str, Any]:
    """`next_use` and the hold marker recording what set it, both from one $$NOW (so they are equal)."""
    until = frame.now_expr(delta)
    return {fields.next_use: until, fields.hold: _marker(fields, hold, until)}


def hold_update(fields: Fields, frame: TimeFrame, hold: Hold, delta: timedelta) -> list[dict[str, Any]]:
    """Hold a session for `delta` from the server's now, recording what set the hold (an operator's write)."""
    return [{"$set": _hold(fields, frame, hold, delta)}]


def take_update(
    fields: Fields, frame: TimeFrame, count: int, delay: timedelta, lease: ObjectId | None = None
) -> list[dict[str, Any]]:
    """What `get_session` writes: used now, held `delay` (negative: not held), `count` more uses.

    With `lease`, the marker records the hand-out: its lease and its `last_use` (`taken`), so a later
    report can tell whether the session was handed out again since (see `report_update`).
    """
    f = fields
    now, until = frame.now_expr(), frame.now_expr(delay)
    return [
        {
            "$set": {
                f.last_use: now,
                f.next_use: until,
                f.hold: _marker(f, Hold.USE, until, lease, now),
                f.count_use: {"$add": [{"$ifNull": [f"${f.count_use}", 0]}, count]},
            }
        }
    ]


def mine(fields: Fields, lease: ObjectId) -> dict[str, Any]:
    """The session's last hand-out is the one `lease` names: its marker's lease, and nobody handed it out since.

    Every hand-out writes `last_use`; the original library's does too, without touching the marker,
    so `taken` no longer equal to `last_use` means someone else took the session.
    """
    f = fields
    return {"$and": [{"$eq": [f"${f.hold}.lease", lease]}, {"$eq": [f"${f.hold}.taken", f"${f.last_use}"]}]}


def stale(fields: Fields, lease: ObjectId) -> dict[str, Any]:
    """The session was handed out again since the hand-out `lease` names (a report about it is an overrun).

    Unknown (neither stale nor mine) when the marker has no lease: an operator's unlock removed it,
    or the hold predates leases; such a report is treated as one without a lease.
    """
    present = {"$ne": [{"$type": f"${fields.hold}.lease"}, "missing"]}
    return {"$and": [present, {"$not": [mine(fields, lease)]}]}


def report_update(
    fields: Fields,
    frame: TimeFrame,
    hold: Hold,
    delta: timedelta,
    lease: ObjectId | None,
    *,
    successes: int | None = None,
    read_frame: TimeFrame | None = None,
) -> list[dict[str, Any]]:
    """A handler's report on a session it was handed: a success (`hold` USE, `successes` counted), a lock or a block.

    The report's hold replaces the hold in force only when that is the reporter's own hand-out
    hold (its lease, nobody moved `next_use` since) or the session is not held; otherwise it may
    only lengthen it, so a lock or block set by an operator or another handler since the hand-out
    is never shortened or replaced. A success that is `stale` (the session was handed to someone
    else since) changes no hold at all; a stale lock or block may only lengthen the hold (the
    account is rate-limited or banned whoever noticed), and when another handler's hand-out hold
    ends later than the lock would, that hold is marked as the lock (same end), so that its
    holder's success cannot release the session before the lock's end. Every stale report counts one more
    `count_overrun`; successes are counted either way. Without `lease` (a report by id from another
    process, or after the hand-out was forgotten) nothing is stale and nothing is the reporter's own:
    a success never shortens a hold, a lock or block lengthens it or replaces an ended one.
    `frame` sets the hold; `read_frame` (default `frame`) says whether the hold in force has ended.
    """
    f = fields
    now, until = (read_frame or frame).now_expr(), frame.now_expr(delta)
    free: Any = {"$not": [{"$gt": [f"${f.next_use}", now]}]}
    later: Any = {"$gt": [until, f"${f.next_use}"]}
    is_stale: Any = stale(f, lease) if lease is not None else False
    if lease is not None:
        own = {"$and": [mine(f, lease), {"$eq": [f"${f.hold}.kind", str(Hold.USE)]},
                        {"$eq": [f"${f.hold}.until", f"${f.next_use}"]}]}  # fmt: skip
        take: Any = {"$or": [own, free, later]}
        if hold is Hold.USE:
            take = {"$and": [{"$not": [is_stale]}, take]}
    else:
        take = {"$or": [free, later]}
    kept: Any = f"${f.hold}"
    if hold is not Hold.USE:
        # Someone else's hand-out hold in force, ending later: it becomes the lock (its end unchanged).
        in_use = {
            "$and": [{"$eq": [f"${f.hold}.kind", str(Hold.USE)]}, {"$eq": [f"${f.hold}.until", f"${f.next_use}"]}]
        }
        kept = {"$cond": [in_use, {"$mergeObjects": [f"${f.hold}", {"kind": str(hold)}]}, kept]}
    changes: dict[str, Any] = {
        f.next_use: {"$cond": [take, until, f"${f.next_use}"]},
        f.hold: {"$cond": [take, _marker(f, hold, until), kept]},
    }
    if successes is not None:
        changes[f.count_success] = {"$add": [{"$ifNull": [f"${f.count_success}", 0]}, successes]}
    if lease is not None:
        bumped = {"$add": [{"$ifNull": [f"${f.count_overrun}", 0]}, 1]}
        changes[f.count_overrun] = {"$cond": [is_stale, bumped, f"${f.count_overrun}"]}
    return [{"$set": changes}]


def unlock_update(fields: Fields, *, activate: bool = False) -> dict[str, Any]:
    """Clear any hold; with `activate`, make the session active again too."""
    changes: dict[str, Any] = {fields.next_use: None}
    if activate:
        changes = {fields.active: True, **changes}
    return {"$set": changes, "$unset": {fields.hold: ""}}


def new_document(fields: Fields, frame: TimeFrame, data: Mapping[str, Any], now: datetime) -> Document:
    """What `add` inserts, as the original library's `add()` wrote it: usable, never used, created `now`."""
    f = fields
    return {
        f.active: True,
        f.count_use: 0,
        f.count_success: 0,
        f.created: frame.to_stored(now),
        f.last_use: None,
        f.next_use: None,
        **frame.for_storage(dict(data)),
    }


def fields_update(
    frame: TimeFrame, payload: Mapping[str, Any], unset_payload: Mapping[str, Any] | Iterable[str] | None
) -> dict[str, Any]:
    """What `session_update` writes: `$set` the payload's paths (times in the pool's frame), `$unset` the others."""
    update: dict[str, Any] = {}
    values = check_payload(payload, "payload")
    if values:
        update["$set"] = frame.for_storage(values)
    if unset_payload:
        keys = list(unset_payload.keys() if isinstance(unset_payload, Mapping) else unset_payload)
        check_payload(dict.fromkeys(keys, ""), "unset_payload")
        overlap = set(keys) & set(values)
        if overlap:
            raise InvalidInput(f"fields both set and unset: {sorted(overlap)}", field="unset_payload")
        update["$unset"] = dict.fromkeys(keys, "")
    if not update:
        raise InvalidInput("nothing to update: payload and unset_payload are empty", field="payload")
    return update


def state_of(rules: StateRules, doc: Mapping[str, Any], now: datetime) -> State:
    """State of a document as a client returned it (naive stored or aware times) at the instant `now`."""
    f, frame = rules.fields, rules.frame

    def instant(value: Any) -> Any:
        return frame.instant(value) if isinstance(value, datetime) else value

    view = dict(doc)
    view[f.next_use] = instant(doc.get(f.next_use))
    hold = doc.get(f.hold)
    if isinstance(hold, Mapping):
        view[f.hold] = {**hold, "until": instant(hold.get("until"))}
    return classify(view, instant(now), fields=f, lock_time=rules.lock_time, grace=rules.grace)
