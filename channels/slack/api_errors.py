"""When the Slack Web API fails: a 429 retried in the SDK only for short waits, and the mapping of
every other failure to ``TransientDeliveryError`` or ``PermanentDeliveryError`` (``core.errors``).
"""

from __future__ import annotations

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from core.errors import PermanentDeliveryError, TransientDeliveryError

# chat.postMessage errors that no retry can fix.
_PERMANENT_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "account_inactive",
        "invalid_auth",
        "token_revoked",
        "token_expired",
        "not_authed",
        "missing_scope",
        "not_allowed_token_type",
        "msg_too_long",
        "no_text",
        "restricted_action",
        "restricted_action_read_only_channel",
        "restricted_action_thread_only_channel",
        "restricted_action_non_threadable_channel",
        "cannot_reply_to_message",
        "invalid_arguments",
        "invalid_blocks",
        "ekm_access_denied",
        "team_access_not_granted",
        "access_denied",
        "no_permission",
        "org_login_required",
        "enterprise_is_restricted",
    }
)
# Errors Slack documents as temporary.
_TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


class _BoundedRateLimitRetryHandler(AsyncRateLimitErrorRetryHandler):
    """slack_sdk's 429 handler (sleeps ``Retry-After`` then retries), but only for short waits.

    A longer ``Retry-After`` is handed to the worker as ``TransientDeliveryError(retry_after=...)``
    instead of holding the delivery (and the channel's pacer slot) for that long.
    """

    def __init__(self, max_retry_count: int, max_wait: float) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        values = {k.lower(): v for k, v in response.headers.items()}.get("retry-after")
        if not values:
            return True  # the SDK waits about a second
        try:
            wait = int(values[0])
        except ValueError:
            return False  # the SDK's own int() would fail; let the worker back off instead
        return 0 <= wait <= self.max_wait


def _api_error(exc: SlackApiError, sent: tuple[str, ...]) -> TransientDeliveryError | PermanentDeliveryError:
    """Map a failed Web API call. Messages name the error code and status, never the response body."""
    response = exc.response
    status = int(getattr(response, "status_code", 0) or 0)
    data = getattr(response, "data", None)
    error = data.get("error") if isinstance(data, dict) else None
    code = error if isinstance(error, str) else None
    what = f"Slack API error {code or 'unknown'} (HTTP {status})"
    if status == 429 or code == "ratelimited":
        return TransientDeliveryError(what, retry_after=_retry_after(response), sent_ids=sent)
    if code in _PERMANENT_ERRORS:
        return PermanentDeliveryError(what, sent_ids=sent)
    if status >= 500 or code in _TRANSIENT_ERRORS:
        return TransientDeliveryError(what, retry_after=_retry_after(response), sent_ids=sent)
    if code is None and status != 200 and 400 <= status < 500:
        return PermanentDeliveryError(what, sent_ids=sent)
    if code is None:
        return TransientDeliveryError(what, sent_ids=sent)
    return PermanentDeliveryError(what, sent_ids=sent)  # an ok:false on HTTP 200 is a deterministic refusal


def _retry_after(response: object) -> float | None:
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None)
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        seconds = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    return seconds if seconds is not None and seconds >= 0 else None
