"""What every command shares: the Typer apps, help that names things, one-line refusals, the
spinner, checked settings and the opened services (``core.compose.open_services``)."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from core.errors import ConfigError, IdentityError, InvalidAddress, ThreadlineError

if TYPE_CHECKING:
    from rich.live import Live
    from typer._click.core import Context, Parameter  # Typer's own copy of click

    from core.compose import Services
    from core.messages import Address
    from core.settings import Settings


# ----- help that names things ----------------------------------------------------------------------


def named_params(params: list[Parameter]) -> list[Parameter]:
    """Help names values (``CUSTOMER_OR_ADDRESS``, ``--limit LIMIT``), not ``{who}`` or ``<bool>``."""
    for param in params:
        if param.metavar is not None:
            continue
        if isinstance(param, TyperOption) and (param.is_flag or param.count):
            param.metavar = ""  # a flag takes no value
        else:
            param.metavar = (param.name or "value").upper()
    return params


class Command(TyperCommand):
    def get_params(self, ctx: Context) -> list[Parameter]:
        return named_params(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = param.metavar or (param.name or "value").upper()
                pieces.append(name if param.required else f"[{name}]")
        return pieces


class Group(TyperGroup):
    def get_params(self, ctx: Context) -> list[Parameter]:
        return named_params(super().get_params(ctx))


def new_typer(help_text: str) -> typer.Typer:
    return typer.Typer(help=help_text, no_args_is_help=True, cls=Group)


app = new_typer("Threadline: one customer, one memory, on every channel.")
memory_app = new_typer("Look at a customer's memory.")
app.add_typer(memory_app, name="memory")
setup_app = new_typer("Point a platform at this hub.")
app.add_typer(setup_app, name="setup")
customers_app = new_typer("Find customers and see one whole: handles, conversation, memories.")
app.add_typer(customers_app, name="customers")
identity_app = new_typer(
    "Link, unlink, merge and unmerge handles; every change goes into the identity ledger."
)
app.add_typer(identity_app, name="identity")

T = TypeVar("T")

WHO_HELP = "A customer id (cus_...) or one of its addresses, such as telegram:42."
Who = Annotated[str, typer.Argument(metavar="CUSTOMER_OR_ADDRESS", help=WHO_HELP)]


def print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"threadline {version('threadline')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            typer.echo("threadline (not installed)")
        raise typer.Exit()


@app.callback()
def root(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Threadline: one customer, one memory, on every channel."""


# ----- output, refusals, progress ------------------------------------------------------------------


class Progress:
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


progress = Progress()


def echo(message: str = "", *, err: bool = False, nl: bool = True) -> None:
    progress.stop()
    typer.echo(message, err=err, nl=nl)


def fail(message: str, code: int = 2) -> NoReturn:
    """One ``threadline: ...`` line on stderr, then exit ``code`` (2: refused; nothing was changed)."""
    echo(f"threadline: {message}", err=True)
    raise typer.Exit(code)


def count(n: int, one: str, many: str | None = None) -> str:
    """``1 memory``, ``2 memories``, ``no memories``."""
    many = many or f"{one}s"
    return f"no {many}" if n == 0 else f"{n} {one if n == 1 else many}"


def checked_settings() -> Settings:
    """The settings, checked; a bad one exits 2 with one line naming the variable."""
    from core.settings import load_settings

    try:
        settings = load_settings()
        settings.check()
    except ConfigError as exc:
        fail(str(exc))
    return settings


def address_or_exit(text: str, settings: Settings) -> Address:
    from identity.normalize import normalize_address

    try:
        return normalize_address(text, default_region=settings.default_region)
    except InvalidAddress as exc:
        fail(str(exc))


# ----- customers and identity ----------------------------------------------------------------------


def cli_actor() -> str:
    from identity.views import actor_name

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return actor_name("cli", user)


def with_services(
    settings: Settings, work: Callable[[Services], Awaitable[T]], *, doing: str = "working"
) -> T:
    """Run ``work`` on the opened store. An unknown customer or address, a bad address, a refused identity
    change or a bad setting exits 2 in one line; another failure of ours exits 1 in one line."""

    async def run() -> T:
        from core.compose import open_services

        services = await open_services(settings)
        try:
            return await work(services)
        finally:
            await services.aclose()

    try:
        with progress.during(doing):
            return asyncio.run(run())
    except (IdentityError, InvalidAddress, ConfigError) as exc:
        fail(str(exc))
    except ThreadlineError as exc:
        fail(str(exc), code=1)


async def customer_named(store: Services, who: str) -> str:
    """The customer ``who`` names (an id or one of its addresses); ``NotFound``: no customer for WHO."""
    from identity.directory import find_customer

    return await find_customer(store.db, who, default_region=store.settings.default_region)


def when(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment is not None else "-"


def print_json(data: object) -> None:
    echo(json.dumps(data, indent=2))
