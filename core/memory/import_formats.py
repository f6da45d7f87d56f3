"""Reading an import file into candidate memories: Threadline's own export, a hosted Mem0 export, or CSV.

``read_import(data, fmt=...)`` reads the file (``fmt`` ``auto`` tells the formats apart) into an
``ImportFile``: the ``Candidate`` memories and the ``Rejected`` rows it cannot use (by line or index, with
the reason, never the text). A file that is not one of the formats at all raises ``MalformedImport``.
What each format holds and how it maps to a memory is in ``core.memory.importer``'s docstring; writing
the candidates is ``core.memory.importer.MemoryImporter``'s.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

from core.errors import ThreadlineError
from core.memory.categorize import categorize
from core.memory.records import PAYLOAD_KEYS
from core.messages import MEMORY_CATEGORIES, MemoryFilter

Format = Literal["threadline", "mem0", "csv"]
FORMATS: tuple[str, ...] = ("auto", "threadline", "mem0", "csv")
EXPORT_FORMAT = "threadline-export/1"

# metadata of the source that is ours to set, or that names rows of the database it came from
_OURS = frozenset({"imported_from", "import_key", "message_ids", "turn_ids", "moved_from"})
_MAX_KEY = 64


class Refused(ThreadlineError):
    """One candidate cannot be imported; the message says why (never its text)."""


class MalformedImport(ThreadlineError, ValueError):
    """The file is not one of the import formats (or not readable as it says it is): nothing imported."""


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
