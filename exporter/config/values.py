"""Config value types: each kind of value (a name, an address, a file, a URI...) with the one check it passes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr
from pymongo.errors import PyMongoError
from pymongo.uri_parser import parse_uri

from exporter.core import MAX_PERIOD, READ_PREFERENCES, InvalidInput, read_preference, redact
from exporter.core.timeframe import zone


@dataclass(frozen=True)
class Kind:
    """How the configuration reference names a value type (pydantic ignores this marker)."""

    text: str


NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
NAME_RULE = "must be 1-64 characters of letters, digits, '_' or '-'"
# MongoDB refuses these characters in database names (on Windows servers the last six too).
_BAD_DB_CHARS = set('/\\. "$\x00*<>:|?')
_LOOPBACK = ("127.", "::1", "localhost")
_SUBFIELD = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


def check_name(value: str) -> str:
    """Pool, token and actor names are label-safe identifiers."""
    if not NAME.match(value):
        raise ValueError(NAME_RULE)
    return value


def check_database(value: str) -> str:
    """A database name MongoDB accepts."""
    if not value or set(value) & _BAD_DB_CHARS or len(value) > 63:
        raise ValueError(f"{value!r} is not a valid MongoDB database name")
    return value


def check_collection(value: str) -> str:
    """A collection name MongoDB accepts (system.* is the server's own)."""
    if not value or "$" in value or "\x00" in value or value.startswith("system."):
        raise ValueError(f"{value!r} is not a valid MongoDB collection name")
    return value


def parse_listen(value: str) -> tuple[str, int]:
    """Split 'host:port' (or '[v6]:port', ':port') into its parts; ValueError if malformed."""
    match = re.fullmatch(r"(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<host>[^:\[\]\s]*)):(?P<port>\d{1,5})", value)
    if not match:
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 0.0.0.0:9810 or [::]:9810)")
    port = int(match["port"])
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range 1-65535")
    host = match["v6"] or match["host"] or "0.0.0.0"
    return host, port


def _check_listen(value: str) -> str:
    """HOST:PORT with a valid port."""
    parse_listen(value)
    return value


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach."""
    return host.startswith(_LOOPBACK)


def readable_file(path: Path) -> Path:
    """A secret or certificate file that exists and can be read."""
    if not path.exists():
        raise ValueError(f"file {str(path)!r} does not exist")
    if not path.is_file():
        raise ValueError(f"{str(path)!r} is not a regular file")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"file {str(path)!r} cannot be read: {exc.strerror}") from None
    return path


def read_secret(path: Path) -> str:
    """Contents of a secret file, without the trailing newline editors add."""
    return path.read_text(encoding="utf-8").strip()


def _text(path: Path) -> Path:
    """A secret file holding UTF-8 text."""
    try:
        read_secret(path)
    except UnicodeDecodeError:
        raise ValueError(f"file {str(path)!r} is not UTF-8 text") from None
    return path


def check_uri(uri: str) -> None:
    """Reject a malformed connection string without echoing it (it may hold a password)."""
    if not uri.startswith(("mongodb://", "mongodb+srv://")):
        raise ValueError("must start with mongodb:// or mongodb+srv://")
    if uri.startswith("mongodb+srv://"):
        return  # parsing an SRV URI needs DNS; the driver checks it at startup
    try:
        parse_uri(uri, warn=False)
    except (PyMongoError, ValueError) as exc:
        raise ValueError(f"invalid MongoDB URI: {redact(str(exc))}") from None


def _uri(value: SecretStr) -> SecretStr:
    """A well-formed MongoDB connection string."""
    check_uri(value.get_secret_value())
    return value


def _holds_uri(path: Path) -> Path:
    """A file whose content is a well-formed MongoDB connection string."""
    try:
        check_uri(read_secret(path))
    except ValueError as exc:
        raise ValueError(f"the file's content: {exc}") from None
    return path


def _zone(value: str) -> str:
    """A known IANA time zone, or UTC (the core's check, worded for the config file)."""
    try:
        zone(value)
    except InvalidInput:
        raise ValueError(f"{value!r} is not a known IANA time zone (e.g. Europe/Moscow)") from None
    return value


def _subfields(value: list[str]) -> list[str]:
    """Dotted names of sub-fields (`phone`, `profile.login`), each once."""
    for name in value:
        if not _SUBFIELD.match(name) or len(name) > 100:
            raise ValueError(f"{name!r} is not a sub-field name such as phone or profile.login")
    if len(set(value)) != len(value):
        raise ValueError("names must be distinct")
    return value


def _template(value: str) -> str:
    """A template naming a pool from `{database}` and `{collection}`."""
    try:
        value.format(database="d", collection="c")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"{value!r}: use {{database}} and {{collection}} only ({exc})") from None
    return value


def _read_preference(value: str) -> str:
    """One of the driver's read preference names (the core's list)."""
    try:
        read_preference(value)
    except InvalidInput as exc:
        raise ValueError(f"must be one of {', '.join(READ_PREFERENCES)}") from exc
    return value


def _lower(value: object) -> object:
    """Accept INFO as well as info."""
    return value.lower() if isinstance(value, str) else value


Name = Annotated[str, AfterValidator(check_name), Kind("name (1-64 letters, digits, `_`, `-`)")]
DatabaseName = Annotated[str, AfterValidator(check_database), Kind("database name")]
CollectionName = Annotated[str, AfterValidator(check_collection), Kind("collection name")]
Listen = Annotated[str, AfterValidator(_check_listen), Kind("`HOST:PORT`, `[v6]:PORT` or `:PORT`")]
ReadableFile = Annotated[Path, AfterValidator(readable_file), Kind("path of a readable file")]
SecretFile = Annotated[Path, AfterValidator(readable_file), AfterValidator(_text), Kind("path of a readable file")]
UriFile = Annotated[
    Path,
    AfterValidator(readable_file),
    AfterValidator(_text),
    AfterValidator(_holds_uri),
    Kind("path of a file holding a MongoDB URI"),
]
MongoURI = Annotated[SecretStr, AfterValidator(_uri), Kind("MongoDB URI (secret)")]
TimeZone = Annotated[str, AfterValidator(_zone), Kind("IANA time zone name")]
SubFieldNames = Annotated[list[str], AfterValidator(_subfields), Kind("list of sub-field names")]
NameTemplate = Annotated[str, AfterValidator(_template), Kind("template of `{database}` and `{collection}`")]
ReadPreference = Annotated[
    str, AfterValidator(_read_preference), Kind("one of " + ", ".join(f"`{name}`" for name in READ_PREFERENCES))
]
Lowercase = BeforeValidator(_lower)
PositiveSeconds = Annotated[float, Field(gt=0, le=MAX_PERIOD.total_seconds()), Kind("seconds")]
Seconds = Annotated[float, Field(ge=0, le=MAX_PERIOD.total_seconds()), Kind("seconds")]
