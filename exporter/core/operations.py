"""The seed's MongoOperations: driver calls on the pool's collection, with a timeout and error mapping."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.results import DeleteResult, InsertOneResult, UpdateResult

from exporter.core.errors import guard
from exporter.core.model import Document


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
    """Thin wrappers of the collection's methods: same arguments, the core's timeout and errors."""

    _collection: AsyncCollection[Document]
    _timeout: float

    def _guard(self, operation: str) -> AbstractAsyncContextManager[None]:
        return guard(operation, self._timeout)

    def _convert(self, doc: Document) -> Document:
        """A document as returned to callers (subclasses convert stored times)."""
        return doc

    async def count_documents(self, _op: str = "count_documents", **kwargs: Any) -> int:
        """`Collection.count_documents` with the timeout and error mapping."""
        kwargs.setdefault("filter", {})
        async with self._guard(_op):
            return await self._collection.count_documents(**kwargs)

    async def update_one(self, _op: str = "update_one", **kwargs: Any) -> UpdateResult:
        """`Collection.update_one` with the timeout and error mapping."""
        async with self._guard(_op):
            return await self._collection.update_one(**kwargs)

    async def update_many(self, _op: str = "update_many", **kwargs: Any) -> UpdateResult:
        """`Collection.update_many` with the timeout and error mapping."""
        async with self._guard(_op):
            return await self._collection.update_many(**kwargs)

    async def find(self, _op: str = "find", **kwargs: Any) -> list[Document]:
        """`Collection.find` as a list, with the timeout and error mapping."""
        async with self._guard(_op):
            return [self._convert(doc) async for doc in self._collection.find(**kwargs)]

    async def delete_one(self, _op: str = "delete_one", **kwargs: Any) -> DeleteResult:
        """`Collection.delete_one` with the timeout and error mapping."""
        async with self._guard(_op):
            return await self._collection.delete_one(**kwargs)

    async def insert_one(self, _op: str = "insert_one", **kwargs: Any) -> InsertOneResult:
        """`Collection.insert_one` with the timeout and error mapping."""
        async with self._guard(_op):
            return await self._collection.insert_one(**kwargs)

    async def find_one_and_update(self, _op: str = "find_one_and_update", **kwargs: Any) -> Document | None:
        """`Collection.find_one_and_update` with the timeout and error mapping."""
        async with self._guard(_op):
            return await self._collection.find_one_and_update(**kwargs)

    async def index_information(self, _op: str = "index_information", **kwargs: Any) -> dict[str, Any]:
        """`Collection.index_information` with the timeout and error mapping."""
        async with self._guard(_op):
            return dict(await self._collection.index_information(**kwargs))

    async def create_index(self, _op: str = "create_index", **kwargs: Any) -> str:
        """`Collection.create_index` with the timeout and error mapping."""
        async with self._guard(_op):
            return await self._collection.create_index(**kwargs)

    async def drop_index(self, _op: str = "drop_index", **kwargs: Any) -> None:
        """`Collection.drop_index` with the timeout and error mapping."""
        async with self._guard(_op):
            await self._collection.drop_index(**kwargs)
