"""``app_manifest``: the Slack app manifest that ``threadline setup slack`` prints."""

from __future__ import annotations

from typing import Any

EVENTS_PATH = "/webhooks/slack/events"

BOT_SCOPES = (
    "app_mentions:read",
    "channels:history",
    "chat:write",
    "im:history",
    "users:read",
    "users:read.email",  # profile emails of trusted workspaces (THREADLINE_SLACK__TRUSTED_TEAMS)
)
BOT_EVENTS = ("app_mention", "message.channels", "message.im")


def app_manifest(public_base_url: str) -> dict[str, Any]:
    """A Slack app manifest for Threadline: bot user, DM tab, events at our public URL, bot scopes."""
    base = public_base_url.strip().rstrip("/")
    if not base.startswith(("https://", "http://")):
        raise ValueError("the public base URL must start with https://")
    return {
        "_metadata": {"major_version": 1, "minor_version": 1},
        "display_information": {
            "name": "Threadline",
            "description": "Customer support that remembers you on every channel.",
        },
        "features": {
            "app_home": {
                "home_tab_enabled": False,
                "messages_tab_enabled": True,
                "messages_tab_read_only_enabled": False,
            },
            "bot_user": {"display_name": "Threadline", "always_online": True},
        },
        "oauth_config": {"scopes": {"bot": list(BOT_SCOPES)}},
        "settings": {
            "event_subscriptions": {
                "request_url": base + EVENTS_PATH,
                "bot_events": list(BOT_EVENTS),
            },
            "org_deploy_enabled": False,
            "socket_mode_enabled": False,
            "token_rotation_enabled": False,
        },
    }
