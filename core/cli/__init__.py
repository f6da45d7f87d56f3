"""The ``threadline`` command: serve the hub, chat with it from a terminal, look at memory and customers,
change identities (link, unlink, merge, unmerge: each recorded in the identity ledger). One module
per command group; what they share is in ``core.cli.base``.

``serve`` logs through ``core.logs.setup_logging``: uvicorn's access log shows no query string. On SQLite
it holds the data dir's serving lock (``core.store.serve_lock``): a second ``serve`` there refuses.
``export --out FILE`` writes a file of mode 0600 (everything held about a person is in it).

Start-up is light: this module imports Typer and the error tree only; the web app, the SDKs, the store
and the memory model are imported inside the commands that use them, so ``threadline --help`` and
``--version`` answer at once. Every refusal is one ``threadline: ...`` line on stderr: a bad setting (the
variable named), an unknown customer or address (``no customer for WHO``), a bad address, a refused
identity change all exit 2. On a terminal, a step that takes a while (the hub starting, the memory model
loading, an answer) shows a spinner on stderr; in a pipe nothing is added to the output.
"""

from __future__ import annotations

# each command module registers its commands on ``app`` when imported; none imports anything heavy
from core.cli import (  # noqa: F401
    cases,
    chat,
    customers,
    data,
    linking,
    mcp,
    memories,
    operators,
    serve,
    setup,
    simulate,
)
from core.cli.base import app
from core.cli.chat import CHAT_MAX_ATTEMPTS, chat_settings

__all__ = ["CHAT_MAX_ATTEMPTS", "app", "chat_settings", "main"]


def main() -> None:
    app()
