"""Fuzzing inbound email: the signed inbound-parse webhook and the app's own SMTP listener.

The webhook gets mutated fixture mails in ``body-mime`` with random extra form fields, freshly signed
(Mailgun: hex HMAC-SHA256 of ``timestamp`` + ``token``) or not, as multipart or urlencoded, sometimes
with the whole body damaged. The SMTP listener gets the same mutated mails through aiosmtplib; its only
refusals may be the ones the adapter documents (550 unreadable or not our recipient, 552 too big) and
aiosmtpd's RFC 5321 line-length limit (500), never 451 (that would mean the parser crashed), and a
refused mail never leaves an inbox row.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import time
import urllib.parse
from collections.abc import AsyncIterator

import aiosmtplib
import httpx
import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from channels.email import MAX_BODY_BYTES, EmailAdapter
from channels.email_parse import HeaderTrust, ParseContext, parse_email
from core.errors import BadRequest
from core.messages import Assurance, ReplyPolicy
from core.settings import EmailSettings
from identity.normalize import normalize_address
from tests.apphost import Served, app_settings, serving
from tests.fakes.smtp_relay import FakeSmtpRelay
from tests.fuzz.conftest import budget, clean_environment, record
from tests.fuzz.mutators import mutated_bytes, mutated_mime, wrong_content_type
from tests.fuzz.probe import FIXTURES, probe

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.serial]

OURS = "support@threadline.example"
AUTHSERV = "mx.threadline.example"
PROVIDER_TRACE = b"Received: from unknown ([203.0.113.66]) by mx.provider.example; 1 Dec 2026\r\n"
KEY = "key-fuzz-0a1b2c3d4e5f60718293a4b5"
PATH = "/webhooks/email/inbound"
SEEDS = [p.read_bytes() for p in sorted((FIXTURES / "email").glob("*.eml"))]
LONG_SENDER = "x" * 300 + "@e.com"
SENDERS = st.sampled_from(
    ["ana.souza@example.com", "", "<>", "MAILER-DAEMON@example.com", "a@b", "nobody", OURS, LONG_SENDER]
)
RECIPIENTS = st.sampled_from([OURS, OURS.upper(), "other@threadline.example", "", "postmaster"])
SMTP_REFUSALS = {
    500: "aiosmtpd: line longer than RFC 5321 allows",
    550: "unreadable, or not our recipient",
    552: "over the size limit",
}
_tokens = itertools.count()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    folder = tmp_path_factory.mktemp("email-fuzz")
    async with FakeSmtpRelay() as relay:
        email = EmailSettings(
            address=f"Threadline Support <{OURS}>",
            smtp_host="127.0.0.1",
            smtp_port=relay.port,
            inbound_signing_key=SecretStr(KEY),
            smtp_listen="127.0.0.1:0",
            authserv_id=AUTHSERV,  # the fixtures and mutations carry Authentication-Results naming it
        )
        with clean_environment(folder):
            settings = app_settings(folder / "data", email=email)
        async with serving(settings) as app:
            yield app


# ----- the webhook ----------------------------------------------------------------------------------


def signature_fields(how: str) -> dict[str, bytes]:
    """``timestamp`` / ``token`` / ``signature`` for ``how`` (a new token each time: no accidental replay)."""
    if how == "none":
        return {}
    now = time.time()
    stamp = str(int(now - 3600 if how == "stale" else now))
    token = f"fuzz-{time.time_ns()}-{next(_tokens)}"
    key = b"not-the-key" if how == "wrong_key" else KEY.encode()
    digest = hmac.new(key, (stamp + token).encode(), hashlib.sha256).hexdigest()
    return {"timestamp": stamp.encode(), "token": token.encode(), "signature": digest.encode()}


def encode(fields: list[tuple[str, bytes]], as_multipart: bool) -> tuple[bytes, str]:
    if not as_multipart:
        body = "&".join(f"{urllib.parse.quote_plus(k)}={urllib.parse.quote_plus(v)}" for k, v in fields)
        return body.encode(), "application/x-www-form-urlencoded"
    files = [(name, (None, value)) for name, value in fields]
    request = httpx.Request("POST", "http://127.0.0.1" + PATH, files=files)
    return request.read(), request.headers["content-type"]


@budget(200)
@given(
    mime=mutated_mime(SEEDS),
    sender=SENDERS,
    recipient=RECIPIENTS,
    extra=st.lists(
        st.tuples(st.text(min_size=1, max_size=12), st.binary(max_size=40)), max_size=3
    ),  # random form fields
    how=st.sampled_from(["valid", "valid", "valid", "valid", "none", "stale", "wrong_key"]),
    as_multipart=st.booleans(),
    damage=st.integers(0, 3).map(lambda n: n == 0),
    wrong_type=st.one_of(st.none(), st.none(), st.none(), wrong_content_type),
    data=st.data(),
)
async def test_email_webhook_never_fails_and_never_stores_what_it_refuses(
    served: Served,
    mime: bytes,
    sender: str,
    recipient: str,
    extra: list[tuple[str, bytes]],
    how: str,
    as_multipart: bool,
    damage: bool,
    wrong_type: bytes | None,
    data: st.DataObject,
) -> None:
    fields = [
        *signature_fields(how).items(),
        ("recipient", recipient.encode()),
        ("sender", sender.encode()),
        *extra,
        ("body-mime", mime),
    ]
    body, ctype = encode(fields, as_multipart)
    authentic: bool | None = how == "valid"
    if damage:
        body = data.draw(mutated_bytes(body), label="damaged body")
        authentic = None if authentic else False
    headers = {"content-type": wrong_type if wrong_type is not None else ctype.encode()}
    if wrong_type is not None and authentic:
        authentic = None  # a wrong content type can still decode the same fields
    await probe(served, "email /inbound (webhook)", PATH, content=body, headers=headers, authentic=authentic)


# ----- the SMTP listener ----------------------------------------------------------------------------


async def smtp_exchange(served: Served, sender: str, recipients: list[str], raw: bytes) -> int:
    """One SMTP transaction; the code of the final answer (MAIL, RCPT or DATA, whichever refused)."""
    adapter = served.app.state.adapters["email"]
    assert isinstance(adapter, EmailAdapter) and adapter.smtp_port is not None
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=adapter.smtp_port, start_tls=False, local_hostname="mx.test", timeout=30
    )
    async with client:
        try:
            await client.mail(sender)
            refused: int | None = None
            accepted = 0
            for recipient in recipients:
                try:
                    await client.rcpt(recipient)
                    accepted += 1
                except aiosmtplib.SMTPResponseException as exc:
                    refused = exc.code
            if not accepted:
                return refused or 554
            answer = await client.data(raw)
        except aiosmtplib.SMTPResponseException as exc:
            return exc.code
    return answer.code


async def deliver_and_check(
    served: Served, target: str, sender: str, recipients: list[str], raw: bytes
) -> int:
    before = await served.inbox_rows()
    code = await smtp_exchange(served, sender, recipients, raw)
    record(target, code)
    assert code == 250 or code in SMTP_REFUSALS, f"{target}: SMTP {code} for {raw[:300]!r}"
    if code != 250:
        assert await served.inbox_rows() == before, f"{target}: a refused ({code}) mail stored a row"
    return code


@budget(200)
@given(
    mime=mutated_mime(SEEDS),
    sender=SENDERS,
    recipients=st.lists(RECIPIENTS.filter(bool), min_size=1, max_size=3),
)
async def test_smtp_listener_answers_only_documented_refusals_and_stores_nothing_it_refuses(
    served: Served, mime: bytes, sender: str, recipients: list[str]
) -> None:
    envelope_sender = "" if sender == "<>" else sender  # aiosmtplib writes the null sender for ""
    await deliver_and_check(served, "email SMTP listener", envelope_sender, recipients, mime)


@budget(300)
@given(mime=mutated_mime(SEEDS), trust=st.sampled_from([HeaderTrust.NONE, HeaderTrust.PROVIDER]))
async def test_nothing_a_sender_writes_authenticates_the_sender(mime: bytes, trust: HeaderTrust) -> None:
    """Whatever headers a sender writes (our authserv-id saying dmarc=pass included, in any order, folded,
    duplicated), a mail through our listener from a stranger, or below the provider's trace, is never
    authenticated: no Authentication-Results the sender wrote is trusted."""
    raw = PROVIDER_TRACE + mime if trust is HeaderTrust.PROVIDER else mime
    context = ParseContext(address=OURS, normalize=normalize_address, authserv_id=AUTHSERV)
    try:
        message = parse_email(raw, mail_from="a@example.com", recipients=[OURS], context=context, trust=trust)
    except BadRequest:
        record("email parse (sender-written headers)", 422)
        return
    record("email parse (sender-written headers)", 200)
    if message is not None:
        assert message.extras["sender_authenticated"] is False
        assert message.sender_assurance is Assurance.UNVERIFIED
        assert message.reply_policy is ReplyPolicy.ACKNOWLEDGE


async def test_smtp_listener_refuses_a_mail_over_the_size_limit_with_552(served: Served) -> None:
    head, _, _ = SEEDS[0].partition(b"\r\n\r\n")
    huge = head + b"\r\n\r\n" + (b"x" * 998 + b"\r\n") * (MAX_BODY_BYTES // 1000 + 16)
    code = await deliver_and_check(served, "email SMTP listener (huge)", "ana@example.com", [OURS], huge)
    assert code == 552
