"""The indexes the statistics need: present, missing (and whether the daemon can build them), the legacy one."""

from __future__ import annotations

import json
from dataclasses import dataclass

from exporter.config import PoolDefinition
from exporter.core import Fields, MongoSessions, queries
from exporter.doctor.findings import Finding, error, ok, warn

Keys = list[tuple[str, int]]


@dataclass(frozen=True)
class Indexes:
    """The pool's indexes by name, and which of the needed ones are missing."""

    present: dict[str, Keys]
    missing: list[Keys]

    def name_of(self, keys: Keys) -> str | None:
        """The name of the index on exactly `keys`, if there is one."""
        return next((name for name, have in self.present.items() if have == keys), None)


def legacy_keys(fields: Fields) -> Keys:
    """The statistics index of version 0.1.0, `{active, hold, next_use}`, replaced in 0.2.0."""
    return [(fields.active, 1), (fields.hold, 1), (fields.next_use, 1)]


async def read_indexes(sessions: MongoSessions) -> Indexes:
    """List the pool's indexes (listIndexes) and the needed ones missing, as the daemon's check sees them."""
    info = await sessions.index_information(comment="list_indexes")
    present = {name: [(str(k), int(d)) for k, d in spec["key"]] for name, spec in info.items()}
    missing = await sessions.missing_indexes()
    return Indexes(present, missing)


def create_command(pool: PoolDefinition, keys: Keys) -> str:
    """The mongosh command creating an index on `keys` of the pool's collection."""
    spec = json.dumps(dict(keys))
    return f'db.getSiblingDB("{pool.database}").getCollection("{pool.collection}").createIndex({spec})'


def index_findings(
    sessions: MongoSessions, pool: PoolDefinition, indexes: Indexes, *, can_create: bool
) -> list[Finding]:
    """Each needed index present or missing (built by the daemon, or by hand), and the legacy index if present."""
    out: list[Finding] = []
    present = []
    statistics = [keys for keys, _why in queries.index_specs(sessions.fields)]
    for keys, why in sessions.index_specs():
        # Without a statistics index every refresh reads every document; without a console index
        # only the console's lists (and the underperformers' count) read more than they need.
        cost = "the statistics read every document" if keys in statistics else "those reads scan the pool"
        name = indexes.name_of(keys)
        if name is not None:
            present.append(f"{name} for {why}")
            continue
        spec = json.dumps(dict(keys))
        if pool.create_indexes and can_create:
            out.append(
                warn(
                    "indexes",
                    f"index {spec} is missing ({why}): the daemon builds it in the background at its first "
                    f"refresh; until then {cost}",
                    f"nothing, or build it now: {create_command(pool, keys)}",
                )
            )
        else:
            who = "create_indexes is false" if not pool.create_indexes else "the user may not create indexes"
            out.append(
                error(
                    "indexes",
                    f"index {spec} is missing ({why}) and the daemon will not build it ({who}): {cost}",
                    f"build it once as a user who may: {create_command(pool, keys)}",
                )
            )
    if present:
        out.insert(0, ok("indexes", "present: " + "; ".join(present)))
    legacy = indexes.name_of(legacy_keys(sessions.fields))
    if legacy is not None:
        out.append(
            warn(
                "indexes",
                f"legacy index {legacy} of version 0.1.0 is still there: no statistics use it since 0.2.0, "
                "and every write to the pool updates it",
                f"once no 0.1.0 daemon watches this pool: "
                f'db.getSiblingDB("{pool.database}").getCollection("{pool.collection}").dropIndex("{legacy}")',
            )
        )
    return out
