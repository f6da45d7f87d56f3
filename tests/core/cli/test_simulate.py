"""``threadline simulate``: a signed delivery posted to a running hub (the real app under uvicorn, the
platforms' fakes behind it) as each platform would send it; the hub answers it through the fakes.

A hub with other secrets refuses the delivery and simulate says which setting differs (exit 1); a secret
missing on this machine is named before anything is sent (exit 2); the same ``--id`` twice is a platform
retry and the hub reports the duplicate.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from core.cli import app
from core.settings import EmailSettings, SlackSettings
from tests.apphost import Served, app_settings, free_port, serving
from tests.fakes.slack_api import DEFAULT_TOKEN, FakeSlackAPI
from tests.fakes.smtp_relay import FakeSmtpRelay
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.twilio_api import FakeTwilioAPI
from tests.platforms import telegram_settings, twilio_settings

TG_SECRET = "simulate-telegram-secret"
SLACK_SECRET = "simulate-slack-signing-secret-0123"
MAIL_KEY = "key-simulate-0123456789abcdef"
ACCOUNT_SID = "AC" + "5" * 32
AUTH_TOKEN = "simulate-twilio-auth-token"
OUR_NUMBER = "+15558675310"
OURS = "support@threadline.example"
TEAM = "T123ABC456"

Fakes = tuple[FakeTelegramAPI, FakeTwilioAPI, FakeSlackAPI, FakeSmtpRelay]


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    async with (
        FakeTelegramAPI() as telegram,
        FakeTwilioAPI(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as twilio,
        FakeSlackAPI(token=DEFAULT_TOKEN, team_id=TEAM) as slack,
        FakeSmtpRelay() as relay,
    ):
        yield telegram, twilio, slack, relay


@pytest.fixture
async def hub(fakes: Fakes, tmp_path: Path) -> AsyncIterator[Served]:
    telegram, twilio, slack, relay = fakes
    port = free_port()
    settings = app_settings(
        tmp_path / "hub",
        public_base_url=f"http://127.0.0.1:{port}",
        telegram=telegram_settings(telegram, secret=TG_SECRET),
        twilio=twilio_settings(
            twilio, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_number=OUR_NUMBER
        ),
        slack=SlackSettings(
            bot_token=SecretStr(DEFAULT_TOKEN),
            signing_secret=SecretStr(SLACK_SECRET),
            api_base_url=slack.api_url,
        ),
        email=EmailSettings(
            address=f"Support <{OURS}>",
            smtp_host="127.0.0.1",
            smtp_port=relay.port,
            inbound_signing_key=SecretStr(MAIL_KEY),
        ),
    )
    async with serving(settings, port=port) as served:
        yield served


@pytest.fixture
def operator_env(hub: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's machine: the same secrets as the hub, its own (empty) data dir."""
    for name, value in {
        "THREADLINE_DATA_DIR": str(tmp_path / "operator"),
        "THREADLINE_PUBLIC_BASE_URL": hub.url,
        "THREADLINE_TELEGRAM__BOT_TOKEN": "123456:simulate-not-used-for-sending",
        "THREADLINE_TELEGRAM__SECRET_TOKEN": TG_SECRET,
        "THREADLINE_SLACK__BOT_TOKEN": "xoxb-simulate",
        "THREADLINE_SLACK__SIGNING_SECRET": SLACK_SECRET,
        "THREADLINE_TWILIO__ACCOUNT_SID": ACCOUNT_SID,
        "THREADLINE_TWILIO__AUTH_TOKEN": AUTH_TOKEN,
        "THREADLINE_TWILIO__FROM_NUMBER": OUR_NUMBER,
        "THREADLINE_EMAIL__ADDRESS": OURS,
        "THREADLINE_EMAIL__INBOUND_SIGNING_KEY": MAIL_KEY,
    }.items():
        monkeypatch.setenv(name, value)


async def simulate(*args: str) -> tuple[int, str, str]:
    """Run the command in a thread (it runs its own event loop, as from a terminal)."""
    result = await asyncio.to_thread(CliRunner().invoke, app, ["simulate", *args])
    return result.exit_code, result.stdout, result.stderr


async def settle(hub: Served) -> None:
    assert await hub.hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}


@pytest.mark.usefixtures("operator_env")
async def test_each_channel_is_accepted_and_answered_through_the_platform(hub: Served, fakes: Fakes) -> None:
    telegram, twilio, slack, relay = fakes
    code, out, err = await simulate("telegram", "--from", "42", "--id", "777", "hello from a simulation")
    assert (code, out.strip(), err) == (
        0,
        "accepted: the hub stored the telegram message and will answer it (HTTP 200)",
        "",
    )
    code, out, _ = await simulate("telegram", "--from", "telegram:42", "--id", "777", "hello again")
    assert code == 0 and out.startswith("duplicate: the hub already had this telegram delivery")
    assert (await simulate("sms", "--from", "+1 (555) 123-0000", "is my order late?"))[0] == 0
    assert (await simulate("slack", "--from", f"{TEAM}:U0SIM0001", "hi on slack"))[0] == 0
    assert (await simulate("email", "--from", "ana@example.com", "hi by email"))[0] == 0
    await settle(hub)

    assert [m["chat"]["id"] for m in telegram.sent] == [42]  # one reply, to the simulated chat
    assert [m["To"] for m in twilio.messages] == ["+15551230000"]
    assert [p.text for p in slack.posted if p.channel.startswith("D")] != []
    assert len(relay.messages) == 1  # an unverified mail: the one acknowledgement
    assert await hub.inbox_rows() == 4


async def test_a_hub_with_other_secrets_refuses_and_the_setting_is_named(
    hub: Served, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("THREADLINE_DATA_DIR", str(tmp_path / "operator"))
    monkeypatch.setenv("THREADLINE_TELEGRAM__BOT_TOKEN", "123456:simulate")
    monkeypatch.setenv("THREADLINE_TELEGRAM__SECRET_TOKEN", "not-the-hubs-secret")
    code, out, _ = await simulate("telegram", "--url", hub.url, "--from", "42", "hello")
    assert code == 1
    assert out.strip() == (
        "refused (HTTP 403): the hub did not accept the signature; its THREADLINE_TELEGRAM__SECRET_TOKEN "
        "differ from this machine's"
    )
    assert await hub.inbox_rows() == 0

    # a secret this machine does not have: named, nothing sent
    monkeypatch.setenv("THREADLINE_SLACK__BOT_TOKEN", "xoxb-simulate")
    monkeypatch.delenv("THREADLINE_SLACK__SIGNING_SECRET", raising=False)
    code, _, err = await simulate("slack", "--url", hub.url, "--from", f"{TEAM}:U0SIM0001", "hello")
    assert code == 2 and "THREADLINE_SLACK__SIGNING_SECRET" in err
    code, _, err = await simulate("fax", "--url", hub.url, "--from", "x", "hello")
    assert code == 2 and "simulate takes one of telegram, slack, sms, email" in err
    assert await hub.inbox_rows() == 0
