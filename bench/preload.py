"""Bulk-loading a data dir at scale without going through Mem0's ``add`` (which embeds every memory).

What is loaded has the shapes the product writes:

- ``customers`` / ``identities`` / ``identity_ledger`` rows as ``identity.resolver`` makes on first contact
  (a ``telegram:<id>`` handle, ``platform_attested``, method ``first_contact``);
- ``turns``: a customer line and a reply per remembered fact, so that recent-turn reads see real history;
- Mem0 memories in our SQLite vector store (``core/memory/vectors.py``, the file and collection
  ``core.memory.mem0_quirks`` gives Mem0), with the payload Mem0 writes for ``add(infer=False)`` plus our
  provenance: ``user_id``, ``data``, ``hash``, ``text_lemmatized`` (spaCy is off, so it equals the text),
  ``created_at`` / ``updated_at``, ``role``, ``source_channel``, ``source_handle``, ``message_ids``,
  ``turn_ids``, ``category``.

Vectors come from the real embedder (all-MiniLM-L6-v2, ``core.memory.embedder``), computed once for a
pool of distinct texts and reused, so that loading 100k memories does not take 100k embeddings. Every
load is bounded: counts are given, work is done in chunks.
"""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import insert

from bench.corpus import Corpus, reply_to
from core.memory.embedder import DIMS, shared_embedder
from core.memory.mem0_quirks import COLLECTION, mem0_dir
from core.memory.vectors import SQLiteVectorStore
from core.messages import MEMORY_CATEGORIES
from core.store.db import Database
from core.store.models import Customer, Identity, IdentityEvent, Turn

ROW_CHUNK = 500  # rows per INSERT statement (SQLite's bound-parameter limit)
VECTOR_CHUNK = 5_000  # memories per vector-store transaction
FIRST_TELEGRAM_ID = 700_000_000


@dataclass(frozen=True, slots=True)
class Loaded:
    customer_id: str
    address: str
    chat_id: int


def vector_path(data_dir: Path) -> Path:
    """The vector store file the product's ``LocalMemory`` opens for ``data_dir``."""
    return mem0_dir(data_dir) / "vectors.sqlite3"


def customer_ids(count: int, seed: int) -> list[Loaded]:
    """``count`` customers with Telegram handles; ids as ``identity.resolver.new_customer_id`` makes them."""
    rng = random.Random(seed)
    return [
        Loaded(
            customer_id=f"cus_{uuid.UUID(int=rng.getrandbits(128)).hex}",
            address=f"telegram:{FIRST_TELEGRAM_ID + i}",
            chat_id=FIRST_TELEGRAM_ID + i,
        )
        for i in range(count)
    ]


async def _insert_rows(db: Database, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    for start in range(0, len(rows), ROW_CHUNK):
        async with db.session() as session:
            await session.execute(insert(table), list(rows[start : start + ROW_CHUNK]))


async def add_customers(db: Database, customers: Sequence[Loaded]) -> None:
    """Customers, their Telegram identities and the ledger's ``create`` entries, as first contact does."""
    now = datetime.now(UTC)
    await _insert_rows(db, Customer, [{"id": c.customer_id, "created_at": now} for c in customers])
    await _insert_rows(
        db,
        Identity,
        [
            {
                "address": c.address,
                "channel": "telegram",
                "customer_id": c.customer_id,
                "assurance": "platform_attested",
                "method": "first_contact",
                "created_at": now,
            }
            for c in customers
        ],
    )
    await _insert_rows(
        db,
        IdentityEvent,
        [
            {
                "at": now,
                "kind": "create",
                "actor": "system",
                "address": c.address,
                "customer_id": c.customer_id,
                "assurance": "platform_attested",
                "method": "first_contact",
                "addresses": {},
            }
            for c in customers
        ],
    )


async def add_turns(db: Database, customers: Sequence[Loaded], per_customer: int, corpus: Corpus) -> int:
    """``per_customer`` exchanges (a customer line and a reply) per customer; returns the rows written."""
    start = datetime.now(UTC) - timedelta(days=30)
    rows: list[dict[str, Any]] = []
    for c in customers:
        for i in range(per_customer):
            said = corpus.message()
            when = start + timedelta(minutes=i)
            rows.append(_turn(c, "customer", said, when))
            rows.append(_turn(c, "assistant", reply_to(said), when + timedelta(seconds=2)))
    await _insert_rows(db, Turn, rows)
    return len(rows)


def _turn(c: Loaded, role: str, text: str, when: datetime) -> dict[str, Any]:
    return {
        "customer_id": c.customer_id,
        "channel": "telegram",
        "address": c.address,
        "role": role,
        "text": text,
        "inbox_id": None,
        "created_at": when,
    }


def embed_pool(texts: Sequence[str]) -> NDArray[np.float32]:
    """The real embedder's vectors for ``texts`` (one row each)."""
    return shared_embedder().embed(list(texts))


def memory_payload(c: Loaded, text: str, when: datetime, turn: int, rng: random.Random) -> dict[str, Any]:
    """A memory row's payload as the product writes it (a random category; the turn as its provenance)."""
    stamp = when.isoformat()
    return {
        "source_channel": "telegram",
        "source_handle": c.address,
        "message_ids": [f"inbox:{turn}"],
        "turn_ids": [turn],
        "category": rng.choice(MEMORY_CATEGORIES),
        "user_id": c.customer_id,
        "role": "user",
        "data": text,
        "hash": hashlib.md5(text.encode(), usedforsecurity=False).hexdigest(),
        "created_at": stamp,
        "updated_at": stamp,
        "text_lemmatized": text,
    }


def add_memories(
    data_dir: Path,
    customers: Sequence[Loaded],
    per_customer: int,
    texts: Sequence[str],
    vectors: NDArray[np.float32],
    *,
    seed: int,
    first_turn: int = 1,
) -> int:
    """``per_customer`` memories for each customer, drawn from the pool; returns how many were written."""
    if len(texts) != len(vectors) or not texts:
        raise ValueError("the text pool and its vectors differ in length, or are empty")
    rng = random.Random(seed)
    store = SQLiteVectorStore(vector_path(data_dir), collection_name=COLLECTION, embedding_model_dims=DIMS)
    now = datetime.now(UTC)
    written = 0
    turn = first_turn
    try:
        batch_vectors: list[NDArray[np.float32]] = []
        batch_payloads: list[dict[str, Any]] = []
        for c in customers:
            for _ in range(per_customer):
                pick = rng.randrange(len(texts))
                when = now - timedelta(minutes=rng.randint(1, 525_600))
                batch_vectors.append(vectors[pick])
                batch_payloads.append(memory_payload(c, texts[pick], when, turn, rng))
                turn += 1
                if len(batch_vectors) >= VECTOR_CHUNK:
                    store.insert(batch_vectors, payloads=batch_payloads)
                    written += len(batch_vectors)
                    batch_vectors, batch_payloads = [], []
        if batch_vectors:
            store.insert(batch_vectors, payloads=batch_payloads)
            written += len(batch_vectors)
        store.compact()
    finally:
        store.close()
    return written


def timed(label: str, started: float) -> float:
    """Print how long a step took; returns the seconds."""
    seconds = time.perf_counter() - started
    print(f"  {label}: {seconds:.1f} s", flush=True)
    return seconds
