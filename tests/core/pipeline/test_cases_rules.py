"""The offline case rules: what reports a problem, what says it is solved, what is a rating; and what the
customer is told when a case opens or resolves."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.agent.agent import AgentTurn, CaseAction
from core.agent.prompt import CaseNote
from core.messages import Assurance
from core.pipeline.cases import (
    RATING_QUESTION,
    CaseChange,
    clipped,
    reports_problem,
    rules,
    says_solved,
)
from core.pipeline.ratings import rating_of
from core.store.models import Case

CARD = "4111 1111 1111 1111"
OPENED = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "I was charged twice for March",
        "my router is not working",
        "The app doesn't load anymore",
        "the screen is broken",
        "I want a refund",
        "please cancel my plan",
        "you sent the wrong size",
        "one item is missing from the box",
        "I have a complaint",
        "my parcel never arrived",
    ],
)
def test_a_problem_is_recognised(text: str) -> None:
    assert reports_problem(text) and not says_solved(text)


@pytest.mark.parametrize(
    "text",
    [
        "that fixed it",
        "It works now, thank you",
        "resolved",
        "all good now!",
        "thanks, solved",
        "the issue is resolved",
        "ok it's working again",
    ],
)
def test_a_solution_is_recognised(text: str) -> None:
    assert says_solved(text)


@pytest.mark.parametrize(
    "text",
    [
        "it's still not working",
        "this is not resolved at all",
        "it isn't fixed",
        "where is my order?",
        "hello",
    ],
)
def test_neither_or_negated_is_not_a_solution(text: str) -> None:
    assert not says_solved(text)


def turn(text: str, *cases: CaseNote) -> AgentTurn:
    return AgentTurn(
        customer_id="cus_1",
        assurance=Assurance.VERIFIED,
        sender="sms:+15551230000",
        channel="sms",
        text=text,
        inbox_id=1,
        cases=cases,
    )


def test_rules_open_one_case_at_a_time_and_resolve_the_latest() -> None:
    older = CaseNote(id=1, title="a", status="open", opened_at=OPENED)
    newer = CaseNote(id=2, title="b", status="open", opened_at=OPENED.replace(day=2))
    done = CaseNote(id=3, title="c", status="resolved", opened_at=OPENED.replace(day=3), resolved_at=OPENED)
    (opening,) = rules(turn(f"charged twice on card {CARD}"))
    assert opening.kind == "open" and opening.title is not None
    assert opening.title.startswith("charged twice on card") and CARD not in opening.title
    assert rules(turn("the refund is missing", older)) == ()  # one open already
    assert rules(turn("the refund is missing", done)) != ()  # a resolved one is no obstacle
    assert rules(turn("that fixed it", older, newer, done)) == (CaseAction(kind="resolve", case_id=2),)
    assert rules(turn("that fixed it")) == ()  # nothing open: nothing to resolve
    assert rules(turn("hello there")) == ()


def test_a_title_is_redacted_and_clipped() -> None:
    title = clipped(f"my card {CARD} was charged twice " + "and more " * 40, 80)
    assert CARD not in title and len(title) <= 80 and title.endswith("…")


@pytest.mark.parametrize(("text", "rating"), [("5", 5), (" 1 ", 1), ("3.", 3), ("4!", 4)])
def test_a_digit_alone_is_a_rating(text: str, rating: int) -> None:
    assert rating_of(text) == rating


@pytest.mark.parametrize("text", ["0", "6", "10", "5 stars", "I'd say 4", "", "4" + " " * 40])
def test_anything_else_is_no_rating(text: str) -> None:
    assert rating_of(text) is None


def test_the_reply_says_what_changed_and_asks_for_a_rating_last() -> None:
    opened = Case(id=4, customer_id="c", title="t", status="open", opened_by="rules", turn_ids=[])
    resolved = Case(id=2, customer_id="c", title="t", status="resolved", opened_by="rules", turn_ids=[])
    assert CaseChange().reply("Hi.") == "Hi."
    assert CaseChange(opened=[opened]).reply("Hi.") == "Hi.\n\nI've opened case #4 for this."
    assert CaseChange(opened=[opened]).reply("") == "I've opened case #4 for this."
    answer = CaseChange(resolved=[resolved]).reply("Glad to hear it.")
    assert answer == f"Glad to hear it.\n\nCase #2 is resolved. {RATING_QUESTION}"
