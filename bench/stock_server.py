"""Baseline server: the daemon's own Collector and Metrics, served by prometheus_client's stock HTTP server."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from prometheus_client import start_http_server

from exporter.assembly import build
from exporter.config import load_config


async def serve(config_path: str, port: int, busy: str | None) -> None:
    """Refresh every pool once, serve the registry, then (if `busy`) refresh that pool in a loop."""
    config = load_config(config_path, {}, {})
    daemon = build(config)
    collector, metrics = daemon.collector, daemon.metrics
    await collector.refresh_all()
    down = [p.name for p in collector.pools.values() if not p.up]
    if down:
        print(f"refresh failed for {down}", file=sys.stderr, flush=True)
    start_http_server(port, addr="127.0.0.1", registry=metrics.registry)
    print("serving", file=sys.stderr, flush=True)
    pool = next((p for p in collector.pools.values() if p.config.collection == busy), None)
    while True:
        if pool is None:
            await asyncio.sleep(3600)
            continue
        # Same cadence as the daemon's 1 s interval with coalescing: back to back when slower.
        started = time.monotonic()
        await collector.refresh(pool.name)
        await asyncio.sleep(max(0.0, pool.interval - (time.monotonic() - started)))


def main() -> None:
    """`python -m bench.stock_server --config FILE --port N [--busy COLLECTION]`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--busy", default=None, help="collection whose pool refreshes in a loop")
    args = parser.parse_args()
    asyncio.run(serve(args.config, args.port, args.busy))


if __name__ == "__main__":
    main()
