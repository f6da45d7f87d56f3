"""Settings: read once from ``THREADLINE_*`` variables (nested with ``__``) and ``.env``, typed, injected.

A channel is on when its credentials are set. Partly set credentials stop start-up with a
``ConfigError`` that names the missing variable. Secrets are ``SecretStr``: never in a repr or log.

The sections (LLM, memory, worker, retention, strangers, each channel) are in ``core.settings.sections``.

``load_settings()`` reads them: a value that does not parse or is out of range (``THREADLINE_WORKER__
CONCURRENCY=abc``, ``THREADLINE_LOG_LEVEL=LOUD``, a database URL without a driver, an unknown region) is a
``ConfigError`` whose one-line message names the variable and what is wrong, and shows the value given
unless it may hold a secret (``SecretStr`` fields and the database URL never are shown).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from core.errors import ConfigError
from core.settings.sections import PREFIX as _PREFIX
from core.settings.sections import (
    AttachmentSettings,
    ConsoleSettings,
    EmailSettings,
    EventSettings,
    HandoffSettings,
    LLMSettings,
    McpSettings,
    MemorySettings,
    RetentionSettings,
    SlackSettings,
    StrangerSettings,
    TelegramSettings,
    TwilioSettings,
    WorkerSettings,
    env_name,
)

__all__ = [
    "AttachmentSettings",
    "ConsoleSettings",
    "EmailSettings",
    "EventSettings",
    "HandoffSettings",
    "LLMSettings",
    "McpSettings",
    "MemorySettings",
    "RetentionSettings",
    "Settings",
    "SlackSettings",
    "StrangerSettings",
    "TelegramSettings",
    "TwilioSettings",
    "WorkerSettings",
    "env_name",
    "load_settings",
]

# Per channel: the settings that switch it on, in the order they are reported missing.
_REQUIRED: dict[str, tuple[str, ...]] = {
    "slack": ("bot_token", "signing_secret"),
    "telegram": ("bot_token", "secret_token"),
    "twilio": ("account_sid", "auth_token", "from_number"),
    "email": ("address", "smtp_host"),
}
# Settings that count as "this channel was meant to be on" when set, besides the required ones.
_OPTIONAL_TRIGGERS: dict[str, tuple[str, ...]] = {
    "slack": ("app_token",),
    "telegram": (),
    "twilio": (),
    "email": (
        "smtp_listen",
        "smtp_username",
        "smtp_password",
        "inbound_signing_key",
        "imap_host",
        "imap_username",
        "imap_password",
    ),
}


def _is_set(value: object) -> bool:
    if value is None:
        return False
    if isinstance(value, SecretStr):
        return bool(value.get_secret_value())
    return bool(value)


class Settings(BaseSettings):
    """Everything Threadline reads from its environment. See DESIGN.md for the table."""

    model_config = SettingsConfigDict(
        env_prefix=_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    data_dir: Path = Path(".threadline")
    database_url: str | None = None
    # SQLite only: how long a write waits for another process (the CLI) to release the file
    database_busy_timeout: float = Field(default=10.0, gt=0, le=600)
    public_base_url: str | None = None
    admin_token: SecretStr | None = None
    docs_public: bool = Field(
        default=False,
        description="THREADLINE_DOCS_PUBLIC: serve the API documentation (/docs, /redoc, /openapi.json) "
        "to anyone. Off: they need the admin bearer token (401 without it, 403 when no token is set).",
    )
    metrics_public: bool = Field(
        default=True,
        description="THREADLINE_METRICS_PUBLIC: serve /metrics to anyone (for a scraper on a private "
        "network). Off: /metrics needs the admin bearer token, as the admin API does.",
    )
    default_region: str = "US"
    log_level: str = "INFO"

    llm: LLMSettings = LLMSettings()
    memory: MemorySettings = MemorySettings()
    worker: WorkerSettings = WorkerSettings()
    retention: RetentionSettings = RetentionSettings()
    strangers: StrangerSettings = StrangerSettings()
    handoff: HandoffSettings = HandoffSettings()
    console: ConsoleSettings = ConsoleSettings()
    attachments: AttachmentSettings = AttachmentSettings()
    mcp: McpSettings = McpSettings()
    events: EventSettings = EventSettings()
    slack: SlackSettings = SlackSettings()
    telegram: TelegramSettings = TelegramSettings()
    twilio: TwilioSettings = TwilioSettings()
    email: EmailSettings = EmailSettings()

    @model_validator(mode="before")
    @classmethod
    def _vendor_key_fallbacks(cls, data: Any) -> Any:
        """``OPENAI_API_KEY`` and ``MEM0_API_KEY`` stand in when the THREADLINE_ ones are unset."""
        if not isinstance(data, dict):
            return data
        for section, vendor_variable in (("llm", "OPENAI_API_KEY"), ("memory", "MEM0_API_KEY")):
            fallback = os.environ.get(vendor_variable)
            if not fallback:
                continue
            raw = data.get(section)
            current: dict[str, Any] = dict(raw) if isinstance(raw, dict) else {}
            if not current.get("api_key") and not isinstance(raw, BaseModel):
                current["api_key"] = fallback
                data[section] = current
        return data

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_level(cls, value: object) -> object:
        if isinstance(value, str):
            level = value.strip().upper()
            if level not in LOG_LEVELS:
                raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
            return level
        return value

    @field_validator("default_region", mode="before")
    @classmethod
    def _known_region(cls, value: object) -> object:
        if isinstance(value, str):
            import phonenumbers  # only when the setting is given: the library's tables take a while to load

            region = value.strip().upper()
            if region not in phonenumbers.SUPPORTED_REGIONS:
                raise ValueError("must be a region code that has phone numbers, such as US, GB or DE")
            return region
        return value

    @field_validator("database_url", mode="before")
    @classmethod
    def _async_driver(cls, value: object) -> object:
        if isinstance(value, str) and value.strip():
            scheme, sep, _ = value.strip().partition("://")
            if not sep:
                raise ValueError(
                    f"must be a database URL such as {_DATABASE_URL_EXAMPLES} (got no scheme://)"
                )
            if scheme.lower() not in DATABASE_SCHEMES:
                raise ValueError(
                    f"must be a database URL such as {_DATABASE_URL_EXAMPLES} (got the scheme {scheme!r})"
                )
            return value.strip()
        return value or None

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'threadline.db').resolve()}"

    def enabled_channels(self) -> list[str]:
        """The platform channels whose credentials are complete (``check`` refuses partial ones)."""
        return [
            name for name in _REQUIRED if all(_is_set(self._section(name, k)) for k in self._required(name))
        ]

    def _required(self, channel: str) -> tuple[str, ...]:
        """The settings that switch ``channel`` on (Telegram polling takes no webhook, so no secret)."""
        if channel == "telegram" and self.telegram.mode == "polling":
            return tuple(key for key in _REQUIRED[channel] if key != "secret_token")
        if channel == "slack" and _is_set(self.slack.app_token):  # Socket Mode: no webhook, no signing secret
            return tuple(key for key in _REQUIRED[channel] if key != "signing_secret")
        return _REQUIRED[channel]

    def _section(self, channel: str, key: str) -> object:
        return getattr(getattr(self, channel), key)

    def check(self) -> None:
        """Refuse inconsistent configuration, naming the setting at fault."""
        for channel in _REQUIRED:
            keys = self._required(channel)
            present = [k for k in keys + _OPTIONAL_TRIGGERS[channel] if _is_set(self._section(channel, k))]
            if not present:
                continue
            for key in keys:
                if not _is_set(self._section(channel, key)):
                    given = env_name(channel, present[0])
                    raise ConfigError(
                        f"{env_name(channel, key)} is required when {given} is set "
                        f"(the {channel} channel is partly configured)",
                        setting=env_name(channel, key),
                    )
        if "email" in self.enabled_channels() and not (
            self.email.smtp_listen or _is_set(self.email.inbound_signing_key) or self.email.imap_host
        ):
            raise ConfigError(
                f"{env_name('email', 'smtp_listen')}, {env_name('email', 'inbound_signing_key')} or "
                f"{env_name('email', 'imap_host')} is required so that inbound email can arrive",
                setting=env_name("email", "smtp_listen"),
            )
        if "twilio" in self.enabled_channels() and not self.public_base_url:
            raise ConfigError(
                f"{_PREFIX}PUBLIC_BASE_URL is required with SMS: Twilio signatures are computed over it",
                setting=f"{_PREFIX}PUBLIC_BASE_URL",
            )
        self._check_data_dir()
        if self.memory.backend == "platform" and not _is_set(self.memory.api_key):
            raise ConfigError(
                f"{env_name('memory', 'api_key')} (or MEM0_API_KEY) is required when "
                f"{env_name('memory', 'backend')}=platform",
                setting=env_name("memory", "api_key"),
            )

    def _check_data_dir(self) -> None:
        """The data dir must be a folder, or one that can be made: nothing on its way may be a file."""
        wanted = self.data_dir.absolute()
        for place in (wanted, *wanted.parents):
            if not place.exists():
                continue
            if not place.is_dir():
                where = "is a file" if place == wanted else f"is under {place}, a file"
                raise ConfigError(
                    f"{_PREFIX}DATA_DIR: must be a folder, and {wanted} {where}", setting=f"{_PREFIX}DATA_DIR"
                )
            if place != wanted and not os.access(place, os.W_OK | os.X_OK):
                raise ConfigError(
                    f"{_PREFIX}DATA_DIR: {wanted} cannot be made: {place} is not writable",
                    setting=f"{_PREFIX}DATA_DIR",
                )
            return


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# the SQLAlchemy dialects with the async drivers the store runs on
DATABASE_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")
_DATABASE_URL_EXAMPLES = "postgresql+asyncpg://USER:PASSWORD@HOST/DATABASE or sqlite+aiosqlite:///PATH"


def load_settings(**values: Any) -> Settings:
    """``Settings()`` from the environment (and ``values``); a bad value is a ``ConfigError`` in one line
    that names the variable and says what is wrong (all of them, when several are)."""
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = [_problem(error) for error in exc.errors(include_url=False)]
        raise ConfigError("; ".join(text for _, text in problems), setting=problems[0][0]) from None
    except SettingsError as exc:  # a nested section given as JSON that does not parse
        found = re.search(r'field "(\w+)"', str(exc))
        name = f"{_PREFIX}{found.group(1).upper()}" if found else f"{_PREFIX}*"
        raise ConfigError(f"{name}: must be JSON (or use the {name}__KEY variables)", setting=name) from None


_MEANINGS = {
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_parsing": "must be a number",
    "bool_parsing": "must be true or false",
    "string_type": "must be text",
    "missing": "is required",
}
_BOUNDS = {
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "literal_error": "must be {expected}",
}


def _problem(error: Any) -> tuple[str, str]:
    """``(variable, "VARIABLE: what is wrong (got 'value')")`` for one pydantic error."""
    loc = [str(part) for part in error.get("loc", ()) if isinstance(part, str)]
    name = _PREFIX + "__".join(part.upper() for part in loc) if loc else f"{_PREFIX}*"
    kind = str(error.get("type", ""))
    context = error.get("ctx") or {}
    if kind in _BOUNDS:
        meaning = _BOUNDS[kind].format(**{k: str(v) for k, v in context.items()})
    elif kind == "value_error":
        meaning = str(error.get("msg", "")).removeprefix("Value error, ")
    else:
        meaning = _MEANINGS.get(kind) or str(error.get("msg", "is not valid")).lower()
    given = error.get("input")
    said = kind == "missing" or "(got " in meaning or _shown(given) in meaning
    shown = "" if said or _secret(loc) else f" (got {_shown(given)})"
    return name, f"{name}: {meaning}{shown}"


def _secret(loc: list[str]) -> bool:
    """Whether the value at ``loc`` may hold a secret (never echoed): a ``SecretStr``, the database URL."""
    model: type[BaseModel] = Settings
    for depth, part in enumerate(loc):
        field = model.model_fields.get(part)
        if field is None:
            return True  # unknown: better unsaid
        annotation = field.annotation
        if depth == len(loc) - 1:
            return part == "database_url" or "SecretStr" in str(annotation)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return True
        model = annotation
    return True


def _shown(value: object) -> str:
    text = repr(value) if isinstance(value, str) else repr(str(value))
    return text if len(text) <= 60 else text[:57] + "...'"
