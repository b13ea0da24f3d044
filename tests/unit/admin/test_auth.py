"""Roles and the endpoint table's roles, without a server (the routes' answers: test_http.py)."""

from __future__ import annotations

from exporter.admin.auth import Role
from exporter.admin.endpoints import ENDPOINTS


def test_each_role_grants_itself_and_the_ones_before_it() -> None:
    """write does what read does; read does not write; a public route needs no token's role."""
    granted = {(have, need) for have in Role for need in Role if have.grants(need)}
    assert granted == {
        (Role.PUBLIC, Role.PUBLIC),
        (Role.READ, Role.PUBLIC),
        (Role.READ, Role.READ),
        (Role.WRITE, Role.PUBLIC),
        (Role.WRITE, Role.READ),
        (Role.WRITE, Role.WRITE),
    }


def test_every_post_route_needs_write_and_only_the_console_is_public() -> None:
    """A POST route changes sessions, so it needs write; only the console's own files go without a token."""
    for e in ENDPOINTS:
        if e.method == "POST":
            assert e.role is Role.WRITE, e.path
        else:
            assert e.role is (Role.PUBLIC if e.path.startswith("/admin/ui") else Role.READ), e.path
