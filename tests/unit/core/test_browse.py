"""The console's pure query builders: search bounds, orders, underperformer thresholds, index keys."""

from __future__ import annotations

import pytest

from exporter.core import Fields
from exporter.core.browse import (
    console_index_specs,
    search_filter,
    sort_of,
    underperforming_count_pipeline,
    underperforming_threshold,
)
from exporter.core.queries import index_specs


def test_search_is_a_string_range_per_field() -> None:
    """A prefix becomes [q, q + the last code point): every string starting with q, nothing else, and a
    bounded range on each field's index (no regular expression, no operator from the caller's text)."""
    f = Fields(session="creds")
    one = search_filter(f, ["phone"], "+7900")
    assert one == {"creds.phone": {"$gte": "+7900", "$lt": "+7900\U0010ffff"}}
    both = search_filter(f, ["phone", "login"], "$ne")
    assert both == {"$or": [{"creds.phone": {"$gte": "$ne", "$lt": "$ne\U0010ffff"}},
                            {"creds.login": {"$gte": "$ne", "$lt": "$ne\U0010ffff"}}]}  # fmt: skip
    with pytest.raises(ValueError, match="no search fields"):
        search_filter(f, [], "x")


def test_orders_are_total_and_follow_an_index() -> None:
    """Each order ends with `_id` (a total order), in one direction, and is the key pattern of a pool index after
    its `active` equality, so the index provides it; renamed fields are followed."""
    f = Fields(next_use="nu", last_use="lu", hold="h")
    by_last_use, by_hold = (keys for keys, _why in index_specs(f))
    assert sort_of(f, "hold_desc") == [("nu", -1), ("h.kind", -1), ("h.until", -1), ("_id", -1)]
    assert sort_of(f, "hold_asc") == by_hold[1:]
    assert sort_of(f, "last_use_asc") == [("lu", 1), ("nu", 1), ("_id", 1)] == by_last_use[1:]
    assert sort_of(f, "last_use_desc") == [(key, -1) for key, _ in by_last_use[1:]]


def test_threshold_is_below_the_pools_ratio() -> None:
    """20 % under a pool succeeding 80 % of the time is 64 %; a pool never used has no threshold."""
    assert underperforming_threshold(1000, 800, 0.2) == pytest.approx(0.64)
    assert underperforming_threshold(0, 0, 0.2) is None


def test_underperformers_are_counted_from_the_keys_of_their_index() -> None:
    """The count's first stages read only fields of the underperformers' index (a covered projection)."""
    f = Fields()
    (keys, _why), *_ = [s for s in console_index_specs(f, ["phone"]) if ("count_use", 1) in s[0]]
    pipeline = underperforming_count_pipeline(f, 100, 0.5)
    projected = pipeline[1]["$project"]
    assert projected["_id"] == 0 and set(projected) == {"_id", "short"}
    assert set(pipeline[0]["$match"]) <= {k for k, _ in keys}
    assert "$count_use" in str(projected["short"]) and "$count_success" in str(projected["short"])
    assert console_index_specs(f, ["phone"])[0][0] == [("session.phone", 1)]
