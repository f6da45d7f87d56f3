"""The email channel: inbound through our SMTP listener, a signed inbound-parse webhook or an IMAP mailbox,
outbound by SMTP.

- Inbound SMTP (``THREADLINE_EMAIL__SMTP_LISTEN``, see ``channels.email_smtp``): ``250`` only after the
  message is committed, ``451`` when committing fails, ``550`` for other recipients, ``552`` over 10 MiB.
- Inbound webhook ``/webhooks/email/inbound`` (Mailgun "forward with MIME", see ``channels.email_webhook``):
  form fields ``timestamp``/``token``/``signature``, the raw message in ``body-mime``, the envelope in
  ``recipient`` and ``sender``. No ``inbound_signing_key`` → every POST is refused (403). ``verify``
  reads only the three signature fields (in a thread when the body is large); the whole form is
  decoded, in a thread, only by ``parse``, after verification passed.
- IMAP (``THREADLINE_EMAIL__IMAP_HOST`` with ``__IMAP_USERNAME`` / ``__IMAP_PASSWORD``, see
  ``channels.email_imap``): a mailbox the team already has. Unseen messages are fetched with
  ``BODY.PEEK[]`` and flagged ``\\Seen`` only once committed; IDLE where the server offers it, a poll every
  ``imap_poll_seconds`` otherwise; reconnects with capped backoff; one poller per database (a named lease).
  The provider's ``Authentication-Results`` count as the webhook's do (``HeaderTrust.PROVIDER``).
- Every path shares ``channels.email_parse.parse_email``: noise per RFC 3834 is dropped (never answered),
  quoted history and signatures are stripped, ``provider_message_id`` is ``<Message-ID>|<recipient>``
  (a message fetched or delivered twice is one inbox row). The SMTP listener and the IMAP poller also
  share the step from parse to commit (``channels.email_ingest``).
- ``send`` writes a threaded reply with loop guards (``channels.email_send``) through aiosmtplib:
  implicit TLS on port 465, STARTTLS whenever the relay offers it. 5xx → ``PermanentDeliveryError``;
  4xx, timeouts and connection errors → ``TransientDeliveryError``. At most
  ``max_replies_per_hour`` replies go to one recipient in any hour; past the cap ``send`` raises
  ``PermanentDeliveryError``.
- The reply cap and the webhook's spent tokens are kept in ``core.ports.SharedLimits``: this process's
  own until ``bind_limits`` hands in the database's, which every process on it shares (a cap counts the
  replies of every process; a token used on one host is refused on every other).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from email.utils import parseaddr
from ipaddress import ip_address

import aiosmtplib

from channels.base import AcceptFn, Parsed, WebhookRequest
from channels.email_auth import HeaderTrust
from channels.email_imap import ImapConfig, ImapPoller
from channels.email_parse import ParseContext, parse_email
from channels.email_send import ReplyCap, build_reply, delivery_error, message_id_for
from channels.email_smtp import SmtpListener
from channels.email_webhook import FormError, MailgunVerifier, read_form, signature_fields
from core.errors import (
    BadRequest,
    ConfigError,
    PermanentDeliveryError,
    TransientDeliveryError,
    VerificationFailed,
)
from core.messages import Address, Attachment, Delivery, InboundMessage, OutboundMessage
from core.ports import FileSource, NamedLease, SharedLimits
from core.settings import EmailSettings, env_name

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024
SMTP_TIMEOUT_SECONDS = 30.0
IMPLICIT_TLS_PORT = 465


class EmailAdapter:
    """``ChannelAdapter`` (webhook in, SMTP out) and ``InboundServer`` (the SMTP listener, IMAP)."""

    name = "email"
    max_body_bytes = MAX_BODY_BYTES

    def __init__(self, settings: EmailSettings, *, normalize: Callable[[str], Address]) -> None:
        _, address = parseaddr(settings.address or "")
        if "@" not in address:
            raise ConfigError(
                f"{env_name('email', 'address')} must be an email address",
                setting=env_name("email", "address"),
            )
        self._settings = settings
        self._address = address
        self._domain = address.rpartition("@")[2].lower()
        self._context = ParseContext(address=address, normalize=normalize, authserv_id=settings.authserv_id)
        self._verifier = MailgunVerifier(settings.inbound_signing_key)
        self._cap = ReplyCap(settings.max_replies_per_hour)
        self._listener: SmtpListener | None = None
        self._imap_config = ImapConfig.from_settings(settings)  # None: no IMAP; ConfigError if partly set
        self._imap: ImapPoller | None = None
        self._leases: NamedLease | None = None
        self._outgoing: FileSource | None = None  # the files of replies (``bind_files``)

    def __repr__(self) -> str:
        return (
            f"EmailAdapter(smtp_host={self._settings.smtp_host!r}, smtp_port={self._settings.smtp_port}, "
            f"listening={self._listener is not None}, imap={self._imap is not None})"
        )

    def bind_limits(self, limits: SharedLimits) -> None:
        """Keep the reply cap and spent tokens in ``limits`` (``core.ports.UsesSharedLimits``)."""
        self._cap.bind(limits)
        self._verifier.bind(limits)

    def bind_files(self, files: FileSource) -> None:
        """Attach the files of replies, read from ``files`` (``core.ports.UsesFileSource``)."""
        self._outgoing = files

    def bind_leases(self, leases: NamedLease) -> None:
        """One process at a time polls the IMAP mailbox (``core.ports.UsesNamedLeases``; scale mode)."""
        self._leases = leases

    # --- inbound: webhook ---------------------------------------------------------------------------

    async def verify(self, request: WebhookRequest) -> None:
        if not self._verifier.configured:
            raise VerificationFailed("no inbound signing key is configured", status=403)
        try:  # the three signature fields only, before the rest of the form is decoded
            fields = await signature_fields(request.body, request.header("content-type"))
        except FormError:
            raise VerificationFailed("no readable signature fields", status=401) from None
        await self._verifier.spend(self._verifier.verify(fields))

    async def parse(self, request: WebhookRequest) -> Parsed:
        try:  # the whole form, once verified, in a thread: 10 MiB of fields must not stall the event loop
            fields = await asyncio.to_thread(read_form, request.body, request.header("content-type"))
        except FormError as exc:
            raise BadRequest("the webhook body is not a readable form", status=400) from exc
        raw = fields.get("body-mime")
        if not raw:
            raise BadRequest("the webhook carries no body-mime field", status=422)
        recipient = fields.get("recipient", b"").decode("utf-8", errors="replace").strip()
        sender = fields.get("sender")
        mail_from = sender.decode("utf-8", errors="replace").strip() if sender is not None else None
        try:
            message = await self._parse(
                raw, mail_from, [recipient] if recipient else [], trust=HeaderTrust.PROVIDER
            )
        except BadRequest:
            raise
        except Exception as exc:
            log.warning("email webhook: message could not be parsed (%s)", type(exc).__name__)
            raise BadRequest("the message could not be parsed", status=422) from exc
        return Parsed(messages=[message] if message is not None else [])

    async def _parse(
        self, raw: bytes, mail_from: str | None, recipients: Sequence[str], *, trust: HeaderTrust
    ) -> InboundMessage | None:
        # A thread: a 10 MiB message and the reply splitter's regexes must not stall the event loop.
        return await asyncio.to_thread(
            parse_email, raw, mail_from=mail_from, recipients=recipients, context=self._context, trust=trust
        )

    async def _parse_smtp(
        self, raw: bytes, mail_from: str | None, recipients: Sequence[str], peer: str | None
    ) -> InboundMessage | None:
        """A message from the listener: our own relay's Authentication-Results count, nobody else's."""
        return await self._parse(raw, mail_from, recipients, trust=self._trust_of(peer))

    async def _parse_imap(self, raw: bytes) -> InboundMessage | None:
        """A message from the team's mailbox: the provider's MTA was the border (``channels.email_imap``)."""
        return await self._parse(raw, None, [], trust=HeaderTrust.PROVIDER)

    def _trust_of(self, peer: str | None) -> HeaderTrust:
        if peer is None:
            return HeaderTrust.NONE
        try:
            ip = ip_address(peer)
        except ValueError:
            return HeaderTrust.NONE
        relayed = any(ip in network for network in self._settings.trusted_relays)
        return HeaderTrust.RELAY if relayed else HeaderTrust.NONE

    # --- inbound: SMTP listener ---------------------------------------------------------------------

    @property
    def smtp_port(self) -> int | None:
        """The port the SMTP listener is bound to (``None`` when it is not running)."""
        return self._listener.port if self._listener is not None else None

    @property
    def imap(self) -> ImapPoller | None:
        """The IMAP poller while it runs (``None`` when IMAP is not configured or not started)."""
        return self._imap

    async def start_inbound(self, accept: AcceptFn) -> None:
        if not self._settings.smtp_listen and self._imap_config is None:
            log.info(
                "email: no SMTP listener nor IMAP mailbox configured (inbound mail comes by webhook only)"
            )
            return
        if self._listener is not None or self._imap is not None:
            raise RuntimeError("the email channel's inbound servers are already running")
        if self._settings.smtp_listen:
            await self._start_listener(self._settings.smtp_listen, accept)
        if self._imap_config is not None:
            poller = ImapPoller(
                self._imap_config, parse=self._parse_imap, max_bytes=self.max_body_bytes, leases=self._leases
            )
            try:
                await poller.start(accept)
            except BaseException:
                await self.stop_inbound()
                raise
            self._imap = poller

    async def _start_listener(self, listen: str, accept: AcceptFn) -> None:
        try:
            listener = SmtpListener(
                listen=listen,
                address=self._address,
                hostname=self._domain,
                max_bytes=self.max_body_bytes,
                parse=self._parse_smtp,
            )
        except ValueError as exc:
            raise ConfigError(str(exc), setting=env_name("email", "smtp_listen")) from exc
        await listener.start(accept)
        self._listener = listener

    async def stop_inbound(self) -> None:
        poller, self._imap = self._imap, None
        if poller is not None:
            await poller.stop()
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.stop()

    # --- outbound -----------------------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> Delivery:
        message_id = message_id_for(message.idempotency_key, self._domain)
        if message.parts_sent >= 1:  # one part only: it went out in an earlier attempt
            return Delivery(provider_message_ids=(message_id,))
        to = self._recipient(message)
        host = self._settings.smtp_host
        if not host:
            raise PermanentDeliveryError(f"{env_name('email', 'smtp_host')} is not set")
        files = [(file, await self._read(file)) for file in message.files]  # MIME attachments
        try:  # built before a slot of the recipient's cap is taken: a reply that cannot be built takes none
            reply = build_reply(
                from_header=self._settings.address or self._address,
                loop_address=self._address,
                to=to,
                text=message.text,
                message_id=message_id,
                reply_target=message.reply_target,
                files=files,
            )
        except (ValueError, TypeError) as exc:
            raise PermanentDeliveryError(f"the reply could not be built ({type(exc).__name__})") from exc
        recipient_key = to.lower()
        try:
            stamp = await self._cap.reserve(recipient_key)
        except Exception as exc:  # the shared limits' store failed: nothing sent, try later
            raise TransientDeliveryError(f"the reply cap is unavailable ({type(exc).__name__})") from exc
        if stamp is None:
            log.warning("email reply %s not sent: the per-recipient hourly cap is reached", message_id)
            raise PermanentDeliveryError("reply cap reached for this recipient")
        port = self._settings.smtp_port
        password = self._settings.smtp_password
        try:
            await aiosmtplib.send(
                reply,
                sender=self._address,
                recipients=[to],
                hostname=host,
                port=port,
                username=self._settings.smtp_username,
                password=password.get_secret_value() if password is not None else None,
                use_tls=port == IMPLICIT_TLS_PORT,
                start_tls=None,
                timeout=SMTP_TIMEOUT_SECONDS,
                local_hostname=self._domain,  # else aiosmtplib calls the blocking socket.getfqdn()
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            try:
                await self._cap.release(recipient_key, stamp)
            except Exception as release_error:  # the slot stays taken; the send's own error matters
                log.warning(
                    "email reply %s: cap slot not given back (%s)", message_id, type(release_error).__name__
                )
            error = delivery_error(exc)
            log.warning("email reply %s failed: %s", message_id, error)
            raise error from exc
        log.info("email reply %s sent", message_id)
        return Delivery(provider_message_ids=(message_id,))

    async def _read(self, file: Attachment) -> bytes:
        if self._outgoing is None:
            raise PermanentDeliveryError("email: this process cannot read the reply's files")
        return await self._outgoing.read(file)

    def _recipient(self, message: OutboundMessage) -> str:
        target = message.reply_target.get("to")
        raw = target if isinstance(target, str) and target else message.recipient.handle
        _, address = parseaddr(raw)
        if "@" not in address or any(c in address for c in "\r\n"):
            raise PermanentDeliveryError("the reply has no usable email recipient")
        return address

    async def aclose(self) -> None:
        await self.stop_inbound()
