"""Every example of README.md and docs/ runs as written, in a fresh copy of the project (see tests/support/docs.py).

The README's first command installs the project into a new virtualenv of that copy and starts the
demo; the shell blocks then run with that virtualenv on PATH, the demo's blocks in the environment
the demo tells its user to paste, and Ctrl-C ends the demo at the end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.docs import ROOT, Block, all_blocks, last_block_started, page_script
from tests.support.tools import missing_tool, require_binary

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BLOCKS = all_blocks()
KNOWN = {"plain", "demo", "demo-start", "background", "python", "json", "none", "elsewhere", *(
    "config.yaml", "prometheus.yml", "alertmanager.yml", "values.yaml")}  # fmt: skip
# The demo's default listener: the documented URLs use it, so the copy's demo must get it.
DEMO_PORT = 9810
INSTALL_AND_START = 600.0
STOP_WITHIN = 5.0


def of(context: str) -> list[Any]:
    """The blocks of one context, as pytest params named by their place."""
    return [pytest.param(b, id=b.where) for b in BLOCKS if b.context == context]


def pages(context: str) -> list[Any]:
    """The pages having blocks of one context."""
    found = sorted({b.path for b in BLOCKS if b.context == context})
    return [pytest.param(path, id=str(path.relative_to(ROOT))) for path in found]


# --- the copy, its virtualenv and the demo, once per session ----------------------------------------


@dataclass
class Demo:
    """The project copied as a fresh clone would be, installed by the README's command, its demo running."""

    copy: Path
    process: subprocess.Popen[str]
    env: dict[str, str]
    exports: list[str]
    output: list[str] = field(default_factory=list)

    def shell_env(self) -> dict[str, str]:
        """PATH with the copy's virtualenv first, as after `source .venv/bin/activate`."""
        venv = self.copy / ".venv"
        return {**self.env, "PATH": f"{venv / 'bin'}:{self.env['PATH']}", "VIRTUAL_ENV": str(venv)}


def _copy_of_the_tree(target: Path) -> None:
    """What a clone of this working tree holds (tracked and new files, nothing ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def _base_env(home: Path) -> dict[str, str]:
    """A new user's shell: no variable of ours, a home of its own, curl failing on HTTP errors."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSION_POOL_EXPORTER_", "MONGODB_URI"))}
    (home / ".curlrc").write_text("--fail-with-body\n--max-time 30\n--silent\n--show-error\n")
    return {**env, "HOME": str(home), "CURL_HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1"}


@pytest.fixture(scope="session")
def demo() -> Iterator[Demo]:
    """Run the README's install-and-demo command in a copy of the project; Ctrl-C it at the end."""
    starts = [b for b in BLOCKS if b.context == "demo-start"]
    assert len(starts) == 1, f"one block must be the README's install-and-demo command, found {len(starts)}"
    with socket_free(DEMO_PORT):
        pass
    workdir = Path(tempfile.mkdtemp(prefix="spe-docs-"))
    copy, home = workdir / "session-pool-exporter", workdir / "home"
    copy.mkdir()
    home.mkdir()
    _copy_of_the_tree(copy)
    env = _base_env(home)
    process = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", starts[0].code],
        cwd=copy, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    assert process.stdout is not None
    output: list[str] = []
    deadline = time.monotonic() + INSTALL_AND_START
    try:
        for line in process.stdout:
            output.append(line)
            if "Press Ctrl-C to stop" in line or time.monotonic() > deadline:
                break
        banner = "".join(output)
        assert "Press Ctrl-C to stop" in banner, f"the demo did not start:\n{banner[-5000:]}"
        exports = re.findall(r"^\s+(export \S+=.*)$", banner, re.M)
        assert exports, f"the demo printed nothing to paste:\n{banner[-3000:]}"
        # What the user pastes into another terminal, evaluated by a shell as they would.
        pasted = subprocess.run(
            ["bash", "-c", "\n".join(exports) + "\nenv -0"], env=env, capture_output=True, check=True
        ).stdout.decode()
        env = dict(item.split("=", 1) for item in pasted.split("\0") if "=" in item)
        yield Demo(copy, process, env, exports, output)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's foreground group
            started = time.monotonic()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            took = time.monotonic() - started
            rest = process.stdout.read() if process.stdout else ""
            shutil.rmtree(workdir, ignore_errors=True)
            assert process.returncode == 0, f"the demo ended with {process.returncode} after Ctrl-C:\n{rest[-3000:]}"
            assert took < STOP_WITHIN, f"Ctrl-C took {took:.1f} s to end the demo"
            assert "Traceback" not in rest, rest[-3000:]
        else:
            shutil.rmtree(workdir, ignore_errors=True)


class socket_free:
    """Fail clearly when a port the documentation names is taken by something else."""

    def __init__(self, port: int) -> None:
        self.port = port

    def __enter__(self) -> None:
        import socket

        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", self.port))
            except OSError:
                pytest.fail(f"port {self.port} is in use: the documented demo listens there; free it first")

    def __exit__(self, *exc: object) -> None:
        return None


def _run(
    argv: list[str], demo: Demo, *, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd or demo.copy, env=demo.shell_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


# --- every block is run by something ----------------------------------------------------------------


def test_every_block_is_run() -> None:
    """Each block has a way to run; a `not run` one names a test that exists and says why."""
    problems = []
    for block in BLOCKS:
        if block.context not in KNOWN:
            problems.append(f"{block.where}: {block.context}: annotate it or make it runnable")
        if block.context == "elsewhere":
            ref = block.test_reference()
            if ref is None:
                problems.append(f"{block.where}: `not run` must name the test that runs it (tests/x.py::test_y)")
            elif not ref[0].exists() or not re.search(rf"^\s*(async )?def {ref[1]}\(", ref[0].read_text(), re.M):
                problems.append(f"{block.where}: {ref[0].relative_to(ROOT)}::{ref[1]} does not exist")
    assert not problems, "\n".join(problems)


# --- shell -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("block", of("plain"))
def test_shell(block: Block, demo: Demo) -> None:
    """A shell block, run as written from the copy's root."""
    result = _run(["bash", "-euo", "pipefail", "-c", block.code], demo)
    assert result.returncode == 0, (
        f"{block.where} failed ({result.returncode}):\n{block.code}\n{result.stdout}{result.stderr}"
    )


@pytest.mark.parametrize("page", pages("demo"))
def test_demo_page(page: Path, demo: Demo) -> None:
    """A page's demo blocks, in order, in one shell with what the demo said to paste."""
    script = page_script([b for b in BLOCKS if b.path == page and b.context == "demo"])
    result = _run(["bash", "-c", script], demo, timeout=300)
    failed = last_block_started(result.stderr)
    assert result.returncode == 0, (
        f"{failed} failed ({result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    )


@pytest.mark.parametrize("block", of("background"))
def test_background(block: Block, demo: Demo) -> None:
    """A long-running command: it serves its URL, then SIGTERM ends it with exit code 0."""
    url = block.option("until")
    assert url, f"{block.where}: `run: background` needs until=URL"
    *setup, last = [line for line in _commands(block.code)]
    script = "\n".join([*setup, f"exec {last}"])
    process = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script], cwd=demo.copy, env=demo.shell_env(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        answered = None
        while time.monotonic() < deadline and process.poll() is None and answered is None:
            try:
                answered = httpx.get(url, timeout=2).status_code
            except httpx.TransportError:
                time.sleep(0.2)
        assert answered is not None, f"{block.where}: {url} never answered; exit {process.poll()}"
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=STOP_WITHIN)
        output = process.stdout.read() if process.stdout else ""
        assert code == 0, f"{block.where}: exit {code} after SIGTERM:\n{output[-3000:]}"
        assert "Traceback" not in output, output[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _commands(code: str) -> list[str]:
    """The block's commands, continuation lines joined, comments and blank lines left out."""
    joined = code.replace("\\\n", " ")
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


# --- configuration files and JSON -------------------------------------------------------------------


FILE_KINDS = ("config.yaml", "prometheus.yml", "alertmanager.yml", "values.yaml", "json")


@pytest.mark.parametrize("block", [p for kind in FILE_KINDS for p in of(kind)])
def test_file(block: Block, demo: Demo, tmp_path: Path) -> None:
    """A file shown in the manual is checked by the tool that reads it, by its title."""
    check = {
        "config.yaml": _exporter_config,
        "prometheus.yml": _prometheus_config,
        "alertmanager.yml": _alertmanager_config,
        "values.yaml": _chart_values,
        "json": _json,
    }[block.context]
    check(block, demo, tmp_path)


def _exporter_config(block: Block, demo: Demo, tmp_path: Path) -> None:
    """An exporter config (or a part of one) passes `check-config`; the MongoDB URI and a pool are added
    from the command line when the part has none, as a user would give them."""
    path = tmp_path / "config.yaml"
    path.write_text(block.code)
    data = yaml.safe_load(block.code) or {}
    argv = ["session-pool-exporter", "check-config", "--config", str(path)]
    if not (data.get("mongodb") or {}).get("uri") and not (data.get("mongodb") or {}).get("uri_file"):
        argv += ["--mongo-uri", "mongodb://127.0.0.1:27017/"]
    if not data.get("pools") and not data.get("discovery"):
        argv += ["--database", "sessions", "--collection", "telegram"]
    result = _run(argv, demo, cwd=tmp_path)
    assert result.returncode == 0, f"{block.where}:\n{block.code}\n{result.stdout}{result.stderr}"


def _prometheus_config(block: Block, demo: Demo, tmp_path: Path) -> None:
    """A Prometheus config passes `promtool check config`, beside a copy of the shipped rule files."""
    promtool = require_binary("promtool", "Debian package prometheus")
    for rules in (ROOT / "alerts").glob("*.yml"):
        shutil.copy(rules, tmp_path / rules.name)
    (tmp_path / "prometheus.yml").write_text(block.code)
    result = _run([promtool, "check", "config", "prometheus.yml"], demo, cwd=tmp_path)
    assert result.returncode == 0, f"{block.where}:\n{block.code}\n{result.stdout}{result.stderr}"


def _alertmanager_config(block: Block, demo: Demo, tmp_path: Path) -> None:
    """An Alertmanager config passes `amtool check-config`."""
    amtool = require_binary("amtool", "Debian package prometheus-alertmanager")
    (tmp_path / "alertmanager.yml").write_text(block.code)
    result = _run([amtool, "check-config", "alertmanager.yml"], demo, cwd=tmp_path)
    assert result.returncode == 0, f"{block.where}:\n{block.code}\n{result.stdout}{result.stderr}"


def _chart_values(block: Block, demo: Demo, tmp_path: Path) -> None:
    """Chart values render with Helm's own engine (the chart's schema refuses unknown or unsafe values)."""
    try:
        import helm_python
    except ImportError:
        missing_tool("Python module helm_python (PyPI helm-python-sdk)")
    values = yaml.safe_load(block.code) or {}
    with helm_python.Chart.load(str(ROOT / "helm" / "session-pool-exporter")) as chart:
        rendered = chart.render(values, name="session-pool-exporter", namespace="monitoring")
    assert any("kind: Deployment" in text or "kind: StatefulSet" in text for text in rendered.values()), block.where


def _json(block: Block, demo: Demo, tmp_path: Path) -> None:
    """A JSON example parses."""
    json.loads(block.code)


# --- Python ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("block", of("python"))
def test_python(block: Block, demo: Demo, tmp_path: Path) -> None:
    """A Python example runs as a script with the copy's install, against the demo's mongod (MONGODB_URI)."""
    script = tmp_path / "example.py"
    script.write_text(block.code)
    env = {**demo.shell_env(), "MONGODB_URI": demo.env["SESSION_POOL_EXPORTER_MONGODB__URI"]}
    result = subprocess.run(
        [str(demo.copy / ".venv" / "bin" / "python"), str(script)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"{block.where}:\n{result.stdout}{result.stderr}"


def test_the_readme_shows_what_the_demo_prints(demo: Demo) -> None:
    """The README's picture of the demo's banner is what the demo printed (`...` stands for what varies)."""
    shown = next(b for b in BLOCKS if b.path == ROOT / "README.md" and b.lang == "text" and "demo:" in b.code)
    printed = "".join(demo.output)
    for line in shown.code.splitlines():
        if line.strip() in ("", "..."):
            continue
        pattern = ".*".join(re.escape(part) for part in line.split("..."))
        assert re.search(rf"^{pattern}$", printed, re.M), f"README.md:{shown.line}: the demo never printed {line!r}"
