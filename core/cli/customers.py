"""``threadline customers list|show|suggestions``: find customers and see one whole."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from core.cli.base import (
    Command,
    Who,
    checked_settings,
    count,
    customer_named,
    customers_app,
    echo,
    print_json,
    when,
    with_services,
)

if TYPE_CHECKING:
    from core.compose import Services
    from identity.directory import CustomerDetail
    from identity.suggestions import MergeSuggestion


def _print_detail(detail: CustomerDetail) -> None:
    echo(f"customer {detail.id} (since {when(detail.created_at)})")
    if detail.merged_into:
        echo(
            f"merged into {detail.merged_into} by merge {detail.merge_id} "
            f"(`threadline identity unmerge {detail.merge_id}` undoes it)"
        )
    if detail.merged_from:
        echo(f"merged into it: {', '.join(detail.merged_from)}")
    echo("handles:" if detail.identities else "handles: none")
    for i in detail.identities:
        changed = f", changed {when(i.updated_at)}" if i.updated_at else ""
        echo(f"  {i.address}  {i.assurance} ({i.method}), since {when(i.created_at)}{changed}")
    echo(
        f"conversation (last {count(len(detail.recent_turns), 'turn')}):"
        if detail.recent_turns
        else "conversation: none"
    )
    for t in detail.recent_turns:
        echo(f"  {when(t.created_at)}  {t.address}  {t.role}: {' '.join(t.text.split())}")
    if not detail.memories_available:
        echo("memories: the memory backend did not answer")
        return
    echo("memories:" if detail.memories else "memories: none")
    for m in detail.memories:
        echo(f"  {m.id}  [{m.category or '-'}] via {m.channel or '?'} from {m.handle or '?'}")
        echo(f"      messages: {', '.join(m.message_ids) or '-'}")
        echo(f"      {m.text}")


def _print_suggestion(s: MergeSuggestion) -> None:
    echo(f"{s.kind}: {s.customer_a} ({s.address_a}) ~ {s.customer_b} ({s.address_b})")
    echo(f"    {s.reason}")


@customers_app.command("list", cls=Command)
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
    settings = checked_settings()

    async def work(store: Services) -> None:
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
            from identity.views import page_out  # the admin API's JSON shapes

            print_json(page_out(page).model_dump(mode="json"))
            return
        for c in page.customers:
            merged = f"  (merged into {c.merged_into})" if c.merged_into else ""
            echo(f"{c.id}  {when(c.created_at)}  {', '.join(c.addresses) or '-'}{merged}")
        matches = count(page.total, "customer matches", "customers match")
        echo(f"{matches}; {len(page.customers)} shown from {offset}")

    with_services(settings, work)


@customers_app.command("show", cls=Command)
def customers_show(
    who: Who,
    turns: Annotated[int, typer.Option(min=0, help="How many recent turns to show.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One customer: handles with assurance, recent conversation on every channel, memories."""
    settings = checked_settings()

    async def work(store: Services) -> None:
        from identity.directory import show_customer

        customer_id = await customer_named(store, who)
        detail = await show_customer(store.db, store.memory, customer_id, turns=turns)
        if as_json:
            from identity.views import detail_out

            print_json(detail_out(detail).model_dump(mode="json"))
        else:
            _print_detail(detail)

    with_services(settings, work)


@customers_app.command("suggestions", cls=Command)
def customers_suggestions(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Customers that look like one person (Gmail variants, claimed handles); nothing is merged."""
    settings = checked_settings()

    async def work(store: Services) -> None:
        from identity.suggestions import merge_suggestions

        found = await merge_suggestions(store.db, default_region=settings.default_region)
        if as_json:
            from identity.views import suggestions_out

            print_json(suggestions_out(found).model_dump(mode="json")["suggestions"])
            return
        for suggestion in found:
            _print_suggestion(suggestion)
        echo(count(len(found), "merge suggestion"))

    with_services(settings, work)
