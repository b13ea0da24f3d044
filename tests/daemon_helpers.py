"""Helpers for running the daemon as a real subprocess and reading its /metrics over HTTP."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.mongod import free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def cli_command() -> list[str]:
    """The installed console script next to this interpreter, else `python -m exporter`."""
    script = Path(sys.executable).parent / "session-pool-exporter"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "exporter"]


def parse_metrics(text: str) -> Samples:
    """Every sample of an exposition, keyed by (sample name, labels)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The value of one series, or None when it is absent."""
    return samples.get((name, frozenset(labels.items())))


@dataclass
class Daemon:
    """A `session-pool-exporter run` subprocess listening on a free port."""

    config: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="spe-daemon-")))

    @property
    def url(self) -> str:
        """Base URL of the daemon."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """File receiving the daemon's stderr (JSON logs)."""
        return self.workdir / "stderr.log"

    def start(self) -> Daemon:
        """Write the config file and start the process."""
        config = {**self.config, "listen": f"127.0.0.1:{self.port}"}
        path = self.workdir / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_POOL_EXPORTER_")}
        env.update(self.env)
        with self.log_path.open("wb") as err:
            self.process = subprocess.Popen(
                [*cli_command(), "run", "--config", str(path), *self.args],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
            )
        return self

    def logs(self) -> str:
        """Everything the daemon logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """One HTTP GET against the daemon."""
        return httpx.get(self.url + path, timeout=kwargs.pop("timeout", 10), **kwargs)

    def samples(self) -> Samples:
        """Parsed /metrics (asserts the scrape succeeded)."""
        response = self.get("/metrics")
        assert response.status_code == 200, response.text
        return parse_metrics(response.text)

    def wait_for(self, predicate: Callable[[], bool], what: str, deadline: float = 60.0) -> None:
        """Poll until predicate() holds; fail with the daemon's logs after `deadline` seconds."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"daemon exited with {self.process.returncode} waiting for {what}:\n{self.logs()}")
            try:
                if predicate():
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"timed out waiting for {what}; daemon logs:\n{self.logs()[-5000:]}")

    def wait_ready(self, deadline: float = 60.0) -> None:
        """Wait until /readyz answers 200."""
        self.wait_for(lambda: self.get("/readyz").status_code == 200, "/readyz 200", deadline)

    def refreshes(self, pool: str) -> float:
        """session_pool_refreshes_total of a pool right now."""
        return value(self.samples(), "session_pool_refreshes_total", pool=pool) or 0.0

    def wait_refreshes(self, pools: list[str], more: int = 2) -> None:
        """Wait until every pool completed `more` further refreshes (so one started after now)."""
        base = {p: self.refreshes(p) for p in pools}
        self.wait_for(
            lambda: all(self.refreshes(p) >= base[p] + more for p in pools), f"{more} more refreshes of {pools}"
        )

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send `sig` and return the exit code."""
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """Make sure the process is gone (test teardown)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


@contextlib.contextmanager
def running_daemon(
    config: Mapping[str, Any], env: Mapping[str, str] | None = None, args: list[str] | None = None
) -> Iterator[Daemon]:
    """A started daemon subprocess, killed on exit if still running."""
    daemon = Daemon(dict(config), dict(env or {}), list(args or [])).start()
    try:
        yield daemon
    finally:
        daemon.kill()
        shutil.rmtree(daemon.workdir, ignore_errors=True)


def run_cli(*args: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion and capture its output."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_POOL_EXPORTER_")}
    return subprocess.run(
        [*cli_command(), *args], env={**base, **(env or {})}, capture_output=True, text=True, timeout=timeout,
        check=False,
    )  # fmt: skip
