"""``threadline cases open|resolve|list`` in-process, on a data dir a hub filled.

A person's case is attributed to ``operator:<name>``; a resolution told to the customer is queued once and
sent by the hub, and its summary memory is written by the hub's memory writer, even though the command ran
in another process. A refusal is one ``threadline: ...`` line and exit code 2, with nothing changed.
"""

from __future__ import annotations

import asyncio
import getpass
import re
from pathlib import Path

from typer.testing import CliRunner

from core.pipeline.cases import RATING_QUESTION
from tests.core.cli.test_cli_identity import SMS, as_json, ok, refused, runner, seed_conversation
from tests.core.harness import make_settings, running_hub
from tests.fakes.recording import RecordingSender

__all__ = ["runner"]  # the fixture


def test_open_resolve_and_list_cases(runner: CliRunner, tmp_path: Path) -> None:
    seed_conversation(tmp_path)  # an SMS customer and a Telegram one, each with one private message
    opened = as_json(runner, "cases", "open", SMS, "Router drops the wifi", "--operator", "Dee")
    assert (opened["id"], opened["status"], opened["opened_by"], opened["channel"]) == (
        1,
        "open",
        "operator:Dee",
        "sms",
    )
    assert (
        ok(runner, "cases", "open", SMS, "Asked for a paper bill")
        .strip()
        .endswith("is open for customer " + opened["customer_id"])
    )

    out = ok(
        runner,
        "cases",
        "resolve",
        SMS,
        "1",
        "--summary",
        "Replaced the router",
        "--tell",
        "--operator",
        "Dee",
    )
    assert (
        out.strip() == f"case #1 of customer {opened['customer_id']} is resolved; the customer is told on sms"
    )
    assert (
        refused(runner, "cases", "resolve", SMS, "1", "--summary", "again")
        == "threadline: case 1 is resolved already"
    )
    assert (
        refused(runner, "cases", "resolve", SMS, "2", "--summary", "  ") == "threadline: the summary is empty"
    )
    assert refused(runner, "cases", "resolve", "telegram:42", "2", "--summary", "x").startswith(
        "threadline: customer "
    )  # case 2 is not the Telegram customer's
    resolved = as_json(runner, "cases", "resolve", SMS, "2", "--summary", "Paper bill set up")
    user = re.sub(r"[^A-Za-z0-9._@-]+", "", getpass.getuser()).lstrip("._@-")[:64] or "cli"
    assert (resolved["told_on"], resolved["case"]["resolved_by"]) == (None, f"operator:{user}")
    assert refused(runner, "cases", "open", SMS, "x", "--operator", "<script>").startswith(
        "threadline: an operator name is"
    )

    listed = as_json(runner, "cases", "list", SMS)["cases"]
    assert [(c["id"], c["status"], c["summary"]) for c in listed] == [
        (2, "resolved", "Paper bill set up"),
        (1, "resolved", "Replaced the router"),
    ]

    async def serve() -> tuple[list[str], list[str]]:
        sms, telegram = RecordingSender("sms"), RecordingSender("telegram")
        async with running_hub(make_settings(tmp_path), sms, telegram) as hub:
            assert await hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}
            memories = sorted(
                m.text for m in await hub.memory.list(opened["customer_id"]) if m.metadata.get("case_id")
            )
        return [r.text for r in sms.sent], memories

    sent, memories = asyncio.run(serve())
    assert sent == [f"Case #1 is resolved. {RATING_QUESTION}"]  # told once, by the hub
    assert [m.split(": ", 1)[1] for m in memories] == ["Replaced the router", "Paper bill set up"]
