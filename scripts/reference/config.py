"""The configuration reference and the example file, both generated from the config schema (exporter/config).

`python scripts/reference/config.py` writes docs/reference/configuration.md (`render()`) and
examples/config.yaml (`render_example()`); with `--check` it only reports drift (exit 1).
The descriptions are the models' attribute docstrings, the examples their `Field(examples=...)`.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types
import yaml
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from exporter.config.loader import FLAG_LOCATIONS
from exporter.config.rules import Rule, members, rules_of, section_of, strip
from exporter.config.schema import ADMIN_TOKEN_ENV, ENV_PREFIX, Config
from exporter.config.values import Kind

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = Path("docs/reference/configuration.md")
EXAMPLE = Path("examples/config.yaml")
COMMAND = "python scripts/reference/config.py"
CHECK_COMMAND = f"session-pool-exporter check-config --config {EXAMPLE}"
# The line that opens a commented-out example in examples/config.yaml (tests uncomment what follows it).
COMMENTED_OUT = "Example, commented out because the files it names must exist:"
_BOUNDS = ((annotated_types.Gt, "gt", ">"), (annotated_types.Ge, "ge", ">="),
           (annotated_types.Lt, "lt", "<"), (annotated_types.Le, "le", "<="))  # fmt: skip


# --- walking the schema ---------------------------------------------------------------------------


def owner(model: type[BaseModel], name: str) -> type[BaseModel]:
    """The class that declares a field (a pool's `interval` is PoolOptions's, wherever it appears)."""
    return next(k for k in reversed(model.__mro__) if name in vars(k).get("__annotations__", {}))


def fields(model: type[BaseModel]) -> list[tuple[str, FieldInfo]]:
    """A section's fields, its own first, then those of its base classes (a pool's `name` before `interval`)."""
    depth = {klass: i for i, klass in enumerate(model.__mro__)}
    items = list(model.model_fields.items())
    return sorted(items, key=lambda item: depth[owner(model, item[0])])


@dataclass(frozen=True)
class Key:
    """One key of the configuration: its dotted path (`pools[].name`), its field, and the section it is in."""

    path: str
    field: FieldInfo
    model: type[BaseModel]
    name: str


@dataclass(frozen=True)
class Same:
    """Keys of a section already listed at another path (`admin.tls.*` are the keys of `tls`)."""

    path: str
    names: list[str]
    first: str


def keys(model: type[BaseModel] = Config, prefix: str = "", seen: dict[Any, str] | None = None) -> Iterator[Key | Same]:
    """Every key once, in the order of the file; a section seen before is one `Same` entry per declaring class."""
    seen = {} if seen is None else seen
    again: dict[type[BaseModel], list[str]] = {}
    for name, field in fields(model):
        declared = owner(model, name)
        if (declared, name) in seen:
            again.setdefault(declared, []).append(name)
            continue
        path = f"{prefix}{name}"
        seen[declared, name] = path
        yield Key(path, field, model, name)
        inner, listed = section_of(field.annotation)
        if inner is not None:
            yield from keys(inner, f"{path}[]." if listed else f"{path}.", seen)
    for declared, names in again.items():
        first = seen[declared, names[0]].rsplit(".", 1)[0]
        yield Same(prefix.removesuffix("."), names, first)


# --- the reference page ---------------------------------------------------------------------------


def _number(value: Any) -> str:
    """A bound or default number without a pointless `.0`."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def type_text(annotation: Any, metadata: list[Any] | None = None) -> str:
    """A field's type in words: `seconds (> 0, <= 31622400)`, `list of database name`, `section or null`."""
    annotation, more = strip(annotation)
    metadata = [*(metadata or []), *more]
    flat: list[Any] = []
    for item in metadata:
        flat += item.metadata if isinstance(item, FieldInfo) else [item]
    options = members(annotation)
    if len(options) > 1:
        named = [type_text(option) for option in options if option is not type(None)]
        text = " or ".join(named) + (" or null" if type(None) in options else "")
    elif any(isinstance(item, Kind) for item in flat):
        text = next(item.text for item in flat if isinstance(item, Kind))
    elif get_origin(annotation) is Literal:
        text = "one of " + ", ".join(f"`{value}`" for value in get_args(annotation))
    elif get_origin(annotation) is list:
        text = "list of " + _plural(type_text(get_args(annotation)[0]))
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        text = "section"
    else:
        names = {bool: "boolean", int: "integer", float: "number", str: "string", Path: "path"}
        text = "string (secret)" if annotation is SecretStr else names.get(annotation, str(annotation))
    bounds = [f"{sign} {_number(getattr(item, attr))}" for item in flat for kind, attr, sign in _BOUNDS
              if isinstance(item, kind)]  # fmt: skip
    bounds += [f"at most {item.max_length} items" for item in flat if isinstance(item, annotated_types.MaxLen)]
    bounds += [f"at least {item.min_length} item" for item in flat if isinstance(item, annotated_types.MinLen)]
    return f"{text} ({', '.join(bounds)})" if bounds else text


def _plural(text: str) -> str:
    """`section` as `sections`, `database name` as `database names` (other texts as they are)."""
    return text + "s" if text.split(" ")[-1] in ("section", "string", "name", "integer", "number") else text


def default_text(field: FieldInfo) -> str:
    """A field's default as inline code (JSON), `required`, or nothing for a section."""
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return "`" + json.dumps(value, ensure_ascii=False) + "`"


def env_text(path: str) -> str:
    """The environment variable of a key (none inside a list: the list's variable takes JSON)."""
    if "[]" in path:
        return ""
    return f"`{ENV_PREFIX}{path.replace('.', '__').upper()}`"


def description(key: Key) -> str:
    """A key's description, with the flag that sets it."""
    text = " ".join((key.field.description or "").split())
    flags = [f"`--{flag.replace('_', '-')}`" for flag, where in FLAG_LOCATIONS.items() if where == key.path]
    if flags and not all(flag in text for flag in flags):
        text += f" Flag: {', '.join(flags)}."
    return text


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|")


def _rules_text() -> list[str]:
    """One line per rule across keys, with the sections it applies to."""
    where: dict[Rule, list[str]] = {}
    for entry in keys():
        if isinstance(entry, Key):
            inner, listed = section_of(entry.field.annotation)
            if inner is not None:
                for each in rules_of(inner):
                    where.setdefault(each, []).append(entry.path + ("[]" if listed else ""))
    for each in rules_of(Config):
        where.setdefault(each, []).append("")
    lines = []
    for each, paths in where.items():
        places = ", ".join(f"`{path}`" for path in paths if path) or "the whole file"
        lines.append(f"- {each.text} ({places})")
    return lines


INTRO = f"""\
Every key of the configuration file, with its type, its default, the environment variable that
sets it and what it does. Sources, highest precedence first: command-line flags > environment >
YAML file (`--config`) > built-in defaults, merged key by key.

- **Environment**: `{ENV_PREFIX}` and the key's path in capitals, sections joined by `__`
  (`{ENV_PREFIX}DEFAULTS__INTERVAL=30`). A variable naming a section or a list takes JSON
  (`{ENV_PREFIX}POOLS='[{{"name": "p", "database": "d", "collection": "c"}}]'`); keys inside a list
  item have no variable of their own. `{ADMIN_TOKEN_ENV}` adds a `write` token named `admin`.
- **Checking**: `session-pool-exporter check-config --config FILE` lists every problem at once, each
  led by where its value came from (`config.yaml:12:5`, `env NAME`, `flag --name`), then exits 2;
  unknown keys, variables and flags get a "did you mean". It does not contact MongoDB: `doctor` does.
- **Example**: `examples/config.yaml` in the repository holds every key with its description and its
  default, generated from the same schema as this page; `{CHECK_COMMAND}` passes as it is.
"""


def render() -> str:
    """docs/reference/configuration.md: a table per top-level section, then the rules across keys."""
    groups: dict[str, list[Key | Same]] = {"": []}
    for entry in keys():
        top = entry.path.split(".")[0].removesuffix("[]")
        if isinstance(entry, Key) and "." not in entry.path and section_of(entry.field.annotation)[0] is None:
            groups[""].append(entry)
        else:
            groups.setdefault(top, []).append(entry)
    out = [
        "# Configuration reference",
        "",
        f"<!-- Generated from the config schema (exporter/config) by `{COMMAND}`:"
        " edit the models' docstrings there, then run it. -->",
        "",
        INTRO,
    ]
    for top, entries in groups.items():
        out += ["", f"## `{top}`" if top else "## Top level", ""]
        out += ["| Key | Type | Default | Environment variable | Description |", "| --- | --- | --- | --- | --- |"]
        for entry in entries:
            if isinstance(entry, Same):
                names = ", ".join(f"`{name}`" for name in entry.names)
                out.append(f"| `{entry.path}.*` | | | | Also {names}, as in `{entry.first}`. |")
                continue
            annotation = entry.field.rebuild_annotation()
            row = (f"`{entry.path}`", type_text(annotation), default_text(entry.field), env_text(entry.path),
                   description(entry))  # fmt: skip
            out.append("| " + " | ".join(_cell(cell) for cell in row) + " |")
    out += ["", "## Rules across keys", "", "Checked together with everything else, whatever else is wrong:", ""]
    out += _rules_text()
    return "\n".join(out) + "\n"


# --- the example file -----------------------------------------------------------------------------


def _flow(value: Any) -> str:
    """A value as one line of YAML (flow style)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, SecretStr | Path):
        value = str(value)
    return yaml.safe_dump([value], default_flow_style=True, width=10**6).strip()[1:-1]


def _names_files(annotation: Any, value: Any) -> bool:
    """Whether a value sets a key that names a file (those must exist, so their examples stay commented out)."""
    if value is None:
        return False
    model, listed = section_of(annotation)
    if model is None:
        return any(strip(option)[0] is Path for option in members(annotation))
    items = value if listed and isinstance(value, list) else [value]
    return any(
        _names_files(model.model_fields[k].annotation, v)
        for item in items if isinstance(item, dict) for k, v in item.items() if k in model.model_fields
    )  # fmt: skip


def _comment(text: str, indent: int) -> list[str]:
    """A description as comment lines."""
    pad = " " * indent
    return [f"{pad}# {line}" for line in textwrap.wrap(text, width=max(60, 110 - indent))]


class _Example:
    """The example file's lines: each key once with its description, in the order of the schema."""

    def __init__(self) -> None:
        self.seen: dict[tuple[type[BaseModel], str], str] = {}  # a declared key -> the path it was shown at

    def section(
        self, model: type[BaseModel], given: dict[str, Any] | None, path: str, indent: int, inside: bool = False
    ) -> list[str]:
        """A section's keys; one shown before only when the example data `given` sets it.

        A key whose value names files is shown commented out, then with its default (`inside` such a block, as is).
        """
        out: list[str] = []
        pad = " " * indent
        for name, field in fields(model):
            declared = (owner(model, name), name)
            is_given = given is not None and name in given
            if declared in self.seen and not is_given:
                continue
            if is_given:
                value, example = (given or {})[name], True
            elif field.examples:
                value, example = field.examples[0], True
            elif field.is_required():
                raise ValueError(f"{model.__name__}.{name}: required, so its section's example must set it")
            else:
                value, example = field.get_default(call_default_factory=True), False
            inner, listed = section_of(field.annotation)
            files = not inside and _names_files(field.annotation, value)
            repeated = declared in self.seen
            if not repeated:
                text = " ".join((field.description or "").split())
                self.seen[declared] = f"{path}{name}"
            elif self.seen[declared] == f"{path}{name}":
                text = ""  # the next item of the same list
            else:
                text = f"As in `{self.seen[declared]}`; example value."
            if example and not files and not repeated and (inner is None or listed):
                text += " Required; example value." if field.is_required() else " Example value."
                text += "" if field.is_required() else f" The default is {default_text(field)}."
            if files:
                out += [*_comment(text, indent), f"{pad}# {COMMENTED_OUT}"]
                quoted = self.key(name, field, value, path, indent, inside=True)
                out += [f"{line[:indent]}# {line[indent:]}" for line in quoted]
                out += self.key(name, field, field.get_default(call_default_factory=True), path, indent)
            else:
                out += _comment(text, indent) if text else []
                out += self.key(name, field, value, path, indent, inside)
        return out

    def key(self, name: str, field: FieldInfo, value: Any, path: str, indent: int, inside: bool = False) -> list[str]:
        """`name: value` as YAML lines: a scalar inline, a section or a list of sections as a block."""
        pad = " " * indent
        model, listed = section_of(field.annotation)
        if model is None or value is None or (listed and not value):
            return [f"{pad}{name}: {_flow(value)}"]
        if not listed:
            given = value if isinstance(value, dict) else None
            return [f"{pad}{name}:", *self.section(model, given, f"{path}{name}.", indent + 2, inside)]
        out = [f"{pad}{name}:"]
        for item in value:
            lines = self.section(model, item, f"{path}{name}[].", indent + 4, inside)
            first = next(i for i, line in enumerate(lines) if not line.lstrip().startswith("#"))
            lines[first] = f"{pad}  - {lines[first][indent + 4 :]}"
            out += lines
        return out


def render_example() -> str:
    """examples/config.yaml: every key with its description and its default, examples where needed."""
    header = [
        "# session-pool-exporter: every configuration key with its description and its default;",
        '# "Example value" marks the values that are not defaults. Keys that name files are shown',
        "# commented out: the files must exist.",
        f"# Check it with: {CHECK_COMMAND}",
        f"# Generated from the config schema (exporter/config) by `{COMMAND}`;",
        f"# {REFERENCE} is the same as a table.",
        "",
    ]
    return "\n".join(header + _Example().section(Config, None, "", 0)) + "\n"


# --- writing --------------------------------------------------------------------------------------


def outputs() -> dict[Path, str]:
    """Each generated file and its content."""
    return {REFERENCE: render(), EXAMPLE: render_example()}


def main(argv: list[str] | None = None) -> int:
    """Write the generated files, or with --check report those that differ from the schema; exit 1 if any."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report drift; exit 1 if any")
    args = parser.parse_args(argv)
    stale = []
    for path, wanted in outputs().items():
        target = ROOT / path
        if (target.read_text(encoding="utf-8") if target.exists() else None) == wanted:
            continue
        stale.append(path)
        if not args.check:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(wanted, encoding="utf-8")
            print(f"wrote {path}")
    if args.check and stale:
        print(f"{', '.join(map(str, stale))}: differ from the config schema; run: {COMMAND}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
