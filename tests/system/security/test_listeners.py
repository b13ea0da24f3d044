"""The admin API on a listener of its own, with its own TLS; plain HTTP on a public address refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient

from exporter.mongod import free_port
from tests.support.cli import run_cli
from tests.support.daemon import READ_TOKEN, WRITE_TOKEN, config, running, tls_verify, write_config
from tests.support.tls import self_signed


def test_admin_routes_live_only_on_the_admin_listener(
    mongo_uri: str, unique_name: str, tmp_path: Path, sync_client: MongoClient[dict[str, Any]]
) -> None:
    """/admin on the metrics port is a 404 that names no address; the admin port serves it over HTTPS only."""
    sid = sync_client["spe_listeners"][unique_name].insert_one({"active": True, "next_use": None}).inserted_id
    cert, key = self_signed(tmp_path)
    admin_port = free_port()
    cfg = config(mongo_uri, [{"name": "p", "database": "spe_listeners", "collection": unique_name}],
                 admin={"listen": f"127.0.0.1:{admin_port}",
                        "tls": {"cert_file": str(cert), "key_file": str(key)}})  # fmt: skip
    with running(cfg, ready=True) as daemon:
        on_metrics = httpx.get(daemon.url + "/admin/pools", headers={"Authorization": f"Bearer {READ_TOKEN}"})
        assert on_metrics.status_code == 404 and "not served on this listener" in on_metrics.json()["message"]
        assert str(admin_port) not in on_metrics.text
        admin = f"https://127.0.0.1:{admin_port}"
        with httpx.Client(base_url=admin, verify=tls_verify(str(cert)), timeout=10) as https:
            pools = https.get("/admin/pools", headers={"Authorization": f"Bearer {READ_TOKEN}"})
            assert pools.status_code == 200 and pools.json()["pools"][0]["name"] == "p"
            locked = https.post(f"/admin/pools/p/sessions/{sid}/lock",
                                headers={"Authorization": f"Bearer {WRITE_TOKEN}"})  # fmt: skip
            assert locked.status_code == 200 and locked.json()["state_after"] == "locked"
            assert https.get("/metrics").status_code == 404  # scrapers and operators stay apart
            assert https.get("/healthz").text == "ok\n"
        try:
            plain = httpx.get(f"http://127.0.0.1:{admin_port}/admin/pools", timeout=5)
            assert plain.status_code >= 400
        except httpx.HTTPError:
            pass  # a TLS listener may just drop a plain-HTTP request


def test_plain_http_admin_on_a_public_address_is_refused(tmp_path: Path) -> None:
    """check-config (and run) refuse admin writes over plain HTTP on 0.0.0.0 and say the three ways out."""
    base = {"mongodb": {"uri": "mongodb://127.0.0.1:1/"}, "pools": [{"name": "p", "database": "d", "collection": "c"}]}
    token = [{"name": "ops", "token": "a-long-enough-admin-token-0123"}]
    refused = write_config(tmp_path, {**base, "admin": {"tokens": token, "listen": "0.0.0.0:9811"}})
    result = run_cli("check-config", "--config", str(refused))
    assert result.returncode == 2
    assert "admin.listen: the admin API would accept writes over plain HTTP on 0.0.0.0:9811" in result.stderr
    assert "admin.tls" in result.stderr and "allow_plaintext" in result.stderr
    run = run_cli("run", "--config", str(refused), timeout=30)
    assert run.returncode == 2 and "plain HTTP" in run.stderr
    allowed = write_config(tmp_path, {**base, "admin": {"tokens": token, "listen": "0.0.0.0:9811",
                                                        "allow_plaintext": True}})  # fmt: skip
    ok = run_cli("check-config", "--config", str(allowed))
    assert ok.returncode == 0 and "admin API on http://0.0.0.0:9811" in ok.stdout
    loopback = write_config(tmp_path, {**base, "admin": {"tokens": token}})
    assert "admin API on http://127.0.0.1:9811" in run_cli("check-config", "--config", str(loopback)).stdout
