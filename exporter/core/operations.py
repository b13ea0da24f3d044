"""The seed's MongoOperations: driver calls on the pool's collection, with a timeout, error mapping and retry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError
from pymongo.read_preferences import Nearest, Primary, PrimaryPreferred, Secondary, SecondaryPreferred, _ServerMode
from pymongo.results import DeleteResult, InsertOneResult, UpdateResult
from pymongo.write_concern import WriteConcern

from exporter.core.errors import InvalidInput, OperationTimeout, guard
from exporter.core.model import Document

_T = TypeVar("_T")

# Where the statistics reads may go; writes, get_session and admin reads always go to the primary.
READ_PREFERENCES: dict[str, _ServerMode] = {
    "primary": Primary(),
    "primaryPreferred": PrimaryPreferred(),
    "secondary": Secondary(),
    "secondaryPreferred": SecondaryPreferred(),
    "nearest": Nearest(),
}


def read_preference(name: str) -> _ServerMode:
    """The driver's read preference called `name` (one of READ_PREFERENCES); InvalidInput otherwise."""
    try:
        return READ_PREFERENCES[name]
    except (KeyError, TypeError):
        raise InvalidInput(
            f"read preference must be one of {', '.join(READ_PREFERENCES)}, got {name!r}", field="read_preference"
        ) from None


def write_concern(w: int | str | None = None, j: bool | None = None, wtimeout: int | None = None) -> WriteConcern:
    """The driver's write concern of w, j and wtimeout; InvalidInput for an unacknowledged one or one it refuses."""
    if w == 0 and not isinstance(w, str):
        raise InvalidInput(
            "w=0 (unacknowledged writes) is refused: a pool must know its writes landed; use 1 or more, or 'majority'",
            field="w",
        )
    if w == "":
        raise InvalidInput("w must not be empty: use 1 or more, or 'majority'", field="w")
    try:
        return WriteConcern(w=w, j=j, wtimeout=wtimeout)
    except (TypeError, ValueError, PyMongoError) as exc:
        raise InvalidInput(f"invalid write concern: {exc}", field="w") from None


@dataclass
class Transaction:
    """What `MongoSessions.transaction()` yields: the driver session and whether it is atomic."""

    db_session: AsyncClientSession
    atomic: bool
    mode: Literal["transaction", "no-transaction"] = field(init=False)

    def __post_init__(self) -> None:
        self.mode = "transaction" if self.atomic else "no-transaction"


DbSession = AsyncClientSession | Transaction | None


def driver_session(db_session: DbSession) -> AsyncClientSession | None:
    """The driver session behind a `db_session` argument."""
    if isinstance(db_session, Transaction):
        return db_session.db_session
    return db_session


class MongoOperations:
    """Wrappers of the collection's methods: the driver's arguments (positional too), the core's timeout and errors.

    With `allow_reconnect`, an operation that hit a network timeout is tried once more, as the
    original library did (a write may then apply twice: the original's behaviour, opt-in).
    """

    _collection: AsyncCollection[Document] | None
    _client: AsyncMongoClient[Document]
    _timeout: float
    allow_reconnect: bool

    def _coll(self) -> AsyncCollection[Document]:
        """The collection in use; a clear error when none was given yet."""
        if self._collection is None:
            raise InvalidInput(
                "no collection selected: pass collection= or call switch_collection(name) first", field="collection"
            )
        return self._collection

    def _out(self, doc: Document) -> Document:
        """A document as returned to callers (the client converts its times)."""
        return doc

    async def _run(self, op: str, call: Callable[[], Awaitable[_T]], read: _ServerMode | None = None) -> _T:
        """Run one driver call with the timeout and error mapping (and one more try after a network timeout).

        `read`: the read preference of a read that need not go to the primary (its wait for a server).
        """
        attempts = 2 if self.allow_reconnect else 1
        for attempt in range(attempts):
            try:
                async with guard(op, self._timeout, self._client, read):
                    return await call()
            except OperationTimeout as exc:
                if not exc.network or attempt + 1 == attempts:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def count_documents(self, *args: Any, _op: str = "count_documents", **kwargs: Any) -> int:
        """`Collection.count_documents` (the filter defaults to every document)."""
        if not args and "filter" not in kwargs:
            kwargs["filter"] = {}
        return await self._run(_op, lambda: self._coll().count_documents(*args, **kwargs))

    async def update_one(self, *args: Any, _op: str = "update_one", **kwargs: Any) -> UpdateResult:
        """`Collection.update_one`."""
        return await self._run(_op, lambda: self._coll().update_one(*args, **kwargs))

    async def update_many(self, *args: Any, _op: str = "update_many", **kwargs: Any) -> UpdateResult:
        """`Collection.update_many`."""
        return await self._run(_op, lambda: self._coll().update_many(*args, **kwargs))

    async def find(self, *args: Any, _op: str = "find", **kwargs: Any) -> list[Document]:
        """`Collection.find` as a list of documents."""

        async def read() -> list[Document]:
            return [self._out(doc) async for doc in self._coll().find(*args, **kwargs)]

        return await self._run(_op, read)

    async def aggregate(self, pipeline: list[dict[str, Any]], _op: str = "aggregate", **kwargs: Any) -> list[Document]:
        """`Collection.aggregate` as a list of documents."""

        async def read() -> list[Document]:
            return [self._out(doc) async for doc in await self._coll().aggregate(pipeline, **kwargs)]

        return await self._run(_op, read)

    async def delete_one(self, *args: Any, _op: str = "delete_one", **kwargs: Any) -> DeleteResult:
        """`Collection.delete_one`."""
        return await self._run(_op, lambda: self._coll().delete_one(*args, **kwargs))

    async def insert_one(self, *args: Any, _op: str = "insert_one", **kwargs: Any) -> InsertOneResult:
        """`Collection.insert_one`."""
        return await self._run(_op, lambda: self._coll().insert_one(*args, **kwargs))

    async def find_one_and_update(self, *args: Any, _op: str = "find_one_and_update", **kwargs: Any) -> Document | None:
        """`Collection.find_one_and_update`."""
        doc = await self._run(_op, lambda: self._coll().find_one_and_update(*args, **kwargs))
        return self._out(doc) if doc is not None else None

    async def index_information(self, *args: Any, _op: str = "index_information", **kwargs: Any) -> dict[str, Any]:
        """`Collection.index_information`."""
        return dict(await self._run(_op, lambda: self._coll().index_information(*args, **kwargs)))

    async def create_index(self, *args: Any, _op: str = "create_index", **kwargs: Any) -> str:
        """`Collection.create_index`."""
        return await self._run(_op, lambda: self._coll().create_index(*args, **kwargs))

    async def drop_index(self, *args: Any, _op: str = "drop_index", **kwargs: Any) -> None:
        """`Collection.drop_index`."""
        await self._run(_op, lambda: self._coll().drop_index(*args, **kwargs))
