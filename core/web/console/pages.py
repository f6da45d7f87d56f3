"""The console's pages (GET): the inbox, a customer, dead letters, the overview, and the pieces htmx
refreshes every few seconds (``/console/inbox/rows``, ``/console/customers/{id}/timeline``).

A refreshed piece ends with a hidden ``v`` input holding a hash of what it shows; htmx sends it back with
the next poll, and an unchanged piece is answered 204 (htmx then swaps nothing), so a screen reader's live
region speaks only when something changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from core.errors import MemoryUnavailable
from core.media.check import shown_size
from core.pipeline.cases import MAX_SUMMARY_CHARS, MAX_TITLE_CHARS
from core.pipeline.dead_letters import dead_letters
from core.pipeline.handoff import MAX_REPLY_CHARS, record_action
from core.settings import AttachmentSettings
from core.store.models import utcnow
from core.web.console import charts
from core.web.console.auth import Console, require_admin
from core.web.console.overview import Overview, overview
from core.web.console.render import BASE, HERE, page, redirect, render_text
from core.web.console.views import customer_page, inbox, timeline
from identity.directory import find_customer
from identity.erasure import export

log = logging.getLogger(__name__)

STATIC = {"htmx.min.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"}


@dataclass(frozen=True, slots=True, kw_only=True)
class FileLimits:
    """What the reply form says about files (``THREADLINE_ATTACHMENTS__*``); the route checks them."""

    max_per_message: int
    accept: str  # the file picker's hint: the allowed media types
    kinds: str  # as people read it: "images, PDF, plain text"
    size: str


_KINDS = {"application/pdf": "PDF", "text/plain": "plain text"}


def file_limits(settings: AttachmentSettings) -> FileLimits:
    kinds: list[str] = []
    for media_type in settings.allowed_types:
        kind = "images" if media_type.startswith("image/") else _KINDS.get(media_type, media_type)
        if kind not in kinds:
            kinds.append(kind)
    return FileLimits(
        max_per_message=settings.max_per_message,
        accept=",".join(settings.allowed_types),
        kinds=", ".join(kinds),
        size=shown_size(settings.max_bytes),
    )


def _versioned(html: str, input_id: str) -> tuple[Markup, str]:
    """``html`` with a hidden input carrying its hash (what the next poll sends back), and the hash."""
    version = hashlib.sha256(html.encode()).hexdigest()[:20]
    hidden = f'<input type="hidden" id="{input_id}" name="v" value="{version}">'
    return Markup(html + hidden), version  # noqa: S704 - html is a rendered (escaped) template


def _unchanged(request: Request, version: str) -> bool:
    return request.query_params.get("v") == version


def add_page_routes(router: APIRouter, console: Console) -> None:
    @router.get(BASE)
    async def console_root() -> Response:
        return redirect(f"{BASE}/")

    @router.get(f"{BASE}/")
    async def inbox_page(request: Request) -> Response:
        me = await console.signed_in(request)
        rows, _ = _versioned(
            render_text("inbox_rows.html", inbox=await inbox(console.svc())), "inbox-version"
        )
        return page(request, "inbox.html", me=me, title="Inbox", rows=rows)

    @router.get(f"{BASE}/inbox/rows")
    async def inbox_rows(request: Request) -> Response:
        await console.signed_in(request)
        rows, version = _versioned(
            render_text("inbox_rows.html", inbox=await inbox(console.svc())), "inbox-version"
        )
        if _unchanged(request, version):
            return Response(status_code=204)
        return HTMLResponse(rows)

    @router.get(f"{BASE}/customers/{{ref}}")
    async def customer(request: Request, ref: str) -> Response:
        me = await console.signed_in(request)
        svc = console.svc()
        customer_id = await find_customer(svc.db, ref, default_region=svc.default_region)
        found = await customer_page(svc, customer_id)
        items, _ = _versioned(render_text("timeline.html", items=found.items), "timeline-version")
        return page(
            request,
            "customer.html",
            me=me,
            title=f"Customer {customer_id}",
            customer_id=customer_id,
            c=found,
            timeline=items,
            reply_key=secrets.token_urlsafe(16),
            max_reply=MAX_REPLY_CHARS,
            max_title=MAX_TITLE_CHARS,
            max_summary=MAX_SUMMARY_CHARS,
            files=file_limits(console.settings.attachments),
            now=utcnow(),
        )

    @router.get(f"{BASE}/customers/{{ref}}/timeline")
    async def customer_timeline(request: Request, ref: str) -> Response:
        await console.signed_in(request)
        svc = console.svc()
        customer_id = await find_customer(svc.db, ref, default_region=svc.default_region)
        try:
            memories = {m.id for m in await svc.memory.list(customer_id)}
        except MemoryUnavailable:
            memories = set()
        items, version = _versioned(
            render_text("timeline.html", items=await timeline(svc, customer_id, memories)), "timeline-version"
        )
        if _unchanged(request, version):
            return Response(status_code=204)
        return HTMLResponse(items)

    @router.get(f"{BASE}/customers/{{ref}}/export")
    async def customer_export(request: Request, ref: str) -> Response:
        me = await console.signed_in(request)
        require_admin(me, "export a customer")
        svc = console.svc()
        customer_id = await find_customer(svc.db, ref, default_region=svc.default_region)
        document = await export(svc.db, svc.memory, customer_id)
        async with svc.db.session() as session:
            await record_action(session, operator=me.operator.name, action="export", customer_id=customer_id)
        log.info("console: operator %s exported customer %s", me.operator.id, customer_id)
        return Response(
            json.dumps(document, indent=2, default=str),
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="{customer_id}.json"'},
        )

    @router.get(f"{BASE}/customers/{{ref}}/forget")
    async def forget_confirmation(request: Request, ref: str) -> Response:
        me = await console.signed_in(request)
        require_admin(me, "forget a customer")
        svc = console.svc()
        customer_id = await find_customer(svc.db, ref, default_region=svc.default_region)
        return page(request, "forget.html", me=me, title="Forget a customer", customer_id=customer_id)

    @router.get(f"{BASE}/dead-letters")
    async def dead_letters_page(request: Request) -> Response:
        me = await console.signed_in(request)
        found = await dead_letters(console.svc().db, limit=200)
        return page(request, "dead_letters.html", me=me, title="Dead letters", letters=found)

    @router.get(f"{BASE}/overview")
    async def overview_page(request: Request) -> Response:
        me = await console.signed_in(request)
        stats = await overview(console.svc())
        return page(request, "overview.html", me=me, title="Overview", o=stats, charts=_charts(stats))

    @router.get(f"{BASE}/static/{{name}}")
    async def static(name: str) -> Response:
        media_type = STATIC.get(name)
        if media_type is None:
            return Response(status_code=404)
        body = (HERE / "static" / name).read_bytes()
        return Response(body, media_type=media_type, headers={"Cache-Control": "public, max-age=3600"})


def _charts(o: Overview) -> dict[str, Markup]:
    messages = charts.stacked_bars(
        "messages",
        title="Messages per channel per hour, last 24 hours",
        desc=f"{o.total_messages} messages received in the last 24 hours, "
        + (", ".join(f"{ch}: {sum(v)}" for ch, v in o.messages.items()) or "none")
        + ". The table below has every hour.",
        labels=o.labels,
        series=o.messages or {"no messages": [0] * len(o.labels)},
    )
    median = o.median_reply_seconds
    replies = charts.bars(
        "replies",
        title="Median reply time per hour, last 24 hours",
        desc=(
            f"Median time from a message to the bot's reply: {median:.1f} s over {o.replies} replies."
            if median is not None
            else "No replies were sent in the last 24 hours."
        ),
        labels=o.labels,
        values=o.median_reply_by_hour,
        unit=" s",
    )
    waiting, owned = o.open_handoffs.get("waiting", 0), o.open_handoffs.get("owned", 0)
    handoffs = charts.hbars(
        "handoffs",
        title="Open handoffs",
        desc=f"{waiting} waiting for a person, {owned} owned by an operator.",
        items=[("waiting", waiting), ("owned", owned)],
    )
    return {"messages_chart": messages, "replies_chart": replies, "handoffs_chart": handoffs}
