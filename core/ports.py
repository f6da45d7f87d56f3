"""The ports: what core needs from channels, identity, memory and the LLM. Protocols only: the values they
speak are in ``core.messages`` (and the memory index's rows in ``core.memory.rows``).

Core depends only on these protocols; the composition root (``core/compose.py``) wires the concrete
implementations.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from core.messages import (
    Address,
    Assurance,
    Attachment,
    ChatMessage,
    Completion,
    Delivery,
    FetchedMedia,
    Handled,
    InboundMessage,
    IncomingTurn,
    MediaRef,
    MemoryFilter,
    MemoryRecord,
    OutboundMessage,
    Provenance,
    Resolution,
    Tool,
)

if TYPE_CHECKING:
    from core.pipeline.inbox import Accepted

AcceptFn = Callable[[InboundMessage], Awaitable["Accepted"]]


@runtime_checkable
class ChatModel(Protocol):
    """An LLM that completes a conversation. Raises ``LLMError`` on failure, timeout or garbage."""

    async def complete(self, messages: list[ChatMessage], *, tools: Sequence[Tool] = ()) -> Completion:
        """The model's answer to ``messages``, offered ``tools`` to call besides (or instead of) answering.

        A ``Completion`` has text, or a call to an offered tool, or both; calls to tools that were not
        offered are dropped. ``LLMError`` when there is neither.
        """
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Sender(Protocol):
    """The outbound half of a channel adapter: what the worker needs to deliver a reply.

    ``send`` raises ``TransientDeliveryError`` (retried, honouring ``retry_after``) or
    ``PermanentDeliveryError`` (marked failed, never retried).
    """

    name: str

    async def send(self, message: OutboundMessage) -> Delivery: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class InboundServer(Protocol):
    """A channel that receives traffic itself (not through a web route), e.g. the SMTP listener.

    ``start_inbound`` runs inside the app's event loop; ``accept`` commits a message and returns only
    once it is durable, so the server may acknowledge (SMTP 250) right after it returns.
    """

    async def start_inbound(self, accept: AcceptFn) -> None: ...

    async def stop_inbound(self) -> None: ...


class IdentityResolver(Protocol):
    """Maps a normalised address to its customer, creating a customer for an unknown address.

    ``assurance`` is the channel's word on the sender of this message (``InboundMessage.sender_assurance``);
    it is the new handle's assurance when the address is seen for the first time, and changes nothing else.
    """

    async def resolve(self, address: Address, *, assurance: Assurance | None = None) -> Resolution: ...


@runtime_checkable
class Attestor(Protocol):
    """A channel whose platform can vouch that other handles belong to a sender (a Slack workspace
    that verifies its members' emails). Returns [] when it cannot or will not; raises nothing."""

    async def attested_handles(self, sender: Address) -> list[Address]: ...


class Interceptor(Protocol):
    """Looks at each customer message first (self-service linking, platform attestation).

    Returns ``Handled`` when it answered the message itself, None to let the agent answer.
    """

    async def intercept(self, turn: IncomingTurn) -> Handled | None: ...


@runtime_checkable
class SharedLimits(Protocol):
    """Rates, caps and single-use marks that every process on one database shares.

    In scale mode many processes serve one PostgreSQL database: a limit kept in one process's memory
    lets each process through once, so N processes let N times through. Keys are free text (the
    implementation over the database stores only their hash: a key may name an address).
    Implementations: ``core.store.shared_limits.DatabaseLimits``; ``channels.limits.LocalLimits`` for one
    process (what an adapter uses until the composition root binds the database's).
    """

    async def pace(self, key: str, *, interval: float, burst: int) -> float:
        """Reserve ``key``'s next slot (about one per ``interval`` seconds after a burst of ``burst``);
        returns the seconds to wait before using it. Never refuses: callers sleep, then act."""
        ...

    async def reserve(self, key: str, *, limit: int, window: float) -> float | None:
        """Take one of at most ``limit`` uses of ``key`` in any ``window`` seconds: a ticket (for
        ``release``), or None when all are taken. ``limit=1`` makes a single-use mark."""
        ...

    async def release(self, key: str, ticket: float) -> None:
        """Give back a use whose action failed (an unknown ticket is not an error)."""
        ...


@runtime_checkable
class UsesSharedLimits(Protocol):
    """An adapter that keeps limits: the composition root hands it the shared ones once the store is open."""

    def bind_limits(self, limits: SharedLimits) -> None: ...


@runtime_checkable
class MediaFetcher(Protocol):
    """A channel whose messages name files to fetch from the platform (``core.media.intake``).

    ``fetch_media`` reads at most ``max_bytes`` (a longer file raises ``MediaRefused`` without reading the
    rest), only from the platform's own hosts (a media URL naming another host raises ``MediaRefused``:
    the platform's credentials never go elsewhere), with the channel's credentials. ``MediaUnavailable``
    when the platform cannot be reached now (the turn is tried again)."""

    async def fetch_media(self, ref: MediaRef, *, max_bytes: int) -> FetchedMedia: ...


@runtime_checkable
class MediaStore(Protocol):
    """Where the bytes of attachments are kept, once each, named by their sha256 (``core.media``).

    Two implementations: files under ``<data dir>/media`` (``core.media.store.FileMediaStore``, the
    embedded default) and rows of the PostgreSQL store (``core.media.pg_store.PostgresMediaStore``, scale
    mode: every process on every host sees the same bytes). The contract, the same for both:

    - ``put`` keeps ``data`` and returns its sha256 (64 lower-case hex digits); the same bytes put twice,
      by two processes at once or not, are kept once and neither call fails.
    - ``get`` gives the bytes back; ``FileNotFoundError`` when they are not kept (never, or forgotten).
    - ``has`` says whether they are kept; ``delete`` removes them (False when they were not kept).
    - A name that is not a sha256 (a path, upper-case, anything a customer or a platform says) is
      ``ValueError`` for ``get`` and ``delete`` and False for ``has``: it never names anything else.
    """

    async def put(self, data: bytes) -> str: ...

    async def get(self, sha256: str) -> bytes: ...

    async def has(self, sha256: str) -> bool: ...

    async def delete(self, sha256: str) -> bool: ...


@runtime_checkable
class FileSource(Protocol):
    """Where an adapter gets the files of an ``OutboundMessage`` (``core.media.outbound.StoredFiles``).

    ``read`` gives a stored file's bytes; ``link`` a URL the platform can fetch it from (signed, expiring:
    ``core.media.links``), for a platform that takes media by URL (Twilio MMS). Both raise
    ``PermanentDeliveryError`` when that cannot be done (the file was forgotten, no public URL)."""

    async def read(self, file: Attachment) -> bytes: ...

    def link(self, file: Attachment) -> str: ...


@runtime_checkable
class UsesFileSource(Protocol):
    """A sender that can send files: the delivery hands it the ``FileSource`` once, at start."""

    def bind_files(self, files: FileSource) -> None: ...


@runtime_checkable
class NamedLease(Protocol):
    """Leases on names: ``acquire`` is True for one holder at a time (it renews its own lease) until the
    lease lapses or is released. Implemented by ``core.store.leases.NamedLeases``."""

    async def acquire(self, name: str, *, ttl: float) -> bool: ...

    async def release(self, name: str) -> None: ...


@runtime_checkable
class UsesNamedLeases(Protocol):
    """An adapter that one process at a time may run (the Telegram poller: a second ``getUpdates``
    gets 409): the composition root hands it the store's leases in scale mode."""

    def bind_leases(self, leases: NamedLease) -> None: ...


class MemoryStore(Protocol):
    """Long-term memory of customers, keyed by the canonical customer id (never by a handle).

    Every method is scoped to one customer: nothing returned for one customer ever belongs to another.
    Failures of the backend raise ``MemoryUnavailable``.
    """

    async def recall(
        self, customer_id: str, query: str, *, limit: int, filters: MemoryFilter | None = None
    ) -> list[MemoryRecord]:
        """The customer's ``limit`` best memories for ``query``, best first; with ``filters``, only those
        that meet them (applied before the limit)."""
        ...

    async def remember(
        self,
        customer_id: str,
        messages: list[ChatMessage],
        *,
        provenance: Provenance,
        infer: bool,
    ) -> list[str]:
        """Store memories from ``messages``; returns the new memory ids.

        With ``infer=True`` the backend's LLM extracts facts; if that fails the turn is stored as it is.
        """
        ...

    async def list(self, customer_id: str, *, filters: MemoryFilter | None = None) -> list[MemoryRecord]:
        """The customer's memories, newest first; with ``filters``, only those that meet them."""
        ...

    async def import_memory(
        self, customer_id: str, text: str, *, metadata: dict[str, Any], created_at: datetime | None
    ) -> str | None:
        """Store ``text`` as it is (no extraction) with ``metadata`` and its original ``created_at`` (None:
        now); returns its id, or None when the backend queues the write (hosted Mem0)."""
        ...

    async def covers_turns(self, customer_id: str, turn_ids: builtins.list[int]) -> bool:
        """True when memories made from any of these turns already exist (makes retried writes idempotent)."""
        ...

    async def forget(self, customer_id: str) -> int: ...

    async def supersede(self, customer_id: str, memory_ids: builtins.list[str]) -> int:
        """Mark the customer's older statements of the facts these new memories state (an address, a
        phone, a plan: ``core.memory.supersession``) superseded; returns how many were marked."""
        ...

    async def forget_before(self, customer_id: str, cutoff: datetime) -> int:
        """Retention: delete the customer's memories written before ``cutoff``; returns how many."""
        ...

    async def move(
        self, from_customer: str, to_customer: str, *, handles: Collection[str] | None = None
    ) -> builtins.list[str]:
        """Move the memories of ``from_customer`` whose ``source_handle`` is in ``handles`` (all of them
        when None) to ``to_customer``, text and provenance unchanged; returns their ids as they are now.

        Used by identity link / unlink / merge / unmerge. Nothing moved remains visible under
        ``from_customer``. Moving to the same customer is a no-op. Idempotent: after an interruption a
        re-run moves what is left.
        """
        ...

    async def warm(self) -> None:
        """Load now what the first call would (models, the index), so that no customer waits for it; a
        serving process calls it once when it starts."""
        ...

    async def aclose(self) -> None: ...


# ----- the memory index: the store under Mem0 ---------------------------------------------------

if TYPE_CHECKING:
    from collections.abc import Mapping

    from core.memory.rows import ScopeSignals, Vector, VectorHit


class MemoryIndex(Protocol):
    """The store Mem0 open source writes its memories to, and ``LocalMemory`` reads, moves and erases.

    A row is an id, a vector and a JSON payload (Mem0's: ``data`` the text, ``user_id`` the customer,
    ``created_at``; ours: the provenance of ``Provenance.as_metadata``). Implementations: the SQLite file
    of the embedded default (``core.memory.vectors.SQLiteVectorStore``) and PostgreSQL at scale; both
    pass ``tests/core/memory/conformance.py``. Methods are blocking (Mem0 calls them from its threads)
    and safe to call from several threads.

    ``filters`` are Mem0's filter dictionaries (``core.memory.filters``). Scoping is strict: a read
    without a ``user_id``, ``agent_id`` or ``run_id`` equality returns nothing (never everyone's rows),
    and a row is read only under the scope it carries; the other keys narrow the scope's rows. Reads by
    id (``get``, ``payloads``) are not scoped: ids are unique, and callers check the owner.
    """

    # ----- what Mem0's vector store interface calls -----

    def insert(
        self,
        vectors: Sequence[Vector],
        payloads: Sequence[Mapping[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> None:
        """Store rows (a row of an existing id is replaced). ``ValueError`` for a vector of other dims."""
        ...

    def search(
        self, query: str, vectors: Vector, top_k: int = 5, filters: Mapping[str, Any] | None = None
    ) -> builtins.list[VectorHit]:
        """The ``top_k`` rows of the scope closest to ``vectors``; score = cosine clipped to [0, 1]."""
        ...

    def keyword_search(
        self, query: str, top_k: int = 5, filters: Mapping[str, Any] | None = None
    ) -> builtins.list[VectorHit]:
        """The ``top_k`` rows of the scope best for ``query``'s words by BM25 (score > 0, higher is better);
        the query's words are searched as words, never as query syntax."""
        ...

    def get(self, vector_id: str) -> VectorHit | None: ...

    def update(
        self, vector_id: str, vector: Vector | None = None, payload: Mapping[str, Any] | None = None
    ) -> None:
        """Replace a row's vector and/or payload (what is None stays). ``KeyError`` for an unknown id."""
        ...

    def delete(self, vector_id: str) -> None:
        """Delete a row, its text included (an unknown id is not an error)."""
        ...

    def list(
        self, filters: Mapping[str, Any] | None = None, top_k: int | None = None
    ) -> builtins.list[VectorHit]:
        """The scope's rows, newest first (by ``created_at``); at most ``top_k``. Also the export."""
        ...

    # ----- what LocalMemory needs besides -----

    def count(self, filters: Mapping[str, Any]) -> int:
        """How many rows the scope holds (0 without a scope)."""
        ...

    def scope_signals(
        self, vectors: Vector, terms: Sequence[str], filters: Mapping[str, Any] | None
    ) -> ScopeSignals:
        """Every row of the scope, oldest first, with its cosine to ``vectors`` and its BM25 score for
        ``terms`` (any of them, stemmed; 0 where none matches): what ``core.memory.ranking`` ranks."""
        ...

    def payloads(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The payloads of the rows ``ids``; unknown ids are left out."""
        ...

    def covers_turns(self, user_id: str, turn_ids: Sequence[int]) -> bool:
        """True when a row of ``user_id`` has one of ``turn_ids`` in its payload's ``turn_ids``."""
        ...

    def reassign(
        self, from_user: str, to_user: str, *, handles: Collection[str] | None = None
    ) -> builtins.list[str]:
        """Give ``from_user``'s rows whose payload's ``source_handle`` is in ``handles`` (all when None) to
        ``to_user`` atomically; ids, vectors and the rest of the payload stay. Returns the ids moved."""
        ...

    def forget_scope(self, filters: Mapping[str, Any]) -> builtins.list[str]:
        """Delete every row of the scope so that none of its text remains in the store (keyword index
        included); returns their ids. ``ValueError`` without a scope."""
        ...

    def forget_written_before(self, filters: Mapping[str, Any], cutoff: datetime) -> builtins.list[str]:
        """Retention: delete the scope's rows whose ``created_at`` is before ``cutoff`` (an unreadable one
        is kept), text included; returns their ids. ``ValueError`` without a scope."""
        ...

    def close(self) -> None: ...
