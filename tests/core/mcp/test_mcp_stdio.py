"""``threadline mcp``: the MCP SDK's stdio client spawns the real command on a data dir and uses its tools.

Proves: the tools are listed over stdio; a customer of that data dir is found by a phone number in another
spelling and their memory reads back; the scope comes from ``THREADLINE_MCP__SCOPE`` (read by default: a
note is refused and nothing is written; write: the note is stored); stdout carries the protocol only
(the SDK client would fail on anything else) and the log on stderr names no phone number.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.types import CallToolResult, TextContent

from core.compose import open_services
from core.messages import Address, Assurance, ChatMessage, Provenance
from core.settings import Settings
from identity.resolver import DatabaseResolver
from tests.conftest import subprocess_env

PHONE = "+15551230000"
FACT = "My favourite colour is teal and I live in Porto"


async def seed(data_dir: Path) -> str:
    """A customer holding an SMS handle, with one memory, in ``data_dir``; returns their id."""
    services = await open_services(Settings(data_dir=data_dir))
    try:
        resolved = await DatabaseResolver(services.db).resolve(
            Address(channel="sms", handle=PHONE), assurance=Assurance.PLATFORM_ATTESTED
        )
        await services.memory.remember(
            resolved.customer_id,
            [ChatMessage(role="user", content=FACT)],
            provenance=Provenance(
                channel="sms", handle=f"sms:{PHONE}", message_ids=("inbox:1",), category="profile"
            ),
            infer=False,
        )
        return resolved.customer_id
    finally:
        await services.aclose()


def answer(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return dict(result.structured_content)


async def call_over_stdio(
    tmp_path: Path, calls: list[tuple[str, dict[str, Any]]], **env: str
) -> list[CallToolResult]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-c", "from core.cli import main; main()", "mcp"],
        env=subprocess_env(tmp_path, **env),
        cwd=tmp_path,
    )
    with (tmp_path / "stderr.log").open("a") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            listed = await session.list_tools()
            assert {t.name for t in listed.tools} >= {"find_customer", "customer_memory", "add_note"}
            return [await session.call_tool(name, args) for name, args in calls]


async def test_threadline_mcp_over_stdio_finds_a_customer_and_reads_memory_read_only_by_default(
    tmp_path: Path,
) -> None:
    customer_id = await seed(tmp_path / "data")
    found, memory, note = await call_over_stdio(
        tmp_path,
        [
            ("find_customer", {"address": "(555) 123-0000"}),
            ("customer_memory", {"customer_id": customer_id}),
            ("add_note", {"customer_id": customer_id, "text": "VIP"}),
        ],
    )
    assert answer(found)["customer_id"] == customer_id
    assert [m["text"] for m in answer(memory)["memories"]] == [FACT]
    assert note.is_error
    assert "read-only" in " ".join(c.text for c in note.content if isinstance(c, TextContent))
    stderr = (tmp_path / "stderr.log").read_text()
    assert f"mcp find_customer (stdio): customer {customer_id}" in stderr
    assert "5551230000" not in stderr and "teal" not in stderr

    # nothing was written by the refused note
    services = await open_services(Settings(data_dir=tmp_path / "data"))
    try:
        assert [m.text for m in await services.memory.list(customer_id)] == [FACT]
    finally:
        await services.aclose()


async def test_threadline_mcp_takes_the_write_scope_from_the_settings(tmp_path: Path) -> None:
    customer_id = await seed(tmp_path / "data")
    (note,) = await call_over_stdio(
        tmp_path,
        [("add_note", {"customer_id": f"sms:{PHONE}", "text": "Prefers calls after 6pm"})],
        THREADLINE_MCP__SCOPE="write",
    )
    (memory_id,) = answer(note)["memory_ids"]
    services = await open_services(Settings(data_dir=tmp_path / "data"))
    try:
        stored = {m.id: m for m in await services.memory.list(customer_id)}[memory_id]
        assert stored.text == "Prefers calls after 6pm" and stored.channel == "mcp"
    finally:
        await services.aclose()


def test_a_bad_scope_refuses_to_start_naming_the_setting(tmp_path: Path) -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", "from core.cli import main; main()", "mcp"],
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(tmp_path, THREADLINE_MCP__SCOPE="admin"),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "threadline: THREADLINE_MCP__SCOPE: must be 'read' or 'write' (got 'admin')"
    assert done.stdout == ""
