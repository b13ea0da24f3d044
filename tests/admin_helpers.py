"""Run the real daemon app (collector, metrics, admin API) in-process on a real socket for tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml

from exporter.admin import Admin, build_admin
from exporter.api import create_app
from exporter.collector import Collector
from exporter.config import Config, load_config
from exporter.metrics import Metrics
from exporter.mongod import free_port

WRITE_TOKEN = "w-token-0123456789abcdef"
READ_TOKEN = "r-token-0123456789abcdef"


@dataclass
class Daemon:
    """A running app and what it is made of."""

    url: str
    config: Config
    collector: Collector
    metrics: Metrics
    admin: Admin | None

    def client(self, token: str | None = WRITE_TOKEN) -> httpx.AsyncClient:
        """An HTTP client for this daemon, sending `token` as a bearer token."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)


def daemon_config(
    tmp_path: Path,
    mongo_uri: str,
    pools: list[dict[str, Any]],
    *,
    tokens: bool = True,
    admin: dict[str, Any] | None = None,
    mongodb: dict[str, Any] | None = None,
) -> Path:
    """Write a config file for the given pools (and the two test tokens)."""
    data: dict[str, Any] = {
        "mongodb": {"uri": mongo_uri, "timeout": 5, "server_selection_timeout": 2, **(mongodb or {})},
        "defaults": {"interval": 1, "jitter": 0, "refresh_timeout": 5},
        "pools": pools,
        "admin": {**(admin or {})},
    }
    if tokens:
        data["admin"]["tokens"] = [
            {"name": "alice", "token": WRITE_TOKEN, "role": "write"},
            {"name": "reader", "token": READ_TOKEN, "role": "read"},
        ]
    path = tmp_path / f"config-{free_port()}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@asynccontextmanager
async def running_daemon(config_path: Path) -> AsyncIterator[Daemon]:
    """Start the app with uvicorn on a free port and stop it afterwards."""
    config = load_config(config_path)
    metrics = Metrics()
    collector = Collector(config, metrics)
    admin = build_admin(config, collector, metrics)
    app = create_app(config, collector, metrics, admin.routes() if admin else None)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.05)
    else:
        raise RuntimeError("uvicorn did not start")
    try:
        yield Daemon(f"http://127.0.0.1:{port}", config, collector, metrics, admin)
    finally:
        server.should_exit = True
        await task
