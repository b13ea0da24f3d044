"""400 clients trickling request headers at a daemon limited to 256 open files: /metrics still answers.

Without limits the daemon ran out of file descriptors, /metrics timed out and asyncio logged one
traceback per refused accept (47 MB in 20 s). The clients here behave like slowloris: they send a
request line and one header line a second, never finish, and reconnect when closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

import httpx

from tests.support.daemon import config, running
from tests.support.metrics import parse_metrics, value

CLIENTS = 400
NOFILE = 256
ATTACK_SECONDS = 15.0


class Trickle:
    """CLIENTS slow connections kept open (and reopened) against host:port, in a thread of their own."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.opened = 0
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _client(self) -> None:
        while not self.stop.is_set():
            writer: Any = None
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                self.opened += 1
                writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                while not self.stop.is_set():
                    await asyncio.sleep(1)
                    writer.write(b"X-Slow: 1\r\n")
                    await writer.drain()
            except OSError:
                await asyncio.sleep(0.2)
            finally:
                if writer is not None:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()

    async def _run(self) -> None:
        await asyncio.gather(*(self._client() for _ in range(CLIENTS)))

    def __enter__(self) -> Trickle:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def test_metrics_answers_within_two_seconds_under_a_slowloris(mongo_uri: str, unique_name: str) -> None:
    """Every scrape during the attack answers 200 within 2 s; the daemon survives; its log stays small."""
    cfg = config(mongo_uri, [{"name": "p", "database": "spe_slow", "collection": unique_name}], tokens=False,
                 http={"header_timeout": 5}, log={"level": "info", "format": "json"})  # fmt: skip
    latencies: list[float] = []
    failures: list[str] = []
    with running(cfg, ready=True, nofile=NOFILE) as daemon, Trickle(daemon.port) as attack:
        deadline = time.monotonic() + ATTACK_SECONDS
        time.sleep(2)  # let the attack fill the daemon first
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                response = httpx.get(daemon.url + "/metrics", timeout=5)
                latencies.append(time.monotonic() - started)
                if response.status_code != 200:
                    failures.append(f"{response.status_code}: {response.text[:100]}")
            except httpx.HTTPError as exc:
                failures.append(f"{type(exc).__name__} after {time.monotonic() - started:.1f} s")
            time.sleep(0.25)
        samples = parse_metrics(daemon.get("/metrics").text)
        assert daemon.alive()
        opened = attack.opened
    logs = daemon.logs()
    assert not failures, failures[:5]
    assert latencies and max(latencies) < 2.0, sorted(latencies)[-5:]
    assert opened > CLIENTS  # the attack really ran, and reconnected after being closed
    closed = sum(
        value(samples, "session_pool_http_connections_closed_total", reason=r) or 0 for r in ("evicted", "slow_header")
    )
    assert closed > 0
    assert len(logs) < 64 * 1024 and logs.count("\n") < 300, (len(logs), logs[-2000:])
