"""Files an operator sends back, end to end through the real app on all four channels.

The app runs under uvicorn with Slack, Telegram, SMS and email pointed at the local fakes (the official
SDKs speak the real protocols over real sockets). One customer writes on each channel; then an operator
replies to each with a PDF through ``POST /admin/customers/{id}/replies``. Each platform gets the file
exactly once with the same bytes: Slack through ``files_upload_v2``, Telegram as a ``sendDocument`` with
the text as its caption, email as a MIME attachment, and Twilio as an MMS whose ``MediaUrl`` is the hub's
signed link, which the fake Twilio then fetches over HTTP as Twilio does. The same idempotency key again
sends nothing more. The signed route refuses a wrong signature and an expired link (403) and serves
nothing the hub did not send (404); a disallowed type, an oversized file, a path in a name and bad base64
are 422 with nothing stored, written or sent.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from core.media.links import MediaLinks, links_for
from core.media.store import digest_of
from core.settings import AttachmentSettings, EmailSettings, Settings, SlackSettings
from core.store.models import AttachmentRow, OutboxRow
from tests.apphost import Served, app_settings, free_port, serving
from tests.fakes.slack_api import DEFAULT_TOKEN, FakeSlackAPI
from tests.fakes.smtp_relay import FakeSmtpRelay
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.twilio_api import FakeTwilioAPI
from tests.platforms import post_mailgun_mime, post_twilio_sms, telegram_settings, twilio_settings

ADMIN = "admin-token-for-outbound-files"
LIMIT = 4096
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 200
TEXT = "Here is your corrected invoice."
# Slack
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TEAM, SLACK_USER, DM = "T123ABC456", "U2147483697", "D024BE91L"
# Telegram
TELEGRAM_SECRET = "outbound-files-secret"
TELEGRAM_USER = 515151
# SMS
ACCOUNT_SID, AUTH_TOKEN, OUR_NUMBER, PHONE = (
    "AC" + "5" * 32,
    "files-auth-token",
    "+15558675310",
    "+15551230000",
)
# email
OURS, KEY, AUTHSERV, MAILBOX = (
    "support@threadline.example",
    "key-outbound-0123456789abcdef",
    "mx.example",
    "ana@example.com",
)

CUSTOMERS = {
    "slack": f"slack:{TEAM}:{SLACK_USER}",
    "telegram": f"telegram:{TELEGRAM_USER}",
    "sms": f"sms:{PHONE}",
    "email": f"email:{MAILBOX}",
}


@dataclass
class Fakes:
    slack: FakeSlackAPI
    telegram: FakeTelegramAPI
    twilio: FakeTwilioAPI
    relay: FakeSmtpRelay


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    async with (
        FakeSlackAPI(token=DEFAULT_TOKEN) as slack,
        FakeTelegramAPI() as telegram,
        FakeTwilioAPI(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as twilio,
        FakeSmtpRelay() as relay,
    ):
        yield Fakes(slack, telegram, twilio, relay)


def settings_for(fakes: Fakes, data: Path, port: int) -> Settings:
    return app_settings(
        data,
        public_base_url=f"http://127.0.0.1:{port}",  # Twilio fetches the MMS media from the app itself
        admin_token=SecretStr(ADMIN),
        attachments=AttachmentSettings(max_bytes=LIMIT),
        slack=SlackSettings(
            bot_token=SecretStr(DEFAULT_TOKEN),
            signing_secret=SecretStr(SIGNING_SECRET),
            api_base_url=fakes.slack.api_url,
        ),
        telegram=telegram_settings(fakes.telegram, secret=TELEGRAM_SECRET),
        twilio=twilio_settings(
            fakes.twilio, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_number=OUR_NUMBER
        ),
        email=EmailSettings(
            address=f"Support <{OURS}>",
            smtp_host="127.0.0.1",
            smtp_port=fakes.relay.port,
            inbound_signing_key=SecretStr(KEY),
            authserv_id=AUTHSERV,
        ),
    )


@pytest.fixture
async def served(fakes: Fakes, tmp_path: Path) -> AsyncIterator[Served]:
    port = free_port()
    async with serving(settings_for(fakes, tmp_path / "data", port), port=port) as app:
        yield app


# ----- the customers write first ---------------------------------------------------------------------


async def slack_dm(served: Served, text: str) -> None:
    payload = {
        "token": "verification",
        "team_id": TEAM,
        "api_app_id": "A0PNCHHK2",
        "event": {
            "type": "message",
            "channel": DM,
            "user": SLACK_USER,
            "text": text,
            "ts": "1355517523.000005",
            "event_ts": "1355517523.000005",
            "channel_type": "im",
        },
        "type": "event_callback",
        "authorizations": [{"team_id": TEAM, "user_id": "UBOT0001", "is_bot": True}],
        "event_id": "Ev0OUTBOUND1",
        "event_time": 1355517523,
    }
    body = json.dumps(payload).encode()
    stamp = str(int(time.time()))
    digest = hmac.new(SIGNING_SECRET.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256)
    headers = {
        "content-type": "application/json",
        "x-slack-request-timestamp": stamp,
        "x-slack-signature": f"v0={digest.hexdigest()}",
    }
    assert (
        await served.client.post("/webhooks/slack/events", content=body, headers=headers)
    ).status_code == 200


async def telegram_message(served: Served, text: str) -> None:
    update = {
        "update_id": 7001,
        "message": {
            "message_id": 11,
            "date": int(time.time()),
            "chat": {"id": TELEGRAM_USER, "type": "private", "first_name": "Ana"},
            "from": {"id": TELEGRAM_USER, "is_bot": False, "first_name": "Ana"},
            "text": text,
        },
    }
    headers = {"content-type": "application/json", "x-telegram-bot-api-secret-token": TELEGRAM_SECRET}
    assert (
        await served.client.post("/webhooks/telegram", content=json.dumps(update), headers=headers)
    ).status_code == 200


def mail(text: str) -> bytes:
    message = EmailMessage()
    message["Authentication-Results"] = f"{AUTHSERV}; dmarc=pass header.from=example.com"
    message["Received"] = f"from mail.example.com by {AUTHSERV}; Mon, 3 Mar 2025 09:30:51 -0800"
    message["From"] = f"Ana <{MAILBOX}>"
    message["To"] = f"Support <{OURS}>"
    message["Subject"] = "My invoice"
    message["Message-ID"] = "<first@example.com>"
    message.set_content(text)
    return message.as_bytes()


async def everyone_writes(served: Served) -> None:
    await slack_dm(served, "My invoice is wrong")
    await telegram_message(served, "My invoice is wrong")
    await post_twilio_sms(
        served.client,
        public=served.url,
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        to=OUR_NUMBER,
        phone=PHONE,
        text="My invoice is wrong",
    )
    await post_mailgun_mime(
        served.client, key=KEY, recipient=OURS, sender=MAILBOX, raw=mail("My invoice is wrong")
    )
    await idle(served)


async def idle(served: Served) -> None:
    assert await served.hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}


# ----- the operator ------------------------------------------------------------------------------------


def file_in(name: str, data: bytes, media_type: str = "application/pdf") -> dict[str, str]:
    return {"name": name, "media_type": media_type, "data_base64": base64.b64encode(data).decode()}


async def reply(
    served: Served, address: str, *, key: str, files: list[dict[str, str]], text: str = TEXT
) -> httpx.Response:
    return await served.client.post(
        f"/admin/customers/{quote(address, safe='')}/replies",
        json={"text": text, "operator": "maria", "attachments": files},
        headers={"authorization": f"Bearer {ADMIN}", "idempotency-key": key},
    )


async def count(served: Served, model: Any, *where: Any) -> int:
    async with served.hub.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def media_files(data: Path) -> list[Path]:
    return [p for p in (data / "media").rglob("*") if p.is_file()] if (data / "media").exists() else []


# ----- the tests ---------------------------------------------------------------------------------------


async def test_a_pdf_reaches_every_channel_once_with_the_same_bytes(
    served: Served, fakes: Fakes, tmp_path: Path
) -> None:
    await everyone_writes(served)
    mails_before = len(fakes.relay.messages)
    for channel, address in CUSTOMERS.items():
        answer = await reply(
            served, address, key=f"files-{channel}-0001", files=[file_in("invoice.pdf", PDF)]
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["channel"] == channel and answer.json()["duplicate"] is False
    await idle(served)
    fetches = await asyncio.to_thread(fakes.twilio.wait_for_fetches, 1)

    # Slack: files_upload_v2 into the DM, after the text
    assert [(f.channel, f.filename, f.data) for f in fakes.slack.uploaded] == [(DM, "invoice.pdf", PDF)]
    assert fakes.slack.posted[-1].text == TEXT and fakes.slack.posted[-1].channel == DM
    # Telegram: a document (not a photo), the text as its caption
    assert [
        (f["method"], f["chat_id"], f["filename"], f["caption"], f["data"]) for f in fakes.telegram.sent_files
    ] == [("sendDocument", TELEGRAM_USER, "invoice.pdf", TEXT, PDF)]
    # Twilio: one MMS, its media a signed link to the hub, fetched by the fake as Twilio does
    sha256 = digest_of(PDF)
    (sid, urls), *others = [m for m in fakes.twilio.media_urls]
    assert not others and len(urls) == 1
    assert urls[0].startswith(f"{served.url}/media/{sha256}?expires=")
    assert [(f.message_sid, f.status, f.data) for f in fetches] == [(sid, 200, PDF)]
    assert fetches[0].headers["content-type"] == "application/pdf"
    assert fetches[0].headers["content-disposition"].startswith("attachment;")
    assert 'filename="invoice.pdf"' in fetches[0].headers["content-disposition"]
    assert fetches[0].headers["x-content-type-options"] == "nosniff"
    assert [m["Body"] for m in fakes.twilio.messages if m.get("MediaUrl")] == [TEXT]
    # email: the PDF as a MIME attachment of the reply
    (sent_mail,) = fakes.relay.messages[mails_before:]
    parts = [
        (p.get_filename(), p.get_content_type(), p.get_content())
        for p in sent_mail.message.iter_attachments()
    ]
    assert parts == [("invoice.pdf", "application/pdf", PDF)]

    # recorded: one out row per reply, the bytes stored once under the data dir
    assert await count(served, AttachmentRow, AttachmentRow.direction == "out") == 4
    assert media_files(tmp_path / "data") == [tmp_path / "data" / "media" / sha256[:2] / sha256]

    # the same idempotency key again: answered as a duplicate, nothing more is sent anywhere
    for channel, address in CUSTOMERS.items():
        again = await reply(served, address, key=f"files-{channel}-0001", files=[file_in("invoice.pdf", PDF)])
        assert again.status_code == 200 and again.json()["duplicate"] is True
    await idle(served)
    assert len(fakes.slack.uploaded) == 1 and len(fakes.telegram.sent_files) == 1
    assert len(fakes.twilio.media_urls) == 1 and len(fakes.relay.messages) == mails_before + 1
    assert await count(served, OutboxRow, OutboxRow.origin == "operator") == 4
    assert await count(served, AttachmentRow, AttachmentRow.direction == "out") == 4


async def test_the_signed_link_refuses_forged_expired_and_unknown_files(
    served: Served, fakes: Fakes, tmp_path: Path
) -> None:
    await everyone_writes(served)
    answer = await reply(served, CUSTOMERS["sms"], key="files-link-0001", files=[file_in("invoice.pdf", PDF)])
    assert answer.status_code == 200
    await idle(served)
    (fetch,) = await asyncio.to_thread(fakes.twilio.wait_for_fetches, 1)
    assert fetch.status == 200 and fetch.data == PDF
    sha256 = digest_of(PDF)
    path, _, query = fetch.url.removeprefix(served.url).partition("?")
    expires, sig = (part.split("=", 1)[1] for part in query.split("&"))

    async def status(url: str) -> int:
        return (await served.client.get(url)).status_code

    assert await status(f"{path}?{query}") == 200  # good until it expires (Twilio may fetch again)
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    assert await status(f"{path}?expires={expires}&sig={flipped}") == 403
    assert await status(f"{path}?expires={int(expires) + 1}&sig={sig}") == 403  # a later expiry: not signed
    assert await status(f"{path}?expires={expires}") == 403
    assert await status(path) == 403
    # signed with the hub's own key, but expired a second ago
    settings = served.app.state.admin.settings
    links = links_for(settings)
    assert links is not None
    past = MediaLinks(_key_of(settings), base_url=served.url, minutes=1, clock=lambda: time.time() - 61).url(
        sha256
    )
    assert await status(past.removeprefix(served.url)) == 403
    # properly signed, but not a file the hub sent: 404 (nothing is served but outbound files)
    other = links.url(digest_of(b"some file nobody sent"))
    assert await status(other.removeprefix(served.url)) == 404
    assert await status("/media/..%2F..%2Fetc%2Fpasswd?expires=9999999999&sig=" + "0" * 64) in (403, 404)
    # another key (another hub's) signs nothing here
    foreign = MediaLinks(b"k" * 32, base_url=served.url, minutes=5).url(sha256)
    assert await status(foreign.removeprefix(served.url)) == 403


def _key_of(settings: Settings) -> bytes:
    from core.media.links import link_key

    assert settings.twilio.auth_token is not None
    return link_key(settings.twilio.auth_token.get_secret_value())


@pytest.mark.parametrize(
    ("files", "detail"),
    [
        ([file_in("setup.pdf", EXE)], "setup.pdf is a kind of file we do not accept"),
        ([file_in("big.pdf", PDF + b"%" * LIMIT)], "big.pdf is larger than 4 KB"),
        ([file_in("../../etc/invoice.pdf", PDF)], "the name of invoice.pdf holds a path"),
        ([file_in("a.pdf", PDF), file_in("b.pdf", PDF + b" " * (LIMIT - len(PDF)))], "the files together"),
        ([{"name": "x.pdf", "data_base64": "not base64!"}], "attachment 1: data_base64 is not valid base64"),
    ],
    ids=["disallowed-type", "oversized", "path-in-name", "too-much-in-all", "bad-base64"],
)
async def test_bad_uploads_are_refused_and_nothing_is_stored_or_sent(
    served: Served, fakes: Fakes, tmp_path: Path, files: list[dict[str, str]], detail: str
) -> None:
    await everyone_writes(served)
    sent_before = (
        len(fakes.slack.posted),
        len(fakes.telegram.sent),
        len(fakes.twilio.messages),
        len(fakes.relay.messages),
    )
    for address in CUSTOMERS.values():
        answer = await reply(served, address, key="files-bad-0001", files=copy.deepcopy(files))
        assert answer.status_code == 422
        assert detail in answer.json()["detail"]
    await idle(served)
    assert media_files(tmp_path / "data") == []
    assert not list(tmp_path.rglob("invoice.pdf")) and not (tmp_path / "etc").exists()
    assert await count(served, AttachmentRow) == 0
    assert await count(served, OutboxRow, OutboxRow.origin == "operator") == 0
    assert (
        len(fakes.slack.posted),
        len(fakes.telegram.sent),
        len(fakes.twilio.messages),
        len(fakes.relay.messages),
    ) == sent_before
    assert fakes.slack.uploaded == [] and fakes.telegram.sent_files == [] and fakes.twilio.media_urls == []


async def test_a_body_past_the_replys_limit_is_413_before_it_is_read(served: Served, tmp_path: Path) -> None:
    huge = base64.b64encode(b"%PDF-" + b"x" * (200 * 1024)).decode()  # past 4 KiB of base64 + 64 KiB
    answer = await served.client.post(
        f"/admin/customers/{quote(CUSTOMERS['sms'], safe='')}/replies",
        json={"text": TEXT, "operator": "maria", "attachments": [{"name": "a.pdf", "data_base64": huge}]},
        headers={"authorization": f"Bearer {ADMIN}"},
    )
    assert answer.status_code == 413
    assert media_files(tmp_path / "data") == []
