"""examples/config.yaml: every key, equal to the README's, and a valid configuration."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from exporter.config import Config, load_config
from exporter.config.schema import PoolOptions
from tests.support.tls import self_signed

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "config.yaml"
# Keys that are alternatives of a key set in the example: shown commented out (`# uri_file: ...`).
ALTERNATIVES = {"mongodb.uri_file", "admin.tokens[].token"}
# Sections of the same model as one shown in full (a pool's overrides are the keys of `defaults`).
SAME_AS = {
    "pools[].": "defaults.",
    "discovery[].options.": "pools[].",
    "admin.tls.": "tls.",
    "admin.write_concern.": "mongodb.write_concern.",
}


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


def test_the_readme_shows_the_example_file() -> None:
    """The README's configuration block is the file, byte for byte."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    assert EXAMPLE.read_text(encoding="utf-8") in blocks


def test_every_key_is_in_the_example() -> None:
    """Each key the config accepts is set in the file, or shown commented out as an alternative."""
    text = EXAMPLE.read_text(encoding="utf-8")
    present = data_paths(yaml.safe_load(text))
    commented = {leaf for leaf in re.findall(r"#\s*(\w+):", text)}
    expected = model_paths(Config)
    shown = set(present)
    for _ in SAME_AS:  # a chain (discovery options = a pool's keys = defaults) takes a pass per link
        shown |= {f"{prefix}{p.removeprefix(other)}" for prefix, other in SAME_AS.items()
                  for p in shown if p.startswith(other)}  # fmt: skip
    missing = {p for p in expected - shown if p not in ALTERNATIVES}
    assert not missing, f"not in examples/config.yaml: {sorted(missing)}"
    assert present <= expected, f"unknown to the config: {sorted(present - expected)}"
    for alternative in ALTERNATIVES:
        assert alternative.rsplit(".", 1)[-1] in commented, alternative
    # A pool may override every default (so SAME_AS covers the pool's keys).
    assert {f"pools[].{name}" for name in PoolOptions.model_fields} <= expected


def test_the_example_is_a_valid_configuration(tmp_path: Path) -> None:
    """With its example paths pointing at real files, the file loads, and its defaults are the real ones."""
    text = EXAMPLE.read_text(encoding="utf-8")
    cert, key = self_signed(tmp_path)
    replacements = {"/etc/session-pool-exporter/tls.crt": str(cert), "/etc/session-pool-exporter/tls.key": str(key)}
    for name in ("alice-token", "grafana-token"):
        token = tmp_path / name
        token.write_text(f"{name}-0123456789abcdefghijklmnop\n")
        token.chmod(0o600)
        replacements[f"/run/secrets/{name}"] = str(token)
    for example, real in replacements.items():
        assert example in text
        text = text.replace(example, real)
    path = tmp_path / "config.yaml"
    path.write_text(text)
    config = load_config(path, {}, {})
    assert [p.name for p in config.pools] == ["telegram"] and config.pools[0].interval == 30
    assert [(t.name, t.role) for t in config.admin.tokens] == [("alice", "write"), ("grafana", "read")]
    # Every value the file gives as a default is the built-in default.
    built_in = Config.model_validate({"mongodb": {"uri": "mongodb://h/"}, "pools": [
        {"name": "p", "database": "d", "collection": "c"}]}).model_dump()  # fmt: skip
    loaded = config.model_dump()
    for section in ("http", "log", "defaults"):
        assert loaded[section] == built_in[section], section
    for name in ("timeout", "server_selection_timeout", "write_concern"):
        assert loaded["mongodb"][name] == built_in["mongodb"][name], name
    for name in ("listen", "allow_plaintext", "request_timeout", "expose_credentials", "max_period",
                "bulk_unlock_cap", "reason_max_length", "audit", "write_concern", "tls"):  # fmt: skip
        assert loaded["admin"][name] == built_in["admin"][name], name
