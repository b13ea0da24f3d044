"""The admin routes from the endpoint table: each caller authorized for its endpoint's role, then its handler."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from exporter.admin.auth import Tokens
from exporter.admin.console import Console
from exporter.admin.endpoints import ENDPOINTS, Endpoint
from exporter.admin.handlers import Context
from exporter.admin.openapi import openapi_document
from exporter.admin.service import AdminService
from exporter.config import AdminConfig
from exporter.core import budget


class AdminHTTP:
    """The admin routes: authorize from the table, call the handler, every MongoDB call within a time budget."""

    def __init__(self, config: AdminConfig, service: AdminService) -> None:
        self.service = service
        self.request_timeout = config.request_timeout
        self.tokens = Tokens(config.tokens)
        self.context = Context(service, Console(), openapi_document)

    def routes(self) -> list[BaseRoute]:
        """The admin routes (all under /admin), from the endpoint table."""
        return [Route(e.path, self.route(e), methods=[e.method]) for e in ENDPOINTS]

    def route(self, endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        """The endpoint's handler behind the one check of its role, every MongoDB call it makes sharing
        admin.request_timeout."""

        @functools.wraps(endpoint.handler)
        async def authorized(request: Request) -> Response:
            with budget("admin.request_timeout", self.request_timeout):
                caller = self.tokens.authorize(request, endpoint.role)
                return await endpoint.handler(self.context, request, caller)

        return authorized
