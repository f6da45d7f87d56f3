"""One received message from parse to commit: the step the SMTP listener and the IMAP poller share.

``ingest`` parses the raw bytes (``EmailAdapter._parse``: ``channels.email_parse.parse_email`` in a
thread) and commits the result with ``accept``, which returns only once the inbox row is durable. What
it returns tells the transport what it may now tell the other side:

- ``COMMITTED``: the inbox row exists (or already did: a repeat of a Message-ID is a no-op). SMTP answers
  ``250``; IMAP sets ``\\Seen``.
- ``NOISE``: mail never to be answered (auto-replies, lists, bounces, loops): nothing to commit, done.
- ``UNREADABLE``: mail that cannot be read (no usable ``From``, a structure too deep or too wide): done
  for good. SMTP answers ``550``; IMAP marks it seen so that it does not come back every round.
- ``PARSE_FAILED``: the parser raised something else. SMTP answers ``451`` (the sender's MTA retries,
  then gives up); IMAP marks it seen too (the same bytes would fail again, every round, for ever).
- ``COMMIT_FAILED``: the store refused or failed: nothing is acknowledged. SMTP answers ``451``; IMAP
  leaves the message unseen, and the next round fetches it again.

Log lines name the transport's id of the message (``source``), never an address or a body.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable

from channels.base import AcceptFn
from core.errors import BadRequest
from core.messages import InboundMessage

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    COMMITTED = "committed"
    NOISE = "noise"
    UNREADABLE = "unreadable"
    PARSE_FAILED = "parse_failed"
    COMMIT_FAILED = "commit_failed"


async def ingest(
    parse: Callable[[], Awaitable[InboundMessage | None]], accept: AcceptFn, *, source: str
) -> Outcome:
    """Parse, then commit; never raises (but ``CancelledError``). ``source`` names the message in logs."""
    try:
        message = await parse()
    except BadRequest:
        log.info("%s: unreadable message refused", source)
        return Outcome.UNREADABLE
    except Exception as exc:
        log.warning("%s: parsing failed (%s)", source, type(exc).__name__)
        return Outcome.PARSE_FAILED
    if message is None:
        return Outcome.NOISE
    try:
        accepted = await accept(message)
    except Exception as exc:
        log.warning("%s: commit failed (%s)", source, type(exc).__name__)
        return Outcome.COMMIT_FAILED
    log.info(
        "%s: message committed as inbox %s (duplicate=%s)", source, accepted.inbox_id, accepted.duplicate
    )
    return Outcome.COMMITTED
