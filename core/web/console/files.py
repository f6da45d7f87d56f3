"""``GET /console/customers/{id}/files/{attachment id}``: a customer's file, downloaded by an operator.

The checks, in order: a live operator session (any role: the file is part of the conversation the operator
already reads); the customer exists; the attachment is that customer's (an id of another customer's file,
or a refused one, is 404: ids are not secrets, so the customer in the path must match); its bytes are
still in the media store (gone, after a forget, is 404 too).

The file is served as a download, never rendered: ``Content-Disposition: attachment`` with the stored safe
name (an ASCII fallback and the UTF-8 ``filename*``), the sniffed media type (never the declared one),
``X-Content-Type-Options: nosniff`` and a ``sandbox`` Content-Security-Policy, so a crafted SVG or HTML
file cannot run in the console's origin. Each download is in the operators' audit log (``file``, the
attachment id); the log line names ids only.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote

from fastapi import APIRouter, Request, Response

from core.errors import NotFound
from core.pipeline.handoff import record_action
from core.store.models import AttachmentRow
from core.web.console.auth import Console
from core.web.console.render import BASE
from identity.directory import find_customer

log = logging.getLogger(__name__)

DOWNLOAD_CSP = "default-src 'none'; sandbox"


def disposition(name: str) -> str:
    """``attachment`` with ``name``: an ASCII fallback (no quote, backslash or control character) and the
    exact name as RFC 5987 ``filename*``."""
    fallback = re.sub(r'[^\x20-\x7e]|["\\]', "_", name) or "file"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def add_file_routes(router: APIRouter, console: Console) -> None:
    @router.get(f"{BASE}/customers/{{ref}}/files/{{attachment_id}}")
    async def customer_file(request: Request, ref: str, attachment_id: int) -> Response:
        me = await console.signed_in(request)
        svc = console.svc()
        customer_id = await find_customer(svc.db, ref, default_region=svc.default_region)
        async with svc.db.read() as session:
            row = await session.get(AttachmentRow, attachment_id)
        if row is None or row.customer_id != customer_id or row.status != "stored" or row.sha256 is None:
            raise NotFound("no such file for this customer")
        try:
            data = await svc.media.get(row.sha256)
        except (FileNotFoundError, ValueError):
            raise NotFound("this file is no longer kept") from None
        async with svc.db.session() as session:
            await record_action(
                session,
                operator=me.operator.name,
                action="file",
                customer_id=customer_id,
                subject=str(row.id),
            )
        log.info(
            "console: operator %s downloaded file %s of customer %s", me.operator.id, row.id, customer_id
        )
        return Response(
            data,
            media_type=row.media_type,
            headers={
                "Content-Disposition": disposition(row.name),
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": DOWNLOAD_CSP,
                "Cache-Control": "no-store",
            },
        )
