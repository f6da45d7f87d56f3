"""What the routers of the admin API share: path types, error answers, the actor, naming a customer.

The ``/admin`` API is one router (``core.web.admin.admin_router``) that includes a router per area
(``admin_handoffs``, ``admin_memory``, ``admin_events``); they all take their path ids, their documented
error answers, the mapping of our errors to HTTP (``mapped``) and the way a customer is named (an id or an
address, ``named``) from here, so that every route answers alike.
"""

# No ``from __future__ import annotations``: FastAPI reads the annotations below at run time.
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Header, HTTPException, Path, status

from core.compose import Services
from core.errors import Conflict, InvalidAddress, MediaRefused, MemoryUnavailable, NotFound
from core.messages import Address
from core.web.admin_views import ErrorOut
from core.web.guard import ADMIN_TOKEN_SETTING
from identity.directory import find_customer
from identity.normalize import normalize_address
from identity.views import CUSTOMER_OR_ADDRESS, actor_name

ADMIN_SETTING = ADMIN_TOKEN_SETTING

# ids are BIGINT (64-bit signed) columns: a larger path id or offset must be a 422, not a driver overflow
MAX_BIGINT = 2**63 - 1
DbId = Annotated[int, Path(ge=-MAX_BIGINT - 1, le=MAX_BIGINT)]
CustomerRef = Annotated[
    str, Path(description=CUSTOMER_OR_ADDRESS + " An address is URL-encoded: sms:%2B15551230000.")
]


def errors(*codes: int) -> dict[int | str, dict[str, object]]:
    return {code: {"model": ErrorOut, "description": _ERROR_MEANINGS[code]} for code in codes}


_ERROR_MEANINGS = {
    401: "Missing or wrong bearer token.",
    403: f"The admin API is off: {ADMIN_SETTING} is not set.",
    404: "No such customer, address or merge.",
    409: "The change contradicts the current state (e.g. already merged, undone, or the only handle).",
    503: "The memory backend is unavailable; nothing was erased. Try again.",
}


@contextmanager
def mapped() -> Iterator[None]:
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


def get_actor(
    x_threadline_actor: Annotated[
        str | None, Header(description="Who is acting, recorded as admin:<name>.")
    ] = None,
) -> str:
    return actor_name("admin", x_threadline_actor)


def parse(svc: Services, text: str) -> Address:
    return normalize_address(text, default_region=svc.default_region)


async def named(svc: Services, who: str) -> str:
    """The id of the customer ``who`` names (an id or an address); ``NotFound`` when none."""
    return await find_customer(svc.db, who, default_region=svc.default_region)
