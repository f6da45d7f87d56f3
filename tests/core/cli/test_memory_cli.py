"""``threadline memory list|search`` with filters and ``threadline memory import``, in-process on a data dir
a hub filled: export, forget and import brings a customer's memories back with their provenance; a second
import adds nothing; bad input is one ``threadline: ...`` line, exit 2, nothing changed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.core.cli.test_cli_identity import (
    SMS,
    TELEGRAM,
    as_json,
    help_of,
    ledger_kinds,
    ok,
    refused,
    run,
    seed_conversation,
)


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("THREADLINE_DATA_DIR", str(tmp_path / "data"))
    return CliRunner()


def imported(runner: CliRunner, *args: str) -> tuple[str, list[str]]:
    """The summary line (stdout) and the refused rows (stderr) of a ``memory import`` that ran."""
    result = run(runner, "memory", "import", *args)
    assert result.exit_code == 0, result.output
    return result.stdout.strip(), result.stderr.splitlines()


def provenance_of(memories: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    return {(m["text"], m["channel"], m["handle"], m["category"], m["created_at"]) for m in memories}


# ----- filters ---------------------------------------------------------------------------------------


def test_list_and_search_filter_by_category_channel_and_time(runner: CliRunner, tmp_path: Path) -> None:
    seed_conversation(tmp_path)
    ok(runner, "identity", "link", TELEGRAM, SMS, "--reason", "same person")
    everything = as_json(runner, "memory", "list", SMS)
    assert {m["channel"] for m in everything} == {"sms", "telegram"}

    sms = as_json(runner, "memory", "list", SMS, "--channel", "sms")
    assert [m["text"] for m in sms] == ["my router keeps dropping the wifi"]
    found = as_json(
        runner, "memory", "search", SMS, "wifi router 6pm", "--channel", "telegram", "--limit", "1"
    )
    assert [m["text"] for m in found] == ["please write after 6pm"]

    category = everything[0]["category"]
    same = as_json(runner, "memory", "list", SMS, "--category", category)
    assert same and all(m["category"] == category for m in same)

    assert as_json(runner, "memory", "list", SMS, "--until", "2000-01-01") == []
    unfiltered = as_json(runner, "memory", "search", SMS, "wifi")
    since = as_json(runner, "memory", "search", SMS, "wifi", "--since", "2000-01-01T00:00:00Z")
    assert "my router keeps dropping the wifi" in [m["text"] for m in since]
    assert since == unfiltered  # every memory was written after 2000: the filter leaves out none
    assert as_json(runner, "memory", "search", SMS, "wifi", "--until", "2000-01-01T00:00:00Z") == []
    text = ok(runner, "memory", "list", SMS, "--channel", "email")
    assert text.startswith("customer ") and text.endswith(": no memories\n")


def test_bad_filters_are_one_line_and_exit_2(runner: CliRunner, tmp_path: Path) -> None:
    seed_conversation(tmp_path)
    line = refused(runner, "memory", "list", SMS, "--category", "vip")
    assert line == (
        "threadline: unknown category 'vip': use one of profile, support_history, special_handling, "
        "operational_state"
    )
    line = refused(runner, "memory", "search", SMS, "wifi", "--since", "2025-03-01", "--until", "2025-01-01")
    assert line == "threadline: since must be before until (since is inclusive, until exclusive)"
    assert refused(runner, "memory", "list", SMS, "--since", "last week").startswith(
        "threadline: since: not an ISO date or date-time"
    )


# ----- import ----------------------------------------------------------------------------------------


def test_export_forget_import_brings_the_memories_back_and_a_second_import_adds_nothing(
    runner: CliRunner, tmp_path: Path
) -> None:
    seed_conversation(tmp_path)
    ok(runner, "identity", "link", TELEGRAM, SMS, "--reason", "same person")
    before = as_json(runner, "memory", "list", SMS)
    assert len(before) == 2
    export = tmp_path / "ana.json"
    ok(runner, "export", SMS, "--out", str(export))
    ok(runner, "forget", SMS, "--yes")
    assert refused(runner, "memory", "list", SMS) == f"threadline: no customer for {SMS}"

    dry, problems = imported(runner, str(export), "--dry-run")
    assert (dry, problems) == (
        "would import 2, already present 0, refused 0; dry run: nothing was written",
        [],
    )
    assert refused(runner, "memory", "list", SMS) == f"threadline: no customer for {SMS}"  # nobody made

    summary, problems = imported(runner, str(export))
    assert (summary, problems) == ("imported 2, already present 0, refused 0", [])

    after = as_json(runner, "memory", "list", TELEGRAM)  # one customer again, holding both handles
    assert provenance_of(after) == provenance_of(before)
    old_ids = {m["text"]: m["id"] for m in before}
    for memory in after:
        meta = memory["metadata"]
        assert meta["imported_from"] == f"threadline:{old_ids[memory['text']]}"
        assert (meta["said_by"], meta["verified"], meta["sender_vouched"]) == ("customer", False, True)
        assert memory["turn_ids"] == [] and meta["imported_turn_ids"]  # this database's turns are others
    detail = as_json(runner, "customers", "show", SMS)
    assert sorted(i["address"] for i in detail["identities"]) == [SMS, TELEGRAM]
    assert ledger_kinds(tmp_path)[-2:] == ["create", "link"]

    summary, _ = imported(runner, str(export), "--format", "threadline")
    assert summary == "imported 0, already present 2, refused 0"
    assert len(as_json(runner, "memory", "list", SMS)) == 2


def test_a_mem0_export_maps_user_ids_that_are_addresses_and_refuses_the_others(
    runner: CliRunner, tmp_path: Path
) -> None:
    source = tmp_path / "mem0.json"
    source.write_text(
        json.dumps(
            {
                "results": [
                    {
                        "id": "a1",
                        "memory": "Customer says they prefer email",
                        "user_id": "telegram:77",
                        "metadata": {"category": "special_handling"},
                        "created_at": "2024-06-01T12:00:00+00:00",
                    },
                    {"id": "a2", "memory": "Has two routers", "user_id": "alice", "metadata": None},
                    {"id": "a3", "memory": "Lives in Porto", "user_id": "telegram:77"},
                ]
            }
        )
    )
    summary, problems = imported(runner, str(source))
    assert summary == (
        "imported 2, already present 0, refused 1 (1 the customer is neither a customer id nor an address "
        "(use --customer))"
    )
    assert problems == [
        "memory 2: refused: the customer is neither a customer id nor an address (use --customer)"
    ]
    memories = {m["text"]: m for m in as_json(runner, "memory", "list", "telegram:77")}
    prefer = memories["Customer says they prefer email"]
    assert (prefer["channel"], prefer["handle"], prefer["category"]) == (
        "telegram",
        "telegram:77",
        "special_handling",
    )
    assert prefer["created_at"] == "2024-06-01T12:00:00+00:00"
    assert prefer["metadata"]["imported_from"] == "mem0:a1"

    # the one refused goes to a customer named on the command line; the others are there already
    summary, problems = imported(runner, str(source), "--customer", "telegram:77")
    assert (summary, problems) == ("imported 1, already present 2, refused 0", [])
    assert len(as_json(runner, "memory", "list", "telegram:77")) == 3


def test_a_csv_with_a_bad_row_imports_the_rest(runner: CliRunner, tmp_path: Path) -> None:
    source = tmp_path / "memories.csv"
    source.write_text(
        "customer,memory,category,channel,created_at\n"
        "sms:+1 555 123 0000,my router keeps dropping the wifi,support_history,sms,2025-01-10\n"
        "sms:+15551230000,I moved to Porto,,sms,yesterday\n"
        "sms:+15551230000,please never call me,,,\n"
    )
    summary, problems = imported(runner, str(source), "--json")
    report = json.loads(summary)
    assert (report["format"], report["imported"], report["already_present"]) == ("csv", 2, 0)
    assert report["refused"] == [{"where": "line 3", "reason": "created_at is not an ISO date-time"}]
    assert problems == ["line 3: refused: created_at is not an ISO date-time"]
    memories = {m["text"]: m for m in as_json(runner, "memory", "list", SMS)}
    assert memories["my router keeps dropping the wifi"]["created_at"] == "2025-01-10T00:00:00+00:00"
    assert memories["please never call me"]["category"] == "special_handling"
    never = memories["please never call me"]
    assert (never["channel"], never["handle"]) == ("sms", SMS)  # the address that named the customer

    summary, _ = imported(runner, str(source))
    assert summary == "imported 0, already present 2, refused 1 (1 created_at is not an ISO date-time)"


def test_a_malformed_file_or_an_unknown_customer_is_one_line_and_exit_2(
    runner: CliRunner, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"results": [')
    assert refused(runner, "memory", "import", str(broken)) == (
        f"threadline: {broken}: the file is not valid JSON (line 1)"
    )
    assert refused(runner, "memory", "import", str(tmp_path / "missing.csv")).startswith(
        f"threadline: cannot read {tmp_path / 'missing.csv'}"
    )
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("name,text\nana,hello\n")
    assert "needs a memory column" in refused(runner, "memory", "import", str(wrong))
    assert "unknown format" in refused(runner, "memory", "import", str(wrong), "--format", "xml")
    good = tmp_path / "good.csv"
    good.write_text("customer,memory\ntelegram:5,hello there\n")
    assert refused(runner, "memory", "import", str(good), "--customer", "telegram:9") == (
        "threadline: no customer for telegram:9"
    )
    assert refused(runner, "memory", "list", "telegram:5") == "threadline: no customer for telegram:5"


def test_help_names_the_file_the_filters_and_the_formats(runner: CliRunner) -> None:
    text = help_of(runner, "memory", "import")
    assert "Usage: threadline memory import [OPTIONS] FILE" in text
    assert re.search(r"--customer +CUSTOMER_OR_ADDRESS", text)
    assert re.search(r"--format +auto\|threadline\|mem0\|csv", text)
    for command in (("memory", "list"), ("memory", "search")):
        text = help_of(runner, *command)
        assert re.search(r"--since +DATE", text) and re.search(r"--until +DATE", text)
        assert re.search(r"--category +CATEGORY", text) and re.search(r"--channel +CHANNEL", text)
