"""Files in a Telegram reply: ``sendPhoto`` for a photo, ``sendDocument`` for anything else.

A JPEG, PNG or WebP of at most 10 MB (Telegram's photo limit) goes as a photo, shown inline and
recompressed by Telegram; any other file (a PDF, a GIF, a text file, a larger image) as a document, sent as
it is. Both are multipart uploads with the file's safe name. The reply's text rides as the first file's
caption when it fits (``caption_for``: at most 1,024 characters, no buttons); otherwise it goes first as
its own messages and the files follow without a caption. Each file is one part of the reply
(``OutboundMessage.parts_sent``), its id ``<chat>:<message id>`` like a text part's. Nothing here logs a
file name or a caption.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from telegram import Bot, InputFile, Message

from core.errors import PermanentDeliveryError
from core.messages import Attachment, OutboundMessage
from core.ports import FileSource

log = logging.getLogger(__name__)

CAPTION_LIMIT = 1024  # characters (UTF-16 code units) of a caption
PHOTO_LIMIT = 10 * 1024 * 1024
PHOTO_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})


def caption_for(message: OutboundMessage) -> str | None:
    """The reply's text as the first file's caption, when there are files and it fits; else ``None``."""
    text = message.text.strip()
    if not message.files or not text or message.buttons:
        return None
    return text if len(text.encode("utf-16-le")) // 2 <= CAPTION_LIMIT else None


def as_photo(file: Attachment) -> bool:
    return file.media_type in PHOTO_TYPES and file.size <= PHOTO_LIMIT


async def send_files(
    bot: Bot,
    files: FileSource | None,
    *,
    chat_id: int | str,
    thread_id: int | None,
    todo: Sequence[Attachment],
    caption: str | None,
    sent: list[str],
) -> None:
    """Send ``todo`` in order (``caption`` on the first), appending each part's id to ``sent``. Telegram's
    errors are raised as PTB raises them (the adapter maps them, with ``sent``)."""
    if not todo:
        return
    if files is None:
        raise PermanentDeliveryError(
            "Telegram: this process cannot read the reply's files", sent_ids=tuple(sent)
        )
    for index, file in enumerate(todo):
        try:
            data = await files.read(file)
        except PermanentDeliveryError as exc:
            raise PermanentDeliveryError(str(exc), sent_ids=tuple(sent)) from None
        upload = InputFile(data, filename=file.name)
        text = caption if index == 0 else None
        result: Message
        if as_photo(file):
            result = await bot.send_photo(
                chat_id=chat_id, photo=upload, caption=text, message_thread_id=thread_id
            )
        else:
            result = await bot.send_document(
                chat_id=chat_id, document=upload, caption=text, message_thread_id=thread_id
            )
        sent.append(f"{chat_id}:{result.message_id}")
        log.info("telegram file sent to chat %s (%s, %d bytes)", chat_id, file.media_type, file.size)
