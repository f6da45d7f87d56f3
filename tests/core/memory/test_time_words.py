"""Recall's time prior (``core.memory.time_words``, ``ranking.TIME_PRIOR``): for a message that asks when,
the memory that says when ranks ahead of equally close lines that do not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.memory import ranking
from core.memory.local import LocalMemory
from core.memory.time_words import MENTIONS_TIME, asks_when, says_when, with_time_flag
from core.messages import ChatMessage, Provenance
from core.settings import LLMSettings


@pytest.mark.parametrize(
    "text",
    [
        "It went down last Tuesday.",
        "I ordered the router two weeks ago.",
        "We moved in March.",
        "The refund came yesterday.",
        "I have had this plan since 2021.",
        "The bill of 5/14 is wrong.",
        "It has been slow for a few days.",
        "I called the other day.",
        "In May 2025 I switched.",
        "I paid on Mar 5.",  # an abbreviated month in a date
        "The charge of 12 Dec is wrong.",
        "Prices went up in Jan.",
        "Nothing works since Sept. 3",
        "Oct 3rd: the technician came.",
    ],
)
def test_a_memory_that_says_when(text: str) -> None:
    assert says_when(text)


@pytest.mark.parametrize(
    "text",
    [
        "My router keeps dropping the wifi.",
        "May I change my plan?",  # the modal verb
        "The modem is blinking red.",
        "Please send the invoice to my email.",
        "Jan from your team helped me.",  # a first name, not January
        "The box says DEC on it.",
    ],
)
def test_a_memory_that_does_not_say_when(text: str) -> None:
    assert not says_when(text)


@pytest.mark.parametrize(
    ("query", "asks"),
    [
        ("When did my internet go down?", True),
        ("How long ago did I order the router?", True),
        ("What year did I open the account?", True),
        ("How many days has it been since the outage?", True),
        ("Why is my internet down?", False),
        ("What plan am I on?", False),
        ("I was charged twice last month.", False),  # holds a time word, but does not ask when
        ("When I called, nobody answered.", False),  # "when" opens a clause, not a question
        ("when did the refund go out", True),  # no question mark, still a question
        ("When I called, was the fault logged?", True),
    ],
)
def test_a_message_that_asks_when(query: str, asks: bool) -> None:
    assert asks_when(query) is asks


def test_the_flag_follows_the_text() -> None:
    assert with_time_flag({"data": "It broke yesterday."})[MENTIONS_TIME] is True
    assert MENTIONS_TIME not in with_time_flag({"data": "It broke.", MENTIONS_TIME: True})  # text changed
    assert with_time_flag({MENTIONS_TIME: True}) == {MENTIONS_TIME: True}  # no text: nothing to read
    payload = {"data": "It broke yesterday."}
    with_time_flag(payload)
    assert payload == {"data": "It broke yesterday."}  # a copy, never the caller's dict


def test_the_prior_lifts_dated_memories_for_a_question_about_time_only() -> None:
    dense = np.array([0.50, 0.52, 0.51, 0.10], dtype=np.float32)  # 1 is the closest, 0 says when
    keyword = np.zeros(4, dtype=np.float32)
    written = [None, None, None, None]
    dated = np.array([True, False, False, False])
    plain, _ = ranking.ranked(dense, keyword, written, dated=dated, asks_when=False)
    timed, _ = ranking.ranked(dense, keyword, written, dated=dated, asks_when=True)
    assert plain.tolist()[0] == 1
    assert timed.tolist()[0] == 0
    # a far weaker dated memory is not lifted over clearly better ones
    dense = np.array([0.12, 0.52, 0.51, 0.50], dtype=np.float32)
    keyword = np.array([0.0, 3.0, 2.5, 2.0], dtype=np.float32)
    order, _ = ranking.ranked(dense, keyword, written, dated=dated, asks_when=True)
    assert order.tolist()[:3] == [1, 2, 3]
    with pytest.raises(ValueError, match="differ in length"):
        ranking.ranked(dense, keyword, written, dated=dated[:3], asks_when=True)


async def test_recall_brings_the_line_that_says_when_first_for_a_when_question(tmp_path: Path) -> None:
    """Through the product's recall (the real embedder and both signals): the customer said when the outage
    began once, among lines about the same outage that share more words with the question."""
    memory = LocalMemory(data_dir=tmp_path, llm=LLMSettings())
    said = [
        "My internet is down again and the router lights are off.",
        "The internet went down on Sunday evening.",
        "Is the internet down in my area? The router shows no internet.",
        "I restarted the router but the internet is still down.",
    ]
    try:
        for turn, text in enumerate(said):
            await memory.remember(
                "cus_1",
                [ChatMessage(role="user", content=text)],
                provenance=Provenance(
                    channel="sms",
                    handle="sms:+15550000001",
                    message_ids=(f"inbox:{turn}",),
                    category="profile",
                ),
                infer=False,
            )
        when = await memory.recall("cus_1", "When did my internet go down?", limit=4)
        assert when[0].text == "The internet went down on Sunday evening."
        why = await memory.recall("cus_1", "Why is my internet down?", limit=4)
        assert why[0].text != "The internet went down on Sunday evening."
        assert all(MENTIONS_TIME not in m.metadata for m in when)  # the index's flag, not metadata
    finally:
        await memory.aclose()
