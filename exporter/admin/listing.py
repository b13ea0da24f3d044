"""Pages of a pool's sessions: in a state, found by a search field, or underperforming (reads only)."""

from __future__ import annotations

from datetime import datetime

from exporter.admin.auth import Caller, Role
from exporter.admin.errors import Conflict, InvalidRequest
from exporter.admin.limits import PerMinute
from exporter.admin.models import MAX_OFFSET, SessionPage, SessionsQuery, SessionView
from exporter.admin.overview import iso
from exporter.admin.views import session_view
from exporter.config import AdminConfig
from exporter.core import HELD_STATES, Document, OperationFailed, State
from exporter.core.browse import (
    Order,
    held_count_pipeline,
    hold_index,
    list_filter,
    search_filter,
    sort_of,
    underperforming_count_pipeline,
    underperforming_page_pipeline,
    underperforming_threshold,
)
from exporter.core.queries import and_filters
from exporter.state import PoolState

# BadValue: the hinted index does not exist (dropped, not rebuilt yet, or create_indexes is off).
_BAD_HINT = 2
# A search is sorted in memory: past this many matches it asks for more of the value instead.
SEARCH_SORT_LIMIT = 5000


class SessionLists:
    """The lists of sessions operators page through, each total from the cheapest source that is true."""

    def __init__(self, config: AdminConfig) -> None:
        self.config = config
        self.read_searches = PerMinute(config.read_searches_per_minute, "searches of masked fields")

    def view(self, pool: PoolState, doc: Document, now: datetime) -> SessionView:
        """What an operator sees of one session document."""
        return session_view(pool, doc, now, expose_credentials=self.config.expose_credentials)

    def _projection(self, pool: PoolState) -> dict[str, int]:
        """What a list reads of each document: never `session`, only the sub-fields the config names."""
        f = pool.sessions.fields
        wanted = [f.active, f.next_use, f.last_use, f.created, f.hold, f.count_use, f.count_success]
        console = pool.config.session_fields
        if self.config.expose_credentials:
            wanted.append(f.session)
        else:
            wanted += [f"{f.session}.{name}" for name in (*console.search, *console.show)]
        return dict.fromkeys(wanted, 1)

    def exact_fields(self, pool: PoolState, caller: Caller) -> list[str]:
        """The search fields `caller` matches whole, not by prefix: the masked ones, for a read token.

        A prefix search answers "does this session's value start with this", so a read token could rebuild
        a masked value a character at a time; it gets equality, and a limited number of tries, instead.
        """
        console = pool.config.session_fields
        if caller.role is Role.WRITE or self.config.expose_credentials:
            return []
        return [name for name in console.search if name not in console.show]

    async def page(self, pool: PoolState, query: SessionsQuery, caller: Caller) -> SessionPage:
        """One page of a pool's sessions: in a state, found by a search field, or underperforming."""
        sessions, f = pool.sessions, pool.sessions.fields
        search = pool.config.session_fields.search
        if query.underperforming and (query.state is not None or query.q is not None):
            raise InvalidRequest(
                "underperforming lists every active session that lags; leave out state and q",
                location="query.underperforming",
            )
        if query.q is not None and not search:
            raise InvalidRequest(
                f"pool {pool.name!r} has no search fields (configure pools[].session_fields.search)",
                location="query.q",
            )
        if query.state is None and query.q is None and not query.underperforming:
            raise InvalidRequest("give a state, a search (q) or underperforming=1", location="query.state")
        skip = (query.page - 1) * query.page_size
        if skip + query.page_size > MAX_OFFSET:
            raise InvalidRequest(
                f"a list pages through its first {MAX_OFFSET} sessions; search or filter for the rest",
                location="query.page",
            )
        if query.underperforming:
            return await self._underperformers(pool, query, skip)
        order: Order = query.order or ("hold_desc" if query.state in HELD_STATES else "last_use_asc")
        as_of: str | None = None
        now = await sessions.server_time("list_sessions")
        state_part = list_filter(sessions.rules, query.state, now) if query.state is not None else {}
        exact = self.exact_fields(pool, caller) if query.q is not None else []
        if query.q is not None:
            if exact:
                self.read_searches.spend(caller.name, location="query.q")
            found = search_filter(f, search, query.q, exact)
            # Counting stops past the limit: a one-character search of a million phones costs 5001 keys.
            matches = await sessions.count_documents(found, limit=SEARCH_SORT_LIMIT + 1, comment="search_sessions")
            if matches > SEARCH_SORT_LIMIT:
                raise InvalidRequest(
                    f"more than {SEARCH_SORT_LIMIT} sessions start with {query.q!r}; type more of it",
                    location="query.q",
                )
            selector = and_filters(found, state_part)
            total = await sessions.count_documents(selector, comment="list_sessions") if state_part else matches
        else:
            selector = state_part
            assert query.state is not None
            stats = pool.stats
            if stats is not None and pool.fresh:
                # The last refresh counted every state in one snapshot (at most `interval` seconds ago,
                # and again right after every admin write): counting 750,000 keys again per page would not
                # make the number truer.
                total, as_of = stats.states[query.state], stats.time.isoformat()
            elif query.state in HELD_STATES:
                total = await self._held_count(pool, query.state, now)
            else:
                total = await sessions.count_documents(selector, comment="list_sessions")
        docs = await sessions.find(
            selector,
            self._projection(pool),
            sort=sort_of(f, order),
            skip=skip,
            limit=query.page_size,
            comment="list_sessions",
        )
        page = SessionPage(
            pool=pool.name, state=query.state, q=query.q, underperforming=False, order=order, page=query.page,
            page_size=query.page_size, total=total, total_as_of=as_of,
            sessions=[self.view(pool, doc, now) for doc in docs],
        )  # fmt: skip
        if query.q is not None:
            page.match, page.exact_fields = ("exact" if exact else "prefix"), exact
        return page

    async def _held_count(self, pool: PoolState, state: State, now: datetime) -> int:
        """How many sessions are in a held state, from the hold index's keys alone."""
        sessions = pool.sessions
        pipeline = held_count_pipeline(sessions.rules, state, now)
        try:
            # The planner may pick the other index starting with `active` and read every document.
            rows = await sessions.aggregate(pipeline, comment="list_sessions", hint=dict(hold_index(sessions.fields)))
        except OperationFailed as exc:
            if exc.code != _BAD_HINT:
                raise
            rows = await sessions.aggregate(pipeline, comment="list_sessions")  # the index is missing (being rebuilt)
        return int(rows[0]["n"]) if rows else 0

    async def _underperformers(self, pool: PoolState, query: SessionsQuery, skip: int) -> SessionPage:
        """Active sessions with min_uses uses whose success ratio lags the pool's, most used first.

        The total and the threshold are the last scheduled count's (a scan of every often-used session's
        keys); only before the first one is the count made for this answer.
        """
        sessions, f = pool.sessions, pool.sessions.fields
        settings = pool.config.underperforming
        counted = pool.underperformers
        now = await sessions.server_time("list_sessions")
        if counted is not None:
            threshold, total, as_of = counted.threshold, counted.count, iso(counted.time)
        else:
            source = pool.sums if pool.sums is not None else pool.stats
            if source is None or source.uses is None or source.successes is None:
                raise Conflict(
                    f"pool {pool.name!r} has no sums of uses yet: the underperformers compare with its success ratio"
                )
            threshold = underperforming_threshold(source.uses, source.successes, settings.below)
            total, as_of = 0, None
            if threshold is not None:
                rows = await sessions.aggregate(
                    underperforming_count_pipeline(f, settings.min_uses, threshold), comment="list_sessions"
                )
                total = int(rows[0]["n"]) if rows else 0
        docs: list[Document] = []
        if threshold is not None:
            page = await sessions.aggregate(
                underperforming_page_pipeline(f, settings.min_uses, threshold, skip, query.page_size),
                comment="list_sessions",
            )
            ids = [row["_id"] for row in page]
            if ids:
                fetched = await sessions.find({"_id": {"$in": ids}}, self._projection(pool), comment="list_sessions")
                by_id = {doc["_id"]: doc for doc in fetched}
                docs = [by_id[i] for i in ids if i in by_id]
        return SessionPage(
            pool=pool.name, state=None, q=None, underperforming=True, order="count_use_desc", page=query.page,
            page_size=query.page_size, total=total, total_as_of=as_of,
            sessions=[self.view(pool, doc, now) for doc in docs], threshold=threshold,
        )  # fmt: skip
