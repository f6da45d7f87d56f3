"""Attachments in the data lifecycle, through the real app (files by the signed email webhook, the admin API
over HTTP): exported (what they were, not the bytes); forgotten (rows deleted, bytes gone from
``<data dir>/media`` unless another customer sent the same file); dropped by retention with their messages
(bytes removed once nobody holds them); following a merge, and going back with their messages when it is
undone.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select, update

from core.media.store import digest_of
from core.pipeline.retention import Retention
from core.settings import AttachmentSettings, EmailSettings, RetentionSettings
from core.store.models import AttachmentRow, InboxRow, utcnow
from tests.apphost import Served, app_settings, serving
from tests.core.media.samples import pdf_with_text, png
from tests.fakes.smtp_relay import FakeSmtpRelay
from tests.platforms import post_mailgun_mime

OURS = "support@threadline.example"
KEY = "key-lifecycle-0123456789abcdef"
AUTHSERV = "mx.threadline.example"
ADMIN = "lifecycle-admin-token-0123456789"
ANA, BOB = "ana@example.com", "bob@example.com"
SHARED = pdf_with_text("The same price list")  # sent by both customers: one file on disk
PHOTO = png(3, 3, seed=1)  # Ana's own
EXE = b"MZ\x90\x00" + b"\x00" * 100  # refused


def mail(sender: str, message_id: str, files: list[tuple[str, str, bytes]]) -> bytes:
    message = EmailMessage()
    message["Authentication-Results"] = f"{AUTHSERV}; dmarc=pass header.from=example.com"
    message["Received"] = f"from mail.example.com by {AUTHSERV}; Mon, 3 Mar 2025 09:30:51 -0800"
    message["From"] = sender
    message["To"] = f"Support <{OURS}>"
    message["Subject"] = "Files"
    message["Message-ID"] = message_id
    message.set_content("Here are my files")
    for name, media_type, data in files:
        maintype, subtype = media_type.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return message.as_bytes()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with FakeSmtpRelay() as relay:
        email = EmailSettings(
            address=f"Support <{OURS}>",
            smtp_host="127.0.0.1",
            smtp_port=relay.port,
            inbound_signing_key=SecretStr(KEY),
            authserv_id=AUTHSERV,
        )
        settings = app_settings(
            tmp_path / "data",
            email=email,
            attachments=AttachmentSettings(),
            admin_token=SecretStr(ADMIN),
        )
        async with serving(settings) as app:
            yield app


async def send(served: Served, sender: str, message_id: str, files: list[tuple[str, str, bytes]]) -> None:
    raw = mail(sender, message_id, files)
    await post_mailgun_mime(served.client, key=KEY, recipient=OURS, sender=sender, raw=raw)
    assert await served.hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}


async def customer_of(served: Served, sender: str) -> str:
    async with served.hub.db.read() as session:
        found = await session.scalar(select(InboxRow.customer_id).where(InboxRow.sender == f"email:{sender}"))
    assert found is not None
    return found


async def rows_of(served: Served) -> list[AttachmentRow]:
    async with served.hub.db.read() as session:
        return list(await session.scalars(select(AttachmentRow).order_by(AttachmentRow.id)))


def kept(tmp_path: Path) -> set[str]:
    media = tmp_path / "data" / "media"
    return {p.name for p in media.rglob("*") if p.is_file()} if media.exists() else set()


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN}"}


async def two_customers(served: Served) -> tuple[str, str]:
    await send(
        served,
        ANA,
        "<ana-1@example.com>",
        [
            ("prices.pdf", "application/pdf", SHARED),
            ("part.png", "image/png", PHOTO),
            ("x.pdf", "application/pdf", EXE),
        ],
    )
    await send(served, BOB, "<bob-1@example.com>", [("list.pdf", "application/pdf", SHARED)])
    return await customer_of(served, ANA), await customer_of(served, BOB)


async def test_export_lists_the_files_without_their_bytes(served: Served) -> None:
    ana, _ = await two_customers(served)
    response = await served.client.get(f"/admin/customers/{ana}/export", headers=admin())
    assert response.status_code == 200
    files = response.json()["attachments"]
    assert [(f["name"], f["media_type"], f["status"], f["direction"]) for f in files] == [
        ("prices.pdf", "application/pdf", "stored", "in"),
        ("part.png", "image/png", "stored", "in"),
        ("x.pdf", "application/pdf", "refused", "in"),
    ]
    assert files[0]["sha256"] == digest_of(SHARED) and files[0]["size"] == len(SHARED)
    assert files[1]["sha256"] == digest_of(PHOTO) and files[2]["sha256"] is None
    assert files[2]["reason"] == "x.pdf is a kind of file we do not accept"
    assert all(f["created_at"] for f in files)
    body = response.text
    assert base64.b64encode(PHOTO).decode() not in body and "The same price list" not in body


async def test_forget_removes_the_rows_and_the_bytes_nobody_else_holds(
    served: Served, tmp_path: Path
) -> None:
    ana, bob = await two_customers(served)
    assert kept(tmp_path) == {digest_of(SHARED), digest_of(PHOTO)}

    response = await served.client.delete(f"/admin/customers/{ana}", headers=admin())
    assert response.status_code == 200
    removed = response.json()["removed"]
    assert removed["attachments"] == 3 and removed["attachment_files"] == 1
    # Ana's photo is gone from disk; the price list stays: Bob sent the same file
    assert kept(tmp_path) == {digest_of(SHARED)}
    assert [(r.customer_id, r.name) for r in await rows_of(served)] == [(bob, "list.pdf")]

    response = await served.client.delete(f"/admin/customers/{bob}", headers=admin())
    assert response.json()["removed"]["attachment_files"] == 1
    assert kept(tmp_path) == set() and await rows_of(served) == []


async def test_retention_drops_old_files_with_their_messages(served: Served, tmp_path: Path) -> None:
    await two_customers(served)
    old = utcnow() - timedelta(days=40)
    async with served.hub.db.session() as session:  # Ana's message (and its files) is 40 days old
        ana_inbox = select(InboxRow.id).where(InboxRow.sender == f"email:{ANA}")
        await session.execute(
            update(AttachmentRow).where(AttachmentRow.inbox_id.in_(ana_inbox)).values(created_at=old)
        )
    retention = Retention(
        db=served.hub.db,
        memory=served.hub.memory,
        settings=RetentionSettings(days=30),
        media=served.app.state.admin.media,
    )
    report = (await retention.run_once()).as_dict()
    assert report["removed"]["attachments"] == 3 and report["removed"]["attachment_files"] == 1
    assert kept(tmp_path) == {digest_of(SHARED)}  # Bob's (newer) copy of the same file stays
    assert [r.name for r in await rows_of(served)] == ["list.pdf"]
    json.dumps(report)


async def test_files_follow_a_merge_and_go_back_when_it_is_undone(served: Served) -> None:
    ana, bob = await two_customers(served)
    merged = await served.client.post(
        "/admin/customers/merge", json={"source": bob, "target": ana}, headers=admin()
    )
    assert merged.status_code == 200, merged.text
    assert {r.customer_id for r in await rows_of(served)} == {ana}
    response = await served.client.get(f"/admin/customers/{ana}/export", headers=admin())
    assert [f["name"] for f in response.json()["attachments"]] == [
        "prices.pdf",
        "part.png",
        "x.pdf",
        "list.pdf",
    ]

    undone = await served.client.post(
        f"/admin/merges/{merged.json()['merge_id']}/undo", json={}, headers=admin()
    )
    assert undone.status_code == 200, undone.text
    assert [(r.name, r.customer_id) for r in await rows_of(served)] == [
        ("prices.pdf", ana),
        ("part.png", ana),
        ("x.pdf", ana),
        ("list.pdf", bob),
    ]
