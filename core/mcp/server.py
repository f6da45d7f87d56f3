"""The MCP server: ``core.mcp.tools.McpTools`` as Model Context Protocol tools, with the official SDK.

``build_server(tools)`` makes an ``MCPServer`` (the SDK's high-level server, called FastMCP before mcp 2)
whose tools are thin glue: the arguments come in typed (the SDK checks them against the schema it derives
from the annotations; a wrong type is a tool error naming the field), the method runs, its dict goes out as
structured content. The errors are mapped in one place (``_answer``): what the caller can act on (no such
customer, a bad address or value, a read-only scope, the memory backend down) is a tool error with our
message; anything else is logged by its type only and answered "internal error", so that no SQL parameter
or memory text reaches a log line or the caller.

Tool annotations tell the client which tools only read (``read_only_hint``); the write tools are listed
whatever the scope, and refuse when it is ``read``.

The SDK's own loggers (``mcp``) print a failed tool's message at INFO, and that message may echo what the
caller sent (an address): they are kept at WARNING. Building ``MCPServer`` calls ``logging.basicConfig``
(a rich handler on the root logger) when the root logger has none; ``build_server`` keeps it from
configuring the process's logging behind its back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from core.errors import ThreadlineError
from core.mcp.tools import MAX_LIMIT, McpTools

log = logging.getLogger(__name__)

SERVER_NAME = "threadline"
INSTRUCTIONS = (
    "Threadline knows the customers of a support team across Slack, Telegram, SMS and email. "
    "find_customer tells who holds a handle (any spelling: sms:+1 555 123 0000, (555) 123-0000, "
    "email:ana@example.com, telegram:42); customer_memory and search_memory read what the customer told "
    "the team, open_cases lists their open support cases. A handle marked linked_without_proof is not "
    "proven to be the customer's: only what it said itself is shown."
)

Customer = Annotated[
    str,
    Field(
        description="A customer id (cus_...) or one of the customer's addresses, such as sms:+15551230000.",
        max_length=320,
    ),
]
Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT, description="How many memories at most.")]

_READ = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)


@contextmanager
def _root_logging_untouched() -> Iterator[None]:
    """``MCPServer()`` calls ``logging.basicConfig``: a handler in place makes that a no-op."""
    root = logging.getLogger()
    placeholder = logging.NullHandler() if not root.handlers else None
    if placeholder is not None:
        root.addHandler(placeholder)
    try:
        yield
    finally:
        if placeholder is not None:
            root.removeHandler(placeholder)


async def _answer(tool: str, work: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """The one place errors become tool errors."""
    try:
        return await work
    except (ThreadlineError, ValueError) as exc:  # ours, for the caller: what to fix or try again
        log.info("mcp %s refused: %s", tool, type(exc).__name__)
        raise ToolError(str(exc)) from None
    except Exception as exc:
        log.error("mcp %s failed: %s", tool, type(exc).__name__)
        raise ToolError("internal error; the call changed nothing that it reports") from None


def build_server(tools: McpTools) -> MCPServer[Any]:
    """An ``MCPServer`` serving ``tools``."""
    logging.getLogger("mcp").setLevel(max(logging.WARNING, logging.getLogger("mcp").level))
    with _root_logging_untouched():
        server: MCPServer[Any] = MCPServer(SERVER_NAME, instructions=INSTRUCTIONS, log_level="WARNING")

    @server.tool(annotations=_READ)
    async def find_customer(
        address: Annotated[
            str,
            Field(
                description="Any handle: sms:+15551230000, +1 555 123 0000, (555) 123-0000, "
                "email:ana@example.com, telegram:42, slack:T0123:U0456; or a customer id.",
                max_length=320,
            ),
        ],
    ) -> dict[str, Any]:
        """Who holds this handle: the customer id and every handle with its assurance (how well it is known
        to be theirs). A handle linked without proof shows only itself."""
        return await _answer("find_customer", tools.find_customer(address))

    @server.tool(annotations=_READ)
    async def customer_memory(customer_id: Customer, limit: Limit = 20) -> dict[str, Any]:
        """What the team knows of the customer, newest first, each memory with its channel and date."""
        return await _answer("customer_memory", tools.customer_memory(customer_id, limit))

    @server.tool(annotations=_READ)
    async def search_memory(
        customer_id: Customer,
        query: Annotated[str, Field(max_length=2000, description="What to look for, in words.")],
        category: Annotated[
            str | None,
            Field(
                description="Only this category: profile, support_history, special_handling, "
                "operational_state."
            ),
        ] = None,
        since: Annotated[
            str | None, Field(max_length=40, description="Written at or after (ISO date or date-time, UTC).")
        ] = None,
        until: Annotated[
            str | None, Field(max_length=40, description="Written before (ISO date or date-time, UTC).")
        ] = None,
        limit: Limit = 10,
    ) -> dict[str, Any]:
        """The customer's memories that best match the query, best first."""
        return await _answer(
            "search_memory", tools.search_memory(customer_id, query, category, since, until, limit)
        )

    @server.tool(annotations=_READ)
    async def open_cases(customer_id: Customer) -> dict[str, Any]:
        """The customer's open support cases, newest first."""
        return await _answer("open_cases", tools.open_cases(customer_id))

    @server.tool(annotations=_WRITE)
    async def add_note(
        customer_id: Customer,
        text: Annotated[str, Field(max_length=2000, description="The note, in one or a few sentences.")],
    ) -> dict[str, Any]:
        """Add a note to the customer's memory (the bot recalls it too). Sensitive values (card numbers,
        ...) are removed first. Needs write access."""
        return await _answer("add_note", tools.add_note(customer_id, text))

    @server.tool(annotations=_WRITE)
    async def request_handoff(
        customer_id: Customer,
        reason: Annotated[str, Field(max_length=500, description="Why a person should take over.")] = "",
    ) -> dict[str, Any]:
        """Ask a person of the team to take the conversation over: a waiting handoff, as when the customer
        asks for one (the bot stays silent for the customer until it is handed back). Needs write access."""
        return await _answer("request_handoff", tools.request_handoff(customer_id, reason))

    return server
