"""The UTC offset a pool's writers stored their naive local times in, estimated from the documents (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo, available_timezones

GRID = timedelta(minutes=15)
# Clock differences between the writers, the server and whoever made the ObjectIds, plus slack.
TOLERANCE = timedelta(minutes=2)
# Every UTC offset in use: UTC-12 to UTC+14.
EARLIEST, LATEST = timedelta(hours=-12), timedelta(hours=14)
# An ObjectId holds whole seconds: its time is up to a second before the insert.
_OID_RESOLUTION = timedelta(seconds=1)

# Zones operators are most likely to run handlers in, most common first within one offset.
COMMON_ZONES = (
    "UTC", "Europe/London", "Europe/Lisbon", "Africa/Lagos", "Europe/Berlin", "Europe/Paris", "Europe/Warsaw",
    "Europe/Madrid", "Europe/Rome", "Europe/Amsterdam", "Europe/Kyiv", "Europe/Helsinki", "Europe/Athens",
    "Europe/Bucharest", "Africa/Cairo", "Asia/Jerusalem", "Africa/Johannesburg", "Europe/Moscow", "Europe/Istanbul",
    "Europe/Minsk", "Asia/Riyadh", "Asia/Tehran", "Asia/Dubai", "Europe/Samara", "Asia/Tbilisi", "Asia/Baku",
    "Asia/Yerevan", "Asia/Kabul", "Asia/Yekaterinburg", "Asia/Tashkent", "Asia/Karachi", "Asia/Kolkata",
    "Asia/Kathmandu", "Asia/Almaty", "Asia/Omsk", "Asia/Dhaka", "Asia/Novosibirsk", "Asia/Krasnoyarsk",
    "Asia/Bangkok", "Asia/Jakarta", "Asia/Ho_Chi_Minh", "Asia/Shanghai", "Asia/Singapore", "Asia/Hong_Kong",
    "Asia/Irkutsk", "Australia/Perth", "Asia/Tokyo", "Asia/Seoul", "Asia/Yakutsk", "Australia/Adelaide",
    "Australia/Darwin", "Australia/Sydney", "Australia/Melbourne", "Australia/Brisbane", "Asia/Vladivostok",
    "Asia/Magadan", "Asia/Kamchatka", "Pacific/Auckland", "Atlantic/Azores", "Atlantic/Cape_Verde",
    "America/Sao_Paulo", "America/Argentina/Buenos_Aires", "America/Santiago", "America/Halifax",
    "America/St_Johns", "America/New_York", "America/Toronto", "America/Chicago", "America/Bogota", "America/Lima",
    "America/Mexico_City", "America/Denver", "America/Phoenix", "America/Los_Angeles", "America/Vancouver",
    "America/Anchorage", "Pacific/Honolulu",
)  # fmt: skip

Bound = Literal["exact", "at_least", "at_most", "range"]
Confidence = Literal["high", "medium", "low"]


@dataclass(frozen=True)
class Sample:
    """The times one document carries: when it was made (its ObjectId `_id`), `created` and `last_use` as stored.

    Stored times are read as if UTC (that is how the original library's naive local times end up);
    `id_time` is a true instant: the ObjectId's seconds come from the inserting machine's epoch clock,
    which no time zone changes.
    """

    doc_id: Any
    id_time: datetime | None = None
    created: datetime | None = None
    last_use: datetime | None = None


Window = tuple[timedelta | None, timedelta | None]


@dataclass(frozen=True)
class Observation:
    """The writer offsets one stored time allows, (lowest, highest) with None for unbounded, and since when."""

    window: Window
    # The configured frame's offsets to compare with: its offset at `at`, or any it had since `since`.
    at: datetime | None = None
    since: datetime | None = None


def observations(sample: Sample, now: datetime, tolerance: timedelta = TOLERANCE) -> list[Observation]:
    """What each stored time of the document says about its writer's offset.

    A stored time is the true time of the write plus the writer's offset, and that write happened
    before `now` (the server's clock) and, for `last_use`, after the document was made. `created`
    is written right before the insert that makes the ObjectId, so it pins the offset to a second;
    without a `created` near the ObjectId's time, the ObjectId is not taken as the making of the document.
    A fixed gap between two stored times (`next_use - last_use`) is the same in every frame and says
    nothing. Times no offset can explain (a `created` two years before its ObjectId) are left out.
    """
    out: list[Observation] = []
    made = made_at(sample, tolerance)
    if sample.created is not None:
        if made is not None:
            gap = sample.created - made
            out.append(Observation((gap - _OID_RESOLUTION - tolerance, gap + tolerance), at=made))
        elif sample.created - now <= LATEST + tolerance:
            out.append(Observation((sample.created - now - tolerance, None)))
    if sample.last_use is not None:
        ahead = sample.last_use - now  # written before now: the writer's offset is at least this
        since = sample.last_use - made if made is not None else None  # and at most this
        if ahead <= LATEST + tolerance and (since is None or since >= EARLIEST - tolerance):
            high = since + tolerance if since is not None else None
            out.append(Observation((ahead - tolerance, high), since=made))
    return out


def made_at(sample: Sample, tolerance: timedelta = TOLERANCE) -> datetime | None:
    """When the document was made: its ObjectId's time, if `created` agrees with it (a copied or imported
    document gets a new `_id` but keeps its old times)."""
    if sample.id_time is None or sample.created is None:
        return None
    gap = sample.created - sample.id_time
    return sample.id_time if EARLIEST - tolerance <= gap <= LATEST + tolerance else None


def _contains(window: Window, offset: timedelta) -> bool:
    low, high = window
    return (low is None or low <= offset) and (high is None or offset <= high)


def _zone_offset(zone: tzinfo | None, at: datetime) -> timedelta:
    if zone is None:
        return timedelta(0)
    return at.astimezone(zone).utcoffset() or timedelta(0)


def zone_offsets(zone: tzinfo | None, start: datetime, end: datetime) -> set[timedelta]:
    """Every offset `zone` had between `start` and `end` (weekly steps catch every DST period; a year at most)."""
    start = max(start, end - timedelta(days=371))
    offsets = {_zone_offset(zone, start), _zone_offset(zone, end)}
    at = start
    while zone is not None and at < end:
        offsets.add(_zone_offset(zone, at))
        at += timedelta(days=7)
    return offsets


@dataclass(frozen=True)
class Estimate:
    """What the documents say about the frame their times were written in.

    `checked`: documents carrying usable times; `contradicting`: those impossible in the configured
    frame; `offset`: the writers' offset that explains the most documents (the one closest to the
    configured offset among equals), supported by `supporting` documents; `bound` says whether the
    documents pin it or only bound it (a quiet pool's newest `last_use` is older than the last write).
    """

    configured: timedelta
    checked: int
    contradicting: int
    offset: timedelta | None
    supporting: int
    bound: Bound
    low: timedelta | None
    high: timedelta | None
    examples: tuple[Any, ...]

    @property
    def agrees(self) -> bool:
        """True when no document contradicts the configured frame."""
        return self.contradicting == 0

    @property
    def confidence(self) -> Confidence:
        """How far to trust `offset`: by the number and share of documents supporting it."""
        if self.checked == 0:
            return "low"
        share = self.supporting / self.checked
        if self.supporting >= 20 and share >= 0.9 and self.bound == "exact":
            return "high"
        if self.supporting >= 5 and share >= 0.6:
            return "medium"
        return "low"


def _grid() -> list[timedelta]:
    steps = int((LATEST - EARLIEST) / GRID)
    return [EARLIEST + i * GRID for i in range(steps + 1)]


def estimate(
    samples: Iterable[Sample], now: datetime, zone: tzinfo | None = None, tolerance: timedelta = TOLERANCE
) -> Estimate:
    """Estimate the writers' offset from `samples` and check them against the configured `zone` (None: UTC).

    A document contradicts the configured frame when one of its stored times is impossible in it:
    later than `now`, earlier than the document itself, or a `created` far from its ObjectId's time.
    """
    configured = _zone_offset(zone, now)
    year_ago = now - timedelta(days=371)
    documents: list[list[Observation]] = []
    contradicting: list[Any] = []
    for sample in samples:
        found = observations(sample, now, tolerance)
        if not found:
            continue
        documents.append(found)
        for seen in found:
            allowed = {_zone_offset(zone, seen.at)} if seen.at else zone_offsets(zone, seen.since or year_ago, now)
            if not any(_contains(seen.window, offset) for offset in allowed):
                contradicting.append(sample.doc_id)
                break
    if not documents:
        return Estimate(configured, 0, 0, None, 0, "exact", None, None, ())
    scores = {c: sum(all(_contains(o.window, c) for o in found) for found in documents) for c in _grid()}
    best = max(scores.values())
    tied = sorted(c for c, score in scores.items() if score == best)
    offset = min(tied, key=lambda c: (abs(c - configured), c))
    low, high = tied[0], tied[-1]
    bound: Bound = "exact"
    if high - low > GRID:
        if offset == low and high == LATEST:
            bound = "at_least"
        elif offset == high and low == EARLIEST:
            bound = "at_most"
        else:
            bound = "range"
    return Estimate(
        configured, len(documents), len(contradicting), offset, best, bound, low, high, tuple(contradicting[:3])
    )


def offset_name(offset: timedelta) -> str:
    """`UTC`, `UTC+3`, `UTC-5`, `UTC+5:30`."""
    minutes = int(offset.total_seconds() // 60)
    if minutes == 0:
        return "UTC"
    sign = "+" if minutes > 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")


def zones_at(offset: timedelta, at: datetime, limit: int = 3) -> list[str]:
    """IANA zones whose UTC offset is `offset` at `at`: common ones first, then any other (no Etc/ aliases)."""
    found: list[str] = []
    for name in COMMON_ZONES:
        if name not in found and name != "UTC" and _zone_offset(ZoneInfo(name), at) == offset:
            found.append(name)
        if len(found) >= limit:
            return found
    for name in sorted(available_timezones()):
        if "/" not in name or name.startswith(("Etc/", "SystemV/", "posix/", "right/")) or name in found:
            continue
        if _zone_offset(ZoneInfo(name), at) == offset:
            found.append(name)
            if len(found) >= limit:
                break
    return found


def zone_name(zone: tzinfo | None) -> str:
    """The configured frame as an operator wrote it."""
    return "UTC" if zone is None else str(getattr(zone, "key", zone))
