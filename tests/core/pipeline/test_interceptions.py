"""The chain of interceptions: which link answers which message, and in what order."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from core.messages import Address, Assurance, Control, Handled, InboundMessage, IncomingTurn, ReplyPolicy
from core.pipeline.interceptions import HELP_REPLY, Claimed, Outcome, chain
from core.store.models import InboxRow
from tests.core.harness import make_settings, running_hub
from tests.fakes.recording import RecordingSender
from tests.messages import sms_message


def claimed(
    *, control: str | None = None, policy: ReplyPolicy = ReplyPolicy.ANSWER, text: str = "hi"
) -> Claimed:
    row = InboxRow(
        id=7,
        channel="sms",
        sender="sms:+15551230000",
        text=text,
        control=control,
        reply_policy=policy.value,
    )
    return Claimed(
        row=row,
        customer_id="cus_1",
        sender=Address.parse("sms:+15551230000"),
        vouched_by=Assurance.UNVERIFIED if policy is ReplyPolicy.ACKNOWLEDGE else Assurance.PLATFORM_ATTESTED,
    )


class Recording:
    """An identity interceptor that answers every message and remembers what it was shown."""

    def __init__(self) -> None:
        self.seen: list[IncomingTurn] = []

    async def intercept(self, turn: IncomingTurn) -> Handled | None:
        self.seen.append(turn)
        return Handled(reply="identity", stored_text="[kept out]", keep=False)


async def first(message: Claimed, identity: Recording | None = None) -> Outcome | None:
    for link in chain(identity):
        outcome = await link(message)
        if outcome is not None:
            return outcome
    return None


async def test_opt_out_keywords_come_first_even_from_a_stranger() -> None:
    identity = Recording()
    stop = await first(claimed(control="stop", policy=ReplyPolicy.ACKNOWLEDGE), identity)
    assert stop == Outcome(label="control", opt_out=True)
    assert await first(claimed(control="start"), identity) == Outcome(label="control", opt_out=False)
    assert await first(claimed(control="help"), identity) == Outcome(label="control", reply=HELP_REPLY)
    assert identity.seen == []  # never shown to the identity layer


async def test_a_stranger_is_acknowledged_and_never_reaches_the_identity_layer() -> None:
    identity = Recording()
    outcome = await first(claimed(policy=ReplyPolicy.ACKNOWLEDGE, text="/link +15559990000"), identity)
    assert outcome == Outcome(label="acknowledgement", acknowledge=True, keep=True)
    assert identity.seen == []


async def test_the_identity_layer_sees_the_rest_with_the_channels_word() -> None:
    identity = Recording()
    outcome = await first(claimed(text="123456"), identity)
    assert outcome == Outcome(label="identity", reply="identity", stored_text="[kept out]")
    [turn] = identity.seen
    assert (turn.inbox_id, turn.customer_id, turn.text, turn.authenticated) == (7, "cus_1", "123456", True)
    assert await first(claimed(text="hello")) is None  # no identity layer: the agent answers


async def test_answers_by_an_interception_and_by_the_agent_fail_nothing_on_the_way(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Both paths commit, then wake the delivery and memory lanes; nothing may fail after the commit (a
    failure there is only logged by the lane, and the reply still goes out by polling: look at the log)."""
    sender = RecordingSender("sms")
    with caplog.at_level(logging.WARNING):
        async with running_hub(make_settings(tmp_path), sender) as hub:
            await hub.accept(_help())
            await hub.accept(sms_message("SM2", "my router keeps dropping the wifi"))
            await sender.wait_for(2)
            assert await hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}
    assert sender.sent[0].text == HELP_REPLY
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def _help() -> InboundMessage:
    message = sms_message("SM1", "HELP")
    return dataclasses.replace(message, control=Control.HELP)
