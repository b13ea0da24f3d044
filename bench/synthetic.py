"""A daemon's registry filled with N synthetic pools, served by our `/metrics` (uvicorn) or the stock server."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from prometheus_client import start_http_server

from exporter.assembly import Daemon, build
from exporter.config import Config
from exporter.core import STATES, Statistics
from exporter.core.model import Sums
from exporter.state import PoolState


def config(pools: int, port: int) -> Config:
    """A config of `pools` pools on a server never contacted (the collector is not started)."""
    return Config.model_validate(
        {
            "listen": f"127.0.0.1:{port}",
            "log": {"level": "warning", "format": "json"},
            "mongodb": {"uri": "mongodb://127.0.0.1:1/?connect=false"},
            "pools": [{"name": f"pool_{i:04d}", "database": "bench", "collection": f"c{i:04d}"} for i in range(pools)],
        }
    )


def fill(daemon: Daemon, seed: int = 1) -> None:
    """Give every pool a successful refresh and sums pass with plausible figures."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    for pool in daemon.collector.pools.values():
        states = {s: rng.randrange(0, 5000) for s in STATES}
        total = sum(states.values())
        stats = Statistics(
            time=now,
            states=states,
            total=total,
            uses=None,
            successes=None,
            next_unlock=now + timedelta(seconds=rng.uniform(1, 3600)),
            oldest_active_last_use=now - timedelta(seconds=rng.uniform(1, 86400)),
        )
        pool.succeeded(stats)
        pool.refresh.duration, pool.refresh.wait = rng.uniform(0.001, 0.05), 0.0
        uses = rng.randrange(0, 10**7)
        pool.sums_read(Sums(time=now, total=total, uses=uses, successes=uses // 2, metadata_total=total))
    daemon.metrics.changed()


def refresh(daemon: Daemon, pool: PoolState, rng: random.Random) -> None:
    """What a successful refresh leaves behind: new figures, its counter, and the pool marked changed."""
    states = {s: rng.randrange(0, 5000) for s in STATES}
    now = datetime.now(UTC)
    stats = Statistics(
        time=now,
        states=states,
        total=sum(states.values()),
        uses=None,
        successes=None,
        next_unlock=now + timedelta(seconds=rng.uniform(1, 3600)),
        oldest_active_last_use=now - timedelta(seconds=rng.uniform(1, 86400)),
    )
    pool.succeeded(stats)
    pool.refresh.duration = rng.uniform(0.001, 0.05)
    daemon.metrics.refreshes.labels(pool.name).inc()
    daemon.metrics.changed(pool.name)


async def refreshing(daemon: Daemon, interval: float) -> None:
    """Refresh every pool once per `interval`, evenly spread (1000 pools, 15 s: one each 15 ms), until cancelled."""
    pools = list(daemon.collector.pools.values())
    rng = random.Random(2)
    every = interval / max(1, len(pools))
    due = time.monotonic()
    for pool in itertools.cycle(pools):
        refresh(daemon, pool, rng)
        due += every
        await asyncio.sleep(max(0.0, due - time.monotonic()))


def pass_seconds(pools: int, *, times: int = 9) -> tuple[float, float, float]:
    """Median seconds of the pass after one pool changed (text with gzip), of the daemon's families, and the
    first (whole) pass, in-process."""

    async def measure() -> tuple[float, float, float]:
        daemon = build(config(pools, 9))  # never listens
        fill(daemon)
        exposition = daemon.metrics.exposition
        await exposition.latest(None, True)
        first = exposition.render_seconds
        rng = random.Random(3)
        states = list(daemon.collector.pools.values())
        took, daemon_took = [], []
        for i in range(times):
            refresh(daemon, states[(i * 37) % len(states)], rng)
            await exposition.latest(None, True)
            took.append(exposition.render_seconds)
            daemon_took.append(exposition.daemon_seconds)
        await daemon.collector.client.close()
        return statistics.median(took), statistics.median(daemon_took), first

    return asyncio.run(measure())


def render_seconds(pools: int, gzipped: bool, *, times: int = 5) -> float:
    """Median seconds of one whole rendering by prometheus_client (what the stock server does per scrape)."""

    async def measure() -> float:
        daemon = build(config(pools, 9))  # never listens
        fill(daemon)
        took = []
        for _ in range(times):
            daemon.metrics.changed()
            started = time.perf_counter()
            daemon.metrics.render(None, gzipped)
            took.append(time.perf_counter() - started)
        await daemon.collector.client.close()
        return sorted(took)[len(took) // 2]

    return asyncio.run(measure())


async def serve(pools: int, port: int, server: str, interval: float) -> None:
    """Serve until killed: `ours` (the daemon's uvicorn server, lifespan off) or `stock` (start_http_server);
    with `interval` > 0 every pool is refreshed once per interval meanwhile."""
    daemon = build(config(pools, port))
    fill(daemon)
    loop = asyncio.create_task(refreshing(daemon, interval)) if interval > 0 else None
    if server == "stock":
        start_http_server(port, addr="127.0.0.1", registry=daemon.metrics.registry)
        print("serving", file=sys.stderr, flush=True)
        await asyncio.Event().wait()  # until killed
    uv = daemon.server(lifespan="off")
    print("serving", file=sys.stderr, flush=True)
    try:
        await uv.serve()
    finally:
        if loop is not None:
            loop.cancel()


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.synthetic --pools N --port P --server ours|stock [--refresh-interval S]`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pools", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server", choices=("ours", "stock"), required=True)
    parser.add_argument("--refresh-interval", type=float, default=0.0, help="refresh every pool once per S seconds")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.pools, args.port, args.server, args.refresh_interval))


if __name__ == "__main__":
    main()
