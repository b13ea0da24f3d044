"""Discovery: pools found by listing collections, added and dropped while the daemon runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from pymongo import AsyncMongoClient
from pymongo.read_preferences import Primary, _ServerMode

from exporter.collector.context import Context
from exporter.config import DiscoveryConfig, PoolDefinition, PoolOptions
from exporter.core import SessionPoolError, guard, read_preference
from exporter.log import get_logger
from exporter.state import PoolState

log = get_logger("exporter.collector")


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


class Discovery:
    """The job of one discovery source: the pools it added (and only those it may drop), what it skipped."""

    def __init__(self, index: int, ctx: Context) -> None:
        self.index = index
        self.source = ctx.config.discovery[index]
        self._ctx = ctx
        self.mine: set[str] = set()
        self.listed = False  # whether one listing has succeeded: until then the daemon does not know its pools
        self._skipped: dict[str, str] = {}

    async def run(
        self,
        pools: Mapping[str, PoolState],
        add: Callable[[PoolDefinition], object],
        remove: Callable[[str], Awaitable[None]],
    ) -> Found | None:
        """Apply one listing (never raises; a failure keeps the pools it has): `add` a new pool, `remove` one
        whose collection is gone. What the listing found, None when it failed."""
        ctx, index = self._ctx, self.index
        taken = {(p.config.database, p.config.collection): n for n, p in pools.items() if n not in self.mine}
        try:
            found = await discover(
                ctx.client,
                self.source,
                ctx.config.defaults,
                taken,
                ctx.config.mongodb.timeout,
                read_preference(ctx.config.mongodb.read_preference),
            )
        except SessionPoolError as exc:
            log.warning("discovery_failed", source=index, error=exc.message)
            return None
        for where, why in found.skipped.items():
            if self._skipped.get(where) != why:
                log.warning("discovery_skipped", source=index, collection=where, reason=why)
        self._skipped = found.skipped
        for name, settings in found.pools.items():
            if name in self.mine:
                continue
            if name in pools:
                other = pools[name].config
                why = f"pool name {name!r} already names {other.database}.{other.collection}"
                where = f"{settings.database}.{settings.collection}"
                if self._skipped.get(where) != why:
                    log.warning("discovery_skipped", source=index, collection=where, reason=why)
                self._skipped[where] = why
                continue
            add(settings)
            self.mine.add(name)
            log.info(
                "pool_discovered", source=index, pool=name, database=settings.database, collection=settings.collection
            )
        for name in sorted(self.mine - set(found.pools)):
            await remove(name)
            self.mine.discard(name)
            log.info("pool_vanished", source=index, pool=name)
        self.listed = True
        ctx.metrics.daemon_changed()  # added and removed pools told it themselves
        return found
