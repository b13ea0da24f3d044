"""ClientOptions: every option of a client checked in one place, at construction and on every change."""

from __future__ import annotations

from datetime import timedelta

import pytest

from exporter import InvalidInput
from exporter.core.model import Fields
from exporter.core.options import DEFAULT, ClientOptions, field_names


def test_construction_and_setters_share_the_checks() -> None:
    with pytest.raises(InvalidInput, match="lock_time"):
        ClientOptions(lock_time=-5)
    options = ClientOptions()
    with pytest.raises(InvalidInput, match="lock_time"):
        options.lock_time = -5
    with pytest.raises(InvalidInput, match="default_sort"):
        ClientOptions(default_sort=[("last_use", 2)])
    with pytest.raises(InvalidInput, match="default_sort"):
        options.default_sort = [("last_use", 2)]
    with pytest.raises(InvalidInput, match="max_allowed_reconnect"):
        options.max_allowed_reconnect = -1
    assert options.lock_time == timedelta(minutes=10)


def test_fixed_options_are_checked_once() -> None:
    with pytest.raises(InvalidInput, match="w=0"):
        ClientOptions(w=0)
    with pytest.raises(InvalidInput, match="read preference"):
        ClientOptions(statistics_read_preference="closest")
    with pytest.raises(InvalidInput, match="transactions"):
        ClientOptions(transactions="maybe")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="console_indexes"):
        ClientOptions(console_indexes="phone")
    options = ClientOptions(timeout=2, statistics_read_preference="secondaryPreferred")
    assert options.timeout == 2.0 and options.statistics_read.mongos_mode == "secondaryPreferred"


def test_defaults_are_left_to_the_field_names() -> None:
    options = ClientOptions(next_use_delay=-3)
    assert options.projection is DEFAULT and options.default_filter is None and options.default_sort is None
    assert options.next_use_delay == 1.0  # as in the original: a negative default delay means 1 second
    options.projection = None
    assert options.projection is None


def test_field_names_renames_and_validates() -> None:
    fields = field_names({"active": "enabled"}, next_use="free_at", hold=None)
    assert fields == Fields(active="enabled", next_use="free_at")
    options = ClientOptions(fields=fields)
    options.rename("last_use", "used_at")
    assert options.fields.last_use == "used_at"
    with pytest.raises(InvalidInput, match="distinct"):
        options.rename("last_use", "enabled")
    assert options.fields.last_use == "used_at"
