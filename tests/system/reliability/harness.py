"""Harness of the reliability suite: configs with short timeouts, snapshots (the poller is in tests/support)."""

from __future__ import annotations

from typing import Any

from tests.support.daemon import config as daemon_config

APP_NAME = "session-pool-exporter"


def base_config(mongo_uri: str, pools: list[dict[str, Any]], **sections: Any) -> dict[str, Any]:
    """A daemon config with the suite's short timeouts (faults show within seconds) and JSON logs."""
    suite: dict[str, Any] = {
        "mongodb": {"timeout": 2, "server_selection_timeout": 1},
        "defaults": {"refresh_timeout": 1.5},
        "log": {"level": "info", "format": "json"},
    }
    for key, section in sections.items():
        suite[key] = {**suite[key], **section} if isinstance(section, dict) and key in suite else section
    return daemon_config(mongo_uri, pools, **suite)


def snapshot(client: Any, *namespaces: tuple[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Every document of the given (database, collection) pairs, sorted by _id, for before/after checks."""
    return {f"{db}.{coll}": list(client[db][coll].find().sort("_id", 1)) for db, coll in namespaces}
