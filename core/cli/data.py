"""``threadline forget``, ``export`` and ``retention``: a customer's data, and its time limits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from core.cli.base import (
    Command,
    Who,
    app,
    checked_settings,
    cli_actor,
    customer_named,
    echo,
    print_json,
    with_services,
)

if TYPE_CHECKING:
    from core.compose import Services


@app.command(cls=Command)
def forget(
    who: Who,
    yes: Annotated[bool, typer.Option("--yes", help="Do it: without --yes nothing is erased.")] = False,
) -> None:
    """Erase a customer from every store (ours and Mem0's) and print the receipt; cannot be undone."""
    settings = checked_settings()

    async def work(store: Services) -> None:
        from identity.erasure import forget as erase

        customer_id = await customer_named(store, who)
        if not yes:
            echo(f"threadline: would erase customer {customer_id} everywhere; add --yes to do it", err=True)
            raise typer.Exit(1)
        receipt = await erase(store.db, store.memory, customer_id, actor=cli_actor(), media=store.media)
        print_json(receipt.as_dict())

    with_services(settings, work)


@app.command("export", cls=Command)
def export_customer(
    who: Who,
    out: Annotated[
        Path | None, typer.Option("--out", metavar="FILE", help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Write everything held about a customer as one JSON document (--out FILE: a file of mode 0600)."""
    settings = checked_settings()

    async def work(store: Services) -> None:
        from core.store.private_files import write_private
        from identity.export import export

        customer_id = await customer_named(store, who)
        document = json.dumps(await export(store.db, store.memory, customer_id), indent=2)
        if out is None:
            echo(document)
        else:
            write_private(out, document + "\n")  # 0600: it is everything held about a person
            echo(f"customer {customer_id} exported to {out}", err=True)

    with_services(settings, work)


@app.command(cls=Command)
def retention(
    days: Annotated[
        int | None,
        typer.Option("--days", min=1, metavar="N", help="Override THREADLINE_RETENTION__DAYS for this run."),
    ] = None,
) -> None:
    """Delete conversation logs and memories older than the retention period now; print what went."""
    settings = checked_settings()
    chosen = settings.retention.model_copy(update={"days": days}) if days else settings.retention
    if chosen.days is None:
        echo("threadline: THREADLINE_RETENTION__DAYS is not set (or pass --days)", err=True)
        raise typer.Exit(2)

    async def work(store: Services) -> None:
        from core.pipeline.retention import Retention

        report = await Retention(
            db=store.db, memory=store.memory, settings=chosen, media=store.media
        ).run_once()
        print_json(report.as_dict())

    with_services(settings, work)
