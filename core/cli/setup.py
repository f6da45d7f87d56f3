"""``threadline setup telegram|slack|twilio``: point a platform at this hub."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import typer

from core.cli.base import (
    Command,
    checked_settings,
    echo,
    setup_app,
)
from core.errors import ConfigError, ThreadlineError

if TYPE_CHECKING:
    from core.settings import Settings


def _public_url(settings: Settings) -> str:
    if not settings.public_base_url:
        echo("threadline: THREADLINE_PUBLIC_BASE_URL is required: the URL the platform will call", err=True)
        raise typer.Exit(2)
    return settings.public_base_url.rstrip("/")


def _require(settings: Settings, channel: str) -> None:
    if channel not in settings.enabled_channels():
        echo(f"threadline: the {channel} channel is not configured (see README, Channels)", err=True)
        raise typer.Exit(2)


def _set_up(call: Coroutine[Any, Any, str]) -> str:
    """Run a set-up call: a refusal (naming the setting) exits 2, an unreachable platform 1, in one line."""
    try:
        return asyncio.run(call)
    except ThreadlineError as exc:
        echo(f"threadline: {exc}", err=True)
        raise typer.Exit(2 if isinstance(exc, ConfigError) else 1) from exc


@setup_app.command("telegram", cls=Command)
def setup_telegram() -> None:
    """Call setWebhook with our URL and the secret token; in polling mode, deleteWebhook instead."""
    from channels.telegram import delete_webhook, set_webhook

    settings = checked_settings()
    _require(settings, "telegram")
    if settings.telegram.mode == "polling":  # no public URL: getUpdates works only without a webhook
        echo(_set_up(delete_webhook(settings.telegram)))
        return
    echo(_set_up(set_webhook(settings.telegram, _public_url(settings))))


@setup_app.command("slack", cls=Command)
def setup_slack() -> None:
    """Print a Slack app manifest with our events URL (or Socket Mode) and the scopes the bot needs."""
    from channels.slack import app_manifest

    settings = checked_settings()
    token = settings.slack.app_token
    if token is not None and token.get_secret_value():  # Socket Mode: no public URL, no signing secret
        echo(json.dumps(app_manifest(None, socket_mode=True), indent=2))
        echo(
            "Create the app from this manifest at api.slack.com/apps (From an app manifest), install it, "
            "add an app-level token with the connections:write scope (Basic Information), then set "
            "THREADLINE_SLACK__BOT_TOKEN and THREADLINE_SLACK__APP_TOKEN.",
            err=True,
        )
        return
    url = _public_url(settings)
    echo(json.dumps(app_manifest(url), indent=2))
    echo(
        "Create the app from this manifest at api.slack.com/apps (From an app manifest), install it, "
        "then set THREADLINE_SLACK__BOT_TOKEN and THREADLINE_SLACK__SIGNING_SECRET.",
        err=True,
    )


@setup_app.command("twilio", cls=Command)
def setup_twilio() -> None:
    """Point the number's incoming-message and status-callback URLs at us."""
    from channels.sms import configure_number

    settings = checked_settings()
    _require(settings, "twilio")
    echo(_set_up(configure_number(settings.twilio, _public_url(settings))))
