"""``threadline memory list|search|import``: a customer's memory with its provenance, filtered by category,
channel and time; and memories brought in from a file (``core.memory.importer``: Threadline's own export,
a hosted Mem0 export, CSV).

``import`` wires the importer to the identity layer (``ImportCustomers``): an address names the customer
holding it, and one nobody holds gets a new customer (not in a dry run); the handles a Threadline export
lists go to one customer, the ones nobody holds linked to it (recorded in the ledger as ``memory import``).
Progress goes to stderr on a terminal; refused rows go to stderr one per line; the summary to stdout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from core.cli.base import (
    Command,
    Who,
    checked_settings,
    cli_actor,
    count,
    customer_named,
    echo,
    fail,
    memory_app,
    progress,
    with_services,
)

if TYPE_CHECKING:
    from core.compose import Services
    from core.memory.importer import ImportReport, Match
    from core.messages import MemoryFilter, MemoryRecord

PROGRESS_EVERY = 25  # memories between two progress lines on a terminal

Category = Annotated[
    str | None,
    typer.Option(
        "--category",
        help="Only this category: profile, support_history, special_handling or operational_state.",
    ),
]
Channel = Annotated[str | None, typer.Option("--channel", help="Only memories from this channel (sms, ...).")]
Since = Annotated[
    str | None, typer.Option("--since", metavar="DATE", help="Written at or after (ISO date or date-time).")
]
Until = Annotated[
    str | None, typer.Option("--until", metavar="DATE", help="Written before (ISO date or date-time).")
]


def memory_filter(
    category: str | None, channel: str | None, since: str | None, until: str | None
) -> MemoryFilter | None:
    """The options as a ``MemoryFilter`` (None when none is given); a bad one exits 2 in one line."""
    from core.messages import MemoryFilter

    try:
        chosen = MemoryFilter.parse(category=category, channel=channel, since=since, until=until)
    except ValueError as exc:
        fail(str(exc))
    return None if chosen.empty else chosen


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
    category: Category = None,
    channel: Channel = None,
    since: Since = None,
    until: Until = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every memory of a customer, newest first, with its channel and message provenance."""
    settings = checked_settings()
    filters = memory_filter(category, channel, since, until)

    async def work(store: Services) -> None:
        customer_id = await customer_named(store, who)
        _print_records(customer_id, await store.memory.list(customer_id, filters=filters), as_json)

    with_services(settings, work, doing="reading memories")


@memory_app.command("search", cls=Command)
def memory_search(
    who: Who,
    query: Annotated[str, typer.Argument(metavar="QUERY", help="What to look for.")],
    category: Category = None,
    channel: Channel = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, typer.Option(min=1, help="How many memories at most.")] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Search a customer's memory the way the agent recalls it (the filters apply before the limit)."""
    settings = checked_settings()
    filters = memory_filter(category, channel, since, until)

    async def work(store: Services) -> None:
        customer_id = await customer_named(store, who)
        found = await store.memory.recall(customer_id, query, limit=limit, filters=filters)
        _print_records(customer_id, found, as_json)

    with_services(settings, work, doing="loading the memory model and searching")


# ----- import ----------------------------------------------------------------------------------------


class ImportCustomers:
    """``core.memory.importer.Customers`` over the identity layer of ``store``."""

    def __init__(self, store: Services, *, actor: str) -> None:
        self._store = store
        self._actor = actor

    async def for_reference(self, reference: str, *, create: bool) -> Match:
        from core.errors import InvalidAddress, NotFound
        from core.memory.import_formats import Refused
        from core.memory.importer import Match
        from identity.directory import customer_of, find_customer
        from identity.normalize import normalize_address
        from identity.resolver import DatabaseResolver

        db = self._store.db
        if reference.startswith("cus_"):
            try:
                return Match(customer_id=await find_customer(db, reference))
            except NotFound:
                raise Refused("no customer with that id") from None
        try:
            address = normalize_address(reference, default_region=self._store.default_region)
        except InvalidAddress:
            raise Refused("the customer is neither a customer id nor an address (use --customer)") from None
        found = await customer_of(db, address)
        if found is None and create:
            found = (await DatabaseResolver(db).resolve(address)).customer_id
        return Match(customer_id=found, address=str(address))

    async def for_handles(self, handles: Sequence[str], *, create: bool) -> Match:
        from core.errors import InvalidAddress
        from core.memory.import_formats import Refused
        from core.memory.importer import Match
        from core.messages import Address
        from identity.directory import customer_of
        from identity.normalize import normalize_address
        from identity.resolver import DatabaseResolver

        db = self._store.db
        addresses: list[Address] = []
        for handle in handles:
            try:
                addresses.append(normalize_address(handle, default_region=self._store.default_region))
            except InvalidAddress:
                continue
        if not addresses:
            raise Refused("the export lists no usable handle (name the customer with --customer)")
        holders = {str(a): await customer_of(db, a) for a in addresses}
        owners = {c for c in holders.values() if c is not None}
        if len(owners) > 1:
            raise Refused(f"the export's handles belong to {len(owners)} customers (use --customer)")
        if owners:
            target = owners.pop()
        elif not create:
            return Match(customer_id=None)
        else:
            target = (await DatabaseResolver(db).resolve(addresses[0])).customer_id
            holders[str(addresses[0])] = target
        if create:
            for address in addresses:
                if holders[str(address)] is None:
                    await self._store.links.link(
                        address, target, actor=self._actor, reason="memory import: a handle of the export"
                    )
                    holders[str(address)] = target
        return Match(customer_id=target)


class _Progress:
    """A progress line on stderr every ``PROGRESS_EVERY`` memories, on a terminal only."""

    def __init__(self) -> None:
        self.shown = False
        self.on_terminal = sys.stderr.isatty()

    def __call__(self, report: ImportReport, total: int) -> None:
        done = report.done
        if not self.on_terminal or (done % PROGRESS_EVERY and done != total):
            return
        progress.stop()
        typer.echo(f"\rimporting memories: {done} of {total}", err=True, nl=False)
        self.shown = True

    def end(self) -> None:
        if self.shown:
            typer.echo("", err=True)


@memory_app.command("import", cls=Command)
def memory_import(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="The file to import.")],
    customer: Annotated[
        str | None,
        typer.Option(
            "--customer",
            metavar="CUSTOMER_OR_ADDRESS",
            help="Import every memory to this customer (default: the one the file names).",
        ),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="auto|threadline|mem0|csv",
            help="threadline: `threadline export` JSON; mem0: a hosted Mem0 export; csv: columns customer, "
            "memory, category, channel, created_at. auto: by name and content.",
        ),
    ] = "auto",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read and count only: write nothing, make no customer.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Import memories from a file, as they are (no LLM), keeping their provenance and time; a second run
    of the same file adds nothing."""
    from core.memory.import_formats import MalformedImport, read_import
    from core.memory.importer import MemoryImporter

    settings = checked_settings()
    try:
        data = file.read_bytes()
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or type(exc).__name__}")
    try:
        source = read_import(data, fmt, name=file.name)
    except MalformedImport as exc:
        fail(f"{file}: {exc}")
    shown = _Progress()

    async def work(store: Services) -> ImportReport:
        target = await customer_named(store, customer) if customer is not None else None
        importer = MemoryImporter(
            store.memory,
            ImportCustomers(store, actor=cli_actor()),
            customer=target,
            dry_run=dry_run,
            progress=shown,
        )
        return await importer.run(source)

    try:
        report = with_services(settings, work, doing="loading the memory model and importing")
    finally:
        shown.end()
    for refused in report.refused:
        echo(f"{refused.where}: refused: {refused.reason}", err=True)
    if as_json:
        echo(json.dumps(report.as_json(), indent=2))
    else:
        echo(report.summary())
