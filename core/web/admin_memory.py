"""The admin API's memory route: search a customer's memory, or list it, with filters.

``GET /admin/customers/{id}/memories`` over the process's ``MemoryStore``, filtered by category, channel
and time (``core.messages.MemoryFilter``) before the limit; included by ``core.web.admin.admin_router``
(its prefix, bearer check and error answers apply).
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run time, and
# they name dependencies local to ``memory_routes``.
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from core.compose import Services
from core.messages import MemoryCategory, MemoryFilter
from core.web.admin_common import CustomerRef, errors, mapped, named
from core.web.admin_views import MemoriesOut, memories_out


def memory_routes(services: Callable[[], Services]) -> APIRouter:
    """The memory route over the ``Services`` that ``services()`` gives per request."""

    def get_services() -> Services:
        return services()

    Svc = Annotated[Services, Depends(get_services)]
    router = APIRouter()

    @router.get("/customers/{customer_id}/memories", response_model=MemoriesOut, responses=errors(404, 503))
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
        with mapped():
            filters = MemoryFilter.parse(category=category, channel=channel, since=since, until=until)
            found = await named(svc, customer_id)
            chosen = None if filters.empty else filters
            if query.strip():
                records = await svc.memory.recall(found, query, limit=limit, filters=chosen)
            else:
                records = (await svc.memory.list(found, filters=chosen))[:limit]
        return memories_out(found, query.strip() or None, filters, records)

    return router
