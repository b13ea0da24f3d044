"""The core's exceptions, each with its HTTP status, and the one place driver errors become them."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import ClassVar

import pymongo
from pymongo.errors import (
    ConnectionFailure,
    ExecutionTimeout,
    NetworkTimeout,
    PyMongoError,
    ServerSelectionTimeoutError,
    WTimeoutError,
)
from pymongo.errors import OperationFailure as DriverOperationFailure

_URI_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^@/\s]+@", re.IGNORECASE)


def redact(text: str) -> str:
    """Remove credentials from any connection string inside `text`."""
    return _URI_CREDENTIALS.sub(r"\g<scheme>***@", text)


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
    """MongoDB could not be reached."""

    status = 503
    kind = "unavailable"


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


class TransactionsUnsupported(SessionPoolError):
    """A transaction was required but the server is a standalone mongod."""

    status = 503
    kind = "transactions_unsupported"


@asynccontextmanager
async def guard(operation: str, timeout: float) -> AsyncIterator[None]:  # noqa: ASYNC109 - a driver (CSOT) timeout
    """Run a block of driver calls with a timeout, turning driver errors into the core's errors."""
    try:
        with pymongo.timeout(timeout):
            yield
    except SessionPoolError:
        raise
    except (TimeoutError, ExecutionTimeout, NetworkTimeout, WTimeoutError) as exc:
        raise _timeout(operation, timeout, exc) from None
    except ServerSelectionTimeoutError as exc:
        raise Unavailable(f"{operation}: MongoDB is unreachable: {exc}", operation=operation) from None
    except ConnectionFailure as exc:
        raise Unavailable(f"{operation}: connection to MongoDB failed: {exc}", operation=operation) from None
    except DriverOperationFailure as exc:
        if exc.timeout:
            raise _timeout(operation, timeout, exc) from None
        raise OperationFailed(
            f"{operation} failed: {exc}",
            code=exc.code,
            operation=operation,
            transient=exc.has_error_label("TransientTransactionError"),
        ) from None
    except PyMongoError as exc:
        if exc.timeout:
            raise _timeout(operation, timeout, exc) from None
        raise OperationFailed(f"{operation} failed: {exc}", operation=operation) from None


def _timeout(operation: str, timeout: float, exc: BaseException) -> OperationTimeout:
    """The core's timeout error for a driver timeout (`network` when a socket read or write timed out)."""
    return OperationTimeout(
        f"{operation} timed out after {timeout:g} s: {exc}",
        timeout=timeout,
        operation=operation,
        network=isinstance(exc, NetworkTimeout),
    )
