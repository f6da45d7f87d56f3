"""The baseline of the webhook benchmark: a bare FastAPI app whose webhook routes only return 200.

It is served exactly as ``threadline serve`` serves the hub (``core/cli/``): one process,
``uvicorn.run(app, host=..., port=..., log_config=None, proxy_headers=True)`` with uvicorn's defaults for
loop and HTTP implementation, and the same logging set-up (``core.logs.setup_logging``, INFO, so
uvicorn's access log costs the same on both). ``GET /healthz`` is there to know when it is up.

``python -m bench.bare_app --host 127.0.0.1 --port N``
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI, Response

from bench.signing import SLACK_PATH, TELEGRAM_PATH, TWILIO_PATH
from core.logs import setup_logging


def create_bare_app() -> FastAPI:
    app = FastAPI(title="bare")

    async def ok() -> Response:
        return Response(status_code=200)

    for path in (TELEGRAM_PATH, SLACK_PATH, TWILIO_PATH):
        app.add_api_route(path, ok, methods=["POST"])

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A bare FastAPI app served like `threadline serve`.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    # the same call as core/cli/'s ``serve``
    uvicorn.run(create_bare_app(), host=args.host, port=args.port, log_config=None, proxy_headers=True)


if __name__ == "__main__":
    main()
