"""No personal data in logs: a full multi-channel run logs ids only.

Every log record of a run is captured (the root at DEBUG, the third-party loggers in
``core.logs.QUIET_LOGGERS`` at WARNING, as ``threadline serve`` sets them): customers write on SMS,
Telegram, Slack and email, one of them proves an email address with a one-time code (an identity
link), memories are written and recalled, and replies go out. No message body, phone number, email
address or code of the run may appear in any line, in any common spelling.

uvicorn's access log too: admin calls that carry a handle in their query string are logged with the
path only (``?…``), by the filter ``core.logs`` installs (the app installs it, and ``setup_logging``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import quote

import pytest
from pydantic import SecretStr

from core.logs import ACCESS_LOGGER, QUIET_LOGGERS, HideQueryStrings, setup_logging
from core.messages import Address, Assurance, InboundMessage
from tests.apphost import app_settings, serving
from tests.core.harness import make_settings, running_hub
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.recording import RecordingSender

PHONE = "+15551230000"
OTHER_PHONE = "+447700900123"  # mentioned in a message, never a sender
EMAIL = "ana.lopez@example.com"
OTHER_EMAIL = "billing.team@acme-corp.example"  # mentioned in a message

SMS = Address(channel="sms", handle=PHONE)
TELEGRAM = Address(channel="telegram", handle="777000111")
SLACK = Address(channel="slack", handle="T0123ABC:U0456DEF")
MAIL = Address(channel="email", handle=EMAIL)

BODIES = {
    SMS: [
        "Hi, I was charged twice for the March invoice, 49.99 each time. Call me on +1 555 123 0000",
        "Still waiting on the double charge refund",
    ],
    TELEGRAM: [
        "hello, the router keeps dropping the wifi every evening",
        "this is Ana, my email is Ana.Lopez@Example.com",
        # the code goes here (read from the email that carries it)
        "what happened with my router and my bill?",
    ],
    SLACK: [
        f"our finance contact is {OTHER_EMAIL}, please cc them on the refund",
        "my colleague's number is +44 7700 900123 if you need it",
    ],
    MAIL: [
        "Dear support,\n\nThe export button on the dashboard greys out since Monday.\n\nKind regards,\nAna",
        "Following up on the greyed-out export button, any news?",
    ],
}


def phone_spellings(e164: str) -> set[str]:
    """E.164 and the usual national and international ways of writing the same number."""
    digits = e164.lstrip("+")
    if e164.startswith("+1"):
        n = digits[1:]
        area, mid, last = n[:3], n[3:6], n[6:]
        return {
            e164,
            digits,
            n,
            f"{area}-{mid}-{last}",
            f"({area}) {mid}-{last}",
            f"{area} {mid} {last}",
            f"{area}.{mid}.{last}",
            f"+1 {area} {mid} {last}",
            f"+1-{area}-{mid}-{last}",
            f"{mid}-{last}",
            quote(e164),
        }
    national = "0" + digits[2:]
    return {
        e164,
        digits,
        national,
        f"+44 {digits[2:6]} {digits[6:]}",
        f"0{digits[2:6]} {digits[6:]}",
        quote(e164),
    }


def email_spellings(address: str) -> set[str]:
    local, domain = address.split("@")
    return {address, quote(address), f"{local} at {domain}", f"<{address}>", local}


def body_fragments(body: str) -> set[str]:
    """The body, each of its lines, and every run of four words: a log line may quote a part."""
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    words = body.split()
    runs = {" ".join(words[i : i + 4]) for i in range(max(0, len(words) - 3))}
    return {body, *lines, *runs}


def leaks_in(text: str, needles: set[str]) -> list[str]:
    lowered = text.lower()
    return sorted(n for n in needles if n.strip() and n.lower() in lowered)


def message(address: Address, n: int, text: str) -> InboundMessage:
    return InboundMessage(
        channel=address.channel,
        provider_message_id=f"{address.channel}-{n}",
        sender=address,
        text=text,
        reply_target={"to": str(address)},
        sender_assurance=Assurance.PLATFORM_ATTESTED,
        private=True,
    )


CODE = re.compile(r"\b(\d{3})[ -]?(\d{3})\b")


@pytest.mark.parametrize("llm", [False, True], ids=["offline", "llm"])
async def test_a_full_multi_channel_run_logs_no_body_phone_or_email(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, llm: bool
) -> None:
    for name in QUIET_LOGGERS:  # as ``threadline serve`` sets them up
        caplog.set_level(logging.WARNING, logger=name)
    # last: ``set_level`` also sets the capturing handler's level, which must stay at DEBUG
    caplog.set_level(logging.DEBUG)
    senders = {name: RecordingSender(name) for name in ("sms", "telegram", "slack", "email")}
    sent_bodies: list[str] = []
    with FakeOpenAI() as fake:
        settings = make_settings(tmp_path, llm_url=fake.base_url if llm else None)
        async with running_hub(settings, *senders.values()) as hub:
            n = 0

            async def say(address: Address, text: str) -> None:
                nonlocal n
                n += 1
                sent_bodies.append(text)
                await hub.accept(message(address, n, text))
                assert await hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}

            await say(SMS, BODIES[SMS][0])
            await say(TELEGRAM, BODIES[TELEGRAM][0])
            await say(SLACK, BODIES[SLACK][0])
            await say(MAIL, BODIES[MAIL][0])
            # an identity link on proof: the code goes to the mailbox, comes back on Telegram
            await say(TELEGRAM, BODIES[TELEGRAM][1])
            [code_mail] = [m.text for m in senders["email"].sent if CODE.search(m.text)]
            code_match = CODE.search(code_mail)
            assert code_match is not None
            code = code_match.group(1) + code_match.group(2)
            await say(TELEGRAM, code)
            telegram_customer = (await hub.resolver.resolve(TELEGRAM)).customer_id
            assert (await hub.resolver.resolve(MAIL)).customer_id == telegram_customer, "linked"
            await say(SMS, BODIES[SMS][1])
            await say(SLACK, BODIES[SLACK][1])
            await say(MAIL, BODIES[MAIL][1])
            await say(TELEGRAM, BODIES[TELEGRAM][2])
            # memory was written, and the later message recalled it
            assert await hub.memory.list(telegram_customer)
            assert await hub.memory.list((await hub.resolver.resolve(SMS)).customer_id)
        replies = [m.text for s in senders.values() for m in s.sent]

    assert len(replies) >= len(sent_bodies)
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert "inbox" in logged and "memory" in logged, "the run was logged (by id)"
    if llm:  # the capture really runs at DEBUG (core.agent.llm logs each reply's id at DEBUG)
        assert any(r.levelno == logging.DEBUG and r.name.startswith("core.") for r in caplog.records)

    needles: set[str] = set()
    for body in sent_bodies:
        needles |= body_fragments(body)
    for reply in replies:  # replies quote the customer (offline templates list memories; the fake echoes)
        needles |= {line.strip() for line in reply.splitlines() if len(line.strip()) >= 20}
    needles |= phone_spellings(PHONE) | phone_spellings(OTHER_PHONE)
    needles |= email_spellings(EMAIL) | email_spellings(OTHER_EMAIL)
    needles |= {code, f"{code[:3]} {code[3:]}", f"{code[:3]}-{code[3:]}"}
    offending = [line for line in logged.splitlines() if leaks_in(line, needles)]
    assert offending == [], "\n".join(f"{leaks_in(line, needles)} in: {line}" for line in offending)


def test_the_scan_would_see_a_leak(caplog: pytest.LogCaptureFixture) -> None:
    """The needles match a leaked phone, email or body however it is spelled."""
    caplog.set_level(logging.DEBUG)
    logging.getLogger("core.pipeline.worker").info("reply to %s", "(555) 123-0000")
    logging.getLogger("core.pipeline.worker").info("from %s", quote(EMAIL))
    logging.getLogger("core.pipeline.worker").info("text %r", "the router keeps dropping the wifi")
    needles = phone_spellings(PHONE) | email_spellings(EMAIL) | body_fragments(BODIES[TELEGRAM][0])
    assert all(leaks_in(line, needles) for line in caplog.text.splitlines())


# ----- uvicorn's access log ----------------------------------------------------------------------------

ADMIN_TOKEN = "privacy-admin-token-0123456789abcdef"
# the requests: an admin search by email and a ledger lookup by phone, as a browser encodes them
QUERIES = ("/admin/customers?search=victim%40example.com", "/admin/ledger?address=sms:%2B15551234567")
ACCESS_NEEDLES = ("%40", "@", "victim", "example.com", "%2B1555", "+1555", "5551234567")


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_the_access_log_shows_no_query_string(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for name in QUIET_LOGGERS:  # as ``threadline serve`` sets them up (aiosqlite logs SQL parameters)
        caplog.set_level(logging.WARNING, logger=name)
    caplog.set_level(logging.DEBUG)
    kept = _Kept()
    access = logging.getLogger(ACCESS_LOGGER)
    settings = app_settings(tmp_path / "data", admin_token=SecretStr(ADMIN_TOKEN))
    async with serving(settings, log_level="info") as served:  # access log on
        access.addHandler(kept)
        try:
            auth = {"authorization": f"Bearer {ADMIN_TOKEN}"}
            answers = [(await served.client.get(url, headers=auth)).status_code for url in QUERIES]
            answers += [(await served.client.get(url)).status_code for url in QUERIES]  # refused: logged too
        finally:
            access.removeHandler(kept)
    assert answers == [200, 200, 401, 401]

    access_lines = [record.getMessage() for record in kept.records]
    assert len(access_lines) == 4, access_lines  # every request was logged...
    lines = access_lines + [record.getMessage() for record in caplog.records] + caplog.text.splitlines()
    offending = [line for line in lines if any(needle in line for needle in ACCESS_NEEDLES)]
    assert offending == []  # ...and no line shows what was searched for
    assert sum('"GET /admin/customers?… HTTP/1.1" 200' in line for line in access_lines) == 1
    assert sum('"GET /admin/ledger?… HTTP/1.1" 401' in line for line in access_lines) == 1


def test_setup_logging_installs_the_access_log_filter_once() -> None:
    access = logging.getLogger(ACCESS_LOGGER)
    touched = [logging.getLogger(), *(logging.getLogger(name) for name in QUIET_LOGGERS)]
    levels = [logger.level for logger in touched]
    try:
        setup_logging("INFO")
        setup_logging("INFO")
    finally:  # the levels are process-wide: leave them as the other tests expect
        for logger, level in zip(touched, levels, strict=True):
            logger.setLevel(level)
    assert sum(isinstance(f, HideQueryStrings) for f in access.filters) == 1
    record = logging.LogRecord(
        ACCESS_LOGGER,
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", QUERIES[0], "1.1", 200),
        None,
    )
    assert access.filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "GET /admin/customers?… HTTP/1.1" 200'
