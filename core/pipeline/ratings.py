"""Satisfaction: the customer's 1-5 rating of a resolved support case, in each channel's own way.

The resolution reply (``core.pipeline.cases.CaseChange``) asks "How did we do? Reply with a number from 1
(bad) to 5 (great)."; in a private conversation on Slack and Telegram it carries five buttons
(``core.pipeline.cases.rating_buttons``: Block Kit buttons, an inline keyboard) whose press comes back as a
message with ``extras["button"]`` = ``rate:<case id>:<1-5>``; on SMS and email the customer types the digit.

``RatingInterception``, a link of the worker's chain:

- a press rates the case it names, if that case is the presser's own, resolved and not yet rated, in a
  vouched private conversation: a modified client can send any value, so it is checked like any input. A
  second press is thanked and changes nothing; a press naming another customer's case is ignored;
- a message that is only a digit 1-5, within ``RATING_WINDOW`` of the question (``Case.rating_asked_at``:
  the bot's resolution reply, or a person's resolution that told the customer,
  ``core.pipeline.case_desk``), rates the case asked about last.

Either is stored once (``Ratings.rate_in``, a conditional update in the worker's transaction), counted in
``/metrics`` (``threadline_case_ratings_total{rating}``) and answered with a short thanks, never by the
agent. Logs carry ids only.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.metrics import Metrics
from core.pipeline.cases import RESOLVED
from core.pipeline.interceptions import Claimed, Outcome
from core.store.db import Database
from core.store.models import Case, utcnow

log = logging.getLogger(__name__)

RATING_WINDOW = timedelta(hours=24)
RATING_THANKS = "Thank you for your rating!"
RATING_ALREADY = "Thank you! We already have your rating for this case."
_RATING = re.compile(r"\s*([1-5])\s*[.!]?\s*")
_RATING_BUTTON = re.compile(r"rate:([1-9][0-9]{0,11}):([1-5])")


def rating_of(text: str) -> int | None:
    """The rating a message gives: a message that is only a digit 1-5."""
    found = _RATING.fullmatch(text[:20]) if len(text) <= 20 else None
    return int(found.group(1)) if found else None


def pressed_rating(value: object) -> tuple[int, int] | None:
    """(case id, rating) of a pressed rating button's value; None for anything else."""
    found = _RATING_BUTTON.fullmatch(value) if isinstance(value, str) and len(value) <= 32 else None
    return (int(found.group(1)), int(found.group(2))) if found else None


class Ratings:
    """Which case a rating is for, and storing it once."""

    def __init__(self, db: Database, *, metrics: Metrics | None = None) -> None:
        self._db = db
        self.metrics = metrics

    async def awaiting(self, customer_id: str, now: datetime | None = None) -> int | None:
        """The case whose rating the customer was asked for last, if unrated and asked within
        ``RATING_WINDOW``."""
        now = now or utcnow()
        async with self._db.read() as session:
            row = await session.scalar(
                select(Case)
                .where(
                    Case.customer_id == customer_id,
                    Case.status == RESOLVED,
                    Case.rating_asked_at.is_not(None),  # a person may resolve one without asking
                )
                .order_by(Case.rating_asked_at.desc(), Case.id.desc())
                .limit(1)
            )
        if row is None or row.rating is not None or row.rating_asked_at is None:
            return None
        if now - row.rating_asked_at > RATING_WINDOW:
            return None
        return row.id

    async def rateable(self, customer_id: str, case_id: int) -> bool | None:
        """Whether a rating button for ``case_id`` pressed by ``customer_id`` can rate it: True when it is
        their resolved, unrated case; False when it is theirs and rated already; None when it is not a
        resolved case of theirs (a forged or stale value)."""
        async with self._db.read() as session:
            row = await session.scalar(
                select(Case).where(
                    Case.id == case_id, Case.customer_id == customer_id, Case.status == RESOLVED
                )
            )
        if row is None:
            return None
        return row.rating is None

    async def rate_in(self, session: AsyncSession, *, customer_id: str, case_id: int, rating: int) -> bool:
        """Store the rating once (in the caller's transaction); False when it was rated meanwhile."""
        done = await session.execute(
            update(Case)
            .where(Case.id == case_id, Case.customer_id == customer_id, Case.rating.is_(None))
            .values(rating=rating, rated_at=utcnow())
        )
        if done.rowcount != 1:  # type: ignore[attr-defined]
            return False
        if self.metrics is not None:
            self.metrics.case_ratings.labels(str(rating)).inc()
        log.info("case %s rated by customer %s", case_id, customer_id)
        return True


class RatingInterception:
    """The chain's link for satisfaction: a digit 1-5 alone, answering the question asked with a case's
    resolution (within ``RATING_WINDOW``, once), is the case's rating: thanked, not answered by the agent."""

    def __init__(self, ratings: Ratings) -> None:
        self._ratings = ratings

    async def __call__(self, message: Claimed) -> Outcome | None:
        pressed = pressed_rating((message.row.extras or {}).get("button"))
        if pressed is not None:
            return await self._pressed(message, *pressed)
        rating = rating_of(message.row.text)
        if rating is None or not message.vouched or message.row.private is not True:
            return None
        case_id = await self._ratings.awaiting(message.customer_id)
        if case_id is None:
            return None
        return Outcome(label="rating", reply=RATING_THANKS, keep=True, case_rating=(case_id, rating))

    async def _pressed(self, message: Claimed, case_id: int, rating: int) -> Outcome:
        """A rating button: only its presser's own resolved case, in a private conversation, once."""
        if not message.vouched or message.row.private is not True:
            log.info("inbox %s: rating button outside a vouched private conversation ignored", message.row.id)
            return Outcome(label="rating_refused")
        rateable = await self._ratings.rateable(message.customer_id, case_id)
        if rateable is None:
            log.info("inbox %s: rating button for a case not the customer's ignored", message.row.id)
            return Outcome(label="rating_refused")
        if not rateable:
            return Outcome(label="rating_repeated", reply=RATING_ALREADY)
        return Outcome(label="rating", reply=RATING_THANKS, keep=True, case_rating=(case_id, rating))
