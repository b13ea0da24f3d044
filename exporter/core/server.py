"""What a client knows of its server: the topology, how far its clock is from ours, and the primary's lead."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pymongo.read_preferences import ReadPreference, _ServerMode

from exporter.core.clocks import NO_SHIFT, MemberClocks, Shift
from exporter.core.failover import primary_of
from exporter.core.operations import Runner
from exporter.core.timeframe import TimeFrame

Topology = Literal["replica_set", "sharded", "standalone"]

# The server's time for the hooks while one operation builds its queries (see MongoSessions._filter_exclude_lock).
_QUERY_NOW: ContextVar[datetime | None] = ContextVar("query_now", default=None)


class ServerView:
    """The server as one client sees it: learnt from `hello` at connect and at every reading of its clock."""

    def __init__(self, runner: Runner, frame: TimeFrame, clocks: MemberClocks | None) -> None:
        self._runner = runner
        self._frame = frame
        self._clocks = clocks
        self.topology: Topology | None = None
        self._skew = timedelta(0)

    @property
    def supports_transactions(self) -> bool:
        """True when the server runs multi-document transactions (known once connected)."""
        return self.topology in ("replica_set", "sharded")

    async def hello(self, operation: str, read: _ServerMode | None = None) -> Mapping[str, Any]:
        """The server's `hello` (the primary's, or a member's that `read` selects), its clock remembered."""
        client = self._runner.client
        started = time.time()
        answer: Mapping[str, Any] = await self._runner.run(
            operation, lambda: client.admin.command("hello", read_preference=read), read
        )
        self._learn_clock(answer, started)
        return answer

    def learn(self, hello: Mapping[str, Any], started: float) -> None:
        """Take the topology and the clock from a `hello` answer asked for at `started` (Unix time)."""
        self._learn_clock(hello, started)
        if hello.get("msg") == "isdbgrid":
            self.topology = "sharded"
        elif hello.get("setName"):
            self.topology = "replica_set"
        else:
            self.topology = "standalone"

    def _learn_clock(self, hello: Mapping[str, Any], started: float) -> None:
        """Remember how far the server's clock is from ours (for hooks that need a time without asking)."""
        server = hello.get("localTime")
        if isinstance(server, datetime):
            server = server if server.tzinfo else server.replace(tzinfo=UTC)
            midpoint = datetime.fromtimestamp((started + time.time()) / 2, UTC)
            self._skew = server - midpoint

    async def time(self, operation: str, read: _ServerMode | None = None) -> datetime:
        """The server's clock, aware UTC: the primary's, or that of a member `read` selects.

        The primary's comes from the driver's last heartbeat when that is recent and precise (no call:
        a refresh of many pools makes one round trip instead of two); otherwise `hello.localTime`.
        """
        estimate = self._estimate(read)
        if estimate is not None:
            return estimate
        now: datetime = (await self.hello(operation, read))["localTime"]
        return now if now.tzinfo else now.replace(tzinfo=UTC)

    def _estimate(self, read: _ServerMode | None) -> datetime | None:
        """The primary's clock from the heartbeats (for a read the primary serves), or None."""
        if self._clocks is None or (read is not None and read.mode != ReadPreference.PRIMARY.mode):
            return None
        primary = self.primary()
        return self._clocks.now_of(primary) if primary is not None else None

    @contextmanager
    def at(self, now: datetime) -> Iterator[None]:
        """Build queries for the server time `now` (what the hooks use while inside)."""
        token = _QUERY_NOW.set(now)
        try:
            yield
        finally:
            _QUERY_NOW.reset(token)

    def query_now(self) -> datetime:
        """The server time of the operation being built, else our clock corrected by the server's last reading."""
        now = _QUERY_NOW.get()
        return now if now is not None else datetime.now(UTC) + self._skew

    def primary(self) -> str | None:
        """host:port of the primary in the driver's view, or None."""
        return primary_of(self._runner.client.topology_description)

    def shift(self) -> Shift:
        """How far to move the server's now on the primary in the driver's view (see core/clocks.py)."""
        if self._clocks is None:
            return NO_SHIFT
        return self._clocks.shift(self.primary())

    def frames(self, shift: Shift | None = None) -> tuple[TimeFrame, TimeFrame]:
        """The frames of a hold's end as read (is it over?) and as written: the server's now, moved so that a
        primary whose clock is off from the other members' never shortens a hold (see core/clocks.py)."""
        shift = self.shift() if shift is None else shift
        return self._frame.shifted(-shift.read), self._frame.shifted(shift.write)
