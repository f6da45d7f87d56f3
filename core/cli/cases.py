"""``threadline cases list|open|resolve``: a customer's support cases (``core.pipeline.cases``), newest
first; a person opens and resolves them (``core.pipeline.case_desk``), attributed to ``operator:<name>``."""

from __future__ import annotations

import getpass
import re
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
    fail,
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


def _os_user() -> str:
    """The user running the command, as an operator name (letters, digits and . _ @ - only)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = ""
    return re.sub(r"[^A-Za-z0-9._@-]+", "", user).lstrip("._@-")[:64] or "cli"


Operator = Annotated[
    str | None,
    typer.Option("--operator", help="Who acts, recorded as operator:<name> (default: your user name)."),
]


@cases_app.command("open", cls=Command)
def cases_open(
    who: Who,
    title: Annotated[str, typer.Argument(help="What the problem is (redacted; one line, clipped).")],
    operator: Operator = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Open a support case for a customer, from their latest message if any."""
    settings = checked_settings()

    async def work(store: Services) -> None:
        customer_id = await customer_named(store, who)
        case = await store.case_desk.open(customer_id, title=title, operator=operator or _os_user())
        if as_json:
            print_json(case.as_json())
        else:
            echo(f"case #{case.id} is open for customer {customer_id}")

    try:
        with_services(settings, work, doing="opening the case")
    except ValueError as exc:  # an empty title, a bad operator name
        fail(str(exc))


@cases_app.command("resolve", cls=Command)
def cases_resolve(
    who: Who,
    case_id: Annotated[int, typer.Argument(min=1, help="The case's number.")],
    summary: Annotated[str, typer.Option("--summary", help="How it was resolved (written to memory).")],
    tell: Annotated[
        bool,
        typer.Option(
            "--tell/--no-tell",
            help="Tell the customer on their latest private conversation and ask for a rating.",
        ),
    ] = False,
    operator: Operator = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Resolve an open case of a customer; its summary is written to the customer's memory once."""
    settings = checked_settings()

    async def work(store: Services) -> None:
        customer_id = await customer_named(store, who)
        done = await store.case_desk.resolve(
            customer_id, case_id, summary=summary, operator=operator or _os_user(), tell=tell
        )
        if as_json:
            print_json({"case": done.case.as_json(), "told_on": done.told_on})
        else:
            told = f"; the customer is told on {done.told_on}" if done.told_on else ""
            echo(f"case #{case_id} of customer {customer_id} is resolved{told}")

    try:
        with_services(settings, work, doing="resolving the case")
    except ValueError as exc:  # an empty summary, a bad operator name
        fail(str(exc))
