"""``GET /admin/customers/{id}/memories`` through the real app over HTTP: search and listing with filters by
category, channel and time, each memory with its provenance; bad input is a 422 that changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from core.messages import ChatMessage, Provenance
from tests.apphost import Served, app_settings, serving
from tests.core.web.test_admin import TOKEN, call, new_customer

SMS = "sms:+15551230000"
TELEGRAM = "telegram:42"


@pytest.fixture
async def bare(tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(app_settings(tmp_path / "data", admin_token=SecretStr(TOKEN))) as app:
        yield app


async def seed(served: Served) -> str:
    """Ana on SMS and Telegram: four memories of known categories, channels and times."""
    ana = await new_customer(served, SMS)
    memory = served.hub.memory
    for text, category, channel, when in [
        ("my router keeps dropping the wifi", "support_history", "sms", datetime(2025, 1, 10, 9, tzinfo=UTC)),
        ("the wifi router was replaced", "operational_state", "telegram", datetime(2025, 2, 3, tzinfo=UTC)),
        ("please only text me about the wifi", "special_handling", "sms", datetime(2025, 3, 1, tzinfo=UTC)),
    ]:
        handle = SMS if channel == "sms" else TELEGRAM
        origin = Provenance(channel=channel, handle=handle, message_ids=("inbox:7",), category=category)
        await memory.import_memory(ana, text, metadata=origin.as_metadata(), created_at=when)
    await memory.remember(
        ana,
        [ChatMessage(role="user", content="my name is Ana")],
        provenance=Provenance(
            channel="sms", handle=SMS, message_ids=("inbox:9",), category="profile", turn_ids=(9,)
        ),
        infer=False,
    )
    return ana


async def memories(served: Served, who: str, expect: int = 200, **params: Any) -> Any:
    return await call(served, "GET", f"/admin/customers/{who}/memories", params=params, expect=expect)


async def test_listing_is_newest_first_with_provenance(bare: Served) -> None:
    ana = await seed(bare)
    listed = await memories(bare, ana)
    assert listed["customer_id"] == ana and listed["query"] is None
    assert listed["filters"] == {"category": None, "channel": None, "since": None, "until": None}
    texts = [m["text"] for m in listed["memories"]]
    assert texts == [
        "my name is Ana",  # written now
        "please only text me about the wifi",
        "the wifi router was replaced",
        "my router keeps dropping the wifi",
    ]
    first = listed["memories"][0]
    assert (first["channel"], first["handle"], first["category"]) == ("sms", SMS, "profile")
    assert (first["message_ids"], first["turn_ids"], first["score"]) == (["inbox:9"], [9], None)
    assert (first["said_by"], first["verified"], first["sender_vouched"], first["imported_from"]) == (
        "customer",
        False,
        True,
        None,
    )
    # an address names the customer as well as its id
    by_address = await memories(bare, "sms:%2B1%20555%20123%200000", limit=2)
    assert [m["text"] for m in by_address["memories"]] == texts[:2]


async def test_filters_on_the_listing_and_the_search(bare: Served) -> None:
    ana = await seed(bare)
    sms = await memories(bare, ana, channel="sms", since="2025-01-01", until="2025-03-01")
    assert [m["text"] for m in sms["memories"]] == ["my router keeps dropping the wifi"]
    assert sms["filters"]["since"].startswith("2025-01-01T00:00:00") and sms["filters"]["channel"] == "sms"

    found = await memories(bare, ana, query="wifi router", limit=1, channel="telegram")
    assert [m["text"] for m in found["memories"]] == ["the wifi router was replaced"]
    assert found["query"] == "wifi router" and found["memories"][0]["score"] is not None
    assert found["memories"][0]["created_at"].startswith("2025-02-03T00:00:00")

    special = await memories(bare, ana, query="wifi", category="special_handling")
    assert [m["text"] for m in special["memories"]] == ["please only text me about the wifi"]
    since = await memories(bare, ana, query="wifi", since="2025-02-03T00:00:00Z")
    assert {m["text"] for m in since["memories"]} == {
        "the wifi router was replaced",
        "please only text me about the wifi",
    }
    assert (await memories(bare, ana, query="wifi", channel="email"))["memories"] == []


async def test_bad_input_is_a_422_naming_the_problem_and_changes_nothing(bare: Served) -> None:
    ana = await seed(bare)
    before = await bare.hub.memory.list(ana)

    unknown = await memories(bare, ana, expect=422, category="vip")
    said = str(unknown["detail"])
    assert all(c in said for c in ("profile", "support_history", "special_handling", "operational_state"))

    backwards = await memories(bare, ana, expect=422, since="2025-03-01", until="2025-01-01")
    assert backwards["detail"] == "since must be before until (since is inclusive, until exclusive)"
    bad_date = await memories(bare, ana, expect=422, query="wifi", until="next tuesday")
    assert bad_date["detail"].startswith("until: not an ISO date or date-time")
    bad_channel = await memories(bare, ana, expect=422, channel="no such channel")
    assert "not a channel name" in bad_channel["detail"]
    for limit in (0, 501):
        await memories(bare, ana, expect=422, limit=limit)

    missing = await memories(bare, "telegram:999", expect=404)
    assert missing["detail"] == "no customer for telegram:999"
    await memories(bare, "sms:not-a-number", expect=422)
    response = await bare.client.get(f"/admin/customers/{ana}/memories")
    assert response.status_code == 401  # no token: nothing read

    assert [r.id for r in await bare.hub.memory.list(ana)] == [r.id for r in before]


async def test_a_memory_shows_and_is_filtered_by_when_the_customer_said_it(bare: Served) -> None:
    ana = await new_customer(bare, SMS)
    said = datetime(2024, 11, 5, 8, 30, tzinfo=UTC)
    await bare.hub.memory.remember(
        ana,
        [ChatMessage(role="user", content="the modem light blinks red")],
        provenance=Provenance(
            channel="sms", handle=SMS, message_ids=("inbox:3",), category="support_history", said_at=said
        ),
        infer=False,
    )
    (listed,) = (await memories(bare, ana))["memories"]
    assert listed["said_at"].startswith("2024-11-05T08:30:00")
    assert not listed["created_at"].startswith("2024-11-05")  # written now, said then
    november = {"since": "2024-11-01", "until": "2024-12-01"}
    assert [m["text"] for m in (await memories(bare, ana, **november))["memories"]] == [listed["text"]]
    found = await memories(bare, ana, query="modem", **november)
    assert [m["said_at"][:10] for m in found["memories"]] == ["2024-11-05"]
    assert (await memories(bare, ana, query="modem", since="2025-01-01"))["memories"] == []
