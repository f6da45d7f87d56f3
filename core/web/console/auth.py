"""Signing in to the console, sessions, CSRF and roles.

- **Sign-in** (``GET/POST /console/login``): name and password (``core.store.operators``, argon2id). The
  form carries a login CSRF token that must equal the ``threadline_console_login`` cookie (double submit).
  A wrong name or password is 401 and creates nothing. Attempts are limited per name and per client
  address (``settings.console.login_attempts`` per 15 minutes; 429 past it), counted in the database's
  shared limits on PostgreSQL (every process together) and in this process on SQLite (one ``serve`` holds
  its data dir); a successful sign-in gives its attempts back. The admin token is not a password here.
- **Session cookie** ``threadline_console``: a random token (the database keeps its SHA-256), HttpOnly,
  SameSite=Strict, Path=/console, Secure when ``settings.console.secure_cookie`` says so (unset: when
  ``THREADLINE_PUBLIC_BASE_URL`` is ``https://``). ``POST /console/logout`` deletes the session.
- **CSRF**: every console POST carries the session's token, in the form field ``csrf_token`` or the header
  ``X-CSRF-Token`` (htmx); missing or wrong is 403 and nothing is done.
- **Roles**: an ``agent`` takes over, replies and hands back; an ``admin`` may also link, unlink, merge,
  undo merges, forget, export, retry dead letters and manage event webhooks (``require_admin``: 403 for an
  agent).

Logs name operators by id and client addresses never; no password or token is logged.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import APIRouter, Request, Response
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from core.compose import Services
from core.ports import SharedLimits
from core.settings import Settings
from core.store.operators import Operators, SignedIn
from core.web.console.render import BASE, LOGIN, NotSignedIn, Problem, is_htmx, page, redirect

log = logging.getLogger(__name__)

SESSION_COOKIE = "threadline_console"
LOGIN_COOKIE = "threadline_console_login"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
CSRF_MESSAGE = "Missing or invalid CSRF token."
WRONG_MESSAGE = "Wrong name or password."
LOGIN_WINDOW = 15 * 60.0
MAX_FIELD = 8192


@dataclass
class Console:
    """What every console route shares: the services (looked up per request), the settings, and the
    per-process pieces built once over them (the operators store, the sign-in limits)."""

    services: Callable[[], Services]
    settings: Settings
    _built_for: Services | None = field(default=None, repr=False)
    _operators: Operators | None = field(default=None, repr=False)
    _limits: SharedLimits | None = field(default=None, repr=False)

    def svc(self) -> Services:
        svc = self.services()
        if svc is not self._built_for:  # a new lifespan: build the store and the limits over it again
            self._built_for = svc
            self._operators = Operators(svc.db, session_hours=self.settings.console.session_hours)
            self._limits = _limits_for(svc)
        return svc

    def operators(self) -> Operators:
        self.svc()
        assert self._operators is not None
        return self._operators

    def limits(self) -> SharedLimits:
        self.svc()
        assert self._limits is not None
        return self._limits

    @property
    def secure(self) -> bool:
        chosen = self.settings.console.secure_cookie
        if chosen is not None:
            return chosen
        return (self.settings.public_base_url or "").lower().startswith("https://")

    # ----- the signed-in operator ------------------------------------------------------------------

    async def signed_in(self, request: Request) -> SignedIn:
        """The request's live session; ``NotSignedIn`` when there is none."""
        found = await self.operators().lookup(request.cookies.get(SESSION_COOKIE))
        if found is None:
            raise NotSignedIn
        return found

    async def posted(
        self, request: Request, *, max_files: int = 0, max_part_size: int = MAX_FIELD
    ) -> tuple[SignedIn, FormData]:
        """A console POST: signed in (``NotSignedIn``), then the session's CSRF token (403), then the form
        (``max_files`` file parts at most: only the reply takes files; the caller closes the form)."""
        me = await self.signed_in(request)
        form = await read_form(request, max_files=max_files, max_part_size=max_part_size)
        given = request.headers.get(CSRF_HEADER) or _text(form, CSRF_FIELD)
        if not me.csrf_matches(given):
            log.warning("console POST refused for operator %s: missing or wrong CSRF token", me.operator.id)
            raise Problem(403, CSRF_MESSAGE)
        return me, form


def _limits_for(svc: Services) -> SharedLimits:
    if svc.db.dialect == "postgresql":
        from core.store.shared_limits import DatabaseLimits

        return DatabaseLimits(svc.db)
    from channels.limits import LocalLimits

    return LocalLimits()


def require_admin(me: SignedIn, action: str) -> None:
    """403 ``Only an admin can <action>.`` for an agent."""
    if not me.operator.is_admin:
        log.info("console: operator %s (agent) refused: admin action", me.operator.id)
        raise Problem(403, f"Only an admin can {action}.")


async def read_form(request: Request, *, max_files: int = 0, max_part_size: int = MAX_FIELD) -> FormData:
    """The request's form: at most 64 fields of ``max_part_size`` bytes and ``max_files`` files (the body
    itself is limited by ``core.web.guard``); 422 when it cannot be read or holds too many files."""
    try:
        return await request.form(max_files=max_files, max_fields=64, max_part_size=max_part_size)
    except HTTPException as exc:  # Starlette's answer to a multipart parser's refusal (400), or 413
        if exc.status_code == 413:  # the body passed the route's limit while it was read (core.web.guard)
            raise
        if str(exc.detail).startswith("Too many files") and max_files:
            raise Problem(422, f"Too many files (at most {max_files} a reply): nothing was sent.") from exc
        raise Problem(422, "The form could not be read.") from exc
    except Exception as exc:  # an unreadable body (the parser's own error types vary)
        raise Problem(422, "The form could not be read.") from exc


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def text_field(form: FormData, name: str, *, required: bool = True, limit: int = MAX_FIELD) -> str:
    """A text field of the form, stripped; 422 when it is missing (and ``required``) or too long."""
    value = (_text(form, name) or "").strip()
    if required and not value:
        raise Problem(422, f"The field {name} is required.")
    if len(value) > limit:
        raise Problem(422, f"The field {name} is longer than {limit} characters.")
    return value


# ----- the sign-in routes --------------------------------------------------------------------------


def _login_page(request: Request, token: str, *, status: int = 200, error: str | None = None) -> Response:
    return page(request, "login.html", status=status, title="Sign in", login_csrf=token, error=error)


def _set_login_cookie(console: Console, response: Response, token: str) -> None:
    response.set_cookie(
        LOGIN_COOKIE, token, path=BASE, httponly=True, samesite="strict", secure=console.secure, max_age=3600
    )


def add_auth_routes(router: APIRouter, console: Console) -> None:
    @router.get(f"{BASE}/login")
    async def login_form(request: Request) -> Response:
        if await console.operators().lookup(request.cookies.get(SESSION_COOKIE)) is not None:
            return redirect(f"{BASE}/")
        token = request.cookies.get(LOGIN_COOKIE) or ""
        if not (16 <= len(token) <= 64):
            token = secrets.token_urlsafe(32)
        response = _login_page(request, token)
        _set_login_cookie(console, response, token)
        return response

    @router.post(f"{BASE}/login")
    async def login(request: Request) -> Response:
        form = await read_form(request)
        cookie = request.cookies.get(LOGIN_COOKIE) or ""
        given = _text(form, CSRF_FIELD) or ""
        if not cookie or not hmac.compare_digest(cookie.encode(), given.encode()):
            log.warning("console sign-in refused: missing or wrong login CSRF token")
            raise Problem(403, CSRF_MESSAGE)
        name = (_text(form, "name") or "").strip()[:64]
        password = _text(form, "password") or ""
        limits = console.limits()
        attempts = console.settings.console.login_attempts
        client = request.client.host if request.client is not None else "unknown"
        tickets: list[tuple[str, float]] = []
        for key in (f"console-login:name:{name.lower()}", f"console-login:ip:{client}"):
            ticket = await limits.reserve(key, limit=attempts, window=LOGIN_WINDOW)
            if ticket is None:
                for taken, stamp in tickets:
                    await limits.release(taken, stamp)
                log.warning("console sign-in refused: too many attempts")
                return _login_page(
                    request,
                    cookie,
                    status=429,
                    error="Too many sign-in attempts. Wait 15 minutes and try again.",
                )
            tickets.append((key, ticket))
        operator = await console.operators().verify(name, password)
        if operator is None:
            log.info("console sign-in failed")
            return _login_page(request, cookie, status=401, error=WRONG_MESSAGE)
        for key, stamp in tickets:  # a successful sign-in does not count against the limits
            await limits.release(key, stamp)
        made = await console.operators().create_session(operator)
        response = redirect(f"{BASE}/")
        response.set_cookie(
            SESSION_COOKIE,
            made.token,
            path=BASE,
            httponly=True,
            samesite="strict",
            secure=console.secure,
            max_age=int(console.settings.console.session_hours * 3600),
        )
        response.delete_cookie(LOGIN_COOKIE, path=BASE)
        return response

    @router.post(f"{BASE}/logout")
    async def logout(request: Request) -> Response:
        await console.posted(request)
        await console.operators().delete_session(request.cookies.get(SESSION_COOKIE))
        response = redirect(LOGIN)
        response.delete_cookie(
            SESSION_COOKIE, path=BASE, httponly=True, samesite="strict", secure=console.secure
        )
        if is_htmx(request):
            response.headers["HX-Redirect"] = LOGIN
        return response
