"""The inbox: an inbound message is committed under its unique key before the platform is answered.

Group commit: webhooks that arrive while a commit is in flight wait for the next one, and that one
writes them all in a single transaction (one ``INSERT … ON CONFLICT DO NOTHING``, compiled once and run
for every row, in arrival order). Each caller still returns only once its own row is durable, so nothing
is acknowledged before it is committed; under load the cost of a transaction is shared by every webhook
that arrived during the previous one. If a batch fails as a whole, its messages are retried one by one,
so one bad message cannot fail the others.

Flood control (``core.pipeline.flood``) runs in the same transaction, once the batch's rows are in: the
new rows of senders over their rate become ``throttled`` (never answered), and the buckets are committed
with the rows. The insert returns the rows it stored, so only this transaction's own rows count (a
repeat that another process stored meanwhile is a repeat here too).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from core.messages import InboundMessage
from core.store.db import Database
from core.store.models import InboxRow
from core.store.wakeups import announce

if TYPE_CHECKING:
    from core.pipeline.flood import SenderLimits

log = logging.getLogger(__name__)

MAX_BATCH = 200  # rows per transaction (well under SQLite's limit on bound parameters)


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted:
    """What ``accept`` did: ``inbox_id`` of the row, whether it was a repeat of one already held, and
    whether it was stored ``throttled`` (over its sender's rate: never answered)."""

    inbox_id: int
    duplicate: bool
    throttled: bool = False


@dataclass(frozen=True, slots=True)
class _Waiting:
    message: InboundMessage
    done: asyncio.Future[Accepted]


def _key(message: InboundMessage) -> tuple[str, str]:
    return (message.channel, message.provider_message_id)


def _values(waiting: _Waiting) -> dict[str, Any]:
    message = waiting.message
    return {
        "channel": message.channel,
        "provider_message_id": message.provider_message_id,
        "sender": str(message.sender),
        "text": message.text,
        "reply_target": dict(message.reply_target),
        "attachments": [ref.as_json() for ref in message.attachments],
        "extras": dict(message.extras),
        "sender_assurance": message.sender_assurance.value,
        "private": message.private,
        "reply_policy": message.reply_policy.value,
        "control": message.control.value if message.control is not None else None,
        "shared_contact": message.shared_contact.as_json() if message.shared_contact is not None else None,
        "received_at": message.received_at,
        "status": "pending",
        "attempts": 0,
    }


class Inbox:
    """Commits inbound messages; a repeat of (channel, provider message id) is a no-op."""

    def __init__(
        self,
        db: Database,
        *,
        on_accept: Callable[[], None] | None = None,
        limits: SenderLimits | None = None,
    ) -> None:
        self._db = db
        self._on_accept = on_accept
        self._limits = limits
        self._queue: list[_Waiting] = []
        self._flusher: asyncio.Task[None] | None = None
        dialect = postgresql if db.dialect == "postgresql" else sqlite
        # RETURNING: the rows this statement stored (a conflict returns nothing)
        self._insert_row = (
            dialect.insert(InboxRow.__table__)
            .on_conflict_do_nothing(index_elements=["channel", "provider_message_id"])
            .returning(InboxRow.id, InboxRow.channel, InboxRow.provider_message_id)
        )

    async def accept(self, message: InboundMessage) -> Accepted:
        """Commit ``message``. Returns once the row is durable; only then may the platform be answered.

        A new message over its sender's rate is stored ``throttled`` (``Accepted.throttled``). Raises what
        the database raised when the row could not be committed (the caller answers non-2xx: a retry
        comes).
        """
        waiting = _Waiting(message, asyncio.get_running_loop().create_future())
        self._queue.append(waiting)
        if self._flusher is None or self._flusher.done():
            # a fresh context: the flusher writes for everyone, never as part of the caller's transaction
            self._flusher = asyncio.create_task(
                self._flush(), name="inbox:group-commit", context=contextvars.Context()
            )
        # shielded: a caller that goes away (the platform hung up) does not take the commit with it
        return await asyncio.shield(waiting.done)

    async def aclose(self) -> None:
        """Let a commit in progress finish (its callers are waiting for it) before the store closes."""
        flusher, self._flusher = self._flusher, None
        if flusher is not None and not flusher.done():
            await asyncio.gather(flusher, return_exceptions=True)

    async def _flush(self) -> None:
        batch: list[_Waiting] = []
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                await self._flush_batch(batch)
        except asyncio.CancelledError:  # shutting down: nobody is left waiting without an answer
            _settle([*batch, *self._queue], RuntimeError("the inbox is shutting down"))
            self._queue = []
            raise

    async def _flush_batch(self, batch: list[_Waiting]) -> None:
        try:
            results = await self._commit(batch)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch, exc)
                return
            log.warning("inbox batch of %d failed (%s); one by one now", len(batch), type(exc).__name__)
            results = []
            for one in batch:
                try:
                    results.extend(await self._commit([one]))
                except Exception as single:
                    _settle([one], single)
            batch = [w for w in batch if not w.done.done()]
        _deliver(batch, results)
        if self._on_accept is not None and any(not r.duplicate and not r.throttled for r in results):
            self._on_accept()
        if self._limits is not None:  # once a minute at most, after the callers have their answers
            await self._limits.prune_if_due(self._db)

    async def _commit(self, batch: Sequence[_Waiting]) -> list[Accepted]:
        """One transaction for the batch: look up the keys already held, insert the rest (one cached
        statement, executed for many rows, returning the rows it stored), flood control on those."""
        keys = list(dict.fromkeys(_key(w.message) for w in batch))
        inserted: dict[tuple[str, str], int] = {}
        throttled: set[int] = set()
        async with self._db.session() as session:
            held = await self._ids(session, keys)
            fresh: dict[tuple[str, str], _Waiting] = {}
            for waiting in batch:  # in arrival order (ids follow it), the first of repeated keys
                if _key(waiting.message) not in held:
                    fresh.setdefault(_key(waiting.message), waiting)
            if fresh:
                # ON CONFLICT DO NOTHING: another process may have stored one meanwhile (a repeat here)
                stored = await session.execute(self._insert_row, [_values(w) for w in fresh.values()])
                inserted = {(str(c), str(p)): int(i) for i, c, p in stored}
                if len(inserted) < len(fresh):
                    held.update(await self._ids(session, [k for k in fresh if k not in inserted]))
                ours = {inserted[k]: w for k, w in fresh.items() if k in inserted}
                throttled = await self._throttle(session, ours)
                if len(throttled) < len(inserted):
                    await announce(session, "inbox")  # other processes' workers: sent on commit
        results: list[Accepted] = []
        for waiting in batch:
            key = _key(waiting.message)
            if key in inserted and fresh.get(key) is waiting:
                over = inserted[key] in throttled
                results.append(Accepted(inbox_id=inserted[key], duplicate=False, throttled=over))
                log.debug("accepted inbox %s on %s (throttled=%s)", inserted[key], key[0], over)
            elif key in held or key in inserted:
                found = held.get(key) or inserted[key]
                results.append(Accepted(inbox_id=found, duplicate=True))
                log.debug("duplicate delivery on %s for inbox %s ignored", key[0], found)
            else:  # neither inserted nor there: the conflict target did not match (never expected)
                raise RuntimeError("an inbox row was neither inserted nor found")
        # one line per commit, not per message: under load it is the acknowledgement's own cost
        repeats = sum(r.duplicate for r in results)
        log.info("inbox committed %d (%d new, %d repeats)", len(results), len(results) - repeats, repeats)
        return results

    async def _throttle(self, session: Any, ours: dict[int, _Waiting]) -> set[int]:
        """Flood control for the rows this transaction stored (id → waiting, in arrival order): the ids of
        those over their sender's rate, now ``throttled``."""
        if self._limits is None or not ours:
            return set()
        over = await self._limits.throttled(session, self._db.dialect, [w.message for w in ours.values()])
        ids = {inbox_id for inbox_id, is_over in zip(ours, over, strict=True) if is_over}
        if ids:
            await session.execute(update(InboxRow).where(InboxRow.id.in_(ids)).values(status="throttled"))
        return ids

    @staticmethod
    async def _ids(session: Any, keys: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """The ids of the rows held under ``keys`` (those that exist)."""
        if not keys:
            return {}
        rows = await session.execute(
            select(InboxRow.id, InboxRow.channel, InboxRow.provider_message_id).where(
                tuple_(InboxRow.channel, InboxRow.provider_message_id).in_(keys)
            )
        )
        return {(str(c), str(p)): int(i) for i, c, p in rows}


def _deliver(batch: Sequence[_Waiting], results: Sequence[Accepted]) -> None:
    for waiting, result in zip(batch, results, strict=True):
        if not waiting.done.done():
            waiting.done.set_result(result)


def _settle(batch: Sequence[_Waiting], exc: BaseException) -> None:
    for waiting in batch:
        if not waiting.done.done():
            waiting.done.set_exception(exc)
