"""The Model Context Protocol server: an AI tool asks "who is this customer and what do we know".

``core.mcp.tools`` is what the tools do (over ``core.compose.Services``, with the bot's assurance rules),
``core.mcp.server`` makes them MCP tools with the official SDK, ``core.mcp.http`` serves them as streamable
HTTP at ``/mcp`` behind ``THREADLINE_MCP__TOKEN``. ``threadline mcp`` (``core.cli.mcp``) serves the same
tools over stdio. They are wired in ``core.web.mcp`` and ``core.cli.mcp``, which give the tools the address
parser of ``identity`` (``core`` imports no ``identity`` module outside its wiring points).
"""
