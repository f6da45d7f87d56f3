"""``threadline setup telegram|slack|twilio``: each points the platform at us and prints what it did."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from core.cli import app
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegramAPI
from tests.fakes.twilio_api import FakeTwilioAPI

PUBLIC = "https://bot.example.com"
TELEGRAM_SECRET = "setup-secret-token-42"
ACCOUNT_SID = "AC" + "3" * 32
AUTH_TOKEN = "setup-auth-token"
OUR_NUMBER = "+15558675310"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def telegram(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTelegramAPI]:
    with FakeTelegramAPI() as fake:
        monkeypatch.setenv("THREADLINE_TELEGRAM__BOT_TOKEN", DEFAULT_TOKEN)
        monkeypatch.setenv("THREADLINE_TELEGRAM__SECRET_TOKEN", TELEGRAM_SECRET)
        monkeypatch.setenv("THREADLINE_TELEGRAM__API_BASE_URL", fake.api_base_url)
        yield fake


@pytest.fixture
def twilio(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTwilioAPI]:
    with FakeTwilioAPI(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as fake:
        monkeypatch.setenv("THREADLINE_TWILIO__ACCOUNT_SID", ACCOUNT_SID)
        monkeypatch.setenv("THREADLINE_TWILIO__AUTH_TOKEN", AUTH_TOKEN)
        monkeypatch.setenv("THREADLINE_TWILIO__FROM_NUMBER", OUR_NUMBER)
        monkeypatch.setenv("THREADLINE_TWILIO__API_BASE_URL", fake.url)
        yield fake


def test_setup_telegram_sets_the_webhook_with_the_secret(
    runner: CliRunner, telegram: FakeTelegramAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THREADLINE_PUBLIC_BASE_URL", PUBLIC + "/")
    result = runner.invoke(app, ["setup", "telegram"])
    assert result.exit_code == 0, result.output
    [hook] = telegram.webhooks
    assert hook["url"] == PUBLIC + "/webhooks/telegram"
    assert hook["secret_token"] == TELEGRAM_SECRET
    assert PUBLIC + "/webhooks/telegram" in result.stdout
    assert TELEGRAM_SECRET not in result.output and DEFAULT_TOKEN not in result.output


def test_setup_twilio_points_the_number_at_us(
    runner: CliRunner, twilio: FakeTwilioAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THREADLINE_PUBLIC_BASE_URL", PUBLIC)
    number = twilio.add_number(OUR_NUMBER)
    result = runner.invoke(app, ["setup", "twilio"])
    assert result.exit_code == 0, result.output
    [updated] = twilio.numbers
    assert updated["sid"] == number["sid"]
    assert updated["sms_url"] == PUBLIC + "/webhooks/twilio/sms"
    assert updated["status_callback"] == PUBLIC + "/webhooks/twilio/status"
    assert number["sid"] in result.stdout and AUTH_TOKEN not in result.output


def test_setup_twilio_for_a_number_not_in_the_account_names_the_setting(
    runner: CliRunner, twilio: FakeTwilioAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THREADLINE_PUBLIC_BASE_URL", PUBLIC)
    twilio.add_number("+15550001111")
    result = runner.invoke(app, ["setup", "twilio"])
    assert result.exit_code == 2
    assert "THREADLINE_TWILIO__FROM_NUMBER" in result.output
    assert [n["sms_url"] for n in twilio.numbers] == [""]


def test_setup_slack_prints_a_manifest_with_our_events_url(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THREADLINE_PUBLIC_BASE_URL", PUBLIC)
    result = runner.invoke(app, ["setup", "slack"])
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    events = manifest["settings"]["event_subscriptions"]
    assert events["request_url"] == PUBLIC + "/webhooks/slack/events"
    assert {"message.im", "app_mention"} <= set(events["bot_events"])
    assert {"chat:write", "im:history"} <= set(manifest["oauth_config"]["scopes"]["bot"])


def test_setup_slack_with_an_app_token_prints_a_socket_mode_manifest_without_urls(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THREADLINE_SLACK__BOT_TOKEN", "xoxb-setup-token")
    monkeypatch.setenv("THREADLINE_SLACK__APP_TOKEN", "xapp-1-A0SETUP-1-setup")  # no public URL needed
    result = runner.invoke(app, ["setup", "slack"])
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert "request_url" not in result.stdout
    assert "xapp-1-A0SETUP" not in result.output  # the token itself is never printed
    assert "connections:write" in result.stderr


@pytest.mark.parametrize("channel", ["telegram", "twilio", "slack"])
def test_setup_without_a_public_url_refuses_naming_the_setting(
    runner: CliRunner, channel: str, telegram: FakeTelegramAPI, twilio: FakeTwilioAPI
) -> None:
    result = runner.invoke(app, ["setup", channel])
    assert result.exit_code == 2
    assert "THREADLINE_PUBLIC_BASE_URL" in result.output
    assert telegram.webhooks == [] and twilio.requests == []


def test_setup_of_an_unconfigured_channel_says_so(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADLINE_PUBLIC_BASE_URL", PUBLIC)
    result = runner.invoke(app, ["setup", "telegram"])
    assert result.exit_code == 2
    assert "telegram channel is not configured" in result.output


def test_setup_with_the_platform_down_says_so_in_one_line(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeTelegramAPI() as fake:
        down = fake.api_base_url  # the fake stops here: nothing listens on its port any more
    monkeypatch.setenv("THREADLINE_TELEGRAM__BOT_TOKEN", DEFAULT_TOKEN)
    monkeypatch.setenv("THREADLINE_TELEGRAM__SECRET_TOKEN", TELEGRAM_SECRET)
    monkeypatch.setenv("THREADLINE_TELEGRAM__API_BASE_URL", down)
    monkeypatch.setenv("THREADLINE_PUBLIC_BASE_URL", PUBLIC)
    result = runner.invoke(app, ["setup", "telegram"])
    assert result.exit_code == 1
    assert result.output.startswith("threadline: Telegram setWebhook failed")
    assert DEFAULT_TOKEN not in result.output
