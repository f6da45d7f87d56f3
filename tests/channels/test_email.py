"""The email channel: parsing real-looking mail, the SMTP listener, the signed webhook, and sending.

Inbound SMTP is a real conversation (aiosmtplib client → our aiosmtpd listener); outbound goes through
aiosmtplib to ``FakeSmtpRelay``, a real aiosmtpd server on 127.0.0.1 with failure injection.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiosmtplib
import httpx
import pytest
from pydantic import SecretStr

from channels import email_structure
from channels.base import ChannelAdapter, InboundServer, WebhookRequest
from channels.email import EmailAdapter
from channels.email_parse import HeaderTrust, ParseContext, parse_email
from channels.email_send import reply_subject
from channels.email_structure import MAX_MIME_DEPTH, MAX_MIME_PARTS
from core.errors import BadRequest, PermanentDeliveryError, TransientDeliveryError, VerificationFailed
from core.messages import Address, InboundMessage, OutboundMessage
from core.pipeline.inbox import Accepted
from core.settings import EmailSettings
from identity.normalize import normalize_address
from tests.fakes.smtp_relay import FakeSmtpRelay

FIXTURES = Path(__file__).parent / "fixtures" / "email"
OURS = "support@threadline.example"
AUTHSERV = "mx.threadline.example"
KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
PASSWORD = "relay-password-do-not-leak"


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.eml").read_bytes()


def make_settings(**overrides: object) -> EmailSettings:
    values: dict[str, object] = {
        "address": f"Threadline Support <{OURS}>",
        "smtp_host": "127.0.0.1",
        "smtp_port": 1,
        "inbound_signing_key": SecretStr(KEY),
        "authserv_id": AUTHSERV,
        "smtp_listen": "127.0.0.1:0",
    }
    values.update(overrides)
    return EmailSettings.model_validate(values)


@pytest.fixture
def adapter() -> EmailAdapter:
    return EmailAdapter(make_settings(), normalize=normalize_address)


@pytest.fixture
def relay() -> Iterator[FakeSmtpRelay]:
    with FakeSmtpRelay() as fake:
        yield fake


@pytest.fixture
def sending(relay: FakeSmtpRelay) -> EmailAdapter:
    return EmailAdapter(make_settings(smtp_port=relay.port), normalize=normalize_address)


def context() -> ParseContext:
    return ParseContext(address=OURS, normalize=normalize_address, authserv_id=AUTHSERV)


def parse(
    raw: bytes, *, mail_from: str | None = "someone@example.com", trust: HeaderTrust = HeaderTrust.PROVIDER
) -> InboundMessage | None:
    return parse_email(raw, mail_from=mail_from, recipients=[OURS], context=context(), trust=trust)


# --- the Mailgun-style webhook: signing exactly as Mailgun does -------------------------------------


def signed_fields(
    *, timestamp: float | None = None, token: str | None = None, key: str = KEY
) -> dict[str, str]:
    ts = str(int(time.time() if timestamp is None else timestamp))
    tok = token or secrets.token_hex(25)  # Mailgun tokens are 50 characters
    sig = hmac.new(key.encode(), (ts + tok).encode(), hashlib.sha256).hexdigest()
    return {"timestamp": ts, "token": tok, "signature": sig}


def webhook(
    raw: bytes | None,
    *,
    fields: dict[str, str] | None = None,
    multipart: bool = False,
    sender: str | None = "ana.souza@example.com",
) -> WebhookRequest:
    """A Mailgun forward-with-MIME POST, encoded by httpx like a real client would."""
    data = dict(signed_fields() if fields is None else fields)
    data["recipient"] = OURS
    if sender is not None:
        data["sender"] = sender
    if raw is not None:
        data["body-mime"] = raw.decode("utf-8")
    files = {"attachment-1": ("note.txt", b"an attachment", "text/plain")} if multipart else None
    request = httpx.Request("POST", "http://127.0.0.1/webhooks/email/inbound", data=data, files=files)
    return WebhookRequest(
        method="POST",
        path="/webhooks/email/inbound",
        query_string="",
        headers={k.lower(): v for k, v in request.headers.items()},
        body=request.read(),
    )


async def test_adapter_implements_both_protocols(adapter: EmailAdapter) -> None:
    assert isinstance(adapter, ChannelAdapter)
    assert isinstance(adapter, InboundServer)
    assert adapter.name == "email"
    assert adapter.max_body_bytes == 10 * 1024 * 1024


async def test_gmail_reply_parses_to_the_new_text_only(adapter: EmailAdapter) -> None:
    request = webhook(fixture("gmail_reply"))
    await adapter.verify(request)
    parsed = await adapter.parse(request)
    assert parsed.reply.status == 200
    [message] = parsed.messages
    assert message.channel == "email"
    assert message.sender == Address(channel="email", handle="ana.souza@example.com")
    assert message.text == (
        "Hi,\n\nYes, it was charged on both the 1st and the 2nd. Could you refund the second charge?"
    )
    mid = "<CAJx7Qm8vZ1+0bW=Yk3pPq2gLJ4cN3wTzX5sQ@mail.gmail.com>"
    assert message.provider_message_id == f"{mid}|{OURS}"
    assert message.reply_target == {
        "message_id": mid,
        "references": [
            "<20250301101500.1234.abcd@threadline.example>",
            "<20250303091400.5678.efgh@threadline.example>",
        ],
        "subject": "Re: Invoice 4411 charged twice",
        "to": "ana.souza@example.com",
    }
    assert message.extras["thread_id"] == "<20250301101500.1234.abcd@threadline.example>"
    assert "wrote:" in message.extras["raw_mime"]  # the whole message is kept for audit
    assert message.extras["sender_authenticated"] is False


async def test_outlook_reply_over_multipart_form(adapter: EmailAdapter) -> None:
    request = webhook(fixture("outlook_reply"), multipart=True, sender="bruno.keller@contoso.example")
    assert request.headers["content-type"].startswith("multipart/form-data")
    await adapter.verify(request)
    [message] = (await adapter.parse(request)).messages
    assert (
        message.text == 'The parcel still shows "label created" since Friday. Can you check with the carrier?'
    )
    assert message.sender.handle == "bruno.keller@contoso.example"
    assert message.reply_target["references"] == ["<20250303160000.1111.aaaa@threadline.example>"]
    assert message.extras["thread_id"] == "<20250303160000.1111.aaaa@threadline.example>"


def test_html_only_mail_is_rendered_as_text() -> None:
    message = parse(fixture("html_only"))
    assert message is not None
    assert message.text == (
        'Hello,\n\nthe password reset link says "expired" every time – I tried 3 times.\n\n'
        "- Browser: Firefox\n- Account: dmitri@example.net"
    )
    assert message.reply_target["subject"] == "Cannot log in – password reset"
    assert "track()" not in message.text and "color" not in message.text


def test_reply_stripping_that_leaves_nothing_keeps_the_original() -> None:
    raw = (
        b"From: ana.souza@example.com\r\nTo: support@threadline.example\r\nMessage-ID: <x1@example.com>\r\n"
        b"Subject: hi\r\n\r\nBest regards,\r\nAna\r\n"
    )
    message = parse(raw)
    assert message is not None
    assert message.text == "Best regards,\nAna"


@pytest.mark.parametrize(
    ("name", "mail_from"),
    [
        ("auto_reply", "carla@example.org"),
        ("mailing_list", "announce-bounces@lists.example.net"),
        ("bounce", "<>"),
        ("own_x_loop", "helpdesk@partner.example"),
    ],
)
async def test_noise_fixtures_are_dropped(adapter: EmailAdapter, name: str, mail_from: str) -> None:
    assert parse(fixture(name), mail_from=mail_from) is None
    request = webhook(fixture(name), sender=mail_from)
    await adapter.verify(request)
    parsed = await adapter.parse(request)
    assert parsed.messages == []
    assert parsed.reply.status == 200


PLAIN = (
    "From: {sender}\r\nTo: support@threadline.example\r\nSubject: hello\r\n"
    "Message-ID: <n1@example.com>\r\n{extra}\r\nPlease help with my order.\r\n"
)


@pytest.mark.parametrize(
    ("sender", "extra", "mail_from"),
    [
        ("ana@example.com", "Precedence: bulk\r\n", "ana@example.com"),
        ("ana@example.com", "Precedence: junk\r\n", "ana@example.com"),
        ("ana@example.com", "Auto-Submitted: auto-generated\r\n", "ana@example.com"),
        ("ana@example.com", "List-Unsubscribe: <mailto:x@example.com>\r\n", "ana@example.com"),
        ("ana@example.com", "", "<>"),
        ("ana@example.com", "", ""),
        ("ana@example.com", "Return-Path: <>\r\n", None),
        ("MAILER-DAEMON@example.com", "", "ana@example.com"),
        ("postmaster@example.com", "", "ana@example.com"),
        ("noreply@shop.example", "", "bounce@shop.example"),
        ("no-reply@shop.example", "", "bounce@shop.example"),
        ("Support@Threadline.Example", "", "ana@example.com"),
        ("ana@example.com", "X-Loop: <support@threadline.example>\r\n", "ana@example.com"),
    ],
)
def test_noise_rules(sender: str, extra: str, mail_from: str | None) -> None:
    raw = PLAIN.format(sender=sender, extra=extra).encode()
    assert parse(raw, mail_from=mail_from) is None


def test_auto_submitted_no_and_foreign_x_loop_are_answered() -> None:
    raw = PLAIN.format(
        sender="ana@example.com", extra="Auto-Submitted: no\r\nX-Loop: helpdesk@partner.example\r\n"
    ).encode()
    message = parse(raw)
    assert message is not None and message.text == "Please help with my order."


def test_dmarc_pass_from_our_authserv_id_authenticates_the_sender() -> None:
    message = parse(fixture("dmarc_pass"))
    assert message is not None
    assert message.extras["sender_authenticated"] is True


def test_forged_authentication_results_from_another_authserv_id_is_ignored() -> None:
    message = parse(fixture("forged_auth"))
    assert message is not None
    assert message.extras["sender_authenticated"] is False


@pytest.mark.parametrize(
    "headers",
    [
        # our id, but DMARC passed for another domain than From
        f"Authentication-Results: {AUTHSERV}; dmarc=pass header.from=other.example\r\n",
        # our id, DMARC failed
        f"Authentication-Results: {AUTHSERV}; dmarc=fail header.from=example.com\r\n",
        # our MTA's own (topmost) header says fail; a pass lower down was written by the sender
        f"Authentication-Results: {AUTHSERV}; dmarc=fail header.from=example.com\r\n"
        f"Authentication-Results: {AUTHSERV}; dmarc=pass header.from=example.com\r\n",
        # unreadable
        f"Authentication-Results: {AUTHSERV}; ;; ==\r\n",
    ],
)
def test_dmarc_pass_must_be_ours_aligned_and_topmost(headers: str) -> None:
    raw = PLAIN.format(sender="ana@example.com", extra=headers).encode()
    message = parse(raw)
    assert message is not None and message.extras["sender_authenticated"] is False


FORGED_PASS = f"Authentication-Results: {AUTHSERV}; dmarc=pass header.from=example.com\r\n"
PROVIDER_TRACE = "Received: from attacker.example ([203.0.113.66]) by mx.provider.example; 1 Dec 2026\r\n"


@pytest.mark.parametrize(
    "headers",
    [
        # the attack: the sender writes our id into its own headers, below the provider's trace
        PROVIDER_TRACE + FORGED_PASS,
        # ... or the provider adds no trace at all: nothing can be told apart from the sender's own
        FORGED_PASS,
        # the provider's own field says fail; the sender's pass below the trace is discarded
        f"Authentication-Results: {AUTHSERV}; dmarc=fail header.from=example.com\r\n"
        + PROVIDER_TRACE
        + FORGED_PASS,
    ],
)
def test_webhook_trusts_no_authentication_results_written_by_the_sender(headers: str) -> None:
    raw = PLAIN.format(sender="ana@example.com", extra=headers).encode()
    message = parse(raw, trust=HeaderTrust.PROVIDER)
    assert message is not None and message.extras["sender_authenticated"] is False


def test_webhook_trusts_the_providers_field_above_its_trace() -> None:
    raw = PLAIN.format(sender="ana@example.com", extra=FORGED_PASS + PROVIDER_TRACE)
    message = parse(raw.encode(), trust=HeaderTrust.PROVIDER)
    assert message is not None and message.extras["sender_authenticated"] is True


def test_listener_from_an_untrusted_peer_trusts_no_authentication_results() -> None:
    # our listener is the border and checks nothing itself: a field naming us was written by the sender
    message = parse(fixture("dmarc_pass"), trust=HeaderTrust.NONE)
    assert message is not None and message.extras["sender_authenticated"] is False
    relayed = parse(fixture("dmarc_pass"), trust=HeaderTrust.RELAY)
    assert relayed is not None and relayed.extras["sender_authenticated"] is True


def test_without_an_authserv_id_nothing_is_trusted() -> None:
    ctx = ParseContext(address=OURS, normalize=normalize_address, authserv_id=None)
    message = parse_email(
        fixture("dmarc_pass"),
        mail_from="a@example.com",
        recipients=[OURS],
        context=ctx,
        trust=HeaderTrust.RELAY,
    )
    assert message is not None and message.extras["sender_authenticated"] is False


def test_message_without_message_id_gets_a_stable_hash_id() -> None:
    raw = b"From: ana@example.com\r\nTo: support@threadline.example\r\nSubject: x\r\n\r\nHello there\r\n"
    first, again = parse(raw), parse(raw)
    other = parse(raw.replace(b"Hello", b"Hi"))
    assert first is not None and again is not None and other is not None
    assert first.provider_message_id == again.provider_message_id
    assert first.provider_message_id != other.provider_message_id
    assert first.provider_message_id.endswith(f"|{OURS}")
    assert first.reply_target["message_id"] is None


def test_unreadable_mail_is_a_bad_request() -> None:
    with pytest.raises(BadRequest) as caught:
        parse(b"this is not an email at all")
    assert caught.value.status == 422


def nested_mail(depth: int, *, kind: str = "multipart") -> bytes:
    """A message whose text sits ``depth`` multiparts (or enclosed messages) deep."""
    head = "From: ana@example.com\r\nTo: support@threadline.example\r\nMessage-ID: <deep@example.com>\r\n"
    if kind == "multipart":
        opening = "".join(
            f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(depth)
        )
        closing = "".join(f"\r\n--b{i}--\r\n" for i in reversed(range(depth)))
    else:
        opening, closing = "Content-Type: message/rfc822\r\n\r\n" * depth, ""
    return f"{head}MIME-Version: 1.0\r\n{opening}Content-Type: text/plain\r\n\r\nhello\r\n{closing}".encode()


@pytest.mark.parametrize("kind", ["multipart", "message"])
def test_mail_nested_3000_levels_deep_is_refused_for_good(kind: str) -> None:
    # the standard library's parser recursed into RecursionError here, which the listener answered 451
    with pytest.raises(BadRequest) as caught:
        parse(nested_mail(3_000, kind=kind))
    assert caught.value.status == 422


@pytest.mark.parametrize("kind", ["multipart", "message"])
def test_mail_nested_as_deep_as_allowed_is_read(kind: str) -> None:
    message = parse(nested_mail(MAX_MIME_DEPTH - 1, kind=kind))
    assert message is not None
    if kind == "multipart":
        assert message.text == "hello"


def test_a_recursion_error_the_structure_check_missed_is_a_bad_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(email_structure, "MAX_MIME_DEPTH", 1_000_000)  # as if the check could be fooled
    with pytest.raises(BadRequest) as caught:
        parse(nested_mail(3_000))
    assert caught.value.status == 422


def test_mail_with_too_many_parts_is_refused() -> None:
    parts = "".join("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(MAX_MIME_PARTS + 1))
    raw = PLAIN.format(
        sender="ana@example.com", extra=f'Content-Type: multipart/mixed; boundary="b"\r\n\r\n{parts}--b--'
    ).encode()
    with pytest.raises(BadRequest) as caught:
        parse(raw)
    assert caught.value.status == 422


def test_overlong_header_fields_are_cut_and_the_mail_still_read() -> None:
    # each of these took seconds to parse at 16 KB (quadratic), so a 10 MiB header took hours
    extra = (
        "Sender: " + '"a' * 8_000 + "\r\n" + "Content-Type: text/plain; charset=utf-8" + ";" * 16_000 + "\r\n"
    )
    message = parse(PLAIN.format(sender="ana@example.com", extra=extra).encode())
    assert message is not None and message.text == "Please help with my order."
    assert message.sender.handle == "ana@example.com"


# --- webhook verification ---------------------------------------------------------------------------


async def test_verify_accepts_a_good_signature(adapter: EmailAdapter) -> None:
    await adapter.verify(webhook(fixture("gmail_reply")))


@pytest.mark.parametrize("missing", ["timestamp", "token", "signature"])
async def test_verify_missing_field_is_401(adapter: EmailAdapter, missing: str) -> None:
    fields = signed_fields()
    del fields[missing]
    with pytest.raises(VerificationFailed) as caught:
        await adapter.verify(webhook(fixture("gmail_reply"), fields=fields))
    assert caught.value.status == 401


async def test_verify_wrong_signature_is_403(adapter: EmailAdapter) -> None:
    fields = signed_fields(key="not-the-key")
    with pytest.raises(VerificationFailed) as caught:
        await adapter.verify(webhook(fixture("gmail_reply"), fields=fields))
    assert caught.value.status == 403


@pytest.mark.parametrize("offset", [-301, -3600, 3600])
async def test_verify_stale_timestamp_is_403(adapter: EmailAdapter, offset: int) -> None:
    fields = signed_fields(timestamp=time.time() + offset)
    with pytest.raises(VerificationFailed) as caught:
        await adapter.verify(webhook(fixture("gmail_reply"), fields=fields))
    assert caught.value.status == 403


@pytest.mark.parametrize("timestamp", ["nan", "inf", "-inf"])
async def test_verify_a_signed_timestamp_that_is_not_a_time_is_403(
    adapter: EmailAdapter, timestamp: str
) -> None:
    token = secrets.token_hex(25)
    signature = hmac.new(KEY.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    fields = {"timestamp": timestamp, "token": token, "signature": signature}
    with pytest.raises(VerificationFailed) as caught:
        await adapter.verify(webhook(fixture("gmail_reply"), fields=fields))
    assert caught.value.status == 403


async def test_verify_reused_token_is_403(adapter: EmailAdapter) -> None:
    fields = signed_fields()
    await adapter.verify(webhook(fixture("gmail_reply"), fields=fields))
    with pytest.raises(VerificationFailed) as caught:
        await adapter.verify(webhook(fixture("gmail_reply"), fields=fields))
    assert caught.value.status == 403


async def test_verify_without_a_signing_key_refuses_everything() -> None:
    adapter = EmailAdapter(make_settings(inbound_signing_key=None), normalize=normalize_address)
    with pytest.raises(VerificationFailed) as caught:
        await adapter.verify(webhook(fixture("gmail_reply")))
    assert caught.value.status == 403


async def test_verify_unreadable_body_is_401(adapter: EmailAdapter) -> None:
    request = WebhookRequest(
        method="POST", path="/", query_string="", headers={"content-type": "application/json"}, body=b"{}"
    )
    with pytest.raises(VerificationFailed) as caught:
        await adapter.verify(request)
    assert caught.value.status == 401


async def test_garbled_bodies_are_bad_requests(adapter: EmailAdapter) -> None:
    no_mime = webhook(None)
    await adapter.verify(no_mime)
    with pytest.raises(BadRequest) as caught:
        await adapter.parse(no_mime)
    assert caught.value.status == 422

    garbage_mime = webhook(b"\x00\x01 garbage, no headers")
    await adapter.verify(garbage_mime)
    with pytest.raises(BadRequest):
        await adapter.parse(garbage_mime)

    good = webhook(fixture("gmail_reply"), multipart=True)
    truncated = WebhookRequest(
        method="POST", path="/", query_string="", headers=good.headers, body=good.body[: len(good.body) // 2]
    )
    with pytest.raises(BadRequest):
        await adapter.parse(truncated)

    wrong_type = WebhookRequest(
        method="POST", path="/", query_string="", headers={"content-type": "text/plain"}, body=b"hi"
    )
    with pytest.raises(BadRequest):
        await adapter.parse(wrong_type)


# --- the SMTP listener: a real SMTP conversation ----------------------------------------------------


class Committer:
    """The ``accept`` the app passes: records, can block until released, can fail."""

    def __init__(self) -> None:
        self.messages: list[InboundMessage] = []
        self.called = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()
        self.error: Exception | None = None

    async def __call__(self, message: InboundMessage) -> Accepted:
        self.messages.append(message)
        self.called.set()
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return Accepted(inbox_id=len(self.messages), duplicate=False)


@pytest.fixture
async def listening(adapter: EmailAdapter) -> AsyncIterator[tuple[EmailAdapter, Committer]]:
    committer = Committer()
    await adapter.start_inbound(committer)
    try:
        yield adapter, committer
    finally:
        await adapter.stop_inbound()


async def smtp_send(
    port: int | None, raw: bytes, *, sender: str = "ana.souza@example.com", to: str = OURS
) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
    assert port is not None
    # SMTP.sendmail, not aiosmtplib.send: a bounce's null reverse-path (``MAIL FROM:<>``) is refused by send()
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=port, start_tls=False, local_hostname="client.test", timeout=30
    )
    async with client:
        return await client.sendmail(sender, [to], raw)


async def test_smtp_answers_250_only_after_accept_returned(
    listening: tuple[EmailAdapter, Committer],
) -> None:
    adapter, committer = listening
    committer.release.clear()
    task = asyncio.create_task(smtp_send(adapter.smtp_port, fixture("gmail_reply")))
    await asyncio.wait_for(committer.called.wait(), 30)
    for _ in range(20):
        await asyncio.sleep(0)
    assert not task.done()  # the message is being committed: no 250 yet
    committer.release.set()
    errors, response = await task
    assert errors == {} and response.startswith("2.0.0 OK")
    [message] = committer.messages
    assert message.text.startswith("Hi,\n\nYes, it was charged")
    assert message.provider_message_id.endswith(f"|{OURS}")


async def test_smtp_accept_failing_answers_451(listening: tuple[EmailAdapter, Committer]) -> None:
    adapter, committer = listening
    committer.error = RuntimeError("database is down")
    with pytest.raises(aiosmtplib.SMTPDataError) as caught:
        await smtp_send(adapter.smtp_port, fixture("gmail_reply"))
    assert caught.value.code == 451
    assert len(committer.messages) == 1  # it was tried, and the sender will retry


@pytest.mark.parametrize("name", ["auto_reply", "mailing_list", "own_x_loop"])
async def test_smtp_noise_is_accepted_but_never_committed(
    listening: tuple[EmailAdapter, Committer], name: str
) -> None:
    adapter, committer = listening
    errors, response = await smtp_send(adapter.smtp_port, fixture(name))
    assert errors == {} and response.startswith("2.0.0 OK")
    assert committer.messages == []


async def test_smtp_null_sender_bounce_is_accepted_but_never_committed(
    listening: tuple[EmailAdapter, Committer],
) -> None:
    adapter, committer = listening
    errors, _ = await smtp_send(adapter.smtp_port, fixture("bounce"), sender="")
    assert errors == {}
    assert committer.messages == []


async def test_smtp_refuses_other_recipients(listening: tuple[EmailAdapter, Committer]) -> None:
    adapter, committer = listening
    for to in ("someone@threadline.example", "victim@elsewhere.example"):
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as caught:
            await smtp_send(adapter.smtp_port, fixture("gmail_reply"), to=to)
        assert [r.code for r in caught.value.recipients] == [550]
    assert committer.messages == []


async def test_smtp_unreadable_mail_is_refused(listening: tuple[EmailAdapter, Committer]) -> None:
    adapter, committer = listening
    with pytest.raises(aiosmtplib.SMTPDataError) as caught:
        await smtp_send(adapter.smtp_port, b"Subject: no sender at all\r\n\r\nhello\r\n")
    assert caught.value.code == 550
    assert committer.messages == []


async def test_smtp_oversized_mail_is_552() -> None:
    adapter = EmailAdapter(make_settings(), normalize=normalize_address)
    adapter.max_body_bytes = 4096  # the same code path as 10 MiB, without pushing 10 MiB through a test
    committer = Committer()
    await adapter.start_inbound(committer)
    try:
        big = fixture("gmail_reply") + b"x" * 200 + b"\r\n" + (b"y" * 70 + b"\r\n") * 100
        with pytest.raises(aiosmtplib.SMTPResponseException) as caught:
            await smtp_send(adapter.smtp_port, big)
        assert caught.value.code == 552
    finally:
        await adapter.stop_inbound()
    assert committer.messages == []


async def test_no_listen_setting_starts_nothing() -> None:
    adapter = EmailAdapter(make_settings(smtp_listen=None), normalize=normalize_address)
    await adapter.start_inbound(Committer())
    assert adapter.smtp_port is None
    await adapter.stop_inbound()


# --- sending ------------------------------------------------------------------------------------------


def reply_to(
    message: InboundMessage, text: str = "We have refunded the second charge.", key: str = "k1"
) -> OutboundMessage:
    return OutboundMessage(
        channel="email",
        recipient=message.sender,
        text=text,
        idempotency_key=key,
        reply_target=message.reply_target,
    )


def inbound(name: str) -> InboundMessage:
    message = parse(fixture(name))
    assert message is not None
    return message


async def test_send_threads_the_reply_with_loop_headers(sending: EmailAdapter, relay: FakeSmtpRelay) -> None:
    parent = inbound("gmail_reply")
    delivery = await sending.send(reply_to(parent))
    [sent] = relay.messages
    msg = sent.message
    assert sent.mail_from == OURS and sent.rcpt_tos == ("ana.souza@example.com",)
    assert msg["From"].addresses[0].addr_spec == OURS
    assert msg["To"] == "ana.souza@example.com"
    assert msg["Subject"] == "Re: Invoice 4411 charged twice"
    parent_id = "<CAJx7Qm8vZ1+0bW=Yk3pPq2gLJ4cN3wTzX5sQ@mail.gmail.com>"
    assert msg["In-Reply-To"] == parent_id
    assert str(msg["References"]).split() == [
        "<20250301101500.1234.abcd@threadline.example>",
        "<20250303091400.5678.efgh@threadline.example>",
        parent_id,
    ]
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["X-Loop"] == OURS
    assert msg["Date"] is not None
    assert str(msg["Message-ID"]).endswith("@threadline.example>")
    assert delivery.provider_message_ids == (str(msg["Message-ID"]),)
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None and body.get_content().strip() == "We have refunded the second charge."


async def test_send_does_not_stack_re(sending: EmailAdapter, relay: FakeSmtpRelay) -> None:
    await sending.send(reply_to(inbound("outlook_reply")))
    assert relay.messages[0].message["Subject"] == "Re: Order 7781 status"
    assert reply_subject("Re: RE: re[2]: Fwd: x") == "Re: Fwd: x"
    assert reply_subject("") == "Re: your message"


async def test_send_long_text_is_one_message(sending: EmailAdapter, relay: FakeSmtpRelay) -> None:
    text = "\n".join(f"Line {i}: " + "details " * 12 for i in range(400))
    await sending.send(reply_to(inbound("gmail_reply"), text=text))
    [sent] = relay.messages
    body = sent.message.get_body(preferencelist=("plain",))
    assert body is not None and body.get_content().strip() == text.strip()


async def test_send_message_id_is_stable_per_idempotency_key(
    sending: EmailAdapter, relay: FakeSmtpRelay
) -> None:
    parent = inbound("gmail_reply")
    first = await sending.send(reply_to(parent, key="same"))
    again = await sending.send(reply_to(parent, key="same"))
    other = await sending.send(reply_to(parent, key="other"))
    assert first.provider_message_ids == again.provider_message_ids != other.provider_message_ids


async def test_send_with_part_already_sent_sends_nothing(sending: EmailAdapter, relay: FakeSmtpRelay) -> None:
    message = reply_to(inbound("gmail_reply"))
    done = OutboundMessage(
        channel="email",
        recipient=message.recipient,
        text=message.text,
        idempotency_key=message.idempotency_key,
        reply_target=message.reply_target,
        parts_sent=1,
    )
    delivery = await sending.send(done)
    assert relay.messages == []
    assert delivery.provider_message_ids == (await sending.send(message)).provider_message_ids


@pytest.mark.parametrize(("code", "stage"), [(451, "DATA"), (421, "MAIL"), (452, "RCPT")])
async def test_send_4xx_is_transient(
    sending: EmailAdapter, relay: FakeSmtpRelay, code: int, stage: str
) -> None:
    relay.fail_next(code, stage=stage)  # type: ignore[arg-type]
    with pytest.raises(TransientDeliveryError):
        await sending.send(reply_to(inbound("gmail_reply")))
    assert relay.messages == []
    await sending.send(reply_to(inbound("gmail_reply")))  # the next attempt goes through
    assert len(relay.messages) == 1


@pytest.mark.parametrize(("code", "stage"), [(550, "RCPT"), (554, "DATA"), (553, "MAIL")])
async def test_send_5xx_is_permanent(
    sending: EmailAdapter, relay: FakeSmtpRelay, code: int, stage: str
) -> None:
    relay.fail_next(code, stage=stage)  # type: ignore[arg-type]
    with pytest.raises(PermanentDeliveryError) as caught:
        await sending.send(reply_to(inbound("gmail_reply")))
    assert "ana.souza" not in str(caught.value)  # errors name codes, never addresses
    assert relay.messages == []


async def test_send_unreachable_relay_is_transient(relay: FakeSmtpRelay) -> None:
    port = relay.port
    relay.stop()
    adapter = EmailAdapter(make_settings(smtp_port=port), normalize=normalize_address)
    with pytest.raises(TransientDeliveryError):
        await adapter.send(reply_to(inbound("gmail_reply")))


async def test_reply_cap_per_recipient(relay: FakeSmtpRelay) -> None:
    adapter = EmailAdapter(
        make_settings(smtp_port=relay.port, max_replies_per_hour=2), normalize=normalize_address
    )
    parent = inbound("gmail_reply")
    relay.fail_next(451)  # a failed attempt does not use up the cap
    with pytest.raises(TransientDeliveryError):
        await adapter.send(reply_to(parent, key="r0"))
    await adapter.send(reply_to(parent, key="r1"))
    await adapter.send(reply_to(parent, key="r2"))
    with pytest.raises(PermanentDeliveryError):
        await adapter.send(reply_to(parent, key="r3"))
    assert len(relay.messages) == 2
    await adapter.send(reply_to(inbound("outlook_reply"), key="r4"))  # another recipient is not capped
    assert len(relay.messages) == 3


async def test_no_secret_in_repr() -> None:
    adapter = EmailAdapter(make_settings(smtp_password=SecretStr(PASSWORD)), normalize=normalize_address)
    text = repr(adapter)
    assert PASSWORD not in text and KEY not in text and OURS not in text
