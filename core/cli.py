"""The ``threadline`` command: serve the hub, chat with it from a terminal, look at memory."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Coroutine
from typing import Annotated, Any

import typer

from channels.console import ConsoleChannel
from core.app import build_hub, create_app
from core.errors import ConfigError, InvalidAddress, ThreadlineError
from core.logs import setup_logging
from core.memory import build_memory
from core.messages import OutboundMessage
from core.ports import MemoryRecord
from core.settings import Settings
from core.store.db import Database
from identity.normalize import normalize_address
from identity.resolver import DatabaseResolver

app = typer.Typer(help="Threadline: one customer, one memory, on every channel.", no_args_is_help=True)
memory_app = typer.Typer(help="Look at a customer's memory.", no_args_is_help=True)
app.add_typer(memory_app, name="memory")
setup_app = typer.Typer(help="Point a platform at this hub.", no_args_is_help=True)
app.add_typer(setup_app, name="setup")


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


def _record_json(record: MemoryRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "text": record.text,
        "score": record.score,
        "category": record.category,
        "channel": record.channel,
        "handle": record.handle,
        "message_ids": list(record.message_ids),
        "created_at": record.created_at.isoformat() if record.created_at else None,
    }


def _print_records(records: list[MemoryRecord], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([_record_json(r) for r in records], indent=2))
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
    db = await Database.open(settings.resolved_database_url)
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
