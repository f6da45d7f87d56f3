"""Importing memories from a file, without an LLM: Threadline's own export, a hosted Mem0 export, or CSV.

``read_import(data, fmt=...)`` (``core.memory.import_formats``) reads the file into candidates (and refusals
of the rows it cannot use, by line or index); ``MemoryImporter.run`` writes them through
``MemoryStore.import_memory`` (the text as it is, never through extraction) and returns an ``ImportReport``
(imported, already present, refused with reasons). A file that is not one of the formats at all raises
``MalformedImport`` (nothing is written); a bad row never stops the rest.

- ``threadline``: ``threadline export`` (``threadline-export/1``). Its memories keep their provenance
  (channel, handle, category, who said it, whether the sender was vouched for); they go to the customer
  who holds the handles the export lists (``Customers.for_handles``: made when nobody does), or to the
  customer named on the command line. Its message and turn ids belong to the database it came from: they
  are kept as ``imported_message_ids`` / ``imported_turn_ids`` only, so they can never make the memory
  writer take a turn of this database for written (``MemoryStore.covers_turns``).
- ``mem0``: a hosted Mem0 export, a JSON list or ``{"results": [...]}`` of items with ``id``, ``memory``,
  ``user_id``, ``metadata``, ``created_at``. ``user_id`` names the customer (an id of ours, or an address:
  ``Customers.for_reference``) unless one is named on the command line.
- ``csv``: columns ``customer`` (an id or an address), ``memory``, optional ``category``, ``channel``,
  ``created_at``; a header row first.

Every imported memory carries ``imported_from`` (``<format>:<original id>``, or the format alone) and
``import_key`` (the original id, or a hash of the text), keeps its original ``created_at``, is redacted as
every memory write is (``core.agent.redaction``), and is a customer's statement nobody checked
(``STATEMENT_METADATA``). A memory without a known category gets one by the keyword rules
(``core.memory.categorize``).

Idempotent: the customer's memories are read once before the first write; a candidate whose key, original
id or text (after redaction) is already among them, or earlier in the file, is skipped as already present.
Hosted Mem0 queues its writes: an import run again before the platform has stored the first run's
memories may add them twice.

Framework-free, and free of the identity layer: which customer a memory goes to is asked of ``Customers``,
which the caller wires. Log lines carry counts only, never text or addresses.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.agent.redaction import redact
from core.memory.attribution import STATEMENT_METADATA
from core.memory.import_formats import (
    Candidate,
    Format,
    ImportFile,
    Refused,
    Rejected,
)
from core.messages import MemoryRecord
from core.ports import MemoryStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Match:
    """The customer a memory goes to (None: none yet, in a dry run), and the address that named it."""

    customer_id: str | None
    address: str | None = None


class Customers(Protocol):
    """Finds the customer of a memory. ``create=False`` (a dry run) makes nothing: ``Match(None)`` when the
    customer does not exist yet. ``Refused`` when there is no usable customer."""

    async def for_reference(self, reference: str, *, create: bool) -> Match:
        """The customer a customer id or an address names (an unknown address: a new customer)."""
        ...

    async def for_handles(self, handles: Sequence[str], *, create: bool) -> Match:
        """The customer holding the handles an export lists (one customer, made and linked if need be)."""
        ...


@dataclass(slots=True, kw_only=True)
class ImportReport:
    """What an import did (counts and reasons, never text)."""

    format: Format
    dry_run: bool = False
    imported: int = 0
    already_present: int = 0
    refused: list[Rejected] = field(default_factory=list)
    customers: set[str] = field(default_factory=set)

    @property
    def done(self) -> int:
        return self.imported + self.already_present + len(self.refused)

    def reasons(self) -> Counter[str]:
        return Counter(r.reason for r in self.refused)

    def summary(self) -> str:
        """``imported 3, already present 1, refused 1 (1 no memory text)``."""
        verb = "would import" if self.dry_run else "imported"
        line = f"{verb} {self.imported}, already present {self.already_present}, refused {len(self.refused)}"
        if self.refused:
            line += " (" + "; ".join(f"{n} {reason}" for reason, n in self.reasons().most_common()) + ")"
        if self.dry_run:
            line += "; dry run: nothing was written"
        return line

    def as_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "dry_run": self.dry_run,
            "imported": self.imported,
            "already_present": self.already_present,
            "refused": [{"where": r.where, "reason": r.reason} for r in self.refused],
            "customers": sorted(self.customers),
        }


# ----- writing ---------------------------------------------------------------------------------------


def text_key(text: str) -> str:
    """The key of a memory's text: the same words, whatever the spacing and case."""
    return "sha256:" + hashlib.sha256(" ".join(text.split()).lower().encode()).hexdigest()[:32]


@dataclass(slots=True)
class _Known:
    """What a customer already holds: import keys, memory ids, texts."""

    keys: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, records: Sequence[MemoryRecord]) -> _Known:
        known = cls()
        for record in records:
            known.keys.add(f"id:{record.id}")
            known.keys.add(text_key(record.text))
            for name in ("import_key", "imported_from"):
                value = record.metadata.get(name)
                if isinstance(value, str) and value:
                    known.keys.add(value)
        return known


class MemoryImporter:
    """Writes an ``ImportFile``'s candidates to ``memory``, each to the customer ``customers`` finds (or
    every one to ``customer`` when given). ``dry_run``: reads, decides and counts; writes nothing and
    makes no customer. ``progress(report, total)`` is called after each candidate."""

    def __init__(
        self,
        memory: MemoryStore,
        customers: Customers,
        *,
        customer: str | None = None,
        dry_run: bool = False,
        progress: Callable[[ImportReport, int], None] | None = None,
    ) -> None:
        self._memory = memory
        self._customers = customers
        self._customer = customer
        self._dry_run = dry_run
        self._progress = progress
        self._matches: dict[tuple[str, ...], Match | Refused] = {}
        self._known: dict[str, _Known] = {}

    async def run(self, source: ImportFile) -> ImportReport:
        report = ImportReport(format=source.format, dry_run=self._dry_run, refused=list(source.rejected))
        total = source.total
        for candidate in source.candidates:
            try:
                await self._one(source.format, candidate, report)
            except Refused as exc:
                report.refused.append(Rejected(where=candidate.where, reason=str(exc)))
            if self._progress is not None:
                self._progress(report, total)
        report.refused.sort(key=lambda r: _order(r.where))
        log.info(
            "memory import (%s%s): %d imported, %d already present, %d refused, %d customers",
            source.format,
            ", dry run" if self._dry_run else "",
            report.imported,
            report.already_present,
            len(report.refused),
            len(report.customers),
        )
        return report

    async def _match(self, candidate: Candidate) -> Match:
        """The candidate's customer, asked once per reference (or list of handles): a refusal too."""
        if self._customer is not None:
            return Match(customer_id=self._customer)
        create = not self._dry_run
        if candidate.handles:
            cache: tuple[str, ...] = ("handles", *candidate.handles)
        elif candidate.reference is not None:
            cache = ("reference", candidate.reference)
        else:
            raise Refused("no customer (name one with --customer)")
        if cache not in self._matches:
            try:
                if candidate.handles:
                    found = await self._customers.for_handles(candidate.handles, create=create)
                else:
                    found = await self._customers.for_reference(cache[1], create=create)
            except Refused as exc:
                self._matches[cache] = exc
            else:
                self._matches[cache] = found
        answer = self._matches[cache]
        if isinstance(answer, Refused):
            raise Refused(str(answer))
        return answer

    async def _known_of(self, customer_id: str | None, reference: str) -> _Known:
        slot = customer_id or f"new:{reference}"
        if slot not in self._known:
            records = await self._memory.list(customer_id) if customer_id is not None else []
            self._known[slot] = _Known.of(records)
        return self._known[slot]

    async def _one(self, fmt: Format, candidate: Candidate, report: ImportReport) -> None:
        match = await self._match(candidate)
        known = await self._known_of(match.customer_id, candidate.reference or ",".join(candidate.handles))
        text = redact(candidate.text).text
        keys = {text_key(text)}
        origin: str = fmt
        if candidate.original_id is not None:
            origin = f"{fmt}:{candidate.original_id}"
            keys |= {origin, f"id:{candidate.original_id}"}
        if keys & known.keys:
            report.already_present += 1
            return
        metadata = {
            **STATEMENT_METADATA,
            "sender_vouched": True,
            **candidate.metadata,
            "imported_from": origin,
            "import_key": origin if candidate.original_id is not None else text_key(text),
        }
        if match.address is not None:  # the address that named the customer is where it came from
            channel, _, _ = match.address.partition(":")
            if metadata.get("source_channel") in (None, channel):
                metadata["source_channel"] = channel
                metadata.setdefault("source_handle", match.address)
        if not self._dry_run:
            assert match.customer_id is not None  # made unless a dry run
            written = await self._memory.import_memory(
                match.customer_id, text, metadata=metadata, created_at=candidate.created_at
            )
            if written is not None:  # an older address imported after a newer one is history at once
                await self._memory.supersede(match.customer_id, [written])
        known.keys |= keys
        report.imported += 1
        if match.customer_id is not None:
            report.customers.add(match.customer_id)


def _order(where: str) -> tuple[str, int]:
    kind, _, number = where.partition(" ")
    return kind, int(number) if number.isdigit() else 0
