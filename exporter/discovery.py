"""Pools found by listing collections: which collections a discovery source matches, as pool settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from pymongo import AsyncMongoClient
from pymongo.read_preferences import Primary, _ServerMode

from exporter.config import DiscoveryConfig, PoolDefinition, PoolOptions
from exporter.core import guard


@dataclass
class Found:
    """What one listing of a source found: the pools to watch, and the collections it had to skip."""

    pools: dict[str, PoolDefinition] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


async def collections(
    client: AsyncMongoClient[dict[str, Any]],
    database: str,
    timeout: float,  # noqa: ASYNC109 - the core's guard applies it
    read: _ServerMode | None = None,
) -> list[str]:
    """The collections (not views) of a database, by name (listed on a member `read` selects; default the primary)."""
    mode = read or Primary()
    async with guard("list_collections", timeout, client, mode):
        db = client.get_database(database, read_preference=mode)
        names = await db.list_collection_names(filter={"type": "collection"})
    return sorted(names)


async def discover(
    client: AsyncMongoClient[dict[str, Any]],
    source: DiscoveryConfig,
    defaults: PoolOptions,
    taken: dict[tuple[str, str], str],
    timeout: float,  # noqa: ASYNC109 - the core's guard applies it
    read: _ServerMode | None = None,
) -> Found:
    """The pools `source` finds now. `taken` maps (database, collection) to the pool already watching it."""
    found = Found()
    for database in source.databases:
        for collection in await collections(client, database, timeout, read):
            if not source.matches(collection):
                continue
            where = f"{database}.{collection}"
            if (database, collection) in taken:
                continue
            try:
                pool = source.pool(defaults, database, collection)
            except ValidationError as exc:
                problem = exc.errors(include_url=False, include_input=False)[0]
                location = ".".join(str(p) for p in problem["loc"]) or "pool"
                found.skipped[where] = f"{location}: {problem['msg']}"
                continue
            if pool.name in found.pools:
                other = found.pools[pool.name]
                found.skipped[where] = f"pool name {pool.name!r} already names {other.database}.{other.collection}"
                continue
            found.pools[pool.name] = pool
    return found
