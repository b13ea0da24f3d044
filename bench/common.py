"""Shared bench helpers: the machine description, ratios, and seeding a pool with a realistic mix."""

from __future__ import annotations

import os
import platform
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import prometheus_client
import psutil  # type: ignore[import-untyped]
import pymongo
from pymongo import IndexModel, MongoClient

from exporter.mongod import Mongod, free_port
from tests.support.stats import percentile

DATABASE = "bench"

# Share of each state in a seeded pool. Holds are set to outlast the run (hours), so the mix does
# not drift while the benchmarks read it; real in-use holds are seconds long.
MIX = (("inactive", 0.05), ("blocked", 0.04), ("locked", 0.06), ("in_use", 0.05))
LEGACY_SHARE = 0.2  # documents written by the original library: no hold marker, some without `active`
SEED_BATCH = 10_000
# Seeded holds last an hour at least: a reused pool's holds are moved forward once they are this old
# (moving them rewrites ~15 % of the pool: 4 min at 10M sessions), so none runs out during a run.
HOLDS_KEPT = timedelta(minutes=20)


def median(values: list[float]) -> float:
    """The 50th percentile."""
    return percentile(values, 50)


def ratio(a: float, b: float) -> float:
    """a / b, nan when b is zero or either is nan."""
    if b == 0 or a != a or b != b:
        return float("nan")
    return a / b


def ms(seconds: float) -> str:
    """Seconds shown as milliseconds with sensible precision."""
    if seconds != seconds:
        return "n/a"
    value = seconds * 1000
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def fx(value: float) -> str:
    """A ratio shown as `0.42x`."""
    return "n/a" if value != value else f"{value:.2f}x" if value < 100 else f"{value:.0f}x"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _tool_version(args: list[str]) -> str | None:
    if shutil.which(args[0]) is None:
        return None
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else None


def machine(mongo_uri: str) -> dict[str, Any]:
    """What the figures were measured on."""
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri, serverSelectionTimeoutMS=5000)
    try:
        info = client.admin.command("buildInfo")
    finally:
        client.close()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "mongod": info.get("version"),
        "python": platform.python_version(),
        "pymongo": pymongo.version,
        "prometheus_client": getattr(prometheus_client, "__version__", None) or _dist_version("prometheus_client"),
        "wrk": _tool_version(["wrk", "--version"]),
        "mongodb_exporter": _tool_version(["prometheus-mongodb-exporter", "--version"]),
        "load_before": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


@dataclass
class SeedResult:
    """How a collection was seeded."""

    collection: str
    size: int
    seconds: float
    expected: dict[str, int]
    reused: bool = False
    shift_seconds: float = 0.0
    shifted: int = 0


def _doc(rng: random.Random, now: datetime) -> tuple[dict[str, Any], str]:
    """One session document and the state it was seeded in."""
    legacy = rng.random() < LEGACY_SHARE
    u = rng.random()
    state = "active"
    acc = 0.0
    for name, share in MIX:
        acc += share
        if u < acc:
            state = name
            break
    if legacy and state in ("locked", "in_use"):
        # A legacy hold is told apart by its length only; short ones would change state mid-run.
        state = "blocked"
    uses = rng.randrange(0, 5000)
    last_use = now - timedelta(seconds=rng.uniform(2, 30 * 86400)) if uses else None
    doc: dict[str, Any] = {
        "active": state != "inactive",
        "count_use": uses,
        "count_success": int(uses * rng.uniform(0.5, 1.0)),
        "created": now - timedelta(days=rng.uniform(30, 365)),
        "last_use": last_use,
        "next_use": (last_use + timedelta(seconds=1)) if last_use else None,
        "session": {"phone": f"+7900{rng.randrange(10**7):07d}", "token": f"{rng.getrandbits(128):032x}"},
    }
    if state == "blocked":
        doc["next_use"] = now + timedelta(hours=rng.uniform(3, 8))
    elif state == "locked":
        doc["next_use"] = now + timedelta(hours=rng.uniform(2, 3))
    elif state == "in_use":
        # Just handed out (last_use is recent), held long enough not to come back during the run.
        doc["last_use"] = now - timedelta(seconds=rng.uniform(0, 60))
        doc["next_use"] = now + timedelta(hours=rng.uniform(1, 2))
    kind = {"blocked": "block", "locked": "lock", "in_use": "use"}.get(state, "use" if last_use else None)
    if kind is not None and not legacy:
        # As this library writes a hold: the marker records the very next_use it set.
        doc["hold"] = {"kind": kind, "until": doc["next_use"]}
    if legacy and state != "inactive" and rng.random() < 0.25:
        del doc["active"]  # the original never hands such a session out: it counts as inactive
        state = "inactive"
    return doc, state


SEEDS = "bench_seeds"  # one document per seeded pool: size, seconds, expected states, seeding time


def seed(
    mongo_uri: str,
    collection: str,
    size: int,
    *,
    seed_value: int = 7,
    reuse: bool = False,
    database: str = DATABASE,
    holds_kept: timedelta = HOLDS_KEPT,
    client: MongoClient[dict[str, Any]] | None = None,
) -> SeedResult:
    """Fill `<database>.<collection>` with `size` sessions (insert_many, batches of 10 000), then index it.

    With `reuse`, a pool seeded earlier with the same size and seed (a persistent dbpath) is kept:
    its holds are moved forward by the time since seeding (once older than `holds_kept`) so the mix is
    what it was, and the result reports the original seeding time with `reused` set. `client`: a
    client of the caller's to seed with (thousands of small pools), left open; else one of its own.
    """
    own = client is None
    client = client if client is not None else MongoClient(mongo_uri, tz_aware=True)
    started = time.monotonic()
    expected = {"active": 0, "in_use": 0, "locked": 0, "blocked": 0, "inactive": 0}
    try:
        coll = client[database][collection]
        meta = client[database][SEEDS]
        if reuse:
            kept = _reuse(client, database, collection, size, seed_value, holds_kept)
            if kept is not None:
                return kept
        meta.delete_one({"_id": collection})
        coll.drop()
        rng = random.Random(seed_value)
        now = datetime.now(UTC)
        left = size
        while left:
            batch = []
            for _ in range(min(left, SEED_BATCH)):
                doc, state = _doc(rng, now)
                expected[state] += 1
                batch.append(doc)
            coll.insert_many(batch, ordered=False)
            left -= len(batch)
        # The indexes MongoSessions.connect() creates, built once after the load (faster than during it).
        coll.create_indexes(_index_models())
        seconds = time.monotonic() - started
        meta.replace_one(
            {"_id": collection},
            {"size": size, "seed": seed_value, "seconds": seconds, "expected": expected, "holds_from": now},
            upsert=True,
        )
    finally:
        if own:
            client.close()
    return SeedResult(collection, size, seconds, expected)


def shift_holds(coll: Any, after: datetime, shift_ms: int) -> int:
    """Move `next_use` of the sessions held past `after` by `shift_ms`, the hold marker's `until` with it."""
    until = {"$add": ["$hold.until", shift_ms]}
    moved = {"$mergeObjects": ["$hold", {"until": until}]}
    # The marker stays valid (until == next_use); a legacy document stays without one.
    hold = {"$cond": [{"$eq": [{"$type": "$hold"}, "object"]}, moved, "$$REMOVE"]}
    result = coll.update_many(
        {"next_use": {"$gt": after}}, [{"$set": {"next_use": {"$add": ["$next_use", shift_ms]}, "hold": hold}}]
    )
    return int(result.modified_count)


def _reuse(
    client: MongoClient[dict[str, Any]],
    database: str,
    collection: str,
    size: int,
    seed_value: int,
    holds_kept: timedelta,
) -> SeedResult | None:
    """The earlier seeding of this pool if it is still whole, its holds moved to start from now; else None."""
    doc = client[database][SEEDS].find_one({"_id": collection})
    coll = client[database][collection]
    if doc is None or doc.get("size") != size or doc.get("seed") != seed_value:
        return None
    if coll.count_documents({}) != size:
        return None
    now = datetime.now(UTC)
    holds_from: datetime = doc["holds_from"]
    shift_ms = int((now - holds_from).total_seconds() * 1000)
    shifted = 0
    started = time.monotonic()
    if now - holds_from > holds_kept:
        # Sessions held at seeding (next_use after the seeding time) are held again for as long.
        shifted = shift_holds(coll, holds_from, shift_ms)
        client[database][SEEDS].update_one({"_id": collection}, {"$set": {"holds_from": now}})
    return SeedResult(
        collection,
        size,
        float(doc["seconds"]),
        {k: int(v) for k, v in doc["expected"].items()},
        reused=True,
        shift_seconds=time.monotonic() - started,
        shifted=shifted,
    )


@cache
def _index_models() -> list[IndexModel]:
    """The indexes MongoSessions.connect() creates on a pool with the default field names."""
    from pymongo import AsyncMongoClient

    from exporter.core import MongoSessions

    unconnected: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient("mongodb://127.0.0.1:1", connect=False)
    specs = MongoSessions(client=unconnected, db=DATABASE, collection="any").index_specs()
    return [IndexModel(list(keys)) for keys, _why in specs]


def python() -> str:
    """The interpreter running the bench (subprocesses use the same one)."""
    return sys.executable


def start_mongod(dbpath: str | None) -> Mongod:
    """A throwaway mongod, or one on a persistent `dbpath` (kept; its port is kept too, in `bench-port`).

    The replica set's configuration names the member's port, so a restart on the same data must use it.
    """
    if dbpath is None:
        return Mongod().start()
    path = Path(dbpath)
    path.mkdir(parents=True, exist_ok=True)
    port_file = path / "bench-port"
    port = int(port_file.read_text()) if port_file.exists() else free_port()
    port_file.write_text(f"{port}\n")
    return Mongod(port=port, dbpath=path).start(timeout=300)
