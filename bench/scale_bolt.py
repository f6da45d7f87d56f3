"""The peer a user would pick instead of the hub for Slack: a slack-bolt ``AsyncApp`` behind its FastAPI
adapter that verifies each delivery's signature and acknowledges it.

It is what Bolt's documentation starts a Slack app with (``AsyncApp(token=..., signing_secret=...)``,
``AsyncSlackRequestHandler``, one ``@app.event("message")`` listener), with the defaults: the request is
verified (``v0=`` signature and timestamp), authorised (``auth.test``, once, against the fake Slack API
of ``tests/fakes``, then cached) and acknowledged before the listener runs (``process_before_response``
off). It stores nothing: a delivery lost after its 200 is lost, where the hub commits every one first.
Served exactly as ``bench.bare_app`` and ``threadline serve`` are: one uvicorn process,
``uvicorn.run(app, host, port, log_config=None, proxy_headers=True)``, the product's logging at INFO.

``python -m bench.scale_bolt --host 127.0.0.1 --port N --slack-api URL`` (the signing secret and bot token
in ``BENCH_SLACK_SECRET`` and ``BENCH_SLACK_TOKEN``)
"""

from __future__ import annotations

import argparse
import os

import uvicorn
from fastapi import FastAPI, Request, Response
from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bench.signing import SLACK_PATH
from core.logs import setup_logging


def create_bolt_app(signing_secret: str, token: str, api_url: str) -> FastAPI:
    bolt = AsyncApp(signing_secret=signing_secret, client=AsyncWebClient(token=token, base_url=api_url))

    @bolt.event("message")
    async def on_message() -> None:  # acknowledged already: a real app would answer from here
        return None

    handler = AsyncSlackRequestHandler(bolt)
    api = FastAPI(title="bolt")

    @api.post(SLACK_PATH)
    async def slack_events(request: Request) -> Response:
        return await handler.handle(request)

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return api


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A slack-bolt AsyncApp that verifies and acknowledges.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--slack-api", required=True, help="the Slack Web API base URL (a local fake)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    app = create_bolt_app(os.environ["BENCH_SLACK_SECRET"], os.environ["BENCH_SLACK_TOKEN"], args.slack_api)
    # the same call as core/cli/'s ``serve`` and bench.bare_app
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, proxy_headers=True)


if __name__ == "__main__":
    main()
