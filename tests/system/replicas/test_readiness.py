"""/readyz through a long loss of the primary: not ready when reading from the primary, ready from a secondary.

Killed members, not frozen ones: a member stopped with SIGSTOP still accepts connections (the kernel
completes them), so reads sent to it wait for their timeout; that case is a network partition, where
`mongodb.timeout` decides, and is left to the timeout tests.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from pymongo import MongoClient

from tests.support.daemon import Daemon, running
from tests.support.daemon import config as daemon_config
from tests.support.replset import ReplicaSet

DB, POOL = "spe_rs_ready", "ready"


def _ready(daemon: Daemon) -> int:
    """The status of one /readyz (0 when the daemon does not answer)."""
    try:
        return httpx.get(f"{daemon.url}/readyz", timeout=3).status_code
    except httpx.HTTPError:
        return 0


def _config(uri: str, read_preference: str) -> dict[str, Any]:
    return daemon_config(
        uri,
        [{"name": POOL, "database": DB, "collection": POOL}],
        mongodb={"timeout": 2, "server_selection_timeout": 1, "read_preference": read_preference},
        defaults={"interval": 1, "jitter": 0, "refresh_timeout": 2, "sums_interval": 60},
        log={"level": "info", "format": "json"},
    )


def test_readiness_without_a_primary(replica_set: ReplicaSet) -> None:
    """Both secondaries killed (SIGKILL): the primary steps down and none is elected. The daemon reading
    from the primary turns not ready; the one reading secondaryPreferred stays ready; both are ready
    again within two intervals once the set has a primary."""
    rs = replica_set
    client: MongoClient[dict[str, Any]] = MongoClient(rs.uri, w="majority")
    try:
        client[DB][POOL].insert_many([{"active": True, "next_use": None, "count_use": 0} for _ in range(50)])
    finally:
        client.close()
    primary = rs.primary()
    assert primary is not None
    secondaries = [m for m in rs.members if m is not primary]
    with (
        running(_config(rs.uri, "primary"), ready=True) as on_primary,
        running(_config(rs.uri, "secondaryPreferred"), ready=True) as on_secondary,
    ):
        try:
            for member in secondaries:
                member.kill()  # SIGKILL of the processes this test's fixture started, by pid
            # The primary sees no majority after the election timeout and steps down.
            deadline = time.monotonic() + 20
            while rs.primary() is not None:
                assert time.monotonic() < deadline, "the primary did not step down"
                time.sleep(0.1)
            t_lost = time.monotonic()
            statuses: list[tuple[float, int, int]] = []
            while time.monotonic() - t_lost < 8:
                statuses.append((time.monotonic() - t_lost, _ready(on_primary), _ready(on_secondary)))
                time.sleep(0.25)
        finally:
            for member in secondaries:
                member.start()  # the same data directory and port: they rejoin the set
        # Reading from the primary: not ready once the ping cache and the refreshes have noticed.
        late = [s for s in statuses if s[0] >= 4]
        assert late and all(p == 503 for _t, p, _s in late), statuses
        # From a secondary the statistics go on: ready throughout.
        assert all(s == 200 for _t, _p, s in statuses), statuses
        rs.wait_primary(timeout=30)
        t_back = time.monotonic()
        while _ready(on_primary) != 200:
            assert time.monotonic() - t_back < 2 * 1 + 3, "not ready again within two intervals (+ ping cache)"
            time.sleep(0.1)
