"""``threadline memory list|search``: a customer's memory with its provenance."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from core.cli.base import (
    Command,
    Who,
    checked_settings,
    count,
    customer_named,
    echo,
    memory_app,
    with_services,
)

if TYPE_CHECKING:
    from core.compose import Services
    from core.messages import MemoryRecord


def _print_records(customer_id: str, records: list[MemoryRecord], as_json: bool) -> None:
    if as_json:
        echo(json.dumps([r.as_json() for r in records], indent=2))
        return
    echo(f"customer {customer_id}: {count(len(records), 'memory', 'memories')}")
    for r in records:
        when = r.created_at.strftime("%Y-%m-%d %H:%M") if r.created_at else "?"
        score = f" score={r.score:.3f}" if r.score is not None else ""
        echo(f"{r.id}  {when}  [{r.category or '-'}] via {r.channel or '?'} from {r.handle or '?'}{score}")
        echo(f"    messages: {', '.join(r.message_ids) or '-'}")
        echo(f"    {r.text}")


@memory_app.command("list", cls=Command)
def memory_list(
    who: Who,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every memory of a customer, newest first, with its channel and message provenance."""
    settings = checked_settings()

    async def work(store: Services) -> None:
        customer_id = await customer_named(store, who)
        _print_records(customer_id, await store.memory.list(customer_id), as_json)

    with_services(settings, work, doing="reading memories")


@memory_app.command("search", cls=Command)
def memory_search(
    who: Who,
    query: Annotated[str, typer.Argument(metavar="QUERY", help="What to look for.")],
    limit: Annotated[int, typer.Option(min=1, help="How many memories at most.")] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Search a customer's memory the way the agent recalls it."""
    settings = checked_settings()

    async def work(store: Services) -> None:
        customer_id = await customer_named(store, who)
        _print_records(customer_id, await store.memory.recall(customer_id, query, limit=limit), as_json)

    with_services(settings, work, doing="loading the memory model and searching")
