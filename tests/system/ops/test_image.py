"""The container image: built with podman, run read-only as uid 10001 against a real mongod, used from outside."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from bson import ObjectId
from pymongo import MongoClient

from exporter import __version__
from exporter.mongod import free_port
from tests.support.image import Image
from tests.support.metrics import Samples, parse_metrics, value
from tests.support.paths import ROOT
from tests.support.tools import require_binary

# Building takes about a minute on a machine that has never built it (podman, the stand-in base).
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]


UID = "10001"
CONFIG_PATH = "/etc/session-pool-exporter/config.yaml"
SECRETS_DIR = "/run/secrets/spe"
WRITE_TOKEN = "image-test-write-token-" + uuid.uuid4().hex
ACTIVE, INACTIVE = 5, 2


@dataclass(frozen=True)
class Running:
    """The exporter's container: its name, its ports on the host network, and its pool."""

    name: str
    port: int
    admin_port: int
    pool: str
    database: str
    ids: list[ObjectId]
    ca: Path
    image: Image

    @property
    def metrics_url(self) -> str:
        """/metrics on the host, as Prometheus would scrape it."""
        return f"http://127.0.0.1:{self.port}/metrics"

    @property
    def admin_url(self) -> str:
        """The admin API's own HTTPS listener."""
        return f"https://127.0.0.1:{self.admin_port}/admin"

    def logs(self) -> str:
        """What the container has written so far."""
        proc = self.image.podman("logs", self.name, check=False)
        return proc.stdout + proc.stderr

    def admin(self, token: str | None = WRITE_TOKEN) -> httpx.Client:
        """A client of the admin listener that trusts only the test certificate, with a token (or none)."""
        trust = ssl.create_default_context(cafile=str(self.ca))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.admin_url, verify=trust, headers=headers, timeout=10)


def _secret_file(path: Path, text: str) -> Path:
    """A file only the container's user (uid 10001) may read, as a secret should be."""
    path.write_text(text, encoding="utf-8")
    os.chown(path, int(UID), int(UID))
    path.chmod(0o400)
    return path


def _certificate(directory: Path) -> Path:
    """A self-signed certificate for 127.0.0.1 (openssl) in tls.crt, its key (tls.key) readable by uid 10001 only."""
    cert, key = directory / "tls.crt", directory / "tls.key"
    subprocess.run(
        [require_binary("openssl", "Debian package openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    os.chown(key, int(UID), int(UID))
    key.chmod(0o400)
    cert.chmod(0o444)
    return cert


def _wait(check: Callable[[], bool], what: str, running: Running, seconds: float = 60) -> None:
    """Poll until `check` is true; fail with the container's logs if it never is."""
    deadline = time.monotonic() + seconds
    last = ""
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, OSError) as error:
            last = repr(error)
        time.sleep(0.25)
    pytest.fail(f"never {what} ({last}); container logs:\n{running.logs()}")


@pytest.fixture(scope="module")
def running(image: Image, mongo_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """The image as a read-only container of uid 10001, config and secrets mounted read-only, a seeded pool."""
    suffix = uuid.uuid4().hex[:10]
    database, pool = f"spe_image_{suffix}", "imagepool"
    now = datetime.now(UTC)
    docs = [
        {"active": True, "count_use": i, "count_success": 0, "created": now, "last_use": None, "next_use": None,
         "session": {"login": f"user{i}"}}
        for i in range(ACTIVE)
    ]  # fmt: skip
    docs += [{"active": False, "count_use": 9, "count_success": 1, "created": now, "session": {}}] * INACTIVE
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri)
    ids: list[ObjectId] = list(client[database]["sessions"].insert_many([dict(doc) for doc in docs]).inserted_ids)
    mounts = tmp_path_factory.mktemp("mounts")
    mounts.chmod(0o755)
    cert = _certificate(mounts)
    _secret_file(mounts / "writer-token", WRITE_TOKEN + "\n")
    port, admin_port = free_port(), free_port()
    config = {
        "listen": f"127.0.0.1:{port}",
        "log": {"level": "info", "format": "json"},
        "defaults": {"interval": 1, "jitter": 0},
        "pools": [{"name": pool, "database": database, "collection": "sessions"}],
        "admin": {
            "listen": f"127.0.0.1:{admin_port}",
            "tls": {"cert_file": f"{SECRETS_DIR}/tls.crt", "key_file": f"{SECRETS_DIR}/tls.key"},
            "tokens": [{"name": "ci-writer", "role": "write", "token_file": f"{SECRETS_DIR}/writer-token"}],
            "audit": {"database": database, "collection": "audit"},
        },
    }
    config_file = mounts / "config.yaml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    config_file.chmod(0o444)
    name = f"spe-image-test-{suffix}"
    podman = image.podman
    try:
        podman(
            "run", "--detach", "--name", name, "--read-only", "--tmpfs", "/tmp", "--user", f"{UID}:{UID}",
            "--no-healthcheck", "--volume", f"{config_file}:{CONFIG_PATH}:ro",
            "--volume", f"{mounts}:{SECRETS_DIR}:ro", "--env", f"SESSION_POOL_EXPORTER_MONGODB__URI={mongo_uri}",
            image.tag,
        )  # fmt: skip
        yield Running(name, port, admin_port, pool, database, ids, cert, image)
    finally:
        podman("rm", "--force", "--time", "15", name, check=False)
        client.drop_database(database)
        client.close()


def _samples(running: Running) -> Samples:
    """/metrics from the host, parsed the way Prometheus parses it."""
    response = httpx.get(running.metrics_url, timeout=10)
    assert response.status_code == 200, response.text
    return parse_metrics(response.text)


def _states(samples: Samples, pool: str) -> dict[str, float | None]:
    """The pool's session_pool_sessions series by state."""
    states = ("active", "in_use", "locked", "blocked", "inactive")
    return {state: value(samples, "session_pool_sessions", pool=pool, state=state) for state in states}


def test_the_image_runs_as_uid_10001_on_a_read_only_root(running: Running) -> None:
    """`id -u` is 10001 inside, the root filesystem refuses writes, /tmp is the only scratch space."""
    podman = running.image.podman
    _wait(lambda: httpx.get(running.metrics_url, timeout=5).status_code == 200, "served /metrics", running)
    assert podman("exec", running.name, "id", "-u").stdout.strip() == UID
    assert podman("exec", running.name, "id", "-g").stdout.strip() == UID
    refused = podman("exec", running.name, "touch", "/opt/venv/written", check=False)
    assert refused.returncode != 0
    assert "Read-only file system" in refused.stderr
    assert podman("exec", running.name, "touch", "/tmp/scratch").returncode == 0
    inspected = json.loads(podman("inspect", running.name).stdout)[0]
    assert inspected["HostConfig"]["ReadonlyRootfs"] is True
    assert inspected["Config"]["User"] == f"{UID}:{UID}"


def test_metrics_scraped_from_outside_show_the_pool(running: Running) -> None:
    """From the host: build_info of this version, the pool up, and its gauges equal to what was inserted."""
    want = {"active": float(ACTIVE), "in_use": 0.0, "locked": 0.0, "blocked": 0.0, "inactive": float(INACTIVE)}

    def refreshed() -> bool:
        """True once the pool's state gauges are exported."""
        return _states(_samples(running), running.pool) == want

    _wait(refreshed, f"exported the pool's states {want}", running)
    samples = _samples(running)
    assert value(samples, "session_pool_up", pool=running.pool) == 1.0
    assert value(samples, "session_pool_active_sessions", pool=running.pool) == float(ACTIVE)
    uses = sum(range(ACTIVE)) + 9 * INACTIVE
    assert value(samples, "session_pool_uses", pool=running.pool) == float(uses)
    build = [labels for (name, labels) in samples if name == "session_pool_build_info"]
    assert len(build) == 1
    assert dict(build[0])["version"] == __version__
    # Only the admin listener serves the admin API; the metrics port says so with a 404.
    assert httpx.get(f"http://127.0.0.1:{running.port}/admin/pools", timeout=5).status_code == 404


def test_admin_api_called_from_outside_locks_a_session(running: Running, mongo_uri: str) -> None:
    """Over HTTPS from the host, with a write token from a mounted file: read a session, lock it, see it everywhere."""
    target = str(running.ids[0])
    request_id = f"image-test-{uuid.uuid4().hex[:12]}"
    _wait(lambda: value(_samples(running), "session_pool_up", pool=running.pool) == 1.0, "refreshed", running)
    with running.admin(token=None) as anonymous:
        assert anonymous.get("/pools").status_code == 401
    with running.admin() as admin:
        session = admin.get(f"/pools/{running.pool}/sessions/{target}")
        assert session.status_code == 200, session.text
        assert session.json()["state"] == "active"
        assert "session" not in session.json(), "credentials are left out by default"
        answer = admin.post(
            f"/pools/{running.pool}/sessions/{target}/lock",
            json={"period": {"minutes": 30}, "reason": "image test"},
            headers={"X-Request-ID": request_id},
        )
        assert answer.status_code == 200, answer.text
        result = answer.json()
        assert (result["result"], result["state_before"], result["state_after"]) == ("changed", "active", "locked")
        assert result["request_id"] == request_id
        assert admin.get(f"/pools/{running.pool}/sessions/{target}").json()["state"] == "locked"
    # MongoDB, read independently: the hold and its audit event, with the token's name as actor.
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri, tz_aware=True)
    try:
        stored = client[running.database]["sessions"].find_one({"_id": running.ids[0]})
        assert stored is not None
        assert stored["next_use"] > datetime.now(UTC)
        event = client[running.database]["audit"].find_one({"request_id": request_id})
        assert event is not None
        assert (event["actor"], event["action"], event["result"]) == ("ci-writer", "lock", "changed")
    finally:
        client.close()
    locked = {"active": ACTIVE - 1.0, "in_use": 0.0, "locked": 1.0, "blocked": 0.0, "inactive": float(INACTIVE)}
    _wait(lambda: _states(_samples(running), running.pool) == locked, f"exported {locked}", running)
    actions = value(_samples(running), "session_pool_admin_actions_total", pool=running.pool, action="lock")
    assert actions == 1.0
    assert WRITE_TOKEN not in running.logs()


def test_healthcheck_and_helm_test_commands_pass_inside_the_image(running: Running) -> None:
    """The Dockerfile's HEALTHCHECK and the chart's `helm test` script, run by the image's own python."""
    podman = running.image.podman
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith("HEALTHCHECK "))
    healthcheck: list[str] = json.loads(line[line.index("CMD") + 3 :].strip())
    url = f"HEALTHCHECK_URL=http://127.0.0.1:{running.port}/healthz"
    assert podman("exec", "--env", url, running.name, *healthcheck, check=False).returncode == 0
    wrong = f"HEALTHCHECK_URL=http://127.0.0.1:{running.port}/no-such-path"
    assert podman("exec", "--env", wrong, running.name, *healthcheck, check=False).returncode != 0
    # The chart's test pod runs this image's python; here it scrapes the container on the host network.
    template = ROOT / "helm" / "session-pool-exporter" / "templates" / "tests" / "test-metrics.yaml"
    script = _test_pod_script(template.read_text(encoding="utf-8"))
    scrape = podman(
        "run", "--rm", "--read-only", "--user", f"{UID}:{UID}", "--no-healthcheck", "--entrypoint", "python",
        "--env", f"METRICS_URL={running.metrics_url}", "--env", f"EXPECTED_POOLS={running.pool}",
        "--env", "TIMEOUT_SECONDS=30", running.image.tag, "-c", script, check=False,
    )  # fmt: skip
    assert scrape.returncode == 0, scrape.stdout + scrape.stderr
    assert f"ok, pools up: ['{running.pool}']" in scrape.stdout


def _test_pod_script(template: str) -> str:
    """The python program of the chart's test pod: the block scalar after `- -c` (it has no template actions)."""
    lines = template.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- -c") + 2
    indent = len(lines[start]) - len(lines[start].lstrip())
    body: list[str] = []
    for line in lines[start:]:
        if line.strip() and len(line) - len(line.lstrip()) < indent:
            break
        body.append(line[indent:])
    script = "\n".join(body)
    assert "{{" not in script, "the test pod's script has template actions: render the chart instead"
    return script


def test_sigterm_stops_the_container_cleanly(running: Running) -> None:
    """The exporter is PID 1: `podman stop` (SIGTERM) ends it with exit code 0, not a SIGKILL after the timeout.

    Last in this file: it stops the module's container.
    """
    podman = running.image.podman
    started = time.monotonic()
    podman("stop", "--time", "20", running.name, timeout=60)
    assert time.monotonic() - started < 15, "SIGTERM was not handled; podman had to kill"
    state = json.loads(podman("inspect", running.name).stdout)[0]["State"]
    assert state["ExitCode"] == 0, running.logs()
    assert "shutdown_complete" in running.logs()
