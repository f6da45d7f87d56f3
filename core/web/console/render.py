"""How the console answers: Jinja2 pages (autoescaped), its security headers, flash messages, and the one
place where errors become pages (``ConsoleRoute``).

Every console response carries ``SECURITY_HEADERS``: a Content-Security-Policy that allows scripts, styles
and images from the console itself only (no inline script or style anywhere), no framing, a same-origin
referrer and ``Cache-Control: no-store`` (the vendored static files may be cached). Errors are mapped in
``ConsoleRoute`` only: ``NotSignedIn`` → 303 to the sign-in page (401 with ``HX-Redirect`` for htmx),
``Problem`` → its status, ``NotFound`` 404, ``Conflict`` 409, ``ValueError`` (a bad address too) and
unreadable input 422, ``MemoryUnavailable`` 503; each as a page that says what went wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from core.errors import Conflict, MemoryUnavailable, NotFound

log = logging.getLogger(__name__)

BASE = "/console"
LOGIN = f"{BASE}/login"
HERE = Path(__file__).resolve().parent
FLASH_COOKIE = "threadline_console_flash"

CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


class NotSignedIn(Exception):
    """No live session: a page sends the browser to the sign-in page."""


class Problem(Exception):
    """A refusal the operator reads: ``status`` and a sentence (CSRF, role, a bad form)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        back: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.back = back  # a console page to go back to (the customer's, after a refused reply)


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min"


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _iso(moment: datetime | None) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment is not None else ""


ENV = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters["when"] = _when
ENV.filters["iso"] = _iso
ENV.filters["minutes"] = _minutes
ENV.globals["base"] = BASE


def render_text(template: str, **context: Any) -> str:
    return ENV.get_template(template).render(**context)


def page(
    request: Request,
    template: str,
    *,
    status: int = 200,
    me: Any = None,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """A whole page (``template`` extends ``base.html``); a waiting flash message is shown and cleared."""
    flash = unquote(request.cookies.get(FLASH_COOKIE, ""))[:300] or None
    html = render_text(template, me=me, flash=flash, csrf=me.csrf if me is not None else "", **context)
    response = HTMLResponse(html, status_code=status, headers=dict(headers or {}))
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path=BASE)
    return response


def fragment(template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    """A piece of a page, for htmx to swap in."""
    return HTMLResponse(render_text(template, **context), status_code=status)


def redirect(to: str, *, flash: str | None = None, secure: bool = False) -> RedirectResponse:
    """303 to ``to`` (after a POST), with a message shown once on the next page."""
    response = RedirectResponse(to, status_code=303)
    if flash:
        response.set_cookie(
            FLASH_COOKIE,
            quote(flash[:300]),
            max_age=120,
            path=BASE,
            httponly=True,
            samesite="strict",
            secure=secure,
        )
    return response


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def error_page(
    request: Request,
    status: int,
    message: str,
    headers: Mapping[str, str] | None = None,
    *,
    back: str | None = None,
) -> Response:
    title = {
        401: "Not signed in",
        403: "Not allowed",
        404: "Not found",
        409: "Conflict",
        422: "Cannot do that",
        429: "Too many attempts",
        503: "Try again",
    }.get(status, "Error")
    html = render_text(
        "error.html", me=None, flash=None, csrf="", title=title, message=message, status=status, back=back
    )
    return HTMLResponse(html, status_code=status, headers=dict(headers or {}))


def with_headers(response: Response, *, static: bool = False) -> Response:
    for name, value in SECURITY_HEADERS.items():
        if name == "Content-Security-Policy" and "sandbox" in response.headers.get(name, ""):
            continue  # a file download's own policy (``core.web.console.files``): stricter still
        response.headers[name] = value
    if not static:
        response.headers["Cache-Control"] = "no-store"
    return response


class ConsoleRoute(APIRoute):
    """A console route: the errors of the module docstring become pages, every answer gets the headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()
        static = self.path.startswith(f"{BASE}/static/")

        async def handler(request: Request) -> Response:
            try:
                response = await original(request)
            except NotSignedIn:
                if is_htmx(request):
                    response = error_page(request, 401, "Please sign in.", {"HX-Redirect": LOGIN})
                else:
                    response = RedirectResponse(LOGIN, status_code=303)
            except Problem as exc:
                response = error_page(request, exc.status, exc.message, exc.headers, back=exc.back)
            except NotFound as exc:
                response = error_page(request, 404, str(exc))
            except Conflict as exc:
                response = error_page(request, 409, str(exc))
            except MemoryUnavailable as exc:
                response = error_page(request, 503, str(exc))
            except RequestValidationError:
                response = error_page(request, 422, "The form was incomplete or could not be read.")
            except ValueError as exc:  # InvalidAddress too; the services' messages name no secret
                response = error_page(request, 422, str(exc))
            return with_headers(response, static=static)

        return handler
