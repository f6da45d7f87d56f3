"""The JSON shapes of identity: what the admin API answers and takes, and what the CLI prints with ``--json``.

Pydantic models only; nothing here imports FastAPI, so the CLI can print the same JSON as the admin API
(``core.web.admin``) without loading the web framework. The models read the identity layer's own
answers (``identity.directory``, ``identity.suggestions``, ``identity.linking``, ``identity.erasure``)
through ``from_attributes`` or the converters ``page_out``, ``detail_out`` and ``suggestions_out``.
``actor_name`` makes the ledger's actor (``admin:<name>``, ``cli:<name>``) from a name given by a person.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field

from identity.directory import CustomerDetail, CustomerPage
from identity.linking import Change
from identity.suggestions import MergeSuggestion, SuggestionKind

_ACTOR_UNSAFE = re.compile(r"[^A-Za-z0-9._@-]+")


def actor_name(prefix: str, name: str | None) -> str:
    """``prefix`` or ``prefix:name``, the name cut to safe characters (at most 64)."""
    cleaned = _ACTOR_UNSAFE.sub("", name or "")[:64]
    return f"{prefix}:{cleaned}" if cleaned else prefix


# ----- requests ------------------------------------------------------------------------------------

Reason = Annotated[str | None, Field(max_length=500, description="Why (kept in the ledger).")]


CUSTOMER_OR_ADDRESS = "A customer id (cus_...) or one of the customer's addresses (e.g. sms:+15551230000)."


class LinkRequest(BaseModel):
    address: str = Field(description="The handle, channel:handle (e.g. telegram:42); normalised.")
    customer_id: str = Field(description=f"The customer it joins. {CUSTOMER_OR_ADDRESS}")
    reason: Reason = None


class UnlinkRequest(BaseModel):
    address: str = Field(description="The handle to detach; it becomes a customer of its own.")
    reason: Reason = None


class MergeRequest(BaseModel):
    source: str = Field(
        description="The customer merged away (kept, marked merged, so it can be undone). "
        + CUSTOMER_OR_ADDRESS
    )
    target: str = Field(
        description="The customer that receives every handle, message and memory. " + CUSTOMER_OR_ADDRESS
    )
    reason: Reason = None


class UndoRequest(BaseModel):
    reason: Reason = None


# ----- answers -------------------------------------------------------------------------------------


class ChangeOut(BaseModel):
    """What an identity change did. ``event_id`` is its ledger entry (null when nothing had to change)."""

    event_id: int | None
    kind: str
    customer_id: str
    from_customer_id: str | None
    addresses: list[str]
    memory_moves_pending: int = Field(description="Memory moves still queued (the memory backend was down).")

    @classmethod
    def of(cls, change: Change) -> Self:
        return cls(
            event_id=change.event_id,
            kind=change.kind,
            customer_id=change.customer_id,
            from_customer_id=change.from_customer_id,
            addresses=list(change.addresses),
            memory_moves_pending=change.memory_moves_pending,
        )


class MergeOut(ChangeOut):
    merge_id: int = Field(description="The merge's ledger id: POST /admin/merges/{merge_id}/undo undoes it.")


class CustomerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    created_at: datetime
    merged_into: str | None
    addresses: list[str]


class CustomerPageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    total: int
    limit: int
    offset: int
    customers: list[CustomerOut]


class IdentityOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    address: str
    channel: str
    assurance: str
    method: str
    created_at: datetime
    updated_at: datetime | None


class TurnOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    channel: str
    address: str
    role: str
    text: str
    created_at: datetime


class MemoryOut(BaseModel):
    """A memory with its provenance: the channel and handle it came from, and our message ids."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    text: str
    category: str | None
    channel: str | None
    handle: str | None
    message_ids: list[str]
    turn_ids: list[int]
    created_at: datetime | None


class CustomerDetailOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    created_at: datetime
    merged_into: str | None = Field(description="Set while this customer is merged into another.")
    merge_id: int | None = Field(description="The ledger id of that merge (undo it to split them again).")
    merged_from: list[str]
    identities: list[IdentityOut]
    recent_turns: list[TurnOut]
    memories: list[MemoryOut]
    memories_available: bool


class LedgerEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    kind: str
    actor: str
    reason: str | None
    address: str | None
    customer_id: str | None
    from_customer_id: str | None
    assurance: str | None
    method: str | None
    addresses: dict[str, str]
    undoes: int | None


class LedgerOut(BaseModel):
    entries: list[LedgerEntryOut]


class SuggestionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kind: SuggestionKind
    customer_a: str
    address_a: str
    customer_b: str
    address_b: str
    reason: str


class SuggestionsOut(BaseModel):
    suggestions: list[SuggestionOut]


class ReceiptOut(BaseModel):
    """What an erasure removed, store by store (counts only)."""

    customer_id: str
    customer_ids: list[str] = Field(description="The customer and every customer merged into it.")
    removed: dict[str, int] = Field(description="Rows or memories removed, by store.")
    ledger_event_id: int | None
    at: datetime


class ExportOut(BaseModel):
    """Everything held about a customer (``threadline-export/1``): what ``threadline export`` writes.

    The format only grows: fields added later (``handoffs``, ``cases``, ``attachments``; a conversation
    turn's ``operator``) have defaults, so a document written before them still reads."""

    format: str
    exported_at: str
    customer_id: str
    customers: list[dict[str, Any]]
    identities: list[dict[str, Any]]
    conversation: list[dict[str, Any]]
    messages_received: list[dict[str, Any]]
    replies_sent: list[dict[str, Any]]
    memories: list[dict[str, Any]]
    identity_ledger: list[dict[str, Any]]
    link_requests: list[dict[str, Any]]
    opt_outs: list[dict[str, Any]]
    handoffs: list[dict[str, Any]] = Field(
        default_factory=list,
        description="The customer's handoffs to a person: status, who asked, the operator, and when each "
        "step happened.",
    )
    cases: list[dict[str, Any]] = Field(
        default_factory=list,
        description="The customer's support cases: title, status, when opened and resolved, by whom, the "
        "turns they came from, the summary and the rating.",
    )
    attachments: list[dict[str, Any]] = Field(
        default_factory=list,
        description="The files the customer sent and was sent (not their bytes): name, media type, size, "
        "sha256, direction (in, out), status (stored, refused), the reason of a refusal, and when.",
    )


# ----- converters ----------------------------------------------------------------------------------


def page_out(page: CustomerPage) -> CustomerPageOut:
    return CustomerPageOut.model_validate(page)


def detail_out(detail: CustomerDetail) -> CustomerDetailOut:
    return CustomerDetailOut.model_validate(detail)


def suggestions_out(found: list[MergeSuggestion]) -> SuggestionsOut:
    return SuggestionsOut(suggestions=[SuggestionOut.model_validate(s) for s in found])
