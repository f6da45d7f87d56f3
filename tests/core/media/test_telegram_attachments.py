"""Telegram files end to end through the real app: a signed webhook update with a photo or a document, the
worker's ``getFile`` and file download through PTB and ``channels.telegram.media`` at the fake Bot API.

A photo without a caption is stored once by its digest and answered once; a document whose name climbs out of
its folder is kept under a safe name; a file Telegram says is too large is refused without a download, one
whose size is not said is refused after at most the limit was read, one over the bots' 20 MB is refused by
``getFile``; a 502 of the file URL makes the turn retry, with one reply in the end. Nothing is written outside
the data dir.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.media.store import digest_of
from core.settings import AttachmentSettings
from core.store.models import AttachmentRow, Turn
from tests.apphost import Served, app_settings, serving
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.platforms import post_telegram_message, telegram_settings

SECRET = "wh-Secret_media_0123456789"
USER = 1111111
LIMIT = 64 * 1024
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8  # filetype knows it by FF D8 FF
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"


def message(message_id: int, **fields: Any) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "date": int(time.time()),
        "chat": {"id": USER, "type": "private", "first_name": "Ana"},
        "from": {"id": USER, "is_bot": False, "first_name": "Ana"},
        **fields,
    }


def document(file_id: str, name: str, mime_type: str, size: int | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"file_id": file_id, "file_unique_id": "d" + file_id[-8:], "file_name": name}
    doc["mime_type"] = mime_type
    if size is not None:
        doc["file_size"] = size
    return doc


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegramAPI]:
    async with FakeTelegramAPI() as server:
        yield server


@pytest.fixture
async def served(fake: FakeTelegramAPI, tmp_path: Path) -> AsyncIterator[Served]:
    settings = app_settings(
        tmp_path / "data",
        telegram=telegram_settings(fake, secret=SECRET),
        attachments=AttachmentSettings(max_bytes=LIMIT),
    )
    async with serving(settings) as app:
        yield app


async def send(served: Served, update_id: int, body: dict[str, Any]) -> None:
    await post_telegram_message(served.client, secret=SECRET, update_id=update_id, message=body)
    assert await served.hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}


async def attachment_rows(served: Served) -> list[AttachmentRow]:
    async with served.hub.db.read() as session:
        return list(await session.scalars(select(AttachmentRow).order_by(AttachmentRow.id)))


def only_under_data(tmp_path: Path) -> None:
    """Every file the test made is in the data dir, and the media folder holds only digest-named files."""
    assert all(path.is_relative_to(tmp_path / "data") for path in tmp_path.rglob("*") if path.is_file())
    media = tmp_path / "data" / "media"
    stored = [path for path in media.rglob("*") if path.is_file()] if media.exists() else []
    assert all(re.fullmatch(r"[0-9a-f]{64}", path.name) for path in stored)


async def test_a_photo_and_a_document_are_stored_once_with_safe_names_and_answered(
    served: Served, fake: FakeTelegramAPI, tmp_path: Path
) -> None:
    photo = fake.add_file(JPEG)
    await send(served, 9001, message(11, photo=fake.photo_sizes(photo)))  # no caption: still a message
    await send(served, 9002, message(12, caption="the same photo", photo=fake.photo_sizes(photo)))
    pdf = fake.add_file(PDF, folder="documents", extension="pdf")
    await send(
        served,
        9003,
        message(13, document=document(pdf, "../../../etc/invoice.pdf", "application/pdf", len(PDF))),
    )

    rows = await attachment_rows(served)
    assert [(r.name, r.media_type, r.size, r.status) for r in rows] == [
        ("file_0.jpg", "image/jpeg", len(JPEG), "stored"),
        ("file_0.jpg", "image/jpeg", len(JPEG), "stored"),
        ("invoice.pdf", "application/pdf", len(PDF), "stored"),
    ]
    assert rows[0].sha256 == rows[1].sha256 == digest_of(JPEG) and rows[2].sha256 == digest_of(PDF)
    media = tmp_path / "data" / "media"
    assert sorted(p for p in media.rglob("*") if p.is_file()) == sorted(
        media / digest[:2] / digest for digest in (digest_of(JPEG), digest_of(PDF))
    )
    assert (media / digest_of(JPEG)[:2] / digest_of(JPEG)).read_bytes() == JPEG
    assert not (tmp_path / "etc").exists() and not list(tmp_path.rglob("invoice.pdf"))
    only_under_data(tmp_path)

    # the largest photo size was fetched (the thumbnail never), once per message; each got one reply
    assert [call["file_id"] for call in fake.calls_to("getFile")] == [photo, photo, pdf]
    assert fake.file_requests == ["photos/file_0.jpg", "photos/file_0.jpg", "documents/file_1.pdf"]
    assert len(fake.sent) == 3 and not any(m["text"].startswith("I couldn't") for m in fake.sent)
    async with served.hub.db.read() as session:
        turns = [t.text for t in await session.scalars(select(Turn).where(Turn.role == "customer"))]
    assert turns[0] == "[attached: file_0.jpg (image/jpeg, 2 KB)]"
    assert turns[1] == "the same photo\n[attached: file_0.jpg (image/jpeg, 2 KB)]"


async def test_too_large_files_are_refused_without_reading_them_and_the_customer_is_told(
    served: Served, fake: FakeTelegramAPI, tmp_path: Path
) -> None:
    # Telegram says the size in the update: refused before getFile
    said = fake.add_file(size=LIMIT * 4)
    await send(served, 9101, message(21, photo=fake.photo_sizes(said)))
    assert fake.calls_to("getFile") == [] and fake.file_requests == []

    # the size is said nowhere: the download is abandoned once past the limit
    total = 16 * 1024 * 1024
    unsaid = fake.add_file(size=total, folder="documents", extension="pdf", declare_size=False)
    await send(served, 9102, message(22, document=document(unsaid, "scan.pdf", "application/pdf", None)))
    assert fake.file_requests == ["documents/file_1.pdf"]
    assert fake.file_bytes_sent < total // 2  # the rest was never sent: the connection was dropped

    # over the 20 MB a bot may download: getFile itself refuses
    huge = fake.add_file(size=21 * 1024 * 1024, folder="videos", extension="mp4")
    await send(served, 9103, message(23, document=document(huge, "clip.mp4", "video/mp4", None)))

    rows = await attachment_rows(served)
    assert [(r.status, r.reason, r.sha256) for r in rows] == [
        ("refused", "your image is larger than 64 KB", None),
        ("refused", "scan.pdf is larger than 64 KB", None),
        ("refused", "clip.mp4 is larger than 20 MB", None),
    ]
    assert [m["text"].split("\n\n")[0] for m in fake.sent] == [
        "I couldn't take one of your files: your image is larger than 64 KB.",
        "I couldn't take one of your files: scan.pdf is larger than 64 KB.",
        "I couldn't take one of your files: clip.mp4 is larger than 20 MB.",
    ]
    assert not (tmp_path / "data" / "media").exists() or not [
        p for p in (tmp_path / "data" / "media").rglob("*") if p.is_file()
    ]
    only_under_data(tmp_path)


async def test_a_502_from_the_file_url_retries_the_turn_and_answers_once(
    served: Served, fake: FakeTelegramAPI, tmp_path: Path
) -> None:
    photo = fake.add_file(JPEG)
    fake.push_file(502)
    await send(served, 9201, message(31, caption="broken part", photo=fake.photo_sizes(photo)))

    assert fake.file_requests == ["photos/file_0.jpg", "photos/file_0.jpg"]  # failed once, then fetched
    rows = await attachment_rows(served)
    assert [(r.status, r.sha256) for r in rows] == [("stored", digest_of(JPEG))]
    assert len(fake.sent) == 1  # one reply, after the retry
    only_under_data(tmp_path)


async def test_an_unknown_file_id_is_refused_and_told(served: Served, fake: FakeTelegramAPI) -> None:
    await send(
        served, 9301, message(41, caption="see", document=document("nope", "a.pdf", "application/pdf", 10))
    )
    rows = await attachment_rows(served)
    assert [(r.status, r.reason) for r in rows] == [("refused", "a.pdf could not be fetched from Telegram")]
    assert fake.file_requests == []
    assert fake.sent[0]["text"].startswith("I couldn't take one of your files: a.pdf could not be fetched")
    assert fake.token not in json.dumps([(r.name, r.reason) for r in rows])
