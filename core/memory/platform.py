"""``PlatformMemory``: the ``MemoryStore`` port over hosted Mem0 (``mem0.AsyncMemoryClient``).

The client's constructor pings ``/v1/ping/`` with blocking ``requests``, so it is built on first use in a
worker thread, bounded by the timeout. Hosted Mem0 queues ``add`` calls (the answer carries an
``event_id``, not memory ids), so ``remember`` returns the ids only when the server answers with them.

Semantics follow ``LocalMemory``: metadata carries the provenance; ``infer=True`` lets the platform
extract facts and falls back to the user's own lines (``infer=False``) when that call fails; every
result is checked to belong to the customer asked about. ``covers_turns`` lists the customer's
memories (filtered server-side by ``user_id``) and looks at their ``turn_ids`` metadata here, because
the platform's metadata filters match scalar values and ``turn_ids`` is a list. ``move`` copies and
deletes, because the platform cannot change a memory's user.

A ``MemoryFilter`` on ``recall`` goes to the server (its v2 filters: ``metadata`` equalities and a
``created_at`` range, so the limit applies after them) and is checked again on the answer; ``list`` reads
every page and filters here. ``import_memory`` adds as it is (``infer=False``) with the original time as the
add's ``timestamp``.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import SecretStr

from core.errors import MemoryUnavailable
from core.memory import mem0_quirks
from core.memory.hosted_priors import with_priors
from core.memory.records import (
    as_mem0_messages,
    belongs_to,
    newest_first,
    results_of,
    to_record,
    wanted_handles,
)
from core.messages import ChatMessage, MemoryFilter, MemoryRecord, Provenance

log = logging.getLogger(__name__)

T = TypeVar("T")
PAGE_SIZE = 100
_MAX_PAGES = 1000
MOVED_FROM = "moved_from"  # metadata of a moved memory's copy: the id of its original


def is_not_found(exc: BaseException) -> bool:
    """True for the hosted client's answer to a memory that does not exist (HTTP 404)."""
    from mem0.exceptions import MemoryNotFoundError

    return isinstance(exc, MemoryNotFoundError)


def new_platform_client(*, data_dir: Path, api_key: str, host: str, timeout: float) -> Any:
    """``mem0.AsyncMemoryClient`` with our HTTP timeout. Blocking (its constructor pings): run in a thread."""
    import httpx

    mem0 = mem0_quirks.import_mem0(data_dir)
    # an unused AsyncClient holds no connection: if the constructor's ping fails there is nothing to close
    return mem0.AsyncMemoryClient(api_key=api_key, host=host, client=httpx.AsyncClient(timeout=timeout))


def search_filters(customer_id: str, filters: MemoryFilter | None) -> dict[str, Any]:
    """The platform's search filters: the customer, and the filter's conditions (v2 filter language)."""
    if filters is None or filters.empty:
        return {"user_id": customer_id}
    conditions: builtins.list[dict[str, Any]] = [{"user_id": customer_id}]
    if wanted := filters.metadata():
        conditions.append({"metadata": wanted})
    window: dict[str, str] = {}
    if filters.since is not None:
        window["gte"] = filters.since.isoformat()
    if filters.until is not None:
        window["lt"] = filters.until.isoformat()
    if window:
        conditions.append({"created_at": window})
    return {"AND": conditions}


class PlatformMemory:
    """Hosted Mem0 at ``host`` with ``api_key``; ``data_dir`` only holds mem0's own ``config.json``."""

    def __init__(self, *, api_key: SecretStr, host: str, data_dir: Path, timeout: float = 30.0) -> None:
        self._api_key = api_key
        self._host = host
        self._data_dir = data_dir
        self._timeout = timeout
        self._client: Any = None
        self._init_lock = asyncio.Lock()
        self._closed = False
        self.move_waits: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)  # seconds, before each look

    def __repr__(self) -> str:
        return f"PlatformMemory(host={self._host!r})"

    # ----- plumbing ----------------------------------------------------------------------------

    async def _connected(self) -> Any:
        async with self._init_lock:
            if self._closed:
                raise MemoryUnavailable("the memory store is closed")
            if self._client is None:
                build = asyncio.to_thread(
                    new_platform_client,
                    data_dir=self._data_dir,
                    api_key=self._api_key.get_secret_value(),
                    host=self._host,
                    timeout=self._timeout,
                )
                self._client = await asyncio.wait_for(build, timeout=self._timeout)
            return self._client

    async def _run(self, what: str, customer_id: str, call: Callable[[Any], Awaitable[T]]) -> T:
        try:
            return await call(await self._connected())
        except MemoryUnavailable:
            raise
        except Exception as exc:
            log.warning("hosted memory %s failed for customer %s: %s", what, customer_id, type(exc).__name__)
            raise MemoryUnavailable(f"hosted memory {what} failed ({type(exc).__name__})") from exc

    async def _all_items(self, client: Any, customer_id: str) -> builtins.list[dict[str, Any]]:
        items: builtins.list[dict[str, Any]] = []
        for page in range(1, _MAX_PAGES + 1):
            answer = await client.get_all(filters={"user_id": customer_id}, page=page, page_size=PAGE_SIZE)
            batch = [dict(item) for item in results_of(answer) if belongs_to(item, customer_id)]
            items.extend(batch)
            more = answer.get("next") if isinstance(answer, dict) else None
            if not more or not batch:
                break
        return items

    # ----- the port ----------------------------------------------------------------------------

    async def recall(
        self, customer_id: str, query: str, *, limit: int, filters: MemoryFilter | None = None
    ) -> builtins.list[MemoryRecord]:
        """The platform's search; ``filters`` go to the server (its v2 filters: ``metadata`` equalities and
        a ``created_at`` range, so the limit applies after them) and are checked again here."""
        if not query.strip() or limit <= 0:
            return []

        async def call(client: Any) -> builtins.list[MemoryRecord]:
            found = await client.search(query, filters=search_filters(customer_id, filters), top_k=limit)
            records = [to_record(item) for item in results_of(found) if belongs_to(item, customer_id)]
            admitted = [r for r in records if filters is None or filters.admits(r)]
            return with_priors(admitted, query)[:limit]  # recency and the time prior, as recall here

        return await self._run("recall", customer_id, call)

    async def remember(
        self,
        customer_id: str,
        messages: builtins.list[ChatMessage],
        *,
        provenance: Provenance,
        infer: bool,
    ) -> builtins.list[str]:
        metadata = provenance.as_metadata()

        async def add(
            client: Any, payload: builtins.list[dict[str, str]], inferred: bool
        ) -> builtins.list[str]:
            if not payload:
                return []
            answer = await client.add(payload, user_id=customer_id, metadata=metadata, infer=inferred)
            return [str(i["id"]) for i in results_of(answer) if "id" in i and i.get("event", "ADD") == "ADD"]

        if infer:
            try:
                client = await self._connected()
                ids = await add(client, as_mem0_messages(messages), True)
            except MemoryUnavailable:
                raise
            except Exception as exc:
                log.warning(
                    "hosted memory extraction failed for customer %s (%s); storing the turn as it is",
                    customer_id,
                    type(exc).__name__,
                )
            else:
                log.info("hosted memory: %d added (or queued) for customer %s", len(ids), customer_id)
                return ids
        said = as_mem0_messages(messages, user_only=True)
        ids = await self._run("write", customer_id, lambda client: add(client, said, False))
        log.info("hosted memory: %d stored as is for customer %s", len(ids), customer_id)
        return ids

    async def list(
        self, customer_id: str, *, filters: MemoryFilter | None = None
    ) -> builtins.list[MemoryRecord]:
        """Every memory of the customer (read page by page), newest first; ``filters`` are applied here."""

        async def call(client: Any) -> builtins.list[MemoryRecord]:
            records = [to_record(item) for item in await self._all_items(client, customer_id)]
            return newest_first([r for r in records if filters is None or filters.admits(r)])

        return await self._run("list", customer_id, call)

    async def import_memory(
        self, customer_id: str, text: str, *, metadata: dict[str, Any], created_at: datetime | None
    ) -> str | None:
        """Add ``text`` as it is (``infer=False``) with its original time (the add's ``timestamp``); the
        platform queues adds, so the id is returned only when the server gives it."""
        options: dict[str, Any] = {}
        if created_at is not None:
            options["timestamp"] = int(created_at.timestamp())

        async def call(client: Any) -> str | None:
            answer = await client.add(
                [{"role": "user", "content": text}],
                user_id=customer_id,
                metadata=dict(metadata),
                infer=False,
                **options,
            )
            ids = [str(item["id"]) for item in results_of(answer) if "id" in item]
            return ids[0] if ids else None

        return await self._run("import", customer_id, call)

    async def covers_turns(self, customer_id: str, turn_ids: builtins.list[int]) -> bool:
        wanted = set(turn_ids)
        if not wanted:
            return False

        async def call(client: Any) -> bool:
            items = await self._all_items(client, customer_id)
            return any(wanted.intersection(to_record(item).turn_ids) for item in items)

        return await self._run("lookup", customer_id, call)

    async def supersede(self, customer_id: str, memory_ids: builtins.list[str]) -> int:
        """Not done for hosted Mem0: its own extraction updates and deletes facts (``infer=True``), and
        marking ours would cost a read of every memory of the customer per write. Returns 0."""
        return 0

    async def forget(self, customer_id: str) -> int:
        async def call(client: Any) -> int:
            count = len(await self._all_items(client, customer_id))
            await client.delete_all(user_id=customer_id)
            return count

        count = await self._run("forget", customer_id, call)
        log.info("hosted memory: forgot %d for customer %s", count, customer_id)
        return count

    async def forget_before(self, customer_id: str, cutoff: datetime) -> int:
        async def call(client: Any) -> int:
            old = [
                str(item["id"])
                for item in await self._all_items(client, customer_id)
                if "id" in item and (written := to_record(item).created_at) is not None and written < cutoff
            ]
            for memory_id in old:
                await self._delete(client, memory_id)
            return len(old)

        count = await self._run("retention", customer_id, call)
        if count:
            log.info("hosted memory: retention removed %d for customer %s", count, customer_id)
        return count

    async def move(
        self, from_customer: str, to_customer: str, *, handles: Collection[str] | None = None
    ) -> builtins.list[str]:
        """Give ``from_customer``'s memories from ``handles`` (all when None) to ``to_customer``.

        Hosted Mem0 cannot change a memory's user: each one is added again under ``to_customer`` (same
        text, same metadata plus ``moved_from`` = the original id, its creation time, ``infer=False``)
        and the original is deleted once its copy is visible, so nothing is ever lost. Adds are queued by
        the platform: copies are awaited for a while (``move_waits``); an original whose copy has not
        appeared yet stays where it is and a re-run finishes it. A re-run skips originals that already
        have a copy and drops duplicate copies. Returns the ids of the copies whose original is gone.
        """
        wanted = wanted_handles(handles)
        if from_customer == to_customer or (wanted is not None and not wanted):
            return []

        async def call(client: Any) -> builtins.list[str]:
            originals = [
                item
                for item in await self._all_items(client, from_customer)
                if wanted is None or to_record(item).handle in wanted
            ]
            if not originals:
                return []
            copies = await self._copies(client, to_customer)
            missing = [item for item in originals if str(item.get("id")) not in copies]
            for item in missing:
                await self._add_copy(client, item, to_customer)
            if missing:
                copies = await self._await_copies(client, to_customer, {str(i.get("id")) for i in missing})
            moved: builtins.list[str] = []
            for item in originals:
                copy_id = copies.get(str(item.get("id")))
                if copy_id is None:
                    continue
                await self._delete(client, str(item.get("id")))
                moved.append(copy_id)
            return moved

        ids = await self._run("move", from_customer, call)
        log.info(
            "hosted memory: moved %d from customer %s to customer %s", len(ids), from_customer, to_customer
        )
        return ids

    async def _copies(self, client: Any, customer_id: str) -> dict[str, str]:
        """``moved_from`` -> copy id among the customer's memories; a duplicate copy is deleted."""
        copies: dict[str, str] = {}
        for item in await self._all_items(client, customer_id):
            origin = to_record(item).metadata.get(MOVED_FROM)
            if not isinstance(origin, str) or not origin:
                continue
            if origin in copies:
                await self._delete(client, str(item.get("id")))
            else:
                copies[origin] = str(item.get("id"))
        return copies

    async def _await_copies(self, client: Any, customer_id: str, originals: set[str]) -> dict[str, str]:
        copies: dict[str, str] = {}
        for delay in self.move_waits:
            await asyncio.sleep(delay)
            copies = await self._copies(client, customer_id)
            if originals.issubset(copies):
                break
        else:
            log.warning(
                "hosted memory: %d moved copies for customer %s not visible yet; their originals stay",
                len(originals.difference(copies)),
                customer_id,
            )
        return copies

    async def _add_copy(self, client: Any, item: Mapping[str, Any], customer_id: str) -> None:
        record = to_record(item)
        options: dict[str, Any] = {}
        if record.created_at is not None:
            options["timestamp"] = int(record.created_at.timestamp())
        await client.add(
            [{"role": "user", "content": record.text}],
            user_id=customer_id,
            metadata={**record.metadata, MOVED_FROM: record.id},
            infer=False,
            **options,
        )

    @staticmethod
    async def _delete(client: Any, memory_id: str) -> None:
        try:
            await client.delete(memory_id)
        except Exception as exc:
            if not is_not_found(exc):  # already gone (an earlier, interrupted run)
                raise

    async def warm(self) -> None:
        """Nothing to load: the service holds the memories and the models."""

    async def aclose(self) -> None:
        async with self._init_lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            await client.async_client.aclose()
