"""The web app: serves the hub (built by the composition root, ``core.compose.wire``) over FastAPI.

``create_app(settings=None)`` is the public factory (also importable as ``core.app.create_app``); tests
and tools build the app in-process with it. It builds nothing itself: the adapters, the hub and the
services come from ``core.compose``, as they do for the CLI.

Every webhook route is the same thin glue: read the body (413 past the channel's limit), hand the
framework-free ``WebhookRequest`` to the adapter's ``verify`` (401/403, nothing stored) and ``parse``
(4xx for a body it cannot read), commit every parsed message to the inbox and every status report,
and only then answer what the adapter asked for. A failing commit answers 500, so the platform retries.

In front of every route sits ``core.web.guard.WebGuard``: the admin token is checked for ``/admin``
(and for the API documentation and ``/metrics`` when ``THREADLINE_DOCS_PUBLIC`` /
``THREADLINE_METRICS_PUBLIC`` keep them private) before any body byte is read, and every route has a
body limit (a webhook its channel's ``max_body_bytes``, the admin API 1 MiB, the rest 64 KiB). The data
dir is created (or tightened to) 0700 (``core.store.private_files``). ``/docs`` and ``/redoc`` are
served from local assets (``core.web.docs``): no CDN. Settings read from the environment that do not
parse are a ``ConfigError`` naming the variable (``core.settings.load_settings``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from channels.base import ChannelAdapter, WebhookRequest
from core import heap
from core.compose import build_adapters, wire
from core.errors import BadRequest, ConfigError, MemoryUnavailable, VerificationFailed
from core.logs import hide_query_strings
from core.media.links import links_for
from core.pipeline.dead_letters import count_dead_letters
from core.pipeline.hub import ROLES, Hub, Role
from core.settings import Settings, load_settings
from core.web.admin import admin_router
from core.web.admin_handoffs import REPLY_PATH, reply_body_limit
from core.web.console import REPLY_PATH as CONSOLE_REPLY_PATH
from core.web.console import console_router
from core.web.console import reply_body_limit as console_reply_body_limit
from core.web.docs import add_docs
from core.web.guard import BodyTooLarge, WebGuard
from core.web.mcp import mcp_endpoint, mcp_route, mcp_running
from core.web.media import media_router

log = logging.getLogger(__name__)

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# every webhook path and the channel whose adapter answers it (the body limit there is the adapter's)
RESULT_HEADER = "X-Threadline-Inbox"
WEBHOOKS = {
    "/webhooks/slack/events": "slack",
    "/webhooks/slack/interactive": "slack",
    "/webhooks/telegram": "telegram",
    "/webhooks/twilio/sms": "sms",
    "/webhooks/twilio/status": "sms",
    "/webhooks/email/inbound": "email",
}


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise _TooLarge
    return bytes(body)


async def _webhook(request: Request, channel: str) -> Response:
    hub: Hub = request.app.state.hub
    adapter: ChannelAdapter | None = request.app.state.adapters.get(channel)
    if adapter is None:
        return Response(status_code=404)
    with hub.ingress.receiving():  # background lanes yield while a webhook is being acknowledged
        return await _receive(request, hub, adapter, channel)


async def _receive(request: Request, hub: Hub, adapter: ChannelAdapter, channel: str) -> Response:
    try:
        body = await _read_body(request, adapter.max_body_bytes)
    except (_TooLarge, BodyTooLarge):  # declared too long, or (WebGuard) streamed past the limit
        hub.metrics.webhooks_rejected.labels(channel, "too_large").inc()
        return Response(status_code=413)
    incoming = WebhookRequest(
        method=request.method,
        path=request.url.path,
        query_string=request.scope.get("query_string", b"").decode("latin-1"),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
    )
    try:
        await adapter.verify(incoming)
        parsed = await adapter.parse(incoming)
    except VerificationFailed as exc:
        hub.metrics.webhooks_rejected.labels(channel, "unauthenticated").inc()
        log.warning("%s webhook refused: %s", channel, exc)
        return Response(status_code=exc.status)
    except BadRequest as exc:
        hub.metrics.webhooks_rejected.labels(channel, "bad_request").inc()
        log.info("%s webhook unreadable: %s", channel, exc)
        return Response(status_code=exc.status)
    stored = "none"  # what became of the delivery's messages: the ``X-Threadline-Inbox`` header
    try:
        for message in parsed.messages:
            accepted = await hub.accept(message)
            stored = "duplicate" if accepted.duplicate and stored != "new" else "new"
        for update in parsed.status_updates:
            await hub.record_status(channel, update)
    except SQLAlchemyError as exc:  # locked, busy or down: not stored, so not acknowledged
        hub.metrics.webhooks_rejected.labels(channel, "store_unavailable").inc()
        log.warning("%s webhook not stored (%s); answered 503 for a retry", channel, type(exc).__name__)
        return Response(status_code=503, headers={"Retry-After": "1"})
    reply = parsed.reply
    # new, duplicate or none: for ``threadline simulate``; the platforms ignore it, and it says nothing a
    # sender who could sign the delivery does not know
    headers = {**reply.headers, RESULT_HEADER: stored}
    return Response(reply.body, status_code=reply.status, media_type=reply.content_type, headers=headers)


def create_app(settings: Settings | None = None, *, role: Role = "all", serving: bool = False) -> FastAPI:
    """The Threadline web app: webhooks, health, readiness, metrics and the admin API, with the worker
    (and the memory-move retries) in-process. Bad settings raise ``ConfigError`` naming the variable.

    ``role`` (``threadline serve --role``): ``web`` serves all of that but runs no lanes (processes of
    role ``worker`` on the same PostgreSQL answer what it commits); ``worker`` runs the lanes and serves
    health, readiness, metrics and the admin API, and no webhooks (404).

    ``serving`` (``threadline serve``): once started, the memory is warmed (no customer waits for its
    models) and the heap settled (``core.heap``: no full garbage collection stalls the process), in the
    background."""
    settings = settings or load_settings()
    settings.check()  # refuse to start on bad configuration before anything is opened
    adapters = build_adapters(settings)
    hide_query_strings()  # whoever serves the app: no query string (handles) in uvicorn's access log

    # /mcp (core.web.mcp): the MCP server behind THREADLINE_MCP__TOKEN; None (and /mcp 404) without it
    mcp = mcp_endpoint(settings, lambda: app.state.admin)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        wiring = await wire(settings, senders=adapters, role=role)
        hub = wiring.hub
        app.state.hub = hub
        app.state.admin = wiring.services  # the one IdentityLinks: the background's move round uses it too
        await hub.start()  # its background re-runs memory moves that failed (Mem0 down) until done
        # serving: warmed and settled beside the first requests, not before them (a message that comes
        # first waits for the same load, as it did without a warm-up)
        warming = asyncio.create_task(settle(hub)) if serving else None
        try:
            async with mcp_running(mcp):  # the MCP SDK's session manager (core.web.mcp), when /mcp is on
                yield
        finally:
            if warming is not None:
                warming.cancel()
                await asyncio.gather(warming, return_exceptions=True)
            await hub.stop()

    # the documentation pages are core.web.docs's: served from local assets, no CDN
    app = FastAPI(title="Threadline", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.adapters = adapters if role != "worker" else {}  # the webhooks this process answers
    docs = add_docs(app)

    def webhook_too_large(path: str) -> None:
        hub: Hub | None = getattr(app.state, "hub", None)
        if path in WEBHOOKS and hub is not None:
            hub.metrics.webhooks_rejected.labels(WEBHOOKS[path], "too_large").inc()

    private = [path for path in docs if not settings.docs_public]
    if not settings.metrics_public:
        private.append("/metrics")
    app.add_middleware(
        WebGuard,
        admin_token=settings.admin_token,
        private=private,
        body_limits={path: adapters[ch].max_body_bytes for path, ch in WEBHOOKS.items() if ch in adapters},
        on_too_large=webhook_too_large,
        pattern_limits=[  # replies with files
            (REPLY_PATH, reply_body_limit(settings.attachments)),
            (CONSOLE_REPLY_PATH, console_reply_body_limit(settings.attachments)),
        ],
    )

    @app.post("/webhooks/slack/events", tags=["webhooks"])
    async def slack_events(request: Request) -> Response:
        """Slack Events API (signed with the signing secret; url_verification answered)."""
        return await _webhook(request, "slack")

    @app.post("/webhooks/slack/interactive", tags=["webhooks"])
    async def slack_interactive(request: Request) -> Response:
        """Slack interactivity: presses of a reply's buttons (signed like the events)."""
        return await _webhook(request, "slack")

    @app.post("/webhooks/telegram", tags=["webhooks"])
    async def telegram_updates(request: Request) -> Response:
        """Telegram Bot API updates (authenticated by the secret-token header)."""
        return await _webhook(request, "telegram")

    @app.post("/webhooks/twilio/sms", tags=["webhooks"])
    async def twilio_sms(request: Request) -> Response:
        """Inbound SMS from Twilio (X-Twilio-Signature); answered with empty TwiML."""
        return await _webhook(request, "sms")

    @app.post("/webhooks/twilio/status", tags=["webhooks"])
    async def twilio_status(request: Request) -> Response:
        """Twilio status callbacks for messages we sent (signed like inbound)."""
        return await _webhook(request, "sms")

    @app.post("/webhooks/email/inbound", tags=["webhooks"])
    async def email_inbound(request: Request) -> Response:
        """Inbound-parse webhook (Mailgun-style signature, MIME in ``body-mime``)."""
        return await _webhook(request, "email")

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz(request: Request) -> Response:
        """Readiness: the store answers and the worker runs."""
        hub: Hub = request.app.state.hub
        if await hub.ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready"}, status_code=503)

    @app.get("/metrics", tags=["ops"])
    async def metrics(request: Request) -> Response:
        """Prometheus text format."""
        hub: Hub = request.app.state.hub
        hub.metrics.dead_letters.set(await count_dead_letters(hub.db))
        for state, count in (await request.app.state.admin.handoffs.count_open()).items():
            hub.metrics.handoffs_open.labels(state).set(count)
        return Response(hub.metrics.render(), media_type=PROMETHEUS_CONTENT_TYPE)

    # after the webhooks: routes are matched in order, and a webhook should not be tried against every
    # admin route first. The services exist once the lifespan has opened the hub; looked up per request.
    app.include_router(admin_router(lambda: app.state.admin, token=settings.admin_token))
    # the operator console (HTML, operator sign-in; its body limit is WebGuard's 64 KiB default, but for
    # the reply, which takes files)
    app.include_router(console_router(lambda: app.state.admin, settings))
    # files the hub sends, fetched by Twilio through signed, expiring links (core.web.media)
    app.include_router(media_router(links_for(settings)))
    if mcp is not None:
        app.router.routes.append(mcp_route(mcp))

    return app


# ``threadline serve --workers N`` runs N processes of uvicorn, each building the app from this factory
SERVE_ROLE_ENV = "THREADLINE_SERVE_ROLE"


async def settle(hub: Hub) -> None:
    """Warm the memory where this process answers customers (a backend that fails is opened by its first
    use, as without a warm-up; a ``web`` process of scale mode uses it only for the admin API, and does
    not load its models for nothing) and settle the heap (``core.heap``)."""
    started = time.perf_counter()
    memory = "memory warmed"
    try:
        if hub.runs_lanes:
            await hub.memory.warm()
        else:
            memory = "memory not warmed (this process answers no customer)"
    except MemoryUnavailable:
        memory = "memory not warmed (unavailable: its first use opens it)"
    frozen = heap.settle()
    log.info(
        "serving: %s and heap settled in %.1f s (%d objects frozen)",
        memory,
        time.perf_counter() - started,
        frozen,
    )


def app_from_environment() -> FastAPI:
    """The app of one of ``serve --workers N``'s processes: settings from the environment, the role
    ``serve`` passed in ``THREADLINE_SERVE_ROLE``."""
    role = os.environ.get(SERVE_ROLE_ENV, "all")
    if role not in ROLES:
        raise ConfigError(f"{SERVE_ROLE_ENV} must be one of {', '.join(ROLES)}", setting=SERVE_ROLE_ENV)
    from core.logs import setup_logging

    settings = load_settings()
    setup_logging(settings.log_level)
    return create_app(settings, role=role, serving=True)
