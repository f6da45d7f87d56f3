"""The ``threadline`` command: serve the hub, chat with it from a terminal, look at memory and customers,
change identities (link, unlink, merge, unmerge: each recorded in the identity ledger).

``serve`` logs through ``core.logs.setup_logging``: uvicorn's access log shows no query string. On SQLite
it holds the data dir's serving lock (``core.serve_lock``): a second ``serve`` there refuses.
``export --out FILE`` writes a file of mode 0600 (everything held about a person is in it).

Start-up is light: this module imports Typer and the error tree only; the web app, the SDKs, the store
and the memory model are imported inside the commands that use them, so ``threadline --help`` and
``--version`` answer at once. Every refusal is one ``threadline: ...`` line on stderr: a bad setting (the
variable named), an unknown customer or address (``no customer for WHO``), a bad address, a refused
identity change all exit 2. On a terminal, a step that takes a while (the hub starting, the memory model
loading, an answer) shows a spinner on stderr; in a pipe nothing is added to the output.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from core.errors import AlreadyServing, ConfigError, IdentityError, InvalidAddress, ThreadlineError

if TYPE_CHECKING:
    from rich.live import Live
    from typer._click.core import Context, Parameter  # Typer's own copy of click

    from channels.console import ConsoleChannel
    from core.messages import Address, OutboundMessage
    from core.ports import MemoryRecord, MemoryStore
    from core.settings import Settings
    from core.store.db import Database
    from identity.directory import CustomerDetail, MergeSuggestion
    from identity.linking import Change, IdentityLinks

# ----- help that names things ----------------------------------------------------------------------


def _named(params: list[Parameter]) -> list[Parameter]:
    """Help names values (``CUSTOMER_OR_ADDRESS``, ``--limit LIMIT``), not ``{who}`` or ``<bool>``."""
    for param in params:
        if param.metavar is not None:
            continue
        if isinstance(param, TyperOption) and (param.is_flag or param.count):
            param.metavar = ""  # a flag takes no value
        else:
            param.metavar = (param.name or "value").upper()
    return params


class _Command(TyperCommand):
    def get_params(self, ctx: Context) -> list[Parameter]:
        return _named(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = param.metavar or (param.name or "value").upper()
                pieces.append(name if param.required else f"[{name}]")
        return pieces


class _Group(TyperGroup):
    def get_params(self, ctx: Context) -> list[Parameter]:
        return _named(super().get_params(ctx))


def _typer(help_text: str) -> typer.Typer:
    return typer.Typer(help=help_text, no_args_is_help=True, cls=_Group)


app = _typer("Threadline: one customer, one memory, on every channel.")
memory_app = _typer("Look at a customer's memory.")
app.add_typer(memory_app, name="memory")
setup_app = _typer("Point a platform at this hub.")
app.add_typer(setup_app, name="setup")
customers_app = _typer("Find customers and see one whole: handles, conversation, memories.")
app.add_typer(customers_app, name="customers")
identity_app = _typer("Link, unlink, merge and unmerge handles; every change goes into the identity ledger.")
app.add_typer(identity_app, name="identity")

T = TypeVar("T")

WHO_HELP = "A customer id (cus_...) or one of its addresses, such as telegram:42."
Who = Annotated[str, typer.Argument(metavar="CUSTOMER_OR_ADDRESS", help=WHO_HELP)]


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"threadline {version('threadline')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            typer.echo("threadline (not installed)")
        raise typer.Exit()


@app.callback()
def _main(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Threadline: one customer, one memory, on every channel."""


# ----- output, refusals, progress ------------------------------------------------------------------


class _Progress:
    """A transient spinner on stderr while a slow step runs, on a terminal only (stdout and stderr both
    terminals); stopped before anything is printed, so it never mixes with the output."""

    def __init__(self) -> None:
        self._live: Live | None = None

    def start(self, what: str) -> None:
        if self._live is not None or not (sys.stderr.isatty() and sys.stdout.isatty()):
            return
        from rich.console import Console
        from rich.live import Live
        from rich.spinner import Spinner

        self._live = Live(
            Spinner("dots", text=what),
            console=Console(stderr=True),
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start()

    def stop(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.stop()

    @contextlib.contextmanager
    def during(self, what: str) -> Iterator[None]:
        self.start(what)
        try:
            yield
        finally:
            self.stop()


_progress = _Progress()


def _echo(message: str = "", *, err: bool = False, nl: bool = True) -> None:
    _progress.stop()
    typer.echo(message, err=err, nl=nl)


def _fail(message: str, code: int = 2) -> NoReturn:
    """One ``threadline: ...`` line on stderr, then exit ``code`` (2: refused; nothing was changed)."""
    _echo(f"threadline: {message}", err=True)
    raise typer.Exit(code)


def _count(n: int, one: str, many: str | None = None) -> str:
    """``1 memory``, ``2 memories``, ``no memories``."""
    many = many or f"{one}s"
    return f"no {many}" if n == 0 else f"{n} {one if n == 1 else many}"


def _settings() -> Settings:
    """The settings, checked; a bad one exits 2 with one line naming the variable."""
    from core.settings import load_settings

    try:
        settings = load_settings()
        settings.check()
    except ConfigError as exc:
        _fail(str(exc))
    return settings


def _address(text: str, settings: Settings) -> Address:
    from identity.normalize import normalize_address

    try:
        return normalize_address(text, default_region=settings.default_region)
    except InvalidAddress as exc:
        _fail(str(exc))


@app.command(cls=_Command)
def serve(
    host: Annotated[str, typer.Option(metavar="HOST", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="Port to listen on.")] = 8000,
) -> None:
    """Run the web app and the worker in one process (the embedded default needs no configuration)."""
    settings = _settings()
    from core.logs import setup_logging
    from core.serve_lock import ServeLock

    setup_logging(settings.log_level)
    # SQLite has one serving process per data dir; PostgreSQL may have many
    lock = ServeLock(settings.data_dir) if settings.resolved_database_url.startswith("sqlite") else None
    try:
        if lock is not None:
            lock.acquire()
    except AlreadyServing as exc:
        _fail(str(exc))
    try:
        import uvicorn

        from core.app import create_app

        try:
            web = create_app(settings)
        except ConfigError as exc:
            _fail(str(exc))
        uvicorn.run(web, host=host, port=port, log_config=None, proxy_headers=True)
    finally:
        if lock is not None:
            lock.release()


# The console answers a person waiting at a terminal: at most this many tries of the LLM (a lower
# THREADLINE_WORKER__MAX_ATTEMPTS is kept), no SDK retries and a short backoff, so an LLM that cannot be
# reached gives the fallback reply in seconds. ``serve`` keeps the full retry policy.
CHAT_MAX_ATTEMPTS = 2
# what the LLM's failures log, attempt by attempt (the answer, Mem0's fact extraction); the chat says it once
CHAT_QUIET_LOGGERS = ("core.llm", "core.worker", "core.memory.local", "core.memory.mem0_quirks")


def chat_settings(settings: Settings) -> Settings:
    """``settings`` with the console's short LLM retry policy (``CHAT_MAX_ATTEMPTS``)."""
    worker = settings.worker.model_copy(
        update={
            "max_attempts": min(settings.worker.max_attempts, CHAT_MAX_ATTEMPTS),
            "backoff_base": min(settings.worker.backoff_base, 0.5),
            "backoff_max": min(settings.worker.backoff_max, 1.0),
        }
    )
    llm = settings.llm.model_copy(update={"max_retries": 0})
    return settings.model_copy(update={"worker": worker, "llm": llm})


@app.command(cls=_Command)
def chat(
    as_: Annotated[
        str,
        typer.Option("--as", metavar="ADDRESS", help="Who you are, as channel:handle (e.g. telegram:42)."),
    ],
) -> None:
    """Talk to the hub as a customer, through the same pipeline as a real channel.

    Reads lines from standard input until end of input (Ctrl-D) or Ctrl-C, so it can be scripted:
    ``printf 'hello\\n' | threadline chat --as telegram:42``.
    """
    settings = _settings()
    from core.logs import setup_logging

    quiet = settings.log_level == "INFO"
    setup_logging("WARNING" if quiet else settings.log_level)
    if quiet:  # the chat says in one line what the LLM did wrong, not a log line per attempt
        for name in CHAT_QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
    sender = _address(as_, settings)
    if settings.llm.offline_notice:
        _echo(f"threadline: {settings.llm.offline_notice}", err=True)
    try:
        asyncio.run(_chat(chat_settings(settings), str(sender)))
    except ConfigError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:  # Ctrl-C: the hub has been stopped on the way out
        _progress.stop()
        raise typer.Exit(130) from None


def _read_stdin(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]) -> None:
    """Standard input, line by line, into ``lines`` (``None`` at its end). Runs on a daemon thread, not in
    the loop's executor, so Ctrl-C never waits for a line; a real descriptor is read with ``os.read``, so
    the thread holds no lock of ``sys.stdin`` that the interpreter's exit would wait for."""

    def put(line: str | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the chat has ended
            loop.call_soon_threadsafe(lines.put_nowait, line)

    try:
        fd: int | None = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):  # a stand-in stdin (tests) has no descriptor
        fd = None
    if fd is None:
        for line in iter(sys.stdin.readline, ""):
            put(line)
        put(None)
        return
    pending = b""
    while chunk := os.read(fd, 65536):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            put(raw.decode("utf-8", "replace") + "\n")
    if pending:
        put(pending.decode("utf-8", "replace"))
    put(None)


async def _chat(settings: Settings, sender_text: str) -> None:
    with _progress.during("loading the hub"):
        from channels.console import ConsoleChannel
        from core.app import build_hub
        from core.llm import UNREACHABLE, endpoint_of
        from core.messages import Address
        from core.settings import env_name
        from core.worker import FALLBACK_REPLY

    sender = Address.parse(sender_text)
    interactive = sys.stdin.isatty()

    async def show(reply: OutboundMessage) -> None:
        prefix = "bot> " if interactive else ""
        _echo(f"{prefix}{reply.text}")

    console = ConsoleChannel(show)
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    with _progress.during("starting the hub"):
        hub = await build_hub(settings, senders={"console": console})
    told: set[str] = set()

    def explain_fallback() -> None:
        """Why the reply was the fallback, once per kind of failure: the LLM at which host, and what."""
        error = hub.worker.last_llm_error
        if error is None or str(error) in told:
            return
        told.add(str(error))
        where = f"the LLM at {endpoint_of(settings.llm.base_url)}"
        what = f"{where} is unreachable" if str(error) == UNREACHABLE else f"{where} failed ({error})"
        _echo(
            f"threadline: {what}: that reply is the fallback "
            f"(check {env_name('llm', 'base_url')}, or unset {env_name('llm', 'api_key')} for offline mode)",
            err=True,
        )

    try:
        await hub.start()
        # replies still owed from an earlier session (killed mid-answer) arrive first
        with _progress.during("catching up on replies an earlier session owed"):
            await hub.wait_idle(timeout=120)
        threading.Thread(
            target=_read_stdin, args=(asyncio.get_running_loop(), lines), name="stdin", daemon=True
        ).start()
        while True:
            if interactive:
                _echo("you> ", nl=False)
            line = await lines.get()
            if line is None:
                if interactive:
                    _echo()  # Ctrl-D left the cursor after the prompt
                break
            text = line.strip()
            if not text:
                continue
            accepted = await hub.accept(console.message(sender, text))
            if accepted.duplicate:
                continue
            with _progress.during("thinking"):
                reply = await _await_reply(console, f"reply:{accepted.inbox_id}")
            if reply.text == FALLBACK_REPLY:
                explain_fallback()
        await hub.memory_writer.flush_summaries()
        with _progress.during("writing memories"):
            left = await hub.wait_idle(timeout=120)
        if any(left.values()):
            _echo(f"threadline: still pending at exit: {left}", err=True)
    finally:
        await hub.stop()


async def _await_reply(console: ConsoleChannel, key: str) -> OutboundMessage:
    while True:
        delivered = await console.delivered.get()
        if delivered.idempotency_key == key:
            return delivered


def _print_records(customer_id: str, records: list[MemoryRecord], as_json: bool) -> None:
    if as_json:
        _echo(json.dumps([r.as_json() for r in records], indent=2))
        return
    _echo(f"customer {customer_id}: {_count(len(records), 'memory', 'memories')}")
    for r in records:
        when = r.created_at.strftime("%Y-%m-%d %H:%M") if r.created_at else "?"
        score = f" score={r.score:.3f}" if r.score is not None else ""
        _echo(f"{r.id}  {when}  [{r.category or '-'}] via {r.channel or '?'} from {r.handle or '?'}{score}")
        _echo(f"    messages: {', '.join(r.message_ids) or '-'}")
        _echo(f"    {r.text}")


@memory_app.command("list", cls=_Command)
def memory_list(
    who: Who,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every memory of a customer, newest first, with its channel and message provenance."""
    settings = _settings()

    async def work(store: _Store) -> None:
        customer_id = await _customer(store, who)
        _print_records(customer_id, await store.memory.list(customer_id), as_json)

    _with_store(settings, work, doing="reading memories")


@memory_app.command("search", cls=_Command)
def memory_search(
    who: Who,
    query: Annotated[str, typer.Argument(metavar="QUERY", help="What to look for.")],
    limit: Annotated[int, typer.Option(min=1, help="How many memories at most.")] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Search a customer's memory the way the agent recalls it."""
    settings = _settings()

    async def work(store: _Store) -> None:
        customer_id = await _customer(store, who)
        _print_records(customer_id, await store.memory.recall(customer_id, query, limit=limit), as_json)

    _with_store(settings, work, doing="loading the memory model and searching")


# ----- customers and identity ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Store:
    """The database and memory a customers / identity command works on, and the identity service."""

    settings: Settings
    db: Database
    memory: MemoryStore
    links: IdentityLinks


def _cli_actor() -> str:
    from identity.admin import actor_name

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return actor_name("cli", user)


def _with_store(settings: Settings, work: Callable[[_Store], Awaitable[T]], *, doing: str = "working") -> T:
    """Run ``work`` on the opened store. An unknown customer or address, a bad address, a refused identity
    change or a bad setting exits 2 in one line; another failure of ours exits 1 in one line."""

    async def run() -> T:
        from core.memory import build_memory
        from core.store.db import Database
        from identity.linking import IdentityLinks

        db = await Database.open(settings.resolved_database_url, busy_timeout=settings.database_busy_timeout)
        memory = build_memory(settings)
        try:
            return await work(_Store(settings, db, memory, IdentityLinks(db, memory)))
        finally:
            await memory.aclose()
            await db.aclose()

    try:
        with _progress.during(doing):
            return asyncio.run(run())
    except (IdentityError, InvalidAddress, ConfigError) as exc:
        _fail(str(exc))
    except ThreadlineError as exc:
        _fail(str(exc), code=1)


async def _customer(store: _Store, who: str) -> str:
    """The customer ``who`` names (an id or one of its addresses); ``NotFound``: no customer for WHO."""
    from identity.directory import find_customer

    return await find_customer(store.db, who, default_region=store.settings.default_region)


def _when(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment is not None else "-"


def _print_json(data: object) -> None:
    _echo(json.dumps(data, indent=2))


def _print_detail(detail: CustomerDetail) -> None:
    _echo(f"customer {detail.id} (since {_when(detail.created_at)})")
    if detail.merged_into:
        _echo(
            f"merged into {detail.merged_into} by merge {detail.merge_id} "
            f"(`threadline identity unmerge {detail.merge_id}` undoes it)"
        )
    if detail.merged_from:
        _echo(f"merged into it: {', '.join(detail.merged_from)}")
    _echo("handles:" if detail.identities else "handles: none")
    for i in detail.identities:
        changed = f", changed {_when(i.updated_at)}" if i.updated_at else ""
        _echo(f"  {i.address}  {i.assurance} ({i.method}), since {_when(i.created_at)}{changed}")
    _echo(
        f"conversation (last {_count(len(detail.recent_turns), 'turn')}):"
        if detail.recent_turns
        else "conversation: none"
    )
    for t in detail.recent_turns:
        _echo(f"  {_when(t.created_at)}  {t.address}  {t.role}: {' '.join(t.text.split())}")
    if not detail.memories_available:
        _echo("memories: the memory backend did not answer")
        return
    _echo("memories:" if detail.memories else "memories: none")
    for m in detail.memories:
        _echo(f"  {m.id}  [{m.category or '-'}] via {m.channel or '?'} from {m.handle or '?'}")
        _echo(f"      messages: {', '.join(m.message_ids) or '-'}")
        _echo(f"      {m.text}")


def _print_suggestion(s: MergeSuggestion) -> None:
    _echo(f"{s.kind}: {s.customer_a} ({s.address_a}) ~ {s.customer_b} ({s.address_b})")
    _echo(f"    {s.reason}")


def _moves_note(change: Change) -> None:
    if change.memory_moves_pending:
        moves = _count(change.memory_moves_pending, "memory move is", "memory moves are")
        _echo(f"{moves} still queued (the memory backend failed); `threadline serve` retries them")


@customers_app.command("list", cls=_Command)
def customers_list(
    search: Annotated[
        str | None,
        typer.Option(
            metavar="HANDLE", help="A handle in any spelling (e.g. '(555) 123-0000'), or part of one."
        ),
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
        from identity.directory import list_customers

        page = await list_customers(
            store.db,
            search=search,
            limit=limit,
            offset=offset,
            include_merged=include_merged,
            default_region=settings.default_region,
        )
        if as_json:
            from identity.admin import page_out  # the admin API's JSON shapes (it imports FastAPI)

            _print_json(page_out(page).model_dump(mode="json"))
            return
        for c in page.customers:
            merged = f"  (merged into {c.merged_into})" if c.merged_into else ""
            _echo(f"{c.id}  {_when(c.created_at)}  {', '.join(c.addresses) or '-'}{merged}")
        matches = _count(page.total, "customer matches", "customers match")
        _echo(f"{matches}; {len(page.customers)} shown from {offset}")

    _with_store(settings, work)


@customers_app.command("show", cls=_Command)
def customers_show(
    who: Who,
    turns: Annotated[int, typer.Option(min=0, help="How many recent turns to show.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One customer: handles with assurance, recent conversation on every channel, memories."""
    settings = _settings()

    async def work(store: _Store) -> None:
        from identity.directory import show_customer

        customer_id = await _customer(store, who)
        detail = await show_customer(store.db, store.memory, customer_id, turns=turns)
        if as_json:
            from identity.admin import detail_out

            _print_json(detail_out(detail).model_dump(mode="json"))
        else:
            _print_detail(detail)

    _with_store(settings, work)


@customers_app.command("suggestions", cls=_Command)
def customers_suggestions(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Customers that look like one person (Gmail variants, claimed handles); nothing is merged."""
    settings = _settings()

    async def work(store: _Store) -> None:
        from identity.directory import merge_suggestions

        found = await merge_suggestions(store.db, default_region=settings.default_region)
        if as_json:
            from identity.admin import suggestions_out

            _print_json(suggestions_out(found).model_dump(mode="json")["suggestions"])
            return
        for suggestion in found:
            _print_suggestion(suggestion)
        _echo(_count(len(found), "merge suggestion"))

    _with_store(settings, work)


Reason = Annotated[str | None, typer.Option(metavar="TEXT", help="Why (kept in the identity ledger).")]


@identity_app.command("link", cls=_Command)
def identity_link(
    address: Annotated[
        str, typer.Argument(metavar="ADDRESS", help="The handle, e.g. telegram:42 or sms:+15551230000.")
    ],
    customer: Annotated[
        str,
        typer.Argument(metavar="CUSTOMER", help="The customer it joins: an id, or one of its addresses."),
    ],
    reason: Reason = None,
) -> None:
    """Make ADDRESS a handle of CUSTOMER (admin-linked); its history and memories move along."""
    settings = _settings()

    handle = _address(address, settings)

    async def work(store: _Store) -> None:
        target = await _customer(store, customer)
        change = await store.links.link(handle, target, actor=_cli_actor(), reason=reason)
        if change.event_id is None:
            _echo(f"{handle} is already an admin-linked handle of {target}: nothing changed")
            return
        came = f" from customer {change.from_customer_id}" if change.from_customer_id else ""
        _echo(f"linked {handle} to customer {target}{came} (ledger entry {change.event_id})")
        _moves_note(change)

    _with_store(settings, work)


@identity_app.command("unlink", cls=_Command)
def identity_unlink(
    address: Annotated[str, typer.Argument(metavar="ADDRESS", help="The handle to detach.")],
    reason: Reason = None,
) -> None:
    """Detach ADDRESS from its customer: it becomes a customer of its own, with its own history."""
    settings = _settings()

    handle = _address(address, settings)

    async def work(store: _Store) -> None:
        await _customer(store, str(handle))  # no customer for it: refused like everywhere else
        change = await store.links.unlink(handle, actor=_cli_actor(), reason=reason)
        _echo(
            f"unlinked {handle} from customer {change.from_customer_id}; it is now customer "
            f"{change.customer_id} (ledger entry {change.event_id})"
        )
        _moves_note(change)

    _with_store(settings, work)


@identity_app.command("merge", cls=_Command)
def identity_merge(
    source: Annotated[
        str, typer.Argument(metavar="SOURCE", help="The customer merged away: an id or one of its addresses.")
    ],
    target: Annotated[
        str, typer.Argument(metavar="TARGET", help="The customer that receives everything (id or address).")
    ],
    reason: Reason = None,
) -> None:
    """Merge SOURCE into TARGET: handles, messages and memories move; `identity unmerge` undoes it."""
    settings = _settings()

    async def work(store: _Store) -> None:
        from_id = await _customer(store, source)
        to_id = await _customer(store, target)
        change = await store.links.merge(from_id, to_id, actor=_cli_actor(), reason=reason)
        _echo(
            f"merged customer {from_id} into {to_id}: {_count(len(change.addresses), 'handle')} moved "
            f"(merge {change.event_id}; `threadline identity unmerge {change.event_id}` undoes it)"
        )
        _moves_note(change)

    _with_store(settings, work)


@identity_app.command("unmerge", cls=_Command)
def identity_unmerge(
    merge_id: Annotated[int, typer.Argument(metavar="MERGE_ID", help="The merge's ledger entry id.")],
    reason: Reason = None,
) -> None:
    """Undo a merge: its handles go back with every message and memory they brought or made since."""
    settings = _settings()

    async def work(store: _Store) -> None:
        change = await store.links.unmerge(merge_id, actor=_cli_actor(), reason=reason)
        _echo(
            f"undid merge {merge_id}: {_count(len(change.addresses), 'handle')} back to customer "
            f"{change.customer_id} (ledger entry {change.event_id})"
        )
        _moves_note(change)

    _with_store(settings, work)


@identity_app.command("ledger", cls=_Command)
def identity_ledger(
    customer: Annotated[
        str | None,
        typer.Option(
            metavar="CUSTOMER_OR_ADDRESS",
            help="Only entries about this customer (an id or one of its addresses).",
        ),
    ] = None,
    address: Annotated[
        str | None, typer.Option(metavar="ADDRESS", help="Only entries that moved this handle.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="The last this many entries.")] = 500,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The identity ledger, oldest first: who changed which handle, when and why."""
    settings = _settings()

    handle = _address(address, settings) if address else None

    async def work(store: _Store) -> None:
        from identity.directory import ledger_entries

        customer_id = await _customer(store, customer) if customer else None
        entries = await ledger_entries(store.db, customer_id=customer_id, address=handle, limit=limit)
        if as_json:
            from identity.admin import LedgerEntryOut

            _print_json([LedgerEntryOut.model_validate(e).model_dump(mode="json") for e in entries])
            return
        for e in entries:
            moved = e.address or ", ".join(e.addresses) or "-"
            came = f" from {e.from_customer_id}" if e.from_customer_id else ""
            undoes = f" (undoes {e.undoes})" if e.undoes else ""
            why = f"  reason: {e.reason}" if e.reason else ""
            _echo(f"{e.id}  {_when(e.at)}  {e.kind}{undoes}  {moved} -> {e.customer_id}{came}")
            _echo(f"    by {e.actor}{why}")
        _echo(_count(len(entries), "ledger entry", "ledger entries"))

    _with_store(settings, work)


@app.command(cls=_Command)
def forget(
    who: Who,
    yes: Annotated[bool, typer.Option("--yes", help="Do it: without --yes nothing is erased.")] = False,
) -> None:
    """Erase a customer from every store (ours and Mem0's) and print the receipt; cannot be undone."""
    settings = _settings()

    async def work(store: _Store) -> None:
        from identity.erasure import forget as erase

        customer_id = await _customer(store, who)
        if not yes:
            _echo(f"threadline: would erase customer {customer_id} everywhere; add --yes to do it", err=True)
            raise typer.Exit(1)
        receipt = await erase(store.db, store.memory, customer_id, actor=_cli_actor())
        _print_json(receipt.as_dict())

    _with_store(settings, work)


@app.command("export", cls=_Command)
def export_customer(
    who: Who,
    out: Annotated[
        Path | None, typer.Option("--out", metavar="FILE", help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Write everything held about a customer as one JSON document (--out FILE: a file of mode 0600)."""
    settings = _settings()

    async def work(store: _Store) -> None:
        from core.private_files import write_private
        from identity.erasure import export

        customer_id = await _customer(store, who)
        document = json.dumps(await export(store.db, store.memory, customer_id), indent=2)
        if out is None:
            _echo(document)
        else:
            write_private(out, document + "\n")  # 0600: it is everything held about a person
            _echo(f"customer {customer_id} exported to {out}", err=True)

    _with_store(settings, work)


@app.command(cls=_Command)
def retention(
    days: Annotated[
        int | None,
        typer.Option("--days", min=1, metavar="N", help="Override THREADLINE_RETENTION__DAYS for this run."),
    ] = None,
) -> None:
    """Delete conversation logs and memories older than the retention period now; print what went."""
    settings = _settings()
    chosen = settings.retention.model_copy(update={"days": days}) if days else settings.retention
    if chosen.days is None:
        _echo("threadline: THREADLINE_RETENTION__DAYS is not set (or pass --days)", err=True)
        raise typer.Exit(2)

    async def work(store: _Store) -> None:
        from core.retention import Retention

        report = await Retention(db=store.db, memory=store.memory, settings=chosen).run_once()
        _print_json(report.as_dict())

    _with_store(settings, work)


def _public_url(settings: Settings) -> str:
    if not settings.public_base_url:
        _echo("threadline: THREADLINE_PUBLIC_BASE_URL is required: the URL the platform will call", err=True)
        raise typer.Exit(2)
    return settings.public_base_url.rstrip("/")


def _require(settings: Settings, channel: str) -> None:
    if channel not in settings.enabled_channels():
        _echo(f"threadline: the {channel} channel is not configured (see README, Channels)", err=True)
        raise typer.Exit(2)


def _set_up(call: Coroutine[Any, Any, str]) -> str:
    """Run a set-up call: a refusal (naming the setting) exits 2, an unreachable platform 1, in one line."""
    try:
        return asyncio.run(call)
    except ThreadlineError as exc:
        _echo(f"threadline: {exc}", err=True)
        raise typer.Exit(2 if isinstance(exc, ConfigError) else 1) from exc


@setup_app.command("telegram", cls=_Command)
def setup_telegram() -> None:
    """Call setWebhook with our URL and the secret token (allowed updates: messages)."""
    from channels.telegram import set_webhook

    settings = _settings()
    _require(settings, "telegram")
    _echo(_set_up(set_webhook(settings.telegram, _public_url(settings))))


@setup_app.command("slack", cls=_Command)
def setup_slack() -> None:
    """Print a Slack app manifest with our events URL and the scopes the bot needs."""
    from channels.slack import app_manifest

    settings = _settings()
    url = _public_url(settings)
    _echo(json.dumps(app_manifest(url), indent=2))
    _echo(
        "Create the app from this manifest at api.slack.com/apps (From an app manifest), install it, "
        "then set THREADLINE_SLACK__BOT_TOKEN and THREADLINE_SLACK__SIGNING_SECRET.",
        err=True,
    )


@setup_app.command("twilio", cls=_Command)
def setup_twilio() -> None:
    """Point the number's incoming-message and status-callback URLs at us."""
    from channels.sms import configure_number

    settings = _settings()
    _require(settings, "twilio")
    _echo(_set_up(configure_number(settings.twilio, _public_url(settings))))


def main() -> None:
    app()
