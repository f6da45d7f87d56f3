"""Shared helpers of the memory tests: provenance values and byte-level greps of a data dir."""

from __future__ import annotations

from pathlib import Path

from core.messages import MemoryCategory, Provenance


def provenance(
    *, turn_ids: tuple[int, ...] = (1,), channel: str = "sms", category: MemoryCategory = "support_history"
) -> Provenance:
    return Provenance(
        channel=channel,
        handle=f"{channel}:+15550001111",
        message_ids=tuple(f"inbox:{t}" for t in turn_ids),
        category=category,
        turn_ids=turn_ids,
    )


def files_containing(root: Path, needle: str) -> list[Path]:
    """Every file under ``root`` whose raw bytes contain ``needle`` (any case)."""
    wanted = needle.encode().lower()
    return [p for p in root.rglob("*") if p.is_file() and wanted in p.read_bytes().lower()]
