"""Importing memories from a file, without an LLM: Threadline's own export, a hosted Mem0 export, or CSV.

``read_import(data, fmt=...)`` reads the file into candidates (and refusals of the rows it cannot use, by
line or index); ``MemoryImporter.run`` writes them through ``MemoryStore.import_memory`` (the text as it
is, never through extraction) and returns an ``ImportReport`` (imported, already present, refused with
reasons). A file that is not one of the formats at all raises ``MalformedImport`` (nothing is written);
a bad row never stops the rest.

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

import csv
import hashlib
import io
import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal, Protocol

from core.agent.redaction import redact
from core.errors import ThreadlineError
from core.memory.attribution import STATEMENT_METADATA
from core.memory.categorize import categorize
from core.memory.records import PAYLOAD_KEYS
from core.messages import MEMORY_CATEGORIES, MemoryFilter, MemoryRecord
from core.ports import MemoryStore

log = logging.getLogger(__name__)

Format = Literal["threadline", "mem0", "csv"]
FORMATS: tuple[str, ...] = ("auto", "threadline", "mem0", "csv")
EXPORT_FORMAT = "threadline-export/1"

# metadata of the source that is ours to set, or that names rows of the database it came from
_OURS = frozenset({"imported_from", "import_key", "message_ids", "turn_ids", "moved_from"})
_MAX_KEY = 64


class MalformedImport(ThreadlineError, ValueError):
    """The file is not one of the import formats (or not readable as it says it is): nothing imported."""


class Refused(ThreadlineError):
    """One candidate cannot be imported; the message says why (never its text)."""


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """One memory read from the file, not yet written."""

    where: str  # "line 4", "memory 2": how the report names it
    text: str = field(repr=False)
    metadata: dict[str, Any] = field(repr=False)
    created_at: datetime | None
    original_id: str | None
    reference: str | None = None  # a customer id or an address (mem0 user_id, csv customer)
    handles: tuple[str, ...] = ()  # threadline: the export's handles


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected:
    where: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportFile:
    format: Format
    candidates: list[Candidate]
    rejected: list[Rejected]

    @property
    def total(self) -> int:
        return len(self.candidates) + len(self.rejected)


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


# ----- reading the file ------------------------------------------------------------------------------


def read_import(data: bytes, fmt: str = "auto", *, name: str = "") -> ImportFile:
    """The candidates of ``data`` in format ``fmt`` (``auto``: by the file's name and content).
    ``MalformedImport`` when it is not that format at all."""
    if fmt not in FORMATS:
        raise MalformedImport(f"unknown format {fmt[:20]!r}: use one of {', '.join(FORMATS)}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise MalformedImport("the file is not UTF-8 text") from None
    if fmt == "csv" or (fmt == "auto" and name.lower().endswith(".csv")):
        return _read_csv(text)
    try:
        document = json.loads(text)
    except ValueError as exc:
        if fmt == "auto" and not text.lstrip().startswith(("{", "[")):
            return _read_csv(text)
        raise MalformedImport(f"the file is not valid JSON (line {getattr(exc, 'lineno', '?')})") from None
    if fmt == "threadline" or (fmt == "auto" and isinstance(document, dict) and "format" in document):
        return _read_threadline(document)
    if fmt in ("mem0", "auto"):
        return _read_mem0(document)
    raise MalformedImport(f"the file is JSON, not {fmt}")


def _moment(value: Any) -> datetime | None:
    """An ISO date-time (or date); ``Refused`` when present and unreadable. Naive: UTC."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise Refused("created_at is not an ISO date-time")
    value = value.strip()
    try:
        moment = (
            datetime.combine(date.fromisoformat(value), datetime.min.time())
            if len(value) == 10
            else datetime.fromisoformat(value)
        )
    except ValueError:
        raise Refused("created_at is not an ISO date-time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Refused("no memory text")
    return value.strip()


def _kept_metadata(value: Any) -> dict[str, Any]:
    """The source's own metadata, without what is the store's or ours to set, and JSON values only."""
    if not isinstance(value, Mapping):
        return {}
    kept: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key or len(key) > _MAX_KEY or key in PAYLOAD_KEYS or key in _OURS:
            continue
        try:
            json.dumps(item)
        except (TypeError, ValueError):
            continue
        kept[key] = item
    return kept


def _category(value: Any, text: str) -> str:
    return value if isinstance(value, str) and value in MEMORY_CATEGORIES else categorize(text)


def _channel(value: Any) -> str | None:
    """A channel name as ``MemoryFilter`` accepts it; ``Refused`` for one that is malformed."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise Refused("channel is not a channel name")
    try:
        return MemoryFilter(channel=value.strip().lower()).channel
    except ValueError:
        raise Refused("channel is not a channel name") from None


def _original_id(value: Any) -> str | None:
    if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
        return str(value).strip()[:200]
    return None


def _read_threadline(document: Any) -> ImportFile:
    if not isinstance(document, dict) or document.get("format") != EXPORT_FORMAT:
        found = document.get("format") if isinstance(document, dict) else None
        shown = f" ({str(found)[:40]!r})" if found else ""
        raise MalformedImport(f"not a Threadline export: the format must be {EXPORT_FORMAT}{shown}")
    identities = document.get("identities", [])
    memories = document.get("memories")
    if not isinstance(memories, list) or not isinstance(identities, list):
        raise MalformedImport("not a Threadline export: memories and identities must be lists")
    handles = tuple(
        str(i["address"]) for i in identities if isinstance(i, dict) and isinstance(i.get("address"), str)
    )
    candidates: list[Candidate] = []
    rejected: list[Rejected] = []
    for index, item in enumerate(memories, start=1):
        where = f"memory {index}"
        try:
            if not isinstance(item, dict):
                raise Refused("not a memory object")
            text = _text(item.get("text"))
            source = item.get("metadata")
            metadata = _kept_metadata(source)
            channel = _channel(item.get("channel") or metadata.get("source_channel"))
            if channel is not None:
                metadata["source_channel"] = channel
            if isinstance(item.get("handle"), str) and item["handle"]:
                metadata["source_handle"] = item["handle"]
            metadata["category"] = _category(item.get("category") or metadata.get("category"), text)
            for name in ("message_ids", "turn_ids"):
                ids = item.get(name) or (source.get(name) if isinstance(source, dict) else None)
                if isinstance(ids, list) and ids:
                    metadata[f"imported_{name}"] = [i for i in ids if isinstance(i, str | int)]
            candidates.append(
                Candidate(
                    where=where,
                    text=text,
                    metadata=metadata,
                    created_at=_moment(item.get("created_at")),
                    original_id=_original_id(item.get("id")),
                    handles=handles,
                )
            )
        except Refused as exc:
            rejected.append(Rejected(where=where, reason=str(exc)))
    return ImportFile(format="threadline", candidates=candidates, rejected=rejected)


def _read_mem0(document: Any) -> ImportFile:
    items = document.get("results") if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise MalformedImport('not a Mem0 export: expected a JSON list of memories or {"results": [...]}')
    candidates: list[Candidate] = []
    rejected: list[Rejected] = []
    for index, item in enumerate(items, start=1):
        where = f"memory {index}"
        try:
            if not isinstance(item, dict):
                raise Refused("not a memory object")
            text = _text(item.get("memory"))
            metadata = _kept_metadata(item.get("metadata"))
            channel = _channel(metadata.get("source_channel"))
            if channel is not None:
                metadata["source_channel"] = channel
            metadata["category"] = _category(metadata.get("category"), text)
            user = item.get("user_id")
            candidates.append(
                Candidate(
                    where=where,
                    text=text,
                    metadata=metadata,
                    created_at=_moment(item.get("created_at")),
                    original_id=_original_id(item.get("id")),
                    reference=str(user).strip()
                    if isinstance(user, str | int) and str(user).strip()
                    else None,
                )
            )
        except Refused as exc:
            rejected.append(Rejected(where=where, reason=str(exc)))
    return ImportFile(format="mem0", candidates=candidates, rejected=rejected)


def _read_csv(text: str) -> ImportFile:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        columns = {c.strip().lower() for c in reader.fieldnames or [] if c}
    except csv.Error as exc:
        raise MalformedImport(f"the file is not CSV ({exc})") from None
    if "memory" not in columns:
        raise MalformedImport("not a CSV of memories: the header row needs a memory column (and customer)")
    candidates: list[Candidate] = []
    rejected: list[Rejected] = []
    try:
        for row in reader:
            where = f"line {reader.line_num}"
            cells = {
                str(k).strip().lower(): v.strip() if isinstance(v, str) else ""
                for k, v in row.items()
                if k is not None
            }
            if not any(cells.values()):
                continue  # a blank line
            try:
                memory = _text(cells.get("memory"))
                category = cells.get("category") or None
                if category is not None and category not in MEMORY_CATEGORIES:
                    raise Refused("unknown category")
                metadata: dict[str, Any] = {"category": category or categorize(memory)}
                channel = _channel(cells.get("channel"))
                if channel is not None:
                    metadata["source_channel"] = channel
                candidates.append(
                    Candidate(
                        where=where,
                        text=memory,
                        metadata=metadata,
                        created_at=_moment(cells.get("created_at")),
                        original_id=None,
                        reference=cells.get("customer") or None,
                    )
                )
            except Refused as exc:
                rejected.append(Rejected(where=where, reason=str(exc)))
    except csv.Error as exc:
        raise MalformedImport(f"the CSV cannot be read at line {reader.line_num} ({exc})") from None
    return ImportFile(format="csv", candidates=candidates, rejected=rejected)


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
