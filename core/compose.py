"""The composition root: every service object of a process, built once from settings.

The web app (``core.web.app``) and the CLI (``core.cli``) both build through here, and nothing else
builds a store, a memory store, a chat model, a channel adapter or an identity service:

- ``open_services(settings)``: the database (migrated), the memory store and the identity service
  (``IdentityLinks``) over them. The CLI's customer, identity, memory, forget and export commands use
  this alone; it loads no web framework and no channel SDK.
- ``wire(settings, senders=...)``: those services plus the hub (inbox, worker, delivery, memory writer),
  the LLM, the channel adapters, self-service linking and the background rounds (memory moves,
  retention). ``serve`` and ``chat`` run this; the web app serves its ``Wiring``.

One ``IdentityLinks`` per process: the background round that re-runs memory moves and the admin API use
the same object, so its move lock orders them (no module-global lock).

Concrete channels and identity modules are imported here and in the two front ends only (import-linter).
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.errors import ConfigError
from core.media.pg_store import media_store
from core.messages import Address
from core.ports import Attestor, MediaStore, MemoryStore, Sender, UsesNamedLeases, UsesSharedLimits
from core.settings import Settings, env_name
from core.store.db import Database
from core.store.private_files import private_dir

if TYPE_CHECKING:
    from channels.base import ChannelAdapter
    from core.pipeline.case_desk import CaseDesk
    from core.pipeline.handoff import Handoffs
    from core.pipeline.hub import Hub, Role
    from identity.linking import IdentityLinks


def normalizer(settings: Settings) -> functools.partial[Address]:
    """``identity.normalize.normalize_address`` with the configured default region."""
    from identity.normalize import normalize_address

    return functools.partial(normalize_address, default_region=settings.default_region)


def build_adapters(settings: Settings) -> dict[str, ChannelAdapter]:
    """The platform adapters whose credentials are set, keyed by channel name. No network I/O."""
    enabled = settings.enabled_channels()
    normalize = normalizer(settings)
    adapters: dict[str, ChannelAdapter] = {}
    if "slack" in enabled:
        from channels.slack import SlackAdapter

        adapters["slack"] = SlackAdapter(settings.slack, normalize=normalize)
    if "telegram" in enabled:
        from channels.telegram import TelegramAdapter

        adapters["telegram"] = TelegramAdapter(settings.telegram, normalize=normalize)
    if "twilio" in enabled:
        from channels.sms import TwilioSmsAdapter

        assert settings.public_base_url is not None  # Settings.check() demands it with SMS
        adapters["sms"] = TwilioSmsAdapter(
            settings.twilio, public_base_url=settings.public_base_url, normalize=normalize
        )
    if "email" in enabled:
        from channels.email import EmailAdapter

        adapters["email"] = EmailAdapter(settings.email, normalize=normalize)
    return adapters


def bind_shared_limits(senders: Mapping[str, Sender], db: Database) -> None:
    """Hand the adapters that pace or cap (``core.ports.UsesSharedLimits``) the store's shared limits.

    On PostgreSQL (scale mode: many processes, many hosts) they count in the database
    (``core.store.shared_limits.DatabaseLimits``), so N processes together let through once what one
    would. On SQLite one ``serve`` holds the data dir (``core.store.serve_lock``): the adapters keep the
    limits of their own process, and no send or webhook waits for SQLite's write lock to pace itself.
    """
    if db.dialect != "postgresql":
        return
    from core.store.shared_limits import DatabaseLimits

    limits = DatabaseLimits(db)
    for sender in senders.values():
        if isinstance(sender, UsesSharedLimits):
            sender.bind_limits(limits)


def bind_named_leases(senders: Mapping[str, Sender], db: Database) -> None:
    """Hand the adapters that one process at a time may run (``core.ports.UsesNamedLeases``: the Telegram
    poller) the store's named leases. On PostgreSQL only: on SQLite one ``serve`` holds the data dir."""
    if db.dialect != "postgresql":
        return
    from core.store.leases import NamedLeases

    leases = NamedLeases(db)
    for sender in senders.values():
        if isinstance(sender, UsesNamedLeases):
            sender.bind_leases(leases)


def build_memory(settings: Settings) -> MemoryStore:
    """The memory store ``settings.memory.backend`` names. Cheap: nothing is loaded or called yet.

    Local Mem0 keeps its memories in a SQLite file in the data dir (the embedded default), or, when the
    store is on PostgreSQL (scale mode: several hosts, each with its own data dir), in that database
    (``core.memory.pg_index``), so that every host sees the same memories. Hosted Mem0 is the third.
    """
    if settings.memory.backend == "platform":
        from core.memory.platform import PlatformMemory

        api_key = settings.memory.api_key
        if api_key is None or not api_key.get_secret_value():
            raise ConfigError(
                f"{env_name('memory', 'api_key')} (or MEM0_API_KEY) is required for the platform backend",
                setting=env_name("memory", "api_key"),
            )
        return PlatformMemory(api_key=api_key, host=settings.memory.host, data_dir=settings.data_dir)
    from core.memory import mem0_oss
    from core.memory.local import LocalMemory

    url = settings.resolved_database_url
    if url.startswith("postgresql"):
        return LocalMemory(
            data_dir=settings.data_dir, llm=settings.llm, index=lambda: mem0_oss.postgres_index(url)
        )
    return LocalMemory(data_dir=settings.data_dir, llm=settings.llm)


@dataclass(frozen=True, slots=True)
class Services:
    """The store, the memory store, the identity service, the handoffs and the cases people open and
    resolve, of one process (built once)."""

    settings: Settings
    db: Database
    memory: MemoryStore
    links: IdentityLinks
    handoffs: Handoffs
    case_desk: CaseDesk

    @property
    def default_region(self) -> str:
        return self.settings.default_region

    @property
    def media(self) -> MediaStore:
        """The bytes of attachments (``core.media``), under the data dir or in PostgreSQL in scale mode
        (``core.media.pg_store``): what forget and retention remove."""
        return media_store(self.db, self.settings.data_dir)

    async def aclose(self) -> None:
        await self.memory.aclose()
        await self.db.aclose()


async def open_services(settings: Settings) -> Services:
    """Open the database (migrating it) and the memory store, and the identity service over them."""
    from core.pipeline.case_desk import CaseDesk
    from core.pipeline.handoff import Handoffs
    from identity.linking import IdentityLinks

    settings.check()
    private_dir(settings.data_dir)  # 0700, and tightened to it (logged) when it was looser
    memory = build_memory(settings)
    db = await Database.open(settings.resolved_database_url, busy_timeout=settings.database_busy_timeout)
    handoffs = Handoffs(
        db, settings.handoff, memory_settings=settings.memory, console_url=settings.public_base_url
    )
    return Services(
        settings=settings,
        db=db,
        memory=memory,
        links=IdentityLinks(db, memory),
        handoffs=handoffs,
        case_desk=CaseDesk(db),
    )


@dataclass(frozen=True, slots=True)
class Wiring:
    """A whole process: its services and the hub that runs on them (``hub.stop()`` closes both)."""

    services: Services
    hub: Hub


async def wire(
    settings: Settings,
    *,
    senders: Mapping[str, Sender] | None = None,
    inbox_channels: Collection[str] | None = None,
    role: Role = "all",
) -> Wiring:
    """Open everything ``settings`` describes: services, LLM, channels, the hub and its background.
    ``role`` is what the hub runs in this process (``core.pipeline.hub.Role``)."""
    from core.agent.llm import build_chat_model
    from core.pipeline.hub import Hub
    from core.pipeline.retention import Retention
    from identity.proof import SelfServiceLinking
    from identity.resolver import DatabaseResolver

    chosen: Mapping[str, Sender] = senders if senders is not None else build_adapters(settings)
    services = await open_services(settings)
    db, memory, links = services.db, services.memory, services.links
    try:
        attestors = {name: sender for name, sender in chosen.items() if isinstance(sender, Attestor)}
        proofs = SelfServiceLinking(
            db, links, deliverable=chosen, attestors=attestors, default_region=settings.default_region
        )
        moves_every = max(1.0, settings.worker.poll_interval * 10)
        background = [lambda: links.run_forever(moves_every)]
        retention = Retention(db=db, memory=memory, settings=settings.retention, media=services.media)
        if retention.enabled:
            background.append(retention.run_forever)
        background.append(services.handoffs.run_escalations)
        hub = Hub(
            settings=settings,
            db=db,
            memory=memory,
            model=build_chat_model(settings.llm),
            resolver=DatabaseResolver(db),
            senders=chosen,
            inbox_channels=inbox_channels,
            interceptor=proofs,
            background=background,
            role=role,
            handoffs=services.handoffs,
        )
        services.case_desk.metrics = hub.metrics  # a person's cases count in the hub's /metrics
    except BaseException:
        await services.aclose()  # nothing is left open behind a failed start
        raise
    # issue 13: the adapters' pacing, caps and single-use tokens are shared by every process on the store
    bind_shared_limits(chosen, db)
    bind_named_leases(chosen, db)  # one Telegram poller among the processes on the store
    return Wiring(services=services, hub=hub)


async def build_hub(
    settings: Settings,
    *,
    senders: Mapping[str, Sender] | None = None,
    inbox_channels: Collection[str] | None = None,
) -> Hub:
    """The hub of ``wire(settings, ...)`` (tests, benchmarks and ``chat`` need no more than this)."""
    return (await wire(settings, senders=senders, inbox_channels=inbox_channels)).hub
