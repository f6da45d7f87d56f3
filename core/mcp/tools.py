"""What the MCP tools do, free of the protocol: find a customer, read and search their memory, list their
open cases, add a note, ask for a person. ``core.mcp.server`` exposes these methods as MCP tools.

The tools call the same services as the admin API (``core.compose.Services``: the store, the memory store,
the handoffs), and the bot's assurance rules decide what a caller sees, as ``core.agent.agent`` recalls:

- **Named by a handle nobody vouched for** (``unverified``: an email without DMARC pass, a console name, a
  handle linked without proof), a customer shows only that handle: its own memories, no other handle, no
  case, no customer id, and nothing can be written or asked for through it. An AI tool answering the
  person behind such a handle cannot read out what the customer said on their other channels, as the
  bot cannot.
- **Named by its id or by a handle that was vouched for**, a customer shows every handle (with its
  assurance) and the memories the bot would recall for a vouched sender: none that an unvouched message
  wrote, and none of a handle that is still unverified. Memories superseded by a newer statement of
  the same fact are left out (history, not current), as in the bot's recall.

Writes need ``THREADLINE_MCP__SCOPE=write``: without it ``add_note`` and ``request_handoff`` raise
``ScopeRefused`` before anything is read or written. A note is redacted (``core.agent.redaction``) and stored
as a memory with provenance channel ``mcp`` (said by the support team, vouched); a handoff is opened
waiting, ``requested_by="mcp"``, as a customer's request opens it (the team's notices included), with the
redacted reason as its note.

Every call is logged with the tool's name and ids only (customer ids, counts, the handoff id): never an
address, a query, a note or a memory's text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.agent.agent import said_vouched, vouched_for
from core.agent.redaction import redact
from core.compose import Services
from core.errors import Conflict, InvalidAddress, NotFound, ThreadlineError
from core.memory.categorize import categorize
from core.memory.supersession import is_superseded
from core.messages import Address, Assurance, ChatMessage, MemoryFilter, MemoryRecord, Provenance
from core.pipeline.cases import list_cases
from core.pipeline.handoff import HandoffView
from core.store.models import Customer, Identity

log = logging.getLogger(__name__)

Scope = Literal["read", "write"]
SCOPE_SETTING = "THREADLINE_MCP__SCOPE"
PROVENANCE_CHANNEL = "mcp"  # a note's ``source_channel`` and ``source_handle``; a handoff's requested_by

MAX_WHO_CHARS = 320  # a customer id or an address (an email address is at most 254)
MAX_QUERY_CHARS = 2000
MAX_NOTE_CHARS = 2000
MAX_REASON_CHARS = 500
MAX_LIMIT = 100
OPEN_CASE = "open"


class ScopeRefused(ThreadlineError):
    """A write tool called with a read-only MCP token or configuration (nothing was changed)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Viewpoint:
    """A customer as the caller named them: by id (``address`` None) or by one of its handles.
    ``own_only``: the handle is unverified, so only what it said itself may be shown."""

    customer_id: str
    address: str | None
    assurance: Assurance | None
    own_only: bool


def _limit(value: int) -> int:
    if value < 1 or value > MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    return value


def _one_line(text: str, limit: int, what: str, *, required: bool) -> str:
    """``text`` redacted and on one line; ``ValueError`` when it is empty (and required) or too long."""
    if len(text) > limit:
        raise ValueError(f"{what} is longer than {limit} characters")
    line = " ".join(redact(text).text.split())
    if required and not line:
        raise ValueError(f"{what} is empty")
    return line


def memory_out(record: MemoryRecord) -> dict[str, Any]:
    """A memory as the tools return it: its text, category, where and when it came from, who said it."""
    return {
        "id": record.id,
        "text": record.text,
        "category": record.category,
        "channel": record.channel,
        "handle": record.handle,
        "said_by": record.metadata.get("said_by", "customer"),
        "created_at": record.created_at.isoformat() if record.created_at else None,
        "said_at": record.said_at.isoformat() if record.said_at else None,
        "score": record.score,
    }


def handoff_out(view: HandoffView) -> dict[str, Any]:
    return {
        "id": view.id,
        "customer_id": view.customer_id,
        "status": view.status,
        "requested_by": view.requested_by,
        "opened_at": view.opened_at.isoformat(),
    }


class McpTools:
    """The tools over the ``Services`` that ``services()`` gives per call. ``parse`` reads an address in any
    spelling the CLI takes (``identity.directory.parse_query``, injected: ``core`` does not import
    ``identity`` here); ``scope`` is ``THREADLINE_MCP__SCOPE``; ``transport`` (``http``, ``stdio``) is
    only logged."""

    def __init__(
        self,
        services: Callable[[], Services],
        *,
        parse: Callable[[str], Address | None],
        scope: Scope,
        transport: str,
    ) -> None:
        self._services = services
        self._parse = parse
        self._scope = scope
        self._transport = transport

    @property
    def writes(self) -> bool:
        return self._scope == "write"

    # ----- naming a customer -------------------------------------------------------------------------

    async def _named(self, svc: Services, who: str) -> Viewpoint:
        """The customer ``who`` names (an id, or an address in any spelling); ``NotFound`` when none."""
        text = who.strip()
        if not text or len(text) > MAX_WHO_CHARS:
            raise InvalidAddress("give a customer id (cus_...) or an address such as sms:+15551230000")
        if text.startswith("cus_"):
            async with svc.db.read() as session:
                customer = await session.get(Customer, text)
            if customer is None:
                raise NotFound("no customer with that id")
            if customer.merged_into is not None:
                raise Conflict(f"customer {text} is merged into {customer.merged_into}: ask about that one")
            return Viewpoint(customer_id=text, address=None, assurance=None, own_only=False)
        address = self._parse(text)
        if address is None:
            raise InvalidAddress("not a customer id or an address (channel:handle, or a phone number)")
        async with svc.db.read() as session:
            row = await session.scalar(select(Identity).where(Identity.address == str(address)))
        if row is None:
            raise NotFound("no customer holds that address")
        assurance = Assurance(row.assurance)
        return Viewpoint(
            customer_id=row.customer_id,
            address=row.address,
            assurance=assurance,
            own_only=not vouched_for(assurance),
        )

    async def _unverified_handles(self, svc: Services, customer_id: str) -> set[str]:
        async with svc.db.read() as session:
            rows = await session.scalars(
                select(Identity.address).where(
                    Identity.customer_id == customer_id, Identity.assurance == Assurance.UNVERIFIED.value
                )
            )
            return set(rows)

    async def _allowed(self, svc: Services, view: Viewpoint) -> Callable[[MemoryRecord], bool]:
        """Which memories this viewpoint may see: the agent's rule (``core.agent.agent.Agent.recall``)."""
        if view.own_only:
            return lambda m: not is_superseded(m.metadata) and m.handle == view.address
        unproven = await self._unverified_handles(svc, view.customer_id)
        return lambda m: not is_superseded(m.metadata) and said_vouched(m) and m.handle not in unproven

    def _writable(self, tool: str, view: Viewpoint | None = None) -> None:
        if not self.writes:
            log.warning("mcp %s refused (%s): the scope is read-only", tool, self._transport)
            raise ScopeRefused(f"{tool} needs write access: this MCP server is read-only ({SCOPE_SETTING})")
        if view is not None and view.own_only:
            log.warning(
                "mcp %s refused (%s): customer %s named by an unproven handle",
                tool,
                self._transport,
                view.customer_id,
            )
            raise Conflict(f"{tool} needs the customer id or a proven handle: this handle is unverified")

    # ----- the tools ---------------------------------------------------------------------------------

    async def find_customer(self, address: str) -> dict[str, Any]:
        svc = self._services()
        view = await self._named(svc, address)
        if view.own_only:
            log.info(
                "mcp find_customer (%s): an unverified handle of customer %s",
                self._transport,
                view.customer_id,
            )
            return {
                "customer_id": None,
                "linked_without_proof": True,
                "handles": [{"address": view.address, "assurance": str(view.assurance)}],
                "note": "This handle is not proven to be the customer's: only what it said itself is shown. "
                "Pass this address (not a customer id) to customer_memory and search_memory.",
            }
        async with svc.db.read() as session:
            rows = list(
                await session.scalars(
                    select(Identity).where(Identity.customer_id == view.customer_id).order_by(Identity.id)
                )
            )
            customer = await session.get(Customer, view.customer_id)
        log.info("mcp find_customer (%s): customer %s", self._transport, view.customer_id)
        return {
            "customer_id": view.customer_id,
            "linked_without_proof": False,
            "created_at": customer.created_at.isoformat() if customer is not None else None,
            "handles": [
                {"address": r.address, "channel": r.channel, "assurance": r.assurance, "method": r.method}
                for r in rows
            ],
        }

    async def customer_memory(self, customer_id: str, limit: int = 20) -> dict[str, Any]:
        svc = self._services()
        view = await self._named(svc, customer_id)
        wanted = _limit(limit)
        allowed = await self._allowed(svc, view)
        found = [m for m in await svc.memory.list(view.customer_id) if allowed(m)][:wanted]
        log.info(
            "mcp customer_memory (%s): customer %s, %d memories",
            self._transport,
            view.customer_id,
            len(found),
        )
        return self._memories(view, found)

    async def search_memory(
        self,
        customer_id: str,
        query: str,
        category: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 10,
    ) -> dict[str, Any]:
        svc = self._services()
        wanted = _limit(limit)
        if len(query) > MAX_QUERY_CHARS:
            raise ValueError(f"query is longer than {MAX_QUERY_CHARS} characters")
        if not query.strip():
            raise ValueError("query is empty: customer_memory lists every memory")
        filters = MemoryFilter.parse(category=category, since=since, until=until)
        view = await self._named(svc, customer_id)
        allowed = await self._allowed(svc, view)
        # the query goes to the memory backend (hosted Mem0 included): no sensitive values in it, as the bot
        asked = wanted * 4 if view.own_only else wanted * 2
        found = await svc.memory.recall(
            view.customer_id,
            redact(query).text,
            limit=min(asked, MAX_LIMIT * 4),
            filters=None if filters.empty else filters,
        )
        kept = [m for m in found if allowed(m)][:wanted]
        log.info(
            "mcp search_memory (%s): customer %s, %d memories", self._transport, view.customer_id, len(kept)
        )
        return self._memories(view, kept)

    def _memories(self, view: Viewpoint, found: list[MemoryRecord]) -> dict[str, Any]:
        return {
            "customer_id": None if view.own_only else view.customer_id,
            "only_this_handle": view.own_only,
            "memories": [memory_out(m) for m in found],
        }

    async def open_cases(self, customer_id: str) -> dict[str, Any]:
        svc = self._services()
        view = await self._named(svc, customer_id)
        if view.own_only:
            log.info("mcp open_cases (%s): refused for an unverified handle", self._transport)
            raise Conflict(
                "a customer's cases are shown for its id or a proven handle: this one is unverified"
            )
        cases = [c for c in await list_cases(svc.db, view.customer_id) if c.status == OPEN_CASE]
        log.info("mcp open_cases (%s): customer %s, %d open", self._transport, view.customer_id, len(cases))
        return {"customer_id": view.customer_id, "cases": [c.as_json() for c in cases]}

    async def add_note(self, customer_id: str, text: str) -> dict[str, Any]:
        self._writable("add_note")
        note = _one_line(text, MAX_NOTE_CHARS, "the note", required=True)
        svc = self._services()
        view = await self._named(svc, customer_id)
        self._writable("add_note", view)
        provenance = Provenance(
            channel=PROVENANCE_CHANNEL,
            handle=PROVENANCE_CHANNEL,
            message_ids=(),
            category=categorize(note),
            sender_vouched=True,
            said_by="support_team",
        )
        ids = await svc.memory.remember(
            view.customer_id, [ChatMessage(role="user", content=note)], provenance=provenance, infer=False
        )
        log.info("mcp add_note (%s): customer %s, memories %s", self._transport, view.customer_id, ids)
        return {"customer_id": view.customer_id, "memory_ids": ids, "category": provenance.category}

    async def request_handoff(self, customer_id: str, reason: str = "") -> dict[str, Any]:
        self._writable("request_handoff")
        why = _one_line(reason, MAX_REASON_CHARS, "the reason", required=False)
        svc = self._services()
        view = await self._named(svc, customer_id)
        self._writable("request_handoff", view)
        try:
            async with svc.db.session() as session:
                opened = await svc.handoffs.open_in(
                    session,
                    customer_id=view.customer_id,
                    requested_by=PROVENANCE_CHANNEL,
                    channel=None,
                    inbox_id=None,
                    note=why or None,
                )
                handoff = HandoffView.of(opened) if opened is not None else None
        except IntegrityError:  # another process opened one at the same moment (one open per customer)
            opened, handoff = None, None
        if handoff is None:
            handoff = await svc.handoffs.current(view.customer_id)
            if handoff is None:
                raise Conflict("the handoff was opened and closed again meanwhile; ask again")
        log.info(
            "mcp request_handoff (%s): customer %s, handoff %s (%s)",
            self._transport,
            view.customer_id,
            handoff.id,
            "opened" if opened is not None else "already open",
        )
        return {**handoff_out(handoff), "already_open": opened is None}
