"""The admin API's event-endpoint routes: register, list and delete receivers, read and retry deliveries.

``/admin/event-endpoints`` and its deliveries, over ``core.events.endpoints``; included by
``core.web.admin.admin_router`` (its prefix, bearer check and error answers apply). A receiver's secret
is shown once, in the answer that creates it.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run time, and
# they name dependencies local to ``event_routes``.
import logging
from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from core.compose import Services
from core.events.endpoints import (
    create_endpoint,
    delete_endpoint,
    list_deliveries,
    list_endpoints,
    retry_delivery,
)
from core.web.admin_common import MAX_BIGINT, DbId, errors, get_actor, mapped
from core.web.admin_views import (
    EventDeliveriesOut,
    EventDeliveryOut,
    EventEndpointCreatedOut,
    EventEndpointOut,
    EventEndpointRequest,
    EventEndpointsOut,
    RetryRequest,
)

log = logging.getLogger(__name__)


def event_routes(services: Callable[[], Services]) -> APIRouter:
    """The ``/event-endpoints`` routes over the ``Services`` that ``services()`` gives per request."""

    def get_services() -> Services:
        return services()

    Svc = Annotated[Services, Depends(get_services)]
    Actor = Annotated[str, Depends(get_actor)]
    router = APIRouter()

    @router.post("/event-endpoints", response_model=EventEndpointCreatedOut)
    async def create_event_endpoint(body: EventEndpointRequest, svc: Svc) -> EventEndpointCreatedOut:
        """Register a receiver of the hub's events; the answer's ``secret`` (``whsec_``) is shown only here.
        422 for an unknown type, or a URL that is not https or whose host is not public (SSRF guard,
        ``THREADLINE_EVENTS__ALLOW_PRIVATE``): then nothing is stored."""
        with mapped():
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

    @router.delete("/event-endpoints/{endpoint_id}", response_model=EventEndpointOut, responses=errors(404))
    async def delete_event_endpoint(endpoint_id: DbId, svc: Svc) -> EventEndpointOut:
        """Delete a receiver: nothing more is sent to it (queued deliveries are cancelled)."""
        with mapped():
            return EventEndpointOut.model_validate(await delete_endpoint(svc.db, endpoint_id))

    @router.get(
        "/event-endpoints/{endpoint_id}/deliveries", response_model=EventDeliveriesOut, responses=errors(404)
    )
    async def event_deliveries(
        endpoint_id: DbId,
        svc: Svc,
        delivery_status: Annotated[
            Literal["pending", "failed", "sent", "dead", "cancelled"] | None,
            Query(alias="status", description="Only deliveries in this state."),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_BIGINT)] = 0,
    ) -> EventDeliveriesOut:
        """The receiver's delivery log, newest first: tries, last answer, state (not the bodies)."""
        with mapped():
            found = await list_deliveries(
                svc.db, endpoint_id, status=delivery_status, limit=limit, offset=offset
            )
        return EventDeliveriesOut(
            endpoint_id=endpoint_id, deliveries=[EventDeliveryOut.model_validate(d) for d in found]
        )

    @router.post(
        "/event-endpoints/{endpoint_id}/deliveries/{delivery_id}/retry",
        response_model=EventDeliveryOut,
        responses=errors(404, 409),
    )
    async def retry_event_delivery(
        endpoint_id: DbId,
        delivery_id: Annotated[str, Path(max_length=64, description="The delivery's webhook-id (msg_...).")],
        body: RetryRequest,
        svc: Svc,
        actor: Actor,
    ) -> EventDeliveryOut:
        """Send a dead delivery again, under the same ``webhook-id``, with fresh tries (409 unless dead)."""
        with mapped():
            retried = await retry_delivery(svc.db, endpoint_id, delivery_id)
        log.info("event delivery of endpoint %s queued again by %s", endpoint_id, actor)
        return EventDeliveryOut.model_validate(retried)

    return router
