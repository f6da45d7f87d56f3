"""Attachments end to end through the real app, by email (the signed inbound webhook): a PDF is stored once
under the data dir by its sha256 with a safe name; a Windows program named ``receipt.pdf``, a file over the
size limit and a name that climbs out of its folder are refused or made safe, the customer is told which
files were not taken, and nothing is written outside the data dir.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from core.media.store import digest_of
from core.settings import AttachmentSettings, EmailSettings
from core.store.models import AttachmentRow, InboxRow, Turn
from tests.apphost import Served, app_settings, serving
from tests.fakes.smtp_relay import FakeSmtpRelay
from tests.platforms import post_mailgun_mime

OURS = "support@threadline.example"
KEY = "key-attachments-0123456789abcdef"
AUTHSERV = "mx.threadline.example"
CUSTOMER = "ana@example.com"
# a real (tiny) PDF: filetype knows it by its "%PDF-" magic
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
    + (b"trailer<</Root 1 0 R>>\n%%EOF\n")
)
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 200  # a Windows program
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 4000  # over the 2 KiB limit of this test
LIMIT = 2048


def mail(message_id: str, text: str, files: list[tuple[str, str, bytes]]) -> bytes:
    message = EmailMessage()
    message["Authentication-Results"] = f"{AUTHSERV}; dmarc=pass header.from=example.com"
    message["Received"] = f"from mail.example.com by {AUTHSERV}; Mon, 3 Mar 2025 09:30:51 -0800"
    message["From"] = f"Ana <{CUSTOMER}>"
    message["To"] = f"Support <{OURS}>"
    message["Subject"] = "My invoice"
    message["Message-ID"] = message_id
    message.set_content(text)
    for name, media_type, data in files:
        maintype, subtype = media_type.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return message.as_bytes()


@pytest.fixture
async def relay() -> AsyncIterator[FakeSmtpRelay]:
    async with FakeSmtpRelay() as fake:
        yield fake


@pytest.fixture
async def served(relay: FakeSmtpRelay, tmp_path: Path) -> AsyncIterator[Served]:
    email = EmailSettings(
        address=f"Support <{OURS}>",
        smtp_host="127.0.0.1",
        smtp_port=relay.port,
        inbound_signing_key=SecretStr(KEY),
        authserv_id=AUTHSERV,
    )
    settings = app_settings(tmp_path / "data", email=email, attachments=AttachmentSettings(max_bytes=LIMIT))
    async with serving(settings) as app:
        yield app


async def send(served: Served, raw: bytes) -> None:
    await post_mailgun_mime(served.client, key=KEY, recipient=OURS, sender=CUSTOMER, raw=raw)
    assert await served.hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}


async def test_files_by_email_are_checked_stored_once_and_refusals_told(
    served: Served, relay: FakeSmtpRelay, tmp_path: Path
) -> None:
    files = [
        ("../../../etc/invoice.pdf", "application/pdf", PDF),  # a path in the name
        ("receipt.pdf", "application/pdf", EXE),  # a program that says it is a PDF
        ("screenshot.png", "image/png", PNG),  # over the limit
    ]
    await send(served, mail("<first@example.com>", "Here is my March invoice", files))
    await send(served, mail("<second@example.com>", "The same invoice again", files[:1]))

    async with served.hub.db.read() as session:
        rows = list(await session.scalars(select(AttachmentRow).order_by(AttachmentRow.id)))
        inbox = list(await session.scalars(select(InboxRow).order_by(InboxRow.id)))
        turns = [t.text for t in await session.scalars(select(Turn).where(Turn.role == "customer"))]
    assert [(r.inbox_id, r.position, r.name, r.media_type, r.status) for r in rows] == [
        (inbox[0].id, 0, "invoice.pdf", "application/pdf", "stored"),
        (inbox[0].id, 1, "receipt.pdf", "application/pdf", "refused"),
        (inbox[0].id, 2, "screenshot.png", "image/png", "refused"),
        (inbox[1].id, 0, "invoice.pdf", "application/pdf", "stored"),
    ]
    assert rows[0].sha256 == rows[3].sha256 == digest_of(PDF) and rows[0].size == len(PDF)
    assert rows[1].reason == "receipt.pdf is a kind of file we do not accept" and rows[1].sha256 is None
    assert rows[2].reason == "screenshot.png is larger than 2 KB" and rows[2].sha256 is None
    # the inbox keeps references, never bytes
    assert all(set(ref) == {"ref", "name", "media_type", "size"} for row in inbox for ref in row.attachments)

    # stored once, by its digest, under the data dir; nothing else written anywhere
    media = tmp_path / "data" / "media"
    stored = [p for p in media.rglob("*") if p.is_file()]
    assert stored == [media / digest_of(PDF)[:2] / digest_of(PDF)]
    assert stored[0].read_bytes() == PDF and stored[0].stat().st_mode & 0o077 == 0
    assert not list(tmp_path.rglob("invoice.pdf")) and not (tmp_path / "etc").exists()
    assert all(re.fullmatch(r"[0-9a-f]{64}", p.name) for p in stored)

    # the customer is told which files were not taken; the log and memory know what was sent
    first_reply = relay.messages[0].message.get_body(preferencelist=("plain",))
    assert first_reply is not None
    assert str(first_reply.get_content()).startswith(
        "I couldn't take some of your files: receipt.pdf is a kind of file we do not accept; "
        "screenshot.png is larger than 2 KB."
    )
    assert turns[0] == (
        "Here is my March invoice\n[attached: invoice.pdf (application/pdf, 1 KB)]\n"
        "[attachment refused: receipt.pdf is a kind of file we do not accept]\n"
        "[attachment refused: screenshot.png is larger than 2 KB]"
    )
