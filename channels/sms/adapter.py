"""``TwilioSmsAdapter``: the SMS ``ChannelAdapter`` (see ``channels.sms`` for both webhooks and ``send``).

Reading the form is ``channels.sms.form``, splitting a reply ``channels.sms.split``, and the SDK's
clients and ``Retry-After`` come from ``channels.sms.client``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import urllib.parse
from collections.abc import Callable
from typing import Any, Final

import aiohttp
from twilio.base.exceptions import (  # type: ignore[import-untyped]
    TwilioException,
    TwilioRestException,
    TwilioServiceException,
)
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]
from twilio.twiml.messaging_response import MessagingResponse  # type: ignore[import-untyped]

from channels.base import DEFAULT_MAX_BODY_BYTES, Parsed, WebhookReply, WebhookRequest
from channels.sms.client import DEFAULT_TIMEOUT, _http_client, _rest_client, _retry_after
from channels.sms.config import INBOUND_PATH, STATUS_PATH, _public_base, _require
from channels.sms.form import _FORM_TYPE, _Params, _parse_form
from channels.sms.media import TwilioMedia
from channels.sms.mms import media_urls, mms_parts
from channels.sms.split import split_sms
from core.errors import (
    BadRequest,
    InvalidAddress,
    PermanentDeliveryError,
    TransientDeliveryError,
    VerificationFailed,
)
from core.messages import (
    STATUS_RANK,
    Address,
    Assurance,
    Control,
    Delivery,
    FetchedMedia,
    InboundMessage,
    MediaRef,
    OutboundMessage,
    StatusUpdate,
)
from core.ports import FileSource
from core.settings import TwilioSettings

log = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "x-twilio-signature"
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
        self._outgoing: FileSource | None = None  # the files of replies (``bind_files``): MMS links
        self._mms = TwilioMedia(self._account_sid, settings.auth_token, settings.api_base_url)

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
    def _media(params: _Params, sid: str) -> tuple[MediaRef, ...]:
        raw = params.get("NumMedia", "0").strip() or "0"
        try:
            count = int(raw)
        except ValueError:
            raise BadRequest("NumMedia is not a number", status=400) from None
        if count < 0:
            raise BadRequest("NumMedia is negative", status=400)
        # bounded by the fields actually present, whatever NumMedia claims
        refs = tuple(
            MediaRef(ref=params[f"MediaUrl{i}"], media_type=params.get(f"MediaContentType{i}") or None)
            for i in range(min(count, len(params)))
            if params.get(f"MediaUrl{i}")
        )
        if len(refs) != count:
            log.warning("sms %s: NumMedia=%d but %d media URLs", sid, count, len(refs))
        return refs

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

    def bind_files(self, files: FileSource) -> None:
        """Link the files of replies through ``files`` (``core.ports.UsesFileSource``): MMS media."""
        self._outgoing = files

    async def send(self, message: OutboundMessage) -> Delivery:
        text_parts = split_sms(message.text) if message.text.strip() or not message.files else []
        if not text_parts and not message.files:
            raise PermanentDeliveryError("empty SMS reply")
        parts = mms_parts(text_parts, message.files)  # files ride as MMS media (channels.sms.mms)
        client = self._ensure_client()
        to = self._destination(message)
        sent: list[str] = []
        for index, (part, group) in enumerate(parts[message.parts_sent :], start=message.parts_sent):
            media = {"media_url": media_urls(self._outgoing, group, sent)} if group else {}
            _retry_after.set(None)
            # the callback names this reply and part: if we crash before recording the send, Twilio's
            # report still tells the outbox it went out, and a retry skips it
            ours = urllib.parse.urlencode({"reply": message.idempotency_key, "part": index})
            status_callback = f"{self._public_base_url}{STATUS_PATH}?{ours}"
            try:
                async with asyncio.timeout(self._timeout):
                    created = await client.messages.create_async(
                        to=to, from_=self._from_number, body=part, status_callback=status_callback, **media
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

    async def fetch_media(self, ref: MediaRef, *, max_bytes: int) -> FetchedMedia:
        """An MMS file (``core.ports.MediaFetcher``): ``channels.sms.media``."""
        return await self._mms.fetch(ref, max_bytes=max_bytes)

    async def aclose(self) -> None:
        await self._mms.aclose()
        http, self._http, self._client = self._http, None, None
        if http is not None:
            await http.close()
