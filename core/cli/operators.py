"""``threadline operators add|list|passwd|disable|enable|remove``: the people who sign in to the console.

A password is read with a hidden prompt, twice (or one line from stdin with ``--password-stdin``, for
scripts); it is never echoed, printed or logged. A bad name, role or password, a name that is taken and
an unknown name are each one ``threadline: ...`` line on stderr, exit 2, nothing changed.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from core.cli.base import Command, app, checked_settings, echo, fail, new_typer, when, with_services

if TYPE_CHECKING:
    from core.compose import Services
    from core.settings import Settings
    from core.store.operators import Operators

operators_app = new_typer("Operators of the console (/console/): add, list, change passwords, remove.")
app.add_typer(operators_app, name="operators")

Name = Annotated[str, typer.Argument(metavar="NAME", help="1 to 64 letters, digits or . _ -")]
PasswordStdin = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from the first line of stdin (no prompt)."),
]


def _store(services: Services, settings: Settings) -> Operators:
    from core.store.operators import Operators

    return Operators(services.db, session_hours=settings.console.session_hours)


def _checked_name(name: str) -> str:
    from core.store.operators import check_name

    try:
        return check_name(name)
    except ValueError as exc:
        fail(str(exc))


def _read_password(from_stdin: bool) -> str:
    """The new password: hidden prompt twice, or stdin's first line; checked before anything is opened."""
    from core.store.operators import check_password

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    try:
        return check_password(password)
    except ValueError as exc:
        fail(str(exc))


@operators_app.command("add", cls=Command)
def operators_add(
    name: Name,
    role: Annotated[str, typer.Option(metavar="admin|agent", help="admin: all actions; agent: handoffs.")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Add an operator who can sign in to the console."""
    from core.store.operators import check_role

    settings = checked_settings()
    _checked_name(name)
    try:
        checked_role = check_role(role)
    except ValueError as exc:
        fail(str(exc))
    password = _read_password(password_stdin)

    async def work(services: Services) -> None:
        added = await _store(services, settings).add(name, checked_role, password)
        echo(f"operator {added.name} added ({added.role})")

    with_services(settings, work)


@operators_app.command("list", cls=Command)
def operators_list() -> None:
    """The operators, by name, with their role."""
    settings = checked_settings()

    async def work(services: Services) -> None:
        found = await _store(services, settings).list()
        for op in found:
            disabled = f"  disabled {when(op.disabled_at)}" if op.disabled_at else ""
            echo(f"{op.name}  {op.role}  since {when(op.created_at)}{disabled}")
        if not found:
            echo("no operators: `threadline operators add NAME --role admin` adds one")

    with_services(settings, work)


@operators_app.command("passwd", cls=Command)
def operators_passwd(name: Name, password_stdin: PasswordStdin = False) -> None:
    """Set an operator's password; their sessions end."""
    settings = checked_settings()
    _checked_name(name)

    async def exists(services: Services) -> None:
        await _store(services, settings).get(name)

    with_services(settings, exists)  # an unknown name is refused before the prompt
    password = _read_password(password_stdin)

    async def work(services: Services) -> None:
        await _store(services, settings).set_password(name, password)
        echo(f"password of {name} changed; their sessions have ended")

    with_services(settings, work)


def _set_disabled(name: str, disabled: bool) -> None:
    settings = checked_settings()
    _checked_name(name)

    async def work(services: Services) -> None:
        await _store(services, settings).set_disabled(name, disabled)
        echo(f"operator {name} {'disabled; their sessions have ended' if disabled else 'enabled'}")

    with_services(settings, work)


@operators_app.command("disable", cls=Command)
def operators_disable(name: Name) -> None:
    """Stop an operator from signing in (their sessions end); ``enable`` lets them in again."""
    _set_disabled(name, True)


@operators_app.command("enable", cls=Command)
def operators_enable(name: Name) -> None:
    """Let a disabled operator sign in again."""
    _set_disabled(name, False)


@operators_app.command("remove", cls=Command)
def operators_remove(name: Name) -> None:
    """Delete an operator and their sessions (what they did stays in the record, by name)."""
    settings = checked_settings()
    _checked_name(name)

    async def work(services: Services) -> None:
        await _store(services, settings).remove(name)
        echo(f"operator {name} removed")

    with_services(settings, work)
