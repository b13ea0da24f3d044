"""Document shapes the state rules and the handlers cannot use as intended: one table, for Python and the server."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson.decimal128 import Decimal128

from exporter.core.model import HOLD_KINDS, Fields

# BSON types that decode to None in Python: a field holding one counts as "not set".
_UNSET_TYPES = ["missing", "null", "undefined"]


@dataclass(frozen=True)
class OddShape:
    """One way a session document can be malformed: how to spot it in a document and on the server.

    `test` (one document in Python) and `expr` (an aggregation expression) must agree on every
    document; `severe` shapes make handlers fail, the others are only counted in a surprising state.
    """

    key: str
    field: str
    expected: str
    effect: str
    severe: bool
    test: Callable[[Mapping[str, Any]], bool]
    expr: dict[str, Any]
    message: Callable[[Any], str]


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _type_not_in(field: str, allowed: list[str]) -> dict[str, Any]:
    return {"$not": [{"$in": [{"$type": f"${field}"}, allowed]}]}


def _is_number(value: Any) -> bool:
    # MongoDB's $isNumber: int, long, double and decimal; a bool is not a number.
    return not isinstance(value, bool) and isinstance(value, int | float | Decimal128)


def _hold_ok(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get("kind") in HOLD_KINDS and isinstance(value.get("until"), datetime)


def _date_shape(key: str, name: str, effect: str) -> OddShape:
    """A time field holding something other than a date (unset is fine)."""

    def test(doc: Mapping[str, Any]) -> bool:
        return doc.get(name) is not None and not isinstance(doc.get(name), datetime)

    def message(value: Any) -> str:
        return f"{name} is a {_kind(value)}, not a date"

    expr = _type_not_in(name, ["date", *_UNSET_TYPES])
    return OddShape(key, name, "a date", effect, False, test, expr, message)


def _number_shape(key: str, name: str) -> OddShape:
    """A counter holding something other than a number (unset is fine: the updates start it at 0)."""
    effect = "get_session and session_success fail on it"

    def test(doc: Mapping[str, Any]) -> bool:
        return doc.get(name) is not None and not _is_number(doc.get(name))

    def message(value: Any) -> str:
        return f"{name} is a {_kind(value)}, not a number: {effect}"

    expr = {"$not": [{"$or": [{"$in": [{"$type": f"${name}"}, _UNSET_TYPES]}, {"$isNumber": f"${name}"}]}]}
    return OddShape(key, name, "a number", effect, True, test, expr, message)


def odd_shapes(fields: Fields) -> tuple[OddShape, ...]:
    """Every odd shape of a session document, with the pool's field names."""
    f = fields
    inactive = "the session counts as inactive"
    shapes = [
        OddShape(
            key="active_missing",
            field=f.active,
            expected="true/false",
            effect=inactive,
            severe=False,
            test=lambda doc: f.active not in doc,
            expr={"$eq": [{"$type": f"${f.active}"}, "missing"]},
            message=lambda _value: f"{f.active} is missing: {inactive}",
        ),
        OddShape(
            key="active_not_bool",
            field=f.active,
            expected="true/false",
            effect=inactive,
            severe=False,
            test=lambda doc: f.active in doc and not isinstance(doc[f.active], bool),
            expr=_type_not_in(f.active, ["bool", "missing"]),
            message=lambda value: f"{f.active} is a {_kind(value)}, not true/false: {inactive}",
        ),
    ]
    shapes.append(_date_shape("next_use_not_date", f.next_use, "the session counts as not held"))
    shapes.append(_date_shape("last_use_not_date", f.last_use, "get_session hands it out before every dated session"))
    hold = f.hold
    shapes.append(
        OddShape(
            key="hold_malformed",
            field=hold,
            expected="a {kind: use|lock|block, until: date} marker",
            effect="the hold counts by the time left",
            severe=False,
            test=lambda doc: hold in doc and not _hold_ok(doc[hold]),
            expr={
                "$and": [
                    {"$ne": [{"$type": f"${hold}"}, "missing"]},
                    {
                        "$not": [
                            {
                                "$and": [
                                    {"$eq": [{"$type": f"${hold}"}, "object"]},
                                    {"$in": [f"${hold}.kind", list(HOLD_KINDS)]},
                                    {"$eq": [{"$type": f"${hold}.until"}, "date"]},
                                ]
                            }
                        ]
                    },
                ]
            },
            message=lambda _value: f"{hold} is not a {{kind, until}} marker: the hold counts by the time left",
        )
    )
    shapes.append(_number_shape("count_use_not_number", f.count_use))
    shapes.append(_number_shape("count_success_not_number", f.count_success))
    return tuple(shapes)


def oddities(doc: Mapping[str, Any], fields: Fields) -> list[str]:
    """What about a document the state rules or the handlers cannot use as intended, one line each."""
    return [shape.message(doc.get(shape.field)) for shape in odd_shapes(fields) if shape.test(doc)]


def census_pipeline(fields: Fields) -> list[dict[str, Any]]:
    """The odd documents of a pool counted per shape, with the smallest `_id` and the BSON types seen.

    One pass: the documents matching any shape are picked first (one expression per document, which
    costs a third of evaluating every shape's counters on every document), then only those are grouped.
    The answer is one row, or none when nothing is odd: per shape key `<key>_n`, `<key>_id`, `<key>_types`.
    """
    shapes = odd_shapes(fields)
    group: dict[str, Any] = {"_id": None}
    for shape in shapes:
        group[f"{shape.key}_n"] = {"$sum": {"$cond": [shape.expr, 1, 0]}}
        group[f"{shape.key}_id"] = {"$min": {"$cond": [shape.expr, "$_id", "$$REMOVE"]}}
        group[f"{shape.key}_types"] = {"$addToSet": {"$cond": [shape.expr, {"$type": f"${shape.field}"}, "$$REMOVE"]}}
    return [{"$match": {"$expr": {"$or": [shape.expr for shape in shapes]}}}, {"$group": group}]


@dataclass(frozen=True)
class ShapeCount:
    """How many documents of a pool have one odd shape, one example `_id`, and the BSON types found."""

    shape: OddShape
    count: int
    example: Any
    types: tuple[str, ...]


def read_census(row: Mapping[str, Any] | None, fields: Fields) -> list[ShapeCount]:
    """The shapes found (count > 0) in the row of `census_pipeline` (None: no odd document)."""
    if row is None:
        return []
    found = [
        ShapeCount(
            shape,
            int(row.get(f"{shape.key}_n") or 0),
            row.get(f"{shape.key}_id"),
            tuple(sorted(str(t) for t in row.get(f"{shape.key}_types") or ())),
        )
        for shape in odd_shapes(fields)
    ]
    return [c for c in found if c.count]
