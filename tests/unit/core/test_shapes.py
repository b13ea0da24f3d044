"""Odd document shapes: the Python test (the admin API's view) and the server's expression (the doctor's census)
agree on every document MongoDB can store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import MongoClient
from pymongo.collection import Collection

from exporter.core import Fields
from exporter.core.shapes import census_pipeline, odd_shapes, oddities, read_census
from tests.support.documents import DOCUMENTS

Doc = dict[str, Any]


def test_the_admin_view_keeps_its_wording() -> None:
    """One line per oddity, as the session view has always listed them."""
    f = Fields()
    assert oddities({}, f) == ["active is missing: the session counts as inactive"]
    assert oddities({"active": "yes", "next_use": "soon", "hold": "lock", "count_use": "1"}, f) == [
        "active is a str, not true/false: the session counts as inactive",
        "next_use is a str, not a date",
        "hold is not a {kind, until} marker: the hold counts by the time left",
        "count_use is a str, not a number: get_session and session_success fail on it",
    ]
    when = datetime(2026, 1, 1)
    fine: Doc = {"active": True, "next_use": None, "last_use": when, "count_use": Int64(3),
                 "count_success": Decimal128(Decimal("2")), "hold": {"kind": "use", "until": when}}  # fmt: skip
    assert oddities(fine, f) == []
    assert oddities({"enabled": 1}, Fields(active="enabled")) == [
        "enabled is a int, not true/false: the session counts as inactive"
    ]


def test_every_shape_names_its_field_and_severity() -> None:
    """Renamed fields are used in the tests, the expressions and the messages; only bad counters are severe."""
    shapes = odd_shapes(Fields(active="enabled", count_use="uses"))
    assert [s.key for s in shapes] == [
        "active_missing", "active_not_bool", "next_use_not_date", "last_use_not_date", "hold_malformed",
        "count_use_not_number", "count_success_not_number",
    ]  # fmt: skip
    assert {s.field for s in shapes} >= {"enabled", "uses"}
    assert [s.key for s in shapes if s.severe] == ["count_use_not_number", "count_success_not_number"]
    assert "$uses" in str(shapes[5].expr) and "$enabled" in str(shapes[0].expr)


@pytest.fixture(scope="module")
def collection(mongo_uri: str) -> Iterator[Collection[Doc]]:
    """A scratch collection for the property test, dropped at the end."""
    client: MongoClient[Doc] = MongoClient(mongo_uri)
    db = client[f"spe_shapes_{uuid.uuid4().hex[:8]}"]
    yield db["pool"]
    client.drop_database(db.name)
    client.close()


def _agree(collection: Collection[Doc], docs: list[Doc]) -> None:
    """Per shape: the same count and the same smallest _id, computed by the server and by Python."""
    collection.delete_many({})
    collection.insert_many([dict(d) for d in docs])
    stored = list(collection.find())
    fields = Fields()
    rows = list(collection.aggregate(census_pipeline(fields)))
    found = {c.shape.key: c for c in read_census(rows[0] if rows else None, fields)}
    for shape in odd_shapes(fields):
        matching = [d["_id"] for d in stored if shape.test(d)]
        census = found.get(shape.key)
        assert (census.count if census else 0) == len(matching), (shape.key, stored)
        if matching:
            assert census is not None and census.example == min(matching) and census.types, (shape.key, stored)


WHEN = datetime(2026, 11, 30, 12, 0)
TRICKY: list[Doc] = [
    {"active": True, "count_use": Decimal128(Decimal("1.5")), "count_success": Int64(2)},
    {"active": True, "count_use": float("nan"), "count_success": float("inf")},
    {"active": True, "count_use": True, "count_success": "3"},
    {"active": True, "count_use": [1], "count_success": {"n": 1}},
    {"active": [True], "next_use": [WHEN], "last_use": {"at": WHEN}},
    {"active": None, "next_use": None, "last_use": None, "hold": None},
    {"active": False, "hold": {}},
    {"active": True, "hold": [{"kind": "use", "until": WHEN}]},
    {"active": True, "hold": {"kind": ["use"], "until": WHEN}},
    {"active": True, "hold": {"kind": "use", "until": "2026-11-30"}},
    {"active": True, "hold": {"kind": "use", "until": WHEN, "extra": 1}, "next_use": WHEN},
    {"active": True, "hold": "lock"},
    {"active": 1, "last_use": 0},
]


def test_the_census_agrees_on_tricky_documents(collection: Collection[Doc]) -> None:
    """Decimal and NaN counters are numbers, arrays are not dates or booleans, null is unset (not odd)."""
    _agree(collection, TRICKY)


@settings(max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(docs=st.lists(DOCUMENTS, min_size=1, max_size=12))
def test_the_census_counts_what_the_python_test_finds(collection: Collection[Doc], docs: list[Doc]) -> None:
    """Any generated documents: the server's census and the Python test agree."""
    _agree(collection, docs)
