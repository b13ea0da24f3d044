"""The admin API's own errors, each with its HTTP status and error kind (mapped in exporter.api)."""

from __future__ import annotations

from typing import ClassVar


class AdminError(Exception):
    """Base of the admin API's own errors; `location` says where the problem is (`header.Authorization`)."""

    status: ClassVar[int] = 400
    kind: ClassVar[str] = "bad_request"

    def __init__(self, message: str, *, location: str = "") -> None:
        self.message = message
        self.location = location
        super().__init__(message)


class BadRequest(AdminError):
    """The request is malformed before any parsing of its body (headers, request id)."""


class UnsupportedMediaType(AdminError):
    """A body was sent with another content type than application/json."""

    status = 415
    kind = "unsupported_media_type"


class Unauthorized(AdminError):
    """No token, or a token that matches none configured."""

    status = 401
    kind = "unauthorized"


class Forbidden(AdminError):
    """The token's role does not allow this route."""

    status = 403
    kind = "forbidden"

    def __init__(self, message: str, *, role: str) -> None:
        self.role = role
        super().__init__(message, location="header.Authorization")


class AdminDisabled(AdminError):
    """No admin token is configured, so the admin API does not exist."""

    status = 404
    kind = "not_found"


class PoolNotFound(AdminError):
    """The pool named in the path is not configured."""

    status = 404
    kind = "not_found"

    def __init__(self, pool: str) -> None:
        self.pool = pool
        super().__init__(f"unknown pool {pool!r}", location="path.pool")


class Conflict(AdminError):
    """The action cannot apply to the session or pool as it is now."""

    status = 409
    kind = "conflict"


class ShuttingDown(AdminError):
    """The daemon is shutting down and stopped the request before it finished (see exporter.draining)."""

    status = 503
    kind = "shutting_down"


class BodyTooLarge(AdminError):
    """The request body is larger than the admin API accepts."""

    status = 413
    kind = "too_large"

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"request body larger than {limit} bytes", location="body")


class InvalidRequest(AdminError):
    """The request's JSON body or query string does not validate; `problems` lists each `{location, message}`."""

    status = 422
    kind = "invalid_input"

    def __init__(self, message: str, *, location: str = "body", problems: list[dict[str, str]] | None = None) -> None:
        self.problems = problems or []
        super().__init__(message, location=location)


class TooManyRequests(AdminError):
    """The caller spent its allowance of a limited request; `retry_after` seconds until the next is allowed."""

    status = 429
    kind = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int, location: str = "") -> None:
        self.retry_after = retry_after
        super().__init__(message, location=location)
