"""SMS through Twilio Programmable Messaging (the ``twilio`` SDK 9).

Two webhooks reach this adapter, told apart by ``request.path``:

- ``/webhooks/twilio/sms``: an inbound message. Answered at once with an empty TwiML ``<Response/>``
  (the reply goes out later through the REST API). Opt-out keywords are flagged in
  ``control`` (``stop`` / ``start`` / ``help``) for the worker; they are never dropped,
  since Twilio forwards them after handling the opt-out itself;
- ``/webhooks/twilio/status``: a status callback for a message we sent, as a ``StatusUpdate``.

Both are signed the same way (``X-Twilio-Signature``, checked with the SDK's ``RequestValidator``)
over the PUBLIC URL Twilio called: ``public_base_url`` + path + raw query string, never the URL the
server saw (a TLS proxy makes that ``http://`` and another host). Every form parameter is signed,
including the ones Twilio adds without notice, so all of them are kept.

``send`` goes through ``twilio.rest.Client`` with ``AsyncTwilioHttpClient`` and ``create_async``,
split at Twilio's 1,600-character limit (error 21617), preferring paragraph, sentence and word
boundaries. Logs carry message sids and error codes only: never a body or a phone number.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import email.utils
import logging
import re
import time
import urllib.parse
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, Final

import aiohttp
from twilio.auth_strategy.auth_strategy import AuthStrategy  # type: ignore[import-untyped]
from twilio.auth_strategy.auth_type import AuthType  # type: ignore[import-untyped]
from twilio.base.exceptions import (  # type: ignore[import-untyped]
    TwilioException,
    TwilioRestException,
    TwilioServiceException,
)
from twilio.credential.credential_provider import CredentialProvider  # type: ignore[import-untyped]
from twilio.http.async_http_client import AsyncTwilioHttpClient  # type: ignore[import-untyped]
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]
from twilio.rest import Client  # type: ignore[import-untyped]
from twilio.twiml.messaging_response import MessagingResponse  # type: ignore[import-untyped]

from channels.base import DEFAULT_MAX_BODY_BYTES, Parsed, WebhookReply, WebhookRequest
from core.errors import (
    BadRequest,
    ConfigError,
    InvalidAddress,
    PermanentDeliveryError,
    ThreadlineError,
    TransientDeliveryError,
    VerificationFailed,
)
from core.messages import (
    STATUS_RANK,
    Address,
    Assurance,
    Control,
    Delivery,
    InboundMessage,
    OutboundMessage,
    StatusUpdate,
)
from core.settings import TwilioSettings, env_name

log = logging.getLogger(__name__)

# The SDK's HTTP client logs each request's URL and query string at INFO, and a phone-number look-up
# puts the number in the query: it gets a logger of its own that lets warnings through only.
_sdk_log = logging.getLogger(f"{__name__}.sdk")
_sdk_log.setLevel(logging.WARNING)

INBOUND_PATH: Final = "/webhooks/twilio/sms"
STATUS_PATH: Final = "/webhooks/twilio/status"
SIGNATURE_HEADER: Final = "x-twilio-signature"
SMS_MAX_CHARS: Final = 1600  # Twilio's hard limit on a message body (error 21617)
DEFAULT_TIMEOUT: Final = 30.0  # seconds for one API call; the SDK's async client sets none at all

_FORM_TYPE = "application/x-www-form-urlencoded"
_MAX_FIELDS = 1000
_WHATSAPP = "whatsapp:"

# Whole trimmed body, case-insensitive. Twilio handles the opt-out itself and still forwards the message.
_CONTROL_KEYWORDS: Final[dict[str, str]] = {
    **dict.fromkeys(("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"), "stop"),
    **dict.fromkeys(("START", "YES", "UNSTOP"), "start"),
    **dict.fromkeys(("HELP", "INFO"), "help"),
}
# Twilio error codes no retry can fix: recipient opted out, invalid To, not a mobile number,
# region not enabled for the account, To unreachable from this From.
_PERMANENT_CODES: Final = frozenset({21610, 21211, 21614, 21408, 21612})
_MEDIA_URL = re.compile(r"MediaUrl(\d+)")
_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’)\]]*\s+")

# ``Retry-After`` of the last API response seen in the current task (set by an aiohttp trace hook,
# since the SDK's exceptions drop response headers).
_retry_after: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "twilio_retry_after", default=None
)


class _Params(dict[str, str]):
    """A form body as the SDK's validator reads it: keys in order, ``getall`` for repeated names."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__()
        self._all: dict[str, list[str]] = {}
        for key, value in pairs:
            self.setdefault(key, value)
            self._all.setdefault(key, []).append(value)

    def getall(self, key: str) -> list[str]:
        return list(self._all[key])


def _parse_form(body: bytes) -> _Params:
    """Parse an ``application/x-www-form-urlencoded`` body; ``ValueError`` (incl. Unicode) when it is not."""
    text = body.decode("utf-8")
    pairs = urllib.parse.parse_qsl(
        text, keep_blank_values=True, strict_parsing=True, errors="strict", max_num_fields=_MAX_FIELDS
    )
    return _Params(pairs)


def _units(text: str) -> int:
    """Length as Twilio counts it: UTF-16 code units (an emoji outside the BMP counts twice)."""
    return len(text.encode("utf-16-le")) // 2


def _fit(text: str, limit: int) -> int:
    """The largest ``n`` such that ``text[:n]`` is at most ``limit`` UTF-16 units."""
    if _units(text) <= limit:
        return len(text)
    used = 0
    for index, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > limit:
            return index
    return len(text)


def _cut_point(window: str) -> int:
    """Where to end a part inside ``window``: paragraph, line, sentence, then word; else all of it."""
    floor = len(window) // 2
    for separator in ("\n\n", "\n"):
        at = window.rfind(separator)
        if at >= floor:
            return at + len(separator)
    ends = [m.end() for m in _SENTENCE_END.finditer(window)]
    if ends and ends[-1] >= floor:
        return ends[-1]
    spaces = [m.end() for m in re.finditer(r"\s+", window)]
    if spaces and spaces[-1] > 0:
        return spaces[-1]
    return len(window)


def split_sms(text: str, limit: int = SMS_MAX_CHARS) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` characters (UTF-16 units), at natural boundaries.

    Parts are trimmed; a text with nothing but whitespace gives no parts.
    """
    if limit < 2:
        raise ValueError("limit must be at least 2")
    parts: list[str] = []
    rest = text.strip()
    while rest:
        if _units(rest) <= limit:
            parts.append(rest)
            break
        window = rest[: _fit(rest, limit)]
        cut = _cut_point(window)
        part = rest[:cut].rstrip()
        if not part:  # a run of whitespace at the start cannot happen after strip; be safe anyway
            part, cut = window, len(window)
        parts.append(part)
        rest = rest[cut:].lstrip()
    return parts


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


def _require(settings: TwilioSettings) -> tuple[str, str, str]:
    """Account SID, auth token and sender number, or ``ConfigError`` naming the missing setting."""
    token = settings.auth_token.get_secret_value() if settings.auth_token is not None else ""
    values = {
        "account_sid": settings.account_sid or "",
        "auth_token": token,
        "from_number": settings.from_number or "",
    }
    for key, value in values.items():
        if not value.strip():
            raise ConfigError(
                f"{env_name('twilio', key)} is required for SMS", setting=env_name("twilio", key)
            )
    return values["account_sid"].strip(), token, values["from_number"].strip()


def _public_base(public_base_url: str) -> str:
    """The public base URL without a trailing slash, or ``ConfigError`` when it is not absolute."""
    base = public_base_url.strip().rstrip("/")
    parts = urllib.parse.urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(
            "THREADLINE_PUBLIC_BASE_URL must be an absolute http(s) URL without query: "
            "Twilio signatures are computed over it",
            setting="THREADLINE_PUBLIC_BASE_URL",
        )
    return base


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


def _error_status(exc: Any) -> int:
    """HTTP status of an SDK error: REST errors carry ``status``, a failed page read its response."""
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        return status
    response = exc.args[1] if len(exc.args) > 1 else None
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else 0


def _same_number(a: str, b: str) -> bool:
    def digits(value: str) -> str:
        return "".join(c for c in value if c.isdigit() or c == "+")

    return digits(a) == digits(b)


class TwilioSmsAdapter:
    """The SMS channel. No network I/O until the first ``send``; ``aclose`` closes the HTTP session."""

    name = "sms"
    max_body_bytes = DEFAULT_MAX_BODY_BYTES

    def __init__(
        self,
        settings: TwilioSettings,
        *,
        public_base_url: str,
        normalize: Callable[[str], Address],
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._account_sid, auth_token, self._from_number = _require(settings)
        self._auth_token = settings.auth_token  # kept as SecretStr; unwrapped only to build the client
        self._api_base_url = settings.api_base_url
        self._public_base_url = _public_base(public_base_url)
        self._normalize = normalize
        self._timeout = timeout
        self._validator = RequestValidator(auth_token)
        self._client: Any = None
        self._http: Any = None

    def __repr__(self) -> str:
        return f"TwilioSmsAdapter(account_sid={self._account_sid!r}, api_base_url={self._api_base_url!r})"

    # ----- inbound ---------------------------------------------------------------------------

    def public_url(self, request: WebhookRequest) -> str:
        """The URL Twilio signed: public base + path + raw query string."""
        url = self._public_base_url + request.path
        return f"{url}?{request.query_string}" if request.query_string else url

    async def verify(self, request: WebhookRequest) -> None:
        signature = request.header(SIGNATURE_HEADER)
        if not signature:
            raise VerificationFailed("missing X-Twilio-Signature", status=403)
        try:
            params = _parse_form(request.body)
        except ValueError:  # includes UnicodeDecodeError: what cannot be read cannot be verified
            raise VerificationFailed("body is not a form Twilio could have signed", status=403) from None
        if not self._validator.validate(self.public_url(request), params, signature):
            raise VerificationFailed("X-Twilio-Signature does not match", status=403)

    async def parse(self, request: WebhookRequest) -> Parsed:
        content_type = (request.header("content-type") or _FORM_TYPE).split(";")[0].strip().lower()
        if content_type != _FORM_TYPE:
            raise BadRequest("Twilio webhooks are form-encoded", status=415)
        try:
            params = _parse_form(request.body)
        except ValueError:
            raise BadRequest("unreadable form body", status=400) from None
        path = request.path.rstrip("/") or "/"
        if path == INBOUND_PATH:
            return self._parse_inbound(params)
        if path == STATUS_PATH:
            return self._parse_status(params, request.query_string)
        raise BadRequest("not a Twilio webhook path", status=404)

    def _parse_inbound(self, params: _Params) -> Parsed:
        sid, sender, body = params.get("MessageSid"), params.get("From"), params.get("Body")
        if not sid or not sender or body is None:
            raise BadRequest("an inbound message needs MessageSid, From and Body", status=400)
        reply = WebhookReply(body=str(MessagingResponse()).encode("utf-8"), content_type="text/xml")
        handle = sender.strip()
        if handle.lower().startswith(_WHATSAPP):  # deliberately: a phone is a phone on any Twilio channel
            handle = handle[len(_WHATSAPP) :].strip()
        try:
            address = self._normalize(f"sms:{handle}")
        except InvalidAddress:
            # a short code or alphanumeric sender: no customer to answer, and not worth a Twilio retry
            log.warning("sms %s: sender is not a phone number; dropped", sid)
            return Parsed(reply=reply)
        attachments = self._media(params, sid)
        taken = {"MessageSid", "From", "To", "Body"}
        extras: dict[str, Any] = {}
        for key in params:
            if key in taken or _MEDIA_URL.fullmatch(key):
                continue
            values = params.getall(key)
            extras[key] = values[0] if len(values) == 1 else values
        control = _CONTROL_KEYWORDS.get(body.strip().upper())
        message = InboundMessage(
            channel=self.name,
            provider_message_id=sid,
            sender=address,
            text=body,
            reply_target={"to": sender, "from": params.get("To", "")},
            attachments=attachments,
            sender_assurance=Assurance.PLATFORM_ATTESTED,  # the carrier delivered it from that number
            private=True,
            control=Control(control) if control is not None else None,
            extras=extras,
        )
        log.info(
            "sms %s: inbound parsed (%d media%s)", sid, len(attachments), ", " + control if control else ""
        )
        return Parsed(messages=[message], reply=reply)

    @staticmethod
    def _media(params: _Params, sid: str) -> tuple[str, ...]:
        raw = params.get("NumMedia", "0").strip() or "0"
        try:
            count = int(raw)
        except ValueError:
            raise BadRequest("NumMedia is not a number", status=400) from None
        if count < 0:
            raise BadRequest("NumMedia is negative", status=400)
        # bounded by the fields actually present, whatever NumMedia claims
        urls = tuple(
            params[f"MediaUrl{i}"] for i in range(min(count, len(params))) if params.get(f"MediaUrl{i}")
        )
        if len(urls) != count:
            log.warning("sms %s: NumMedia=%d but %d media URLs", sid, count, len(urls))
        return urls

    @staticmethod
    def _parse_status(params: _Params, query_string: str = "") -> Parsed:
        sid = params.get("MessageSid")
        status = (params.get("MessageStatus") or "").strip().lower()
        if not sid or not status:
            raise BadRequest("a status callback needs MessageSid and MessageStatus", status=400)
        if status not in STATUS_RANK:
            raise BadRequest("unknown MessageStatus", status=400)
        error_code = (params.get("ErrorCode") or "").strip() or None
        # the status callback URL we gave names the reply and the part (signed with the URL)
        ours = dict(urllib.parse.parse_qsl(query_string, keep_blank_values=True))
        part = ours.get("part", "")
        update = StatusUpdate(
            provider_message_id=sid,
            status=status,
            error_code=error_code,
            idempotency_key=ours.get("reply") or None,
            part_index=int(part) if part.isdigit() and len(part) < 6 else None,
        )
        log.info("sms %s: status %s%s", sid, status, f" (error {error_code})" if error_code else "")
        return Parsed(status_updates=[update], reply=WebhookReply())

    # ----- outbound --------------------------------------------------------------------------

    def _ensure_client(self) -> Any:
        if self._client is None:
            token = self._auth_token.get_secret_value() if self._auth_token is not None else ""
            self._http = _http_client()
            self._client = _rest_client(self._account_sid, token, self._api_base_url, self._http)
        return self._client

    def _destination(self, message: OutboundMessage) -> str:
        target = message.reply_target.get("to")
        to = str(target).strip() if target else message.recipient.handle
        if to.lower().startswith(_WHATSAPP):  # we answer by SMS, from an SMS number
            to = to[len(_WHATSAPP) :].strip()
        return to

    async def send(self, message: OutboundMessage) -> Delivery:
        parts = split_sms(message.text)
        if not parts:
            raise PermanentDeliveryError("empty SMS reply")
        client = self._ensure_client()
        to = self._destination(message)
        sent: list[str] = []
        for index, part in enumerate(parts[message.parts_sent :], start=message.parts_sent):
            _retry_after.set(None)
            # the callback names this reply and part: if we crash before recording the send, Twilio's
            # report still tells the outbox it went out, and a retry skips it
            ours = urllib.parse.urlencode({"reply": message.idempotency_key, "part": index})
            status_callback = f"{self._public_base_url}{STATUS_PATH}?{ours}"
            try:
                async with asyncio.timeout(self._timeout):
                    created = await client.messages.create_async(
                        to=to, from_=self._from_number, body=part, status_callback=status_callback
                    )
            except (TwilioRestException, TwilioServiceException) as exc:
                raise self._api_error(exc, message, index, tuple(sent)) from None
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.warning(
                    "sms %s: part %d/%d not sent: %s",
                    message.idempotency_key,
                    index + 1,
                    len(parts),
                    type(exc).__name__,
                )
                raise TransientDeliveryError(
                    f"Twilio unreachable ({type(exc).__name__})", sent_ids=tuple(sent)
                ) from exc
            except TwilioException:
                log.warning(
                    "sms %s: part %d/%d: unreadable Twilio answer",
                    message.idempotency_key,
                    index + 1,
                    len(parts),
                )
                raise TransientDeliveryError("unreadable Twilio answer", sent_ids=tuple(sent)) from None
            sent.append(str(created.sid))
            log.info(
                "sms %s: part %d/%d sent as %s", message.idempotency_key, index + 1, len(parts), created.sid
            )
        return Delivery(provider_message_ids=tuple(sent))

    def _api_error(
        self, exc: Any, message: OutboundMessage, index: int, sent: tuple[str, ...]
    ) -> TransientDeliveryError | PermanentDeliveryError:
        """Map an SDK error; its text is left out on purpose (Twilio's messages quote the To number)."""
        status = int(exc.status or 0)
        code = int(exc.code) if isinstance(exc.code, int) or str(exc.code).isdigit() else None
        what = f"Twilio answered HTTP {status}" + (f" (error {code})" if code else "")
        log.warning(
            "sms %s: part %d not sent: HTTP %d, error %s", message.idempotency_key, index + 1, status, code
        )
        if status == 429:
            return TransientDeliveryError(what, retry_after=_retry_after.get(), sent_ids=sent)
        if code in _PERMANENT_CODES:
            return PermanentDeliveryError(what, sent_ids=sent)
        if 400 <= status < 500:
            return PermanentDeliveryError(what, sent_ids=sent)
        return TransientDeliveryError(what, retry_after=_retry_after.get(), sent_ids=sent)

    async def aclose(self) -> None:
        http, self._http, self._client = self._http, None, None
        if http is not None:
            await http.close()


async def configure_number(settings: TwilioSettings, public_base_url: str) -> str:
    """Point the ``from_number``'s IncomingPhoneNumber at this hub; return one line saying what changed.

    Sets ``sms_url`` (POST) to ``/webhooks/twilio/sms`` and ``status_callback`` to
    ``/webhooks/twilio/status`` under ``public_base_url``. Used by ``threadline setup twilio``.
    Raises ``ConfigError`` when the number is not in the account or Twilio refuses the credentials.
    """
    account_sid, auth_token, from_number = _require(settings)
    base = _public_base(public_base_url)
    sms_url, status_url = base + INBOUND_PATH, base + STATUS_PATH
    http = _http_client()
    try:
        client = _rest_client(account_sid, auth_token, settings.api_base_url, http)
        async with asyncio.timeout(DEFAULT_TIMEOUT):
            numbers = await client.incoming_phone_numbers.list_async(phone_number=from_number, limit=50)
            match = next((n for n in numbers if _same_number(str(n.phone_number or ""), from_number)), None)
            if match is None:
                raise ConfigError(
                    f"{env_name('twilio', 'from_number')} is not a phone number of this Twilio account",
                    setting=env_name("twilio", "from_number"),
                )
            await match.update_async(sms_url=sms_url, sms_method="POST", status_callback=status_url)
    except TwilioException as exc:
        status = _error_status(exc)
        if 400 <= status < 500:
            raise ConfigError(
                f"Twilio refused the set-up (HTTP {status}, error {getattr(exc, 'code', None)}): check "
                f"{env_name('twilio', 'account_sid')} and {env_name('twilio', 'auth_token')}",
                setting=env_name("twilio", "auth_token"),
            ) from None
        raise ThreadlineError(f"Twilio is unavailable (HTTP {status or 'unknown'}); try again") from None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise ThreadlineError(f"Twilio is unreachable ({type(exc).__name__}); try again") from exc
    finally:
        await http.close()
    log.info("twilio number %s: webhooks configured", match.sid)
    return f"{from_number} ({match.sid}): SMS webhook POST {sms_url}, status callback {status_url}"
