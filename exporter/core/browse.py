"""Pure builders of the console's session lists: orders, prefix search, held-state counts and underperformers."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, Literal

from exporter.core.model import Fields, State
from exporter.core.queries import IndexSpec, StateRules, held, index_specs, state_expr, state_filter

Order = Literal["hold_desc", "hold_asc", "last_use_asc", "last_use_desc"]
ORDERS: tuple[Order, ...] = ("hold_desc", "hold_asc", "last_use_asc", "last_use_desc")
HOLD_KINDS = {State.IN_USE: "use", State.LOCKED: "lock", State.BLOCKED: "block"}
# Past the last character any string can hold: `q` and this bound every string starting with `q`.
_PAST_PREFIX = "\U0010ffff"


def console_index_specs(fields: Fields, search: Sequence[str]) -> list[IndexSpec]:
    """The indexes the console's lists need besides the pool's own: one per search field, the underperformers'."""
    f = fields
    return [
        *(([(f"{f.session}.{name}", 1)], f"the console's search by {name}") for name in search),
        # A held state's recorded holds in hold order: the first page reads about a page of keys.
        (
            [(f.active, 1), (f"{f.hold}.kind", 1), (f.next_use, 1), (f"{f.hold}.until", 1), ("_id", 1)],
            "the console's held lists in hold order",
        ),
        # Covered: the ratio of every often-used active session is read from the keys, never a document.
        (
            [(f.active, 1), (f.count_use, 1), (f.count_success, 1), ("_id", 1)],
            "the underperforming sessions (count and list, covered)",
        ),
    ]


def sort_of(fields: Fields, order: Order) -> list[tuple[str, int]]:
    """The sort of a list: newest or oldest hold end, least or most recently used.

    A total order: ties are broken by the remaining keys of the index that serves the list, and last
    by `_id`, so paging never repeats or skips a session (a sort on one key alone left the order of
    equal keys, such as never-used sessions, to the plan). Every key in one direction: the index is
    read forwards or backwards.
    """
    f = fields
    keys = {
        "hold_desc": [f.next_use, f"{f.hold}.kind", f"{f.hold}.until"],
        "hold_asc": [f.next_use, f"{f.hold}.kind", f"{f.hold}.until"],
        "last_use_asc": [f.last_use, f.next_use],
        "last_use_desc": [f.last_use, f.next_use],
    }[order]
    direction = -1 if order.endswith("_desc") else 1
    return [(key, direction) for key in [*keys, "_id"]]


def search_filter(fields: Fields, search: Sequence[str], q: str, exact: Collection[str] = ()) -> dict[str, Any]:
    """Sessions whose configured search fields start with `q` (a string range per field: tight index bounds),
    or, for the fields in `exact`, equal it."""
    if not search:
        raise ValueError("no search fields")
    bounds = {"$gte": q, "$lt": q + _PAST_PREFIX}
    branches = [{f"{fields.session}.{name}": q if name in exact else dict(bounds)} for name in search]
    return branches[0] if len(branches) == 1 else {"$or": branches}


def held_count_pipeline(rules: StateRules, state: State, now: datetime) -> list[dict[str, Any]]:
    """Count the sessions in a held state from the hold index alone (the statistics' covered projection).

    Grouped, not matched: a `$match` on the projected fields would be moved ahead of the projection
    by the optimizer, and then every held document would be read.
    """
    f = rules.fields
    return [
        {"$match": held(rules, now)},
        {"$project": {"_id": 0, f.next_use: 1, f"{f.hold}.kind": 1, f"{f.hold}.until": 1}},
        {"$group": {"_id": state_expr(rules, now), "n": {"$sum": 1}}},
        {"$match": {"_id": str(state)}},
    ]


def list_filter(rules: StateRules, state: State, now: datetime) -> dict[str, Any]:
    """A state's exact filter; for a held state also a condition that lets the server read a page in hold order.

    A session is in a held state by its recorded marker (`hold.kind`), or, with no valid marker, by
    the time left, a range of `next_use` (`in_use` up to `grace`, `locked` up to `lock_time`,
    `blocked` beyond). Each branch is a sorted range of an index, merged in `next_use` order, so the
    documents read are about the page, not every hold ahead of it.
    """
    exact = state_filter(rules, state, now)
    if state not in HOLD_KINDS:
        return exact
    f = rules.fields
    edge = rules.frame.to_stored(now) + (rules.grace if state is State.IN_USE else rules.lock_time)
    by_time = {f.next_use: {"$gt": edge}} if state is State.BLOCKED else {f.next_use: {"$lte": edge}}
    return {"$and": [exact, {"$or": [{f"{f.hold}.kind": HOLD_KINDS[state]}, by_time]}]}


def hold_index(fields: Fields) -> list[tuple[str, int]]:
    """The keys of the hold index, the one a count of held sessions should read (a hint for the planner)."""
    return index_specs(fields)[1][0]


def underperforming_match(fields: Fields, min_uses: int) -> dict[str, Any]:
    """Active sessions used at least `min_uses` times (a range on the underperformers' index)."""
    return {fields.active: True, fields.count_use: {"$gte": min_uses}}


def _shortfall(fields: Fields, ratio: float) -> dict[str, Any]:
    """count_success - ratio * count_use: negative when the success ratio is below `ratio` (no division).

    A computed field, so the optimizer cannot move the test ahead of the covered projection.
    """
    return {"$subtract": [f"${fields.count_success}", {"$multiply": [f"${fields.count_use}", ratio]}]}


def underperforming_threshold(uses: int, successes: int, below: float) -> float | None:
    """The success ratio under which a session underperforms: `below` (0.2) under the pool's; None without uses."""
    if uses <= 0:
        return None
    return successes / uses * (1 - below)


def underperforming_count_pipeline(fields: Fields, min_uses: int, ratio: float) -> list[dict[str, Any]]:
    """Count the underperformers from index keys only."""
    f = fields
    return [
        {"$match": underperforming_match(f, min_uses)},
        {"$project": {"_id": 0, "short": _shortfall(f, ratio)}},
        {"$match": {"short": {"$lt": 0}}},
        {"$count": "n"},
    ]


def underperforming_page_pipeline(
    fields: Fields, min_uses: int, ratio: float, skip: int, limit: int
) -> list[dict[str, Any]]:
    """The ids of one page of underperformers, most used first, from index keys only (documents fetched after).

    The scan stops once the page is full.
    """
    f = fields
    return [
        {"$match": underperforming_match(f, min_uses)},
        # The index's own order, read backwards: a total order (ties by successes, then id), no sort stage.
        {"$sort": {f.count_use: -1, f.count_success: -1, "_id": -1}},
        {"$project": {"_id": 1, "short": _shortfall(f, ratio)}},
        {"$match": {"short": {"$lt": 0}}},
        {"$skip": skip},
        {"$limit": limit},
        {"$project": {"_id": 1}},
    ]
