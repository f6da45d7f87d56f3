"""Email end to end: signed webhook or SMTP listener → inbox → worker → reply at a fake SMTP relay.

The app is served by uvicorn on a loopback port; the webhook is called over real HTTP with a Mailgun
"forward with MIME" multipart POST, signed the way Mailgun signs (hex HMAC-SHA256 of ``timestamp`` +
``token`` with the inbound signing key). The app's own SMTP listener runs in its event loop on a port
the OS picks, and is spoken to by aiosmtplib. Replies go out through aiosmtplib to ``FakeSmtpRelay``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiosmtplib
import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from channels.email import EmailAdapter
from core.settings import EmailSettings
from core.store.models import InboxRow, OutboxRow
from tests.apphost import Served, app_settings, serving
from tests.fakes.smtp_relay import FakeSmtpRelay, RelayedMessage

FIXTURES = Path(__file__).resolve().parents[2] / "channels" / "fixtures" / "email"
OURS = "support@threadline.example"
KEY = "key-e2e-6f0c1d2b3a4958677a8b9c0d"
INBOUND_PATH = "/webhooks/email/inbound"
MAX_BODY_BYTES = 10 * 1024 * 1024  # EmailAdapter.max_body_bytes

GMAIL_ID = "<CAJx7Qm8vZ1+0bW=Yk3pPq2gLJ4cN3wTzX5sQ@mail.gmail.com>"
GMAIL_REFERENCES = [
    "<20250301101500.1234.abcd@threadline.example>",
    "<20250303091400.5678.efgh@threadline.example>",
]


# ----- building and signing the provider's requests -------------------------------------------------


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.eml").read_bytes()


def plain_mail(message_id: str, sender: str, text: str) -> bytes:
    """A minimal, ordinary customer mail."""
    return (
        f"From: {sender}\r\nTo: Threadline Support <{OURS}>\r\nSubject: Help with my order\r\n"
        f"Date: Mon, 3 Mar 2025 09:30:51 -0800\r\nMessage-ID: {message_id}\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
    ).encode()


def signature_fields(*, key: str = KEY, timestamp: float | None = None) -> dict[str, str]:
    """``timestamp`` / ``token`` / ``signature`` as Mailgun computes them (a fresh token every time)."""
    ts = str(int(time.time() if timestamp is None else timestamp))
    token = secrets.token_hex(25)
    signature = hmac.new(key.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    return {"timestamp": ts, "token": token, "signature": signature}


async def post_mail(
    served: Served,
    raw: bytes | None,
    *,
    sender: str,
    fields: dict[str, str] | None = None,
) -> httpx.Response:
    """A Mailgun forward-with-MIME POST (multipart): envelope, signature, raw MIME in ``body-mime``."""
    data = {**(signature_fields() if fields is None else fields), "recipient": OURS, "sender": sender}
    files: dict[str, tuple[str | None, bytes] | tuple[str, bytes, str]] = {
        "attachment-1": ("note.txt", b"an attachment", "text/plain")
    }
    if raw is not None:
        files["body-mime"] = (None, raw)  # a plain form field, the raw bytes kept exactly
    return await served.client.post(INBOUND_PATH, data=data, files=files)


async def post_raw(served: Served, body: bytes, content_type: str) -> httpx.Response:
    return await served.client.post(INBOUND_PATH, content=body, headers={"content-type": content_type})


def multipart(fields: dict[str, str | bytes]) -> tuple[bytes, str]:
    """Encode a multipart/form-data body by hand (for bodies we then cut or inflate)."""
    request = httpx.Request(
        "POST", "http://127.0.0.1" + INBOUND_PATH, files={k: (None, v) for k, v in fields.items()}
    )
    return request.read(), request.headers["content-type"]


async def smtp_deliver(served: Served, raw: bytes, *, sender: str) -> tuple[dict[str, object], str]:
    """Deliver ``raw`` to the app's SMTP listener (``sender=""`` is the null reverse-path of a bounce)."""
    adapter = served.app.state.adapters["email"]
    assert isinstance(adapter, EmailAdapter) and adapter.smtp_port is not None
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=adapter.smtp_port, start_tls=False, local_hostname="mx.test", timeout=30
    )
    async with client:
        errors, response = await client.sendmail(sender, [OURS], raw)
    return dict(errors), response


# ----- looking at the store -----------------------------------------------------------------------


async def inbox(served: Served) -> list[InboxRow]:
    async with served.hub.db.session() as session:
        return list(await session.scalars(select(InboxRow).order_by(InboxRow.id)))


async def outbox(served: Served) -> list[OutboxRow]:
    async with served.hub.db.session() as session:
        return list(await session.scalars(select(OutboxRow).order_by(OutboxRow.id)))


async def settle(served: Served) -> None:
    """Let the worker and delivery finish everything committed so far; fail loudly if they do not."""
    left = await served.hub.wait_idle(timeout=30)
    assert not any(left.values()), f"the hub is still busy after 30 s: {left}"


def body_of(relayed: RelayedMessage) -> str:
    part = relayed.message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content()).strip()


# ----- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
async def relay() -> AsyncIterator[FakeSmtpRelay]:
    async with FakeSmtpRelay() as fake:
        yield fake


@pytest.fixture
async def served(relay: FakeSmtpRelay, tmp_path: Path) -> AsyncIterator[Served]:
    email = EmailSettings(
        address=f"Threadline Support <{OURS}>",
        smtp_host="127.0.0.1",
        smtp_port=relay.port,
        inbound_signing_key=SecretStr(KEY),
        smtp_listen="127.0.0.1:0",  # the app's own listener, on a port the OS picks
    )
    async with serving(app_settings(tmp_path / "data", email=email)) as app:
        yield app


# ----- tests --------------------------------------------------------------------------------------


async def test_a_signed_mail_gets_exactly_one_threaded_reply_even_when_delivered_again(
    served: Served, relay: FakeSmtpRelay
) -> None:
    raw = fixture("gmail_reply")

    first = await post_mail(served, raw, sender="ana.souza@example.com")
    retried = await post_mail(
        served, raw, sender="ana.souza@example.com"
    )  # the provider retries, signed afresh
    errors, _ = await smtp_deliver(served, raw, sender="ana.souza@example.com")  # and the same mail by SMTP

    assert (first.status_code, retried.status_code, errors) == (200, 200, {})
    await settle(served)
    assert relay.attempts == 1 and len(relay.messages) == 1
    [sent] = relay.messages
    assert sent.mail_from == OURS and sent.rcpt_tos == ("ana.souza@example.com",)
    reply = sent.message
    assert reply["To"] == "ana.souza@example.com"
    assert reply["Subject"] == "Re: Invoice 4411 charged twice"
    assert reply["In-Reply-To"] == GMAIL_ID
    assert str(reply["References"]).split() == [*GMAIL_REFERENCES, GMAIL_ID]
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["X-Auto-Response-Suppress"] == "All"
    assert reply["X-Loop"] == OURS
    assert body_of(sent)  # the agent's (offline) answer

    [row] = await inbox(served)
    assert row.channel == "email" and row.status == "done"
    assert row.provider_message_id == f"{GMAIL_ID}|{OURS}"
    assert row.sender == "email:ana.souza@example.com"
    assert "wrote:" not in row.text and row.text.startswith("Hi,")  # the quoted history was stripped
    [out] = await outbox(served)
    assert out.status == "sent" and out.attempts == 1
    assert out.provider_message_ids == [str(reply["Message-ID"])]


async def test_unsigned_stale_garbled_or_oversized_webhooks_are_refused_and_store_nothing(
    served: Served, relay: FakeSmtpRelay
) -> None:
    raw = plain_mail("<good-1@example.com>", "dana@example.com", "My parcel never arrived.")
    sender = "dana@example.com"
    missing = signature_fields()
    del missing["signature"]
    truncated, truncated_type = multipart({**signature_fields(), "recipient": OURS, "body-mime": raw})
    mime_cut = truncated.index(b"My parcel")
    # over the limit, validly signed: refused for its size before anything reads it
    huge, huge_type = multipart(
        {**signature_fields(), "recipient": OURS, "body-mime": raw + b"x" * MAX_BODY_BYTES}
    )
    cases: dict[str, tuple[httpx.Response, int]] = {
        "signed with another key": (
            await post_mail(served, raw, sender=sender, fields=signature_fields(key="not-the-key")),
            403,
        ),
        "signature missing": (await post_mail(served, raw, sender=sender, fields=missing), 401),
        "stale timestamp": (
            await post_mail(
                served, raw, sender=sender, fields=signature_fields(timestamp=time.time() - 3600)
            ),
            403,
        ),
        "not a form": (await post_raw(served, b'{"body-mime": "hi"}', "application/json"), 401),
        # cut inside the signature fields: nothing authentic to read
        "cut before the signature": (await post_raw(served, truncated[:120], truncated_type), 401),
        # cut inside body-mime: signed (the signature covers only timestamp + token), but no message
        "cut inside body-mime": (await post_raw(served, truncated[:mime_cut], truncated_type), 422),
        "signed but no body-mime": (await post_mail(served, None, sender=sender), 422),
        "signed but garbage MIME": (
            await post_mail(served, b"\x00\x01 garbage, no headers", sender=sender),
            422,
        ),
        "over max_body_bytes": (await post_raw(served, huge, huge_type), 413),
    }

    outcomes = {name: response.status_code for name, (response, _) in cases.items()}
    assert outcomes == {name: expected for name, (_, expected) in cases.items()}
    await settle(served)
    assert await served.inbox_rows() == 0
    assert relay.attempts == 0

    # the same mail, signed right, is taken: the refusals above were about the requests, not the app
    assert (await post_mail(served, raw, sender=sender)).status_code == 200
    await settle(served)
    assert await served.inbox_rows("email") == 1
    assert len(relay.messages) == 1 and relay.messages[0].rcpt_tos == (sender,)


async def test_a_mail_through_the_smtp_listener_is_answered_once(
    served: Served, relay: FakeSmtpRelay
) -> None:
    raw = fixture("outlook_reply")

    errors, response = await smtp_deliver(served, raw, sender="bruno.keller@contoso.example")
    again, _ = await smtp_deliver(served, raw, sender="bruno.keller@contoso.example")  # an MTA's retry

    assert errors == {} and again == {} and response.startswith("2.0.0")
    await settle(served)
    assert relay.attempts == 1 and len(relay.messages) == 1
    [sent] = relay.messages
    assert sent.rcpt_tos == ("bruno.keller@contoso.example",)
    outlook_id = "<AM6PR08MB4423C7B1F0D2E3A4B5C6D7E8F9A0AM6PR08MB4423.eurprd08.prod.outlook.com>"
    assert sent.message["In-Reply-To"] == outlook_id
    assert str(sent.message["References"]).split() == [
        "<20250303160000.1111.aaaa@threadline.example>",
        outlook_id,
    ]
    assert sent.message["Subject"] == "Re: Order 7781 status"
    assert sent.message["Auto-Submitted"] == "auto-replied"
    assert await served.inbox_rows("email") == 1


def deeply_nested_mail(depth: int) -> bytes:
    """A mail whose text sits ``depth`` multiparts deep (3,000 raised RecursionError in the stdlib parser)."""
    opening = "".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(depth)
    )
    closing = "".join(f"\r\n--b{i}--\r\n" for i in reversed(range(depth)))
    return (
        f"From: fay@example.com\r\nTo: {OURS}\r\nSubject: deep\r\nMessage-ID: <deep-1@example.com>\r\n"
        f"MIME-Version: 1.0\r\n{opening}Content-Type: text/plain\r\n\r\nhello\r\n{closing}"
    ).encode()


async def test_a_mail_nested_3000_parts_deep_is_refused_for_good_and_stores_nothing(
    served: Served, relay: FakeSmtpRelay
) -> None:
    raw = deeply_nested_mail(3_000)

    # a 5xx, not the 451 that had the sending MTA retry it for days
    with pytest.raises(aiosmtplib.SMTPDataError) as caught:
        await smtp_deliver(served, raw, sender="fay@example.com")
    by_webhook = await post_mail(served, raw, sender="fay@example.com")

    assert 500 <= caught.value.code < 600
    assert by_webhook.status_code == 422
    await settle(served)
    assert await served.inbox_rows() == 0
    assert relay.attempts == 0


async def test_auto_replies_and_bounces_are_accepted_but_never_stored_or_answered(
    served: Served, relay: FakeSmtpRelay
) -> None:
    auto_reply, bounce = fixture("auto_reply"), fixture("bounce")

    by_webhook = [
        (await post_mail(served, auto_reply, sender="carla@example.org")).status_code,
        (await post_mail(served, bounce, sender="")).status_code,
    ]
    by_smtp = [
        await smtp_deliver(served, auto_reply, sender="carla@example.org"),
        await smtp_deliver(served, bounce, sender=""),  # MAIL FROM:<>
    ]

    assert by_webhook == [200, 200]  # accepted, so the provider does not retry
    assert [(errors, response[:5]) for errors, response in by_smtp] == [({}, "2.0.0"), ({}, "2.0.0")]
    await settle(served)
    assert await served.inbox_rows() == 0
    assert relay.attempts == 0 and relay.messages == []


async def test_a_451_deferral_from_the_relay_is_retried_and_the_reply_arrives_once(
    served: Served, relay: FakeSmtpRelay
) -> None:
    relay.fail_next(451)

    raw = plain_mail("<defer-1@example.com>", "erin@example.com", "Can I change my delivery address?")
    assert (await post_mail(served, raw, sender="erin@example.com")).status_code == 200
    await settle(served)

    assert relay.attempts == 2  # the deferred transaction and the retry
    assert len(relay.messages) == 1 and relay.messages[0].rcpt_tos == ("erin@example.com",)
    assert relay.messages[0].message["In-Reply-To"] == "<defer-1@example.com>"
    [out] = await outbox(served)
    assert out.status == "sent" and out.attempts == 2 and out.last_error is None


async def test_a_550_from_the_relay_fails_the_reply_after_one_attempt(
    served: Served, relay: FakeSmtpRelay
) -> None:
    relay.fail_next(550)

    raw = plain_mail("<refused-1@example.com>", "frank@example.com", "Please cancel my subscription.")
    assert (await post_mail(served, raw, sender="frank@example.com")).status_code == 200
    await settle(served)

    assert relay.attempts == 1
    assert relay.messages == []
    [out] = await outbox(served)
    assert out.status == "failed" and out.attempts == 1
    assert out.last_error is not None and "550" in out.last_error
    assert out.provider_message_ids == []
