"""The admin API's handoff routes: take a conversation over, hand it back, list open ones, reply as a person.

Over ``core.pipeline.handoff``; included by ``core.web.admin.admin_router`` (its prefix, bearer check and
error answers apply). A person's reply may carry files (``attachments``: name and base64 bytes, checked by
``core.media.outbound.check_outgoing``; a bad one is 422 naming it and the problem, and nothing is stored
or sent), so its route has a body limit of its own: ``REPLY_PATH`` and ``reply_body_limit``, which fits
``THREADLINE_ATTACHMENTS__MAX_BYTES`` of base64 (the web app's guard applies it before the body is read).
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run time, and
# they name dependencies local to ``handoff_routes``.
import base64
import binascii
import re
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header

from core.compose import Services
from core.media.outbound import OutgoingFile, check_outgoing
from core.pipeline.handoff import HandoffView
from core.settings import AttachmentSettings
from core.store.models import utcnow
from core.web.admin_common import CustomerRef, errors, get_actor, mapped, named
from core.web.admin_views import (
    FileIn,
    HandBackRequest,
    HandoffOut,
    HandoffRequest,
    HandoffsOut,
    ReplyOut,
    ReplyRequest,
)

# an operator's reply carries files: its body may be larger than the admin API's 1 MiB (core.web.guard)
REPLY_PATH = re.compile(r"/admin/customers/[^/]+/replies")
_REPLY_OVERHEAD = 64 * 1024  # the text (4,000 characters, JSON-escaped), names, the JSON around


def reply_body_limit(settings: AttachmentSettings) -> int:
    """The body limit of ``REPLY_PATH``: ``max_bytes`` of files in base64, and the rest of the request."""
    return 4 * -(-settings.max_bytes // 3) + _REPLY_OVERHEAD


def _decoded(files: list[FileIn], settings: AttachmentSettings) -> list[OutgoingFile]:
    """The request's files decoded and checked; ``ValueError``/``MediaRefused`` naming the first bad one."""
    pairs: list[tuple[str | None, bytes]] = []
    for number, item in enumerate(files, start=1):
        try:
            pairs.append((item.name, base64.b64decode(item.data_base64, validate=True)))
        except (binascii.Error, ValueError):
            raise ValueError(f"attachment {number}: data_base64 is not valid base64") from None
    return check_outgoing(pairs, settings)


def _handoff_out(view: HandoffView) -> HandoffOut:
    return HandoffOut(
        id=view.id,
        customer_id=view.customer_id,
        status=view.status,
        requested_by=view.requested_by,
        operator=view.operator,
        note=view.note,
        channel=view.channel,
        since=view.opened_at,
        taken_at=view.taken_at,
        answered_at=view.answered_at,
        escalated_at=view.escalated_at,
        closed_at=view.closed_at,
        closed_by=view.closed_by,
        waiting_seconds=round(view.waiting_seconds(utcnow()), 3),
    )


def handoff_routes(services: Callable[[], Services]) -> APIRouter:
    """The handoff and reply routes over the ``Services`` that ``services()`` gives per request."""

    def get_services() -> Services:
        return services()

    Svc = Annotated[Services, Depends(get_services)]
    Actor = Annotated[str, Depends(get_actor)]
    router = APIRouter()

    @router.post("/customers/{customer_id}/handoff", response_model=HandoffOut, responses=errors(404, 409))
    async def take_over(customer_id: CustomerRef, body: HandoffRequest, svc: Svc) -> HandoffOut:
        """A person owns the conversation: the bot sends the customer nothing, on any channel, until it is
        handed back. Takes a waiting handoff, or opens one; 409 when another operator owns it."""
        with mapped():
            found = await named(svc, customer_id)
            return _handoff_out(await svc.handoffs.take(found, operator=body.operator, note=body.note))

    @router.delete("/customers/{customer_id}/handoff", response_model=HandoffOut, responses=errors(404))
    async def hand_back(
        customer_id: CustomerRef,
        svc: Svc,
        actor: Actor,
        body: HandBackRequest | None = None,
    ) -> HandoffOut:
        """Hand the conversation back to the bot (404 when none is open)."""
        who = body.operator if body is not None else actor
        with mapped():
            found = await named(svc, customer_id)
            return _handoff_out(await svc.handoffs.hand_back(found, operator=who))

    @router.get("/handoffs", response_model=HandoffsOut)
    async def open_handoffs(svc: Svc) -> HandoffsOut:
        """Open handoffs, waiting ones first (oldest first), with how long each customer has waited."""
        return HandoffsOut(handoffs=[_handoff_out(view) for view in await svc.handoffs.open_handoffs()])

    @router.post("/customers/{customer_id}/replies", response_model=ReplyOut, responses=errors(404, 409))
    async def operator_reply(
        customer_id: CustomerRef,
        body: ReplyRequest,
        svc: Svc,
        idempotency_key: Annotated[
            str | None, Header(pattern=r"^[A-Za-z0-9_.:-]{8,64}$", description="Same key twice: sent once.")
        ] = None,
    ) -> ReplyOut:
        """A person's reply, sent on the customer's most recent private conversation (or ``channel``)
        through the outbox, once per idempotency key; the person owns the conversation from then on."""
        with mapped():
            files = _decoded(body.attachments, svc.settings.attachments)
            found = await named(svc, customer_id)
            sent = await svc.handoffs.reply(
                found,
                text=body.text,
                operator=body.operator,
                channel=body.channel,
                key=body.key or idempotency_key,
                files=files,
                store=svc.media if files else None,
            )
        return ReplyOut(
            outbox_id=sent.outbox_id,
            customer_id=sent.customer_id,
            channel=sent.channel,
            duplicate=sent.duplicate,
        )

    return router
