"""SMS end to end: signed Twilio webhook → app route → inbox → worker → real adapter → fake Twilio API.

The app is served by uvicorn on a loopback port and called over real HTTP; ``twilio.rest.Client`` inside
the adapter talks to ``FakeTwilioAPI``. Webhooks are signed the way Twilio signs them, with the SDK's own
``RequestValidator.compute_signature`` over the PUBLIC URL (``THREADLINE_PUBLIC_BASE_URL`` + path + query),
never over the loopback URL the server actually sees.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from sqlalchemy import select
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from channels.sms import INBOUND_PATH, STATUS_PATH
from core.pipeline.interceptions import HELP_REPLY
from core.store.models import InboxRow, OptOut, OutboundPart, OutboxRow
from tests.apphost import Served, app_settings, serving
from tests.fakes.twilio_api import FakeTwilioAPI
from tests.platforms import twilio_settings

FIXTURES = Path(__file__).resolve().parents[2] / "channels" / "fixtures" / "sms"
ACCOUNT_SID = "AC" + "7" * 32
AUTH_TOKEN = "e2e-twilio-auth-token-5d1a"
PUBLIC = "https://bot.example.com"
OUR_NUMBER = "+15558675310"  # the ``To`` of the fixtures: the number Twilio delivers to
CUSTOMER = "+14155552671"  # the ``From`` of the fixtures
CUSTOMER_ADDRESS = f"sms:{CUSTOMER}"
FORM = "application/x-www-form-urlencoded"
EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response />'
MAX_BODY_BYTES = 1_048_576  # TwilioSmsAdapter.max_body_bytes


# ----- building and signing Twilio's requests ------------------------------------------------------


def fixture_params(name: str) -> dict[str, str]:
    """A fixture form (as Twilio posts it) as an ordered dict of its parameters."""
    return dict(parse_qsl((FIXTURES / name).read_text(encoding="utf-8").strip(), keep_blank_values=True))


def inbound(sid: str, body: str) -> dict[str, str]:
    """An inbound SMS from the customer: the documented parameter set with our own sid and text."""
    params = fixture_params("inbound_sms.form")
    params.update(MessageSid=sid, SmsSid=sid, SmsMessageSid=sid, Body=body)
    return params


def status_callback(sid: str, status: str) -> dict[str, str]:
    """A status callback for the message ``sid`` we sent (the documented ``delivered`` form, re-statused)."""
    params = fixture_params("status_delivered.form")
    params.update(MessageSid=sid, SmsSid=sid, MessageStatus=status, SmsStatus=status)
    return params


def sign(url: str, params: dict[str, str], *, token: str = AUTH_TOKEN) -> str:
    signature: str = RequestValidator(token).compute_signature(url, params)
    return signature


async def post(
    served: Served,
    params: dict[str, str] | None,
    *,
    path: str = INBOUND_PATH,
    body: bytes | None = None,
    signed_url: str | None = None,
    token: str = AUTH_TOKEN,
    signature: str | None = "compute",
    content_type: str = FORM,
) -> httpx.Response:
    """POST a form the way Twilio does; signed over ``PUBLIC + path`` unless told otherwise.

    ``signature=None`` leaves the header out; any other string than ``"compute"`` is sent as it is.
    ``body`` replaces the encoded ``params`` on the wire (the signature is still over ``params``).
    """
    params = params or {}
    headers = {"content-type": content_type}
    if signature == "compute":
        headers["x-twilio-signature"] = sign(signed_url or PUBLIC + path, params, token=token)
    elif signature is not None:
        headers["x-twilio-signature"] = signature
    content = body if body is not None else urlencode(params).encode()
    return await served.client.post(path, content=content, headers=headers)


# ----- looking at the fake and the store ----------------------------------------------------------


def message_calls(fake: FakeTwilioAPI) -> int:
    """Every create-Message call that reached the fake, including the ones it was told to refuse."""
    return sum(1 for r in fake.requests if r.method == "POST" and r.path.endswith("/Messages.json"))


async def outbox_rows(served: Served) -> list[OutboxRow]:
    async with served.hub.db.session() as session:
        return list(await session.scalars(select(OutboxRow).order_by(OutboxRow.id)))


async def outbound_parts(served: Served) -> list[OutboundPart]:
    async with served.hub.db.session() as session:
        return list(await session.scalars(select(OutboundPart).order_by(OutboundPart.id)))


async def opted_out(served: Served) -> bool:
    async with served.hub.db.session() as session:
        return await session.get(OptOut, CUSTOMER_ADDRESS) is not None


async def settle(served: Served) -> None:
    """Let the worker and delivery finish everything committed so far; fail loudly if they do not."""
    left = await served.hub.wait_idle(timeout=30)
    assert not any(left.values()), f"the hub is still busy after 30 s: {left}"


# ----- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilioAPI]:
    async with FakeTwilioAPI(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as server:
        yield server


@pytest.fixture
async def served(fake: FakeTwilioAPI, tmp_path: Path) -> AsyncIterator[Served]:
    twilio = twilio_settings(fake, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_number=OUR_NUMBER)
    settings = app_settings(tmp_path / "data", twilio=twilio, public_base_url=PUBLIC)
    async with serving(settings) as app:
        yield app


# ----- tests --------------------------------------------------------------------------------------


async def test_a_signed_sms_gets_exactly_one_reply_even_when_twilio_delivers_it_again(
    served: Served, fake: FakeTwilioAPI
) -> None:
    params = fixture_params("inbound_sms.form")  # the documented inbound SMS, unchanged

    first = await post(served, params)
    again = await post(served, params)  # Twilio retries on a slow answer: same MessageSid, same signature

    for response in (first, again):
        assert response.status_code == 200
        assert response.headers["content-type"].split(";")[0].strip() == "text/xml"
        assert response.content == EMPTY_TWIML  # the reply goes out by REST, not in TwiML
    await settle(served)
    assert len(fake.messages) == 1
    [sent] = fake.messages
    assert sent["To"] == CUSTOMER and sent["From"] == OUR_NUMBER
    assert sent["Body"]  # the agent's (offline) answer
    async with served.hub.db.session() as session:
        key = await session.scalar(select(OutboxRow.idempotency_key))
    assert sent["StatusCallback"] == PUBLIC + STATUS_PATH + "?" + urlencode({"reply": key, "part": 0})
    assert message_calls(fake) == 1
    assert await served.inbox_rows("sms") == 1
    async with served.hub.db.session() as session:
        inbox = await session.scalar(select(InboxRow))
    assert inbox is not None and inbox.status == "done"
    assert inbox.provider_message_id == params["MessageSid"]
    assert inbox.sender == CUSTOMER_ADDRESS and inbox.text == params["Body"]
    assert inbox.extras["FromCity"] == "SAN FRANCISCO"  # every signed parameter is kept
    [row] = await outbox_rows(served)
    assert row.status == "sent" and row.attempts == 1 and row.channel == "sms"
    assert row.recipient == CUSTOMER_ADDRESS
    assert len(row.provider_message_ids) == 1 and row.provider_message_ids[0].startswith("SM")


async def test_unsigned_misaddressed_garbled_or_oversized_webhooks_are_refused_and_store_nothing(
    served: Served, fake: FakeTwilioAPI
) -> None:
    good = inbound("SM" + "a" * 32, "Is my order shipped?")
    loopback_url = served.url + INBOUND_PATH  # what the server sees; Twilio signs the public URL
    authentic_but_incomplete = {k: v for k, v in good.items() if k != "Body"}
    huge = inbound("SM" + "b" * 32, "x" * MAX_BODY_BYTES)  # validly signed, just too big
    cases: dict[str, tuple[httpx.Response, int]] = {
        "wrong token": (await post(served, good, token="not-the-auth-token"), 403),
        "signed over the loopback URL": (await post(served, good, signed_url=loopback_url), 403),
        "signed over the status URL": (await post(served, good, signed_url=PUBLIC + STATUS_PATH), 403),
        "signed over http://": (
            await post(served, good, signed_url=PUBLIC.replace("https", "http") + INBOUND_PATH),
            403,
        ),
        "no signature": (await post(served, good, signature=None), 403),
        "empty signature": (await post(served, good, signature=""), 403),
        "tampered body": (
            await post(served, good, body=urlencode({**good, "Body": "refund me now"}).encode()),
            403,
        ),
        "not a form at all": (await post(served, good, body=b"\xff\xfe{not a form", content_type=FORM), 403),
        "authentic but no Body": (await post(served, authentic_but_incomplete), 400),
        "authentic but JSON-typed": (await post(served, good, content_type="application/json"), 415),
        "over max_body_bytes": (await post(served, huge), 413),
    }

    outcomes = {name: response.status_code for name, (response, _) in cases.items()}
    assert outcomes == {name: expected for name, (_, expected) in cases.items()}
    await settle(served)
    assert await served.inbox_rows() == 0
    assert fake.requests == []

    # the same message, signed right, is taken: the refusals above were about the requests, not the app
    assert (await post(served, good)).status_code == 200
    await settle(served)
    assert await served.inbox_rows("sms") == 1
    assert len(fake.messages) == 1


async def test_a_429_from_twilio_delays_the_reply_which_then_arrives_exactly_once(
    served: Served, fake: FakeTwilioAPI
) -> None:
    fake.push_rate_limit(retry_after=1)

    assert (await post(served, inbound("SM" + "c" * 32, "Where is my refund?"))).status_code == 200
    await settle(served)

    assert message_calls(fake) == 2  # the refused call and the retry
    assert [r.forced for r in fake.requests] == [True, False]
    assert len(fake.messages) == 1 and fake.messages[0]["To"] == CUSTOMER
    [row] = await outbox_rows(served)
    assert row.status == "sent" and row.attempts == 2 and row.last_error is None
    # the retry was scheduled no earlier than Retry-After, and went out no earlier than scheduled
    # (a lane head read before the 429 was recorded must not send the row again straight away)
    assert row.next_attempt_at is not None and row.sent_at is not None
    assert row.next_attempt_at >= row.created_at + timedelta(seconds=1)
    assert row.sent_at >= row.next_attempt_at


async def test_an_opted_out_recipient_error_fails_the_reply_after_one_attempt(
    served: Served, fake: FakeTwilioAPI
) -> None:
    fake.push_error(400, code=21610)  # "Attempt to send to unsubscribed recipient"

    assert (await post(served, inbound("SM" + "d" * 32, "hello?"))).status_code == 200
    await settle(served)

    assert message_calls(fake) == 1
    assert fake.messages == []
    [row] = await outbox_rows(served)
    assert row.status == "failed" and row.attempts == 1
    assert row.last_error is not None and "21610" in row.last_error
    assert row.provider_message_ids == [] and row.parts_sent == 0


async def test_stop_opts_out_and_nothing_is_sent_until_start(served: Served, fake: FakeTwilioAPI) -> None:
    stop = fixture_params("inbound_stop.form")  # "Stop", as Twilio forwards it after its own opt-out

    response = await post(served, stop)
    assert response.status_code == 200 and response.content == EMPTY_TWIML
    await settle(served)
    assert await opted_out(served)
    assert message_calls(fake) == 0  # STOP is never answered (Twilio confirms it itself)

    assert (await post(served, inbound("SM" + "e" * 32, "are you there?"))).status_code == 200
    await settle(served)
    assert message_calls(fake) == 0  # answered by the agent, but held back: opted out
    [held] = await outbox_rows(served)
    assert held.status == "failed" and held.last_error == "opted_out"

    assert (await post(served, inbound("SM" + "f" * 32, "START"))).status_code == 200
    await settle(served)
    assert not await opted_out(served)
    assert message_calls(fake) == 0  # START is not answered either

    assert (await post(served, inbound("SM" + "0" * 32, "my bill is wrong"))).status_code == 200
    await settle(served)
    assert message_calls(fake) == 1 and len(fake.messages) == 1
    assert fake.messages[0]["To"] == CUSTOMER and fake.messages[0]["Body"] != HELP_REPLY
    assert await served.inbox_rows("sms") == 4
    assert [r.status for r in await outbox_rows(served)] == ["failed", "sent"]


async def test_status_callbacks_advance_our_message_and_never_move_it_backwards(
    served: Served, fake: FakeTwilioAPI
) -> None:
    assert (await post(served, inbound("SM" + "1" * 32, "please call me back"))).status_code == 200
    await settle(served)
    [row] = await outbox_rows(served)
    [sid] = row.provider_message_ids
    [part] = await outbound_parts(served)
    assert (part.provider_message_id, part.outbox_id, part.status) == (sid, row.id, "sent")

    # unsigned, or signed for the inbound URL: refused, nothing changes
    unsigned = await post(served, status_callback(sid, "delivered"), path=STATUS_PATH, signature=None)
    misaddressed = await post(
        served, status_callback(sid, "delivered"), path=STATUS_PATH, signed_url=PUBLIC + INBOUND_PATH
    )
    assert (unsigned.status_code, misaddressed.status_code) == (403, 403)
    assert [p.status for p in await outbound_parts(served)] == ["sent"]

    delivered = await post(served, status_callback(sid, "delivered"), path=STATUS_PATH)
    assert delivered.status_code == 200
    [part] = await outbound_parts(served)
    assert part.status == "delivered"
    [row] = await outbox_rows(served)
    assert row.status == "delivered"

    late = await post(served, status_callback(sid, "sent"), path=STATUS_PATH)  # arrives out of order
    assert late.status_code == 200
    [part] = await outbound_parts(served)
    assert part.status == "delivered"
    [row] = await outbox_rows(served)
    assert row.status == "delivered"

    # a status report is not an inbound message, and is never answered
    await settle(served)
    assert await served.inbox_rows("sms") == 1
    assert len(fake.messages) == 1
