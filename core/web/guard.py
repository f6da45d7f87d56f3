"""What every HTTP request passes before it reaches a route: the admin token, then a body limit.

``WebGuard`` is a pure ASGI middleware in front of the whole app (``core.web.app.create_app`` installs it).
It looks at the request line and headers only, so both checks happen before a byte of the body is read:

- **Authentication first.** ``/admin`` and everything under it, and the paths the app marks private
  (the API documentation ``/docs``, ``/redoc``, ``/openapi.json`` unless ``THREADLINE_DOCS_PUBLIC``;
  ``/metrics`` when ``THREADLINE_METRICS_PUBLIC`` is off), need ``Authorization: Bearer
  <THREADLINE_ADMIN_TOKEN>``, compared in constant time. As the admin router's own dependency answers
  (it stays, as a second check): a missing or wrong token is 401 with ``WWW-Authenticate: Bearer``, no
  token configured is 403; the body is JSON ``{"detail": "..."}``. A refused request's body is never
  read by the app (the server discards whatever the client still sends).
- **A body limit on every route.** The admin API takes ``ADMIN_BODY_LIMIT`` (1 MiB), a webhook its
  channel's ``max_body_bytes`` (given by the app), a path matching one of ``pattern_limits`` its own (an
  operator's reply with files), and every other path, known or not (health, metrics, docs),
  ``DEFAULT_BODY_LIMIT`` (64 KiB). A declared ``Content-Length`` over the limit is 413 at once;
  a body without one (chunked) is counted as the app reads it, and the read that passes the limit
  raises ``BodyTooLarge`` (an ``HTTPException`` 413): the route stops there and the answer is 413.

The refusal is logged without the path's query or any header value.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable, Collection, Mapping, Sequence

from fastapi.security.utils import get_authorization_scheme_param
from pydantic import SecretStr
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

ADMIN_TOKEN_SETTING = "THREADLINE_ADMIN_TOKEN"  # noqa: S105 - the variable's name, not a secret
ADMIN_PREFIX = "/admin"
UNAUTHORIZED_DETAIL = "a valid admin bearer token is required"
ADMIN_OFF_DETAIL = f"the admin API is off: set {ADMIN_TOKEN_SETTING} to turn it on"
PRIVATE_OFF_DETAIL = f"this path needs the admin bearer token, and {ADMIN_TOKEN_SETTING} is not set"

ADMIN_BODY_LIMIT = 1024 * 1024
DEFAULT_BODY_LIMIT = 64 * 1024


class BodyTooLarge(HTTPException):
    """The request body passed the route's limit while it was being read (answered 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=f"the request body is larger than {limit} bytes")


def route_path(scope: Scope) -> str:
    """The path the app's router matches (the server's ``root_path`` taken off), as Starlette does."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


def is_admin_path(path: str) -> bool:
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class WebGuard:
    """The ASGI middleware described in the module docstring.

    ``private``: exact paths (besides ``/admin...``) that need the admin token. ``body_limits``: exact
    paths with a limit of their own; ``pattern_limits``: (pattern, limit), for the whole path.
    ``on_too_large(path)`` is called when a declared length is refused (the app counts refused webhooks).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        admin_token: SecretStr | None,
        private: Collection[str] = (),
        body_limits: Mapping[str, int] | None = None,
        on_too_large: Callable[[str], None] | None = None,
        pattern_limits: Sequence[tuple[re.Pattern[str], int]] = (),
    ) -> None:
        self.app = app
        self._expected = admin_token.get_secret_value().encode() if admin_token is not None else b""
        self._private = frozenset(private)
        self._limits = dict(body_limits or {})
        self._patterns = tuple(pattern_limits)
        self._on_too_large = on_too_large

    def limit_for(self, path: str) -> int:
        if path in self._limits:
            return self._limits[path]
        for pattern, limit in self._patterns:
            if pattern.fullmatch(path):
                return limit
        return ADMIN_BODY_LIMIT if is_admin_path(path) else DEFAULT_BODY_LIMIT

    def needs_token(self, path: str) -> bool:
        return is_admin_path(path) or path in self._private

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if self.needs_token(path):
            refusal = self._refusal(scope, admin=is_admin_path(path))
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        limit = self.limit_for(path)
        declared = _header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            if self._on_too_large is not None:
                self._on_too_large(path)
            await _too_large(limit)(scope, receive, send)
            return
        await self._limited(scope, receive, send, limit)

    def _refusal(self, scope: Scope, *, admin: bool) -> JSONResponse | None:
        """The 401/403 answer for a request without the right token (``None``: it may pass)."""
        if not self._expected:
            detail = ADMIN_OFF_DETAIL if admin else PRIVATE_OFF_DETAIL
            return JSONResponse({"detail": detail}, status_code=403)
        authorization = _header(scope, b"authorization")
        scheme, credentials = get_authorization_scheme_param(authorization)
        given = b""
        if authorization and scheme and credentials and scheme.lower() == "bearer":
            given = credentials.encode()
        if hmac.compare_digest(given, self._expected):
            return None
        log.warning("%s refused: missing or wrong bearer token", "admin call" if admin else "private path")
        return JSONResponse(
            {"detail": UNAUTHORIZED_DETAIL}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )

    async def _limited(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Run the app, counting the body it reads; past ``limit`` the read raises ``BodyTooLarge``."""
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:  # normally answered by the app's HTTPException handler; this is the fallback
            if started:
                raise
            await _too_large(limit)(scope, receive, send)


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"detail": f"the request body is larger than {limit} bytes"}, status_code=413)
