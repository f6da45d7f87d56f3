"""The ``threadline`` command: serve the hub, chat with it from a terminal, look at memory and customers,
change identities (link, unlink, merge, unmerge: each recorded in the identity ledger).

``serve`` logs through ``core.logs.setup_logging``: uvicorn's access log shows no query string.
``export --out FILE`` writes a file of mode 0600 (everything held about a person is in it).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from channels.console import ConsoleChannel
from core.app import build_hub, create_app
from core.errors import ConfigError, IdentityError, InvalidAddress, NotFound, ThreadlineError
from core.logs import setup_logging
from core.memory import build_memory
from core.messages import OutboundMessage
from core.ports import MemoryRecord, MemoryStore
from core.private_files import write_private
from core.retention import Retention
from core.settings import Settings
from core.store.db import Database
from identity.admin import LedgerEntryOut, actor_name, detail_out, page_out, suggestions_out
from identity.directory import (
    CustomerDetail,
    MergeSuggestion,
    customer_of,
    ledger_entries,
    list_customers,
    merge_suggestions,
    show_customer,
)
from identity.erasure import export
from identity.erasure import forget as erase
from identity.linking import Change, IdentityLinks
from identity.normalize import normalize_address
from identity.resolver import DatabaseResolver

app = typer.Typer(help="Threadline: one customer, one memory, on every channel.", no_args_is_help=True)
memory_app = typer.Typer(help="Look at a customer's memory.", no_args_is_help=True)
app.add_typer(memory_app, name="memory")
setup_app = typer.Typer(help="Point a platform at this hub.", no_args_is_help=True)
app.add_typer(setup_app, name="setup")
customers_app = typer.Typer(
    help="Find customers and see one whole: handles, conversation, memories.", no_args_is_help=True
)
app.add_typer(customers_app, name="customers")
identity_app = typer.Typer(
    help="Link, unlink, merge and unmerge handles; every change goes into the identity ledger.",
    no_args_is_help=True,
)
app.add_typer(identity_app, name="identity")

T = TypeVar("T")


def _settings() -> Settings:
    try:
        settings = Settings()
        settings.check()
    except ConfigError as exc:
        typer.echo(f"threadline: configuration error: {exc}", err=True)
        raise typer.Exit(2) from exc
    return settings


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Run the web app and the worker in one process (the embedded default needs no configuration)."""
    import uvicorn

    settings = _settings()
    setup_logging(settings.log_level)
    try:
        web = create_app(settings)
    except ConfigError as exc:
        typer.echo(f"threadline: configuration error: {exc}", err=True)
        raise typer.Exit(2) from exc
    uvicorn.run(web, host=host, port=port, log_config=None, proxy_headers=True)


@app.command()
def chat(
    as_: Annotated[str, typer.Option("--as", help="Who you are, as channel:handle (e.g. telegram:42).")],
) -> None:
    """Talk to the hub as a customer, through the same pipeline as a real channel.

    Reads lines from standard input until end of input, so it can be scripted:
    ``printf 'hello\\n' | threadline chat --as telegram:42``.
    """
    settings = _settings()
    setup_logging("WARNING" if settings.log_level.upper() == "INFO" else settings.log_level)
    try:
        sender = normalize_address(as_, default_region=settings.default_region)
    except InvalidAddress as exc:
        typer.echo(f"threadline: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        asyncio.run(_chat(settings, str(sender)))
    except ConfigError as exc:
        typer.echo(f"threadline: configuration error: {exc}", err=True)
        raise typer.Exit(2) from exc


async def _chat(settings: Settings, sender_text: str) -> None:
    from core.messages import Address

    sender = Address.parse(sender_text)
    interactive = sys.stdin.isatty()

    async def show(reply: OutboundMessage) -> None:
        prefix = "bot> " if interactive else ""
        typer.echo(f"{prefix}{reply.text}")

    console = ConsoleChannel(show)
    hub = await build_hub(settings, senders={"console": console})
    await hub.start()
    try:
        # replies still owed from an earlier session (killed mid-answer) arrive first
        await hub.wait_idle(timeout=120)
        while True:
            if interactive:
                typer.echo("you> ", nl=False)
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                break
            text = line.strip()
            if not text:
                continue
            accepted = await hub.accept(console.message(sender, text))
            if not accepted.duplicate:
                await _await_reply(console, f"reply:{accepted.inbox_id}")
        await hub.memory_writer.flush_summaries()
        left = await hub.wait_idle(timeout=120)
        if any(left.values()):
            typer.echo(f"threadline: still pending at exit: {left}", err=True)
    finally:
        await hub.stop()


async def _await_reply(console: ConsoleChannel, key: str) -> None:
    while True:
        delivered = await console.delivered.get()
        if delivered.idempotency_key == key:
            return


def _print_records(records: list[MemoryRecord], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([r.as_json() for r in records], indent=2))
        return
    if not records:
        typer.echo("no memories")
        return
    for r in records:
        when = r.created_at.strftime("%Y-%m-%d %H:%M") if r.created_at else "?"
        score = f" score={r.score:.3f}" if r.score is not None else ""
        typer.echo(
            f"{r.id}  {when}  [{r.category or '-'}] via {r.channel or '?'} from {r.handle or '?'}{score}"
        )
        typer.echo(f"    messages: {', '.join(r.message_ids) or '-'}")
        typer.echo(f"    {r.text}")


async def _customer_of(settings: Settings, db: Database, who: str) -> str | None:
    if who.startswith("cus_"):
        return who
    address = normalize_address(who, default_region=settings.default_region)
    found = await DatabaseResolver(db).lookup(address)
    return found.customer_id if found else None


async def _memory_command(who: str, query: str | None, as_json: bool, limit: int) -> int:
    settings = _settings()
    db = await Database.open(settings.resolved_database_url, busy_timeout=settings.database_busy_timeout)
    memory = build_memory(settings)
    try:
        customer_id = await _customer_of(settings, db, who)
        if customer_id is None:
            typer.echo(f"threadline: no customer has the address {who}", err=True)
            return 1
        if query is None:
            records = await memory.list(customer_id)
        else:
            records = await memory.recall(customer_id, query, limit=limit)
        if not as_json:
            typer.echo(f"customer {customer_id}")
        _print_records(records, as_json)
        return 0
    finally:
        await memory.aclose()
        await db.aclose()


@memory_app.command("list")
def memory_list(
    who: Annotated[str, typer.Argument(help="A customer id (cus_...) or an address such as telegram:42.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every memory of a customer, newest first, with its channel and message provenance."""
    try:
        code = asyncio.run(_memory_command(who, None, as_json, 0))
    except InvalidAddress as exc:
        typer.echo(f"threadline: {exc}", err=True)
        raise typer.Exit(2) from exc
    raise typer.Exit(code)


@memory_app.command("search")
def memory_search(
    who: Annotated[str, typer.Argument(help="A customer id (cus_...) or an address such as telegram:42.")],
    query: Annotated[str, typer.Argument(help="What to look for.")],
    limit: Annotated[int, typer.Option(help="How many memories at most.")] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Search a customer's memory the way the agent recalls it."""
    try:
        code = asyncio.run(_memory_command(who, query, as_json, limit))
    except InvalidAddress as exc:
        typer.echo(f"threadline: {exc}", err=True)
        raise typer.Exit(2) from exc
    raise typer.Exit(code)


# ----- customers and identity ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Store:
    """The database and memory a customers / identity command works on, and the identity service."""

    settings: Settings
    db: Database
    memory: MemoryStore
    links: IdentityLinks


def _cli_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return actor_name("cli", user)


def _with_store(settings: Settings, work: Callable[[_Store], Awaitable[T]]) -> T:
    """Run ``work`` on the opened store; a refused identity change or bad address exits 2 in one line."""

    async def run() -> T:
        db = await Database.open(settings.resolved_database_url, busy_timeout=settings.database_busy_timeout)
        memory = build_memory(settings)
        try:
            return await work(_Store(settings, db, memory, IdentityLinks(db, memory)))
        finally:
            await memory.aclose()
            await db.aclose()

    try:
        return asyncio.run(run())
    except (IdentityError, InvalidAddress) as exc:
        typer.echo(f"threadline: {exc}", err=True)
        raise typer.Exit(2) from exc


async def _existing_customer(store: _Store, who: str) -> str:
    """A customer id given as itself (``cus_...``) or as one of its addresses; ``NotFound`` otherwise."""
    if who.startswith("cus_"):
        return who
    address = normalize_address(who, default_region=store.settings.default_region)
    found = await customer_of(store.db, address)
    if found is None:
        raise NotFound(f"no customer has the address {address}")
    return found


def _when(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment is not None else "-"


def _print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2))


def _print_detail(detail: CustomerDetail) -> None:
    typer.echo(f"customer {detail.id} (since {_when(detail.created_at)})")
    if detail.merged_into:
        typer.echo(
            f"merged into {detail.merged_into} by merge {detail.merge_id} "
            f"(`threadline identity unmerge {detail.merge_id}` undoes it)"
        )
    if detail.merged_from:
        typer.echo(f"merged into it: {', '.join(detail.merged_from)}")
    typer.echo("handles:" if detail.identities else "handles: none")
    for i in detail.identities:
        changed = f", changed {_when(i.updated_at)}" if i.updated_at else ""
        typer.echo(f"  {i.address}  {i.assurance} ({i.method}), since {_when(i.created_at)}{changed}")
    typer.echo(
        f"conversation (last {len(detail.recent_turns)} turns):"
        if detail.recent_turns
        else "conversation: none"
    )
    for t in detail.recent_turns:
        typer.echo(f"  {_when(t.created_at)}  {t.address}  {t.role}: {' '.join(t.text.split())}")
    if not detail.memories_available:
        typer.echo("memories: the memory backend did not answer")
        return
    typer.echo("memories:" if detail.memories else "memories: none")
    for m in detail.memories:
        typer.echo(f"  {m.id}  [{m.category or '-'}] via {m.channel or '?'} from {m.handle or '?'}")
        typer.echo(f"      messages: {', '.join(m.message_ids) or '-'}")
        typer.echo(f"      {m.text}")


def _print_suggestion(s: MergeSuggestion) -> None:
    typer.echo(f"{s.kind}: {s.customer_a} ({s.address_a}) ~ {s.customer_b} ({s.address_b})")
    typer.echo(f"    {s.reason}")


def _moves_note(change: Change) -> None:
    if change.memory_moves_pending:
        typer.echo(
            f"{change.memory_moves_pending} memory moves are still queued (the memory backend failed); "
            "`threadline serve` retries them"
        )


@customers_app.command("list")
def customers_list(
    search: Annotated[
        str | None, typer.Option(help="A handle in any spelling (e.g. '(555) 123-0000'), or part of one.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many customers at most.")] = 50,
    offset: Annotated[int, typer.Option(min=0, help="How many to skip.")] = 0,
    include_merged: Annotated[
        bool, typer.Option("--include-merged", help="List merged customers too.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Customers, newest first, with their handles."""
    settings = _settings()

    async def work(store: _Store) -> None:
        page = await list_customers(
            store.db,
            search=search,
            limit=limit,
            offset=offset,
            include_merged=include_merged,
            default_region=settings.default_region,
        )
        if as_json:
            _print_json(page_out(page).model_dump(mode="json"))
            return
        for c in page.customers:
            merged = f"  (merged into {c.merged_into})" if c.merged_into else ""
            typer.echo(f"{c.id}  {_when(c.created_at)}  {', '.join(c.addresses) or '-'}{merged}")
        typer.echo(f"{page.total} customers match; {len(page.customers)} shown from {offset}")

    _with_store(settings, work)


@customers_app.command("show")
def customers_show(
    who: Annotated[str, typer.Argument(help="A customer id (cus_...) or one of its addresses.")],
    turns: Annotated[int, typer.Option(min=0, help="How many recent turns to show.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One customer: handles with assurance, recent conversation on every channel, memories."""
    settings = _settings()

    async def work(store: _Store) -> None:
        customer_id = await _existing_customer(store, who)
        detail = await show_customer(store.db, store.memory, customer_id, turns=turns)
        if as_json:
            _print_json(detail_out(detail).model_dump(mode="json"))
        else:
            _print_detail(detail)

    _with_store(settings, work)


@customers_app.command("suggestions")
def customers_suggestions(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Customers that look like one person (Gmail variants, claimed handles); nothing is merged."""
    settings = _settings()

    async def work(store: _Store) -> None:
        found = await merge_suggestions(store.db, default_region=settings.default_region)
        if as_json:
            _print_json(suggestions_out(found).model_dump(mode="json")["suggestions"])
            return
        for suggestion in found:
            _print_suggestion(suggestion)
        typer.echo(f"{len(found)} merge suggestions")

    _with_store(settings, work)


Reason = Annotated[str | None, typer.Option(help="Why (kept in the identity ledger).")]


@identity_app.command("link")
def identity_link(
    address: Annotated[str, typer.Argument(help="The handle, e.g. telegram:42 or sms:+15551230000.")],
    customer: Annotated[str, typer.Argument(help="The customer it joins: an id, or one of its addresses.")],
    reason: Reason = None,
) -> None:
    """Make ADDRESS a handle of CUSTOMER (admin-linked); its history and memories move along."""
    settings = _settings()

    async def work(store: _Store) -> None:
        handle = normalize_address(address, default_region=settings.default_region)
        target = await _existing_customer(store, customer)
        change = await store.links.link(handle, target, actor=_cli_actor(), reason=reason)
        if change.event_id is None:
            typer.echo(f"{handle} is already an admin-linked handle of {target}: nothing changed")
            return
        came = f" from customer {change.from_customer_id}" if change.from_customer_id else ""
        typer.echo(f"linked {handle} to customer {target}{came} (ledger entry {change.event_id})")
        _moves_note(change)

    _with_store(settings, work)


@identity_app.command("unlink")
def identity_unlink(
    address: Annotated[str, typer.Argument(help="The handle to detach.")],
    reason: Reason = None,
) -> None:
    """Detach ADDRESS from its customer: it becomes a customer of its own, with its own history."""
    settings = _settings()

    async def work(store: _Store) -> None:
        handle = normalize_address(address, default_region=settings.default_region)
        change = await store.links.unlink(handle, actor=_cli_actor(), reason=reason)
        typer.echo(
            f"unlinked {handle} from customer {change.from_customer_id}; it is now customer "
            f"{change.customer_id} (ledger entry {change.event_id})"
        )
        _moves_note(change)

    _with_store(settings, work)


@identity_app.command("merge")
def identity_merge(
    source: Annotated[str, typer.Argument(help="The customer merged away: an id or one of its addresses.")],
    target: Annotated[str, typer.Argument(help="The customer that receives everything.")],
    reason: Reason = None,
) -> None:
    """Merge SOURCE into TARGET: handles, messages and memories move; `identity unmerge` undoes it."""
    settings = _settings()

    async def work(store: _Store) -> None:
        from_id = await _existing_customer(store, source)
        to_id = await _existing_customer(store, target)
        change = await store.links.merge(from_id, to_id, actor=_cli_actor(), reason=reason)
        typer.echo(
            f"merged customer {from_id} into {to_id}: {len(change.addresses)} handles moved "
            f"(merge {change.event_id}; `threadline identity unmerge {change.event_id}` undoes it)"
        )
        _moves_note(change)

    _with_store(settings, work)


@identity_app.command("unmerge")
def identity_unmerge(
    merge_id: Annotated[int, typer.Argument(help="The merge's ledger entry id.")],
    reason: Reason = None,
) -> None:
    """Undo a merge: its handles go back with every message and memory they brought or made since."""
    settings = _settings()

    async def work(store: _Store) -> None:
        change = await store.links.unmerge(merge_id, actor=_cli_actor(), reason=reason)
        typer.echo(
            f"undid merge {merge_id}: {len(change.addresses)} handles back to customer "
            f"{change.customer_id} (ledger entry {change.event_id})"
        )
        _moves_note(change)

    _with_store(settings, work)


@identity_app.command("ledger")
def identity_ledger(
    customer: Annotated[
        str | None, typer.Option(help="Only entries about this customer (an id or one of its addresses).")
    ] = None,
    address: Annotated[str | None, typer.Option(help="Only entries that moved this handle.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="The last this many entries.")] = 500,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The identity ledger, oldest first: who changed which handle, when and why."""
    settings = _settings()

    async def work(store: _Store) -> None:
        customer_id = await _existing_customer(store, customer) if customer else None
        handle = normalize_address(address, default_region=settings.default_region) if address else None
        entries = await ledger_entries(store.db, customer_id=customer_id, address=handle, limit=limit)
        if as_json:
            _print_json([LedgerEntryOut.model_validate(e).model_dump(mode="json") for e in entries])
            return
        for e in entries:
            moved = e.address or ", ".join(e.addresses) or "-"
            came = f" from {e.from_customer_id}" if e.from_customer_id else ""
            undoes = f" (undoes {e.undoes})" if e.undoes else ""
            why = f"  reason: {e.reason}" if e.reason else ""
            typer.echo(f"{e.id}  {_when(e.at)}  {e.kind}{undoes}  {moved} -> {e.customer_id}{came}")
            typer.echo(f"    by {e.actor}{why}")
        typer.echo(f"{len(entries)} ledger entries")

    _with_store(settings, work)


@app.command()
def forget(
    who: Annotated[str, typer.Argument(help="A customer id (cus_...) or one of its addresses.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do it: without --yes nothing is erased.")] = False,
) -> None:
    """Erase a customer from every store (ours and Mem0's) and print the receipt; cannot be undone."""
    settings = _settings()

    async def work(store: _Store) -> None:
        customer_id = await _existing_customer(store, who)
        if not yes:
            typer.echo(
                f"threadline: would erase customer {customer_id} everywhere; add --yes to do it", err=True
            )
            raise typer.Exit(1)
        receipt = await erase(store.db, store.memory, customer_id, actor=_cli_actor())
        _print_json(receipt.as_dict())

    _with_store(settings, work)


@app.command("export")
def export_customer(
    who: Annotated[str, typer.Argument(help="A customer id (cus_...) or one of its addresses.")],
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file instead of stdout.")] = None,
) -> None:
    """Write everything held about a customer as one JSON document (``--out``: a file of mode 0600)."""
    settings = _settings()

    async def work(store: _Store) -> None:
        customer_id = await _existing_customer(store, who)
        document = json.dumps(await export(store.db, store.memory, customer_id), indent=2)
        if out is None:
            typer.echo(document)
        else:
            write_private(out, document + "\n")  # 0600: it is everything held about a person
            typer.echo(f"customer {customer_id} exported to {out}", err=True)

    _with_store(settings, work)


@app.command()
def retention(
    days: Annotated[
        int | None,
        typer.Option("--days", min=1, help="Override THREADLINE_RETENTION__DAYS for this run."),
    ] = None,
) -> None:
    """Delete conversation logs and memories older than the retention period now; print what went."""
    settings = _settings()
    chosen = settings.retention.model_copy(update={"days": days}) if days else settings.retention
    if chosen.days is None:
        typer.echo("threadline: THREADLINE_RETENTION__DAYS is not set (or pass --days)", err=True)
        raise typer.Exit(2)

    async def work(store: _Store) -> None:
        report = await Retention(db=store.db, memory=store.memory, settings=chosen).run_once()
        _print_json(report.as_dict())

    _with_store(settings, work)


def _public_url(settings: Settings) -> str:
    if not settings.public_base_url:
        typer.echo(
            "threadline: THREADLINE_PUBLIC_BASE_URL is required: the URL the platform will call", err=True
        )
        raise typer.Exit(2)
    return settings.public_base_url.rstrip("/")


def _require(settings: Settings, channel: str) -> None:
    if channel not in settings.enabled_channels():
        typer.echo(f"threadline: the {channel} channel is not configured (see README, Channels)", err=True)
        raise typer.Exit(2)


def _set_up(call: Coroutine[Any, Any, str]) -> str:
    """Run a set-up call: a refusal (naming the setting) exits 2, an unreachable platform 1, in one line."""
    try:
        return asyncio.run(call)
    except ThreadlineError as exc:
        typer.echo(f"threadline: {exc}", err=True)
        raise typer.Exit(2 if isinstance(exc, ConfigError) else 1) from exc


@setup_app.command("telegram")
def setup_telegram() -> None:
    """Call setWebhook with our URL and the secret token (allowed updates: messages)."""
    from channels.telegram import set_webhook

    settings = _settings()
    _require(settings, "telegram")
    typer.echo(_set_up(set_webhook(settings.telegram, _public_url(settings))))


@setup_app.command("slack")
def setup_slack() -> None:
    """Print a Slack app manifest with our events URL and the scopes the bot needs."""
    from channels.slack import app_manifest

    settings = _settings()
    url = _public_url(settings)
    typer.echo(json.dumps(app_manifest(url), indent=2))
    typer.echo(
        "Create the app from this manifest at api.slack.com/apps (From an app manifest), install it, "
        "then set THREADLINE_SLACK__BOT_TOKEN and THREADLINE_SLACK__SIGNING_SECRET.",
        err=True,
    )


@setup_app.command("twilio")
def setup_twilio() -> None:
    """Point the number's incoming-message and status-callback URLs at us."""
    from channels.sms import configure_number

    settings = _settings()
    _require(settings, "twilio")
    typer.echo(_set_up(configure_number(settings.twilio, _public_url(settings))))


def main() -> None:
    app()
