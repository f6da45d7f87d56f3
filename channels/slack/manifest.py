"""``app_manifest``: the Slack app manifest that ``threadline setup slack`` prints.

Two shapes: events at our public URL (the Events API over HTTP, signed with the signing secret), or, when
an app-level token is set (``THREADLINE_SLACK__APP_TOKEN``), Socket Mode: ``socket_mode_enabled`` and no
request URL anywhere, since events and button presses come over the hub's own connection
(``channels.slack.socket_mode``).
"""

from __future__ import annotations

from typing import Any

EVENTS_PATH = "/webhooks/slack/events"
INTERACTIVE_PATH = "/webhooks/slack/interactive"  # presses of a reply's buttons (the rating question)

BOT_SCOPES = (
    "app_mentions:read",
    "channels:history",
    "chat:write",
    "files:read",  # the files customers share (url_private with the bot token: channels/slack/files.py)
    "files:write",  # files an operator sends back (files_upload_v2: channels/slack/upload.py)
    "im:history",
    "im:write",  # conversations.open: the DM a file goes to when a reply names only the user
    "users:read",
    "users:read.email",  # profile emails of trusted workspaces (THREADLINE_SLACK__TRUSTED_TEAMS)
)
BOT_EVENTS = ("app_mention", "message.channels", "message.im")


def app_manifest(public_base_url: str | None, *, socket_mode: bool = False) -> dict[str, Any]:
    """A Slack app manifest for Threadline: bot user, DM tab, events at our public URL, bot scopes.

    ``socket_mode``: events (and interactivity) through Socket Mode, with no request URL; the public
    base URL is then not used and may be ``None``.
    """
    if socket_mode:
        return _socket_mode(app_manifest("https://socket-mode.invalid"))
    base = (public_base_url or "").strip().rstrip("/")
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
            "interactivity": {"is_enabled": True, "request_url": base + INTERACTIVE_PATH},
            "org_deploy_enabled": False,
            "socket_mode_enabled": False,
            "token_rotation_enabled": False,
        },
    }


def _socket_mode(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` with Socket Mode on and every request URL taken out (events, interactivity)."""
    settings = manifest["settings"]
    settings["socket_mode_enabled"] = True
    for section in settings.values():
        if isinstance(section, dict):
            section.pop("request_url", None)
    settings.setdefault("interactivity", {"is_enabled": True})  # button presses arrive as envelopes too
    return manifest
