"""MMS files end to end through the real app: a signed Twilio webhook with ``MediaUrl0``, the worker's fetch
with the account's credentials (``channels.sms.media``) at the fake Twilio API, its redirect to the fake CDN.

An image is stored once and answered; the credentials go to the media URL and never to the CDN it redirects
to. A media URL on another host is refused without a request to it, so is a redirect to another host; a file
over the limit is refused without reading it all; wrong credentials are refused; a 502 makes the turn retry,
with one reply. The customer is told what was not taken, and nothing is written outside the data dir.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import select
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from core.media.store import digest_of
from core.settings import AttachmentSettings
from core.store.models import AttachmentRow
from tests.apphost import Served, app_settings, serving
from tests.fakes.twilio_api import FakeTwilioAPI
from tests.platforms import twilio_settings

ACCOUNT_SID = "AC" + "5" * 32
AUTH_TOKEN = "mms-twilio-auth-token-77aa"
PUBLIC = "https://bot.example.com"
OUR_NUMBER = "+15558675310"
CUSTOMER = "+14155552671"
LIMIT = 64 * 1024
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 12


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilioAPI]:
    async with FakeTwilioAPI(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as server:
        yield server


@pytest.fixture
async def elsewhere() -> AsyncIterator[FakeTwilioAPI]:
    """Another origin that answers like Twilio, with the same credentials: it must get nothing."""
    async with FakeTwilioAPI(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as server:
        yield server


@pytest.fixture
async def served(fake: FakeTwilioAPI, tmp_path: Path) -> AsyncIterator[Served]:
    settings = app_settings(
        tmp_path / "data",
        public_base_url=PUBLIC,
        twilio=twilio_settings(fake, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_number=OUR_NUMBER),
        attachments=AttachmentSettings(max_bytes=LIMIT),
    )
    async with serving(settings) as app:
        yield app


async def mms(served: Served, text: str, media: list[tuple[str, str]]) -> None:
    """A signed inbound MMS with ``media`` (URL, declared content type); waits until it is answered."""
    form = {"MessageSid": "MM" + secrets.token_hex(16), "AccountSid": ACCOUNT_SID, "From": CUSTOMER}
    form |= {"To": OUR_NUMBER, "Body": text, "NumMedia": str(len(media))}
    for index, (url, content_type) in enumerate(media):
        form |= {f"MediaUrl{index}": url, f"MediaContentType{index}": content_type}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(f"{PUBLIC}/webhooks/twilio/sms", form)
    response = await served.client.post(
        "/webhooks/twilio/sms",
        content=urlencode(form),
        headers={"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature},
    )
    assert response.status_code == 200
    assert await served.hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}


async def attachment_rows(served: Served) -> list[AttachmentRow]:
    async with served.hub.db.read() as session:
        return list(await session.scalars(select(AttachmentRow).order_by(AttachmentRow.id)))


def stored_files(tmp_path: Path) -> list[Path]:
    assert all(path.is_relative_to(tmp_path / "data") for path in tmp_path.rglob("*") if path.is_file())
    media = tmp_path / "data" / "media"
    found = [path for path in media.rglob("*") if path.is_file()] if media.exists() else []
    assert all(re.fullmatch(r"[0-9a-f]{64}", path.name) for path in found)
    return found


def replies(fake: FakeTwilioAPI) -> list[str]:
    return [message["Body"] for message in fake.messages]


async def test_an_mms_image_is_fetched_with_the_credentials_stored_once_and_answered(
    served: Served, fake: FakeTwilioAPI, tmp_path: Path
) -> None:
    first, second = (
        fake.add_media(PNG, content_type="image/png"),
        fake.add_media(PNG, content_type="image/png"),
    )
    await mms(served, "the broken part", [(first, "image/png")])
    await mms(served, "", [(second, "image/png")])  # a picture without words is still a message

    rows = await attachment_rows(served)
    name = f"file-{digest_of(PNG)[:8]}.png"  # an MMS file has no name: its digest names it
    assert [(r.name, r.media_type, r.size, r.status, r.sha256) for r in rows] == [
        (name, "image/png", len(PNG), "stored", digest_of(PNG)),
        (name, "image/png", len(PNG), "stored", digest_of(PNG)),
    ]
    media = tmp_path / "data" / "media"
    assert stored_files(tmp_path) == [media / digest_of(PNG)[:2] / digest_of(PNG)]
    # the media URL got the account's credentials; the CDN it redirected to got none
    assert [r.authorized for r in fake.media_requests()] == [True, True]
    assert [r.had_authorization for r in fake.cdn_requests] == [False, False]
    assert len(replies(fake)) == 2 and not any(body.startswith("I couldn't") for body in replies(fake))


async def test_media_elsewhere_or_redirected_elsewhere_is_refused_without_a_request_there(
    served: Served, fake: FakeTwilioAPI, elsewhere: FakeTwilioAPI, tmp_path: Path
) -> None:
    foreign = elsewhere.add_media(PNG, content_type="image/png")
    await mms(served, "look", [(foreign, "image/png")])
    fake.redirect_media_to(foreign)  # Twilio's answer points at a host that is not Twilio's
    await mms(served, "look again", [(fake.add_media(PNG, content_type="image/png"), "image/png")])

    assert elsewhere.requests == [] and elsewhere.cdn_requests == []  # not even asked
    rows = await attachment_rows(served)
    assert [(r.status, r.reason, r.sha256) for r in rows] == [
        ("refused", "your image is not on Twilio's servers", None),
        ("refused", "your image is not on Twilio's servers", None),
    ]
    assert [body.split("\n\n")[0] for body in replies(fake)] == [
        "I couldn't take one of your files: your image is not on Twilio's servers."
    ] * 2
    assert stored_files(tmp_path) == []


async def test_too_large_and_unauthorised_media_are_refused_without_reading_them(
    served: Served, fake: FakeTwilioAPI, tmp_path: Path
) -> None:
    total = 16 * 1024 * 1024
    announced = fake.add_media(size=total)  # Content-Length says it all: not read
    unannounced = fake.add_media(size=total, declare_length=False)  # no length: read up to the limit only
    await mms(served, "two videos", [(announced, "image/jpeg"), (unannounced, "image/jpeg")])
    assert fake.cdn_bytes_sent < total // 2  # both abandoned early: most bytes were never sent

    fake.auth_token = "rotated-token"  # the account's credentials no longer match: 401 at the media URL
    await mms(served, "and this", [(fake.add_media(PNG, content_type="image/png"), "image/png")])

    rows = await attachment_rows(served)
    assert [(r.status, r.reason) for r in rows] == [
        ("refused", "your image is larger than 64 KB"),
        ("refused", "your image is larger than 64 KB"),
        ("refused", "your image could not be fetched from Twilio"),
    ]
    assert replies(fake)[0].startswith(
        "I couldn't take some of your files: "
        "your image is larger than 64 KB; your image is larger than 64 KB."
    )
    assert stored_files(tmp_path) == []


async def test_a_502_then_success_answers_once(served: Served, fake: FakeTwilioAPI, tmp_path: Path) -> None:
    url = fake.add_media(PNG, content_type="image/png")
    fake.push_server_error(502, path=url.rsplit("/", 1)[1])  # the media URL fails once
    await mms(served, "photo", [(url, "image/png")])

    assert [r.forced for r in fake.media_requests()] == [True, False]  # retried once, then fetched
    rows = await attachment_rows(served)
    assert [(r.status, r.sha256) for r in rows] == [("stored", digest_of(PNG))]
    assert len(replies(fake)) == 1
    assert len(stored_files(tmp_path)) == 1
