"""The core's exceptions, each with its HTTP status, and the one place driver errors become them."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pymongo
from pymongo import AsyncMongoClient
from pymongo.errors import (
    ConnectionFailure,
    ExecutionTimeout,
    NetworkTimeout,
    PyMongoError,
    ServerSelectionTimeoutError,
    WTimeoutError,
)
from pymongo.errors import OperationFailure as DriverOperationFailure

if TYPE_CHECKING:
    from pymongo.read_preferences import _ServerMode

_URI_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^@/\s]+@", re.IGNORECASE)
_QUOTED = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")
# Names of the server's error codes the core meets, for messages that stay useful without values.
CODE_NAMES = {
    2: "BadValue",
    11: "UserNotFound",
    13: "Unauthorized",
    14: "TypeMismatch",
    18: "AuthenticationFailed",
    26: "NamespaceNotFound",
    27: "IndexNotFound",
    50: "MaxTimeMSExpired",
    52: "DollarPrefixedFieldName",
    66: "ImmutableField",
    85: "IndexOptionsConflict",
    86: "IndexKeySpecsConflict",
    112: "WriteConflict",
    121: "DocumentValidationFailure",
    189: "PrimarySteppedDown",
    251: "NoSuchTransaction",
    10107: "NotWritablePrimary",
    11000: "DuplicateKey",
    11600: "InterruptedAtShutdown",
    13435: "NotPrimaryNoSecondaryOk",
}
# What a connection failure was, said in a few words (the driver's text holds the topology, with hosts).
REFUSED = "connection refused"
HOST_NOT_FOUND = "host name not found"
TLS_FAILED = "TLS handshake failed"
AUTH_FAILED = "authentication failed"
SET_NAME_MISMATCH = "no member of the replica set named in the URI answered (check replicaSet=)"
NO_PRIMARY = "no primary"
CONNECTION_CLOSED = "connection closed"
CONNECTION_LOST = "connection lost"
NO_ANSWER = "no answer from the server (frozen or overloaded?)"
NO_SERVER = "no server available"
_CAUSES = (
    (re.compile(r"connection refused|errno 111|connect call failed", re.I), REFUSED),
    (
        re.compile(r"name or service not known|nodename nor servname|getaddrinfo|no address associated", re.I),
        HOST_NOT_FOUND,
    ),
    (re.compile(r"certificate|ssl|tls", re.I), TLS_FAILED),
    (re.compile(r"authentication failed|auth failed", re.I), AUTH_FAILED),
    (re.compile(r"for replica set name|replica set name mismatch", re.I), SET_NAME_MISMATCH),
    (re.compile(r"primary\(\)|no primary|not primary|writable", re.I), NO_PRIMARY),
    (re.compile(r"connection reset|broken pipe|closed", re.I), CONNECTION_CLOSED),
    (re.compile(r"pool (was )?(paused|cleared)", re.I), CONNECTION_LOST),
    (re.compile(r"timed out|timeout", re.I), NO_ANSWER),
    # Nothing known of any server yet, and no error either: connections neither refused nor answered.
    (re.compile(r"no servers found yet", re.I), NO_ANSWER),
    (re.compile(r"no servers found|no replica set members", re.I), NO_SERVER),
)
# A cause in words when the driver's text says nothing we know: by the error's kind, never its class name.
_KIND_CAUSES: tuple[tuple[type[BaseException], str], ...] = (
    (NetworkTimeout, NO_ANSWER),
    (ServerSelectionTimeoutError, NO_SERVER),
    (ConnectionFailure, CONNECTION_LOST),
)
NAMESPACE_NOT_FOUND = 26
AUTHENTICATION_FAILED = 18
# Seconds closing a client may spend ending its server sessions (a courtesy; the server expires them anyway).
CLOSE_TIMEOUT = 2.0
# Seconds a cancelled transaction (a request the shutdown abandons) may spend aborting: the server
# aborts an unfinished transaction by itself, so a frozen server must not hold the shutdown up.
CANCELLED_ABORT_TIMEOUT = 0.25
_DRIVER_NOISE = re.compile(r"\s*\(configured timeouts:[^)]*\)|, Timeout: .*", re.S)


def redact(text: str) -> str:
    """Remove credentials from any connection string inside `text`."""
    return _URI_CREDENTIALS.sub(r"\g<scheme>***@", text)


def _without_values(text: str) -> str:
    """A server message with every value it quotes taken out: documents `{...}` and quoted strings."""
    out, depth = [], 0
    for char in _QUOTED.sub("…", text):
        if char == "{":
            if depth == 0:
                out.append("{…}")
            depth += 1
        elif char == "}" and depth:
            depth -= 1
        elif depth == 0:
            out.append(char)
    return "".join(out).strip()


def server_reason(exc: DriverOperationFailure) -> str:
    """A refused operation in one line: the code, its name, the server's message without any value in it.

    Validation failures and duplicate keys quote stored documents (passwords included); only the
    code and the message's wording are kept, never `errInfo`, `keyValue` or the values in `errmsg`.
    """
    details = exc.details if isinstance(exc.details, dict) else {}
    code = exc.code
    name = details.get("codeName") or CODE_NAMES.get(code or 0)
    message = _without_values(str(details.get("errmsg") or "")) or "no message"
    head = f"{name} ({code})" if name else f"code {code}"
    return f"{head}: {message}"


def connection_reason(exc: BaseException) -> str:
    """Why MongoDB could not be reached, in a few words (never the topology description or the hosts)."""
    if isinstance(exc, DriverOperationFailure):
        return server_reason(exc)
    # The first server's error, without the driver's timeout settings or its topology description.
    text = _DRIVER_NOISE.sub("", str(exc))
    for pattern, reason in _CAUSES:
        if pattern.search(text):
            return reason
    for kind, reason in _KIND_CAUSES:
        if isinstance(exc, kind):
            return reason
    return "unexpected driver error"


class SessionPoolError(Exception):
    """Base class of every error the client core raises."""

    status: ClassVar[int] = 500
    kind: ClassVar[str] = "pool_error"

    def __init__(self, message: str, *, operation: str | None = None) -> None:
        self.message = redact(message)
        self.operation = operation
        super().__init__(self.message)


class InvalidInput(SessionPoolError, ValueError):
    """Input rejected before anything reached the database."""

    status = 400
    kind = "invalid_input"

    def __init__(self, message: str, *, field: str | None = None, operation: str | None = None) -> None:
        self.field = field
        super().__init__(message, operation=operation)


class SessionNotFound(SessionPoolError, LookupError):
    """No session document with that id."""

    status = 404
    kind = "not_found"

    def __init__(self, session_id: object, *, operation: str | None = None) -> None:
        self.session_id = session_id
        super().__init__(f"session {session_id} not found", operation=operation)


class OperationTimeout(SessionPoolError, TimeoutError):
    """The operation did not finish within its timeout."""

    status = 504
    kind = "timeout"

    def __init__(self, message: str, *, timeout: float, operation: str | None = None, network: bool = False) -> None:
        self.timeout = timeout
        self.network = network
        super().__init__(message, operation=operation)


class Unavailable(SessionPoolError, ConnectionError):
    """MongoDB could not be reached; `reason` says why in a few words (connection refused, no primary...)."""

    status = 503
    kind = "unavailable"

    def __init__(self, message: str, *, operation: str | None = None, reason: str = "unreachable") -> None:
        self.reason = reason
        super().__init__(message, operation=operation)


class OperationFailed(SessionPoolError):
    """MongoDB refused or failed the operation."""

    status = 502
    kind = "operation_failed"

    def __init__(
        self, message: str, *, code: int | None = None, operation: str | None = None, transient: bool = False
    ) -> None:
        self.code = code
        self.transient = transient
        super().__init__(message, operation=operation)


class CollectionMissing(SessionPoolError, LookupError):
    """The pool's collection does not exist (a mistyped name, or a pool not created yet); nothing creates it."""

    status = 404
    kind = "collection_missing"

    def __init__(
        self, database: str, collection: str, *, close: tuple[str, ...] = (), operation: str | None = None
    ) -> None:
        self.database = database
        self.collection = collection
        self.close = close
        self.what = f"collection {database}.{collection} does not exist"
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        super().__init__(self.what + hint, operation=operation)


class TransactionsUnsupported(SessionPoolError):
    """A transaction was required but the server is a standalone mongod."""

    status = 503
    kind = "transactions_unsupported"


@dataclass(frozen=True)
class Budget:
    """Time left for every MongoDB operation in a block: a refresh or an admin request, named by its setting."""

    setting: str
    seconds: float
    ends: float

    def remaining(self) -> float:
        """Seconds left (negative once spent)."""
        return self.ends - time.monotonic()


_BUDGET: ContextVar[Budget | None] = ContextVar("session_pool_budget", default=None)


@contextmanager
def budget(setting: str, seconds: float) -> Iterator[Budget]:
    """Bound every guarded operation in the block by what remains of `seconds` (an enclosing budget still holds)."""
    outer = _BUDGET.get()
    mine = Budget(setting, seconds, time.monotonic() + seconds)
    token = _BUDGET.set(outer if outer is not None and outer.ends <= mine.ends else mine)
    try:
        yield mine
    finally:
        _BUDGET.reset(token)


@contextmanager
def own_budget() -> Iterator[None]:
    """Leave the enclosing budget: what follows an applied change (recording it) must not be cut short."""
    token = _BUDGET.set(None)
    try:
        yield
    finally:
        _BUDGET.reset(token)


def _server_known(client: AsyncMongoClient[Any], read_preference: _ServerMode) -> bool:
    """Whether the driver currently knows a server the read preference accepts."""
    return client.topology_description.has_readable_server(read_preference)


@asynccontextmanager
async def guard(
    operation: str,
    timeout: float,  # noqa: ASYNC109 - a driver (CSOT) timeout
    client: AsyncMongoClient[Any] | None = None,
    read_preference: _ServerMode | None = None,
) -> AsyncIterator[None]:
    """Run a block of driver calls with a timeout, turning driver errors into the core's errors.

    The block gets `timeout`, or what remains of the enclosing `budget` if less. With a `client`
    that knows no usable server, it first waits for one for at most `server_selection_timeout`
    (PyMongo alone would wait the whole timeout: under CSOT it ignores serverSelectionTimeoutMS).
    A usable server is one `read_preference` accepts (default: the client's).
    """
    limit, spent_by = timeout, "timeout"
    enclosing = _BUDGET.get()
    if enclosing is not None and enclosing.remaining() < limit:
        limit, spent_by = enclosing.remaining(), enclosing.setting
    if limit <= 0:
        assert enclosing is not None
        raise OperationTimeout(
            f"{operation} not started: {enclosing.setting} ({enclosing.seconds:g} s) ran out",
            timeout=enclosing.seconds,
            operation=operation,
        )
    total = enclosing.seconds if spent_by != "timeout" and enclosing is not None else timeout
    started = time.monotonic()
    try:
        mode = read_preference or (client.read_preference if client is not None else None)
        if client is not None and mode is not None and not _server_known(client, mode):
            selection = client.options.server_selection_timeout
            # Name the setting that bounds the wait, with its configured value (not what was left of it).
            wait, governs = (selection, "server_selection_timeout") if selection <= limit else (total, spent_by)
            try:
                with pymongo.timeout(min(selection, limit)):
                    await client.admin.command("ping", read_preference=mode)
            except (ServerSelectionTimeoutError, NetworkTimeout, ConnectionFailure) as exc:
                reason = connection_reason(exc)
                message = f"{operation}: MongoDB is unreachable (no server within {wait:g} s, {governs}): {reason}"
                raise Unavailable(message, operation=operation, reason=reason) from None
        with pymongo.timeout(limit - (time.monotonic() - started)):
            yield
    except SessionPoolError:
        raise
    except (TimeoutError, ExecutionTimeout, NetworkTimeout, WTimeoutError) as exc:
        raise _timeout(operation, total, spent_by, exc) from None
    except ServerSelectionTimeoutError as exc:
        raise Unavailable(
            f"{operation}: MongoDB is unreachable: {connection_reason(exc)}",
            operation=operation,
            reason=connection_reason(exc),
        ) from None
    except ConnectionFailure as exc:
        raise Unavailable(
            f"{operation}: connection to MongoDB failed: {connection_reason(exc)}",
            operation=operation,
            reason=connection_reason(exc),
        ) from None
    except DriverOperationFailure as exc:
        if exc.timeout:
            raise _timeout(operation, total, spent_by, exc) from None
        if exc.code == AUTHENTICATION_FAILED:
            # The login of a new connection, not the operation, failed: MongoDB is unusable until
            # the credentials are fixed (or the user is created), like a server that cannot be reached.
            raise Unavailable(
                f"{operation}: MongoDB refused the login of mongodb.uri: authentication failed",
                operation=operation,
                reason=AUTH_FAILED,
            ) from None
        raise OperationFailed(
            f"{operation} failed: {server_reason(exc)}",
            code=exc.code,
            operation=operation,
            transient=exc.has_error_label("TransientTransactionError"),
        ) from None
    except PyMongoError as exc:
        if exc.timeout:
            raise _timeout(operation, total, spent_by, exc) from None
        raise OperationFailed(f"{operation} failed: {type(exc).__name__}", operation=operation) from None


def _timeout(operation: str, seconds: float, setting: str, exc: BaseException) -> OperationTimeout:
    """The core's timeout error for a driver timeout, naming the setting that ran out.

    `network` when a socket read or write timed out: the server took the request and never answered.
    """
    network = isinstance(exc, NetworkTimeout)
    why = "no answer from the server" if network else "the server did not finish"
    return OperationTimeout(
        f"{operation} timed out after {seconds:g} s ({setting}): {why}",
        timeout=seconds,
        operation=operation,
        network=network,
    )
