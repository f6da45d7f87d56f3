"""``threadline chat --as ADDRESS``: talk to the hub from a terminal, through the same pipeline as a
real channel (the console channel)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from core.cli.base import (
    Command,
    address_or_exit,
    app,
    checked_settings,
    echo,
    fail,
    progress,
)
from core.errors import ConfigError

if TYPE_CHECKING:
    from channels.console import ConsoleChannel
    from core.messages import OutboundMessage
    from core.pipeline.hub import Hub
    from core.settings import Settings

# The console answers a person waiting at a terminal: at most this many tries of the LLM (a lower
# THREADLINE_WORKER__MAX_ATTEMPTS is kept), no SDK retries and a short backoff, so an LLM that cannot be
# reached gives the fallback reply in seconds. ``serve`` keeps the full retry policy.
CHAT_MAX_ATTEMPTS = 2
# what the LLM's failures log, attempt by attempt (the answer, Mem0's fact extraction); the chat says it once
CHAT_QUIET_LOGGERS = (
    "core.agent.llm",
    "core.pipeline.worker",
    "core.memory.local",
    "core.memory.mem0_quirks",
)


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


@app.command(cls=Command)
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
    settings = checked_settings()
    from core.logs import setup_logging

    quiet = settings.log_level == "INFO"
    setup_logging("WARNING" if quiet else settings.log_level)
    sender = address_or_exit(as_, settings)
    if settings.llm.offline_notice:
        echo(f"threadline: {settings.llm.offline_notice}", err=True)
    # the chat says in one line what the LLM did wrong, not a log line per attempt; the levels are put
    # back afterwards (the command may run inside a longer-lived process, as in tests)
    with _quieted(CHAT_QUIET_LOGGERS if quiet else ()):
        try:
            asyncio.run(_chat(chat_settings(settings), str(sender)))
        except ConfigError as exc:
            fail(str(exc))
        except KeyboardInterrupt:  # Ctrl-C: the hub has been stopped on the way out
            progress.stop()
            raise typer.Exit(130) from None


@contextlib.contextmanager
def _quieted(names: tuple[str, ...]) -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


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
    with progress.during("loading the hub"):
        from channels.console import ConsoleChannel
        from core.agent.llm import UNREACHABLE, endpoint_of
        from core.compose import build_hub
        from core.messages import Address
        from core.pipeline.handoff import FALLBACK_OPENING
        from core.settings import env_name

    sender = Address.parse(sender_text)
    interactive = sys.stdin.isatty()

    async def show(reply: OutboundMessage) -> None:
        prefix = "bot> " if interactive else ""
        echo(f"{prefix}{reply.text}")

    console = ConsoleChannel(show)
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    with progress.during("starting the hub"):
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
        echo(
            f"threadline: {what}: that reply is the fallback "
            f"(check {env_name('llm', 'base_url')}, or unset {env_name('llm', 'api_key')} for offline mode)",
            err=True,
        )

    try:
        await hub.start()
        # replies still owed from an earlier session (killed mid-answer) arrive first
        with progress.during("catching up on replies an earlier session owed"):
            await hub.wait_idle(timeout=120)
        threading.Thread(
            target=_read_stdin, args=(asyncio.get_running_loop(), lines), name="stdin", daemon=True
        ).start()
        while True:
            if interactive:
                echo("you> ", nl=False)
            line = await lines.get()
            if line is None:
                if interactive:
                    echo()  # Ctrl-D left the cursor after the prompt
                break
            text = line.strip()
            if not text:
                continue
            accepted = await hub.accept(console.message(sender, text))
            if accepted.duplicate:
                continue
            with progress.during("thinking"):
                reply = await _await_reply(hub, console, accepted.inbox_id)
            if reply is None:  # a person owns the conversation (a handoff): the bot stays silent
                echo(
                    "threadline: saved; a person from the team will answer (the bot is silent meanwhile)",
                    err=True,
                )
            elif reply.text.startswith(FALLBACK_OPENING):
                explain_fallback()
        await hub.memory_writer.flush_summaries()
        with progress.during("writing memories"):
            left = await hub.wait_idle(timeout=120)
        if any(left.values()):
            echo(f"threadline: still pending at exit: {left}", err=True)
    finally:
        await hub.stop()


async def _await_reply(hub: Hub, console: ConsoleChannel, inbox_id: int) -> OutboundMessage | None:
    """The reply to the line (``reply:<inbox id>``), or None once it was handled without one (while a
    person owns the conversation the bot says nothing: ``core.pipeline.handoff``)."""
    from sqlalchemy import select

    from core.store.models import InboxRow, OutboxRow

    key = f"reply:{inbox_id}"
    while True:
        # not asyncio.wait_for: on Python 3.11 it can swallow a Ctrl-C that lands as the reply arrives
        getter = asyncio.ensure_future(console.delivered.get())
        try:
            await asyncio.wait({getter}, timeout=0.25)
        finally:
            if not getter.done():
                getter.cancel()
        if not getter.done() or getter.cancelled():
            async with hub.db.read() as session:
                status = await session.scalar(select(InboxRow.status).where(InboxRow.id == inbox_id))
                owed = await session.scalar(
                    select(OutboxRow.id).where(
                        OutboxRow.idempotency_key == key, OutboxRow.status == "pending"
                    )
                )
            if status not in (None, "pending") and owed is None and console.delivered.empty():
                return None
            continue
        delivered = getter.result()
        if delivered.idempotency_key == key:
            return delivered
