"""``threadline cases list``: a customer's support cases (``core.pipeline.cases``), newest first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from core.cli.base import (
    Command,
    Who,
    app,
    checked_settings,
    count,
    customer_named,
    echo,
    new_typer,
    print_json,
    with_services,
)
from core.cli.base import when as shown_at

if TYPE_CHECKING:
    from core.compose import Services
    from core.pipeline.cases import CaseView

cases_app = new_typer("A customer's support cases: open or resolved, when, by whom, from which turns.")
app.add_typer(cases_app, name="cases")


def _print_cases(customer_id: str, cases: list[CaseView]) -> None:
    echo(f"customer {customer_id}: {count(len(cases), 'case')}")
    for c in cases:
        state = f"resolved {shown_at(c.resolved_at)} by {c.resolved_by or '?'}" if c.resolved_at else "open"
        echo(
            f"#{c.id}  {c.status}  opened {shown_at(c.opened_at)} by {c.opened_by} "
            f"on {c.channel or '?'}; {state}"
        )
        echo(f"    {c.title}")
        if c.summary:
            echo(f"    summary: {c.summary}")
        if c.rating is not None:
            echo(f"    rating: {c.rating}/5 ({shown_at(c.rated_at)})")
        echo(f"    turns: {', '.join(str(t) for t in c.turn_ids) or '-'}")


@cases_app.command("list", cls=Command)
def cases_list(
    who: Who,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every support case of a customer, newest first."""
    settings = checked_settings()

    async def work(store: Services) -> None:
        from core.pipeline.cases import list_cases

        customer_id = await customer_named(store, who)
        found = await list_cases(store.db, customer_id)
        if as_json:
            print_json({"customer_id": customer_id, "cases": [c.as_json() for c in found]})
        else:
            _print_cases(customer_id, found)

    with_services(settings, work, doing="reading cases")
