"""examples/config.yaml and docs/reference/configuration.md: generated from the schema, complete, valid as written."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from exporter.config import Config, PoolOptions, load_config
from tests.support.cli import clean_env
from tests.support.paths import ROOT
from tests.support.scripts import load_script
from tests.support.tls import self_signed

EXAMPLE = ROOT / "examples" / "config.yaml"
REFERENCE = ROOT / "docs" / "reference" / "configuration.md"
SCRIPT = ROOT / "scripts" / "reference" / "config.py"
# Sections of the same model as one shown in full (a pool's overrides are the keys of `defaults`).
SAME_AS = {
    "pools[].": "defaults.",
    "discovery[].options.": "pools[].",
    "admin.tls.": "tls.",
    "admin.write_concern.": "mongodb.write_concern.",
}
MARKER = "# Example, commented out because the files it names must exist:"


def generator() -> ModuleType:
    """scripts/reference/config.py as a module."""
    return load_script("scripts/reference/config.py", "reference_config")


def uncommented(text: str) -> str:
    """The example with every commented-out example in force instead of the default line that follows it."""
    out: list[str] = []
    lines = iter(text.splitlines())
    for line in lines:
        if line.strip() != MARKER.strip():
            out.append(line)
            continue
        indent = line.index("#")
        for quoted in lines:
            if not quoted.startswith(" " * indent + "# "):
                break  # the key with its default, replaced by the example above it
            out.append(quoted[:indent] + quoted[indent + 2 :])
    return "\n".join(out) + "\n"


def model_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every dotted key a config model accepts (`admin.tokens[].role`), nested models included."""
    paths: set[str] = set()
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        paths.add(path)
        for arg in [field.annotation, *typing.get_args(field.annotation)]:
            for inner in [arg, *typing.get_args(arg)]:
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    listed = "list" in str(field.annotation)
                    paths |= model_paths(inner, f"{path}[]." if listed else f"{path}.")
    return paths


def data_paths(data: Any, prefix: str = "") -> set[str]:
    """Every dotted key present in loaded YAML data."""
    paths: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{prefix}{key}"
            paths.add(path)
            paths |= data_paths(value, f"{path}.")
    elif isinstance(data, list):
        for item in data:
            paths |= data_paths(item, f"{prefix[:-1]}[].")
    return paths


def with_same_as(paths: set[str]) -> set[str]:
    """Paths plus those of sections documented once elsewhere (a chain takes a pass per link)."""
    shown = set(paths)
    for _ in SAME_AS:
        shown |= {f"{prefix}{p.removeprefix(other)}" for prefix, other in SAME_AS.items()
                  for p in shown if p.startswith(other)}  # fmt: skip
    return shown


def test_the_committed_files_are_generated_from_the_schema() -> None:
    """The reference page and the example file are exactly what the generator writes from the schema."""
    script = generator()
    command = "run `python scripts/reference/config.py` and commit"
    assert REFERENCE.read_text(encoding="utf-8") == script.render(), f"{command} {REFERENCE.relative_to(ROOT)}"
    assert EXAMPLE.read_text(encoding="utf-8") == script.render_example(), f"{command} {EXAMPLE.relative_to(ROOT)}"


def test_every_key_is_in_the_example() -> None:
    """Each key the config accepts is set in the file, or in one of its commented-out examples."""
    text = EXAMPLE.read_text(encoding="utf-8")
    present = data_paths(yaml.safe_load(text))
    everything = data_paths(yaml.safe_load(uncommented(text)))
    expected = model_paths(Config)
    missing = expected - with_same_as(everything)
    assert not missing, f"not in examples/config.yaml: {sorted(missing)}"
    assert everything <= expected, f"unknown to the config: {sorted(everything - expected)}"
    # What is commented out names files: TLS, the URI file and the tokens' files.
    assert {"tls.cert_file", "mongodb.uri_file", "admin.tokens[].token_file"} <= everything
    assert not {"tls.cert_file", "admin.tokens[].token_file"} & present
    # A pool may override every default (so SAME_AS covers the pool's keys).
    assert {f"pools[].{name}" for name in PoolOptions.model_fields} <= expected


def test_every_key_is_in_the_reference() -> None:
    """Each key has a row in the reference, its own or one of a section documented at another path (`X.*`)."""
    rows = re.findall(r"^\| `([^`]+)` \|", REFERENCE.read_text(encoding="utf-8"), re.M)
    own = {row for row in rows if not row.endswith(".*")}
    assert len(own) == len(set(own)), "a key has two rows"
    covered = with_same_as(own)
    missing = model_paths(Config) - covered
    assert not missing, f"not in {REFERENCE.relative_to(ROOT)}: {sorted(missing)}"
    for row in (row for row in rows if row.endswith(".*")):
        assert any(path.startswith(row[:-1]) for path in covered), row


@pytest.mark.integration
def test_the_header_command_passes_as_written() -> None:
    """The command in the file's own header, run from the repository root, exits 0."""
    header = EXAMPLE.read_text(encoding="utf-8").split("\n\n", 1)[0]
    match = re.search(r"^# Check it with: (.+)$", header, re.M)
    assert match is not None, header
    argv = shlex.split(match[1])
    assert argv[:2] == ["session-pool-exporter", "check-config"], argv
    env = clean_env({"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"})
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config ok"), result.stdout


def test_the_commented_out_examples_are_valid_too(tmp_path: Path) -> None:
    """With its commented-out examples in force (their files made real), the file loads as they say."""
    data = yaml.safe_load(uncommented(EXAMPLE.read_text(encoding="utf-8")))
    cert, key = self_signed(tmp_path)
    assert data["tls"] == {"cert_file": "/etc/session-pool-exporter/tls.crt",
                           "key_file": "/etc/session-pool-exporter/tls.key"}  # fmt: skip
    data["tls"] = {"cert_file": str(cert), "key_file": str(key)}
    for token in data["admin"]["tokens"]:
        path = tmp_path / Path(token["token_file"]).name
        path.write_text(f"{token['name']}-0123456789abcdefghijklmnop\n")
        token["token_file"] = str(path)
    uri = data["mongodb"].pop("uri")  # uri_file is its alternative: one of the two
    (tmp_path / "uri").write_text(uri + "\n")
    data["mongodb"]["uri_file"] = str(tmp_path / "uri")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_config(path, {}, {})
    assert [(t.name, t.role) for t in config.admin.tokens] == [("alice", "write"), ("grafana", "read")]
    assert config.admin.tokens[0].secret() == "alice-0123456789abcdefghijklmnop"
    assert config.tls is not None and config.mongodb.uri_value() == uri


def test_the_example_is_a_valid_configuration_with_the_real_defaults() -> None:
    """The file loads as it is, and every value it gives as a default is the built-in default."""
    config = load_config(EXAMPLE, {}, {})
    assert [p.name for p in config.pools] == ["telegram"] and config.pools[0].interval == 30
    assert config.pools[0].session_fields.search == ["phone", "login"]
    assert [d.include for d in config.discovery] == [["tg_*"]] and config.discovery[0].options.interval == 30
    assert not config.admin.enabled and config.tls is None
    built_in = Config.model_validate({"mongodb": {"uri": "mongodb://h/"}, "pools": [
        {"name": "p", "database": "d", "collection": "c"}]}).model_dump()  # fmt: skip
    loaded = config.model_dump()
    for section in ("http", "log", "defaults", "listen", "max_concurrent_refreshes"):
        assert loaded[section] == built_in[section], section
    for name in ("timeout", "server_selection_timeout", "read_preference", "write_concern", "uri_file"):
        assert loaded["mongodb"][name] == built_in["mongodb"][name], name
    assert loaded["admin"] == built_in["admin"]


@pytest.mark.integration
def test_check_mode_reports_drift_with_the_command_to_run(tmp_path: Path) -> None:
    """On a scratch tree: --check exits 0 when current, 1 naming the command after an edit; a run repairs it."""
    tree = tmp_path / "repo"
    shutil.copytree(ROOT / "scripts", tree / "scripts")
    for path in (EXAMPLE, REFERENCE):
        (tree / path.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, tree / path.relative_to(ROOT))
    script = [sys.executable, str(tree / "scripts" / "reference" / "config.py")]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        """Run the copied script against the scratch tree."""
        return subprocess.run([*script, *args], capture_output=True, text=True, check=False, timeout=60)

    assert run("--check").returncode == 0
    example = tree / "examples" / "config.yaml"
    example.write_text(example.read_text(encoding="utf-8").replace("interval: 15", "interval: 20"), encoding="utf-8")
    proc = run("--check")
    assert proc.returncode == 1
    assert "examples/config.yaml: differ from the config schema; run: python scripts/reference/config.py" in proc.stderr
    assert run().returncode == 0
    assert example.read_text(encoding="utf-8") == EXAMPLE.read_text(encoding="utf-8")
