"""``threadline customers ...`` and ``threadline identity ...`` in-process, on a data dir a hub filled.

Each command prints what it did; a refused change or a bad address is one ``threadline: ...`` line on
stderr and exit code 2, with nothing changed.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner, Result

from core.cli import app
from core.messages import Address, Assurance, InboundMessage
from core.store.db import Database
from core.store.models import IdentityEvent
from identity.resolver import DatabaseResolver
from tests.core.harness import make_settings, running_hub
from tests.fakes.recording import RecordingSender

PHONE = "+15551230000"
SMS = f"sms:{PHONE}"
TELEGRAM = "telegram:42"
ACTOR = "cli:" + re.sub(r"[^A-Za-z0-9._@-]+", "", getpass.getuser())[:64]


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("THREADLINE_DATA_DIR", str(tmp_path / "data"))
    return CliRunner()


def run(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(app, list(args))


def ok(runner: CliRunner, *args: str) -> str:
    result = run(runner, *args)
    assert result.exit_code == 0, (args, result.output)
    return result.stdout


def as_json(runner: CliRunner, *args: str) -> Any:
    return json.loads(ok(runner, *args, "--json"))


def refused(runner: CliRunner, *args: str) -> str:
    """The one stderr line of a refused command (exit code 2, nothing on stdout)."""
    result = run(runner, *args)
    assert (result.exit_code, result.stdout) == (2, ""), (args, result.output)
    [line] = result.stderr.splitlines()
    assert line.startswith("threadline: ")
    return line


def seed_conversation(tmp_path: Path) -> None:
    """Two customers, one per handle, each with a turn and its memory, written by a real hub."""

    async def talk() -> None:
        sms, telegram = RecordingSender("sms"), RecordingSender("telegram")
        async with running_hub(make_settings(tmp_path), sms, telegram) as hub:
            await hub.accept(
                InboundMessage(
                    channel="sms",
                    provider_message_id="SM1",
                    sender=Address(channel="sms", handle=PHONE),
                    text="my router keeps dropping the wifi",
                    reply_target={"to": PHONE},
                    sender_assurance=Assurance.PLATFORM_ATTESTED,
                    private=True,
                )
            )
            await hub.accept(
                InboundMessage(
                    channel="telegram",
                    provider_message_id="1",
                    sender=Address(channel="telegram", handle="42"),
                    text="please write after 6pm",
                    reply_target={"chat_id": 42},
                    sender_assurance=Assurance.PLATFORM_ATTESTED,
                    private=True,
                )
            )
            assert await hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}

    asyncio.run(talk())


def seed_customers(tmp_path: Path, *addresses: str) -> list[str]:
    """Customers of their own for ``addresses`` (first contact, as a channel would make them)."""

    async def create() -> list[str]:
        db = await Database.open(make_settings(tmp_path).resolved_database_url)
        try:
            resolver = DatabaseResolver(db)
            return [(await resolver.resolve(Address.parse(a))).customer_id for a in addresses]
        finally:
            await db.aclose()

    return asyncio.run(create())


def ledger_kinds(tmp_path: Path) -> list[str]:
    async def read() -> list[str]:
        db = await Database.open(make_settings(tmp_path).resolved_database_url)
        try:
            async with db.session() as session:
                return list(await session.scalars(select(IdentityEvent.kind).order_by(IdentityEvent.id)))
        finally:
            await db.aclose()

    return asyncio.run(read())


def whole(detail: dict[str, Any]) -> dict[str, Any]:
    """What ``customers show --json`` says of who holds what (not when it last changed)."""
    return {
        "identities": [(i["address"], i["assurance"], i["method"]) for i in detail["identities"]],
        "turns": [(t["id"], t["address"], t["text"]) for t in detail["recent_turns"]],
        "memories": sorted((m["id"], m["text"], m["handle"]) for m in detail["memories"]),
        "merged_into": detail["merged_into"],
    }


def test_link_show_and_unlink(runner: CliRunner, tmp_path: Path) -> None:
    seed_conversation(tmp_path)
    [ana] = [c["id"] for c in as_json(runner, "customers", "list", "--search", "(555) 123-0000")["customers"]]
    [stranger] = [c["id"] for c in as_json(runner, "customers", "list", "--search", TELEGRAM)["customers"]]

    out = ok(runner, "identity", "link", "telegram:042", SMS, "--reason", "same person")

    event = as_json(runner, "identity", "ledger", "--address", TELEGRAM)[-1]
    assert (
        out == f"linked {TELEGRAM} to customer {ana} from customer {stranger} (ledger entry {event['id']})\n"
    )
    assert (event["kind"], event["actor"], event["reason"]) == ("link", ACTOR, "same person")
    detail = as_json(runner, "customers", "show", TELEGRAM)
    assert detail["id"] == ana
    assert [(i["address"], i["assurance"], i["method"]) for i in detail["identities"]] == [
        (SMS, "platform_attested", "first_contact"),
        (TELEGRAM, "admin_linked", "admin"),
    ]
    assert {(m["text"], m["channel"], m["handle"]) for m in detail["memories"]} == {
        ("my router keeps dropping the wifi", "sms", SMS),
        ("please write after 6pm", "telegram", TELEGRAM),
    }
    assert {t["address"] for t in detail["recent_turns"]} == {SMS, TELEGRAM}
    text = ok(runner, "customers", "show", ana)
    assert text.startswith(f"customer {ana} (since ")
    assert f"  {TELEGRAM}  admin_linked (admin), since " in text
    assert "via sms from sms:+15551230000" in text and "      my router keeps dropping the wifi" in text

    out = ok(runner, "identity", "unlink", TELEGRAM, "--reason", "wrong person")

    alone = as_json(runner, "customers", "show", TELEGRAM)
    assert alone["id"] not in (ana, stranger)
    assert out.startswith(f"unlinked {TELEGRAM} from customer {ana}; it is now customer {alone['id']} ")
    assert [m["text"] for m in alone["memories"]] == ["please write after 6pm"]
    left = as_json(runner, "customers", "show", ana)
    assert [i["address"] for i in left["identities"]] == [SMS]
    assert [m["text"] for m in left["memories"]] == ["my router keeps dropping the wifi"]
    assert ledger_kinds(tmp_path) == ["create", "create", "link", "unlink"]


def test_relinking_a_linked_handle_changes_nothing(runner: CliRunner, tmp_path: Path) -> None:
    ana, _ = seed_customers(tmp_path, SMS, TELEGRAM)
    ok(runner, "identity", "link", TELEGRAM, ana)
    again = ok(runner, "identity", "link", TELEGRAM, ana)
    assert again == f"{TELEGRAM} is already an admin-linked handle of {ana}: nothing changed\n"
    assert ledger_kinds(tmp_path) == ["create", "create", "link"]


def test_merge_and_unmerge_put_everything_back(runner: CliRunner, tmp_path: Path) -> None:
    seed_conversation(tmp_path)
    source = as_json(runner, "customers", "show", SMS)
    target = as_json(runner, "customers", "show", TELEGRAM)

    out = ok(runner, "identity", "merge", SMS, target["id"], "--reason", "one person")

    match = re.fullmatch(
        rf"merged customer {source['id']} into {target['id']}: 1 handle moved "
        r"\(merge (\d+); `threadline identity unmerge \1` undoes it\)\n",
        out,
    )
    assert match, out
    merge_id = match.group(1)
    listed = as_json(runner, "customers", "list")
    assert [c["id"] for c in listed["customers"]] == [target["id"]]
    merged = as_json(runner, "customers", "show", source["id"])
    assert (merged["merged_into"], merged["merge_id"], merged["identities"]) == (
        target["id"],
        int(merge_id),
        [],
    )
    assert f"merged into {target['id']} by merge {merge_id}" in ok(runner, "customers", "show", source["id"])
    assert as_json(runner, "customers", "show", SMS)["id"] == target["id"]

    out = ok(runner, "identity", "unmerge", merge_id, "--reason", "two people")

    assert re.fullmatch(
        rf"undid merge {merge_id}: 1 handle back to customer {source['id']} \(ledger entry \d+\)\n", out
    )
    assert whole(as_json(runner, "customers", "show", source["id"])) == whole(source)
    assert whole(as_json(runner, "customers", "show", target["id"])) == whole(target)
    entries = as_json(runner, "identity", "ledger", "--customer", source["id"])
    assert [(e["kind"], e["actor"], e["undoes"]) for e in entries] == [
        ("create", "system", None),
        ("merge", ACTOR, None),
        ("unmerge", ACTOR, int(merge_id)),
    ]
    text = ok(runner, "identity", "ledger", "--customer", source["id"])
    assert text.endswith("3 ledger entries\n") and f"unmerge (undoes {merge_id})" in text
    assert refused(runner, "identity", "unmerge", merge_id).startswith(
        f"threadline: merge {merge_id} was already"
    )


def test_refused_changes_exit_2_with_one_line_and_change_nothing(runner: CliRunner, tmp_path: Path) -> None:
    ana, bea = seed_customers(tmp_path, SMS, TELEGRAM)
    before = ledger_kinds(tmp_path)

    assert (
        refused(runner, "identity", "link", TELEGRAM, "cus_nobody")
        == "threadline: no customer for cus_nobody"
    )
    assert (
        refused(runner, "identity", "link", TELEGRAM, "telegram:7")
        == "threadline: no customer for telegram:7"
    )
    assert "numeric user id" in refused(runner, "identity", "link", "telegram:@ana", ana)
    assert "channel:handle" in refused(runner, "identity", "unlink", "pager:42")
    assert refused(runner, "identity", "unlink", SMS).startswith(
        "threadline: this is the customer's only handle"
    )
    assert refused(runner, "identity", "unlink", "telegram:99") == "threadline: no customer for telegram:99"
    assert (
        refused(runner, "identity", "merge", ana, ana)
        == "threadline: a customer cannot be merged into itself"
    )
    assert refused(runner, "identity", "merge", "cus_nobody", bea) == "threadline: no customer for cus_nobody"
    assert refused(runner, "identity", "unmerge", "1") == "threadline: ledger entry 1 is not a merge"
    assert refused(runner, "customers", "show", "cus_nobody") == "threadline: no customer for cus_nobody"
    assert refused(runner, "customers", "show", "sms:12").startswith(
        "threadline: not a possible phone number"
    )
    assert (
        refused(runner, "identity", "ledger", "--customer", "telegram:7")
        == "threadline: no customer for telegram:7"
    )

    assert ledger_kinds(tmp_path) == before


def test_list_search_and_suggestions(runner: CliRunner, tmp_path: Path) -> None:
    ana, dotted, plain = seed_customers(tmp_path, SMS, "email:a.na+x@gmail.com", "email:ana@googlemail.com")

    listing = ok(runner, "customers", "list", "--search", "(555) 123-0000")
    assert re.fullmatch(rf"{ana}  \S+ \S+  {re.escape(SMS)}\n1 customer matches; 1 shown from 0\n", listing)
    assert ok(runner, "customers", "list", "--search", "nobody@example.com").endswith(
        "no customers match; 0 shown from 0\n"
    )

    text = ok(runner, "customers", "suggestions")
    assert text.splitlines() == [
        f"gmail_variant: {dotted} (email:a.na+x@gmail.com) ~ {plain} (email:ana@googlemail.com)",
        "    email:a.na+x@gmail.com and email:ana@googlemail.com are one Gmail mailbox (ana@gmail.com): "
        "Gmail ignores dots and +tags, and googlemail.com is gmail.com",
        "1 merge suggestion",
    ]
    [suggestion] = as_json(runner, "customers", "suggestions")
    assert (suggestion["kind"], suggestion["customer_a"], suggestion["customer_b"]) == (
        "gmail_variant",
        dotted,
        plain,
    )
    assert len(as_json(runner, "customers", "list")["customers"]) == 3  # suggested, not merged


def test_chat_as_an_address_is_an_unverified_sender(runner: CliRunner, tmp_path: Path) -> None:
    """Whoever runs the console can type any address: it recalls that handle's own history at most,
    never what the customer said on their other handles."""
    seed_conversation(tmp_path)
    ok(runner, "identity", "link", TELEGRAM, SMS, "--reason", "same person")
    result = runner.invoke(app, ["chat", "--as", SMS], input="what do you know about me?\n")
    assert result.exit_code == 0, result.output
    assert "router keeps dropping the wifi" in result.stdout  # this handle's own words
    assert "6pm" not in result.stdout  # the Telegram handle's, same customer


def test_an_unknown_customer_or_address_is_the_same_refusal_for_every_command(
    runner: CliRunner, tmp_path: Path
) -> None:
    """One rule: ``threadline: no customer for WHO`` on stderr, exit 2, nothing made or changed."""
    ana, _ = seed_customers(tmp_path, SMS, TELEGRAM)
    before = ledger_kinds(tmp_path)
    for who in ("telegram:7", "cus_nobody"):
        commands = [
            ("memory", "list", who),
            ("memory", "search", who, "router"),
            ("customers", "show", who),
            ("export", who),
            ("forget", who, "--yes"),
            ("forget", who),
            ("identity", "link", "telegram:8", who),
            ("identity", "merge", who, ana),
            ("identity", "merge", ana, who),
            ("identity", "ledger", "--customer", who),
        ]
        if who.startswith("telegram:"):
            commands.append(("identity", "unlink", who))
        for command in commands:
            assert refused(runner, *command) == f"threadline: no customer for {who}", command
    assert refused(runner, "memory", "list", "telegram:@ana").startswith("threadline: ")  # not an address
    assert ledger_kinds(tmp_path) == before
    assert len(as_json(runner, "customers", "list")["customers"]) == 2  # looked up, never made


def test_counts_read_as_english(runner: CliRunner, tmp_path: Path) -> None:
    seed_conversation(tmp_path)
    listing = ok(runner, "memory", "list", SMS)
    first = listing.splitlines()[0]
    assert re.fullmatch(r"customer cus_\w+: 1 memory", first), first
    assert ok(runner, "identity", "ledger", "--customer", SMS).endswith("1 ledger entry\n")
    assert ok(runner, "customers", "suggestions") == "no merge suggestions\n"
    assert "conversation (last 2 turns):" in ok(runner, "customers", "show", SMS)


def help_of(runner: CliRunner, *command: str) -> str:
    result = runner.invoke(app, [*command, "--help"], prog_name="threadline", terminal_width=120)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize(
    "command",
    [
        ("memory", "list"),
        ("memory", "search"),
        ("customers", "show"),
        ("customers", "list"),
        ("identity", "link"),
        ("identity", "merge"),
        ("identity", "ledger"),
        ("forget",),
        ("export",),
        ("chat",),
        ("serve",),
        (),
    ],
)
def test_help_names_arguments_and_values(runner: CliRunner, command: tuple[str, ...]) -> None:
    text = help_of(runner, *command)
    assert not re.search(r"\{\w+\}|<bool>", text), text
    assert "Usage: threadline" in text


def test_help_shows_what_each_argument_is(runner: CliRunner) -> None:
    assert "Usage: threadline memory search [OPTIONS] CUSTOMER_OR_ADDRESS QUERY" in help_of(
        runner, "memory", "search"
    )
    assert "Usage: threadline identity link [OPTIONS] ADDRESS CUSTOMER" in help_of(runner, "identity", "link")
    assert re.search(r"--as +ADDRESS", help_of(runner, "chat"))
    assert re.search(r"--out +FILE", help_of(runner, "export"))


def test_version(runner: CliRunner) -> None:
    from importlib.metadata import version

    assert ok(runner, "--version") == f"threadline {version('threadline')}\n"
