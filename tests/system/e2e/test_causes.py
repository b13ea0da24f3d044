"""Why MongoDB cannot be used, in words, wherever it shows: the daemon's log and /readyz, and `doctor`.

Each case is a real fault: a replica-set name no server has, a host name DNS does not know, a frozen
(SIGSTOP) server, a wrong password on an `--auth` server. The console shows the same cause as /readyz
(tests/unit/console/test_console.py::test_stale_counts_are_dimmed_with_their_age_and_causes_are_words).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.mongod import Mongod
from tests.support.auth import auth_server
from tests.support.daemon import config, running, write_config
from tests.support.doctor import doctor
from tests.support.faults import frozen

pytestmark = pytest.mark.integration

SET_NAME = "no member of the replica set named in the URI answered (check replicaSet=)"
HOST = "host name not found"
FROZEN = "no answer from the server (frozen or overloaded?)"
AUTH = "authentication failed"


def check(uri: str, cause: str, tmp_path: Path) -> None:
    """The daemon's log and /readyz, and doctor's report, name `cause` (never an exception's class name)."""
    data = config(uri, [{"name": "p", "database": "spe_causes", "collection": "p"}], tokens=False,
                  mongodb={"server_selection_timeout": 1, "timeout": 2})  # fmt: skip
    with running(data, create_pools=False) as daemon:
        daemon.wait_for(lambda: cause.lower() in json.dumps(daemon.get("/readyz").json()).lower(), f"/readyz: {cause}")
        daemon.wait_for(lambda: cause.lower() in daemon.logs().lower(), f"the log: {cause}")
        logs = daemon.logs()
    for name in ("AutoReconnect", "ServerSelectionTimeoutError", "NetworkTimeout", "OperationFailure"):
        assert name not in logs, name
    report = doctor(write_config(tmp_path, data))
    assert report.returncode == 4, report.stdout
    assert cause.lower() in report.stdout.lower(), report.stdout


def test_a_replica_set_name_no_server_has(mongod_factory: Callable[..., Mongod], tmp_path: Path) -> None:
    server = mongod_factory()
    check(f"mongodb://127.0.0.1:{server.port}/?replicaSet=not-{server.replica_set}", SET_NAME, tmp_path)


def test_a_host_name_dns_does_not_know(tmp_path: Path) -> None:
    check("mongodb://no-such-host.invalid:27017/?directConnection=true", HOST, tmp_path)


def test_a_frozen_server(mongod_factory: Callable[..., Mongod], tmp_path: Path) -> None:
    server = mongod_factory()
    with frozen(server):
        check(server.uri, FROZEN, tmp_path)


def test_a_wrong_password(mongod_factory: Callable[..., Mongod], tmp_path: Path) -> None:
    server = auth_server(mongod_factory)
    check(server.uri("root", "not-the-password"), AUTH, tmp_path)
