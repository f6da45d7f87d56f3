"""``threadline simulate telegram|slack|sms|email --from ADDRESS [--url BASE] TEXT``: check a deployment.

Builds the delivery the platform would send for a customer's message, signed with this machine's settings
(``channels.simulate``), posts it to a running hub (``--url``, default ``THREADLINE_PUBLIC_BASE_URL``, else
``http://127.0.0.1:8000``) and prints one line: accepted, duplicate, or refused and why. Exit status 0 when
the hub accepted it, 1 when it refused it or could not be reached, 2 for a bad command line or a setting
missing here (named).
"""

from __future__ import annotations

import asyncio

import typer

from core.cli.base import Command, address_or_exit, app, echo, fail

DEFAULT_URL = "http://127.0.0.1:8000"


@app.command("simulate", cls=Command)
def simulate(
    channel: str = typer.Argument(..., help="telegram, slack, sms or email"),
    text: str = typer.Argument(..., help="what the customer writes"),
    sender: str = typer.Option(..., "--from", help="the customer's address on that channel"),
    url: str | None = typer.Option(None, "--url", help="the hub's base URL (default: the public base URL)"),
    delivery_id: str | None = typer.Option(
        None, "--id", help="the platform's id for the delivery (the same id twice: a platform retry)"
    ),
) -> None:
    """Send a signed delivery to a running hub as the platform would, and say what it answered."""
    import httpx

    from channels.simulate import CHANNELS, RESULT_HEADER, build, explain
    from core.errors import ConfigError

    if channel not in CHANNELS:
        fail(f"simulate takes one of {', '.join(CHANNELS)}, not {channel!r}")
    from core.settings import load_settings

    try:  # not ``check``ed: this machine only signs, it needs the secrets, not a whole channel
        settings = load_settings()
    except ConfigError as exc:
        fail(str(exc))
    named = sender if sender.startswith(f"{channel}:") else f"{channel}:{sender}"
    address = address_or_exit(named, settings)
    try:
        delivery = build(channel, settings, address, text, delivery_id=delivery_id)
    except ConfigError as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(str(exc))
    base = (url or settings.public_base_url or DEFAULT_URL).rstrip("/")
    if not base.startswith(("http://", "https://")):
        fail("--url must start with http:// or https://")

    async def post() -> httpx.Response:
        async with httpx.AsyncClient(timeout=30, follow_redirects=False) as client:
            return await client.post(base + delivery.path, content=delivery.body, headers=delivery.headers)

    try:
        response = asyncio.run(post())
    except httpx.HTTPError as exc:
        echo(f"threadline: could not reach the hub at {base}: {type(exc).__name__}", err=True)
        raise typer.Exit(1) from None
    accepted, line = explain(delivery, response.status_code, response.headers.get(RESULT_HEADER))
    echo(line)
    if not accepted:
        raise typer.Exit(1)
