"""`session-pool-exporter demo` as a new user runs it: every state moves on /metrics, then it cleans up."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from exporter.core import STATES
from exporter.mongod import free_port
from tests.support.cli import cli_command
from tests.support.metrics import parse_metrics, value

POOLS = ("telegram", "instagram")


def start_demo(port: int, *extra: str) -> subprocess.Popen[str]:
    """Start the demo subprocess with small, fast settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_POOL_EXPORTER_")}
    return subprocess.Popen(
        [*cli_command(), "demo", "--pools", "2", "--sessions", "60", "--handlers", "25", "--interval", "0.5",
         "--listen", f"127.0.0.1:{port}", "--log-format", "json", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def mongod_gone(stdout: str) -> bool:
    """True when the mongod the demo printed no longer answers."""
    match = re.search(r"mongodb:\s+(mongodb://\S+)", stdout)
    assert match, stdout
    client: MongoClient[dict[str, object]] = MongoClient(match[1], serverSelectionTimeoutMS=500)
    try:
        client.admin.command("ping")
    except PyMongoError:
        return True
    finally:
        client.close()
    return False


def test_demo_moves_every_state_and_cleans_up() -> None:
    """Scraping the demo shows each of the five states changing; SIGTERM then stops it with exit 0."""
    port = free_port()
    process = start_demo(port)
    seen: dict[tuple[str, str], set[float]] = defaultdict(set)

    def all_moved() -> bool:
        # Each state changed value in at least one pool.
        """True when each state changed in at least one pool."""
        return all(any(len(seen[(p, str(s))]) >= 2 for p in POOLS) for s in STATES)

    try:
        deadline = time.monotonic() + 150
        while process.poll() is None and time.monotonic() < deadline and not all_moved():
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            except httpx.TransportError:
                time.sleep(0.3)
                continue
            assert response.status_code == 200
            samples = parse_metrics(response.text)
            for pool in POOLS:
                for state in STATES:
                    got = value(samples, "session_pool_sessions", pool=pool, state=str(state))
                    if got is not None:
                        seen[(pool, str(state))].add(got)
            time.sleep(0.5)
        assert all_moved(), dict(seen)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr[-3000:]
    assert f"http://127.0.0.1:{port}/metrics" in stdout
    assert f"http://127.0.0.1:{port}/readyz" in stdout
    assert "stopped" in stdout
    assert mongod_gone(stdout)


def test_demo_stops_by_itself_after_duration() -> None:
    """--duration S ends the demo on its own, exit 0, mongod gone."""
    process = start_demo(free_port(), "--duration", "2")
    try:
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr[-3000:]
    assert "Stopping after 2 s." in stdout
    assert mongod_gone(stdout)


def test_demo_stops_cleanly_on_ctrl_c() -> None:
    """Ctrl-C (SIGINT): exporter, handlers and mongod stop; exit code 0."""
    sig = signal.SIGINT
    port = free_port()
    process = start_demo(port)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        assert process.poll() is None, process.communicate()[1][-3000:]
        process.send_signal(sig)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr[-3000:]
    assert mongod_gone(stdout)


def test_a_busy_port_is_refused_before_mongod_starts() -> None:
    """The demo's port taken: one clear sentence, exit 3, no mongod started."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start_demo(port)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 3, stderr
    assert f"demo: cannot listen on 127.0.0.1:{port}: address already in use" in stderr
    assert "starting a throwaway mongod" not in stdout


def test_demo_prints_a_console_link_with_a_ready_token() -> None:
    """The console's address carries a token in its fragment (never a query string); it works for the
    console's calls, the demo's sessions are searchable by login, and no log line holds the token."""
    port = free_port()
    process = start_demo(port)
    try:
        assert process.stdout is not None
        printed: list[str] = []
        link = None
        deadline = time.monotonic() + 120
        while link is None and time.monotonic() < deadline and process.poll() is None:
            # A line at a time, as the user reads it (the block is printed, and flushed, at once).
            line = process.stdout.readline()
            printed.append(line)
            link = re.search(r"console:\s+(\S+)", line)
        assert link is not None, f"the demo printed no console address: {printed}"
        url = link[1]
        base, _, fragment = url.partition("#")
        assert base == f"http://127.0.0.1:{port}/admin/ui/" and "?" not in base
        assert fragment.startswith("token=")
        token = fragment.removeprefix("token=")
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(base, timeout=10).status_code == 200
        pools = httpx.get(f"http://127.0.0.1:{port}/admin/pools", headers=headers, timeout=10).json()["pools"]
        assert [p["search_fields"] for p in pools] == [["phone", "login"]] * 2
        found = httpx.get(
            f"http://127.0.0.1:{port}/admin/pools/telegram/sessions",
            params={"q": "telegram-0000"}, headers=headers, timeout=10,
        ).json()  # fmt: skip
        assert found["total"] == 10 and all("login" in s["fields"] for s in found["sessions"])
        process.send_signal(signal.SIGTERM)
        _stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr[-3000:]
    assert token not in stderr


# --- stopping quickly, also after the demo's own mongod died ----------------------------------------

PROMISE = 2.0  # seconds from Ctrl-C to the exit, as for `run` (README); the demo's own bounds total about 1 s
MONGOD_EXITED = (
    "demo: mongod exited (code -9); the exporter keeps running and reports MongoDB unreachable; press Ctrl-C to stop"
)


class _Demo:
    """The demo subprocess with its output read as it comes, and its mongod (a child process) at hand."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process = start_demo(self.port)
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, into in ((self.process.stdout, self.out), (self.process.stderr, self.err)):
            threading.Thread(target=lambda s=stream, i=into: i.extend(s), daemon=True).start()

    def wait_ready(self) -> None:
        """Wait until /readyz answers 200."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.process.poll() is None:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=5).status_code == 200:
                    return
            time.sleep(0.2)
        raise AssertionError(f"the demo never got ready: {''.join(self.err)[-3000:]}")

    def kill_mongod(self) -> Path:
        """Once ready, kill the demo's mongod (-9) and wait for the demo to say so; mongod's data directory."""
        self.wait_ready()
        # Started from a worker thread: /proc lists a child under the thread (task) that forked it.
        tasks = Path(f"/proc/{self.process.pid}/task").iterdir()
        children = [c for task in tasks for c in (task / "children").read_text().split()]
        (pid,) = [int(c) for c in children if "mongod" in Path(f"/proc/{c}/cmdline").read_text()]
        args = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
        os.kill(pid, signal.SIGKILL)
        self.wait_printed(MONGOD_EXITED)
        return Path(args[args.index("--dbpath") + 1])

    def wait_printed(self, line: str, deadline: float = 15.0) -> None:
        """Wait until the demo printed `line`."""
        end = time.monotonic() + deadline
        while line not in "".join(self.out):
            assert time.monotonic() < end, "".join(self.out)[-3000:]
            time.sleep(0.05)

    def signal_and_wait(self, *signals: signal.Signals, between: float = 0.2) -> tuple[float, int]:
        """Send the signals `between` seconds apart; the seconds from the first to the exit, the exit code."""
        started = time.monotonic()
        for i, sig in enumerate(signals):
            if i:
                time.sleep(between)
            self.process.send_signal(sig)
        code = self.process.wait(timeout=60)
        took = time.monotonic() - started
        print(f"demo, {'+'.join(s.name for s in signals)}: stopped in {took:.2f} s (exit {code})")
        time.sleep(0.2)  # the reader threads take the last lines
        return took, code

    def close(self) -> None:
        """End the demo if a failed test left it running: Ctrl-C twice (mongod goes with it), SIGKILL last."""
        for sig in (signal.SIGINT, signal.SIGINT, signal.SIGKILL):
            if self.process.poll() is not None:
                return
            self.process.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)


def test_demo_says_when_its_mongod_died_and_ctrl_c_still_ends_it_quickly() -> None:
    """Its mongod killed (-9): the demo says so in one line, the exporter keeps serving and says MongoDB is
    unreachable; Ctrl-C then ends the demo within 2 s, exit 0, no traceback, the data directory gone."""
    demo = _Demo()
    try:
        dbpath = demo.kill_mongod()
        deadline = time.monotonic() + 15
        while (ready := httpx.get(f"http://127.0.0.1:{demo.port}/readyz", timeout=10)).status_code == 200:
            assert time.monotonic() < deadline, "/readyz still 200 with mongod gone"
            time.sleep(0.2)
        assert ready.status_code == 503 and any("MongoDB unreachable" in r for r in ready.json()["reasons"])
        took, code = demo.signal_and_wait(signal.SIGINT)
    finally:
        demo.close()
    stdout, stderr = "".join(demo.out), "".join(demo.err)
    assert code == 0, stderr[-3000:]
    assert took < PROMISE, f"{took:.2f} s from Ctrl-C to the exit"
    assert stdout.count("demo: mongod exited") == 1
    assert "Traceback" not in stderr and "CancelledError" not in stderr, stderr[-5000:]
    assert stdout.rstrip().endswith("demo: stopped; mongod and its data directory are gone")
    assert not dbpath.exists()


def test_a_second_ctrl_c_ends_the_demo_at_once() -> None:
    """A second Ctrl-C while the first shutdown waits on a dead mongod: exit 130 at once, data directory gone."""
    demo = _Demo()
    try:
        dbpath = demo.kill_mongod()
        time.sleep(1.0)  # refreshes are now waiting for a server: the first shutdown gives them 0.3 s
        took, code = demo.signal_and_wait(signal.SIGINT, signal.SIGINT)
    finally:
        demo.close()
    stdout, stderr = "".join(demo.out), "".join(demo.err)
    assert code == 128 + signal.SIGINT, stderr[-3000:]
    assert took < PROMISE, f"{took:.2f} s from the first Ctrl-C to the exit"
    assert "demo: second SIGINT: stopped at once; mongod killed" in stdout
    assert "demo: stopped;" not in stdout  # the graceful path did not finish first
    assert "Traceback" not in stderr
    assert not dbpath.exists()
