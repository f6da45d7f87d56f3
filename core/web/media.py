"""``GET /media/{sha256}?expires=...&sig=...``: a file the hub sends, for a platform that fetches media by
URL (Twilio MMS), through a link signed by ``core.media.links``.

No bearer token (Twilio fetches without one): the signature is the permission. A missing, malformed or
wrong signature, or an expired link, is 403 before anything is looked up; a file the hub never sent (only
``attachments`` rows of direction ``out`` are served, never a customer's upload) or one forgotten since is
404. The file goes out with the media type recorded when it was checked (sniffed from its bytes),
``Content-Disposition: attachment`` with its safe name, ``X-Content-Type-Options: nosniff`` and a
sandboxing ``Content-Security-Policy``, so that a browser opening the link never renders it as a page.
The bytes come from the hub's media store (the data dir, or PostgreSQL in scale mode: the process
answering Twilio need not be the one that kept the file). Logged by sha256 prefix only; the query (the
signature) never reaches a log line (``core.logs``).
"""

# No ``from __future__ import annotations``: FastAPI reads the route's annotations at run time.
import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from fastapi.responses import Response
from sqlalchemy import select

from core.media.links import MEDIA_PATH, MediaLinks, Verdict
from core.pipeline.hub import Hub
from core.store.models import AttachmentRow
from core.web.console.files import disposition

log = logging.getLogger(__name__)

_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, no-store",
}


def media_router(links: MediaLinks | None) -> APIRouter:
    """The signed media route; with ``links`` ``None`` (no SMS configured) every request is 404."""
    router = APIRouter(tags=["media"])

    @router.get(f"{MEDIA_PATH}/{{sha256}}", response_class=Response)
    async def media(
        request: Request,
        sha256: Annotated[str, Path(max_length=64)],
        expires: Annotated[str | None, Query(max_length=12)] = None,
        sig: Annotated[str | None, Query(max_length=64)] = None,
    ) -> Response:
        """A file the hub sent, through its signed, expiring link (403 wrong or expired, 404 unknown)."""
        if links is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="not found")
        verdict = links.verify(sha256, expires, sig)
        if verdict is not Verdict.VALID:
            log.info("media link refused (%s)", verdict.value)
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"the link is {verdict.value}")
        hub: Hub = request.app.state.hub
        async with hub.db.read() as session:
            row = await session.scalar(
                select(AttachmentRow)
                .where(
                    AttachmentRow.sha256 == sha256,
                    AttachmentRow.direction == "out",
                    AttachmentRow.status == "stored",
                )
                .order_by(AttachmentRow.id.desc())
                .limit(1)
            )
        data = None
        if row is not None:
            try:  # from the data dir, or from PostgreSQL in scale mode (whichever process kept it)
                data = await hub.media.store.get(sha256)
            except FileNotFoundError:
                data = None
        if row is None or data is None:
            log.info("media %s… not served: not a file the hub sends", sha256[:12])
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="not found")
        log.info("media %s… served (%s, %d bytes)", sha256[:12], row.media_type, len(data))
        headers = {**_HEADERS, "Content-Disposition": disposition(row.name)}
        if request.method == "HEAD":  # the headers of the GET, no body
            headers["Content-Length"] = str(len(data))
            return Response(b"", media_type=row.media_type, headers=headers)
        return Response(data, media_type=row.media_type, headers=headers)

    # a HEAD is answered as the GET (headers, no body), and not listed in the API document twice
    router.add_api_route(
        f"{MEDIA_PATH}/{{sha256}}",
        media,
        methods=["HEAD"],
        response_class=Response,
        include_in_schema=False,
    )
    return router
