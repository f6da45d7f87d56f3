"""``threadline mcp``: the MCP tools (``core.mcp``) over stdio, for an AI tool that starts Threadline itself.

The same tools as ``/mcp``, on the data dir's store (``core.compose.open_services``, as the other commands):
the scope is ``THREADLINE_MCP__SCOPE`` (``read`` unless it says ``write``). No token is asked for: whoever
can start the process can read the data dir anyway. stdout carries the protocol only; logs go to stderr,
with ids only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.cli.base import Command, app, checked_settings, with_services

if TYPE_CHECKING:
    from core.compose import Services


@app.command("mcp", cls=Command)
def mcp() -> None:
    """Serve the MCP tools over stdio (find_customer, customer_memory, search_memory, open_cases, add_note,
    request_handoff). Writes need THREADLINE_MCP__SCOPE=write."""
    settings = checked_settings()
    from core.logs import setup_logging

    setup_logging(settings.log_level)  # stderr: stdout is the protocol's

    async def work(store: Services) -> None:
        from core.mcp.server import build_server
        from core.mcp.tools import McpTools
        from core.web.mcp import address_parser

        tools = McpTools(
            lambda: store, parse=address_parser(settings), scope=settings.mcp.scope, transport="stdio"
        )
        await build_server(tools).run_stdio_async()

    with_services(settings, work, doing="serving MCP on stdio")
