"""The admin JSON API: look customers up, link, unlink, merge and undo merges, read the ledger.

``admin_router(services, token=...)`` builds the routes (prefix ``/admin``, tag ``admin``) over the
process's ``core.compose.Services``, looked up per request through ``services()`` (the web app's lifespan
opens them). Every call needs ``Authorization: Bearer <THREADLINE_ADMIN_TOKEN>``, compared in constant
time: a missing or wrong token is 401 (``WWW-Authenticate: Bearer``) and nothing is read or changed; with
no token configured every call is 403. ``core.web.guard.WebGuard`` makes the same check in front of the
app, before the request body is read (and limits the body to 1 MiB); this dependency is the second check.
The glue is thin: convert the request in, call ``identity.directory``, ``identity.suggestions``,
``identity.linking``, ``identity.erasure`` or the memory store, convert the answer out (the JSON shapes are
``identity.views`` and ``core.web.admin_views``, which import no FastAPI); the errors are mapped in one
place (``_mapped``): ``NotFound`` 404, ``Conflict`` 409, ``InvalidAddress`` 422, ``MemoryUnavailable`` 503.

Wherever a customer is named (the ``{customer_id}`` of a path, ``customer_id``, ``source`` and ``target``
of a body, the ledger's ``customer_id`` query), an address does as well as the id, as on the command line:
``/admin/customers/sms:%2B15551230000`` is the customer holding that number. It is only looked up, never
made: an address nobody holds is 404 ("no customer for ..."), one that cannot be normalised 422.

The ledger records the actor ``admin``, or ``admin:<name>`` from a sanitised ``X-Threadline-Actor``.

Handoffs (``core.pipeline.handoff``): ``POST``/``DELETE /admin/customers/{id}/handoff`` take a conversation
over and hand it back, ``GET /admin/handoffs`` lists the open ones, ``POST /admin/customers/{id}/replies``
sends a person's reply (once per idempotency key), with files if any (``attachments``: name and base64
bytes, checked by ``core.media.outbound.check_outgoing``; a bad one is 422 naming it and the problem, and
nothing is stored or sent; the route's body limit, ``reply_body_limit``, fits ``__MAX_BYTES`` of base64).
``GET /admin/customers/{id}/cases``: the customer's
support cases (``core.pipeline.cases``), newest first. ``GET /admin/customers/{id}/memories`` searches a
customer's memory (or lists it, newest first) by category, channel and time (``core.messages.MemoryFilter``).
Logs carry ledger and customer ids only, never an address.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run time, and
# they name dependencies local to ``admin_router``.
import base64
import binascii
import hmac
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from core.compose import Services
from core.errors import Conflict, InvalidAddress, MediaRefused, MemoryUnavailable, NotFound
from core.events.endpoints import (
    create_endpoint,
    delete_endpoint,
    list_deliveries,
    list_endpoints,
    retry_delivery,
)
from core.media.outbound import OutgoingFile, check_outgoing
from core.messages import Address, MemoryCategory, MemoryFilter
from core.pipeline.cases import list_cases
from core.pipeline.dead_letters import dead_letters, retry_dead_letter
from core.pipeline.handoff import HandoffView
from core.settings import AttachmentSettings
from core.store.models import utcnow
from core.web.admin_views import (
    CaseOut,
    CasesOut,
    DeadLetterOut,
    DeadLettersOut,
    ErrorOut,
    EventDeliveriesOut,
    EventDeliveryOut,
    EventEndpointCreatedOut,
    EventEndpointOut,
    EventEndpointRequest,
    EventEndpointsOut,
    FileIn,
    HandBackRequest,
    HandoffOut,
    HandoffRequest,
    HandoffsOut,
    MemoriesOut,
    ReplyOut,
    ReplyRequest,
    RetryRequest,
    UnprocessableOut,
    memories_out,
)
from core.web.guard import ADMIN_OFF_DETAIL, ADMIN_TOKEN_SETTING, UNAUTHORIZED_DETAIL
from identity.directory import find_customer, ledger_entries, list_customers, show_customer
from identity.erasure import export, forget
from identity.normalize import normalize_address
from identity.suggestions import merge_suggestions
from identity.views import (
    CUSTOMER_OR_ADDRESS,
    ChangeOut,
    CustomerDetailOut,
    CustomerPageOut,
    ExportOut,
    LedgerEntryOut,
    LedgerOut,
    LinkRequest,
    MergeOut,
    MergeRequest,
    ReceiptOut,
    SuggestionsOut,
    UndoRequest,
    UnlinkRequest,
    actor_name,
    detail_out,
    page_out,
    suggestions_out,
)

log = logging.getLogger(__name__)

ADMIN_SETTING = ADMIN_TOKEN_SETTING


# ids are BIGINT (64-bit signed) columns: a larger path id or offset must be a 422, not a driver overflow
_MAX_BIGINT = 2**63 - 1
DbId = Annotated[int, Path(ge=-_MAX_BIGINT - 1, le=_MAX_BIGINT)]
CustomerRef = Annotated[
    str, Path(description=CUSTOMER_OR_ADDRESS + " An address is URL-encoded: sms:%2B15551230000.")
]


def _errors(*codes: int) -> dict[int | str, dict[str, object]]:
    return {code: {"model": ErrorOut, "description": _ERROR_MEANINGS[code]} for code in codes}


_ERROR_MEANINGS = {
    401: "Missing or wrong bearer token.",
    403: f"The admin API is off: {ADMIN_SETTING} is not set.",
    404: "No such customer, address or merge.",
    409: "The change contradicts the current state (e.g. already merged, undone, or the only handle).",
    503: "The memory backend is unavailable; nothing was erased. Try again.",
}


# ----- the router ----------------------------------------------------------------------------------


@contextmanager
def _mapped() -> Iterator[None]:
    """The one place identity errors become HTTP answers."""
    try:
        yield
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    except InvalidAddress as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    except MemoryUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from exc
    except (ValueError, MediaRefused) as exc:  # a value the service refuses (an empty reply, a bad file)
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc


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


def admin_router(services: Callable[[], Services], *, token: SecretStr | None) -> APIRouter:
    """The ``/admin`` routes over the ``Services`` that ``services()`` gives per request, behind ``token``."""
    bearer = HTTPBearer(auto_error=False, description=f"The value of {ADMIN_SETTING}.")
    expected = token.get_secret_value().encode() if token is not None else b""

    def authorize(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if not expected:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=ADMIN_OFF_DETAIL,
            )
        given = credentials.credentials.encode() if credentials is not None else b""
        if not hmac.compare_digest(given, expected):
            log.warning("admin call refused: missing or wrong bearer token")
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail=UNAUTHORIZED_DETAIL,
                headers={"WWW-Authenticate": "Bearer"},
            )

    def get_services() -> Services:
        return services()

    def get_actor(
        x_threadline_actor: Annotated[
            str | None, Header(description="Who is acting, recorded as admin:<name>.")
        ] = None,
    ) -> str:
        return actor_name("admin", x_threadline_actor)

    Svc = Annotated[Services, Depends(get_services)]
    Actor = Annotated[str, Depends(get_actor)]
    router = APIRouter(
        prefix="/admin",
        tags=["admin"],
        dependencies=[Depends(authorize)],
        responses={
            **_errors(401, 403),
            422: {"model": UnprocessableOut, "description": "Invalid input, or an unusable address."},
        },
    )

    def parse(svc: Services, text: str) -> Address:
        return normalize_address(text, default_region=svc.default_region)

    async def named(svc: Services, who: str) -> str:
        """The id of the customer ``who`` names (an id or an address); ``NotFound`` when none."""
        return await find_customer(svc.db, who, default_region=svc.default_region)

    @router.get("/customers", response_model=CustomerPageOut)
    async def customers(
        svc: Svc,
        search: Annotated[str | None, Query(description="A handle in any spelling, or part of one.")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=_MAX_BIGINT)] = 0,
        include_merged: Annotated[bool, Query(description="List merged customers too.")] = False,
    ) -> CustomerPageOut:
        """Customers, newest first, found by any of their handles (normalised when it parses)."""
        page = await list_customers(
            svc.db,
            search=search,
            limit=limit,
            offset=offset,
            include_merged=include_merged,
            default_region=svc.default_region,
        )
        return page_out(page)

    @router.get("/customers/{customer_id}", response_model=CustomerDetailOut, responses=_errors(404))
    async def customer(
        svc: Svc, customer_id: CustomerRef, turns: Annotated[int, Query(ge=0, le=200)] = 20
    ) -> CustomerDetailOut:
        """One customer: handles with assurance, recent conversation on every channel, memories."""
        with _mapped():
            found = await named(svc, customer_id)
            return detail_out(await show_customer(svc.db, svc.memory, found, turns=turns))

    @router.post("/identities/link", response_model=ChangeOut, responses=_errors(404, 409))
    async def link(body: LinkRequest, svc: Svc, actor: Actor) -> ChangeOut:
        """Make a handle one of the customer's (admin-linked); its history and memories move along."""
        with _mapped():
            handle = parse(svc, body.address)
            change = await svc.links.link(
                handle, await named(svc, body.customer_id), actor=actor, reason=body.reason
            )
        log.info("admin link: ledger %s, customer %s", change.event_id, change.customer_id)
        return ChangeOut.of(change)

    @router.post("/identities/unlink", response_model=ChangeOut, responses=_errors(404, 409))
    async def unlink(body: UnlinkRequest, svc: Svc, actor: Actor) -> ChangeOut:
        """Detach a handle: it becomes a new customer, taking its own messages and memories."""
        with _mapped():
            change = await svc.links.unlink(parse(svc, body.address), actor=actor, reason=body.reason)
        log.info("admin unlink: ledger %s, new customer %s", change.event_id, change.customer_id)
        return ChangeOut.of(change)

    @router.post("/customers/merge", response_model=MergeOut, responses=_errors(404, 409))
    async def merge(body: MergeRequest, svc: Svc, actor: Actor) -> MergeOut:
        """Merge ``source`` into ``target``; the answer's ``merge_id`` undoes it."""
        with _mapped():
            source, target = await named(svc, body.source), await named(svc, body.target)
            change = await svc.links.merge(source, target, actor=actor, reason=body.reason)
        assert change.event_id is not None  # a merge always writes its ledger entry
        log.info("admin merge: ledger %s, %s into %s", change.event_id, source, target)
        return MergeOut(**ChangeOut.of(change).model_dump(), merge_id=change.event_id)

    @router.post("/merges/{merge_id}/undo", response_model=ChangeOut, responses=_errors(404, 409))
    async def undo(merge_id: DbId, body: UndoRequest, svc: Svc, actor: Actor) -> ChangeOut:
        """Undo a merge: its handles go back with every message and memory they brought or made since."""
        with _mapped():
            change = await svc.links.unmerge(merge_id, actor=actor, reason=body.reason)
        log.info("admin unmerge: ledger %s undoes %s", change.event_id, merge_id)
        return ChangeOut.of(change)

    @router.get("/ledger", response_model=LedgerOut, responses=_errors(404))
    async def ledger(
        svc: Svc,
        customer_id: Annotated[
            str | None, Query(description="Entries where it is either side. " + CUSTOMER_OR_ADDRESS)
        ] = None,
        address: Annotated[str | None, Query(description="Entries that moved this handle.")] = None,
        limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    ) -> LedgerOut:
        """The identity ledger, oldest first (the last ``limit`` entries that match)."""
        with _mapped():
            wanted = parse(svc, address) if address is not None else None
            about = await named(svc, customer_id) if customer_id is not None else None
        entries = await ledger_entries(svc.db, customer_id=about, address=wanted, limit=limit)
        return LedgerOut(entries=[LedgerEntryOut.model_validate(e) for e in entries])

    @router.delete("/customers/{customer_id}", response_model=ReceiptOut, responses=_errors(404, 503))
    async def forget_customer(customer_id: CustomerRef, svc: Svc, actor: Actor) -> ReceiptOut:
        """Erase the customer (and the customers merged into it) from every store; returns the receipt.

        Our tables, Mem0's vectors, history and messages, queued jobs; the identity ledger keeps only
        unreadable tokens in place of the customer's addresses. Cannot be undone.
        """
        with _mapped():
            receipt = await forget(
                svc.db, svc.memory, await named(svc, customer_id), actor=actor, media=svc.media
            )
        return ReceiptOut.model_validate(receipt.as_dict())

    @router.get("/customers/{customer_id}/export", response_model=ExportOut, responses=_errors(404))
    async def export_customer(customer_id: CustomerRef, svc: Svc) -> ExportOut:
        """Everything held about the customer as one JSON document (``threadline-export/1``)."""
        with _mapped():
            found = await named(svc, customer_id)
            return ExportOut.model_validate(await export(svc.db, svc.memory, found))

    @router.get("/customers/{customer_id}/memories", response_model=MemoriesOut, responses=_errors(404, 503))
    async def customer_memories(
        customer_id: CustomerRef,
        svc: Svc,
        query: Annotated[
            str, Query(max_length=2000, description="What to look for; empty: every memory, newest first.")
        ] = "",
        category: Annotated[
            MemoryCategory | None,
            Query(description="Only memories of this category."),
        ] = None,
        channel: Annotated[
            str | None,
            Query(max_length=32, description="Only memories from this channel (sms, ...)."),
        ] = None,
        since: Annotated[
            str | None, Query(max_length=40, description="Written at or after (ISO date or date-time; UTC).")
        ] = None,
        until: Annotated[
            str | None, Query(max_length=40, description="Written before (ISO date or date-time; UTC).")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> MemoriesOut:
        """Search a customer's memory as the agent recalls it (the filters apply before ``limit``), or list
        it newest first when ``query`` is empty; each memory with its provenance."""
        with _mapped():
            filters = MemoryFilter.parse(category=category, channel=channel, since=since, until=until)
            found = await named(svc, customer_id)
            chosen = None if filters.empty else filters
            if query.strip():
                records = await svc.memory.recall(found, query, limit=limit, filters=chosen)
            else:
                records = (await svc.memory.list(found, filters=chosen))[:limit]
        return memories_out(found, query.strip() or None, filters, records)

    @router.get("/dead-letters", response_model=DeadLettersOut)
    async def failed_replies(
        svc: Svc,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=_MAX_BIGINT)] = 0,
    ) -> DeadLettersOut:
        """Replies that failed for good (after bounded retries, or refused by the platform), newest first."""
        found = await dead_letters(svc.db, limit=limit, offset=offset)
        return DeadLettersOut(dead_letters=[DeadLetterOut.model_validate(d) for d in found])

    @router.post("/dead-letters/{outbox_id}/retry", response_model=DeadLetterOut, responses=_errors(404, 409))
    async def retry_failed_reply(
        outbox_id: DbId, body: RetryRequest, svc: Svc, actor: Actor
    ) -> DeadLetterOut:
        """Send a failed reply again (fresh attempts; parts already sent are skipped)."""
        with _mapped():
            retried = await retry_dead_letter(svc.db, outbox_id)
        log.info("reply %s queued again by %s", outbox_id, actor)
        return DeadLetterOut.model_validate(retried)

    @router.post("/customers/{customer_id}/handoff", response_model=HandoffOut, responses=_errors(404, 409))
    async def take_over(customer_id: CustomerRef, body: HandoffRequest, svc: Svc) -> HandoffOut:
        """A person owns the conversation: the bot sends the customer nothing, on any channel, until it is
        handed back. Takes a waiting handoff, or opens one; 409 when another operator owns it."""
        with _mapped():
            found = await named(svc, customer_id)
            return _handoff_out(await svc.handoffs.take(found, operator=body.operator, note=body.note))

    @router.delete("/customers/{customer_id}/handoff", response_model=HandoffOut, responses=_errors(404))
    async def hand_back(
        customer_id: CustomerRef,
        svc: Svc,
        actor: Actor,
        body: HandBackRequest | None = None,
    ) -> HandoffOut:
        """Hand the conversation back to the bot (404 when none is open)."""
        who = body.operator if body is not None else actor
        with _mapped():
            found = await named(svc, customer_id)
            return _handoff_out(await svc.handoffs.hand_back(found, operator=who))

    @router.get("/handoffs", response_model=HandoffsOut)
    async def open_handoffs(svc: Svc) -> HandoffsOut:
        """Open handoffs, waiting ones first (oldest first), with how long each customer has waited."""
        return HandoffsOut(handoffs=[_handoff_out(view) for view in await svc.handoffs.open_handoffs()])

    @router.post("/customers/{customer_id}/replies", response_model=ReplyOut, responses=_errors(404, 409))
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
        with _mapped():
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

    @router.get("/customers/{customer_id}/cases", response_model=CasesOut, responses=_errors(404))
    async def customer_cases(customer_id: CustomerRef, svc: Svc) -> CasesOut:
        """The customer's support cases, newest first: open or resolved, when, by whom, and their turns."""
        with _mapped():
            found = await named(svc, customer_id)
        return CasesOut(
            customer_id=found,
            cases=[CaseOut.model_validate(case) for case in await list_cases(svc.db, found)],
        )

    @router.post("/event-endpoints", response_model=EventEndpointCreatedOut)
    async def create_event_endpoint(body: EventEndpointRequest, svc: Svc) -> EventEndpointCreatedOut:
        """Register a receiver of the hub's events; the answer's ``secret`` (``whsec_``) is shown only here.
        422 for an unknown type, or a URL that is not https or whose host is not public (SSRF guard,
        ``THREADLINE_EVENTS__ALLOW_PRIVATE``): then nothing is stored."""
        with _mapped():
            view, secret = await create_endpoint(
                svc.db,
                url=body.url,
                events=body.events,
                include_text=body.include_text,
                description=body.description,
                allow_private=svc.settings.events.allow_private,
            )
        return EventEndpointCreatedOut(**EventEndpointOut.model_validate(view).model_dump(), secret=secret)

    @router.get("/event-endpoints", response_model=EventEndpointsOut)
    async def event_endpoints(svc: Svc) -> EventEndpointsOut:
        """The registered receivers (without their secrets)."""
        return EventEndpointsOut(
            endpoints=[EventEndpointOut.model_validate(view) for view in await list_endpoints(svc.db)]
        )

    @router.delete("/event-endpoints/{endpoint_id}", response_model=EventEndpointOut, responses=_errors(404))
    async def delete_event_endpoint(endpoint_id: DbId, svc: Svc) -> EventEndpointOut:
        """Delete a receiver: nothing more is sent to it (queued deliveries are cancelled)."""
        with _mapped():
            return EventEndpointOut.model_validate(await delete_endpoint(svc.db, endpoint_id))

    @router.get(
        "/event-endpoints/{endpoint_id}/deliveries", response_model=EventDeliveriesOut, responses=_errors(404)
    )
    async def event_deliveries(
        endpoint_id: DbId,
        svc: Svc,
        delivery_status: Annotated[
            Literal["pending", "failed", "sent", "dead", "cancelled"] | None,
            Query(alias="status", description="Only deliveries in this state."),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=_MAX_BIGINT)] = 0,
    ) -> EventDeliveriesOut:
        """The receiver's delivery log, newest first: tries, last answer, state (not the bodies)."""
        with _mapped():
            found = await list_deliveries(
                svc.db, endpoint_id, status=delivery_status, limit=limit, offset=offset
            )
        return EventDeliveriesOut(
            endpoint_id=endpoint_id, deliveries=[EventDeliveryOut.model_validate(d) for d in found]
        )

    @router.post(
        "/event-endpoints/{endpoint_id}/deliveries/{delivery_id}/retry",
        response_model=EventDeliveryOut,
        responses=_errors(404, 409),
    )
    async def retry_event_delivery(
        endpoint_id: DbId,
        delivery_id: Annotated[str, Path(max_length=64, description="The delivery's webhook-id (msg_...).")],
        body: RetryRequest,
        svc: Svc,
        actor: Actor,
    ) -> EventDeliveryOut:
        """Send a dead delivery again, under the same ``webhook-id``, with fresh tries (409 unless dead)."""
        with _mapped():
            retried = await retry_delivery(svc.db, endpoint_id, delivery_id)
        log.info("event delivery of endpoint %s queued again by %s", endpoint_id, actor)
        return EventDeliveryOut.model_validate(retried)

    @router.get("/merge-suggestions", response_model=SuggestionsOut)
    async def suggestions(svc: Svc) -> SuggestionsOut:
        """Pairs of live customers that look like one person; for a human to decide, never merged here."""
        return suggestions_out(await merge_suggestions(svc.db, default_region=svc.default_region))

    return router
