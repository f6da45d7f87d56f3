"""The admin JSON API: look customers up, link, unlink, merge and undo merges, read the ledger.

``admin_router(services, token=...)`` builds the routes (prefix ``/admin``, tag ``admin``) over the
process's ``core.compose.Services``, looked up per request through ``services()`` (the web app's lifespan
opens them). Every call needs ``Authorization: Bearer <THREADLINE_ADMIN_TOKEN>``, compared in constant
time: a missing or wrong token is 401 (``WWW-Authenticate: Bearer``) and nothing is read or changed; with
no token configured every call is 403. ``core.web.guard.WebGuard`` makes the same check in front of the
app, before the request body is read (and limits the body to 1 MiB); this dependency is the second check.
The glue is thin: convert the request in, call ``identity.directory``, ``identity.suggestions``,
``identity.linking``, ``identity.erasure``, ``identity.export`` or the memory store, convert the answer
out (the JSON shapes are ``identity.views`` and ``core.web.admin_views``, which import no FastAPI); the
errors are mapped in one place (``core.web.admin_common.mapped``): ``NotFound`` 404, ``Conflict`` 409,
``InvalidAddress`` 422, ``MemoryUnavailable`` 503.

Wherever a customer is named (the ``{customer_id}`` of a path, ``customer_id``, ``source`` and ``target``
of a body, the ledger's ``customer_id`` query), an address does as well as the id, as on the command line:
``/admin/customers/sms:%2B15551230000`` is the customer holding that number. It is only looked up, never
made: an address nobody holds is 404 ("no customer for ..."), one that cannot be normalised 422.

The ledger records the actor ``admin``, or ``admin:<name>`` from a sanitised ``X-Threadline-Actor``.

The router includes one router per area, under the same prefix, bearer check and error answers:
``core.web.admin_handoffs`` (``POST``/``DELETE /admin/customers/{id}/handoff``, ``GET /admin/handoffs``,
``POST /admin/customers/{id}/replies``: a person's reply, once per idempotency key, with files if any),
``core.web.admin_memory`` (``GET /admin/customers/{id}/memories``) and ``core.web.admin_events``
(``/admin/event-endpoints``) and ``core.web.admin_cases`` (``GET /admin/customers/{id}/cases``: the
customer's support cases, newest first; ``POST`` there: a person opens one; ``POST
.../cases/{case_id}/resolve``: a person resolves one). Logs carry ledger and customer ids only, never an
address.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run time, and
# they name dependencies local to ``admin_router``.
import hmac
import logging
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from core.compose import Services
from core.pipeline.dead_letters import dead_letters, retry_dead_letter
from core.web.admin_cases import case_routes
from core.web.admin_common import (
    ADMIN_SETTING,
    MAX_BIGINT,
    CustomerRef,
    DbId,
    errors,
    get_actor,
    mapped,
    named,
    parse,
)
from core.web.admin_events import event_routes
from core.web.admin_handoffs import handoff_routes
from core.web.admin_memory import memory_routes
from core.web.admin_views import (
    DeadLetterOut,
    DeadLettersOut,
    RetryRequest,
    UnprocessableOut,
)
from core.web.guard import ADMIN_OFF_DETAIL, UNAUTHORIZED_DETAIL
from identity.directory import ledger_entries, list_customers, show_customer
from identity.erasure import forget
from identity.export import export
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
    detail_out,
    page_out,
    suggestions_out,
)

log = logging.getLogger(__name__)


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

    Svc = Annotated[Services, Depends(get_services)]
    Actor = Annotated[str, Depends(get_actor)]
    router = APIRouter(
        prefix="/admin",
        tags=["admin"],
        dependencies=[Depends(authorize)],
        responses={
            **errors(401, 403),
            422: {"model": UnprocessableOut, "description": "Invalid input, or an unusable address."},
        },
    )

    @router.get("/customers", response_model=CustomerPageOut)
    async def customers(
        svc: Svc,
        search: Annotated[str | None, Query(description="A handle in any spelling, or part of one.")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_BIGINT)] = 0,
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

    @router.get("/customers/{customer_id}", response_model=CustomerDetailOut, responses=errors(404))
    async def customer(
        svc: Svc, customer_id: CustomerRef, turns: Annotated[int, Query(ge=0, le=200)] = 20
    ) -> CustomerDetailOut:
        """One customer: handles with assurance, recent conversation on every channel, memories."""
        with mapped():
            found = await named(svc, customer_id)
            return detail_out(await show_customer(svc.db, svc.memory, found, turns=turns))

    @router.post("/identities/link", response_model=ChangeOut, responses=errors(404, 409))
    async def link(body: LinkRequest, svc: Svc, actor: Actor) -> ChangeOut:
        """Make a handle one of the customer's (admin-linked); its history and memories move along."""
        with mapped():
            handle = parse(svc, body.address)
            change = await svc.links.link(
                handle, await named(svc, body.customer_id), actor=actor, reason=body.reason
            )
        log.info("admin link: ledger %s, customer %s", change.event_id, change.customer_id)
        return ChangeOut.of(change)

    @router.post("/identities/unlink", response_model=ChangeOut, responses=errors(404, 409))
    async def unlink(body: UnlinkRequest, svc: Svc, actor: Actor) -> ChangeOut:
        """Detach a handle: it becomes a new customer, taking its own messages and memories."""
        with mapped():
            change = await svc.links.unlink(parse(svc, body.address), actor=actor, reason=body.reason)
        log.info("admin unlink: ledger %s, new customer %s", change.event_id, change.customer_id)
        return ChangeOut.of(change)

    @router.post("/customers/merge", response_model=MergeOut, responses=errors(404, 409))
    async def merge(body: MergeRequest, svc: Svc, actor: Actor) -> MergeOut:
        """Merge ``source`` into ``target``; the answer's ``merge_id`` undoes it."""
        with mapped():
            source, target = await named(svc, body.source), await named(svc, body.target)
            change = await svc.links.merge(source, target, actor=actor, reason=body.reason)
        assert change.event_id is not None  # a merge always writes its ledger entry
        log.info("admin merge: ledger %s, %s into %s", change.event_id, source, target)
        return MergeOut(**ChangeOut.of(change).model_dump(), merge_id=change.event_id)

    @router.post("/merges/{merge_id}/undo", response_model=ChangeOut, responses=errors(404, 409))
    async def undo(merge_id: DbId, body: UndoRequest, svc: Svc, actor: Actor) -> ChangeOut:
        """Undo a merge: its handles go back with every message and memory they brought or made since."""
        with mapped():
            change = await svc.links.unmerge(merge_id, actor=actor, reason=body.reason)
        log.info("admin unmerge: ledger %s undoes %s", change.event_id, merge_id)
        return ChangeOut.of(change)

    @router.get("/ledger", response_model=LedgerOut, responses=errors(404))
    async def ledger(
        svc: Svc,
        customer_id: Annotated[
            str | None, Query(description="Entries where it is either side. " + CUSTOMER_OR_ADDRESS)
        ] = None,
        address: Annotated[str | None, Query(description="Entries that moved this handle.")] = None,
        limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    ) -> LedgerOut:
        """The identity ledger, oldest first (the last ``limit`` entries that match)."""
        with mapped():
            wanted = parse(svc, address) if address is not None else None
            about = await named(svc, customer_id) if customer_id is not None else None
        entries = await ledger_entries(svc.db, customer_id=about, address=wanted, limit=limit)
        return LedgerOut(entries=[LedgerEntryOut.model_validate(e) for e in entries])

    @router.delete("/customers/{customer_id}", response_model=ReceiptOut, responses=errors(404, 503))
    async def forget_customer(customer_id: CustomerRef, svc: Svc, actor: Actor) -> ReceiptOut:
        """Erase the customer (and the customers merged into it) from every store; returns the receipt.

        Our tables, Mem0's vectors, history and messages, queued jobs; the identity ledger keeps only
        unreadable tokens in place of the customer's addresses. Cannot be undone.
        """
        with mapped():
            receipt = await forget(
                svc.db, svc.memory, await named(svc, customer_id), actor=actor, media=svc.media
            )
        return ReceiptOut.model_validate(receipt.as_dict())

    @router.get("/customers/{customer_id}/export", response_model=ExportOut, responses=errors(404))
    async def export_customer(customer_id: CustomerRef, svc: Svc) -> ExportOut:
        """Everything held about the customer as one JSON document (``threadline-export/1``)."""
        with mapped():
            found = await named(svc, customer_id)
            return ExportOut.model_validate(await export(svc.db, svc.memory, found))

    router.include_router(memory_routes(services))  # the routers of each area, in the documented order

    @router.get("/dead-letters", response_model=DeadLettersOut)
    async def failed_replies(
        svc: Svc,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_BIGINT)] = 0,
    ) -> DeadLettersOut:
        """Replies that failed for good (after bounded retries, or refused by the platform), newest first."""
        found = await dead_letters(svc.db, limit=limit, offset=offset)
        return DeadLettersOut(dead_letters=[DeadLetterOut.model_validate(d) for d in found])

    @router.post("/dead-letters/{outbox_id}/retry", response_model=DeadLetterOut, responses=errors(404, 409))
    async def retry_failed_reply(
        outbox_id: DbId, body: RetryRequest, svc: Svc, actor: Actor
    ) -> DeadLetterOut:
        """Send a failed reply again (fresh attempts; parts already sent are skipped)."""
        with mapped():
            retried = await retry_dead_letter(svc.db, outbox_id)
        log.info("reply %s queued again by %s", outbox_id, actor)
        return DeadLetterOut.model_validate(retried)

    router.include_router(handoff_routes(services))

    router.include_router(case_routes(services))

    router.include_router(event_routes(services))

    @router.get("/merge-suggestions", response_model=SuggestionsOut)
    async def suggestions(svc: Svc) -> SuggestionsOut:
        """Pairs of live customers that look like one person; for a human to decide, never merged here."""
        return suggestions_out(await merge_suggestions(svc.db, default_region=svc.default_region))

    return router
