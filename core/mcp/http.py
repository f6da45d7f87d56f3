"""``/mcp``: the MCP server as streamable HTTP, behind its own bearer token.

``McpEndpoint`` is a plain ASGI app that the web app routes ``/mcp`` to (``core.web.mcp``). It checks
``Authorization: Bearer <THREADLINE_MCP__TOKEN>`` first, in constant time, from the headers alone: a missing
or wrong token is 401 (``WWW-Authenticate: Bearer``), logged without any header value, and the SDK never
sees the request (no session, no tool runs, no body byte is read). Then it hands the request to the SDK's
streamable HTTP transport.

The transport is stateless with JSON answers: every POST is a whole exchange, no session lives in the
process, so any of ``serve --workers N``'s processes (or hosts) answers any call. The SDK's DNS-rebinding
check (Host and Origin allow-lists, which it turns on for a server bound to localhost) is off: the hub is
reached under its public name, and a rebinding page cannot send the bearer token, which every call needs.
Its session manager runs inside the web app's lifespan (``running``).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi.security.utils import get_authorization_scheme_param
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import SecretStr
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"
MCP_TOKEN_SETTING = "THREADLINE_MCP__TOKEN"  # noqa: S105 - the variable's name, not a secret
UNAUTHORIZED_DETAIL = f"a valid MCP bearer token ({MCP_TOKEN_SETTING}) is required"


class McpEndpoint:
    """The ASGI app of ``/mcp``: the bearer check, then the SDK's streamable HTTP transport."""

    def __init__(self, server: MCPServer[Any], *, token: SecretStr) -> None:
        self._expected = token.get_secret_value().encode()
        if not self._expected:
            raise ValueError(f"{MCP_TOKEN_SETTING} is empty")
        server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            stateless_http=True,
            json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        self._manager = server.session_manager
        self._transport = StreamableHTTPASGIApp(self._manager)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The SDK's session manager, for the web app's lifespan (it can run once)."""
        async with self._manager.run():
            yield

    def _authorized(self, scope: Scope) -> bool:
        header = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                header = value
                break
        scheme, credentials = get_authorization_scheme_param(header.decode("latin-1"))
        given = credentials.encode("latin-1") if scheme.lower() == "bearer" else b""
        return hmac.compare_digest(given, self._expected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if not self._authorized(scope):
            log.warning("mcp call refused: missing or wrong bearer token")
            response = JSONResponse(
                {"detail": UNAUTHORIZED_DETAIL}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
            await response(scope, receive, send)
            return
        await self._transport(scope, receive, send)
