"""Which hand-out a handler's report is about: the lease of every document `get_session` returned, kept in memory.

The documents handed out stay plain dicts (the original's API), so the lease is not in them: the
client remembers it by the document object itself (handlers pass back what they were given), or
by the session's `_id` when exactly one hand-out of it is outstanding in this process. A report the
client cannot tie to one hand-out carries no lease (see `queries.report_update`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import bson
from bson import ObjectId

# Outstanding hand-outs remembered per client: a handler that never reports loses its lease after
# this many later hand-outs (its report then counts as one without a lease), so memory stays bounded.
LIMIT = 4096


def _key(session: object) -> bytes | None:
    """A hashable key of a session's `_id` (a 24-hex string and its ObjectId are one key), or None."""
    value = session.get("_id") if isinstance(session, Mapping) else session
    if value is None:
        return None
    if isinstance(value, str) and len(value) == 24 and ObjectId.is_valid(value):
        value = ObjectId(value)
    try:
        return bson.encode({"k": value})
    except (bson.errors.InvalidDocument, TypeError, OverflowError):
        return None


class Leases:
    """Outstanding hand-outs of one client: lease by document object, and by `_id` when unambiguous."""

    def __init__(self, limit: int = LIMIT) -> None:
        self._limit = limit
        # id(document) -> (the document, kept alive so its id is not reused; its lease; its key)
        self._by_doc: OrderedDict[int, tuple[Mapping[str, Any], ObjectId, bytes | None]] = OrderedDict()
        # key of the `_id` -> id(document) of each outstanding hand-out of that session
        self._by_key: dict[bytes, list[int]] = {}

    def __len__(self) -> int:
        return len(self._by_doc)

    def remember(self, doc: Mapping[str, Any], lease: ObjectId) -> None:
        """Keep the lease of a document just handed out (the oldest is forgotten beyond the limit)."""
        self._forget(id(doc))
        key = _key(doc)
        self._by_doc[id(doc)] = (doc, lease, key)
        if key is not None:
            self._by_key.setdefault(key, []).append(id(doc))
        while len(self._by_doc) > self._limit:
            self._forget(next(iter(self._by_doc)))

    def _forget(self, ident: int) -> ObjectId | None:
        entry = self._by_doc.pop(ident, None)
        if entry is None:
            return None
        _doc, lease, key = entry
        if key is not None:
            idents = self._by_key.get(key, [])
            if ident in idents:
                idents.remove(ident)
            if not idents:
                self._by_key.pop(key, None)
        return lease

    def find(self, session: object) -> tuple[int, ObjectId] | None:
        """The outstanding hand-out a report on `session` is about: (its handle, its lease), or None.

        `session` is the document handed out (its identity decides), or any id or document with the
        same `_id`, which decides only when this client has exactly one outstanding hand-out of it.
        """
        entry = self._by_doc.get(id(session))
        if entry is not None and entry[0] is session:
            return id(session), entry[1]
        key = _key(session)
        idents = self._by_key.get(key, []) if key is not None else []
        if len(idents) != 1:
            return None
        return idents[0], self._by_doc[idents[0]][1]

    def forget(self, handle: int) -> None:
        """Forget a hand-out once its report landed (a second report on it carries no lease)."""
        self._forget(handle)
