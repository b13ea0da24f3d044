"""Load: /metrics and admin reads at high concurrency while 20 pools refresh and handlers churn."""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
import uuid
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped,unused-ignore]
from pymongo import AsyncMongoClient, MongoClient

from exporter import MongoSessions
from tests.support.daemon import READ_TOKEN, WRITE_TOKEN, running
from tests.support.figures import Report
from tests.support.metrics import parse_metrics, value
from tests.support.stats import latency_summary
from tests.system.reliability.harness import base_config

# CI runs 20 s (the default); docs/reliability.md is produced with RELIABILITY_LOAD_SECONDS=60.
DURATION = float(os.environ.get("RELIABILITY_LOAD_SECONDS", "20"))
WARMUP = 3.0
POOLS = 20
SESSIONS = 50
CONCURRENCY = 32
HANDLERS = 24


async def handler(pool: MongoSessions, stop: asyncio.Event, counts: dict[str, int], rng: random.Random) -> None:
    """A simulated worker: take a session, then succeed, lock, block or (rarely) deactivate it."""
    while not stop.is_set():
        session = await pool.get_session(next_use_delay=0.2)
        if session is None:
            await asyncio.sleep(0.05)
            continue
        roll = rng.random()
        if roll < 0.70:
            await pool.session_success(session, next_use_delay=0.2)
            counts["success"] += 1
        elif roll < 0.85:
            await pool.session_lock(session, {"seconds": 1})
            counts["lock"] += 1
        elif roll < 0.95:
            await pool.session_block(session, {"seconds": 2})
            counts["block"] += 1
        else:
            await pool.session_inactive(session)
            counts["inactive"] += 1
            await asyncio.sleep(0.2)
            await pool.session_activate(session)
            counts["activate"] += 1
        await asyncio.sleep(0)


# Share of requests per route: what a Prometheus server, a dashboard and operators would send.
WEIGHTS = {"GET /metrics": 0.4, "GET /admin/pools": 0.2, "GET session": 0.2, "GET /admin/audit": 0.2}


async def reader(
    http: httpx.AsyncClient, routes: dict[str, list[str]], stop: asyncio.Event,
    latencies: dict[str, list[float]], errors: list[str], rng: random.Random,
) -> None:  # fmt: skip
    """Hit a weighted random read route until told to stop, timing each request."""
    names = list(WEIGHTS)
    weights = [WEIGHTS[n] for n in names]
    while not stop.is_set():
        name = rng.choices(names, weights)[0]
        path = rng.choice(routes[name])
        started = time.perf_counter()
        try:
            response = await http.get(path)
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                errors.append(f"{name}: {response.status_code} {response.text[:200]}")
            latencies[name].append(elapsed)
        except httpx.HTTPError as exc:
            errors.append(f"{name}: {type(exc).__name__}: {exc}")


async def test_reads_under_load_with_churn(mongo_uri: str, report: Report) -> None:
    """Zero errors, p50/p99 recorded, daemon RSS growth under 10 % between first and last third."""
    db = f"rel_load_{uuid.uuid4().hex[:8]}"
    seed: MongoClient[dict[str, Any]] = MongoClient(mongo_uri)
    ids: dict[str, list[Any]] = {}
    for i in range(POOLS):
        docs = [{"active": True, "count_use": 0, "count_success": 0, "next_use": None, "last_use": None,
                 "session": {"login": f"u{i}-{j}"}} for j in range(SESSIONS)]  # fmt: skip
        ids[f"pool{i:02d}"] = list(seed[db][f"pool{i:02d}"].insert_many(docs).inserted_ids)
    pools = [{"name": name, "database": db, "collection": name} for name in ids]
    config = base_config(mongo_uri, pools, defaults={"interval": 1, "jitter": 0, "refresh_timeout": 2},
                         mongodb={"timeout": 5}, admin={"audit": {"database": db, "collection": "audit"}})  # fmt: skip
    with running(config, ready=True) as daemon:
        assert daemon.process is not None
        proc = psutil.Process(daemon.process.pid)
        # Some audit events to search.
        async with daemon.async_client(WRITE_TOKEN) as admin:
            for name in list(ids)[:4]:
                for sid in ids[name][:3]:
                    assert (await admin.post(f"/admin/pools/{name}/sessions/{sid}/lock",
                                             json={"period": {"seconds": 1}})).status_code == 200  # fmt: skip
        routes = {
            "GET /metrics": ["/metrics"],
            "GET /admin/pools": ["/admin/pools"],
            "GET session": [f"/admin/pools/{n}/sessions/{ids[n][k]}" for n in ids for k in (0, 7)],
            "GET /admin/audit": [f"/admin/audit?pool={n}&page_size=50" for n in list(ids)[:10]],
        }
        latencies: dict[str, list[float]] = {name: [] for name in routes}
        errors: list[str] = []
        counts = {"success": 0, "lock": 0, "block": 0, "inactive": 0, "activate": 0}
        rss: list[tuple[float, int]] = []
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                rss.append((time.monotonic(), proc.memory_info().rss))
                sampling.wait(0.25)

        before = parse_metrics((await daemon.async_client(None).get("/metrics")).text)
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, tz_aware=True)
        handled = [MongoSessions(db=db, collection=n, client=client, create_indexes=False) for n in ids]
        stop = asyncio.Event()
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        async with daemon.async_client(READ_TOKEN, limits=limits) as http:
            workers = [asyncio.create_task(handler(handled[i % POOLS], stop, counts, random.Random(i)))
                       for i in range(HANDLERS)]  # fmt: skip
            readers = [asyncio.create_task(reader(http, routes, stop, latencies, errors, random.Random(100 + i)))
                       for i in range(CONCURRENCY)]  # fmt: skip
            await asyncio.sleep(WARMUP)
            sampler = threading.Thread(target=sample, daemon=True)
            measured_from = time.monotonic()
            sampler.start()
            await asyncio.sleep(DURATION)
            stop.set()
            await asyncio.gather(*workers, *readers)
            sampling.set()
            sampler.join()
            measured = time.monotonic() - measured_from
        await client.close()
        after = parse_metrics((await daemon.async_client(None).get("/metrics")).text)
        assert daemon.alive()
    seed.drop_database(db)
    seed.close()
    assert not errors, errors[:10]
    third = len(rss) // 3
    first, last = rss[:third], rss[-third:]
    first_mb = sum(r for _, r in first) / len(first) / 2**20
    last_mb = sum(r for _, r in last) / len(last) / 2**20
    growth = (last_mb - first_mb) / first_mb
    refreshes = sum((value(after, "session_pool_refreshes_total", pool=n) or 0)
                    - (value(before, "session_pool_refreshes_total", pool=n) or 0) for n in ids)  # fmt: skip
    failures = sum((value(after, "session_pool_refresh_failures_total", pool=n) or 0)
                   - (value(before, "session_pool_refresh_failures_total", pool=n) or 0) for n in ids)  # fmt: skip
    total = sum(len(v) for v in latencies.values())
    report.record("load", "duration_s", round(measured, 1))
    report.record("load", "setup", {"pools": POOLS, "sessions_per_pool": SESSIONS, "interval_s": 1,
                                    "http_concurrency": CONCURRENCY, "handlers": HANDLERS})  # fmt: skip
    report.record("load", "requests", total)
    report.record("load", "requests_per_s", round(total / (measured + WARMUP), 1))
    report.record("load", "errors", len(errors))
    report.record("load", "latency_by_route", {k: latency_summary(v) for k, v in sorted(latencies.items())})
    report.record("load", "latency_all", latency_summary([x for v in latencies.values() for x in v]))
    report.record("load", "handler_operations", counts)
    report.record("load", "refreshes", int(refreshes))
    report.record("load", "refresh_failures", int(failures))
    report.record("load", "rss_mb", {"first_third": round(first_mb, 1), "last_third": round(last_mb, 1),
                                     "growth_pct": round(growth * 100, 2), "samples": len(rss)})  # fmt: skip
    assert growth < 0.10, (first_mb, last_mb)
    assert failures == 0, failures
    assert sum(counts.values()) > 100
