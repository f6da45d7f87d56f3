"""The admin API's support cases: ``GET /admin/customers/{id}/cases`` (newest first),
``POST /admin/customers/{id}/cases`` (a person opens one) and
``POST /admin/customers/{id}/cases/{case_id}/resolve`` (a person resolves one, with a summary written to
memory; ``tell``: the customer is told and asked for a rating).

Thin glue over ``core.pipeline.cases`` and ``core.pipeline.case_desk``: an unknown or forgotten customer,
or a case not theirs, is 404; a case resolved already, or nowhere to tell the customer, is 409 and nothing
changes; an empty title or summary is 422. Included by ``core.web.admin`` under its prefix and bearer
check.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run time.
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Path

from core.compose import Services
from core.pipeline.cases import list_cases
from core.web.admin_common import MAX_BIGINT, CustomerRef, errors, mapped, named
from core.web.admin_views import CaseOpenRequest, CaseOut, CaseResolvedOut, CaseResolveRequest, CasesOut

CaseId = Annotated[int, Path(gt=0, le=MAX_BIGINT, description="The case's number.")]


def case_routes(services: Callable[[], Services]) -> APIRouter:
    """The case routes over the ``Services`` that ``services()`` gives per request."""

    def get_services() -> Services:
        return services()

    Svc = Annotated[Services, Depends(get_services)]
    router = APIRouter()

    @router.get("/customers/{customer_id}/cases", response_model=CasesOut, responses=errors(404))
    async def customer_cases(customer_id: CustomerRef, svc: Svc) -> CasesOut:
        """The customer's support cases, newest first: open or resolved, when, by whom, and their turns."""
        with mapped():
            found = await named(svc, customer_id)
        return CasesOut(
            customer_id=found,
            cases=[CaseOut.model_validate(case) for case in await list_cases(svc.db, found)],
        )

    @router.post("/customers/{customer_id}/cases", response_model=CaseOut, responses=errors(404, 409))
    async def open_case(customer_id: CustomerRef, body: CaseOpenRequest, svc: Svc) -> CaseOut:
        """A person opens a case for the customer (``opened_by`` ``operator:<name>``), from their latest
        message if any."""
        with mapped():
            found = await named(svc, customer_id)
            view = await svc.case_desk.open(found, title=body.title, operator=body.operator)
        return CaseOut.model_validate(view)

    @router.post(
        "/customers/{customer_id}/cases/{case_id}/resolve",
        response_model=CaseResolvedOut,
        responses=errors(404, 409),
    )
    async def resolve_case(
        customer_id: CustomerRef, case_id: CaseId, body: CaseResolveRequest, svc: Svc
    ) -> CaseResolvedOut:
        """A person resolves an open case of the customer; the summary is written to memory once. 409 when
        it is resolved already, or ``tell`` finds nowhere to tell the customer (nothing is changed)."""
        with mapped():
            found = await named(svc, customer_id)
            done = await svc.case_desk.resolve(
                found, case_id, summary=body.summary, operator=body.operator, tell=body.tell
            )
        return CaseResolvedOut(case=CaseOut.model_validate(done.case), told_on=done.told_on)

    return router
