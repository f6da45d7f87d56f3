"""The team's side of a handoff: notices to the team, and escalation of the handoffs nobody answers.

``TeamNotices``: a new handoff and an escalation are outbox rows (``origin`` ``team``) to the configured
Slack channel of the team's own workspace and/or email address, keyed ``handoff:<id>:<event>:<recipient>``
(once each, with the outbox's retries and its one-send rule). A notice carries the handoff and customer
ids and the console link, never what the customer wrote.

``Escalations``: every waiting handoff that nobody has answered for ``escalate_after_minutes`` of the team's
online time (``core.pipeline.working_hours``) is marked ``escalated_at`` by a conditional update (so one
process escalates it, however many run the round), the escalation targets hear of it, and it stays open.

Used by ``core.pipeline.handoff.Handoffs``, which owns both.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.pipeline.working_hours import WorkingHours
from core.settings import HandoffSettings
from core.store.db import Database
from core.store.models import Handoff, OutboxRow, utcnow
from core.store.wakeups import announce

log = logging.getLogger(__name__)

EMAIL_SUBJECT = "Threadline: a customer waits for a person"


class TeamNotices:
    """The notices of a handoff ``event`` (``opened``, ``escalated``) to the team's configured targets."""

    def __init__(self, settings: HandoffSettings, *, console_url: str | None = None) -> None:
        self._settings = settings
        self._console_url = console_url.rstrip("/") + "/console/" if console_url else None

    def targets(self, event: str) -> list[tuple[str, str, dict[str, str]]]:
        """(channel, recipient, reply_target) of the team for ``event``."""
        settings = self._settings
        slack = [settings.notify_slack_channel]
        email = [settings.notify_email]
        if event == "escalated":
            slack.append(settings.escalate_slack_channel)
            email.append(settings.escalate_email)
        found: list[tuple[str, str, dict[str, str]]] = []
        for channel_id in dict.fromkeys(c for c in slack if c):
            found.append(("slack", f"slack:team:{channel_id}", {"channel": channel_id}))
        for address in dict.fromkeys(a.strip().lower() for a in email if a):
            found.append(("email", f"email:{address}", {"subject": EMAIL_SUBJECT}))
        return found

    def text(self, row: Handoff, event: str) -> str:
        """What the team reads: ids, how and by whom it was asked, the console link; no customer words."""
        link = f" {self._console_url}customers/{row.customer_id}" if self._console_url else ""
        if event == "escalated":
            minutes = int(self._settings.escalate_after_minutes)
            return (
                f"ESCALATED: handoff {row.id} (customer {row.customer_id}) has waited over {minutes} minutes "
                f"of working time without an answer.{link}"
            )
        via = f" on {row.channel}" if row.channel else ""
        return (
            f"A customer waits for a person: handoff {row.id} (customer {row.customer_id}){via}, "
            f"asked by {row.requested_by}.{link}"
        )

    def add_in(self, session: AsyncSession, row: Handoff, event: str) -> None:
        """Queue the notices of ``event`` in the caller's transaction."""
        for channel, recipient, reply_target in self.targets(event):
            session.add(
                OutboxRow(
                    idempotency_key=f"handoff:{row.id}:{event}:{recipient}"[:128],
                    channel=channel,
                    recipient=recipient,
                    customer_id=None,
                    reply_target=reply_target,
                    text=self.text(row, event),
                    status="pending",
                    origin="team",
                )
            )


class Escalations:
    """Escalate the waiting handoffs nobody answered within the team's online time."""

    def __init__(
        self, db: Database, settings: HandoffSettings, hours: WorkingHours, notices: TeamNotices
    ) -> None:
        self._db = db
        self._settings = settings
        self._hours = hours
        self._notices = notices

    async def escalate_due(self, now: datetime | None = None) -> list[int]:
        """Escalate every waiting, unanswered handoff past ``escalate_after_minutes`` of online time;
        the ids this call escalated (not those another process did meanwhile)."""
        now = now or utcnow()
        limit = self._settings.escalate_after_minutes * 60
        async with self._db.read() as session:
            waiting = list(
                await session.execute(
                    select(Handoff.id, Handoff.opened_at).where(
                        Handoff.status == "waiting",
                        Handoff.answered_at.is_(None),
                        Handoff.escalated_at.is_(None),
                    )
                )
            )
        due = [hid for hid, opened in waiting if self._hours.online_seconds(opened, now) >= limit]
        escalated: list[int] = []
        for handoff_id in due:
            async with self._db.session() as session:
                marked = await session.execute(
                    update(Handoff)
                    .where(
                        and_(
                            Handoff.id == handoff_id,
                            Handoff.escalated_at.is_(None),
                            Handoff.status == "waiting",
                        )
                    )
                    .values(escalated_at=now)
                )
                if marked.rowcount != 1:  # type: ignore[attr-defined]
                    continue  # taken, answered or escalated by another process meanwhile
                row = await session.get(Handoff, handoff_id)
                assert row is not None
                self._notices.add_in(session, row, "escalated")
                await announce(session, "outbox")
            escalated.append(handoff_id)
            log.warning("handoff %s escalated: nobody answered in time", handoff_id)
        return escalated
