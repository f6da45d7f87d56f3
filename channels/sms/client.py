"""The twilio SDK's clients as this channel builds them.

``_rest_client`` points every domain it uses at the configured API base URL and hands the SDK our
credentials as a ready ``Authorization: Basic`` header; ``_http_client`` is the SDK's async HTTP client
with a quiet logger of its own and a trace hook that records the last response's ``Retry-After``
(``_retry_after``), since the SDK's exceptions drop response headers.
"""

from __future__ import annotations

import base64
import contextvars
import email.utils
import logging
import time
from types import SimpleNamespace
from typing import Any, Final

import aiohttp
from twilio.auth_strategy.auth_strategy import AuthStrategy  # type: ignore[import-untyped]
from twilio.auth_strategy.auth_type import AuthType  # type: ignore[import-untyped]
from twilio.credential.credential_provider import CredentialProvider  # type: ignore[import-untyped]
from twilio.http.async_http_client import AsyncTwilioHttpClient  # type: ignore[import-untyped]
from twilio.rest import Client  # type: ignore[import-untyped]

# The SDK's HTTP client logs each request's URL and query string at INFO, and a phone-number look-up
# puts the number in the query: it gets a logger of its own that lets warnings through only.
_sdk_log = logging.getLogger(f"{__name__}.sdk")
_sdk_log.setLevel(logging.WARNING)

DEFAULT_TIMEOUT: Final = 30.0  # seconds for one API call; the SDK's async client sets none at all

# ``Retry-After`` of the last API response seen in the current task (set by an aiohttp trace hook,
# since the SDK's exceptions drop response headers).
_retry_after: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "twilio_retry_after", default=None
)


def _retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date), or ``None``."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


async def _on_request_end(
    session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestEndParams
) -> None:
    _retry_after.set(_retry_after_seconds(params.response.headers.get("Retry-After")))


class _BasicAuthStrategy(AuthStrategy):  # type: ignore[misc]
    def __init__(self, header: str) -> None:
        super().__init__(AuthType.BASIC)
        self._header = header

    def get_auth_string(self) -> str:
        return self._header

    def requires_authentication(self) -> bool:
        return True

    def __repr__(self) -> str:
        return "_BasicAuthStrategy(***)"


class _AccountCredentials(CredentialProvider):  # type: ignore[misc]
    """Account SID + auth token, handed to the SDK as a ready ``Authorization: Basic`` header.

    Given (sid, token) as ``username``/``password``, the SDK's async client builds ``aiohttp.BasicAuth``,
    deprecated since aiohttp 3.14 (and gone in 4.0). A credential provider is the SDK's own seam for
    the header; it is sent on every request just the same.
    """

    def __init__(self, account_sid: str, auth_token: str) -> None:
        super().__init__(AuthType.BASIC)
        encoded = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode("ascii")
        self._strategy = _BasicAuthStrategy(f"Basic {encoded}")

    def to_auth_strategy(self) -> _BasicAuthStrategy:
        return self._strategy

    def __repr__(self) -> str:
        return "_AccountCredentials(***)"


def _http_client() -> Any:
    """The SDK's async HTTP client, with a trace hook that records ``Retry-After`` (needs a running loop)."""
    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(_on_request_end)
    return AsyncTwilioHttpClient(trace_configs=[trace], logger=_sdk_log)


def _rest_client(account_sid: str, auth_token: str, api_base_url: str, http_client: Any) -> Any:
    """``twilio.rest.Client`` with every domain it uses pointed at ``api_base_url``.

    Messages and IncomingPhoneNumbers both live on the ``api`` domain (``client.messages`` is
    ``client.api.account.messages``). Edge and region are cleared: the SDK would otherwise read
    ``TWILIO_EDGE`` / ``TWILIO_REGION`` from the environment and rewrite the host. Credentials go
    through ``_AccountCredentials`` (which the SDK prefers over username and password).
    """
    client = Client(
        account_sid,
        auth_token,
        http_client=http_client,
        credential_provider=_AccountCredentials(account_sid, auth_token),
    )
    client.edge = None
    client.region = None
    client.api.base_url = api_base_url.rstrip("/")
    return client
