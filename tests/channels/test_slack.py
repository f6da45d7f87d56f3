"""The Slack adapter against Slack's documented payloads and a real local fake of the Web API.

Inbound fixtures come from Slack's documentation (see fixtures/slack/SOURCES.md) and are signed here
the way Slack signs them: ``v0=`` + hex HMAC-SHA256(signing secret, ``v0:{timestamp}:{raw body}``).
Outbound goes through the real ``AsyncWebClient`` to ``FakeSlackAPI`` on 127.0.0.1.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator

from channels.base import ChannelAdapter, WebhookRequest
from channels.slack import (
    MAX_TEXT_CHARS,
    ChannelPacer,
    SlackAdapter,
    app_manifest,
    escape_text,
    split_text,
)
from core.errors import BadRequest, PermanentDeliveryError, TransientDeliveryError, VerificationFailed
from core.messages import Address, OutboundMessage
from core.settings import SlackSettings
from identity.normalize import normalize_address
from tests.fakes.slack_api import FakeSlackAPI

FIXTURES = Path(__file__).parent / "fixtures" / "slack"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TOKEN = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
BOT_USER = "UBOT0001"


# ----- helpers ---------------------------------------------------------------------------------


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fixture_bytes(name))
    return data


def sign(body: bytes, *, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"x-slack-request-timestamp": ts, "x-slack-signature": f"v0={digest}"}


def request(
    body: bytes | dict[str, Any],
    *,
    headers: dict[str, str] | None = None,
    signed: bool = True,
    timestamp: int | None = None,
) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    all_headers = {"content-type": "application/json", "user-agent": "Slackbot 1.0"}
    if signed:
        all_headers.update(sign(raw, timestamp=timestamp))
    all_headers.update({k.lower(): v for k, v in (headers or {}).items()})
    return WebhookRequest(
        method="POST", path="/webhooks/slack/events", query_string="", headers=all_headers, body=raw
    )


def make_adapter(
    api_url: str = "http://127.0.0.1:9/api/", *, secret: str | None = SECRET, **kwargs: Any
) -> SlackAdapter:
    settings = SlackSettings(
        bot_token=SecretStr(TOKEN),
        signing_secret=SecretStr(secret) if secret is not None else None,
        api_base_url=api_url,
    )
    options: dict[str, Any] = {
        "pacer": ChannelPacer(interval=0),
        "rate_limit_retries": 0,
        "server_error_retries": 0,
        "retry_interval": FixedValueRetryIntervalCalculator(0.0),
    }
    options.update(kwargs)
    return SlackAdapter(settings, normalize=normalize_address, **options)


def outbound(text: str, **target: Any) -> OutboundMessage:
    reply_target = target or {"channel": "C123ABC456", "thread_ts": "1355517523.000005"}
    return OutboundMessage(
        channel="slack",
        recipient=Address(channel="slack", handle="T123ABC456:U123ABC456"),
        text=text,
        idempotency_key="reply-1",
        reply_target=reply_target,
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlackAPI]:
    async with FakeSlackAPI(token=TOKEN, bot_user_id=BOT_USER) as server:
        yield server


@pytest.fixture
async def adapter(fake: FakeSlackAPI) -> AsyncIterator[SlackAdapter]:
    slack = make_adapter(fake.api_url)
    yield slack
    await slack.aclose()


@pytest.fixture
def inbound() -> SlackAdapter:
    return make_adapter()


# ----- contract ----------------------------------------------------------------------------


def test_is_a_channel_adapter(inbound: SlackAdapter) -> None:
    assert isinstance(inbound, ChannelAdapter)
    assert inbound.name == "slack"
    assert inbound.max_body_bytes == 1_048_576


def test_no_secret_in_repr(inbound: SlackAdapter) -> None:
    text = repr(inbound) + str(inbound)
    assert TOKEN not in text and SECRET not in text


# ----- verify ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "message_channels.json",
        "message_im.json",
        "app_mention.json",
        "url_verification.json",
        "message_changed.json",
        "bot_message.json",
    ],
)
async def test_documented_payloads_signed_like_slack_verify(inbound: SlackAdapter, name: str) -> None:
    await inbound.verify(request(fixture_bytes(name)))


async def test_wrong_signature_is_401(inbound: SlackAdapter) -> None:
    body = fixture_bytes("message_channels.json")
    headers = sign(body, secret="not-the-secret")
    with pytest.raises(VerificationFailed) as caught:
        await inbound.verify(request(body, headers=headers))
    assert caught.value.status == 401


async def test_tampered_body_is_401(inbound: SlackAdapter) -> None:
    body = fixture_bytes("message_channels.json")
    headers = sign(body)
    tampered = body.replace(b"Live long", b"Give money")
    with pytest.raises(VerificationFailed) as caught:
        await inbound.verify(request(tampered, headers=headers, signed=False))
    assert caught.value.status == 401


@pytest.mark.parametrize("skew", [-301, -400, 301, 3600])
async def test_stale_or_future_timestamp_is_401_even_when_correctly_signed(
    inbound: SlackAdapter, skew: int
) -> None:
    body = fixture_bytes("message_channels.json")
    with pytest.raises(VerificationFailed) as caught:
        await inbound.verify(request(body, timestamp=int(time.time()) + skew))
    assert caught.value.status == 401


async def test_timestamp_within_window_passes(inbound: SlackAdapter) -> None:
    body = fixture_bytes("message_channels.json")
    await inbound.verify(request(body, timestamp=int(time.time()) - 200))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-slack-signature": "v0=abc"},
        {"x-slack-request-timestamp": "1531420618"},
        {"x-slack-request-timestamp": "not-a-number", "x-slack-signature": "v0=abc"},
        {"x-slack-request-timestamp": "9" * 400, "x-slack-signature": "v0=abc"},
    ],
)
async def test_missing_or_garbled_signature_headers_are_401(
    inbound: SlackAdapter, headers: dict[str, str]
) -> None:
    req = request(fixture_bytes("message_channels.json"), headers=headers, signed=False)
    with pytest.raises(VerificationFailed) as caught:
        await inbound.verify(req)
    assert caught.value.status == 401


async def test_body_that_is_not_utf8_is_401_not_a_crash(inbound: SlackAdapter) -> None:
    body = b"\xff\xfe garbage"
    with pytest.raises(VerificationFailed):
        await inbound.verify(request(body))


async def test_missing_signing_secret_fails_closed() -> None:
    slack = make_adapter(secret=None)
    with pytest.raises(VerificationFailed) as caught:
        await slack.verify(request(fixture_bytes("message_channels.json")))
    assert caught.value.status == 404  # Socket Mode without a signing secret: the webhook is no door


# ----- parse: messages -------------------------------------------------------------------------


async def test_url_verification_answers_the_challenge_as_text(inbound: SlackAdapter) -> None:
    parsed = await inbound.parse(request(fixture_bytes("url_verification.json")))
    assert parsed.messages == []
    assert parsed.reply.status == 200
    assert parsed.reply.body == b"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    assert parsed.reply.content_type.startswith("text/plain")


async def test_channel_message_parses(inbound: SlackAdapter) -> None:
    parsed = await inbound.parse(request(fixture_bytes("message_channels.json")))
    assert parsed.reply.status == 200
    (message,) = parsed.messages
    assert message.channel == "slack"
    assert message.provider_message_id == "Ev123ABC456"
    assert message.sender == Address(channel="slack", handle="T123ABC456:U123ABC456")
    assert message.text == "Live long and prospect."
    assert message.reply_target == {"channel": "C123ABC456", "thread_ts": "1355517523.000005"}
    assert message.received_at == datetime.fromtimestamp(1355517523, tz=UTC)
    assert message.extras["channel_type"] == "channel"
    assert message.extras["team_id"] == "T123ABC456"
    assert message.extras["ts"] == "1355517523.000005"
    json.dumps(message.extras)  # JSON-serialisable


async def test_direct_message_parses(inbound: SlackAdapter) -> None:
    (message,) = (await inbound.parse(request(fixture_bytes("message_im.json")))).messages
    assert message.provider_message_id == "Ev0PV52K21"
    assert str(message.sender) == "slack:T123ABC456:U2147483697"
    assert message.reply_target == {"channel": "D024BE91L", "thread_ts": "1355517523.000005"}
    assert message.extras["channel_type"] == "im"


async def test_app_mention_parses(inbound: SlackAdapter) -> None:
    (message,) = (await inbound.parse(request(fixture_bytes("app_mention.json")))).messages
    assert message.provider_message_id == "Ev123ABC456"
    assert str(message.sender) == "slack:T123ABC456:U061F7AUR"
    assert message.reply_target == {"channel": "C123ABC456", "thread_ts": "1515449522.000016"}
    assert message.extras["event_type"] == "app_mention"
    # the bot user is not known from this payload (its authorization is not a bot's): text kept whole
    assert message.text == "<@U0LAN0Z89> is it everything a river should be?"


async def test_app_mention_of_our_bot_drops_the_mention_from_the_text(inbound: SlackAdapter) -> None:
    payload = fixture_json("app_mention.json")
    payload["authorizations"] = [{"team_id": "T123ABC456", "user_id": "U0LAN0Z89", "is_bot": True}]
    (message,) = (await inbound.parse(request(payload))).messages
    assert message.text == "is it everything a river should be?"


async def test_channel_message_mentioning_our_bot_is_left_to_its_app_mention(inbound: SlackAdapter) -> None:
    payload = fixture_json("message_channels.json")
    payload["authorizations"] = [{"team_id": "T123ABC456", "user_id": "U0LAN0Z89", "is_bot": True}]
    payload["event"]["text"] = "<@U0LAN0Z89> where is my refund?"
    assert (await inbound.parse(request(payload))).messages == []


async def test_thread_reply_answers_in_the_same_thread(inbound: SlackAdapter) -> None:
    payload = fixture_json("message_channels.json")
    payload["event"]["thread_ts"] = "1355517000.000001"
    (message,) = (await inbound.parse(request(payload))).messages
    assert message.reply_target == {"channel": "C123ABC456", "thread_ts": "1355517000.000001"}


async def test_shared_channel_sender_is_keyed_on_their_own_team(inbound: SlackAdapter) -> None:
    payload = fixture_json("message_channels.json")
    payload["event"]["user_team"] = "T999OTHER1"
    payload["event"]["source_team"] = "T999OTHER1"
    payload["is_ext_shared_channel"] = True
    (message,) = (await inbound.parse(request(payload))).messages
    assert str(message.sender) == "slack:T999OTHER1:U123ABC456"
    assert message.extras["is_ext_shared_channel"] is True


async def test_enterprise_grid_user_id_is_accepted(inbound: SlackAdapter) -> None:
    payload = fixture_json("message_channels.json")
    payload["enterprise_id"] = "E0123ABCD"
    payload["event"]["user"] = "W012A3CDE"
    (message,) = (await inbound.parse(request(payload))).messages
    assert str(message.sender) == "slack:T123ABC456:W012A3CDE"
    assert message.extras["enterprise_id"] == "E0123ABCD"


async def test_retry_headers_are_kept_in_extras_and_the_id_is_unchanged(inbound: SlackAdapter) -> None:
    body = fixture_bytes("message_channels.json")
    first = (await inbound.parse(request(body))).messages[0]
    retry = request(body, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    again = (await inbound.parse(retry)).messages[0]
    assert again.provider_message_id == first.provider_message_id == "Ev123ABC456"
    assert again.extras["retry_num"] == 1
    assert again.extras["retry_reason"] == "http_timeout"
    assert "retry_num" not in first.extras


async def test_file_share_with_text_is_a_person_writing(inbound: SlackAdapter) -> None:
    payload = fixture_json("message_im.json")
    payload["event"]["subtype"] = "file_share"
    payload["event"]["files"] = [{"id": "F0123ABC", "name": "invoice.pdf"}]
    (message,) = (await inbound.parse(request(payload))).messages
    assert message.extras["file_ids"] == ["F0123ABC"]


# ----- parse: noise ----------------------------------------------------------------------------


def _noise_variants() -> list[tuple[str, dict[str, Any]]]:
    base = fixture_json("message_channels.json")
    variants: list[tuple[str, dict[str, Any]]] = [
        ("message_changed (documented)", fixture_json("message_changed.json")),
        ("bot_message (documented)", fixture_json("bot_message.json")),
    ]

    def variant(label: str, **event_changes: Any) -> None:
        payload = copy.deepcopy(base)
        for key, value in event_changes.items():
            if value is None:
                payload["event"].pop(key, None)
            else:
                payload["event"][key] = value
        variants.append((label, payload))

    variant("bot message without subtype", bot_id="B0123ABC", app_id="A0123ABC")
    variant("channel_join", subtype="channel_join", text="<@U123ABC456> has joined the channel")
    variant("message_deleted", subtype="message_deleted", deleted_ts="1355517523.000005")
    variant("channel_topic", subtype="channel_topic", topic="new topic")
    variant("no text", text="")
    variant("whitespace text", text="  \n ")
    variant("no user", user=None)
    variant("reaction", type="reaction_added", reaction="thumbsup")
    own = copy.deepcopy(base)
    own["authorizations"] = [{"team_id": "T123ABC456", "user_id": "U123ABC456", "is_bot": True}]
    variants.append(("our own bot user", own))
    variants.append(("app_rate_limited", {"type": "app_rate_limited", "team_id": "T123ABC456"}))
    variants.append(("unknown envelope", {"type": "block_actions", "team_id": "T123ABC456"}))
    return variants


@pytest.mark.parametrize(
    ("label", "payload"), _noise_variants(), ids=lambda v: v if isinstance(v, str) else ""
)
async def test_noise_is_a_plain_200_with_no_message(
    inbound: SlackAdapter, label: str, payload: dict[str, Any]
) -> None:
    parsed = await inbound.parse(request(payload))
    assert parsed.messages == [], label
    assert parsed.reply.status == 200


async def test_bot_user_learned_from_auth_test_is_dropped(adapter: SlackAdapter) -> None:
    info = await adapter.auth_test()
    assert info["user_id"] == BOT_USER
    payload = fixture_json("message_im.json")
    payload["event"]["user"] = BOT_USER
    assert (await adapter.parse(request(payload))).messages == []


# ----- parse: garbage ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b"payload=%7B%22type%22%3A%22block_actions%22%7D",
        b"[1, 2, 3]",
        b'"a string"',
        b"\xff\xfe",
        b'{"type": "event_callback", "event_id": "Ev1"}',
        b'{"type": "event_callback", "event": {"type": "message"}}',
        b'{"type": "url_verification"}',
    ],
)
async def test_garbled_bodies_are_bad_requests(inbound: SlackAdapter, body: bytes) -> None:
    with pytest.raises(BadRequest) as caught:
        await inbound.parse(request(body))
    assert 400 <= caught.value.status < 500


async def test_unusable_user_id_is_a_bad_request(inbound: SlackAdapter) -> None:
    payload = fixture_json("message_channels.json")
    payload["event"]["user"] = "not a slack id!"
    with pytest.raises(BadRequest):
        await inbound.parse(request(payload))


# ----- send --------------------------------------------------------------------------------


async def test_send_posts_in_the_thread_with_the_bot_token(adapter: SlackAdapter, fake: FakeSlackAPI) -> None:
    delivery = await adapter.send(outbound("Your refund is on its way."))
    (posted,) = fake.posted
    assert posted.channel == "C123ABC456"
    assert posted.thread_ts == "1355517523.000005"
    assert posted.text == "Your refund is on its way."
    assert delivery.provider_message_ids == (posted.ts,)
    (call,) = fake.calls
    assert call.method == "chat.postMessage"
    assert call.authorization == f"Bearer {TOKEN}"


async def test_send_without_thread_posts_top_level(adapter: SlackAdapter, fake: FakeSlackAPI) -> None:
    await adapter.send(outbound("hi", channel="D024BE91L"))
    assert fake.posted[0].thread_ts is None
    assert "thread_ts" not in fake.calls[0].params


async def test_send_without_a_channel_goes_to_the_users_dm(adapter: SlackAdapter, fake: FakeSlackAPI) -> None:
    message = OutboundMessage(
        channel="slack",
        recipient=Address(channel="slack", handle="T123ABC456:U123ABC456"),
        text="hello",
        idempotency_key="k",
    )
    await adapter.send(message)
    assert fake.posted[0].channel == "U123ABC456"


async def test_slack_control_characters_are_escaped(adapter: SlackAdapter, fake: FakeSlackAPI) -> None:
    await adapter.send(outbound("Tom & Jerry <!channel> a > b"))
    assert fake.posted[0].text == "Tom &amp; Jerry &lt;!channel&gt; a &gt; b"


async def test_long_reply_is_split_at_the_limit_one_request_per_part(
    adapter: SlackAdapter, fake: FakeSlackAPI
) -> None:
    paragraphs = [("word " * 300).strip() + "." for _ in range(6)]  # 6 x 1,500 characters
    text = "\n\n".join(paragraphs)
    delivery = await adapter.send(outbound(text))
    posted = fake.posted
    assert len(posted) == 3 == len(fake.calls)
    assert all(len(p.text) <= MAX_TEXT_CHARS for p in posted)
    assert [p.text for p in posted] == ["\n\n".join(paragraphs[i : i + 2]) for i in (0, 2, 4)]
    assert all(p.thread_ts == "1355517523.000005" for p in posted)
    assert delivery.provider_message_ids == tuple(p.ts for p in posted)


async def test_parts_already_sent_are_skipped(adapter: SlackAdapter, fake: FakeSlackAPI) -> None:
    text = "\n\n".join(("x" * 3_000, "y" * 3_000, "z" * 3_000))
    message = outbound(text)
    retry = OutboundMessage(
        channel=message.channel,
        recipient=message.recipient,
        text=message.text,
        idempotency_key=message.idempotency_key,
        reply_target=message.reply_target,
        parts_sent=2,
    )
    delivery = await adapter.send(retry)
    assert [p.text for p in fake.posted] == ["z" * 3_000]
    assert len(delivery.provider_message_ids) == 1


async def test_failure_on_a_later_part_reports_the_parts_sent(
    adapter: SlackAdapter, fake: FakeSlackAPI
) -> None:
    text = "\n\n".join(("x" * 3_000, "y" * 3_000))
    await adapter.send(outbound("warm-up"))  # the forced error must hit the second part
    fake.reset()
    fake.push(200, {"ok": True, "channel": "C123ABC456", "ts": "1700000000.111111"})
    fake.fail_server_error(503)
    with pytest.raises(TransientDeliveryError) as caught:
        await adapter.send(outbound(text))
    assert caught.value.sent_ids == ("1700000000.111111",)


async def test_rate_limit_becomes_transient_with_retry_after(
    adapter: SlackAdapter, fake: FakeSlackAPI
) -> None:
    fake.fail_ratelimited(retry_after=7)
    with pytest.raises(TransientDeliveryError) as caught:
        await adapter.send(outbound("hi"))
    assert caught.value.retry_after == 7.0
    assert caught.value.sent_ids == ()
    assert fake.posted == []
    assert [c.answered_status for c in fake.calls] == [429]


async def test_rate_limit_is_waited_out_by_the_sdk_then_sent_once(fake: FakeSlackAPI) -> None:
    slack = make_adapter(fake.api_url, rate_limit_retries=1)
    try:
        fake.fail_ratelimited(retry_after=0)
        delivery = await slack.send(outbound("hi"))
    finally:
        await slack.aclose()
    assert len(fake.posted) == 1
    assert [c.answered_status for c in fake.calls] == [429, 200]
    assert delivery.provider_message_ids == (fake.posted[0].ts,)


async def test_long_retry_after_is_left_to_the_worker(fake: FakeSlackAPI) -> None:
    slack = make_adapter(fake.api_url, rate_limit_retries=3, max_rate_limit_wait=5)
    try:
        fake.fail_ratelimited(retry_after=30)
        with pytest.raises(TransientDeliveryError) as caught:
            await slack.send(outbound("hi"))
    finally:
        await slack.aclose()
    assert caught.value.retry_after == 30.0
    assert len(fake.calls) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_are_transient(adapter: SlackAdapter, fake: FakeSlackAPI, status: int) -> None:
    fake.fail_server_error(status)
    with pytest.raises(TransientDeliveryError):
        await adapter.send(outbound("hi"))
    assert fake.posted == []


async def test_server_error_retried_by_the_sdk_then_sent_once(fake: FakeSlackAPI) -> None:
    slack = make_adapter(fake.api_url, server_error_retries=2)
    try:
        fake.fail_server_error(500)
        await slack.send(outbound("hi"))
    finally:
        await slack.aclose()
    assert len(fake.posted) == 1
    assert [c.answered_status for c in fake.calls] == [500, 200]


@pytest.mark.parametrize("error", ["internal_error", "fatal_error", "service_unavailable"])
async def test_slack_side_errors_are_transient(adapter: SlackAdapter, fake: FakeSlackAPI, error: str) -> None:
    fake.fail_error(error)
    with pytest.raises(TransientDeliveryError):
        await adapter.send(outbound("hi"))


@pytest.mark.parametrize(
    "error",
    [
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "account_inactive",
        "invalid_auth",
        "token_revoked",
        "msg_too_long",
        "no_text",
        "missing_scope",
    ],
)
async def test_permanent_errors(adapter: SlackAdapter, fake: FakeSlackAPI, error: str) -> None:
    fake.fail_error(error)
    with pytest.raises(PermanentDeliveryError) as caught:
        await adapter.send(outbound("private reply text"))
    assert error in str(caught.value)
    assert "private reply text" not in str(caught.value)


async def test_wrong_token_is_permanent(fake: FakeSlackAPI) -> None:
    fake.token = "xoxb-another-token"
    slack = make_adapter(fake.api_url)
    try:
        with pytest.raises(PermanentDeliveryError, match="invalid_auth"):
            await slack.send(outbound("hi"))
    finally:
        await slack.aclose()


async def test_unknown_channel_at_the_fake_is_permanent(fake: FakeSlackAPI) -> None:
    fake.channels = {"C000KNOWN1"}
    slack = make_adapter(fake.api_url)
    try:
        with pytest.raises(PermanentDeliveryError, match="channel_not_found"):
            await slack.send(outbound("hi"))
    finally:
        await slack.aclose()


async def test_timeout_is_transient(fake: FakeSlackAPI) -> None:
    fake.delay = 5.0
    slack = make_adapter(fake.api_url, timeout=0.2)
    try:
        with pytest.raises(TransientDeliveryError, match="Timeout"):
            await slack.send(outbound("hi"))
    finally:
        await slack.aclose()


async def test_connection_refused_is_transient() -> None:
    with FakeSlackAPI() as gone:
        url = gone.api_url
    slack = make_adapter(url)
    try:
        with pytest.raises(TransientDeliveryError):
            await slack.send(outbound("hi"))
    finally:
        await slack.aclose()


async def test_empty_reply_is_permanent_without_a_request(adapter: SlackAdapter, fake: FakeSlackAPI) -> None:
    with pytest.raises(PermanentDeliveryError):
        await adapter.send(outbound("   \n"))
    assert fake.calls == []


async def test_form_encoded_post_is_understood_by_the_fake(fake: FakeSlackAPI) -> None:
    """The fake takes chat.postMessage as slack_sdk may send it: form fields, token in the body."""
    from slack_sdk.web.async_client import AsyncWebClient

    client = AsyncWebClient(base_url=fake.api_url)
    response = await client.api_call(
        "chat.postMessage", data={"token": TOKEN, "channel": "C1", "text": "form body"}
    )
    assert response["ok"] is True
    assert fake.posted[0].text == "form body"


async def test_constructor_does_no_io_and_aclose_is_idempotent() -> None:
    slack = make_adapter("http://127.0.0.1:9/api/")  # nothing listens there
    await slack.aclose()
    await slack.aclose()


async def test_sends_are_paced_per_channel(fake: FakeSlackAPI) -> None:
    sleeps: list[float] = []

    async def record(delay: float) -> None:
        sleeps.append(delay)

    pacer = ChannelPacer(interval=1.0, burst=1, clock=lambda: 100.0, sleep=record)
    slack = make_adapter(fake.api_url, pacer=pacer)
    try:
        await slack.send(outbound("one", channel="C1"))
        await slack.send(outbound("two", channel="C1"))
        await slack.send(outbound("other channel", channel="C2"))
        await slack.send(outbound("three", channel="C1"))
    finally:
        await slack.aclose()
    assert sleeps == [1.0, 2.0]
    assert [p.text for p in fake.posted] == ["one", "two", "other channel", "three"]


# ----- pacer, splitter, manifest --------------------------------------------------------------


async def test_pacer_allows_a_burst_then_one_per_interval() -> None:
    now = [0.0]
    sleeps: list[float] = []

    async def fake_sleep(delay: float) -> None:
        sleeps.append(delay)

    pacer = ChannelPacer(interval=1.0, burst=3, clock=lambda: now[0], sleep=fake_sleep)
    delays = [pacer.reserve("C1") for _ in range(5)]
    assert delays == [0.0, 0.0, 0.0, 1.0, 2.0]
    now[0] = 10.0  # idle long enough: the burst is back
    assert [pacer.reserve("C1") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert pacer.reserve("C2") == 0.0
    await pacer.wait("C1")
    assert sleeps == [1.0]


def test_pacer_off() -> None:
    pacer = ChannelPacer(interval=0)
    assert [pacer.reserve("C1") for _ in range(10)] == [0.0] * 10


def test_pacer_forgets_idle_channels() -> None:
    now = [0.0]
    pacer = ChannelPacer(interval=1.0, burst=1, clock=lambda: now[0], max_channels=4)
    for i in range(4):
        pacer.reserve(f"C{i}")
    now[0] = 5.0
    pacer.reserve("C9")
    assert len(pacer._local._tat) == 1  # this process's own slots (bound limits keep theirs)


def test_split_short_text_is_one_part() -> None:
    assert split_text("  hello  ") == ["hello"]
    assert split_text(" \n ") == []


def test_split_prefers_paragraphs_then_lines_then_sentences_then_words() -> None:
    assert split_text("a" * 30 + "\n\n" + "b" * 30, limit=40) == ["a" * 30, "b" * 30]
    assert split_text("a" * 30 + "\n" + "b" * 30, limit=40) == ["a" * 30, "b" * 30]
    assert split_text("a" * 25 + ". " + "b" * 25, limit=40) == ["a" * 25 + ".", "b" * 25]
    assert split_text("aaaa " * 20, limit=40) == ["aaaa " * 7 + "aaaa"] * 2 + ["aaaa " * 3 + "aaaa"]


def test_split_hard_cuts_a_long_word_but_not_an_entity() -> None:
    assert split_text("x" * 100, limit=40) == ["x" * 40, "x" * 40, "x" * 20]
    text = escape_text("y" * 38 + "&" + "z" * 10)
    parts = split_text(text, limit=40)
    assert parts == ["y" * 38, "&amp;" + "z" * 10]


@pytest.mark.parametrize("size", [4_000, 4_001, 12_345, 40_000])
def test_split_parts_fit_and_keep_the_text(size: int) -> None:
    words = " ".join(f"w{i}" for i in range(size))[:size]
    parts = split_text(words)
    assert all(0 < len(p) <= MAX_TEXT_CHARS for p in parts)
    assert " ".join(parts).split() == words.split()


def test_app_manifest() -> None:
    manifest = app_manifest("https://support.example.com/")
    assert manifest["display_information"]["name"] == "Threadline"
    assert manifest["features"]["bot_user"]["display_name"] == "Threadline"
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is True
    events = manifest["settings"]["event_subscriptions"]
    assert events["request_url"] == "https://support.example.com/webhooks/slack/events"
    assert set(events["bot_events"]) == {"message.im", "message.channels", "app_mention"}
    assert manifest["settings"]["interactivity"] == {
        "is_enabled": True,
        "request_url": "https://support.example.com/webhooks/slack/interactive",  # the rating buttons
    }
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == {
        "chat:write",
        "files:read",  # the files customers share (url_private)
        "files:write",  # files an operator sends back (files_upload_v2)
        "im:history",
        "im:write",  # conversations.open, for a file to a user's DM
        "channels:history",
        "app_mentions:read",
        "users:read",
        "users:read.email",  # profile emails of trusted workspaces
    }
    json.dumps(manifest)
    with pytest.raises(ValueError, match="https"):
        app_manifest("support.example.com")
