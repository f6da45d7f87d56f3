"""``threadline operators add|list|passwd|disable|enable|remove`` in-process: passwords by hidden prompt
(twice) or ``--password-stdin``, never echoed; refusals are one ``threadline: ...`` line, exit 2."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner, Result

from core.cli import app
from core.store.db import Database
from core.store.models import Operator

PASSWORD = "correct horse battery"


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("THREADLINE_DATA_DIR", str(tmp_path / "data"))
    return CliRunner()


def run(runner: CliRunner, *args: str, stdin: str | None = None) -> Result:
    return runner.invoke(app, list(args), input=stdin)


def refused(runner: CliRunner, *args: str, stdin: str | None = None) -> str:
    result = run(runner, *args, stdin=stdin)
    assert result.exit_code == 2, (args, result.output)
    lines = [line for line in result.stderr.splitlines() if line.startswith("threadline: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def hashes(tmp_path: Path) -> dict[str, tuple[str, str]]:
    async def read() -> dict[str, tuple[str, str]]:
        db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'threadline.db'}")
        try:
            async with db.read() as session:
                return {o.name: (o.role, o.password_hash) for o in await session.scalars(select(Operator))}
        finally:
            await db.aclose()

    return asyncio.run(read())


def test_add_list_passwd_and_remove(runner: CliRunner, tmp_path: Path) -> None:
    added = run(runner, "operators", "add", "ada", "--role", "admin", stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert added.exit_code == 0, added.output
    assert "operator ada added (admin)" in added.stdout
    assert PASSWORD not in added.output  # the hidden prompt echoes nothing
    piped = run(
        runner, "operators", "add", "ben", "--role", "agent", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert piped.exit_code == 0 and PASSWORD not in piped.output
    listed = run(runner, "operators", "list")
    assert listed.exit_code == 0
    lines = listed.stdout.splitlines()
    assert lines[0].startswith("ada  admin  since ") and lines[1].startswith("ben  agent  since ")
    before = hashes(tmp_path)
    assert before["ada"][1].startswith("$argon2id$") and PASSWORD not in before["ada"][1]
    changed = run(runner, "operators", "passwd", "ada", stdin="another password\nanother password\n")
    assert changed.exit_code == 0 and "password of ada changed" in changed.stdout
    assert "another password" not in changed.output
    assert hashes(tmp_path)["ada"][1] != before["ada"][1]
    disabled = run(runner, "operators", "disable", "ben")
    assert disabled.exit_code == 0 and "disabled" in run(runner, "operators", "list").stdout
    assert run(runner, "operators", "enable", "ben").exit_code == 0
    removed = run(runner, "operators", "remove", "ben")
    assert removed.exit_code == 0 and "operator ben removed" in removed.stdout
    assert set(hashes(tmp_path)) == {"ada"}


def test_refusals_are_one_line_and_change_nothing(runner: CliRunner, tmp_path: Path) -> None:
    assert (
        run(
            runner, "operators", "add", "ada", "--role", "admin", "--password-stdin", stdin=PASSWORD
        ).exit_code
        == 0
    )
    before = hashes(tmp_path)
    line = refused(runner, "operators", "add", "ada", "--role", "agent", "--password-stdin", stdin=PASSWORD)
    assert line == "threadline: an operator named ada exists already"
    line = refused(runner, "operators", "add", "bo", "--role", "root", "--password-stdin", stdin=PASSWORD)
    assert line == "threadline: the role must be one of admin, agent (got 'root')"
    line = refused(runner, "operators", "add", "b o", "--role", "agent", "--password-stdin", stdin=PASSWORD)
    assert "operator name is 1 to 64 letters" in line
    line = refused(runner, "operators", "add", "bo", "--role", "agent", "--password-stdin", stdin="short\n")
    assert line == "threadline: the password must be at least 8 characters"
    mismatch = run(
        runner, "operators", "add", "bo", "--role", "agent", stdin=f"{PASSWORD}\nsomething else\n" * 1
    )
    assert mismatch.exit_code != 0 and PASSWORD not in mismatch.output
    assert refused(runner, "operators", "passwd", "nobody", stdin=f"{PASSWORD}\n{PASSWORD}\n") == (
        "threadline: no operator named nobody"
    )
    assert refused(runner, "operators", "remove", "nobody") == "threadline: no operator named nobody"
    assert hashes(tmp_path) == before
    assert run(runner, "operators", "add", "--help").exit_code == 0
