"""Files in an SMS reply: Twilio MMS, whose media Twilio fetches from a URL we give it.

The URL is the hub's own signed, expiring link (``core.media.links``, served by ``core.web.media``), made
at the moment of sending: Twilio fetches it shortly after ``messages.create`` (and the link stays good for
``THREADLINE_ATTACHMENTS__LINK_MINUTES``). A message takes at most 10 media URLs, so the files ride on the
last text part in groups of 10 and any further group goes as a message without text (Twilio accepts an
empty body with media). The plan is fixed by the message alone, so ``parts_sent`` skips the same parts on
every attempt. Where the number cannot send MMS Twilio refuses the message, and the error maps like a
text part's.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.errors import PermanentDeliveryError
from core.messages import Attachment
from core.ports import FileSource

MAX_MEDIA = 10  # MediaUrl values per message


def mms_parts(
    text_parts: Sequence[str], files: Sequence[Attachment]
) -> list[tuple[str, tuple[Attachment, ...]]]:
    """(body, files) of each message of a reply: the text's parts, the files on the last one (10 at most),
    then one message per further 10 files."""
    groups = [tuple(files[start : start + MAX_MEDIA]) for start in range(0, len(files), MAX_MEDIA)]
    parts: list[tuple[str, tuple[Attachment, ...]]] = [(text, ()) for text in text_parts]
    if parts and groups:
        parts[-1] = (parts[-1][0], groups.pop(0))
    parts.extend(("", group) for group in groups)
    return parts


def media_urls(files: FileSource | None, group: Sequence[Attachment], sent: Sequence[str]) -> list[str]:
    """Fresh signed links to ``group``; ``PermanentDeliveryError`` (with ``sent``) when none can be made."""
    if not group:
        return []
    if files is None:
        raise PermanentDeliveryError("SMS: this process cannot link the reply's files", sent_ids=tuple(sent))
    try:
        return [files.link(file) for file in group]
    except PermanentDeliveryError as exc:
        raise PermanentDeliveryError(str(exc), sent_ids=tuple(sent)) from None
