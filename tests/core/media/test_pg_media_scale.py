"""Scale mode (issue 16): the bytes of attachments live in PostgreSQL, so every process sees them.

Two apps on one PostgreSQL, each with its own data dir, stand in for two hosts: ``web`` (role ``web``:
answers the webhooks and the admin API, runs no lanes) and ``worker`` (role ``all``: takes messages in,
answers, delivers, serves the signed ``/media`` links and the console). A customer's email part is kept by
``web`` at accept time and taken in, answered and downloaded on ``worker``; an operator's file is kept by
``web`` and fetched by Twilio from ``worker``'s signed link; forget on ``web`` removes the bytes from
PostgreSQL, after which ``worker`` serves neither. With the bytes under each host's data dir, ``worker``
would have recorded the email's PDF as lost and answered Twilio 404.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import ColumnElement, func, select

from core.media.pg_store import PostgresMediaStore
from core.media.store import digest_of
from core.settings import EmailSettings, Settings
from core.store.models import AttachmentRow, MediaObject
from core.store.operators import Operators
from identity.erasure import forget
from tests.apphost import Served, app_settings, free_port, serving
from tests.core.media.samples import pdf_with_text, png
from tests.core.web.console.conftest import FAST, PASSWORD, Browser, services
from tests.fakes.smtp_relay import FakeSmtpRelay
from tests.fakes.twilio_api import FakeTwilioAPI
from tests.platforms import post_mailgun_mime, post_twilio_sms, twilio_settings

postgres_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

ADMIN = "admin-token-for-pg-media-0123"
OURS, KEY, AUTHSERV, MAILBOX = (
    "support@threadline.example",
    "key-pg-media-0123456789abcdef",
    "mx.example",
    "ana@example.com",
)
ACCOUNT_SID, AUTH_TOKEN, OUR_NUMBER, PHONE = (
    "AC" + "7" * 32,
    "pg-media-auth-token",
    "+15558675311",
    "+15551230077",
)
PDF = pdf_with_text("Invoice 42, March")
PHOTO = png(3, 3, seed=5)


def settings_for(
    data: Path, port: int, database_url: str, twilio: FakeTwilioAPI, relay: FakeSmtpRelay
) -> Settings:
    return app_settings(
        data,
        database_url=database_url,
        public_base_url=f"http://127.0.0.1:{port}",  # Twilio fetches the MMS media from this process
        admin_token=SecretStr(ADMIN),
        twilio=twilio_settings(
            twilio, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_number=OUR_NUMBER
        ),
        email=EmailSettings(
            address=f"Support <{OURS}>",
            smtp_host="127.0.0.1",
            smtp_port=relay.port,
            inbound_signing_key=SecretStr(KEY),
            authserv_id=AUTHSERV,
        ),
    )


def mail(text: str, name: str, data: bytes) -> bytes:
    message = EmailMessage()
    message["Authentication-Results"] = f"{AUTHSERV}; dmarc=pass header.from=example.com"
    message["Received"] = f"from mail.example.com by {AUTHSERV}; Mon, 3 Mar 2025 09:30:51 -0800"
    message["From"] = f"Ana <{MAILBOX}>"
    message["To"] = f"Support <{OURS}>"
    message["Subject"] = "My invoice"
    message["Message-ID"] = "<pg-media@example.com>"
    message.set_content(text)
    message.add_attachment(data, maintype="application", subtype="pdf", filename=name)
    return message.as_bytes()


async def idle(served: Served) -> None:
    assert await served.hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}


async def rows_for(served: Served, *where: ColumnElement[bool]) -> list[AttachmentRow]:
    async with served.hub.db.read() as session:
        return list(await session.scalars(select(AttachmentRow).where(*where).order_by(AttachmentRow.id)))


async def kept(served: Served) -> list[str]:
    async with served.hub.db.read() as session:
        return list(await session.scalars(select(MediaObject.sha256).order_by(MediaObject.sha256)))


async def until(check: ColumnElement[bool], served: Served, count: int) -> None:
    """Wait until the rows ``check`` selects number ``count`` (a web process's commit reaches the worker)."""
    for _ in range(400):
        async with served.hub.db.read() as session:
            if await session.scalar(select(func.count()).select_from(AttachmentRow).where(check)) == count:
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the worker process did not take the file in")


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeTwilioAPI, FakeSmtpRelay]]:
    async with (
        FakeTwilioAPI(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as twilio,
        FakeSmtpRelay() as relay,
    ):
        yield twilio, relay


@postgres_only
async def test_a_file_kept_by_one_process_is_taken_in_served_and_forgotten_by_another(
    database_url: str, tmp_path: Path, fakes: tuple[FakeTwilioAPI, FakeSmtpRelay]
) -> None:
    twilio, relay = fakes
    async with AsyncExitStack() as stack:
        apps: list[Served] = []
        for name, role in (("web", "web"), ("worker", "all")):
            port = free_port()
            settings = settings_for(tmp_path / name, port, database_url, twilio, relay)
            apps.append(await stack.enter_async_context(serving(settings, port=port, role=role)))
        web, worker = apps
        assert isinstance(web.hub.media.store, PostgresMediaStore)
        assert isinstance(services(worker).media, PostgresMediaStore)

        # 1. an email's PDF: kept by the web process at accept time, taken in and answered by the worker
        await post_mailgun_mime(
            web.client, key=KEY, recipient=OURS, sender=MAILBOX, raw=mail("My invoice", "invoice.pdf", PDF)
        )
        await until(AttachmentRow.direction == "in", worker, 1)
        await idle(worker)
        (inbound,) = await rows_for(worker, AttachmentRow.direction == "in")
        assert (inbound.name, inbound.status, inbound.sha256) == ("invoice.pdf", "stored", digest_of(PDF))
        assert inbound.text is not None and "Invoice 42" in inbound.text  # the worker read the bytes
        assert await kept(worker) == [digest_of(PDF)]
        # nothing on either host's disk: the bytes are in the database only
        assert not (tmp_path / "web" / "media").exists() and not (tmp_path / "worker" / "media").exists()

        # 2. an operator downloads it from the worker's console
        await Operators(services(worker).db, hasher=FAST).add("ada", "agent", PASSWORD)
        operator = Browser(await stack.enter_async_context(httpx.AsyncClient(base_url=worker.url)))
        assert (await operator.sign_in("ada")).status_code == 303
        download = f"/console/customers/{inbound.customer_id}/files/{inbound.id}"
        got = await operator.get(download)
        assert got.status_code == 200 and got.content == PDF
        assert got.headers["content-type"] == "application/pdf"

        # 3. an SMS customer; the operator's photo is kept by the web process (admin API), the worker
        #    sends the MMS and Twilio fetches the photo from the worker's signed link
        await post_twilio_sms(
            web.client,
            public=web.url,
            account_sid=ACCOUNT_SID,
            auth_token=AUTH_TOKEN,
            to=OUR_NUMBER,
            phone=PHONE,
            text="Can you send the photo?",
        )
        await idle(worker)
        answer = await web.client.post(
            f"/admin/customers/{quote(f'sms:{PHONE}', safe='')}/replies",
            json={
                "text": "Here it is.",
                "operator": "maria",
                "attachments": [{"name": "part.png", "data_base64": base64.b64encode(PHOTO).decode()}],
            },
            headers={"authorization": f"Bearer {ADMIN}", "idempotency-key": "pg-media-reply-0001"},
        )
        assert answer.status_code == 200, answer.text
        (fetch,) = await asyncio.to_thread(twilio.wait_for_fetches, 1, 30.0)
        assert fetch.url.startswith(f"{worker.url}/media/{digest_of(PHOTO)}?expires=")
        assert (fetch.status, fetch.data) == (200, PHOTO)
        assert fetch.headers["content-type"] == "image/png"
        assert fetch.headers["content-disposition"].startswith("attachment;")
        assert fetch.headers["x-content-type-options"] == "nosniff"
        head = await worker.client.head(fetch.url.removeprefix(worker.url))
        assert (
            head.status_code == 200 and head.headers["content-length"] == str(len(PHOTO)) and not head.content
        )
        assert await kept(web) == sorted([digest_of(PDF), digest_of(PHOTO)])

        # 4. forget on the web process: the bytes leave PostgreSQL; the worker serves neither any more
        (outbound,) = await rows_for(web, AttachmentRow.direction == "out")
        for customer_id in (inbound.customer_id, outbound.customer_id):
            assert customer_id is not None
            receipt = await forget(
                services(web).db, services(web).memory, customer_id, actor="test", media=services(web).media
            )
            assert receipt.removed["attachment_files"] == 1
        assert await kept(worker) == []
        assert not await worker.hub.media.store.has(digest_of(PDF))
        assert (await worker.client.get(fetch.url.removeprefix(worker.url))).status_code == 404
        assert (await operator.get(download)).status_code == 404
