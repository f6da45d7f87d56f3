"""Files in a Slack reply: one ``files_upload_v2`` per file, into the reply's conversation and thread.

slack_sdk's ``files_upload_v2`` makes the three calls Slack asks for: ``files.getUploadURLExternal`` (an
upload URL and a file id for the name and length), the bytes POSTed to that URL, and
``files.completeUploadExternal`` sharing the file into ``channel_id`` (and ``thread_ts``). One call per file
keeps each file one part of the reply (``OutboundMessage.parts_sent``): a retry after a failure part-way
skips the files that went out. The part's id is the Slack file id.

``completeUploadExternal`` wants a conversation id: a reply addressed to a user (no channel in its target,
``chat.postMessage`` takes a user id) opens the DM first (``conversations.open``, scope ``im:write``).
Scopes: ``files:write``. Errors map as ``chat.postMessage``'s do (``channels.slack.api_errors``); an upload
the upload URL refused is transient. Nothing here logs a file name.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from channels.slack.api_errors import _api_error
from core.errors import PermanentDeliveryError, TransientDeliveryError
from core.messages import Attachment
from core.ports import FileSource

log = logging.getLogger(__name__)

_USER_PREFIXES = ("U", "W")  # a user id (W: Enterprise Grid), not a conversation (C, G, D)


async def upload_files(
    client: AsyncWebClient,
    files: FileSource | None,
    *,
    channel: str,
    thread_ts: str | None,
    todo: Sequence[Attachment],
    sent: list[str],
) -> None:
    """Upload ``todo`` in order, appending each file id to ``sent``; a failure raises the delivery error
    carrying ``sent`` (what went out, text parts included)."""
    if not todo:
        return
    if files is None:
        raise PermanentDeliveryError(
            "Slack: this process cannot read the reply's files", sent_ids=tuple(sent)
        )
    try:
        if channel.startswith(_USER_PREFIXES):
            opened = await client.conversations_open(users=channel)
            channel = str((opened.get("channel") or {}).get("id") or "")
            if not channel:
                raise PermanentDeliveryError("Slack opened no DM for the file", sent_ids=tuple(sent))
        for file in todo:
            data = await files.read(file)
            response = await client.files_upload_v2(
                channel=channel, thread_ts=thread_ts, file=data, filename=file.name, title=file.name
            )
            uploaded = response.get("files") or []
            file_id = uploaded[0].get("id") if uploaded and isinstance(uploaded[0], dict) else None
            sent.append(str(file_id or ""))
            log.info("Slack file sent (%s, %d bytes)", file.media_type, file.size)
    except PermanentDeliveryError as exc:
        raise PermanentDeliveryError(str(exc), sent_ids=tuple(sent)) from None
    except SlackApiError as exc:
        raise _api_error(exc, tuple(sent)) from None  # its text repeats the response body
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TransientDeliveryError(
            f"Slack unreachable: {type(exc).__name__}", sent_ids=tuple(sent)
        ) from exc
    except SlackClientError as exc:  # SlackRequestError: the upload URL refused the bytes
        raise TransientDeliveryError(
            f"Slack upload failed: {type(exc).__name__}", sent_ids=tuple(sent)
        ) from None
