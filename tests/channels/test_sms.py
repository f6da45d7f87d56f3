"""The Twilio SMS adapter: webhooks signed the Twilio way, sends through the real SDK to a fake API."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from channels.base import ChannelAdapter, Parsed, WebhookRequest
from channels.sms import (
    INBOUND_PATH,
    SMS_MAX_CHARS,
    STATUS_PATH,
    TwilioSmsAdapter,
    configure_number,
    split_sms,
)
from core.errors import (
    BadRequest,
    ConfigError,
    PermanentDeliveryError,
    TransientDeliveryError,
    VerificationFailed,
)
from core.messages import Address, OutboundMessage, StatusUpdate
from core.settings import TwilioSettings
from identity.normalize import normalize_address
from tests.fakes.twilio_api import FakeTwilioAPI, twilio_error

FIXTURES = Path(__file__).parent / "fixtures" / "sms"
ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "test-auth-token-9f2c"
FROM_NUMBER = "+15558675310"
CUSTOMER = "+14155552671"
PUBLIC = "https://bot.example.com"
FORM = "application/x-www-form-urlencoded"
EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response />'

normalize = functools.partial(normalize_address, default_region="US")


# ----- helpers ---------------------------------------------------------------------------------


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def twilio_signature(token: str, url: str, body: bytes) -> str:
    """How Twilio signs: base64 HMAC-SHA1(token, URL + every name and value, sorted by name)."""
    params = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    payload = url + "".join(name + value for name, value in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def signed(
    body: bytes,
    *,
    path: str = INBOUND_PATH,
    query: str = "",
    signed_url: str | None = None,
    token: str = AUTH_TOKEN,
    content_type: str | None = FORM,
    signature: str | None = None,
) -> WebhookRequest:
    """A webhook request as the app hands it over, signed over ``signed_url`` (default: the public URL)."""
    url = signed_url or PUBLIC + path + (f"?{query}" if query else "")
    headers = {
        "x-twilio-signature": signature if signature is not None else twilio_signature(token, url, body)
    }
    if content_type is not None:
        headers["content-type"] = content_type
    return WebhookRequest(method="POST", path=path, query_string=query, headers=headers, body=body)


def settings_for(api_base_url: str = "http://127.0.0.1:9", **overrides: object) -> TwilioSettings:
    values: dict[str, object] = {
        "account_sid": ACCOUNT_SID,
        "auth_token": SecretStr(AUTH_TOKEN),
        "from_number": FROM_NUMBER,
        "api_base_url": api_base_url,
    }
    values.update(overrides)
    return TwilioSettings.model_validate(values)


def adapter_for(
    api_base_url: str = "http://127.0.0.1:9",
    *,
    public_base_url: str = PUBLIC,
    timeout: float = 30.0,
    **overrides: object,
) -> TwilioSmsAdapter:
    return TwilioSmsAdapter(
        settings_for(api_base_url, **overrides),
        public_base_url=public_base_url,
        normalize=normalize,
        timeout=timeout,
    )


def reply(text: str, *, parts_sent: int = 0, to: str | None = CUSTOMER) -> OutboundMessage:
    return OutboundMessage(
        channel="sms",
        recipient=Address(channel="sms", handle=CUSTOMER),
        text=text,
        idempotency_key="reply:42",
        reply_target={"to": to, "from": FROM_NUMBER} if to else {},
        parts_sent=parts_sent,
    )


async def accept(adapter: TwilioSmsAdapter, request: WebhookRequest) -> Parsed:
    await adapter.verify(request)
    return await adapter.parse(request)


@pytest.fixture
def adapter() -> TwilioSmsAdapter:
    return adapter_for()


@pytest.fixture
def fake() -> Iterator[FakeTwilioAPI]:
    with FakeTwilioAPI(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as server:
        yield server


@pytest.fixture
async def live(fake: FakeTwilioAPI) -> AsyncIterator[TwilioSmsAdapter]:
    sms = adapter_for(fake.url)
    yield sms
    await sms.aclose()


# ----- construction ----------------------------------------------------------------------------


def test_is_a_channel_adapter_and_repr_hides_the_token(adapter: TwilioSmsAdapter) -> None:
    assert isinstance(adapter, ChannelAdapter)
    assert adapter.name == "sms"
    assert adapter.max_body_bytes == 1_048_576
    assert AUTH_TOKEN not in repr(adapter)
    assert AUTH_TOKEN not in str(vars(adapter))


@pytest.mark.parametrize(
    ("override", "setting"),
    [
        ({"auth_token": None}, "THREADLINE_TWILIO__AUTH_TOKEN"),
        ({"auth_token": SecretStr("")}, "THREADLINE_TWILIO__AUTH_TOKEN"),
        ({"account_sid": None}, "THREADLINE_TWILIO__ACCOUNT_SID"),
        ({"from_number": ""}, "THREADLINE_TWILIO__FROM_NUMBER"),
    ],
)
def test_refuses_to_start_without_credentials(override: dict[str, object], setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        TwilioSmsAdapter(
            settings_for("http://127.0.0.1:9", **override), public_base_url=PUBLIC, normalize=normalize
        )
    assert caught.value.setting == setting


@pytest.mark.parametrize(
    "url", ["", "bot.example.com", "ftp://bot.example.com", "https://bot.example.com/?a=1"]
)
def test_refuses_a_public_base_url_it_cannot_sign_over(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        TwilioSmsAdapter(settings_for(), public_base_url=url, normalize=normalize)
    assert caught.value.setting == "THREADLINE_PUBLIC_BASE_URL"


# ----- inbound messages --------------------------------------------------------------------------


async def test_inbound_sms_from_the_docs(adapter: TwilioSmsAdapter) -> None:
    parsed = await accept(adapter, signed(fixture("inbound_sms.form")))

    assert len(parsed.messages) == 1 and parsed.status_updates == []
    message = parsed.messages[0]
    assert message.channel == "sms"
    assert message.provider_message_id == "SM1f0e8ae6ade43cb3c0ce4525424e404f"
    assert message.sender == Address(channel="sms", handle=CUSTOMER)
    assert message.text == "Hi! My last bill looks wrong, can you check?"
    assert message.reply_target == {"to": CUSTOMER, "from": FROM_NUMBER}
    assert message.attachments == ()
    assert message.extras["NumSegments"] == "1"
    assert message.extras["FromCity"] == "SAN FRANCISCO"
    assert message.extras["AccountSid"] == "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
    assert message.control is None
    assert not {"MessageSid", "From", "To", "Body"} & message.extras.keys()
    assert parsed.reply.status == 200
    assert parsed.reply.content_type == "text/xml"
    assert parsed.reply.body == EMPTY_TWIML


async def test_inbound_mms_keeps_media_urls(adapter: TwilioSmsAdapter) -> None:
    parsed = await accept(adapter, signed(fixture("inbound_mms.form")))

    message = parsed.messages[0]
    assert message.provider_message_id.startswith("MM")
    assert [(ref.ref, ref.media_type) for ref in message.attachments] == [
        (
            "https://api.twilio.com/2010-04-01/Accounts/ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX/Messages/"
            "MM9d1c4a3b8f1e2d3c4b5a69788796a5b4/Media/ME0a1b2c3d4e5f60718293a4b5c6d7e8f9",
            "image/jpeg",
        )
    ]
    assert message.extras["NumMedia"] == "1"
    assert message.extras["MediaContentType0"] == "image/jpeg"
    assert message.extras["MessagingServiceSid"].startswith("MG")
    assert "MediaUrl0" not in message.extras


async def test_stop_from_the_docs_is_flagged_not_dropped(adapter: TwilioSmsAdapter) -> None:
    parsed = await accept(adapter, signed(fixture("inbound_stop.form")))

    assert len(parsed.messages) == 1
    assert parsed.messages[0].control == "stop"
    assert parsed.messages[0].extras["OptOutType"] == "STOP"
    assert parsed.reply.body == EMPTY_TWIML


@pytest.mark.parametrize(
    ("body", "control"),
    [
        ("STOP", "stop"),
        ("  stopall\n", "stop"),
        ("Unsubscribe", "stop"),
        ("cancel", "stop"),
        ("END", "stop"),
        ("quit", "stop"),
        ("REVOKE", "stop"),
        ("optout", "stop"),
        ("start", "start"),
        ("Yes", "start"),
        ("UNSTOP", "start"),
        ("help", "help"),
        (" Info ", "help"),
        ("stop please", None),
        ("Can you help me?", None),
        ("", None),
    ],
)
async def test_opt_out_keywords(adapter: TwilioSmsAdapter, body: str, control: str | None) -> None:
    form = urlencode({"MessageSid": "SM" + "a" * 32, "From": CUSTOMER, "To": FROM_NUMBER, "Body": body})
    parsed = await accept(adapter, signed(form.encode()))

    assert parsed.messages[0].control == control
    assert parsed.messages[0].text == body


async def test_whatsapp_prefix_is_stripped_from_the_sender(adapter: TwilioSmsAdapter) -> None:
    form = urlencode(
        {"MessageSid": "SM" + "b" * 32, "From": f"whatsapp:{CUSTOMER}", "To": FROM_NUMBER, "Body": "hi"}
    )
    message = (await accept(adapter, signed(form.encode()))).messages[0]

    assert str(message.sender) == f"sms:{CUSTOMER}"
    assert message.reply_target["to"] == f"whatsapp:{CUSTOMER}"


async def test_a_sender_that_is_no_phone_number_is_noise(adapter: TwilioSmsAdapter) -> None:
    form = urlencode({"MessageSid": "SM" + "c" * 32, "From": "ACMEBANK", "To": FROM_NUMBER, "Body": "hi"})
    parsed = await accept(adapter, signed(form.encode()))

    assert parsed.messages == [] and parsed.status_updates == []
    assert parsed.reply.status == 200 and parsed.reply.body == EMPTY_TWIML


async def test_parameters_twilio_adds_later_are_signed_and_kept(adapter: TwilioSmsAdapter) -> None:
    body = fixture("inbound_sms.form") + b"&AddOns=%7B%22status%22%3A%22successful%22%7D&NewField2031=x"
    message = (await accept(adapter, signed(body))).messages[0]

    assert message.extras["AddOns"] == '{"status":"successful"}'
    assert message.extras["NewField2031"] == "x"


@pytest.mark.parametrize(
    "form",
    [
        {"From": CUSTOMER, "To": FROM_NUMBER, "Body": "no sid"},
        {"MessageSid": "SM" + "d" * 32, "To": FROM_NUMBER, "Body": "no sender"},
        {"MessageSid": "SM" + "d" * 32, "From": CUSTOMER, "To": FROM_NUMBER},
        {"MessageSid": "SM" + "d" * 32, "From": CUSTOMER, "Body": "x", "NumMedia": "lots"},
    ],
)
async def test_authentic_but_incomplete_inbound_is_a_bad_request(
    adapter: TwilioSmsAdapter, form: dict[str, str]
) -> None:
    request = signed(urlencode(form).encode())
    await adapter.verify(request)
    with pytest.raises(BadRequest) as caught:
        await adapter.parse(request)
    assert caught.value.status == 400


async def test_a_signed_body_declared_as_another_type_is_415_after_verify(adapter: TwilioSmsAdapter) -> None:
    request = signed(fixture("inbound_sms.form"), content_type="application/json")
    await adapter.verify(request)  # the signature itself is fine
    with pytest.raises(BadRequest) as caught:
        await adapter.parse(request)
    assert caught.value.status == 415


async def test_form_content_type_with_charset_is_accepted(adapter: TwilioSmsAdapter) -> None:
    request = signed(
        fixture("inbound_sms.form"), content_type="application/x-www-form-urlencoded; charset=utf-8"
    )
    assert len((await accept(adapter, request)).messages) == 1


async def test_an_unknown_path_is_rejected(adapter: TwilioSmsAdapter) -> None:
    request = signed(fixture("inbound_sms.form"), path="/webhooks/twilio/voice")
    await adapter.verify(request)
    with pytest.raises(BadRequest) as caught:
        await adapter.parse(request)
    assert caught.value.status == 404


# ----- signatures ------------------------------------------------------------------------------


async def test_missing_signature_is_403(adapter: TwilioSmsAdapter) -> None:
    request = signed(fixture("inbound_sms.form"))
    unsigned = WebhookRequest(
        method="POST", path=INBOUND_PATH, query_string="", headers={"content-type": FORM}, body=request.body
    )
    with pytest.raises(VerificationFailed) as caught:
        await adapter.verify(unsigned)
    assert caught.value.status == 403


@pytest.mark.parametrize(
    "signed_url",
    [
        "https://evil.example.com/webhooks/twilio/sms",  # another host
        "https://bot.example.com/webhooks/twilio/status",  # another path
        "http://bot.example.com/webhooks/twilio/sms",  # the scheme a TLS proxy shows the server
        "http://127.0.0.1:8000/webhooks/twilio/sms",  # the URL the server saw
        "https://bot.example.com/webhooks/twilio/sms?x=1",  # a query the request does not carry
    ],
)
async def test_signature_over_another_url_is_403(adapter: TwilioSmsAdapter, signed_url: str) -> None:
    with pytest.raises(VerificationFailed) as caught:
        await adapter.verify(signed(fixture("inbound_sms.form"), signed_url=signed_url))
    assert caught.value.status == 403


async def test_the_default_port_is_accepted_either_way(adapter: TwilioSmsAdapter) -> None:
    request = signed(
        fixture("inbound_sms.form"), signed_url="https://bot.example.com:443/webhooks/twilio/sms"
    )
    await adapter.verify(request)


async def test_raw_query_string_is_part_of_the_signed_url(adapter: TwilioSmsAdapter) -> None:
    await adapter.verify(signed(fixture("inbound_sms.form"), query="tenant=a%20b&x=1"))
    request = signed(fixture("inbound_sms.form"), query="tenant=a%20b&x=1")
    stripped = WebhookRequest(
        method="POST", path=INBOUND_PATH, query_string="", headers=request.headers, body=request.body
    )
    with pytest.raises(VerificationFailed):
        await adapter.verify(stripped)


async def test_public_base_url_with_trailing_slash() -> None:
    sms = adapter_for(public_base_url=PUBLIC + "/")
    await sms.verify(signed(fixture("inbound_sms.form")))


@pytest.mark.parametrize(
    "tamper",
    [
        lambda body: body.replace(b"wrong", b"right"),  # a changed value
        lambda body: body + b"&Extra=1",  # an added parameter
        lambda body: body.replace(b"&NumSegments=1", b""),  # a removed parameter
    ],
)
async def test_a_tampered_body_is_403(adapter: TwilioSmsAdapter, tamper: Callable[[bytes], bytes]) -> None:
    original = signed(fixture("inbound_sms.form"))
    request = WebhookRequest(
        method="POST",
        path=INBOUND_PATH,
        query_string="",
        headers=original.headers,
        body=tamper(original.body),
    )
    with pytest.raises(VerificationFailed) as caught:
        await adapter.verify(request)
    assert caught.value.status == 403


async def test_wrong_token_is_403(adapter: TwilioSmsAdapter) -> None:
    with pytest.raises(VerificationFailed) as caught:
        await adapter.verify(signed(fixture("inbound_sms.form"), token="someone-elses-token"))
    assert caught.value.status == 403


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe garbage",  # not UTF-8
        b'{"MessageSid": "SM1", "From": "+14155552671", "Body": "hi"}',  # JSON
        b"a=%FF",  # percent-escape of invalid UTF-8
    ],
)
async def test_a_body_verify_cannot_parse_fails_closed(adapter: TwilioSmsAdapter, body: bytes) -> None:
    request = signed(body, signature="c2lnbmF0dXJl", content_type="application/json")
    with pytest.raises(VerificationFailed) as caught:
        await adapter.verify(request)
    assert caught.value.status == 403


# ----- status callbacks ------------------------------------------------------------------------


async def test_status_callback_delivered(adapter: TwilioSmsAdapter) -> None:
    parsed = await accept(adapter, signed(fixture("status_delivered.form"), path=STATUS_PATH))

    assert parsed.messages == []
    assert parsed.status_updates == [
        StatusUpdate(provider_message_id="SMb7c0a2ce80504485a6f653a7110836f5", status="delivered")
    ]
    assert parsed.reply.status == 200 and parsed.reply.body == b""


async def test_status_callback_undelivered_carries_the_error_code(adapter: TwilioSmsAdapter) -> None:
    parsed = await accept(adapter, signed(fixture("status_undelivered.form"), path=STATUS_PATH))

    assert parsed.status_updates == [
        StatusUpdate(
            provider_message_id="SMb7c0a2ce80504485a6f653a7110836f5", status="undelivered", error_code="30003"
        )
    ]


async def test_status_callback_is_signed_too(adapter: TwilioSmsAdapter) -> None:
    # signed for the inbound URL, delivered to the status URL
    request = signed(fixture("status_delivered.form"), path=STATUS_PATH, signed_url=PUBLIC + INBOUND_PATH)
    with pytest.raises(VerificationFailed):
        await adapter.verify(request)


@pytest.mark.parametrize(
    "form",
    [
        {"MessageSid": "SM" + "e" * 32, "MessageStatus": "partially_delivered"},
        {"MessageSid": "SM" + "e" * 32, "MessageStatus": "teleported"},
        {"MessageSid": "SM" + "e" * 32},
        {"MessageStatus": "sent"},
    ],
)
async def test_status_callback_outside_the_vocabulary_is_400(
    adapter: TwilioSmsAdapter, form: dict[str, str]
) -> None:
    request = signed(urlencode(form).encode(), path=STATUS_PATH)
    await adapter.verify(request)
    with pytest.raises(BadRequest) as caught:
        await adapter.parse(request)
    assert caught.value.status == 400


# ----- splitting -------------------------------------------------------------------------------


def test_split_keeps_a_short_text_whole() -> None:
    assert split_sms("  Your refund is on its way.  ") == ["Your refund is on its way."]
    assert split_sms("x" * SMS_MAX_CHARS) == ["x" * SMS_MAX_CHARS]
    assert split_sms(" \n ") == []


def test_split_prefers_sentence_boundaries() -> None:
    sentence = "This sentence is exactly forty chars ok. "
    text = sentence * 60  # 2,460 characters
    parts = split_sms(text)
    assert len(parts) == 2
    assert all(len(p) <= SMS_MAX_CHARS for p in parts)
    assert parts[0].endswith("ok.") and parts[1].startswith("This")


def test_split_falls_back_to_words_then_hard_cuts() -> None:
    words = split_sms("word " * 400, limit=100)
    assert all(len(p) <= 100 and p.endswith("word") for p in words)
    assert split_sms("x" * 250, limit=100) == ["x" * 100, "x" * 100, "x" * 50]


def test_split_counts_emoji_as_two_characters() -> None:
    parts = split_sms("😀" * 1000)  # 2,000 UTF-16 units
    assert [len(p) for p in parts] == [800, 200]


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab .!?\n😀é"), max_size=400), st.integers(min_value=2, max_value=60))
def test_split_never_exceeds_the_limit_and_loses_nothing(text: str, limit: int) -> None:
    parts = split_sms(text, limit=limit)
    assert all(0 < len(p.encode("utf-16-le")) // 2 <= limit for p in parts)
    assert "".join("".join(parts).split()) == "".join(text.split())


# ----- sending through the SDK -------------------------------------------------------------------


async def test_send_one_message(live: TwilioSmsAdapter, fake: FakeTwilioAPI) -> None:
    delivery = await live.send(reply("Your refund was issued today."))

    assert len(fake.messages) == 1
    sent = fake.messages[0]
    assert sent["To"] == CUSTOMER and sent["From"] == FROM_NUMBER
    assert sent["Body"] == "Your refund was issued today."
    # the callback names the reply and the part, so a send we never recorded is still recognised
    assert sent["StatusCallback"] == PUBLIC + STATUS_PATH + "?reply=reply%3A42&part=0"
    request = fake.requests[0]
    assert request.authorized
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert len(delivery.provider_message_ids) == 1
    assert delivery.provider_message_ids[0].startswith("SM")


async def test_send_splits_at_the_limit(live: TwilioSmsAdapter, fake: FakeTwilioAPI) -> None:
    text = "Here is what happened with your order. " * 100  # 3,900 characters
    delivery = await live.send(reply(text))

    bodies = [m["Body"] for m in fake.messages]
    assert len(bodies) == 3
    assert all(len(b) <= SMS_MAX_CHARS for b in bodies)
    assert " ".join(bodies) == text.strip()
    assert len(delivery.provider_message_ids) == 3 and len(set(delivery.provider_message_ids)) == 3


async def test_send_skips_parts_sent_in_an_earlier_attempt(
    live: TwilioSmsAdapter, fake: FakeTwilioAPI
) -> None:
    text = "Here is what happened with your order. " * 100
    delivery = await live.send(reply(text, parts_sent=2))

    assert [m["Body"] for m in fake.messages] == [split_sms(text)[2]]
    assert len(delivery.provider_message_ids) == 1


async def test_reply_without_target_goes_to_the_recipient(
    live: TwilioSmsAdapter, fake: FakeTwilioAPI
) -> None:
    await live.send(reply("hello", to=None))
    assert fake.messages[0]["To"] == CUSTOMER


async def test_reply_to_a_whatsapp_sender_goes_out_as_sms(
    live: TwilioSmsAdapter, fake: FakeTwilioAPI
) -> None:
    await live.send(reply("hello", to=f"whatsapp:{CUSTOMER}"))
    assert fake.messages[0]["To"] == CUSTOMER


async def test_429_is_transient_with_retry_after_then_exactly_one_message(
    live: TwilioSmsAdapter, fake: FakeTwilioAPI
) -> None:
    fake.push_rate_limit(retry_after=7)
    with pytest.raises(TransientDeliveryError) as caught:
        await live.send(reply("hello"))
    assert caught.value.retry_after == 7.0
    assert caught.value.sent_ids == ()
    assert fake.messages == []

    delivery = await live.send(reply("hello"))  # the worker's retry
    assert len(fake.messages) == 1
    assert len(delivery.provider_message_ids) == 1


async def test_429_without_retry_after(live: TwilioSmsAdapter, fake: FakeTwilioAPI) -> None:
    fake.push_rate_limit(retry_after=None)
    with pytest.raises(TransientDeliveryError) as caught:
        await live.send(reply("hello"))
    assert caught.value.retry_after is None


async def test_failure_mid_split_carries_the_parts_already_sent(
    live: TwilioSmsAdapter, fake: FakeTwilioAPI
) -> None:
    text = "Here is what happened with your order. " * 100  # three parts
    fake.push_rate_limit(retry_after=2, after=1)  # the first part goes out, the second is refused

    with pytest.raises(TransientDeliveryError) as caught:
        await live.send(reply(text))
    assert caught.value.retry_after == 2.0
    assert len(fake.messages) == 1
    assert len(caught.value.sent_ids) == 1 and caught.value.sent_ids[0].startswith("SM")

    delivery = await live.send(reply(text, parts_sent=1))  # the worker's retry skips what went out
    assert [m["Body"] for m in fake.messages] == split_sms(text)
    assert len(delivery.provider_message_ids) == 2


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_transient(live: TwilioSmsAdapter, fake: FakeTwilioAPI, status: int) -> None:
    fake.push_server_error(status)
    with pytest.raises(TransientDeliveryError):
        await live.send(reply("hello"))
    assert fake.messages == []


@pytest.mark.parametrize("code", [21610, 21211, 21614, 21408, 21612, 21606])
async def test_permanent_errors(live: TwilioSmsAdapter, fake: FakeTwilioAPI, code: int) -> None:
    fake.push_error(400, code=code)
    with pytest.raises(PermanentDeliveryError) as caught:
        await live.send(reply("hello"))
    assert str(code) in str(caught.value)


async def test_error_text_never_carries_the_number(live: TwilioSmsAdapter, fake: FakeTwilioAPI) -> None:
    fake.push(400, twilio_error(400, 21211, f"The 'To' number {CUSTOMER} is not a valid phone number."))
    with pytest.raises(PermanentDeliveryError) as caught:
        await live.send(reply("hello"))
    assert CUSTOMER not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_wrong_credentials_are_permanent(fake: FakeTwilioAPI) -> None:
    sms = adapter_for(fake.url, auth_token=SecretStr("not-the-token"))
    try:
        with pytest.raises(PermanentDeliveryError):
            await sms.send(reply("hello"))
    finally:
        await sms.aclose()
    assert fake.requests[0].authorized is False and fake.messages == []


async def test_connection_refused_is_transient() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sms = adapter_for(f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(TransientDeliveryError):
            await sms.send(reply("hello"))
    finally:
        await sms.aclose()


async def test_a_hung_api_call_times_out_as_transient(fake: FakeTwilioAPI) -> None:
    fake.delay = 5.0
    sms = adapter_for(fake.url, timeout=0.2)
    try:
        with pytest.raises(TransientDeliveryError):
            await sms.send(reply("hello"))
    finally:
        await sms.aclose()


async def test_twilio_region_in_the_environment_does_not_redirect_the_client(
    fake: FakeTwilioAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_REGION", "ie1")
    monkeypatch.setenv("TWILIO_EDGE", "dublin")
    sms = adapter_for(fake.url)
    try:
        await sms.send(reply("hello"))
    finally:
        await sms.aclose()
    assert len(fake.messages) == 1


async def test_aclose_closes_the_session_and_is_idempotent(fake: FakeTwilioAPI) -> None:
    sms = adapter_for(fake.url)
    await sms.aclose()  # nothing opened yet
    await sms.send(reply("hello"))
    http = sms._http
    await sms.aclose()
    assert http.session.closed
    await sms.aclose()


async def test_nothing_private_is_logged(
    live: TwilioSmsAdapter, fake: FakeTwilioAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await accept(live, signed(fixture("inbound_sms.form")))
    await live.send(reply("Your refund was issued today."))
    fake.push_error(400, code=21610)
    with pytest.raises(PermanentDeliveryError):
        await live.send(reply("Your refund was issued today."))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert text  # ids and statuses are logged
    for private in (CUSTOMER, "4155552671", FROM_NUMBER, "refund", "bill looks wrong", AUTH_TOKEN):
        assert private not in text


# ----- set-up ----------------------------------------------------------------------------------


async def test_configure_number_points_the_webhooks_here(fake: FakeTwilioAPI) -> None:
    fake.add_number("+15550001111")
    number = fake.add_number(FROM_NUMBER)

    line = await configure_number(settings_for(fake.url), PUBLIC + "/")

    updated = next(n for n in fake.numbers if n["sid"] == number["sid"])
    assert updated["sms_url"] == PUBLIC + INBOUND_PATH
    assert updated["sms_method"] == "POST"
    assert updated["status_callback"] == PUBLIC + STATUS_PATH
    other = next(n for n in fake.numbers if n["sid"] != number["sid"])
    assert other["sms_url"] == ""
    assert "\n" not in line and number["sid"] in line and PUBLIC + INBOUND_PATH in line
    assert AUTH_TOKEN not in line
    lookup, update = fake.requests
    assert lookup.method == "GET" and lookup.query["PhoneNumber"] == FROM_NUMBER and lookup.authorized
    assert update.path.endswith(f"/IncomingPhoneNumbers/{number['sid']}.json") and update.authorized


async def test_configure_number_not_in_the_account(fake: FakeTwilioAPI) -> None:
    fake.add_number("+15550001111")
    with pytest.raises(ConfigError) as caught:
        await configure_number(settings_for(fake.url), PUBLIC)
    assert caught.value.setting == "THREADLINE_TWILIO__FROM_NUMBER"


async def test_configure_number_with_wrong_credentials(fake: FakeTwilioAPI) -> None:
    fake.add_number(FROM_NUMBER)
    with pytest.raises(ConfigError) as caught:
        await configure_number(settings_for(fake.url, auth_token=SecretStr("wrong")), PUBLIC)
    assert AUTH_TOKEN not in str(caught.value) and "wrong" not in str(caught.value)
