"""Who calls the admin API: bearer tokens, their roles, and the one check of a route's role."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from starlette.requests import Request

from exporter.admin.errors import AdminDisabled, BadRequest, Forbidden, Unauthorized
from exporter.config import AdminToken

ADMIN_OFF = "the admin API is off: configure a token (admin.tokens, or SESSION_POOL_EXPORTER_ADMIN_TOKEN) to turn it on"


class Role(StrEnum):
    """What a route needs, and what a token may do: each role grants the ones before it."""

    # No token: the console's page and files (public code; every call they make needs a token).
    PUBLIC = "public"
    READ = "read"
    WRITE = "write"

    def grants(self, needed: Role) -> bool:
        """Whether a caller with this role may call a route that needs `needed`."""
        order = list(Role)
        return order.index(self) >= order.index(needed)


@dataclass(frozen=True)
class Caller:
    """Who acts: the token's name (the audit actor) and role."""

    name: str
    role: Role


# The caller of a public route, which reads no Authorization header (it never reaches a write).
ANONYMOUS = Caller("(no token)", Role.PUBLIC)


class Tokens:
    """The configured tokens, kept as digests; `authorize` is the only check of a request's role."""

    def __init__(self, tokens: Sequence[AdminToken]) -> None:
        self._tokens = [(hashlib.sha256(t.secret().encode()).digest(), Caller(t.name, Role(t.role))) for t in tokens]

    def authorize(self, request: Request, needed: Role) -> Caller:
        """The caller, allowed a route that needs `needed`; 404 when admin is off, 401/403 otherwise."""
        if not self._tokens:
            raise AdminDisabled(ADMIN_OFF)
        if needed is Role.PUBLIC:
            return ANONYMOUS
        caller = self._authenticate(request)
        if not caller.role.grants(needed):
            raise Forbidden(
                f"token {caller.name!r} has role {caller.role.value!r}; this route needs {needed.value!r}",
                role=caller.role.value,
            )
        return caller

    def _authenticate(self, request: Request) -> Caller:
        """The caller of a valid bearer token; 401 (400 for several Authorization headers) otherwise."""
        headers = request.headers.getlist("authorization")
        if len(headers) > 1:
            raise BadRequest("send one Authorization header, not several", location="header.Authorization")
        scheme, _, presented = (headers[0] if headers else "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise Unauthorized(
                "missing bearer token: send 'Authorization: Bearer <token>'", location="header.Authorization"
            )
        candidate = hashlib.sha256(presented.strip().encode()).digest()
        found: Caller | None = None
        for secret, caller in self._tokens:
            # Digests of equal length, compared against every token: timing reveals neither which
            # token nor how long it is.
            if hmac.compare_digest(candidate, secret):
                found = caller
        if found is None:
            raise Unauthorized("invalid token", location="header.Authorization")
        return found
