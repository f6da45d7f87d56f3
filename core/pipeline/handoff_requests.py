"""A customer asking for a person, and the interception that keeps a handed-off conversation silent.

``asks_for_person``: "human", "agent", "talk to a person" and the like (a short message that is only such
a request, or the phrase inside a longer one); "my travel agent" is not.

``HandoffInterception`` is the chain's link for handoffs (``core.pipeline.interceptions``): while a
customer's handoff is open, their message is kept (stored, logged, remembered) and not answered; a
private message from a vouched sender asking for a person opens a waiting one and is answered once with
the acknowledgement (``Handoffs.acknowledgement``: a person will answer, and when the team is online).
"""

from __future__ import annotations

import re

from core.pipeline.handoff import Handoffs
from core.pipeline.interceptions import Claimed, Outcome

# a short message that is only a request for a person ("human", "an agent please", "operator!")
_ALONE = re.compile(
    r"^\s*(?:(?:i\s+(?:want|need)|give\s+me|get\s+me|can\s+i\s+(?:get|have)|let\s+me\s+talk\s+to)\s+)?"
    r"(?:a|an|the|some)?\s*(?:real\s+|live\s+)?(?:human|agent|person|operator|representative|people|someone)"
    r"(?:\s+please)?\s*[.!?]*\s*(?:please)?[.!?]*\s*$",
    re.IGNORECASE,
)
# a request anywhere in a longer message ("can I talk to a person about my bill?")
_PHRASE = re.compile(
    r"\b(?:talk|speak|chat)\s+(?:to|with)\s+(?:a\s+|an\s+|some\s*one\s+|your\s+|a\s+real\s+|a\s+live\s+)?"
    r"(?:real\s+|live\s+)?(?:human|person|agent|operator|representative|someone|somebody|people)\b"
    r"|\b(?:real|live)\s+(?:human|person|agent)\b"
    r"|\bhuman\s+(?:agent|being|support|please)\b",
    re.IGNORECASE,
)


def asks_for_person(text: str) -> bool:
    """Whether a customer's message asks for a person instead of the bot."""
    clipped = text[:500]
    return bool(_ALONE.match(clipped) or _PHRASE.search(clipped))


class HandoffInterception:
    """The chain's link for handoffs (``core.pipeline.interceptions``): while one is open, a message is kept
    (stored, logged, remembered) and not answered; a private message asking for a person opens one."""

    def __init__(self, handoffs: Handoffs) -> None:
        self._handoffs = handoffs

    async def __call__(self, message: Claimed) -> Outcome | None:
        if await self._handoffs.current(message.customer_id) is not None:
            return Outcome(label="handoff", keep=True)
        # only a sender its channel vouches for opens one: a forged sender must not silence the bot for
        # the customer it claims to be (unvouched ones are answered as usual)
        if message.vouched and message.row.private is True and asks_for_person(message.row.text):
            return Outcome(
                label="handoff", keep=True, reply=self._handoffs.acknowledgement(), handoff="customer"
            )
        return None
