"""``LocalMemory``: the ``MemoryStore`` port over Mem0 open source, embedded in the process.

Mem0's synchronous ``Memory`` runs in worker threads (``asyncio.to_thread``); it is built on first use
(``core.memory.mem0_oss``) around a ``core.ports.MemoryIndex`` (the SQLite file in the data dir unless
another index is given) and the local embedder. ``LocalMemory`` uses the index through the port only.
Mem0 extracts, writes, lists and forgets; recall ranks the customer's rows of the index itself
(``core.memory.ranking``: dense and BM25 fused by reciprocal rank, smoothed over neighbouring
memories), which Mem0's own search cannot do (it scores only its dense candidates, and BM25 there only
raises them). Every memory carries the provenance of the turn it came from in its metadata. A
``MemoryFilter`` narrows the rows before they are ranked: its category and channel in the index's scope
read, its time window on the rows' ``created_at``; ``list`` filters the records it read.

What Mem0 shows its extractor for a turn comes from that turn's handle only: the existing memories it
shows are read narrowed to the handle's provenance (``mem0_oss.narrowed``), and it keeps no "last
messages" of the customer at all (``mem0_quirks.history_only_db``), since those would carry the words of
the customer's other handles (the writer hands it the customer's words only, never a reply). Any
backend failure surfaces as ``MemoryUnavailable``; log lines carry customer ids and counts only.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import itertools
import logging
import threading
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from core.errors import MemoryUnavailable
from core.memory import mem0_oss, mem0_quirks, ranking
from core.memory.embedder import LocalEmbedder, shared_embedder
from core.memory.ranking import WrittenTimes, keyword_terms
from core.memory.records import (
    as_mem0_messages,
    expired,
    from_payload,
    results_of,
    to_record,
    wanted_handles,
)
from core.memory.rows import ScopeSignals
from core.memory.supersession import plan_supersession, slot_of
from core.memory.time_words import asks_when
from core.messages import ChatMessage, MemoryFilter, MemoryRecord, Provenance
from core.ports import MemoryIndex
from core.settings import LLMSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

CLOSE_WAIT = 60.0  # seconds ``aclose`` waits for calls still running (an extraction waits for the LLM)


class LocalMemory:
    """Mem0 open source in ``data_dir``; extraction (``infer=True``) uses ``llm`` when it is configured.

    ``index`` opens the memory index on first use (blocking, in a worker thread); by default the SQLite
    file in ``data_dir`` (``mem0_oss.sqlite_index``).
    """

    def __init__(
        self,
        *,
        data_dir: Path,
        llm: LLMSettings,
        embedder: LocalEmbedder | None = None,
        index: Callable[[], MemoryIndex] | None = None,
    ) -> None:
        self._data_dir = data_dir
        self._llm = llm
        self._embedder = embedder or shared_embedder()
        self._open_index = index or (lambda: mem0_oss.sqlite_index(data_dir))
        self._lock = threading.Lock()
        self._oss: mem0_oss.OssMemory | None = None
        self._closed = False
        # calls running in worker threads: ``aclose`` waits for them, since a task cancelled while its call
        # runs (the hub stopping) leaves the thread going, and closing Mem0's connections under it crashed
        self._calls = threading.Condition()
        self._running = 0

    def __repr__(self) -> str:
        return f"LocalMemory(data_dir={str(self._data_dir)!r}, llm_configured={self._llm.configured})"

    # ----- plumbing ----------------------------------------------------------------------------

    def _backend(self) -> mem0_oss.OssMemory:
        with self._lock:
            if self._closed:
                raise MemoryUnavailable("the memory store is closed")
            if self._oss is None:
                self._oss = mem0_oss.build_oss_memory(
                    data_dir=self._data_dir, llm=self._llm, embedder=self._embedder, index=self._open_index()
                )
            return self._oss

    def _guarded(self, call: Callable[[], T]) -> Callable[[], T]:
        """``call``, counted while it runs, so that ``aclose`` closes nothing under it."""

        def run() -> T:
            with self._calls:
                if self._closed:
                    raise MemoryUnavailable("the memory store is closed")
                self._running += 1
            try:
                return call()
            finally:
                with self._calls:
                    self._running -= 1
                    self._calls.notify_all()

        return run

    async def _run(self, what: str, customer_id: str, call: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(self._guarded(call))
        except MemoryUnavailable:
            raise
        except Exception as exc:
            log.warning("memory %s failed for customer %s: %s", what, customer_id, type(exc).__name__)
            raise MemoryUnavailable(f"memory {what} failed ({type(exc).__name__})") from exc

    @staticmethod
    def _scope(customer_id: str, filters: MemoryFilter | None = None) -> dict[str, Any]:
        """The customer's rows; with ``filters``, narrowed by their metadata conditions (in the index)."""
        return {"user_id": customer_id, **(filters.metadata() if filters is not None else {})}

    # ----- the port ----------------------------------------------------------------------------

    async def recall(
        self, customer_id: str, query: str, *, limit: int, filters: MemoryFilter | None = None
    ) -> list[MemoryRecord]:
        """The customer's ``limit`` best memories for ``query``, best first (``core.memory.ranking``).

        Hybrid and per customer: the query's cosine to each of the customer's memories (the same embedder
        that wrote them) and its BM25 score (stemmed, stop words dropped) are smoothed over neighbouring
        memories of one conversation and fused by reciprocal rank. Expired memories are left out.
        """
        if not query.strip() or limit <= 0:
            return []

        def call() -> list[MemoryRecord]:
            index = self._backend().index
            vector = self._embedder.embed_one(" ".join(query.split()))
            signals = index.scope_signals(vector, keyword_terms(query), self._scope(customer_id, filters))
            signals = written_within(signals, filters)  # filtered before ranking: the limit comes after
            rank = functools.partial(
                ranking.ranked,
                signals.dense,
                signals.keyword,
                signals.written,
                dated=signals.dated,
                asks_when=asks_when(query),
            )
            # the best twice over what is asked for are sorted, which nearly always suffices: when expired
            # or missing payloads use them up, the whole order (the same first ones) is sorted
            order, scores = rank(top=2 * limit)
            whole = False
            found: list[MemoryRecord] = []
            for start in itertools.count(0, limit):  # payloads of the best first, a batch at a time
                if start + limit > len(order) and not whole:
                    order, scores = rank()
                    whole = True
                if start >= len(order):
                    break
                ids = [signals.ids[i] for i in order[start : start + limit].tolist()]
                batch = list(zip(ids, scores[start : start + limit].tolist(), strict=True))
                payloads = index.payloads([memory_id for memory_id, _ in batch])
                for memory_id, score in batch:
                    payload = payloads.get(memory_id)
                    if payload is None or not payload.get("data") or expired(payload):
                        continue
                    if payload.get("user_id") != customer_id:  # defence in depth behind the scope read
                        continue
                    found.append(from_payload(memory_id, payload, score))
                if len(found) >= limit:
                    break
            return found[:limit]

        return await self._run("recall", customer_id, call)

    async def remember(
        self,
        customer_id: str,
        messages: list[ChatMessage],
        *,
        provenance: Provenance,
        infer: bool,
    ) -> list[str]:
        metadata = provenance.as_metadata()

        def extract() -> list[str]:
            memory = self._backend().memory
            # Mem0 shows the extractor the existing memories its search finds: this handle's only
            with mem0_oss.narrowed({"source_handle": provenance.handle}):
                added = memory.add(
                    as_mem0_messages(messages), user_id=customer_id, metadata=metadata, infer=True
                )
            return [
                str(item["id"]) for item in results_of(added) if item.get("event") == "ADD" and "id" in item
            ]

        def store_as_is() -> list[str]:
            said = as_mem0_messages(messages, user_only=True)
            if not said:
                return []
            added = self._backend().memory.add(said, user_id=customer_id, metadata=metadata, infer=False)
            return [str(item["id"]) for item in results_of(added) if "id" in item]

        if infer and self._llm.configured:
            try:
                ids = await asyncio.to_thread(self._guarded(extract))
            except MemoryUnavailable:
                raise
            except Exception as exc:
                log.warning(
                    "memory extraction failed for customer %s (%s); storing the turn as it is",
                    customer_id,
                    type(exc).__name__,
                )
            else:
                log.info("memory: %d extracted for customer %s", len(ids), customer_id)
                return ids
        ids = await self._run("write", customer_id, store_as_is)
        log.info("memory: %d stored as is for customer %s", len(ids), customer_id)
        return ids

    async def list(self, customer_id: str, *, filters: MemoryFilter | None = None) -> list[MemoryRecord]:
        def call() -> list[MemoryRecord]:
            oss = self._backend()
            count = oss.index.count(self._scope(customer_id))
            if count == 0:
                return []
            listed = oss.memory.get_all(filters=self._scope(customer_id), top_k=count)
            records = [to_record(item) for item in results_of(listed)]
            return records if filters is None else [r for r in records if filters.admits(r)]

        return await self._run("list", customer_id, call)

    async def import_memory(
        self, customer_id: str, text: str, *, metadata: dict[str, Any], created_at: datetime | None
    ) -> str | None:
        """Store ``text`` as it is (Mem0's ``infer=False``, no LLM), then give its row the original
        ``created_at``; returns the new memory's id."""

        def call() -> str | None:
            oss = self._backend()
            added = oss.memory.add(
                [{"role": "user", "content": text}], user_id=customer_id, metadata=dict(metadata), infer=False
            )
            ids = [str(item["id"]) for item in results_of(added) if "id" in item]
            if not ids:
                return None
            if created_at is not None and (hit := oss.index.get(ids[0])) is not None:
                oss.index.update(ids[0], payload={**hit.payload, "created_at": created_at.isoformat()})
            return ids[0]

        return await self._run("import", customer_id, call)

    async def covers_turns(self, customer_id: str, turn_ids: builtins.list[int]) -> bool:
        if not turn_ids:
            return False
        return await self._run(
            "lookup", customer_id, lambda: self._backend().index.covers_turns(customer_id, turn_ids)
        )

    async def supersede(self, customer_id: str, memory_ids: builtins.list[str]) -> int:
        if not memory_ids:
            return 0

        def call() -> int:
            index = self._backend().index
            fresh = {
                memory_id: payload
                for memory_id, payload in index.payloads(memory_ids).items()
                if payload.get("user_id") == customer_id
            }
            if not any(slot_of(str(p.get("data") or "")) for p in fresh.values()):
                return 0  # the common case: nothing one-valued was said, nothing else is read
            others = {hit.id: hit.payload for hit in index.list(self._scope(customer_id))}
            plan = plan_supersession(fresh, others)
            now = datetime.now(UTC).isoformat()
            for old_id, by in plan.items():
                payload = fresh.get(old_id) or others.get(old_id)
                if payload is not None:
                    index.update(old_id, payload={**payload, "superseded_by": by, "superseded_at": now})
            return len(plan)

        marked = await self._run("write", customer_id, call)
        if marked:
            log.info("memory: %d superseded for customer %s", marked, customer_id)
        return marked

    async def forget(self, customer_id: str) -> int:
        def call() -> int:
            oss = self._backend()
            scope = self._scope(customer_id)
            ids = [hit.id for hit in oss.index.list(scope)]
            if ids:
                oss.memory.delete_all(user_id=customer_id)
            # whatever delete_all missed, with no deleted text left in the index; then Mem0's history rows
            ids = list(dict.fromkeys([*ids, *oss.index.forget_scope(scope)]))
            mem0_quirks.erase_history(oss.memory, ids, rewrite=True)
            return len(ids)

        count = await self._run("forget", customer_id, call)
        log.info("memory: forgot %d for customer %s", count, customer_id)
        return count

    async def forget_before(self, customer_id: str, cutoff: datetime) -> int:
        def call() -> int:
            oss = self._backend()
            ids = oss.index.forget_written_before(self._scope(customer_id), cutoff)
            mem0_quirks.erase_history(oss.memory, ids)
            return len(ids)

        count = await self._run("retention", customer_id, call)
        if count:
            log.info("memory: retention removed %d for customer %s", count, customer_id)
        return count

    async def move(
        self, from_customer: str, to_customer: str, *, handles: Collection[str] | None = None
    ) -> builtins.list[str]:
        """Give ``from_customer``'s memories from ``handles`` (all when None) to ``to_customer``.

        In place, atomically (``MemoryIndex.reassign``): the memory ids stay, so do text and provenance.
        Mem0's history rows are keyed by memory id and need nothing; Mem0 keeps no raw messages to move.
        """
        wanted = wanted_handles(handles)
        if from_customer == to_customer or (wanted is not None and not wanted):
            return []

        def call() -> builtins.list[str]:
            return self._backend().index.reassign(from_customer, to_customer, handles=wanted)

        ids = await self._run("move", from_customer, call)
        log.info("memory: moved %d from customer %s to customer %s", len(ids), from_customer, to_customer)
        return ids

    async def warm(self) -> None:
        """Open the index and load the embedder (and, with them, the language model of the keywords)."""

        def call() -> None:
            self._backend()
            self._embedder.load()

        await self._run("warm-up", "-", call)

    async def aclose(self) -> None:
        def call() -> None:
            with self._calls:
                self._closed = True  # no new call starts
                if not self._calls.wait_for(lambda: self._running == 0, timeout=CLOSE_WAIT):
                    log.warning("memory: %d calls still running at close", self._running)
            with self._lock:
                oss, self._oss = self._oss, None
            if oss is not None:
                oss.close()

        await asyncio.to_thread(call)


def written_within(signals: ScopeSignals, filters: MemoryFilter | None) -> ScopeSignals:
    """The rows of ``signals`` written within the filters' time window (all of them without one)."""
    if filters is None or (filters.since is None and filters.until is None):
        return signals
    keep = [i for i, written in enumerate(signals.written) if filters.admits_time(written)]
    written = signals.written
    return ScopeSignals(
        ids=[signals.ids[i] for i in keep],
        written=written.subset(keep) if isinstance(written, WrittenTimes) else [written[i] for i in keep],
        dense=signals.dense[keep],
        keyword=signals.keyword[keep],
        dated=None if signals.dated is None else signals.dated[keep],
    )
