"""400 clients trickling request headers at a daemon limited to 256 open files: /metrics still answers.

Without limits the daemon ran out of file descriptors, /metrics timed out and asyncio logged one
traceback per refused accept (47 MB in 20 s). The clients here behave like slowloris: they send a
request line and one header line a second, never finish, and reconnect when closed.
"""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from tests.support.daemon import config, running
from tests.support.figures import Report
from tests.support.metrics import parse_metrics, value

CLIENTS = 400
NOFILE = 256
ATTACK_SECONDS = 15.0


ATTACKER = """
import asyncio, signal, sys
port, clients = int(sys.argv[1]), int(sys.argv[2])
opened = 0
stop = asyncio.Event()

async def client():
    global opened
    while not stop.is_set():
        writer = None
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            opened += 1
            writer.write(b"GET /metrics HTTP/1.1\\r\\nHost: x\\r\\n")
            while not stop.is_set():
                await asyncio.sleep(1)
                writer.write(b"X-Slow: 1\\r\\n")
                await writer.drain()
        except OSError:
            await asyncio.sleep(0.2)
        finally:
            if writer is not None:
                writer.close()

async def main():
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await stop.wait()
    for task in tasks:
        task.cancel()
    print(opened, flush=True)

asyncio.run(main())
"""


class Trickle:
    """CLIENTS slow connections kept open (and reopened) against the daemon, from a process of their own."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.process: subprocess.Popen[str] | None = None
        self.opened = 0

    def __enter__(self) -> Trickle:
        self.process = subprocess.Popen(
            [sys.executable, "-c", ATTACKER, str(self.port), str(CLIENTS)], stdout=subprocess.PIPE, text=True
        )
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        out, _ = self.process.communicate(timeout=30)
        self.opened = int(out.strip() or 0)


def scrape(url: str, latencies: list[float], failures: list[str]) -> None:
    """Scrape /metrics on a fresh connection four times a second during the attack."""
    deadline = time.monotonic() + ATTACK_SECONDS
    time.sleep(2)  # let the attack fill the daemon first
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            response = httpx.get(url + "/metrics", timeout=5)
            latencies.append(time.monotonic() - started)
            if response.status_code != 200:
                failures.append(f"{response.status_code}: {response.text[:100]}")
        except httpx.HTTPError as exc:
            failures.append(f"{type(exc).__name__} after {time.monotonic() - started:.1f} s")
        time.sleep(0.25)


def test_metrics_answers_within_two_seconds_under_a_slowloris(mongo_uri: str, unique_name: str, report: Report) -> None:
    """Every scrape during the attack answers 200 within 2 s; the daemon survives; its log stays small."""
    cfg = config(mongo_uri, [{"name": "p", "database": "spe_slow", "collection": unique_name}], tokens=False,
                 http={"header_timeout": 5}, log={"level": "info", "format": "json"})  # fmt: skip
    latencies: list[float] = []
    failures: list[str] = []
    attack = Trickle(0)
    with running(cfg, ready=True, nofile=NOFILE) as daemon:
        attack.port = daemon.port
        with attack:
            scrape(daemon.url, latencies, failures)
        samples = parse_metrics(daemon.get("/metrics").text)
        assert daemon.alive()
    opened = attack.opened
    logs = daemon.logs()
    report.record("security", "slow clients", {
        "answer": f"{len(latencies)} scrapes, {len(failures)} failed, "
                  f"slowest {max(latencies, default=0) * 1000:.0f} ms",
        "clients": CLIENTS, "open_files_limit": NOFILE, "connections_opened": opened,
        "log_bytes": len(logs), "secrets_found": 0,
    })  # fmt: skip
    assert not failures, failures[:5]
    assert latencies and max(latencies) < 2.0, sorted(latencies)[-5:]
    assert opened > CLIENTS  # the attack really ran, and reconnected after being closed
    closed = sum(
        value(samples, "session_pool_http_connections_closed_total", reason=r) or 0 for r in ("evicted", "slow_header")
    )
    assert closed > 0
    assert len(logs) < 64 * 1024 and logs.count("\n") < 300, (len(logs), logs[-2000:])
