"""A pool seeded for the console's tests: every state, phones and logins, and a few underperformers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo.collection import Collection

from exporter.core import State

SESSION_FIELDS = {"search": ["phone", "login"], "show": ["country"]}
UNDERPERFORMING = {"min_uses": 100, "below": 0.2, "interval": 1}


def phone(i: int) -> str:
    """The phone number of seeded session `i`."""
    return f"+7900{i:07d}"


def login(i: int) -> str:
    """The login of seeded session `i`."""
    return f"user-{i:03d}"


def password(i: int) -> str:
    """The secret of seeded session `i` (must never reach a page, a log or a screenshot)."""
    return f"pw-{i:03d}-do-not-show-7c1e"


@dataclass
class Seeded:
    """What was written: ids per state, the underperformers, and the pool's own success ratio."""

    ids: dict[State, list[ObjectId]] = field(default_factory=dict)
    underperformers: list[ObjectId] = field(default_factory=list)
    numbers: dict[ObjectId, int] = field(default_factory=dict)
    uses: int = 0
    successes: int = 0
    overruns: int = 0


def seed(collection: Collection[dict[str, Any]], now: datetime | None = None) -> Seeded:
    """60 sessions: 8 locked, 6 blocked, 4 inactive, 2 in use and 40 active, 5 of those underperforming.

    Holds carry their marker as the core writes it (`hold: {kind, until}` equal to `next_use`).
    """
    now = now or datetime.now(UTC)
    plan = [State.LOCKED] * 8 + [State.BLOCKED] * 6 + [State.INACTIVE] * 4 + [State.IN_USE] * 2 + [State.ACTIVE] * 40
    seeded = Seeded(ids={s: [] for s in State})
    docs = []
    for i, state in enumerate(plan):
        oid = ObjectId()
        # Most sessions work well (90 %); five active ones succeed 20 % of the time with 150 uses.
        bad = state is State.ACTIVE and i >= len(plan) - 5
        uses, successes = (150, 30) if bad else ((200, 180) if i % 2 else (20, 18))
        doc: dict[str, Any] = {
            "_id": oid,
            "active": state is not State.INACTIVE,
            "count_use": uses,
            "count_success": successes,
            "created": now - timedelta(days=3),
            "last_use": now - timedelta(minutes=len(plan) - i),
            "next_use": None,
            "session": {"phone": phone(i), "login": login(i), "password": password(i), "country": "NL"},
        }
        hold = {State.LOCKED: ("lock", timedelta(minutes=20 + i)), State.BLOCKED: ("block", timedelta(hours=6 + i)),
                State.IN_USE: ("use", timedelta(minutes=30))}.get(state)  # fmt: skip
        if hold is not None:
            until = (now + hold[1]).replace(microsecond=0)
            doc["next_use"] = until
            doc["hold"] = {"kind": hold[0], "until": until}
        if state is State.IN_USE:
            # Their previous handlers reported after they were handed on (lease overruns).
            doc["count_overrun"] = 2
            seeded.overruns += 2
        docs.append(doc)
        seeded.ids[state].append(oid)
        seeded.numbers[oid] = i
        seeded.uses += uses
        seeded.successes += successes
        if bad:
            seeded.underperformers.append(oid)
    collection.insert_many(docs)
    return seeded


def pool_entry(name: str, database: str) -> dict[str, Any]:
    """The pool's config entry: the collection is named after the pool, searchable by phone and login."""
    return {
        "name": name,
        "database": database,
        "collection": name,
        "session_fields": SESSION_FIELDS,
        "underperforming": UNDERPERFORMING,
    }
