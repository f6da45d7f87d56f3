"""The operator console at ``/console/`` (issue 14): server-rendered pages (Jinja2, autoescaped) that the
hub serves itself, with htmx (vendored in ``static/``, see ``static/VENDORED.md``) refreshing the inbox and a
customer's timeline every few seconds. No CDN, no inline script or style (``render.CSP``).

``console_router(services, settings)`` builds the routes over the process's ``core.compose.Services``
(looked up per request, as the admin API does). The modules, one noun each:

- ``render``: pages, fragments, security headers, flash messages, and the one place errors become pages;
- ``auth``: sign-in, sessions, CSRF, roles, sign-in limits (the accounts: ``core.store.operators``);
- ``views``: what the inbox and a customer's page read; ``overview`` and ``charts``: the overview page;
- ``files``: a customer's file, downloaded (operators only, as an attachment, never rendered);
- ``events``: the event webhooks page (admins: endpoints registered, listed, deleted; deliveries retried);
- ``pages``: the GET routes; ``actions``: the POST routes (take over, hand back, reply, with files if
  any; admin: link, unlink, merge, undo, forget, retry).

``REPLY_PATH`` and ``reply_body_limit``: the reply's own body limit, which ``core.web.app`` gives
``core.web.guard.WebGuard`` (the other console routes keep its 64 KiB default).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter

from core.compose import Services
from core.settings import Settings
from core.web.console.actions import REPLY_PATH, add_action_routes, reply_body_limit
from core.web.console.auth import Console, add_auth_routes
from core.web.console.case_actions import add_case_routes
from core.web.console.events import add_event_routes
from core.web.console.files import add_file_routes
from core.web.console.pages import add_page_routes
from core.web.console.render import ConsoleRoute

__all__ = ["REPLY_PATH", "console_router", "reply_body_limit"]


def console_router(services: Callable[[], Services], settings: Settings) -> APIRouter:
    """The ``/console`` routes over the ``Services`` that ``services()`` gives per request."""
    console = Console(services=services, settings=settings)
    router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
    add_auth_routes(router, console)
    add_page_routes(router, console)
    add_action_routes(router, console)
    add_case_routes(router, console)
    add_file_routes(router, console)
    add_event_routes(router, console)
    return router
