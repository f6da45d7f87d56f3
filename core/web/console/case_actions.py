"""The console's case actions (POST), for agents and admins: open a case for the customer, resolve one of
their open cases with a summary (and, checked by default, tell the customer and ask for a rating).

The same thin glue as ``core.web.console.actions``: signed in with the session's CSRF token, the form read,
one ``core.pipeline.case_desk.CaseDesk`` call attributed to the operator (``operator:<name>``, recorded in
``operator_actions`` by the desk), a 303 back to the customer page with a message shown once. A refusal
(no such customer or case: 404; resolved already, or nowhere to tell the customer: 409; an empty title or
summary: 422) is a page with its message, and nothing was changed.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response

from core.pipeline.cases import MAX_SUMMARY_CHARS, MAX_TITLE_CHARS
from core.web.console.actions import MAX_BIGINT
from core.web.console.auth import Console, text_field
from core.web.console.render import BASE, Problem, redirect
from identity.directory import find_customer

log = logging.getLogger(__name__)


def add_case_routes(router: APIRouter, console: Console) -> None:
    def page_of(customer_id: str) -> str:
        return f"{BASE}/customers/{customer_id}#cases"

    @router.post(f"{BASE}/customers/{{ref}}/cases")
    async def open_case(request: Request, ref: str) -> Response:
        me, form = await console.posted(request)
        title = text_field(form, "title", limit=MAX_TITLE_CHARS * 4)
        svc = console.svc()
        customer_id = await find_customer(svc.db, ref, default_region=svc.default_region)
        case = await svc.case_desk.open(customer_id, title=title, operator=me.operator.name)
        log.info("console: operator %s opened case %s", me.operator.id, case.id)
        return redirect(page_of(customer_id), flash=f"Case #{case.id} is open.", secure=console.secure)

    @router.post(f"{BASE}/customers/{{ref}}/cases/{{case_id}}/resolve")
    async def resolve_case(request: Request, ref: str, case_id: int) -> Response:
        me, form = await console.posted(request)
        if not 0 < case_id <= MAX_BIGINT:
            raise Problem(404, f"no case {case_id}")
        summary = text_field(form, "summary", limit=MAX_SUMMARY_CHARS * 4)
        tell = form.get("tell") == "on"
        svc = console.svc()
        customer_id = await find_customer(svc.db, ref, default_region=svc.default_region)
        done = await svc.case_desk.resolve(
            customer_id, case_id, summary=summary, operator=me.operator.name, tell=tell
        )
        told = f" The customer was told on {done.told_on} and asked for a rating." if done.told_on else ""
        log.info("console: operator %s resolved case %s", me.operator.id, case_id)
        flash = f"Case #{case_id} is resolved.{told}"
        return redirect(page_of(customer_id), flash=flash, secure=console.secure)
