"""MongoOperations, as in the original mongo_client library: typed driver calls with the core's timeout and errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.collation import Collation
from pymongo.read_preferences import _ServerMode
from pymongo.results import DeleteResult, InsertOneResult, UpdateResult

from exporter.core.errors import InvalidInput, OperationTimeout, guard
from exporter.core.model import Document
from exporter.core.options import ClientOptions

_T = TypeVar("_T")

# PyMongo's own shapes of index keys, hints, sorts and pipelines (its aliases are private).
IndexList = Sequence[str | tuple[str, int | str | Mapping[str, Any]]] | Mapping[str, Any]
IndexKeys = str | IndexList
Pipeline = Sequence[Mapping[str, Any]]
CollationIn = Mapping[str, Any] | Collation


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


def label(comment: Any, default: str) -> str:
    """The name an operation goes by in errors and causes: its `comment=` when that is a text, else `default`."""
    return comment if isinstance(comment, str) and comment else default


class Runner:
    """Runs one driver call on the pool's collection: the timeout, the error mapping, a retry after a network timeout.

    With `allow_reconnect`, an operation that hit a network timeout is tried once more, as the
    original library did (a write may then apply twice: the original's behaviour, opt-in).
    """

    def __init__(self, client: AsyncMongoClient[Document], options: ClientOptions) -> None:
        self.client = client
        self._options = options
        self.collection: AsyncCollection[Document] | None = None

    def coll(self) -> AsyncCollection[Document]:
        """The collection in use; a clear error when none was given yet."""
        if self.collection is None:
            raise InvalidInput(
                "no collection selected: pass collection= or call switch_collection(name) first", field="collection"
            )
        return self.collection

    def out(self, doc: Document) -> Document:
        """A document as callers get it: naive stored times, or true aware instants with `tz_aware`."""
        options = self._options
        converted: Document = options.frame.for_caller(doc, options.tz_aware, options.tzinfo)
        return converted

    async def run(self, op: str, call: Callable[[], Awaitable[_T]], read: _ServerMode | None = None) -> _T:
        """Run one driver call with the timeout and error mapping (and one more try after a network timeout).

        `read`: the read preference of a read that need not go to the primary (its wait for a server).
        """
        attempts = 2 if self._options.allow_reconnect else 1
        for attempt in range(attempts):
            try:
                async with guard(op, self._options.timeout, self.client, read):
                    return await call()
            except OperationTimeout as exc:
                if not exc.network or attempt + 1 == attempts:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover


class MongoOperations:
    """The collection's methods with PyMongo's parameters, the core's timeout and errors, times as callers read them.

    `comment=` (PyMongo's, sent to the server) also names the operation in the core's errors; without
    it an operation goes by its method's name.
    """

    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def count_documents(
        self,
        filter: Mapping[str, Any] | None = None,
        session: AsyncClientSession | None = None,
        comment: Any | None = None,
        **kwargs: Any,
    ) -> int:
        """`Collection.count_documents` (the filter defaults to every document; `kwargs`: skip, limit, hint...)."""
        coll = self._runner.coll()
        return await self._runner.run(
            label(comment, "count_documents"),
            lambda: coll.count_documents(filter or {}, session, comment, **kwargs),
        )

    async def update_one(
        self,
        filter: Mapping[str, Any],
        update: Mapping[str, Any] | Pipeline,
        upsert: bool = False,
        bypass_document_validation: bool | None = None,
        collation: CollationIn | None = None,
        array_filters: Sequence[Mapping[str, Any]] | None = None,
        hint: IndexKeys | None = None,
        session: AsyncClientSession | None = None,
        let: Mapping[str, Any] | None = None,
        sort: Mapping[str, Any] | None = None,
        comment: Any | None = None,
    ) -> UpdateResult:
        """`Collection.update_one`."""
        coll = self._runner.coll()
        return await self._runner.run(
            label(comment, "update_one"),
            lambda: coll.update_one(
                filter,
                update,
                upsert=upsert,
                bypass_document_validation=bypass_document_validation,
                collation=collation,
                array_filters=array_filters,
                hint=hint,
                session=session,
                let=let,
                sort=sort,
                comment=comment,
            ),
        )

    async def update_many(
        self,
        filter: Mapping[str, Any],
        update: Mapping[str, Any] | Pipeline,
        upsert: bool = False,
        array_filters: Sequence[Mapping[str, Any]] | None = None,
        bypass_document_validation: bool | None = None,
        collation: CollationIn | None = None,
        hint: IndexKeys | None = None,
        session: AsyncClientSession | None = None,
        let: Mapping[str, Any] | None = None,
        comment: Any | None = None,
    ) -> UpdateResult:
        """`Collection.update_many`."""
        coll = self._runner.coll()
        return await self._runner.run(
            label(comment, "update_many"),
            lambda: coll.update_many(
                filter,
                update,
                upsert=upsert,
                array_filters=array_filters,
                bypass_document_validation=bypass_document_validation,
                collation=collation,
                hint=hint,
                session=session,
                let=let,
                comment=comment,
            ),
        )

    async def find(
        self,
        filter: Mapping[str, Any] | None = None,
        projection: Mapping[str, Any] | Iterable[str] | None = None,
        skip: int = 0,
        limit: int = 0,
        no_cursor_timeout: bool = False,
        cursor_type: int = 0,
        sort: IndexList | None = None,
        allow_partial_results: bool = False,
        oplog_replay: bool = False,
        batch_size: int = 0,
        collation: CollationIn | None = None,
        hint: IndexKeys | None = None,
        max_scan: int | None = None,
        max_time_ms: int | None = None,
        max: IndexList | None = None,
        min: IndexList | None = None,
        return_key: bool | None = None,
        show_record_id: bool | None = None,
        snapshot: bool | None = None,
        comment: Any | None = None,
        session: AsyncClientSession | None = None,
        allow_disk_use: bool | None = None,
        let: Mapping[str, Any] | None = None,
    ) -> list[Document]:
        """`Collection.find` as a list of documents (the cursor's parameters, in its order)."""
        coll, out = self._runner.coll(), self._runner.out

        async def read() -> list[Document]:
            cursor = coll.find(
                filter,
                projection,
                skip,
                limit,
                no_cursor_timeout,
                cursor_type,
                sort,
                allow_partial_results,
                oplog_replay,
                batch_size,
                collation,
                hint,
                max_scan,
                max_time_ms,
                max,
                min,
                return_key,
                show_record_id,
                snapshot,
                comment,
                session,
                allow_disk_use,
                let,
            )
            return [out(doc) async for doc in cursor]

        return await self._runner.run(label(comment, "find"), read)

    async def aggregate(
        self,
        pipeline: Pipeline,
        session: AsyncClientSession | None = None,
        let: Mapping[str, Any] | None = None,
        comment: Any | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """`Collection.aggregate` as a list of documents (`kwargs`: hint, allowDiskUse, maxTimeMS...)."""
        coll, out = self._runner.coll(), self._runner.out

        async def read() -> list[Document]:
            cursor = await coll.aggregate(pipeline, session, let, comment, **kwargs)
            return [out(doc) async for doc in cursor]

        return await self._runner.run(label(comment, "aggregate"), read)

    async def delete_one(
        self,
        filter: Mapping[str, Any],
        collation: CollationIn | None = None,
        hint: IndexKeys | None = None,
        session: AsyncClientSession | None = None,
        let: Mapping[str, Any] | None = None,
        comment: Any | None = None,
    ) -> DeleteResult:
        """`Collection.delete_one`."""
        coll = self._runner.coll()
        return await self._runner.run(
            label(comment, "delete_one"), lambda: coll.delete_one(filter, collation, hint, session, let, comment)
        )

    async def insert_one(
        self,
        document: Document,
        bypass_document_validation: bool | None = None,
        session: AsyncClientSession | None = None,
        comment: Any | None = None,
    ) -> InsertOneResult:
        """`Collection.insert_one`."""
        coll = self._runner.coll()
        return await self._runner.run(
            label(comment, "insert_one"),
            lambda: coll.insert_one(document, bypass_document_validation, session, comment),
        )

    async def find_one_and_update(
        self,
        filter: Mapping[str, Any],
        update: Mapping[str, Any] | Pipeline,
        projection: Mapping[str, Any] | Iterable[str] | None = None,
        sort: IndexList | None = None,
        upsert: bool = False,
        return_document: bool = False,
        array_filters: Sequence[Mapping[str, Any]] | None = None,
        hint: IndexKeys | None = None,
        session: AsyncClientSession | None = None,
        let: Mapping[str, Any] | None = None,
        comment: Any | None = None,
        **kwargs: Any,
    ) -> Document | None:
        """`Collection.find_one_and_update` (`kwargs`: e.g. maxTimeMS, collation)."""
        coll = self._runner.coll()
        doc = await self._runner.run(
            label(comment, "find_one_and_update"),
            lambda: coll.find_one_and_update(
                filter,
                update,
                projection,
                sort,
                upsert,
                return_document,
                array_filters,
                hint,
                session,
                let,
                comment,
                **kwargs,
            ),
        )
        return self._runner.out(doc) if doc is not None else None

    async def index_information(
        self, session: AsyncClientSession | None = None, comment: Any | None = None
    ) -> dict[str, Any]:
        """`Collection.index_information`."""
        coll = self._runner.coll()
        return dict(
            await self._runner.run(
                label(comment, "index_information"), lambda: coll.index_information(session, comment)
            )
        )

    async def create_index(
        self, keys: IndexKeys, session: AsyncClientSession | None = None, comment: Any | None = None, **kwargs: Any
    ) -> str:
        """`Collection.create_index` (`kwargs`: the index's options, e.g. name, unique)."""
        coll = self._runner.coll()
        return await self._runner.run(
            label(comment, "create_index"), lambda: coll.create_index(keys, session, comment, **kwargs)
        )

    async def drop_index(
        self,
        index_or_name: IndexKeys,
        session: AsyncClientSession | None = None,
        comment: Any | None = None,
        **kwargs: Any,
    ) -> None:
        """`Collection.drop_index`."""
        coll = self._runner.coll()
        await self._runner.run(
            label(comment, "drop_index"), lambda: coll.drop_index(index_or_name, session, comment, **kwargs)
        )
