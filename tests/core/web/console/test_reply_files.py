"""An operator sends a file from the console: the real app under uvicorn, Telegram at its fake.

A customer writes on Telegram (the signed webhook); an agent signs in, opens the customer page and posts the
reply form as a browser does (``multipart/form-data``, the page's CSRF token and idempotency key). The PDF
reaches the fake Telegram once as a ``sendDocument`` with the same bytes, the timeline shows it (and its
download gives the same bytes back), and the same form submitted twice sends one message. A refused file (a
type not allowed, too large, a path in its name, too many) is a 422 page naming it, and nothing is stored,
recorded or sent; so is a post without the CSRF token (403), and a body past the route's limit (413).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from core.media.store import digest_of
from core.settings import AttachmentSettings, ConsoleSettings
from core.store.models import AttachmentRow, Identity, OutboxRow
from tests.apphost import Served, app_settings, serving
from tests.core.web.console.conftest import ADMIN_TOKEN, Browser, count, key_of
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.platforms import telegram_settings

LIMIT = 4096  # THREADLINE_ATTACHMENTS__MAX_BYTES here
PER_REPLY = 2  # THREADLINE_ATTACHMENTS__MAX_PER_MESSAGE here
SECRET = "console-files-telegram-secret"
USER = 616161
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 200
TEXT = "Here is your corrected invoice."
_SENT_FILE = re.compile(r'<li class="file" data-file="(\d+)"><a href="([^"]+)" download>([^<]+)</a>')

Upload = tuple[str, tuple[str, bytes, str]]


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegramAPI]:
    async with FakeTelegramAPI() as fake:
        yield fake


@pytest.fixture
async def served(telegram: FakeTelegramAPI, tmp_path: Path) -> AsyncIterator[Served]:
    """Overrides the console tests' app: Telegram at its fake, small file limits."""
    settings = app_settings(
        tmp_path / "data",
        admin_token=SecretStr(ADMIN_TOKEN),
        console=ConsoleSettings(login_attempts=5),
        attachments=AttachmentSettings(max_bytes=LIMIT, max_per_message=PER_REPLY),
        telegram=telegram_settings(telegram, secret=SECRET),
    )
    async with serving(settings) as app:
        yield app


async def customer_writes(served: Served, text: str = "My invoice is wrong") -> str:
    """A private Telegram message from ``USER``, answered by the bot; returns the customer's id."""
    update = {
        "update_id": 8101,
        "message": {
            "message_id": 21,
            "date": int(time.time()),
            "chat": {"id": USER, "type": "private", "first_name": "Ana"},
            "from": {"id": USER, "is_bot": False, "first_name": "Ana"},
            "text": text,
        },
    }
    headers = {"content-type": "application/json", "x-telegram-bot-api-secret-token": SECRET}
    answer = await served.client.post("/webhooks/telegram", content=json.dumps(update), headers=headers)
    assert answer.status_code == 200
    await idle(served)
    async with served.hub.db.read() as session:
        customer = await session.scalar(
            select(Identity.customer_id).where(Identity.address == f"telegram:{USER}")
        )
    assert customer is not None
    return str(customer)


async def idle(served: Served) -> None:
    assert await served.hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}


def pdf(name: str = "invoice.pdf", data: bytes = PDF, media_type: str = "application/pdf") -> Upload:
    return ("files", (name, data, media_type))


async def open_page(operator: Browser, customer: str) -> tuple[str, str]:
    """The customer page as the operator sees it: (its CSRF token, the reply form's idempotency key)."""
    page = await operator.get(f"/console/customers/{customer}")
    assert page.status_code == 200
    assert 'enctype="multipart/form-data"' in page.text and 'name="files" type="file" multiple' in page.text
    return operator.csrf, key_of(page.text)


async def send(
    operator: Browser,
    customer: str,
    files: list[Upload],
    *,
    key: str,
    csrf: str | None,
    text: str = TEXT,
) -> httpx.Response:
    """The reply form posted as a browser posts it (multipart, the file input's parts)."""
    form = {"text": text, "key": key} | ({"csrf_token": csrf} if csrf is not None else {})
    return await operator.client.post(f"/console/customers/{customer}/reply", data=form, files=files)


def media_files(data: Path) -> list[Path]:
    return [p for p in (data / "media").rglob("*") if p.is_file()] if (data / "media").exists() else []


async def nothing_kept(served: Served, telegram: FakeTelegramAPI, data: Path, sent_before: int) -> None:
    await idle(served)
    assert media_files(data) == []
    assert await count(served, AttachmentRow) == 0
    assert await count(served, OutboxRow, OutboxRow.origin == "operator") == 0
    assert telegram.sent_files == [] and len(telegram.sent) == sent_before
    assert not list(data.parent.rglob("invoice.pdf")) and not (data.parent / "etc").exists()


# ----- the tests ---------------------------------------------------------------------------------------


async def test_a_pdf_sent_from_the_console_reaches_telegram_once_and_shows_in_the_timeline(
    served: Served, telegram: FakeTelegramAPI, agent: Browser, tmp_path: Path
) -> None:
    customer = await customer_writes(served)
    csrf, key = await open_page(agent, customer)

    answer = await send(agent, customer, [pdf()], key=key, csrf=csrf)
    assert answer.status_code == 303, answer.text
    shown = await agent.get(answer.headers["location"])
    assert "Reply with 1 file queued on telegram." in shown.text
    await idle(served)

    # the channel: one sendDocument to the customer's chat, the same bytes, the text as its caption
    assert [
        (f["method"], f["chat_id"], f["filename"], f["caption"], f["data"]) for f in telegram.sent_files
    ] == [("sendDocument", USER, "invoice.pdf", TEXT, PDF)]
    # recorded: the operator's outbox row, one out file of it, the bytes under the data dir once
    async with served.hub.db.read() as session:
        (row,) = list(await session.scalars(select(AttachmentRow)))
        outbox = await session.get(OutboxRow, row.outbox_id)
    assert outbox is not None and outbox.origin == "operator" and outbox.status == "sent"
    assert (row.direction, row.name, row.media_type, row.size) == (
        "out",
        "invoice.pdf",
        "application/pdf",
        len(PDF),
    )
    sha256 = digest_of(PDF)
    assert row.sha256 == sha256
    assert media_files(tmp_path / "data") == [tmp_path / "data" / "media" / sha256[:2] / sha256]

    # the timeline shows the file sent, and its download is the same bytes
    timeline = await agent.get(f"/console/customers/{customer}/timeline")
    assert 'data-role="sent"' in timeline.text
    [(file_id, href, name)] = _SENT_FILE.findall(timeline.text)
    assert (int(file_id), name) == (row.id, "invoice.pdf")
    download = await agent.get(href)
    assert download.status_code == 200 and download.content == PDF

    # the same form submitted again (a double click, a reload): one message, nothing more kept
    again = await send(agent, customer, [pdf()], key=key, csrf=csrf)
    assert again.status_code == 303
    assert "That reply was sent already" in (await agent.get(again.headers["location"])).text
    await idle(served)
    assert len(telegram.sent_files) == 1
    assert [call.get("text") for call in telegram.calls_to("sendMessage")].count(TEXT) == 0
    assert await count(served, OutboxRow, OutboxRow.origin == "operator") == 1
    assert await count(served, AttachmentRow) == 1


async def test_files_without_text_are_sent_and_an_empty_reply_is_refused(
    served: Served, telegram: FakeTelegramAPI, agent: Browser
) -> None:
    customer = await customer_writes(served)
    csrf, key = await open_page(agent, customer)
    empty = await send(agent, customer, [], key=key, csrf=csrf, text="  ")
    assert empty.status_code == 422 and "The field text is required." in empty.text
    # an empty file input sends one nameless, empty part: not a file
    nameless = await send(
        agent, customer, [("files", ("", b"", "application/octet-stream"))], key=key, csrf=csrf, text=""
    )
    assert nameless.status_code == 422 and "The field text is required." in nameless.text
    assert await count(served, OutboxRow, OutboxRow.origin == "operator") == 0

    both = [pdf("a.pdf"), pdf("b.pdf", PDF + b"\n%second\n")]
    answer = await send(agent, customer, both, key=key, csrf=csrf, text="")
    assert answer.status_code == 303, answer.text
    await idle(served)
    assert [(f["method"], f["filename"], f["data"]) for f in telegram.sent_files] == [
        ("sendDocument", "a.pdf", PDF),
        ("sendDocument", "b.pdf", PDF + b"\n%second\n"),
    ]
    assert await count(served, AttachmentRow, AttachmentRow.direction == "out") == 2


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([pdf("setup.pdf", EXE)], "Not sent: setup.pdf is a kind of file we do not accept."),
        ([pdf("big.pdf", PDF + b"%" * LIMIT)], "Not sent: big.pdf is larger than 4 KB."),
        ([pdf("../../etc/invoice.pdf")], "Not sent: the name of invoice.pdf holds a path"),
        ([pdf(".htaccess.pdf")], "Not sent: the name of htaccess.pdf holds a path"),
        ([pdf("a.pdf"), pdf("b.pdf", PDF + b" " * (LIMIT - len(PDF)))], "the files together are larger"),
        ([pdf("ok.pdf"), pdf("setup.pdf", EXE)], "Not sent: setup.pdf is a kind of file"),
        ([pdf(f"{n}.pdf") for n in range(PER_REPLY + 1)], "Too many files"),
    ],
    ids=[
        "disallowed-type",
        "oversized",
        "path-in-name",
        "leading-dot",
        "too-much-in-all",
        "one-bad",
        "too-many",
    ],
)
async def test_a_refused_file_is_a_page_naming_it_and_nothing_is_stored_or_sent(
    served: Served,
    telegram: FakeTelegramAPI,
    agent: Browser,
    tmp_path: Path,
    files: list[Upload],
    message: str,
) -> None:
    customer = await customer_writes(served)
    sent_before = len(telegram.sent)
    csrf, key = await open_page(agent, customer)
    answer = await send(agent, customer, files, key=key, csrf=csrf)
    assert answer.status_code == 422
    assert message in answer.text and 'role="alert"' in answer.text
    if "Too many" not in message:  # refused by the check, where the customer is known: a way back
        assert f'href="/console/customers/{customer}">Back to the customer' in answer.text
    await nothing_kept(served, telegram, tmp_path / "data", sent_before)

    # the same form with a good file afterwards goes out (the refused attempt used up nothing)
    fixed = await send(agent, customer, [pdf()], key=key, csrf=csrf)
    assert fixed.status_code == 303
    await idle(served)
    assert [f["data"] for f in telegram.sent_files] == [PDF]


async def test_without_the_csrf_token_or_signed_in_nothing_is_stored_or_sent(
    served: Served, telegram: FakeTelegramAPI, agent: Browser, browser: Any, tmp_path: Path
) -> None:
    customer = await customer_writes(served)
    sent_before = len(telegram.sent)
    _, key = await open_page(agent, customer)
    for csrf in (None, "", "not-the-token"):
        answer = await send(agent, customer, [pdf()], key=key, csrf=csrf)
        assert answer.status_code == 403 and "Missing or invalid CSRF token." in answer.text
    stranger = browser()  # no session at all: sent to sign in
    answer = await send(stranger, customer, [pdf()], key=key, csrf=agent.csrf)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/login"
    await nothing_kept(served, telegram, tmp_path / "data", sent_before)


async def test_a_body_past_the_replys_limit_is_413_and_nothing_is_stored(
    served: Served, telegram: FakeTelegramAPI, agent: Browser, tmp_path: Path
) -> None:
    customer = await customer_writes(served)
    sent_before = len(telegram.sent)
    csrf, key = await open_page(agent, customer)
    huge = PDF + b"%" * (LIMIT + 128 * 1024)  # past the files' 4 KiB and the form's 64 KiB
    answer = await send(agent, customer, [pdf("huge.pdf", huge)], key=key, csrf=csrf)
    assert answer.status_code == 413
    await nothing_kept(served, telegram, tmp_path / "data", sent_before)
    # the other console routes keep the 64 KiB default
    other = await agent.client.post(
        f"/console/customers/{customer}/take", data={"csrf_token": csrf, "pad": "x" * (LIMIT + 64 * 1024)}
    )
    assert other.status_code == 413
