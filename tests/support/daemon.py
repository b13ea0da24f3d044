"""The daemon under test: as a real `session-pool-exporter run` subprocess, or in-process on a real socket."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pymongo import MongoClient
from pymongo.errors import CollectionInvalid, PyMongoError

from exporter.admin import AdminService
from exporter.assembly import build
from exporter.collector import Collector
from exporter.config import Config, load_config
from exporter.metrics import Metrics
from exporter.mongod import free_port
from tests.support.cli import clean_env, cli_command
from tests.support.metrics import Samples, parse_metrics, value

WRITE_TOKEN = "test-write-token-5f0c9a7e3b2d41c8"
READ_TOKEN = "test-read-token-8e1d6b2f9c4a7035"


def config(mongo_uri: str, pools: list[dict[str, Any]], *, tokens: bool = True, **sections: Any) -> dict[str, Any]:
    """A daemon config: short intervals, the two test tokens (alice writes, reader reads), section overrides."""
    data: dict[str, Any] = {
        "listen": f"127.0.0.1:{free_port()}",
        "mongodb": {"uri": mongo_uri, "timeout": 5, "server_selection_timeout": 2},
        "defaults": {"interval": 1, "jitter": 0, "refresh_timeout": 5},
        "pools": pools,
        # One loopback listener for /metrics and the admin API; tests/system/security covers a separate one.
        "admin": {"listen": None},
    }
    if tokens:
        data["admin"]["tokens"] = [
            {"name": "alice", "token": WRITE_TOKEN, "role": "write"},
            {"name": "reader", "token": READ_TOKEN, "role": "read"},
        ]
    for key, section in sections.items():
        if isinstance(section, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **section}
        else:
            data[key] = section
    return data


def create_pools(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> None:
    """Create the collections of the config's pools that do not exist yet, as a deployment has them.

    The daemon never creates a pool's collection (a missing one is a named condition); a test of that
    condition starts its daemon with `create_pools=False`. Skipped quickly when the server is down.
    """
    uri = (data.get("mongodb") or {}).get("uri") or (env or {}).get("SESSION_POOL_EXPORTER_MONGODB__URI")
    pools = [p for p in data.get("pools") or [] if isinstance(p, dict)]
    if not uri or not pools:
        return
    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=1000)
    try:
        for pool in pools:
            database = client[pool["database"]]
            if pool["collection"] not in database.list_collection_names(filter={"name": pool["collection"]}):
                with contextlib.suppress(CollectionInvalid):  # created meanwhile by the test itself
                    database.create_collection(pool["collection"])
    except PyMongoError:
        pass  # a test of a daemon whose MongoDB is down, or whose URI is wrong on purpose
    finally:
        client.close()


def write_config(directory: Path, data: Mapping[str, Any]) -> Path:
    """Write a config file under `directory` and return its path."""
    path = directory / f"config-{free_port()}.yaml"
    path.write_text(yaml.safe_dump(dict(data)))
    return path


def tls_verify(verify: str | bool) -> ssl.SSLContext | bool:
    """httpx's verify argument: a CA file becomes an SSL context trusting only it."""
    return ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


# --- as a subprocess -------------------------------------------------------------------------------


@dataclass
class Daemon:
    """`session-pool-exporter run --config FILE` as a child process on a free port."""

    config: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    verify: str | bool = True
    nofile: int | None = None  # open-files limit (soft and hard) of the daemon process
    create_pools: bool = True  # create the pools' collections first (see create_pools)
    process: subprocess.Popen[bytes] | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="spe-daemon-")))

    @property
    def url(self) -> str:
        """Base URL (https when the config has a tls section)."""
        scheme = "https" if self.config.get("tls") else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """The file receiving the daemon's stderr (JSON logs)."""
        return self.workdir / "stderr.log"

    def start(self) -> Daemon:
        """Write the config (and the pools' collections, unless told not to) and start the process."""
        if self.create_pools:
            create_pools(self.config, self.env)
        path = self.workdir / "config.yaml"
        path.write_text(yaml.safe_dump({**self.config, "listen": f"127.0.0.1:{self.port}"}))
        limit = self.nofile

        def limits() -> None:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        with self.log_path.open("wb") as err:
            self.process = subprocess.Popen(
                [*cli_command(), "run", "--config", str(path), *self.args],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=clean_env(self.env),
                preexec_fn=limits if limit is not None else None,
            )
        return self

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process is not None and self.process.poll() is None

    def logs(self) -> str:
        """Everything the daemon logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, token: str | None = WRITE_TOKEN, timeout: float = 30) -> httpx.Client:
        """A sync client sending `token` as bearer."""
        return httpx.Client(base_url=self.url, headers=_headers(token), timeout=timeout, verify=tls_verify(self.verify))

    def async_client(self, token: str | None = WRITE_TOKEN, timeout: float = 30, **kw: Any) -> httpx.AsyncClient:
        """An async client sending `token` as bearer."""
        verify = tls_verify(self.verify)
        return httpx.AsyncClient(base_url=self.url, headers=_headers(token), timeout=timeout, verify=verify, **kw)

    def get(self, path: str, timeout: float = 10, **kwargs: Any) -> httpx.Response:
        """One unauthenticated GET."""
        return httpx.get(self.url + path, timeout=timeout, verify=tls_verify(self.verify), **kwargs)

    def samples(self) -> Samples:
        """Parsed /metrics (asserts the scrape succeeded)."""
        response = self.get("/metrics")
        assert response.status_code == 200, response.text
        return parse_metrics(response.text)

    def wait_for(self, predicate: Callable[[], bool], what: str, deadline: float = 60.0) -> float:
        """Poll predicate() every 50 ms; the seconds it took; fail with the logs on timeout or exit."""
        start = time.monotonic()
        while time.monotonic() - start < deadline:
            if not self.alive():
                code = self.process.returncode if self.process else None
                pytest.fail(f"daemon exited ({code}) waiting for {what}:\n{self.logs()[-5000:]}")
            with contextlib.suppress(httpx.TransportError):
                if predicate():
                    return time.monotonic() - start
            time.sleep(0.05)
        pytest.fail(f"timed out after {deadline:g} s waiting for {what}; daemon logs:\n{self.logs()[-5000:]}")

    def wait_ready(self, deadline: float = 60.0) -> float:
        """Wait until /readyz answers 200."""
        return self.wait_for(lambda: self.get("/readyz").status_code == 200, "/readyz 200", deadline)

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

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 20 s; the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        return self.process.returncode


@contextlib.contextmanager
def running(
    config: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    args: list[str] | None = None,
    *,
    verify: str | bool = True,
    ready: bool = False,
    nofile: int | None = None,
    create_pools: bool = True,
) -> Iterator[Daemon]:
    """A started daemon subprocess (waited ready if asked), stopped and cleaned up on exit."""
    daemon = Daemon(
        dict(config), dict(env or {}), list(args or []), verify=verify, nofile=nofile, create_pools=create_pools
    ).start()
    try:
        if ready:
            daemon.wait_ready()
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(daemon.workdir, ignore_errors=True)


# --- in-process ------------------------------------------------------------------------------------


@dataclass
class InProcess:
    """The daemon assembled by `exporter.assembly.build`, served by uvicorn on a real socket in this loop."""

    url: str
    config: Config
    collector: Collector
    metrics: Metrics
    admin: AdminService | None
    admin_url: str = ""

    def client(self, token: str | None = WRITE_TOKEN) -> httpx.AsyncClient:
        """An HTTP client for the admin API's listener (the main one unless admin.listen is set)."""
        return httpx.AsyncClient(base_url=self.admin_url or self.url, headers=_headers(token), timeout=30)

    def metrics_client(self) -> httpx.AsyncClient:
        """An HTTP client for the main listener (/metrics, /healthz, /readyz)."""
        return httpx.AsyncClient(base_url=self.url, timeout=30)


@contextlib.asynccontextmanager
async def serving(config_path: Path, *, create: bool = True) -> AsyncIterator[InProcess]:
    """Build the daemon from a config file exactly as `run` does, serve it on a free port, stop it after.

    `create`: create the pools' collections first (see create_pools).
    """
    if create:
        await asyncio.to_thread(lambda: create_pools(yaml.safe_load(config_path.read_text())))
    daemon = build(load_config(config_path))
    servers = [s for s in (daemon.server(install_signals=False), daemon.admin_server()) if s is not None]
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    for _ in range(200):
        if all(server.started for server in servers):
            break
        await asyncio.sleep(0.05)
    else:
        raise RuntimeError("uvicorn did not start")
    admin_address, admin_tls = daemon.config.admin_listener()
    try:
        yield InProcess(
            f"http://{daemon.config.listen}",
            daemon.config,
            daemon.collector,
            daemon.metrics,
            daemon.admin,
            admin_url=f"{'https' if admin_tls else 'http'}://{admin_address}",
        )
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks)
