"""A Slack profile email is linked as ``platform_attested`` only for a workspace configured as trusted."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
from slack_sdk.signature import SignatureVerifier

from core.messages import Address, Assurance, ChatMessage, Provenance
from core.settings import SlackSettings
from tests.apphost import Served, app_settings, serving
from tests.fakes.slack_api import DEFAULT_TOKEN, FakeSlackAPI

SIGNING_SECRET = "attest-signing-secret"
TEAM = "T123ABC456"
USER = "U0ANA0001"
ANA_MAIL = "ana@example.com"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlackAPI]:
    async with FakeSlackAPI(team_id=TEAM) as server:
        server.profile_emails[USER] = "Ana@Example.com"
        yield server


def app_for(fake: FakeSlackAPI, tmp_path: Path, *, trusted: str) -> AbstractAsyncContextManager[Served]:
    slack = SlackSettings.model_validate(
        {
            "bot_token": DEFAULT_TOKEN,
            "signing_secret": SIGNING_SECRET,
            "api_base_url": fake.api_url,
            "trusted_teams": trusted,
        }
    )
    return serving(app_settings(tmp_path / "data", slack=slack))


async def dm(served: Served, event_id: str, text: str) -> None:
    payload = {
        "type": "event_callback",
        "team_id": TEAM,
        "event_id": event_id,
        "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM, "user_id": "UBOT0001", "is_bot": True}],
        "event": {
            "type": "message",
            "channel": "D0ANA",
            "channel_type": "im",
            "user": USER,
            "text": text,
            "ts": f"{time.time():.6f}",
        },
    }
    body = json.dumps(payload).encode()
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=timestamp, body=body)
    response = await served.client.post(
        "/webhooks/slack/events",
        content=body,
        headers={
            "content-type": "application/json",
            "x-slack-request-timestamp": timestamp,
            "x-slack-signature": signature,
        },
    )
    assert response.status_code == 200
    assert await served.hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}


async def ana_with_email_history(served: Served) -> str:
    """Ana is known by email, with something she told us there."""
    address = Address(channel="email", handle=ANA_MAIL)
    ana = (await served.hub.resolver.resolve(address)).customer_id
    origin = Provenance(
        channel="email", handle=str(address), message_ids=("inbox:0",), category="support_history"
    )
    said = [ChatMessage(role="user", content="my invoice 4411 was charged twice")]
    await served.hub.memory.remember(ana, said, provenance=origin, infer=False)
    return ana


def replies(fake: FakeSlackAPI) -> list[str]:
    return [message.text for message in fake.posted]


async def test_a_trusted_workspace_vouches_for_the_profile_email(fake: FakeSlackAPI, tmp_path: Path) -> None:
    async with app_for(fake, tmp_path, trusted=f"{TEAM},TOTHER") as served:
        ana = await ana_with_email_history(served)
        await dm(served, "Ev1", "hello, what about my invoice?")

        slack_handle = Address.parse(f"slack:{TEAM}:{USER}")
        assert (await served.hub.resolver.resolve(slack_handle)).customer_id == ana
        email = await served.hub.resolver.resolve(Address(channel="email", handle=ANA_MAIL))
        assert email.customer_id == ana and email.assurance is Assurance.PLATFORM_ATTESTED
        assert "charged twice" in replies(fake)[-1]  # the first reply already knows her

        await dm(served, "Ev2", "thanks")
        assert [c.method for c in fake.calls].count("users.info") == 1  # asked once per sender


async def test_an_untrusted_workspace_is_not_asked(fake: FakeSlackAPI, tmp_path: Path) -> None:
    async with app_for(fake, tmp_path, trusted="TOTHER") as served:
        ana = await ana_with_email_history(served)
        await dm(served, "Ev1", "hello, what about my invoice?")

        assert (await served.hub.resolver.resolve(Address.parse(f"slack:{TEAM}:{USER}"))).customer_id != ana
        assert "users.info" not in [c.method for c in fake.calls]
        assert "charged twice" not in replies(fake)[-1]
