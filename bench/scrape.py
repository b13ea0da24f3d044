"""Scrape: `/metrics` of the daemon against the stock prometheus_client server and Debian's mongodb exporter."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from pymongo import AsyncMongoClient

from bench.common import DATABASE
from bench.procs import (
    Proc,
    WrkResult,
    daemon,
    http_get,
    mongodb_exporter,
    pools_config,
    stock_server,
    wait_http,
    wrk,
)
from exporter.core import MongoSessions

TARGETS = ("ours", "stock", "mongodb_exporter")
LABELS = {
    "ours": "session-pool-exporter (`run`, uvicorn)",
    "stock": "(a) `prometheus_client.start_http_server`, same registry",
    "mongodb_exporter": "(b) Debian `prometheus-mongodb-exporter`",
}


@dataclass
class ScrapeResult:
    """wrk figures per target and condition ('idle' or 'refreshing'), plus notes."""

    results: dict[tuple[str, str], WrkResult] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    refreshes_during: dict[str, int] = field(default_factory=dict)


def refreshes_total(proc: Proc) -> int:
    """session_pool_refreshes_total summed over pools, read from the target itself."""
    try:
        _, body = http_get(proc.url(), timeout=30)
    except OSError:
        return -1
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith("session_pool_refreshes_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


@contextmanager
def refresh_loop(mongo_uri: str, collection: str) -> Iterator[list[int]]:
    """Refresh one pool back to back in a background thread (load on mongod for the Debian exporter's runs)."""
    stop = threading.Event()
    count = [0]

    async def loop() -> None:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, tz_aware=True, tzinfo=UTC)
        pool = MongoSessions(client=client, db=DATABASE, collection=collection, timeout=900, create_indexes=False)
        await pool.connect()
        try:
            while not stop.is_set():
                await pool.aggregate_statistics()
                await pool.count_active()
                count[0] += 1
        finally:
            await client.close()

    thread = threading.Thread(target=lambda: asyncio.run(loop()), daemon=True)
    thread.start()
    try:
        yield count
    finally:
        stop.set()
        thread.join(timeout=600)


def run(
    mongo_uri: str,
    mongo_port: int,
    collections: list[str],
    busy: str,
    *,
    duration: float,
    log: Any,
    mongodb_exporter_seconds: float | None = None,
) -> ScrapeResult:
    """Every target, idle and while `busy` refreshes in a loop."""
    out = ScrapeResult()
    slow = duration if mongodb_exporter_seconds is None else mongodb_exporter_seconds
    for condition in ("idle", "refreshing"):
        pools = pools_config(collections, busy=busy if condition == "refreshing" else None)
        for target in TARGETS:
            proc: Proc | None
            if target == "ours":
                proc = daemon(mongo_uri, pools)
            elif target == "stock":
                proc = stock_server(mongo_uri, pools, busy=busy if condition == "refreshing" else None)
            else:
                proc = mongodb_exporter(mongo_port) if slow > 0 else None
                if proc is None and slow <= 0:
                    if condition == "idle":
                        out.notes.append("prometheus-mongodb-exporter was skipped (--mongodb-exporter-seconds 0).")
                    continue
                if proc is None:
                    if condition == "idle":
                        out.notes.append("prometheus-mongodb-exporter is not installed: its rows were not run.")
                    continue
            proc.start()
            try:
                if target == "ours":
                    wait_http(proc.url("/readyz"), timeout=900)
                else:
                    wait_http(proc.url(), timeout=900, request_timeout=60)
                if target == "mongodb_exporter":
                    _, body = http_get(proc.url(), timeout=60)
                    if b"mongodb_up 1" not in body:
                        note = (
                            "prometheus-mongodb-exporter answered `mongodb_up 0`: its driver (mgo, 2018) speaks"
                            " the legacy OP_QUERY protocol, which MongoDB 6.0 removed, so it cannot collect from"
                            " this mongod. Every scrape tries to connect and waits for its dial timeout; its"
                            " figures are measured as it behaves here (wrk --timeout 30s)."
                        )
                        if note not in out.notes:
                            out.notes.append(note)
                if condition == "refreshing" and target == "mongodb_exporter":
                    with refresh_loop(mongo_uri, busy) as count:
                        out.results[(target, condition)] = wrk(proc.url(), duration=slow)
                    out.refreshes_during[target] = count[0]
                else:
                    before = refreshes_total(proc) if condition == "refreshing" else 0
                    seconds = slow if target == "mongodb_exporter" else duration
                    out.results[(target, condition)] = wrk(proc.url(), duration=seconds)
                    if condition == "refreshing":
                        out.refreshes_during[target] = refreshes_total(proc) - before
                _, body = http_get(proc.url(), timeout=60)
                out.results[(target, condition)].body_bytes = len(body)
                r = out.results[(target, condition)]
                log(
                    f"  {target:>16} {condition:>10}: {r.rps:9.1f} req/s,"
                    f" p50 {r.p50 * 1000:.2f} ms, p99 {r.p99 * 1000:.2f} ms"
                )
            except Exception as exc:
                out.notes.append(f"{target} ({condition}) failed: {type(exc).__name__}: {exc}; stderr: {proc.tail(5)}")
                log(f"  {target} {condition} FAILED: {exc}")
            finally:
                proc.stop()
    return out


GZIP = "Accept-Encoding: gzip"


@dataclass
class ScaleRow:
    """wrk against one server holding `pools` synthetic pools, plain or gzipped, over `connections`."""

    pools: int
    server: str
    gzip: bool
    result: WrkResult
    render: float = float("nan")  # seconds of one whole rendering by prometheus_client, in-process
    connections: int = 16
    # Ours, in-process: the pass after one pool changed (text + gzip), the daemon's families, the first pass.
    passes: tuple[float, float, float] = (float("nan"),) * 3


def synthetic(pools: int, server: str, refresh_interval: float = 0.0) -> Proc:
    """`python -m bench.synthetic`: a registry of `pools` filled pools served by `ours` or `stock`, refreshed
    once per `refresh_interval` seconds (0: never)."""
    import sys

    from exporter.mongod import free_port

    port = free_port()
    args = [sys.executable, "-m", "bench.synthetic", "--pools", str(pools), "--port", str(port), "--server", server]
    return Proc([*args, "--refresh-interval", str(refresh_interval)], port=port)


def gzipped_size(url: str) -> int:
    """Bytes of a gzip-encoded answer as sent."""
    import urllib.request

    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})  # noqa: S310 - our own URL
    with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310
        return len(resp.read())


def scaling(
    counts: list[int],
    *,
    duration: float,
    log: Any,
    connections: tuple[int, ...] = (4, 16),
    refresh_interval: float = 15.0,
) -> list[ScaleRow]:
    """Every pool count, our server then the stock one, each plain and with `Accept-Encoding: gzip`, over each
    number of connections, while every pool is refreshed once per `refresh_interval` seconds."""
    from bench.synthetic import pass_seconds, render_seconds

    rows: list[ScaleRow] = []
    for pools in counts:
        renders = {gz: render_seconds(pools, gz) for gz in (False, True)}
        passes = pass_seconds(pools)
        for server in ("ours", "stock"):
            proc = synthetic(pools, server, refresh_interval).start()
            try:
                wait_http(proc.url(), timeout=120, request_timeout=30)
                for conns in connections:
                    for gz in (False, True):
                        r = wrk(proc.url(), duration=duration, connections=conns, headers=(GZIP,) if gz else ())
                        r.body_bytes = gzipped_size(proc.url()) if gz else len(http_get(proc.url(), timeout=60)[1])
                        ours = server == "ours"
                        rows.append(
                            ScaleRow(pools, server, gz, r, renders[gz], conns, passes if ours else (float("nan"),) * 3)
                        )
                        log(
                            f"  {pools:>5} pools {server:>5} {conns:>2} conns {'gzip' if gz else 'plain':>5}:"
                            f" {r.rps:9.1f} req/s, p99 {r.p99 * 1000:.2f} ms, {r.body_bytes:,} bytes"
                        )
            finally:
                proc.stop()
    return rows
