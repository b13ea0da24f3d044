"""Hypothesis strategies of session documents of any shape MongoDB can store (odd fields included)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from bson import ObjectId
from bson.decimal128 import Decimal128
from hypothesis import strategies as st

KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=6)
WHEN = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1)).map(
    lambda d: d.replace(microsecond=0)
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.binary(max_size=8),
    st.builds(ObjectId),
    WHEN,
    st.decimals(min_value=-(10**9), max_value=10**9, places=3).map(lambda d: Decimal128(Decimal(d))),
)
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3), max_leaves=6
)
MARKERS = st.fixed_dictionaries({}, optional={"kind": st.sampled_from(["use", "lock", "block", "nap"]) | VALUES,
                                              "until": WHEN | VALUES})  # fmt: skip
DOCUMENTS = st.fixed_dictionaries(
    {},
    optional={
        "active": st.booleans() | VALUES,
        "next_use": WHEN | VALUES,
        "last_use": WHEN | VALUES,
        "created": VALUES,
        "hold": MARKERS | VALUES,
        "count_use": st.integers(0, 10**6) | VALUES,
        "count_success": st.integers(0, 10**6) | VALUES,
        "session": st.dictionaries(KEYS, VALUES, max_size=3) | VALUES,
        "extra": VALUES,
    },
)
