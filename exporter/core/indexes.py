"""The pool's collection and indexes: does the collection exist, which indexes are missing, create the missing ones."""

from __future__ import annotations

import difflib
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from exporter.core.errors import NAMESPACE_NOT_FOUND, CollectionMissing, OperationFailed, SessionPoolError
from exporter.core.model import Document
from exporter.core.operations import Runner
from exporter.core.options import ClientOptions
from exporter.core.queries import IndexSpec

# The server's answers when the same keys already exist under another name or options.
INDEX_CONFLICTS = (85, 86)


class IndexKeeper:
    """Checks the pool's collection and its indexes where the statistics are read, and builds what is missing."""

    def __init__(self, runner: Runner, options: ClientOptions) -> None:
        self._runner = runner
        self._options = options
        # connect() found no collection: the first add() (which creates it) builds the indexes.
        self.pending = False

    async def _list_collections(self, **by_name: Any) -> list[dict[str, Any]]:
        coll, read = self._runner.coll(), self._options.statistics_read
        answer = await self._runner.run(
            "collection_exists",
            lambda: coll.database.command(
                "listCollections",
                nameOnly=True,
                # Lists what the user may read even without the listCollections right.
                authorizedCollections=True,
                read_preference=read,
                **by_name,
            ),
            read,
        )
        return list(answer["cursor"]["firstBatch"])

    async def collection_exists(self) -> bool:
        """Whether the pool's collection exists (one listCollections by name, where the statistics are read)."""
        return bool(await self._list_collections(filter={"name": self._runner.coll().name}))

    async def check_collection(self) -> None:
        """Raise CollectionMissing, with the database's collections whose names are close, if the pool's is missing."""
        if await self.collection_exists():
            return
        coll = self._runner.coll()
        names = [str(c["name"]) for c in await self._list_collections() if not str(c["name"]).startswith("system.")]
        close = tuple(difflib.get_close_matches(coll.name, names, n=3, cutoff=0.6))
        raise CollectionMissing(coll.database.name, coll.name, close=close, operation="collection_exists")

    async def missing(self, specs: list[IndexSpec]) -> list[list[tuple[str, int]]]:
        """Keys of `specs` without an index (read where the statistics are read); CollectionMissing if no collection."""
        coll, read = self._runner.coll(), self._options.statistics_read
        try:
            # listIndexes as a command: the driver's list_indexes() always goes to the primary.
            answer = await self._runner.run(
                "index_information",
                lambda: coll.database.command("listIndexes", coll.name, read_preference=read),
                read,
            )
        except OperationFailed as exc:
            if exc.code != NAMESPACE_NOT_FOUND:
                raise
            raise CollectionMissing(coll.database.name, coll.name, operation="index_information") from None
        found = answer["cursor"]["firstBatch"]  # a collection has at most 64 indexes: one batch
        present = [[(str(k), int(d)) for k, d in spec["key"].items()] for spec in found]
        return [keys for keys, _why in specs if keys not in present]

    async def _create(self, coll: AsyncCollection[Document], keys: list[tuple[str, int]]) -> str:
        return await self._runner.run("create_index", lambda: coll.create_index(keys))

    async def ensure(self, specs: list[IndexSpec]) -> list[str]:
        """Create the indexes of `specs` if missing; never drop or alter anyone else's (CollectionMissing first)."""
        await self.check_collection()
        coll = self._runner.coll()
        names: list[str] = []
        for keys, _why in specs:
            try:
                names.append(await self._create(coll, keys))
            except SessionPoolError as exc:
                # The same keys already exist under another name or options: keep theirs.
                if getattr(exc, "code", None) not in INDEX_CONFLICTS:
                    raise
        return names
