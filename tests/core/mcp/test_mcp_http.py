"""``/mcp`` end to end: the MCP SDK's own client (streamable HTTP, over a real socket) against the real app
served by uvicorn, the customer's memory written by a real SMS through the fake Twilio (offline mode).

Proves: the tools are listed; a customer is found by a phone number in any spelling; their memory reads
back; a handle linked without proof sees only its own memory (the bot's rule); a missing, wrong or admin
token is 401 and runs nothing; no token configured means no ``/mcp`` at all; a read-only scope refuses the
write tools and changes nothing; with write scope a note is stored redacted with provenance ``mcp`` and a
handoff opens, visible in ``GET /admin/handoffs``; the log carries ids only.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import httpx
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent
from pydantic import SecretStr
from sqlalchemy import func, select

from core.messages import Address, Assurance, ChatMessage, Provenance
from core.settings import McpSettings
from core.store.models import Handoff
from tests.apphost import Served, app_settings, serving
from tests.fakes.twilio_api import FakeTwilioAPI
from tests.platforms import post_twilio_sms, twilio_settings

MCP_TOKEN = "mcp-test-token-0123456789abcdef"
ADMIN_TOKEN = "mcp-test-admin-token-0123456789"
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
PUBLIC = "https://bot.example.com"
ACCOUNT_SID = "AC" + "5" * 32
AUTH_TOKEN = "mcp-test-twilio-auth-token"
OUR_NUMBER = "+15558675310"
PHONE = "+15551230000"
STRANGER_EMAIL = "eve@example.com"
FACT = "I moved to Lisbon last month and my dog is called Biscuit"
EVE_SAYS = "please send the refund to my new card"
TOOLS = {"find_customer", "customer_memory", "search_memory", "open_cases", "add_note", "request_handoff"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "probe", "version": "0"},
    },
}


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilioAPI]:
    async with FakeTwilioAPI(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as fake:
        yield fake


@asynccontextmanager
async def app_with(
    twilio: FakeTwilioAPI,
    tmp_path: Path,
    *,
    scope: Literal["read", "write"] = "read",
    token: str | None = MCP_TOKEN,
) -> AsyncIterator[Served]:
    settings = app_settings(
        tmp_path / "data",
        admin_token=SecretStr(ADMIN_TOKEN),
        public_base_url=PUBLIC,
        twilio=twilio_settings(
            twilio, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_number=OUR_NUMBER
        ),
        mcp=McpSettings(token=SecretStr(token) if token is not None else None, scope=scope),
    )
    async with serving(settings) as served:
        yield served


async def sms(served: Served, text: str) -> None:
    await post_twilio_sms(
        served.client,
        public=PUBLIC,
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        to=OUR_NUMBER,
        phone=PHONE,
        text=text,
    )
    assert await served.hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}


@asynccontextmanager
async def mcp_client(served: Served, token: str = MCP_TOKEN) -> AsyncIterator[ClientSession]:
    """The SDK's client session over its streamable HTTP transport, with the bearer token."""
    async with (
        httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=30) as http,
        streamable_http_client(f"{served.url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def answer(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return dict(result.structured_content)


def error_text(result: CallToolResult) -> str:
    assert result.is_error
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


async def handoffs_open(served: Served) -> list[dict[str, Any]]:
    response = await served.client.get("/admin/handoffs", headers=ADMIN)
    assert response.status_code == 200
    found: list[dict[str, Any]] = response.json()["handoffs"]
    return found


async def count_handoffs(served: Served) -> int:
    async with served.hub.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(Handoff)) or 0)


def logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)


async def test_the_sdk_client_lists_tools_finds_a_customer_by_phone_in_any_spelling_and_reads_memory(
    twilio: FakeTwilioAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    async with app_with(twilio, tmp_path) as served:
        await sms(served, FACT)
        async with mcp_client(served) as session:
            listed = await session.list_tools()
            assert {tool.name for tool in listed.tools} == TOOLS
            hints = {tool.name: tool.annotations.read_only_hint for tool in listed.tools if tool.annotations}
            assert hints["find_customer"] is True and hints["add_note"] is False

            ids = set()
            for spelling in (
                PHONE,
                "sms:+1 (555) 123-0000",
                "+1 555 123 0000",
                "(555) 123-0000",
                "555.123.0000",
            ):
                found = answer(await session.call_tool("find_customer", {"address": spelling}))
                ids.add(found["customer_id"])
                assert found["linked_without_proof"] is False
                assert found["handles"] == [
                    {
                        "address": f"sms:{PHONE}",
                        "channel": "sms",
                        "assurance": "platform_attested",
                        "method": "first_contact",
                    }
                ]
            (customer_id,) = ids
            assert customer_id.startswith("cus_")
            # the customer id names them as well as the address
            by_id = answer(await session.call_tool("find_customer", {"address": customer_id}))
            assert by_id["customer_id"] == customer_id

            memory = answer(await session.call_tool("customer_memory", {"customer_id": customer_id}))
            assert any("Biscuit" in m["text"] for m in memory["memories"]), memory
            assert all(m["channel"] == "sms" for m in memory["memories"])
            assert all(m["said_at"] is not None for m in memory["memories"])  # dated by the message
            searched = answer(
                await session.call_tool(
                    "search_memory", {"customer_id": f"sms:{PHONE}", "query": "what is the dog's name"}
                )
            )
            assert searched["customer_id"] == customer_id
            assert "Biscuit" in searched["memories"][0]["text"]
            assert answer(await session.call_tool("open_cases", {"customer_id": customer_id}))["cases"] == []

            nobody = await session.call_tool("find_customer", {"address": "sms:+15559990000"})
            assert "no customer holds that address" in error_text(nobody)
            unreadable = await session.call_tool("find_customer", {"address": "not an address"})
            assert "not a customer id or an address" in error_text(unreadable)
            bad_filter = await session.call_tool(
                "search_memory", {"customer_id": customer_id, "query": "dog", "category": "gossip"}
            )
            assert "unknown category" in error_text(bad_filter)
            too_many = await session.call_tool(
                "customer_memory", {"customer_id": customer_id, "limit": 10_000}
            )
            assert too_many.is_error
    # every call logged with the tool and ids only: no phone, no query, no memory text
    text = logged(caplog)
    assert f"mcp find_customer (http): customer {customer_id}" in text
    assert f"mcp search_memory (http): customer {customer_id}" in text
    for secret in ("5551230000", "555) 123", "Biscuit", "dog's name", "9990000", MCP_TOKEN):
        assert secret not in text, secret


async def test_a_handle_linked_without_proof_does_not_expose_the_customers_other_memory(
    twilio: FakeTwilioAPI, tmp_path: Path
) -> None:
    async with app_with(twilio, tmp_path) as served:
        await sms(served, FACT)
        services = served.app.state.admin
        async with mcp_client(served) as session:
            customer_id = answer(await session.call_tool("find_customer", {"address": PHONE}))["customer_id"]
            # an email claimed without proof joins the customer, at unverified assurance
            eve = Address(channel="email", handle=STRANGER_EMAIL)
            await services.links.link(
                eve, customer_id, actor="test", assurance=Assurance.UNVERIFIED, method="claimed"
            )
            # what that handle said itself (from a message nobody vouched for)
            await services.memory.remember(
                customer_id,
                [ChatMessage(role="user", content=EVE_SAYS)],
                provenance=Provenance(
                    channel="email",
                    handle=str(eve),
                    message_ids=("inbox:999",),
                    category="support_history",
                    sender_vouched=False,
                ),
                infer=False,
            )

            found = answer(await session.call_tool("find_customer", {"address": f"email:{STRANGER_EMAIL}"}))
            assert found["linked_without_proof"] is True
            assert found["customer_id"] is None  # nothing to read the whole customer by
            assert found["handles"] == [{"address": str(eve), "assurance": "unverified"}]

            for tool, args in (
                ("customer_memory", {}),
                ("search_memory", {"query": "where does the customer live, what is the dog called"}),
            ):
                seen = answer(await session.call_tool(tool, {"customer_id": STRANGER_EMAIL, **args}))
                assert seen["only_this_handle"] is True and seen["customer_id"] is None
                texts = [m["text"] for m in seen["memories"]]
                assert not any("Biscuit" in t or "Lisbon" in t for t in texts), (tool, texts)
                assert all(m["handle"] == str(eve) for m in seen["memories"])
            assert any("refund" in m["text"] for m in seen["memories"])
            refused = await session.call_tool("open_cases", {"customer_id": str(eve)})
            assert "unverified" in error_text(refused)

            # by the customer id (or the proven phone): the SMS memory, and not the unproven handle's words
            whole = answer(await session.call_tool("customer_memory", {"customer_id": customer_id}))
            texts = [m["text"] for m in whole["memories"]]
            assert any("Biscuit" in t for t in texts)
            assert not any("refund" in t for t in texts)
            full = answer(await session.call_tool("find_customer", {"address": customer_id}))
            assert {h["address"]: h["assurance"] for h in full["handles"]} == {
                f"sms:{PHONE}": "platform_attested",
                str(eve): "unverified",
            }


async def test_a_missing_wrong_or_admin_token_is_401_and_runs_nothing(
    twilio: FakeTwilioAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    async with app_with(twilio, tmp_path, scope="write") as served:
        await sms(served, FACT)
        body = json.dumps(INITIALIZE)
        call = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "request_handoff", "arguments": {"customer_id": PHONE, "reason": "x"}},
        }
        headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
        async with httpx.AsyncClient(base_url=served.url, timeout=30) as plain:
            for auth in (
                {},
                {"authorization": "Bearer wrong-token"},
                {"authorization": f"Bearer {MCP_TOKEN}x"},
                {"authorization": f"Basic {MCP_TOKEN}"},
                {"authorization": f"Bearer {ADMIN_TOKEN}"},  # the admin token is not the MCP token
            ):
                for payload in (body, json.dumps(call)):
                    response = await plain.post("/mcp", content=payload, headers={**headers, **auth})
                    assert response.status_code == 401, (auth, response.text)
                    assert response.headers["www-authenticate"] == "Bearer"
                    assert "THREADLINE_MCP__TOKEN" in response.json()["detail"]
            # the right token: the same initialize is answered
            ok = await plain.post(
                "/mcp", content=body, headers={**headers, "authorization": f"Bearer {MCP_TOKEN}"}
            )
            assert ok.status_code == 200, ok.text
            assert ok.json()["result"]["serverInfo"]["name"] == "threadline"
            # a body past the web guard's limit is refused before the SDK reads it, token or not
            huge = json.dumps({**call, "params": {**call["params"], "arguments": {"reason": "x" * 100_000}}})
            too_big = await plain.post(
                "/mcp", content=huge, headers={**headers, "authorization": f"Bearer {MCP_TOKEN}"}
            )
            assert too_big.status_code == 413
        # the SDK's client with a wrong token fails to connect
        with pytest.raises(Exception):  # noqa: B017, PT011 - the SDK's error type for a refused connection
            async with mcp_client(served, token="wrong-token"):
                pass
        assert await count_handoffs(served) == 0  # the refused tools/call opened nothing
    text = logged(caplog)
    assert "mcp call refused: missing or wrong bearer token" in text
    assert "wrong-token" not in text and MCP_TOKEN not in text


async def test_without_an_mcp_token_there_is_no_mcp_endpoint(twilio: FakeTwilioAPI, tmp_path: Path) -> None:
    async with app_with(twilio, tmp_path, token=None) as served:
        for auth in ({}, {"authorization": f"Bearer {MCP_TOKEN}"}, ADMIN):
            response = await served.client.post("/mcp", json=INITIALIZE, headers=auth)
            assert response.status_code == 404


async def test_a_read_scope_refuses_the_write_tools_and_nothing_changes(
    twilio: FakeTwilioAPI, tmp_path: Path
) -> None:
    async with app_with(twilio, tmp_path, scope="read") as served:
        await sms(served, FACT)
        async with mcp_client(served) as session:
            customer_id = answer(await session.call_tool("find_customer", {"address": PHONE}))["customer_id"]
            before = await served.hub.memory.list(customer_id)
            note = await session.call_tool("add_note", {"customer_id": customer_id, "text": "VIP, call back"})
            assert "read-only" in error_text(note) and "THREADLINE_MCP__SCOPE" in error_text(note)
            handoff = await session.call_tool(
                "request_handoff", {"customer_id": customer_id, "reason": "angry"}
            )
            assert "read-only" in error_text(handoff)
        assert [m.id for m in await served.hub.memory.list(customer_id)] == [m.id for m in before]
        assert await count_handoffs(served) == 0
        assert await handoffs_open(served) == []


async def test_a_write_scope_adds_a_redacted_note_and_opens_a_handoff_the_admin_api_sees(
    twilio: FakeTwilioAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    async with app_with(twilio, tmp_path, scope="write") as served:
        await sms(served, FACT)
        async with mcp_client(served) as session:
            customer_id = answer(await session.call_tool("find_customer", {"address": PHONE}))["customer_id"]
            added = answer(
                await session.call_tool(
                    "add_note",
                    {
                        "customer_id": f"sms:{PHONE}",
                        "text": "Prefers Portuguese; card 4111 1111 1111 1111 on file",
                    },
                )
            )
            assert added["customer_id"] == customer_id and len(added["memory_ids"]) == 1
            stored = {m.id: m for m in await served.hub.memory.list(customer_id)}[added["memory_ids"][0]]
            assert "4111" not in stored.text and "Portuguese" in stored.text
            assert stored.channel == "mcp" and stored.handle == "mcp"
            assert stored.metadata["said_by"] == "support_team" and stored.metadata["sender_vouched"] is True
            # the note reads back like any memory of the customer
            memory = answer(await session.call_tool("customer_memory", {"customer_id": customer_id}))
            assert any(m["channel"] == "mcp" and "Portuguese" in m["text"] for m in memory["memories"])
            empty = await session.call_tool("add_note", {"customer_id": customer_id, "text": "   "})
            assert "empty" in error_text(empty)

            opened = answer(
                await session.call_tool(
                    "request_handoff", {"customer_id": customer_id, "reason": "wants a refund"}
                )
            )
            assert opened["status"] == "waiting" and opened["requested_by"] == "mcp"
            assert opened["already_open"] is False
            again = answer(await session.call_tool("request_handoff", {"customer_id": customer_id}))
            assert again["id"] == opened["id"] and again["already_open"] is True

            # a handle linked without proof cannot write or silence the bot for the customer
            eve = Address(channel="email", handle=STRANGER_EMAIL)
            await served.app.state.admin.links.link(
                eve, customer_id, actor="test", assurance=Assurance.UNVERIFIED, method="claimed"
            )
            refused = await session.call_tool("add_note", {"customer_id": str(eve), "text": "hello"})
            assert "unverified" in error_text(refused)
        listed = await handoffs_open(served)
        assert [(h["id"], h["customer_id"], h["status"], h["requested_by"]) for h in listed] == [
            (opened["id"], customer_id, "waiting", "mcp")
        ]
        assert listed[0]["note"] == "wants a refund"
        assert await count_handoffs(served) == 1
    text = logged(caplog)
    assert f"mcp request_handoff (http): customer {customer_id}, handoff {opened['id']} (opened)" in text
    for secret in ("Portuguese", "4111", "refund", "5551230000", STRANGER_EMAIL):
        assert secret not in text, secret
