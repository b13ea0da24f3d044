"""`python -m bench`: seed a mongod (throwaway, or kept with --dbpath), run the benchmarks, write docs/benchmarks.md."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from bench import dbcost, footprint, handlers, manypools, refresh, scrape
from bench.common import machine, ms, seed, start_mongod
from bench.report import Report
from exporter.config import PoolOptions

SMALL_POOLS = 19  # plus the largest pool: 20 pools for scrape and footprint
SECTIONS = ("dbcost", "refresh", "scrape", "scaling", "manypools", "handlers", "footprint")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of the bench."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="pool sizes for the refresh bench")
    parser.add_argument("--out", default="docs/benchmarks.md", help="markdown file to write")
    parser.add_argument("--quick", action="store_true", help="smoke mode: few repetitions, short runs")
    parser.add_argument("--reps", type=int, default=None, help="refresh repetitions per size (default 15/9/7)")
    parser.add_argument("--wrk-seconds", type=float, default=None, help="wrk duration per run (default 10)")
    parser.add_argument(
        "--mongodb-exporter-seconds",
        type=float,
        default=None,
        help="wrk duration against prometheus-mongodb-exporter (default 30; its scrapes are slow; 0 skips it)",
    )
    parser.add_argument("--handler-seconds", type=float, default=None, help="seconds per handler round (default 5)")
    parser.add_argument("--handler-rounds", type=int, default=None, help="rounds per method (default 3)")
    parser.add_argument("--handler-pool", type=int, default=None, help="sessions in the handler pool (200000)")
    parser.add_argument("--callers", type=int, default=64, help="concurrent get_session callers (default 64)")
    parser.add_argument("--footprint-minutes", type=float, default=None, help="daemon run time (default 10)")
    parser.add_argument("--small-pool", type=int, default=None, help="sessions in each of the 19 small pools")
    parser.add_argument(
        "--dbpath",
        default=None,
        help="persistent mongod data directory (kept between runs; a pool already seeded with its size is reused,"
        " its holds moved to start now) instead of a throwaway one",
    )
    parser.add_argument("--cost-reps", type=int, default=None, help="CPU repetitions per size (default 5; 3 from 10M)")
    parser.add_argument(
        "--cost-batch-seconds", type=float, default=None, help="wall seconds of each CPU batch (default 1)"
    )
    parser.add_argument("--scale-pools", default=None, help="pool counts of the /metrics scaling (default 20,200,1000)")
    parser.add_argument(
        "--scale-connections", default=None, help="wrk connections of the /metrics scaling (default 4,16; quick: 4)"
    )
    parser.add_argument(
        "--scale-refresh-interval",
        type=float,
        default=15.0,
        help="seconds in which the /metrics scaling refreshes every synthetic pool once (default 15; 0: none)",
    )
    parser.add_argument(
        "--many-pools", type=int, default=None, help="pools configured and found by discovery (default 500)"
    )
    parser.add_argument(
        "--many-configured", type=int, default=None, help="how many of them are configured (default: half)"
    )
    parser.add_argument("--many-sessions", type=int, default=None, help="sessions in each of them (default 200)")
    parser.add_argument("--many-minutes", type=float, default=None, help="minutes the daemon watches them (default 4)")
    parser.add_argument(
        "--many-concurrency", type=int, default=None, help="max_concurrent_refreshes (default: the config's, 16)"
    )
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated subset of: " + ", ".join(SECTIONS))
    args = parser.parse_args(argv)
    args.size_list = [int(s) for s in args.sizes.split(",") if s.strip()]
    q = args.quick
    args.wrk_seconds = args.wrk_seconds or (1 if q else 10)
    if args.mongodb_exporter_seconds is None:
        args.mongodb_exporter_seconds = 15 if q else 30
    args.handler_seconds = args.handler_seconds or (0.5 if q else 5)
    args.handler_rounds = args.handler_rounds or (1 if q else 3)
    args.handler_pool = args.handler_pool or (2000 if q else 200_000)
    args.footprint_minutes = args.footprint_minutes if args.footprint_minutes is not None else (0.1 if q else 10)
    args.small_pool = args.small_pool or (50 if q else 1000)
    args.benches = {b.strip() for b in args.only.split(",") if b.strip()}
    unknown = args.benches - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    args.cost_batch_seconds = args.cost_batch_seconds or (0.1 if q else 1.0)
    args.scale_list = [int(n) for n in (args.scale_pools or ("20,50" if q else "20,200,1000")).split(",") if n.strip()]
    args.scale_conns = tuple(int(n) for n in (args.scale_connections or ("4" if q else "4,16")).split(",") if n.strip())
    args.many_pools = args.many_pools or (10 if q else 500)
    args.many_sessions = args.many_sessions or (20 if q else 200)
    args.many_minutes = args.many_minutes if args.many_minutes is not None else (0.15 if q else 4)
    args.many_interval = 2.0 if q else float(PoolOptions().interval)
    args.many_concurrency = args.many_concurrency or 16
    args.many_configured = args.many_pools // 2 if args.many_configured is None else args.many_configured
    return args


def cost_reps(size: int, args: argparse.Namespace) -> int:
    """Repetitions of the CPU bench for a pool size."""
    if args.cost_reps:
        return int(args.cost_reps)
    return 2 if args.quick else 3 if size >= 10_000_000 else 5


def reps_for(size: int, args: argparse.Namespace) -> int:
    """Repetitions of the refresh bench for a pool size."""
    if args.reps:
        return int(args.reps)
    if args.quick:
        return 3
    return 15 if size <= 10_000 else 9 if size <= 100_000 else 7 if size <= 1_000_000 else 3


def log(message: str) -> None:
    """Progress on stderr (the results go to the markdown file)."""
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the benches and write the report; exit 0 even when a goal is missed (the report says so)."""
    args = parse_args(argv)
    # SIGTERM (e.g. `kill`) must still run the finally blocks that stop mongod and the daemons.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    command = "python -m bench " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    started = time.monotonic()
    report = Report(command=command.strip(), quick=args.quick)
    server = start_mongod(args.dbpath)
    reuse = args.dbpath is not None
    report.dbpath = args.dbpath
    try:
        report.machine = machine(server.uri)
        log(f"mongod {report.machine['mongod']} on port {server.port}")
        sizes = sorted(set(args.size_list))
        largest = f"pool_{sizes[-1]}"
        for size in sizes:
            s = seed(server.uri, f"pool_{size}", size, reuse=reuse)
            report.seeds.append(s)
            if s.reused:
                log(
                    f"reused {size:,} sessions (seeded in {s.seconds:.1f} s; {s.shifted:,} holds moved in"
                    f" {s.shift_seconds:.1f} s)"
                )
            else:
                log(f"seeded {size:,} sessions in {s.seconds:.1f} s")
        small = [f"small_{i:02d}" for i in range(SMALL_POOLS)]
        if args.benches & {"scrape", "footprint"}:
            for i, name in enumerate(small):
                seed(server.uri, name, args.small_pool, seed_value=100 + i, reuse=reuse)
            log(f"seeded {SMALL_POOLS} pools of {args.small_pool:,} sessions")
        twenty = [largest, *small]

        if "dbcost" in args.benches:
            log("database cost (mongod CPU)")
            assert server.process is not None
            report.dbcost = asyncio.run(_dbcost(server.uri, server.process.pid, sizes, args))
        if "refresh" in args.benches:
            log("refresh cost")
            report.refresh = asyncio.run(_refresh(server.uri, sizes, args, report))
        if "scrape" in args.benches:
            log(f"scrape (wrk {args.wrk_seconds:g} s per run)")
            report.scrape = scrape.run(
                server.uri,
                server.port,
                twenty,
                largest,
                duration=args.wrk_seconds,
                log=log,
                mongodb_exporter_seconds=args.mongodb_exporter_seconds,
            )
        if "scaling" in args.benches:
            log(f"/metrics as pools grow ({args.scale_list}, wrk {args.wrk_seconds:g} s per run)")
            report.scaling = scrape.scaling(
                args.scale_list,
                duration=args.wrk_seconds,
                log=log,
                connections=args.scale_conns,
                refresh_interval=args.scale_refresh_interval,
            )
        if "manypools" in args.benches:
            log(f"many pools ({args.many_pools} x {args.many_sessions} sessions, {args.many_minutes:g} min)")
            report.many = manypools.run(
                server.uri,
                pools=args.many_pools,
                sessions=args.many_sessions,
                minutes=args.many_minutes,
                interval=args.many_interval,
                concurrency=args.many_concurrency,
                reuse=reuse,
                log=log,
                configured=args.many_configured,
            )
        if "handlers" in args.benches:
            log(f"handlers ({args.callers} callers)")
            report.handler_pool = args.handler_pool
            report.handlers = _handlers(server.uri, largest, args)
        if "footprint" in args.benches:
            log(f"footprint ({args.footprint_minutes:g} min)")
            report.footprint = footprint.run(
                server.uri,
                twenty,
                minutes=args.footprint_minutes,
                interval=2 if args.quick else 15,
                every=0.5 if args.quick else 10,
                log=log,
            )
            report.footprint_interval = 2 if args.quick else 15
    finally:
        server.cleanup()
    report.seconds = time.monotonic() - started
    report.machine["load_after"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.render())
    log(f"wrote {out} ({report.seconds / 60:.1f} min)")
    for line in report.headlines():
        log(line)
    return 0


async def _dbcost(uri: str, pid: int, sizes: list[int], args: argparse.Namespace) -> list[dbcost.CostResult]:
    from datetime import UTC as _UTC

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, tz_aware=True, tzinfo=_UTC)
    try:
        return [
            await dbcost.bench_size(
                client,
                pid,
                f"pool_{size}",
                size,
                reps=cost_reps(size, args),
                batch_seconds=args.cost_batch_seconds,
                log=log,
            )
            for size in sizes
        ]
    finally:
        await client.close()


async def _refresh(uri: str, sizes: list[int], args: argparse.Namespace, report: Report) -> list[refresh.SizeResult]:
    from datetime import UTC as _UTC

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, tz_aware=True, tzinfo=_UTC)
    try:
        results = []
        for size, s in zip(sizes, report.seeds, strict=True):
            results.append(
                await refresh.bench_size(client, f"pool_{size}", size, reps_for(size, args), s.expected, log)
            )
        return results
    finally:
        await client.close()


def _handlers(uri: str, largest: str, args: argparse.Namespace) -> dict[str, dict[str, handlers.Run]]:
    from bench.procs import daemon, pools_config, wait_http
    from bench.scrape import refreshes_total

    out: dict[str, dict[str, handlers.Run]] = {}

    def compare() -> dict[str, handlers.Run]:
        return asyncio.run(
            handlers.compare(
                uri,
                "handlers",
                size=args.handler_pool,
                callers=args.callers,
                duration=args.handler_seconds,
                rounds=args.handler_rounds,
            )
        )

    out["idle"] = compare()
    for name, r in out["idle"].items():
        log(f"  {name:>4} idle: {r.rate:8.0f} ops/s, p99 {ms(r.p99)} ms, duplicates {r.duplicates}")
    # The real daemon refreshing the largest pool back to back (1 s interval, each refresh longer).
    proc = daemon(uri, pools_config([largest], busy=largest)).start()
    try:
        wait_http(proc.url("/readyz"), timeout=900)
        before = refreshes_total(proc)
        out["refreshing"] = compare()
        out["_refreshes"] = {"count": handlers.Run(ops=refreshes_total(proc) - before)}
    finally:
        proc.stop()
    for name, r in out["refreshing"].items():
        log(f"  {name:>4} refreshing: {r.rate:8.0f} ops/s, p99 {ms(r.p99)} ms, duplicates {r.duplicates}")
    return out


if __name__ == "__main__":
    sys.exit(main())
