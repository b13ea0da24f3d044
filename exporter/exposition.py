"""What a scrape of /metrics gets: stored bytes, each pool's part re-rendered only when that pool changed."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, Protocol, TypeVar

from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from exporter.pieces import Assembly, Rendered, deflate, gzip_member

# Seconds the daemon's own families (process, connections, clocks...) are served again at most.
RENDER_TTL = 1.0
# A pass (the changed pools rendered, their groups re-joined and re-compressed, the body joined) over
# at most INLINE_POOLS pools costs about a millisecond after one pool's change: it is made on the
# spot, so a scrape shows every change made before it. With more pools it is made aside, in steps of at most SLICE
# seconds between which the event loop serves scrapes the previous bytes, and at most RENDER_SHARE
# of the time (a pass of 2 ms at 1000 pools: at most one every 40 ms), so changes show within
# MAX_GAP seconds at most.
INLINE_POOLS = 64
SLICE = 0.002
RENDER_SHARE = 0.05
MAX_GAP = 1.0


class _Clock(Protocol):
    def monotonic(self) -> float: ...


class Pool(Protocol):
    """What the exposition needs of a pool's state: its name and the clock its staleness is read from."""

    @property
    def name(self) -> str: ...

    @property
    def clock(self) -> _Clock: ...


P = TypeVar("P", bound=Pool)
Encoder = Callable[[Collector], bytes]


class _Served:
    """One content type's bytes as served: gzipped, plain (joined at the first plain scrape), and when joined."""

    def __init__(self, pieces: tuple[bytes, ...], packed: bytes, at: float, last: _Served | None) -> None:
        self.pieces = pieces
        self.packed = packed
        self.at = at
        # The same bytes as the last pass's are served as the same object.
        self._plain: bytes | None = last._plain if last is not None and last.pieces == pieces else None

    @property
    def plain(self) -> bytes:
        """The plain body."""
        if self._plain is None:
            self._plain = b"".join(self.pieces)
        return self._plain


class _Type:
    """One content type: its encoder, its pool series (Assembly), its daemon part and what is served."""

    def __init__(self, encoder: Encoder, content_type: str, headers: Sequence[Metric]) -> None:
        self.encode = encoder
        self.content_type = content_type
        self.daemon = b""  # the daemon's families, as last rendered, and deflated
        self.daemon_packed = b""
        self.daemon_at = -RENDER_TTL
        self.pools = Assembly(encoder, headers)
        self.eof_packed = deflate(self.pools.eof)
        self.served: _Served | None = None
        self.daemon_version = -1
        self.task: asyncio.Task[None] | None = None
        self.overhead = 0.0  # of which the daemon's families and the joins (not the changed pools)
        self.next_pass = 0.0  # monotonic time before which no pass is started aside
        self.members = -1  # the pool set it follows (Exposition.members_changed)
        self.synced = 0.0


class Exposition(Generic[P]):
    """The bytes of /metrics per content type: the daemon's families rendered by prometheus_client (small, at
    most every RENDER_TTL), each pool's series from its own rendering, made again only when it changed."""

    def __init__(
        self,
        daemon: Callable[[Encoder], bytes],
        pools: Callable[[], Iterable[P]],
        render: Callable[[P], Rendered],
        headers: Sequence[Metric],
    ) -> None:
        self._daemon = daemon  # the daemon's families through an encoder
        self._pools = pools
        self._render = render
        self._headers = list(headers)
        self._types: dict[str, _Type] = {}
        self._daemon_version = 0
        self._members = 0
        self._deadlines: dict[str, float] = {}
        self._expiring: list[tuple[float, int, str, _Clock]] = []
        self._order = itertools.count()
        self.render_seconds = 0.0  # the last pass's duration (steps summed)
        self.pool_renders = 0  # pools rendered so far, every content type (a change costs one per type)
        self.daemon_seconds = 0.0  # the last rendering of the daemon's own families

    def members_changed(self) -> None:
        """Pools were added or removed: the next pass follows the pool set (else it looks every RENDER_TTL)."""
        self._members += 1

    def changed(self, pool: str | None = None) -> None:
        """A pool changed (its part is rendered again), or with no name anything may have: every pool."""
        self._daemon_version += 1
        if pool is None:
            self._members += 1
        for kind in self._types.values():
            if pool is None:
                kind.pools.everything()
            else:
                kind.pools.dirty.add(pool)

    def daemon_changed(self) -> None:
        """Only the daemon's own families changed (e.g. mongodb_up): no pool is rendered again."""
        self._daemon_version += 1

    def _named(self) -> list[tuple[str, P]]:
        return [(pool.name, pool) for pool in self._pools()]

    def _expire(self) -> None:
        """Pools whose freshness lapsed since their rendering (the staleness rule) are rendered again."""
        heap = self._expiring
        while heap and heap[0][3].monotonic() > heap[0][0]:
            deadline, _, name, _ = heapq.heappop(heap)
            if self._deadlines.get(name) == deadline:
                del self._deadlines[name]
                for kind in self._types.values():
                    kind.pools.dirty.add(name)

    def _expires(self, name: str, at: float, clock: _Clock) -> None:
        if at == float("inf"):
            self._deadlines.pop(name, None)
        elif self._deadlines.get(name) != at:
            self._deadlines[name] = at
            heapq.heappush(self._expiring, (at, next(self._order), name, clock))

    def _kind(self, accept: str | None) -> _Type:
        encoder, content_type = choose_encoder(accept or "")
        kind = self._types.get(content_type)
        if kind is None:
            kind = self._types[content_type] = _Type(encoder, content_type, self._headers)
        self._expire()
        return kind

    @staticmethod
    def _outdated(kind: _Type, version: int, now: float) -> bool:
        served = kind.served
        return served is None or kind.pools.outdated or kind.daemon_version != version or now - served.at > RENDER_TTL

    async def serve(self, accept: str | None, gzipped: bool) -> tuple[bytes, str]:
        """What a scrape of /metrics gets: the last bytes joined for its content type. With at most INLINE_POOLS
        pools they are brought up to date first (a scrape shows every change made before it); with more, a pass
        is made aside while the previous bytes are served, at most RENDER_SHARE of the time."""
        kind = self._kind(accept)
        now = time.monotonic()
        if kind.task is None and self._outdated(kind, self._daemon_version, now):
            if 0 <= kind.pools.size <= INLINE_POOLS:
                self._pass(kind)
            elif kind.served is None or now >= kind.next_pass:
                kind.task = asyncio.create_task(self._aside(kind))
        served = kind.served
        while served is None:
            # Nothing to serve yet (the first scrape of this content type): wait for a pass.
            if kind.task is None:
                kind.task = asyncio.create_task(self._aside(kind))
            await asyncio.shield(kind.task)
            served = kind.served
        return (served.packed if gzipped else served.plain), kind.content_type

    async def latest(self, accept: str | None, gzipped: bool) -> tuple[bytes, str]:
        """What a scrape would get once every change made so far is rendered (tests; never used by /metrics)."""
        kind = self._kind(accept)
        if kind.task is not None:
            await asyncio.shield(kind.task)
        while self._outdated(kind, self._daemon_version, time.monotonic() - RENDER_TTL):
            kind.task = asyncio.create_task(self._aside(kind))
            await asyncio.shield(kind.task)
        return await self.serve(accept, gzipped)

    async def _aside(self, kind: _Type) -> None:
        """A pass in steps of at most SLICE seconds, the event loop serving scrapes in between."""
        try:
            await self._sliced(kind)
        finally:
            kind.task = None

    async def _sliced(self, kind: _Type) -> None:
        steps = self._steps(kind)
        spent = 0.0
        while True:
            started = time.perf_counter()
            done = True
            for _ in steps:
                if time.perf_counter() - started > SLICE:
                    done = False
                    break
            spent += time.perf_counter() - started
            if done:
                break
            await asyncio.sleep(0)
        self._finish(kind, spent)

    def _pass(self, kind: _Type) -> None:
        started = time.perf_counter()
        for _ in self._steps(kind):
            pass
        self._finish(kind, time.perf_counter() - started)

    def _finish(self, kind: _Type, spent: float) -> None:
        self.render_seconds = spent
        # The work a change brings is done once whenever it is done; what a pass costs besides (the
        # daemon's families, the joins, the CRC) is spread: passes at most RENDER_SHARE of the time.
        kind.next_pass = time.monotonic() + min(kind.overhead / RENDER_SHARE, MAX_GAP)

    def _steps(self, kind: _Type) -> Iterable[None]:
        """One pass: the pool set followed, changed pools rendered, the daemon part, the body joined."""
        version, members, at = self._daemon_version, self._members, time.monotonic()
        pools = kind.pools
        if kind.members != members or at - kind.synced > RENDER_TTL:
            pools.sync(self._named())
            kind.members, kind.synced = members, at
            yield
        clocks: dict[str, _Clock] = {}

        def render(state: object) -> Rendered:
            pool: P = state  # type: ignore[assignment]
            clocks[pool.name] = pool.clock
            self.pool_renders += 1
            return self._render(pool)

        yield from pools.work(render, lambda name, when: self._expires(name, when, clocks[name]))
        overhead = 0.0
        if kind.daemon_version != version or at - kind.daemon_at > RENDER_TTL:
            started = time.perf_counter()
            daemon = self._daemon(kind.encode)
            overhead = self.daemon_seconds = time.perf_counter() - started
            kind.daemon = daemon[: -len(pools.eof)] if pools.eof and daemon.endswith(pools.eof) else daemon
            kind.daemon_packed = deflate(kind.daemon)
            kind.daemon_at = at
            yield
        assert pools.body is not None
        started = time.perf_counter()
        pieces = (kind.daemon, *pools.body, pools.eof)
        packed = gzip_member([kind.daemon_packed, *pools.parts, kind.eof_packed], pieces)
        kind.served = _Served(pieces, packed, at, kind.served)
        kind.daemon_version = version
        kind.overhead = overhead + time.perf_counter() - started
