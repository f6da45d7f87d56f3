"""The console's "Event webhooks" page (issue 17): an admin registers, lists and deletes the business's event
receivers, reads an endpoint's delivery log and retries a dead delivery, as the admin API does.

The same service calls as ``/admin/event-endpoints`` (``core.events.endpoints``), so the same rules: the
SSRF guard (``core.events.addresses``, ``THREADLINE_EVENTS__ALLOW_PRIVATE``), the known types, nothing
stored on a refusal, whose reason (the service's own message, as the admin API's 422 ``detail``) is shown
above the form again. The ``whsec_`` secret is in the answer to the create form only: a page that is not
cached (``Cache-Control: no-store``, ``render.with_headers``) and not a redirect (a flash cookie would carry
it); no list, log line or audit entry holds it. The delivery log shows no payload (it may hold text).

Admins only, every route, reading too (the page lists where the hub sends customers' data): an agent gets
403 and nothing is done. Each change is recorded in the operators' audit log (``record_action``, subject
the endpoint id or the delivery's ``webhook-id``). Logs name endpoints and deliveries by id, never a URL.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass

from fastapi import APIRouter, Request, Response
from sqlalchemy import func, select
from starlette.datastructures import FormData

from core.events.endpoints import (
    EndpointView,
    create_endpoint,
    delete_endpoint,
    list_deliveries,
    list_endpoints,
    retry_delivery,
)
from core.events.record import EVENT_TYPES
from core.pipeline.handoff import record_action
from core.store.db import Database
from core.store.models import EventDelivery
from core.store.operators import SignedIn
from core.web.console.auth import Console, require_admin, text_field
from core.web.console.render import BASE, Problem, page, redirect

log = logging.getLogger(__name__)

EVENTS = f"{BASE}/events"
COUNTED = ("pending", "failed", "sent", "dead")
MAX_BIGINT = 2**63 - 1
MAX_URL = 2000
MAX_DESCRIPTION = 200
SHOWN_DELIVERIES = 100
_WEBHOOK_ID = re.compile(r"^msg_[A-Za-z0-9_-]{1,60}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Listed:
    """An endpoint on the page, with how many of its deliveries are in each state."""

    endpoint: EndpointView
    counts: dict[str, int]


async def _counts(db: Database, ids: list[int]) -> dict[int, dict[str, int]]:
    found: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTED, 0))
    if not ids:
        return found
    query = (
        select(EventDelivery.endpoint_id, EventDelivery.status, func.count())
        .where(EventDelivery.endpoint_id.in_(ids), EventDelivery.status.in_(COUNTED))
        .group_by(EventDelivery.endpoint_id, EventDelivery.status)
    )
    async with db.read() as session:
        for endpoint_id, status, n in await session.execute(query):
            found[endpoint_id][status] = int(n)
    return found


async def listed(db: Database) -> list[Listed]:
    endpoints = await list_endpoints(db)
    counts = await _counts(db, [e.id for e in endpoints])
    return [Listed(endpoint=e, counts=counts[e.id]) for e in endpoints]


def _endpoint_id(value: int) -> int:
    if not 0 < value <= MAX_BIGINT:
        raise Problem(404, f"no event endpoint {value}")
    return value


async def _record(console: Console, me: SignedIn, action: str, subject: str) -> None:
    async with console.svc().db.session() as session:
        await record_action(session, operator=me.operator.name, action=action, subject=subject)


def _chosen(form: FormData) -> list[str]:
    return [value for value in form.getlist("events") if isinstance(value, str)]


def add_event_routes(router: APIRouter, console: Console) -> None:
    async def list_page(
        request: Request,
        me: SignedIn,
        *,
        status: int = 200,
        error: str | None = None,
        form: FormData | None = None,
    ) -> Response:
        """The list and the create form; after a refusal, the reason above the form with what was typed."""
        typed = {
            "url": (form.get("url") if form is not None else None) or "",
            "description": (form.get("description") if form is not None else None) or "",
            "events": _chosen(form) if form is not None else [],
            "include_text": form is not None and form.get("include_text") == "on",
        }
        return page(
            request,
            "events.html",
            status=status,
            me=me,
            title="Event webhooks",
            endpoints=await listed(console.svc().db),
            event_types=EVENT_TYPES,
            error=error,
            typed=typed,
            max_url=MAX_URL,
            max_description=MAX_DESCRIPTION,
        )

    @router.get(EVENTS)
    async def events_page(request: Request) -> Response:
        me = await console.signed_in(request)
        require_admin(me, "manage event webhooks")
        return await list_page(request, me)

    @router.post(EVENTS)
    async def create(request: Request) -> Response:
        me, form = await console.posted(request)
        require_admin(me, "manage event webhooks")
        url = text_field(form, "url", limit=MAX_URL)
        description = text_field(form, "description", required=False, limit=MAX_DESCRIPTION) or None
        svc = console.svc()
        try:
            view, secret = await create_endpoint(
                svc.db,
                url=url,
                events=_chosen(form),
                include_text=form.get("include_text") == "on",
                description=description,
                allow_private=svc.settings.events.allow_private,
            )
        except ValueError as exc:  # RefusedURL, an unknown or no type: the admin API's 422 detail
            log.info("console: an event endpoint refused for operator %s", me.operator.id)
            return await list_page(request, me, status=422, error=str(exc), form=form)
        await _record(console, me, "create_event_endpoint", str(view.id))
        log.info("console: event endpoint %s registered by operator %s", view.id, me.operator.id)
        return page(
            request, "event_created.html", me=me, title="Event endpoint created", e=view, secret=secret
        )

    @router.post(f"{EVENTS}/{{endpoint_id}}/delete")
    async def delete(request: Request, endpoint_id: int) -> Response:
        me, _ = await console.posted(request)
        require_admin(me, "manage event webhooks")
        view = await delete_endpoint(console.svc().db, _endpoint_id(endpoint_id))
        await _record(console, me, "delete_event_endpoint", str(view.id))
        log.info("console: event endpoint %s deleted by operator %s", view.id, me.operator.id)
        return redirect(
            EVENTS,
            flash=f"Event endpoint {view.id} deleted: nothing more is sent to it.",
            secure=console.secure,
        )

    @router.get(f"{EVENTS}/{{endpoint_id}}")
    async def deliveries(request: Request, endpoint_id: int) -> Response:
        me = await console.signed_in(request)
        require_admin(me, "manage event webhooks")
        db = console.svc().db
        found = await list_deliveries(db, _endpoint_id(endpoint_id), limit=SHOWN_DELIVERIES)
        endpoint = next((e for e in await listed(db) if e.endpoint.id == endpoint_id), None)
        if endpoint is None:  # deleted between the two reads
            raise Problem(404, f"no event endpoint {endpoint_id}")
        return page(
            request,
            "event_deliveries.html",
            me=me,
            title=f"Event endpoint {endpoint_id}",
            e=endpoint,
            deliveries=found,
            shown=SHOWN_DELIVERIES,
        )

    @router.post(f"{EVENTS}/{{endpoint_id}}/deliveries/{{webhook_id}}/retry")
    async def retry(request: Request, endpoint_id: int, webhook_id: str) -> Response:
        me, _ = await console.posted(request)
        require_admin(me, "manage event webhooks")
        endpoint_id = _endpoint_id(endpoint_id)
        if not _WEBHOOK_ID.match(webhook_id):
            raise Problem(404, f"no delivery {webhook_id[:64]} for event endpoint {endpoint_id}")
        retried = await retry_delivery(console.svc().db, endpoint_id, webhook_id)
        await _record(console, me, "retry_event_delivery", retried.id)
        log.info(
            "console: a delivery of event endpoint %s queued again by operator %s",
            endpoint_id,
            me.operator.id,
        )
        return redirect(
            f"{EVENTS}/{endpoint_id}",
            flash=f"Delivery {retried.id} is queued again (same webhook-id, fresh tries).",
            secure=console.secure,
        )
