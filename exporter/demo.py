"""`session-pool-exporter demo`: a throwaway mongod, simulated handlers and the exporter, all in one process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import signal
import socket
import sys
from datetime import UTC
from pathlib import Path
from typing import Any, NoReturn

from pymongo import AsyncMongoClient

from exporter.assembly import build
from exporter.collector import close_client
from exporter.config import Config, is_loopback, parse_listen
from exporter.core import MongoSessions, SessionPoolError
from exporter.exits import EXIT_CONFIG, EXIT_LISTEN
from exporter.listeners import ListenError, bind
from exporter.log import get_logger, setup_logging
from exporter.mongod import Mongod, MongodNotFound, free_port

log = get_logger("exporter.demo")

DATABASE = "demo"
POOL_NAMES = ("telegram", "instagram", "twitter", "vk", "discord", "reddit", "tiktok", "youtube", "twitch", "x")

# Verdict odds of one use, chosen so every state moves within seconds and the pool stays usable.
P_SUCCESS = 0.86
P_LOCK = 0.06
P_BLOCK = 0.02
P_INACTIVE = 0.01
# Rest: the handler gave up without a verdict (the session stays in use until next_use).
# One session in FLAKY_EVERY is flaky: it succeeds far less often, so the console's
# "Underperforming" tab and session_pool_underperforming_sessions have something to show.
FLAKY_EVERY = 25
# Seconds the demo waits for every pool's first refresh before printing where everything is.
FIRST_REFRESH_WAIT = 15.0
P_SUCCESS_FLAKY = 0.35
# Seconds between two looks at the demo's mongod (has it exited?).
MONGOD_POLL = 0.5


def run_demo(args: argparse.Namespace) -> int:
    """The `demo` command; returns the exit code."""
    problems = []
    if not 1 <= args.pools <= len(POOL_NAMES):
        problems.append(f"--pools must be between 1 and {len(POOL_NAMES)}")
    if not 1 <= args.sessions <= 100_000:
        problems.append("--sessions must be between 1 and 100000")
    if not 1 <= args.handlers <= 500:
        problems.append("--handlers must be between 1 and 500")
    if not args.interval > 0:
        problems.append("--interval must be > 0")
    if args.duration is not None and not args.duration > 0:
        problems.append("--duration must be > 0")
    try:
        parse_listen(args.listen)
    except ValueError as exc:
        problems.append(f"--listen: {exc}")
    if problems:
        for problem in problems:
            print(f"demo: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(args.log_level, args.log_format)
    try:
        # Bound now and kept: the port is ours before mongod starts and before anything says "listening".
        listener = bind(args.listen)
    except ListenError as exc:
        print(f"demo: {exc.message}; pick another with --listen HOST:PORT", file=sys.stderr)
        return EXIT_LISTEN
    try:
        return asyncio.run(_demo(args, listener))
    except KeyboardInterrupt:
        return 0
    finally:
        # The loop's handlers are gone: a Ctrl-C from here on would raise KeyboardInterrupt mid-exit.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _exit_at_once)
        listener.close()


def _exit_at_once(sig: int, _frame: Any) -> None:
    """A signal after the demo's loop ended: exit now (the demo has cleaned up already)."""
    os._exit(128 + sig)


class _Stop:
    """Ctrl-C and SIGTERM: the first stops the demo (within 2 s), a second one ends it at once."""

    def __init__(self, server: Mongod) -> None:
        self.server = server
        self.event = asyncio.Event()

    def install(self) -> None:
        """Handle SIGINT and SIGTERM in the running loop."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.received, sig)

    def received(self, sig: int) -> None:
        """A signal: the first stops gracefully, a second ends the process now."""
        if not self.event.is_set():
            self.event.set()
            return
        self.now(sig)

    def now(self, sig: int) -> NoReturn:
        """Exit with 128 + sig without waiting for anything: mongod killed, its data directory removed."""
        with contextlib.suppress(Exception):
            _discard(self.server)
        print(f"demo: second {signal.Signals(sig).name}: stopped at once; mongod killed", flush=True)
        sys.stderr.flush()
        os._exit(128 + sig)


async def _first(task: asyncio.Task[Any], stop: _Stop) -> bool:
    """Wait for `task` or Ctrl-C, whichever comes first: True when the task is done."""
    stopping = asyncio.create_task(stop.event.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    return task.done()


async def _start(server: Mongod, stop: _Stop) -> bool:
    """Start mongod in a thread; False when Ctrl-C came first (mongod is then killed, so start() gives up)."""
    starting = asyncio.create_task(asyncio.to_thread(server.start))
    if await _first(starting, stop):
        starting.result()  # MongodNotFound, or mongod failing to start
        return True
    while not starting.done():
        if server.process is not None and server.process.poll() is None:
            server.process.kill()
        await asyncio.wait({starting}, timeout=0.05)
    with contextlib.suppress(Exception):
        starting.result()
    return False


async def _demo(args: argparse.Namespace, listener: socket.socket) -> int:
    """Start mongod, run the demo, always clean up."""
    server = Mongod()
    stop = _Stop(server)
    stop.install()
    try:
        print("demo: starting a throwaway mongod ...", flush=True)
        try:
            if not await _start(server, stop):
                return 0
        except MongodNotFound as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 1
        return await _run(args, server, stop, listener)
    finally:
        await asyncio.to_thread(_discard, server)
        print("demo: stopped; mongod and its data directory are gone", flush=True)


def _discard(server: Mongod) -> None:
    """Kill the demo's mongod and remove its data directory: a clean shutdown would take a second for data
    about to be deleted (the demo stops within 2 s of Ctrl-C, like `run`)."""
    server.kill()
    server.cleanup()


async def _watch_mongod(server: Mongod, fleet: list[asyncio.Task[None]]) -> None:
    """Say so, once, when the demo's own mongod exits; the simulated handlers stop (they have nothing to use)."""
    while server.process is not None and server.process.poll() is None:  # noqa: ASYNC110 - Popen cannot be awaited
        await asyncio.sleep(MONGOD_POLL)
    code = server.process.returncode if server.process is not None else None
    for task in fleet:
        task.cancel()
    print(
        f"demo: mongod exited (code {code}); the exporter keeps running and reports MongoDB unreachable; "
        "press Ctrl-C to stop",
        flush=True,
    )


def _config(args: argparse.Namespace, uri: str, token_file: Path) -> Config:
    """The demo's exporter configuration, with one write token for the admin API."""
    host, _ = parse_listen(args.listen)
    # The admin API shares the demo's listener on loopback; elsewhere it gets a loopback one of its own.
    admin_listen = None if is_loopback(host) else f"127.0.0.1:{free_port()}"
    data: dict[str, Any] = {
        "admin": {
            "tokens": [{"name": "demo", "role": "write", "token_file": str(token_file)}],
            "listen": admin_listen,
        },
        "listen": args.listen,
        "mongodb": {"uri": uri, "timeout": 5},
        "log": {"level": args.log_level, "format": args.log_format},
        "defaults": {
            "interval": args.interval,
            "jitter": min(0.5, args.interval / 4),
            "lock_time": 120,
            # The sums of a demo's small pools cost nothing: read them often so the uses move.
            "sums_interval": max(args.interval, 5),
            # Small enough to flag the flaky sessions within minutes of a demo.
            "underperforming": {"min_uses": 20, "interval": 10},
        },
        "pools": [
            {
                "name": name,
                "database": DATABASE,
                "collection": name,
                "session_fields": {"search": ["phone", "login"], "show": ["country"]},
            }
            for name in POOL_NAMES[: args.pools]
        ],
    }
    return Config.model_validate(data)


async def _seed(client: AsyncMongoClient[dict[str, Any]], names: list[str], count: int) -> list[MongoSessions]:
    """Fresh collections with `count` sessions each."""
    pools = []
    rng = random.Random(7)  # noqa: S311 - simulation, not security
    for name in names:
        pool = MongoSessions(db=DATABASE, collection=name, client=client, lock_time=120, block_time=900)
        await pool.connect()
        await pool.collection.drop()
        await client[DATABASE].create_collection(name)  # on purpose: nothing creates a pool's collection by accident
        await pool.ensure_indexes()
        for start in range(0, count, 1000):
            batch = [
                {
                    "session": {
                        "login": f"{name}-{i:05d}",
                        "phone": f"+7900{i:07d}",
                        "country": rng.choice(("NL", "DE", "PL", "PT")),
                        "token": f"demo-{rng.getrandbits(64):016x}",
                        **({"flaky": True} if i % FLAKY_EVERY == 0 else {}),
                    }
                }
                for i in range(start, min(start + 1000, count))
            ]
            for doc in batch:
                await pool.add(doc)
        pools.append(pool)
    return pools


async def _handler(pool: MongoSessions, seed: int, stop: asyncio.Event) -> None:
    """One simulated handler: take a session, use it, report a verdict."""
    rng = random.Random(seed)  # noqa: S311 - simulation, not security
    failing = False
    while not stop.is_set():
        try:
            doc = await pool.get_session()
            if doc is None:
                await asyncio.sleep(rng.uniform(0.2, 0.6))
                continue
            await asyncio.sleep(rng.uniform(0.05, 0.4))  # "work" with the account
            roll = rng.random()
            if doc.get("session", {}).get("flaky") and roll < P_SUCCESS:
                # A flaky account: most of its would-be successes end without a verdict.
                roll = P_SUCCESS + P_LOCK + P_BLOCK + P_INACTIVE if rng.random() > P_SUCCESS_FLAKY else roll
            if roll < P_SUCCESS:
                await pool.session_success(doc)
            elif roll < P_SUCCESS + P_LOCK:
                await pool.session_lock(doc, {"seconds": rng.uniform(10, 60)})
            elif roll < P_SUCCESS + P_LOCK + P_BLOCK:
                await pool.session_block(doc, {"seconds": rng.uniform(60, 300)})
            elif roll < P_SUCCESS + P_LOCK + P_BLOCK + P_INACTIVE:
                await pool.session_inactive(doc)
            failing = False
            await asyncio.sleep(rng.uniform(0.2, 1.0))
        except SessionPoolError as exc:
            if not failing:
                log.warning("demo_handler_error", pool=pool.collection.name, error=exc.message)
            failing = True
            await asyncio.sleep(1)


async def _activator(pool: MongoSessions, seed: int, stop: asyncio.Event) -> None:
    """An operator bringing disabled accounts back now and then, so `inactive` goes down too."""
    rng = random.Random(seed)  # noqa: S311 - simulation, not security
    while not stop.is_set():
        await asyncio.sleep(rng.uniform(3, 7))
        with contextlib.suppress(SessionPoolError):
            docs = await pool.collection.find({pool.active: False}, {"_id": 1}).to_list(50)
            if docs:
                await pool.session_activate(rng.choice(docs))


def banner(
    args: argparse.Namespace, names: list[str], base: str, admin_base: str, token: str, token_file: Path, uri: str
) -> str:
    """What the demo tells its user: where everything is, and the lines to paste into another terminal."""
    admin_note = "the demo's one port" if admin_base == base else "its own loopback port"
    return (
        f"demo: {len(names)} pools ({', '.join(names)}) of {args.sessions} sessions each in database "
        f"{DATABASE!r}, {args.handlers} simulated handlers per pool\n"
        f"  metrics:  {base}/metrics\n"
        f"  ready:    {base}/readyz\n"
        f"  admin:    {admin_base}/admin/pools  (admin API on {admin_note}; a daemon's is on 127.0.0.1:9811)\n"
        # The fragment never reaches a server or a log; the page moves it into sessionStorage.
        f"  console:  {admin_base}/admin/ui/#token={token}\n"
        f"  mongodb:  {uri}\n"
        "In another terminal, paste these for the admin API, doctor and a daemon of your own:\n"
        f"  export SESSION_POOL_EXPORTER_MONGODB__URI='{uri}'\n"
        f'  export SESSION_POOL_EXPORTER_ADMIN_TOKEN="$(cat {token_file})"\n'
        + ("Press Ctrl-C to stop." if args.duration is None else f"Stopping after {args.duration:g} s.")
    )


async def _run(args: argparse.Namespace, server: Mongod, stop: _Stop, listener: socket.socket) -> int:
    """Seed, start the fleet and the exporter, wait for Ctrl-C or --duration."""
    # A throwaway admin token, in a file only this user can read: never printed or logged.
    assert server.dbpath is not None
    token_file = server.dbpath / "admin-token"
    token_file.touch(mode=0o600)
    token = secrets.token_urlsafe(24)
    token_file.write_text(token)
    config = _config(args, server.uri, token_file)
    names = [p.name for p in config.pools]
    fleet_client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        server.uri, tz_aware=True, tzinfo=UTC, appname="demo-fleet"
    )
    daemon = build(config)
    uv = daemon.server(install_signals=False)
    admin_uv = daemon.admin_server()
    servers = [s for s in (uv, admin_uv) if s is not None]
    tasks: list[asyncio.Task[None]] = []
    serving: list[asyncio.Task[None]] = []
    try:
        print(f"demo: seeding {len(names)} pools x {args.sessions} sessions ...", flush=True)
        seeding = asyncio.create_task(_seed(fleet_client, names, args.sessions))
        if not await _first(seeding, stop):
            seeding.cancel()
            return 0
        pools = seeding.result()
        for i, pool in enumerate(pools):
            tasks += [asyncio.create_task(_handler(pool, i * 1000 + h, stop.event)) for h in range(args.handlers)]
            tasks.append(asyncio.create_task(_activator(pool, i, stop.event)))
        tasks.append(asyncio.create_task(_watch_mongod(server, list(tasks))))
        serving = [asyncio.create_task(uv.serve(sockets=[listener]))]
        if admin_uv is not None:
            serving.append(asyncio.create_task(admin_uv.serve()))
        while not uv.started and not serving[0].done():  # noqa: ASYNC110 - uvicorn has no startup event
            await asyncio.sleep(0.05)
        if serving[0].done():
            print("demo: the HTTP server did not start", file=sys.stderr)
            return 1
        # The URLs are printed once every pool has its first statistics: what they show is never empty.
        for _ in range(int(FIRST_REFRESH_WAIT / 0.05)):
            if all(pool.up for pool in daemon.collector.pools.values()) or stop.event.is_set():
                break
            await asyncio.sleep(0.05)
        host, port = parse_listen(args.listen)
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        base = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}"
        admin_base = base if config.admin.listen is None else f"http://{config.admin.listen}"
        print(banner(args, names, base, admin_base, token, token_file, server.uri), flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.event.wait(), timeout=args.duration)
        return 0
    finally:
        # The simulated handlers first (they may be waiting on MongoDB), then both listeners and the
        # collector (within about 1.1 s whatever MongoDB does), the fleet's client meanwhile.
        stop.event.set()
        for task in tasks:
            task.cancel()
        for uvicorn_server in servers:
            uvicorn_server.should_exit = True
        await asyncio.gather(*tasks, *serving, close_client(fleet_client), return_exceptions=True)
