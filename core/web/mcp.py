"""Wiring of ``/mcp`` (``core.mcp``): the tools over the app's services, the address parser of ``identity``,
the SDK server and its bearer-checked endpoint. No ``THREADLINE_MCP__TOKEN``: no endpoint, no route (``/mcp``
is 404), and the MCP SDK is not even imported."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import TYPE_CHECKING

from starlette.routing import Route

from core.compose import Services
from core.messages import Address
from core.settings import Settings
from identity.directory import parse_query

if TYPE_CHECKING:
    from core.mcp.http import McpEndpoint

MCP_PATH = "/mcp"


def address_parser(settings: Settings) -> functools.partial[Address | None]:
    """``identity.directory.parse_query`` in the configured default region: any spelling the CLI takes,
    a bare national phone number too."""
    return functools.partial(parse_query, default_region=settings.default_region)


def mcp_endpoint(settings: Settings, services: Callable[[], Services]) -> McpEndpoint | None:
    """The ``/mcp`` endpoint over the ``Services`` that ``services()`` gives per call; None when
    ``THREADLINE_MCP__TOKEN`` is not set."""
    token = settings.mcp.token
    if token is None or not settings.mcp.served:
        return None
    from core.mcp.http import McpEndpoint
    from core.mcp.server import build_server
    from core.mcp.tools import McpTools

    tools = McpTools(services, parse=address_parser(settings), scope=settings.mcp.scope, transport="http")
    return McpEndpoint(build_server(tools), token=token)


def mcp_running(endpoint: McpEndpoint | None) -> AbstractAsyncContextManager[None]:
    """For the web app's lifespan: the endpoint's session manager runs while the app does."""
    return endpoint.running() if endpoint is not None else nullcontext()


def mcp_route(endpoint: McpEndpoint) -> Route:
    """``/mcp`` (GET, POST, DELETE: the streamable HTTP transport's methods) to the endpoint."""
    return Route(MCP_PATH, endpoint, methods=["GET", "POST", "DELETE"], include_in_schema=False)
