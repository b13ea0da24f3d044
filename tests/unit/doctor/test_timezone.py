"""The writers' offset estimated from documents (pure): the original library's naive local times, shifted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from exporter.doctor.timezone import (
    TOLERANCE,
    Sample,
    estimate,
    made_at,
    observations,
    offset_name,
    zone_offsets,
    zones_at,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


def written(offset: timedelta, count: int = 30, *, used: timedelta = timedelta(seconds=5),
            made: timedelta = H) -> list[Sample]:  # fmt: skip
    """Documents added `made` ago and last used `used` ago by a worker whose clock reads UTC + `offset`."""
    out = []
    for i in range(count):
        made_at_ = (NOW - made - timedelta(minutes=i)).replace(microsecond=0)
        out.append(
            Sample(
                i,
                made_at_,
                made_at_ + offset + timedelta(milliseconds=250),
                NOW - used - i * timedelta(seconds=2) + offset,
            )
        )
    return out


@pytest.mark.parametrize(
    "offset", [3 * H, -5 * H, timedelta(hours=5, minutes=30), timedelta(hours=-3, minutes=-30), 14 * H, -12 * H]
)
def test_a_legacy_offset_is_found_exactly_with_high_confidence(offset: timedelta) -> None:
    """Writers at any offset on the grid: every document contradicts UTC and supports that offset."""
    result = estimate(written(offset), NOW)
    assert not result.agrees
    assert result.contradicting == result.checked == 30
    assert result.offset == offset
    assert result.bound == "exact"
    assert result.supporting == 30
    assert result.confidence == "high"


def test_a_healthy_utc_pool_never_alarms() -> None:
    """Fresh, old, never-used and just-used documents of UTC writers all agree with UTC."""
    samples = [
        *written(timedelta(0)),
        *written(timedelta(0), used=timedelta(days=20), made=timedelta(days=300)),
        Sample("never used", NOW - 2 * H, NOW - 2 * H, None),
        Sample("just now", NOW.replace(microsecond=0), NOW, NOW),
        # The server's clock a second behind the writer's: within the tolerance.
        Sample("skewed", NOW - H, NOW - H, NOW + timedelta(seconds=1)),
    ]
    result = estimate(samples, NOW)
    assert result.agrees and result.contradicting == 0
    assert result.offset == timedelta(0)


def test_copied_documents_with_new_ids_are_not_evidence() -> None:
    """A document re-inserted with a new ObjectId keeps old times: its `_id` is not when it was made."""
    copied = [Sample(i, NOW - timedelta(minutes=5), NOW - timedelta(days=40), NOW - 3 * H) for i in range(20)]
    result = estimate(copied, NOW)
    assert result.agrees, result
    assert all(made_at(s) is None for s in copied)


def test_only_last_use_in_the_future_gives_a_lower_bound() -> None:
    """Without ObjectIds (string ids), times ahead of the server prove writers ahead of UTC, by at least that much."""
    samples = [Sample(f"s{i}", None, None, NOW + 3 * H - timedelta(seconds=3 * i)) for i in range(30)]
    result = estimate(samples, NOW)
    assert not result.agrees
    assert result.offset == 3 * H and result.bound == "at_least"
    assert result.confidence == "medium"  # a bound, not a measurement


def test_a_quiet_pool_behind_utc_cannot_be_told_from_an_idle_one_without_created() -> None:
    """last_use 5 h old with no `created` is what an idle UTC pool looks like too: no alarm (and no guess)."""
    samples = [Sample(f"s{i}", None, None, NOW - 5 * H - timedelta(seconds=i)) for i in range(30)]
    assert estimate(samples, NOW).agrees


def test_a_configured_zone_is_checked_not_replaced() -> None:
    """Moscow writers agree with Europe/Moscow; UTC writers contradict it and the estimate says UTC."""
    moscow = ZoneInfo("Europe/Moscow")
    assert estimate(written(3 * H), NOW, moscow).agrees
    wrong = estimate(written(timedelta(0)), NOW, moscow)
    assert not wrong.agrees and wrong.offset == timedelta(0) and wrong.configured == 3 * H


def test_daylight_saving_time_is_not_a_false_alarm() -> None:
    """Europe/Berlin is UTC+2 in July and UTC+1 in November: July's documents still agree in November."""
    july = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
    samples = [Sample(i, july, july + 2 * H, july + 2 * H + timedelta(minutes=i)) for i in range(10)]
    assert estimate(samples, NOW, ZoneInfo("Europe/Berlin")).agrees
    assert zone_offsets(ZoneInfo("Europe/Berlin"), NOW - timedelta(days=365), NOW) == {H, 2 * H}
    # Written at +1 in July, those documents would not be Berlin's.
    shifted = [Sample(i, july, july + H, None) for i in range(10)]
    assert not estimate(shifted, NOW, ZoneInfo("Europe/Berlin")).agrees


def test_a_minority_of_other_writers_is_reported_without_moving_the_estimate() -> None:
    """Most documents agree with UTC; five from a +3 worker contradict it and the best offset stays UTC."""
    result = estimate([*written(timedelta(0), 40), *written(3 * H, 5)], NOW)
    assert result.contradicting == 5
    assert result.offset == timedelta(0)


def test_a_fixed_gap_between_times_says_nothing() -> None:
    """next_use - last_use is the same in every frame: a document with only those times gives no observation."""
    assert observations(Sample("x"), NOW) == []
    low, high = observations(Sample("y", None, None, NOW - H), NOW)[0].window
    assert low == -H - TOLERANCE and high is None


def test_names() -> None:
    """Offsets read like UTC+3; zones are common ones whose offset is that one now."""
    assert [offset_name(o) for o in (timedelta(0), 3 * H, -5 * H, timedelta(hours=5, minutes=30))] == [
        "UTC", "UTC+3", "UTC-5", "UTC+5:30",
    ]  # fmt: skip
    assert offset_name(timedelta(hours=-3, minutes=-30)) == "UTC-3:30"
    assert zones_at(3 * H, NOW)[0] == "Europe/Moscow"
    assert zones_at(-5 * H, NOW)[0] == "America/New_York"  # EST in November
    assert zones_at(-5 * H, datetime(2026, 7, 1, tzinfo=UTC))[0] == "America/Chicago"  # CDT in July
    assert "Asia/Kathmandu" in zones_at(timedelta(hours=5, minutes=45), NOW)
    assert all(ZoneInfo(z).utcoffset(NOW.replace(tzinfo=None)) == 3 * H for z in zones_at(3 * H, NOW))
