"""The event lane: sends due deliveries to their endpoints, signed, retried, dead after bounded tries.

Every due row of ``event_deliveries`` (``pending``, or ``failed`` with its retry due) is claimed with the
store's leases (``core.store.leases``) before it is sent, so two processes never send one delivery at
once. An attempt re-checks the endpoint's URL (``core.events.addresses``: the host must still resolve to
public addresses) and connects to the very address it checked (the URL's host stays in ``Host`` and the
TLS server name). It POSTs the stored JSON body with the Standard Webhooks headers (``core.events.signing``)
and reads nothing of the answer but its status: a 2xx within ``events.timeout`` marks the delivery
``sent``; anything else (a 3xx too: redirects are never followed; a timeout; a refused address) is a failed
try, retried with capped exponential backoff under the same ``webhook-id``, and after
``events.max_attempts`` tries the delivery is ``dead`` (``POST /admin/event-endpoints/{id}/deliveries/
{webhook-id}/retry`` queues it again).

Deliveries are independent (no order per endpoint: one failing event does not hold the others back;
receivers order by the payload's ``timestamp``). The window for a repeat: a process killed after the
receiver answered and before ``sent`` was recorded leaves the claim to lapse, and the delivery is sent
again with the same ``webhook-id`` (receivers drop repeats by it, as the Standard Webhooks spec asks).
On PostgreSQL a recorded event wakes the lane of every process at once (``record_event`` announces it:
``core.store.wakeups``); the lane also polls every ``worker.poll_interval`` (on SQLite a new event waits at
most that long), which is also how a retry falling due or a lapsed claim is found.
"""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import OperationalError

from core.events.addresses import IPAddress, RefusedURL, checked_url, resolve
from core.events.endpoints import QUEUED
from core.events.signing import signed_headers
from core.metrics import Metrics
from core.pipeline.backoff import next_attempt
from core.pipeline.lanes import LaneLoop
from core.settings import EventSettings
from core.store.db import Database
from core.store.leases import Claim, Leases
from core.store.models import EventDelivery, EventEndpoint, utcnow

log = logging.getLogger(__name__)

USER_AGENT = "Threadline-Webhooks/1"
RECORD_RETRIES = 8


def pinned(url: str, address: IPAddress) -> tuple[str, dict[str, str], dict[str, str]]:
    """The request that reaches ``url``'s host at ``address``: the URL with the address for its host, the
    ``Host`` header, and the TLS server name (so the certificate is still checked against the name)."""
    parts = checked_url(url, allow_private=True)  # already checked for the endpoint's own setting
    host = parts.hostname or ""
    literal = f"[{address}]" if address.version == 6 else str(address)
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    target = parts._replace(netloc=netloc).geturl()
    host_header = f"[{host}]" if ":" in host else host
    if parts.port:
        host_header += f":{parts.port}"
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return target, {"host": host_header}, extensions


class EventSender:
    def __init__(
        self,
        *,
        db: Database,
        settings: EventSettings,
        poll_interval: float,
        metrics: Metrics,
        leases: Leases,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._db = db
        self._settings = settings
        self._metrics = metrics
        self._leases = leases
        # no redirects, no proxies from the environment (the address checked is the address reached)
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            timeout=settings.timeout,
            headers={"user-agent": USER_AGENT},
            transport=transport,
        )
        self.lanes = LaneLoop(
            "events",
            heads=self._heads,
            handle=self._handle,
            concurrency=settings.concurrency,
            poll_interval=poll_interval,
        )

    async def _heads(self) -> list[tuple[str, int]]:
        now = utcnow()
        async with self._db.read() as session:
            ids = await session.scalars(
                select(EventDelivery.id)
                .where(
                    EventDelivery.status.in_(QUEUED),
                    or_(EventDelivery.next_attempt_at.is_(None), EventDelivery.next_attempt_at <= now),
                    or_(EventDelivery.lease_until.is_(None), EventDelivery.lease_until < now),
                )
                .order_by(EventDelivery.id)
                .limit(self._settings.concurrency * 4)
            )
            heads = [(f"event:{row_id}", int(row_id)) for row_id in ids]
        self._metrics.pending.labels("events").set(len(heads))
        return heads

    async def _handle(self, delivery_id: int) -> None:
        now = utcnow()
        claim = await self._leases.claim(
            EventDelivery,
            delivery_id,
            ready=and_(
                EventDelivery.status.in_(QUEUED),
                or_(EventDelivery.next_attempt_at.is_(None), EventDelivery.next_attempt_at <= now),
            ),
        )
        if claim is None:  # sent, not due, or another process is on it
            return
        await self._leases.run(claim, self._attempt)

    async def _attempt(self, claim: Claim) -> None:
        async with self._db.read() as session:
            row = await session.get(EventDelivery, claim.row_id)
            endpoint = await session.get(EventEndpoint, row.endpoint_id) if row is not None else None
        if row is None or row.status not in QUEUED:
            return
        if endpoint is None or endpoint.deleted_at is not None or not endpoint.secret:
            await self._finish(claim, status="cancelled", attempts=row.attempts, error="endpoint deleted")
            return
        attempts = row.attempts + 1
        body = json.dumps(row.payload, separators=(",", ":"), ensure_ascii=False).encode()
        try:
            parts = checked_url(endpoint.url, allow_private=self._settings.allow_private)
            addresses = await resolve(parts, allow_private=self._settings.allow_private)
        except RefusedURL as exc:
            await self._failed(claim, row, attempts, code=None, error=f"refused: {exc}")
            return
        target, headers, extensions = pinned(endpoint.url, addresses[0])
        headers["content-type"] = "application/json"
        headers.update(signed_headers(endpoint.secret, row.webhook_id, utcnow(), body))
        try:
            async with asyncio.timeout(self._settings.timeout):
                async with self._client.stream(
                    "POST", target, content=body, headers=headers, extensions=extensions
                ) as response:
                    code = response.status_code  # the body is never read: a receiver's answer is its status
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            await self._failed(claim, row, attempts, code=None, error=type(exc).__name__)
            return
        if 200 <= code < 300:
            await self._record_sent(row, attempts, code)
            return
        error = f"redirect {code} not followed" if 300 <= code < 400 else f"HTTP {code}"
        await self._failed(claim, row, attempts, code=code, error=error)

    async def _record_sent(self, row: EventDelivery, attempts: int, code: int) -> None:
        """Record a delivery the receiver took. Not fenced (it happened, whoever holds the row now), and
        retried on a busy database: left queued, it would be sent again."""
        for retry in range(RECORD_RETRIES):
            try:
                async with self._db.session() as session:
                    await session.execute(
                        update(EventDelivery)
                        .where(EventDelivery.id == row.id, EventDelivery.status.in_(QUEUED))
                        .values(
                            status="sent",
                            attempts=attempts,
                            last_status_code=code,
                            last_error=None,
                            next_attempt_at=None,
                            sent_at=utcnow(),
                            lease_until=None,
                        )
                    )
                break
            except OperationalError as exc:
                if retry == RECORD_RETRIES - 1:
                    raise
                log.warning("event delivery %s sent but not recorded (%s)", row.id, type(exc).__name__)
                await asyncio.sleep(min(5.0, 0.05 * 2**retry))
        self._metrics.event_deliveries.labels("sent").inc()
        log.info("event delivery %s (%s) sent to endpoint %s", row.id, row.event_type, row.endpoint_id)

    async def _failed(
        self, claim: Claim, row: EventDelivery, attempts: int, *, code: int | None, error: str
    ) -> None:
        if attempts >= self._settings.max_attempts:
            await self._finish(claim, status="dead", attempts=attempts, error=error, code=code)
            self._metrics.event_deliveries.labels("dead").inc()
            log.warning(
                "event delivery %s to endpoint %s dead after %d tries (%s)",
                row.id,
                row.endpoint_id,
                attempts,
                error[:80],
            )
            return
        due = next_attempt(
            utcnow(), attempts, base=self._settings.backoff_base, cap=self._settings.backoff_max
        )
        async with self._db.session() as session:
            await session.execute(
                update(EventDelivery)
                .where(claim.held(), EventDelivery.status.in_(QUEUED))
                .values(
                    status="failed",
                    attempts=attempts,
                    next_attempt_at=due,
                    last_status_code=code,
                    last_error=error[:200],
                    lease_until=None,
                )
            )
        self._metrics.event_deliveries.labels("failed").inc()
        log.info("event delivery %s try %d failed (%s); retrying later", row.id, attempts, error[:80])

    async def _finish(
        self, claim: Claim, *, status: str, attempts: int, error: str, code: int | None = None
    ) -> None:
        async with self._db.session() as session:
            await session.execute(
                update(EventDelivery)
                .where(claim.held(), EventDelivery.status.in_(QUEUED))
                .values(
                    status=status,
                    attempts=attempts,
                    next_attempt_at=None,
                    last_status_code=code,
                    last_error=error[:200],
                    lease_until=None,
                )
            )

    async def aclose(self) -> None:
        await self._client.aclose()
