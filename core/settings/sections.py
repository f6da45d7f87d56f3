"""The sections of ``Settings``: the LLM, memory, worker, retention, strangers and each channel's
credentials (``THREADLINE_<SECTION>__<KEY>``). Each is a plain pydantic model; ``core.settings`` reads
them from the environment and checks them together."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

PREFIX = "THREADLINE_"


def env_name(section: str, key: str) -> str:
    """The environment variable behind ``settings.<section>.<key>``."""
    return f"{PREFIX}{section.upper()}__{key.upper()}"


class LLMSettings(BaseModel):
    """Any OpenAI-compatible endpoint. No API key means offline mode (template replies)."""

    api_key: SecretStr | None = None
    base_url: str | None = None
    model: str = "gpt-4o-mini"
    timeout: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=2, ge=0)
    max_tokens: int = Field(default=400, gt=0)
    # the model reads images: a customer's photos go to it as image parts (``core.agent.prompt``); off, the
    # model is told only what was sent (name, type, size)
    vision: bool = False

    @property
    def configured(self) -> bool:
        return self.api_key is not None and bool(self.api_key.get_secret_value())

    @property
    def offline_notice(self) -> str | None:
        """Why the hub runs offline although an endpoint is set (a base URL without a key), or None."""
        if self.configured or not self.base_url:
            return None
        return (
            f"{env_name('llm', 'base_url')} is set but {env_name('llm', 'api_key')} is not: the hub runs in "
            f"offline mode (template replies). For an endpoint that needs no key (Ollama, llama.cpp) set "
            f"{env_name('llm', 'api_key')} to any value, e.g. 'local'"
        )


class MemorySettings(BaseModel):
    """Mem0: ``local`` (open source, embedded) or ``platform`` (hosted)."""

    backend: Literal["local", "platform"] = "local"
    api_key: SecretStr | None = None
    host: str = "https://api.mem0.ai"
    write_policy: Literal["every_turn", "summary"] = "every_turn"
    quiet_seconds: float = Field(default=300.0, gt=0)
    recall_limit: int = Field(default=8, ge=1, le=100)
    recent_turns: int = Field(default=10, ge=0, le=200)
    # the memory block's budget in the prompt, in tokens (counted as characters / 4): recall fills it with
    # the best-ranked memories that fit; 0 turns the budget off (then ``recall_limit`` memories are used)
    context_tokens: int = Field(default=1000, ge=0, le=32_000)


class WorkerSettings(BaseModel):
    """The in-process worker."""

    concurrency: int = Field(default=8, ge=1, le=1024)
    max_attempts: int = Field(default=8, ge=1)
    backoff_base: float = Field(default=1.0, gt=0)
    backoff_max: float = Field(default=300.0, gt=0)
    poll_interval: float = Field(default=1.0, gt=0)
    # how long a claim on a row (inbox, outbox, memory job) lives unrenewed: a process killed with kill -9
    # loses its claims after at most this long and another process takes the work (core.store.leases)
    lease_seconds: float = Field(default=30.0, gt=0, le=3600)
    # flood control (core.pipeline.flood): messages per minute one sender may have answered, and its burst
    sender_rate_per_minute: float = Field(default=30.0, gt=0)
    sender_burst: int = Field(default=30, ge=1)


class RetentionSettings(BaseModel):
    """How long conversation logs and memories are kept (``core.pipeline.retention``).

    No ``days``: forever."""

    days: int | None = Field(default=None, ge=1)
    interval_seconds: float = Field(default=3600.0, gt=0)


class StrangerSettings(BaseModel):
    """Caps on senders nobody vouches for (``core.pipeline.strangers``): new customers they make, and the one
    fixed acknowledgement an unauthenticated email may get. Per hour, overall and per email domain."""

    new_per_hour: int = Field(default=100, ge=0)
    new_per_domain_per_hour: int = Field(default=20, ge=0)
    acks_per_hour: int = Field(default=60, ge=0)
    acks_per_domain_per_hour: int = Field(default=10, ge=0)
    # one acknowledgement per sender per this many hours at most
    ack_every_hours: float = Field(default=24.0, gt=0)


class HandoffSettings(BaseModel):
    """Human handoff (``core.pipeline.handoff``): when the team is online, who hears of a new handoff, and
    when an unanswered one is escalated.

    ``working_hours``: ``Mon-Fri 09:00-17:00``, several spans separated by ``;`` (``Mon-Fri 09:00-17:00;
    Sat 10:00-14:00``), in ``timezone``; empty: always online. ``notify_slack_channel`` (a channel id of the
    team's own Slack workspace, sent with the Slack bot token) and ``notify_email`` (sent by the email
    channel) hear of every new handoff and of every escalation; ``escalate_email`` /
    ``escalate_slack_channel`` hear of escalations as well. A handoff nobody has answered
    ``escalate_after_minutes`` after it opened (counted in working hours only when the team is offline at
    the time) is escalated once and stays open: it is never dropped.
    """

    working_hours: str = "Mon-Fri 09:00-17:00"
    timezone: str = "UTC"
    notify_slack_channel: str | None = None
    notify_email: str | None = None
    escalate_slack_channel: str | None = None
    escalate_email: str | None = None
    escalate_after_minutes: float = Field(default=30.0, gt=0, le=7 * 24 * 60)
    check_interval_seconds: float = Field(default=60.0, gt=0)

    @field_validator("working_hours")
    @classmethod
    def _parses(cls, value: str) -> str:
        from core.pipeline.working_hours import parse_spans

        parse_spans(value)  # ValueError names what is wrong
        return value.strip()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value.strip())
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("must be an IANA time zone such as Europe/Berlin or America/New_York") from exc
        return value.strip()


class ConsoleSettings(BaseModel):
    """The operator console (``core.web.console``): how long a sign-in lasts, and whether its cookie is
    sent over HTTPS only (default: when ``THREADLINE_PUBLIC_BASE_URL`` is ``https://``)."""

    session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    secure_cookie: bool | None = None
    # sign-in attempts per operator name (and per client address) per 15 minutes
    login_attempts: int = Field(default=10, ge=1, le=1000)


DEFAULT_ATTACHMENT_TYPES = [
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/heic",
    "application/pdf",
    "text/plain",
]


class AttachmentSettings(BaseModel):
    """Files customers send (``core.media``): a size limit, a count limit and the media types allowed
    (what the bytes are, sniffed; a declared type is not trusted). Refused files are recorded and the
    customer is told; nothing of them is stored."""

    max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    max_per_message: int = Field(default=10, ge=0, le=50)
    allowed_types: Annotated[list[str], NoDecode] = list(DEFAULT_ATTACHMENT_TYPES)
    # how long a signed link to a file the hub serves (an outbound MMS's media) stays valid
    link_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)

    @field_validator("allowed_types", mode="before")
    @classmethod
    def _split_types(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip().lower() for part in value.split(",") if part.strip()]
        return value


class SlackSettings(BaseModel):
    bot_token: SecretStr | None = None
    signing_secret: SecretStr | None = None
    # an app-level token (xapp-...): events arrive over Socket Mode (channels.slack.socket_mode), no public
    # URL and no signing secret needed
    app_token: SecretStr | None = None
    api_base_url: str = "https://slack.com/api/"
    # workspaces (team ids, comma-separated) whose members' profile emails we accept as theirs: only
    # a workspace that verifies its members' emails (SSO, an admin-managed domain) belongs here
    trusted_teams: Annotated[list[str], NoDecode] = []

    @field_validator("trusted_teams", mode="before")
    @classmethod
    def _split_teams(cls, value: object) -> object:
        if isinstance(value, str):
            return [team.strip().upper() for team in value.split(",") if team.strip()]
        return value

    @field_validator("app_token")
    @classmethod
    def _app_level_token(cls, value: SecretStr | None) -> SecretStr | None:
        # a bot token (xoxb-) here would be sent to apps.connections.open, which refuses it anyway
        token = value.get_secret_value() if value is not None else ""
        if token and not token.startswith("xapp-"):
            raise ValueError("must be a Slack app-level token (it starts with xapp-)")
        return value


class TelegramSettings(BaseModel):
    bot_token: SecretStr | None = None
    secret_token: SecretStr | None = None
    api_base_url: str = "https://api.telegram.org/bot"
    # webhook: Telegram calls /webhooks/telegram (needs a public URL and the secret token); polling: the hub
    # long-polls getUpdates itself (no public URL, no secret; channels.telegram.polling)
    mode: Literal["webhook", "polling"] = "webhook"
    # polling: seconds one getUpdates call waits for an update before it answers empty
    poll_timeout: int = Field(default=30, ge=0, le=60)


class TwilioSettings(BaseModel):
    account_sid: str | None = None
    auth_token: SecretStr | None = None
    from_number: str | None = None
    api_base_url: str = "https://api.twilio.com"


class EmailSettings(BaseModel):
    address: str | None = None
    smtp_listen: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    inbound_signing_key: SecretStr | None = None
    # the authserv-id of our own MTA's (or inbound provider's) Authentication-Results header: the only
    # one trusted, and only where our receiving path wrote it (channels.email_parse.HeaderTrust)
    authserv_id: str | None = None
    # peers of the SMTP listener (IPs or CIDRs, comma-separated) that are our own MTA: it checks DMARC and
    # strips forged Authentication-Results (RFC 8601 §5). From any other peer nothing naming us is trusted
    trusted_relays: Annotated[list[IPv4Network | IPv6Network], NoDecode] = []
    max_replies_per_hour: int = 20
    # inbound by IMAP from a mailbox the team already has (channels.email_imap): on when imap_host is set,
    # which then needs imap_username and imap_password. TLS from the first byte (993); plain IMAP is
    # refused for any host but a loopback one (a local test server)
    imap_host: str | None = None
    imap_port: int = Field(default=993, ge=1, le=65535)
    imap_username: str | None = None
    imap_password: SecretStr | None = None
    imap_mailbox: str = "INBOX"
    imap_tls: bool = True
    # seconds between two looks at the mailbox when the server offers no IDLE
    imap_poll_seconds: float = Field(default=60.0, gt=0, le=3600)

    @field_validator("trusted_relays", mode="before")
    @classmethod
    def _split_relays(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            try:
                return [ip_network(str(part), strict=False) for part in value]
            except ValueError as exc:
                raise ValueError(f"not an IP address or network: {exc}") from None
        return value


class EventSettings(BaseModel):
    """Signed event webhooks to the business (``core.events``): how deliveries are tried, and where to.

    A receiver's URL must be ``https`` and its host must resolve only to public addresses, checked when the
    endpoint is registered and again before every attempt (DNS can change; the connection then goes to the
    address checked). ``allow_private`` lifts both for a receiver on the same host or network (loopback,
    private, link-local addresses; plain ``http``): only where the hub's network is trusted, since it lets
    whoever holds the admin token make the hub call its neighbours. An attempt that is not a 2xx answer
    within ``timeout`` seconds (a redirect included: never followed) is retried with capped exponential
    backoff, ``max_attempts`` tries in all, then the delivery is dead until an admin retries it.
    """

    allow_private: bool = False
    max_attempts: int = Field(default=8, ge=1, le=50)
    backoff_base: float = Field(default=5.0, gt=0)
    backoff_max: float = Field(default=3600.0, gt=0)
    timeout: float = Field(default=10.0, gt=0, le=120)
    concurrency: int = Field(default=4, ge=1, le=256)


class McpSettings(BaseModel):
    """The Model Context Protocol server (``core.mcp``): ``/mcp`` (streamable HTTP) and ``threadline mcp``
    (stdio) give an AI tool the customer lookup, memory and cases.

    ``token``: the bearer token of ``/mcp``, its own (not the admin token); unset or empty, ``/mcp`` is not
    served at all (404). ``scope``: ``read`` (the default) lets the tools only read; ``write`` also lets
    ``add_note`` and ``request_handoff`` change something. ``threadline mcp`` takes the same scope.
    """

    token: SecretStr | None = None
    scope: Literal["read", "write"] = "read"

    @property
    def served(self) -> bool:
        """Whether ``/mcp`` is on: a non-empty token is set."""
        return self.token is not None and bool(self.token.get_secret_value())
