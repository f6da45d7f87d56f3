"""``threadline identity link|unlink|merge|unmerge|ledger``: every change recorded in the identity
ledger."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from core.cli.base import (
    Command,
    address_or_exit,
    checked_settings,
    cli_actor,
    count,
    customer_named,
    echo,
    identity_app,
    print_json,
    when,
    with_services,
)

if TYPE_CHECKING:
    from core.compose import Services
    from identity.linking import Change


def _moves_note(change: Change) -> None:
    if change.memory_moves_pending:
        moves = count(change.memory_moves_pending, "memory move is", "memory moves are")
        echo(f"{moves} still queued (the memory backend failed); `threadline serve` retries them")


Reason = Annotated[str | None, typer.Option(metavar="TEXT", help="Why (kept in the identity ledger).")]


@identity_app.command("link", cls=Command)
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
    settings = checked_settings()

    handle = address_or_exit(address, settings)

    async def work(store: Services) -> None:
        target = await customer_named(store, customer)
        change = await store.links.link(handle, target, actor=cli_actor(), reason=reason)
        if change.event_id is None:
            echo(f"{handle} is already an admin-linked handle of {target}: nothing changed")
            return
        came = f" from customer {change.from_customer_id}" if change.from_customer_id else ""
        echo(f"linked {handle} to customer {target}{came} (ledger entry {change.event_id})")
        _moves_note(change)

    with_services(settings, work)


@identity_app.command("unlink", cls=Command)
def identity_unlink(
    address: Annotated[str, typer.Argument(metavar="ADDRESS", help="The handle to detach.")],
    reason: Reason = None,
) -> None:
    """Detach ADDRESS from its customer: it becomes a customer of its own, with its own history."""
    settings = checked_settings()

    handle = address_or_exit(address, settings)

    async def work(store: Services) -> None:
        await customer_named(store, str(handle))  # no customer for it: refused like everywhere else
        change = await store.links.unlink(handle, actor=cli_actor(), reason=reason)
        echo(
            f"unlinked {handle} from customer {change.from_customer_id}; it is now customer "
            f"{change.customer_id} (ledger entry {change.event_id})"
        )
        _moves_note(change)

    with_services(settings, work)


@identity_app.command("merge", cls=Command)
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
    settings = checked_settings()

    async def work(store: Services) -> None:
        from_id = await customer_named(store, source)
        to_id = await customer_named(store, target)
        change = await store.links.merge(from_id, to_id, actor=cli_actor(), reason=reason)
        echo(
            f"merged customer {from_id} into {to_id}: {count(len(change.addresses), 'handle')} moved "
            f"(merge {change.event_id}; `threadline identity unmerge {change.event_id}` undoes it)"
        )
        _moves_note(change)

    with_services(settings, work)


@identity_app.command("unmerge", cls=Command)
def identity_unmerge(
    merge_id: Annotated[int, typer.Argument(metavar="MERGE_ID", help="The merge's ledger entry id.")],
    reason: Reason = None,
) -> None:
    """Undo a merge: its handles go back with every message and memory they brought or made since."""
    settings = checked_settings()

    async def work(store: Services) -> None:
        change = await store.links.unmerge(merge_id, actor=cli_actor(), reason=reason)
        echo(
            f"undid merge {merge_id}: {count(len(change.addresses), 'handle')} back to customer "
            f"{change.customer_id} (ledger entry {change.event_id})"
        )
        _moves_note(change)

    with_services(settings, work)


@identity_app.command("ledger", cls=Command)
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
    settings = checked_settings()

    handle = address_or_exit(address, settings) if address else None

    async def work(store: Services) -> None:
        from identity.directory import ledger_entries

        customer_id = await customer_named(store, customer) if customer else None
        entries = await ledger_entries(store.db, customer_id=customer_id, address=handle, limit=limit)
        if as_json:
            from identity.views import LedgerEntryOut

            print_json([LedgerEntryOut.model_validate(e).model_dump(mode="json") for e in entries])
            return
        for e in entries:
            moved = e.address or ", ".join(e.addresses) or "-"
            came = f" from {e.from_customer_id}" if e.from_customer_id else ""
            undoes = f" (undoes {e.undoes})" if e.undoes else ""
            why = f"  reason: {e.reason}" if e.reason else ""
            echo(f"{e.id}  {when(e.at)}  {e.kind}{undoes}  {moved} -> {e.customer_id}{came}")
            echo(f"    by {e.actor}{why}")
        echo(count(len(entries), "ledger entry", "ledger entries"))

    with_services(settings, work)
