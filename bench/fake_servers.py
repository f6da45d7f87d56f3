"""The fake platforms, LLM and hosted Mem0 of ``tests/fakes``, each runnable as its own process.

``python -m bench.fake_servers KIND [--port N] [options]`` prints the URL to configure on its first line
and serves on 127.0.0.1 until SIGTERM / SIGINT:

- ``telegram`` (``--token``; prints the ``api_base_url``, ``…/bot``). With ``--arrivals`` it then prints
  one JSON line per ``sendMessage`` that reaches it: ``{"chat_id": …, "t": time.monotonic()}``, taken
  when the request has been read. ``time.monotonic`` is the system-wide ``CLOCK_MONOTONIC`` on Linux,
  so the benchmark process can subtract its own monotonic times from it.
- ``slack`` (``--token``; prints ``…/api/``), ``twilio`` (``--account-sid``, ``--auth-token``; prints the
  base URL), ``mem0`` (``--api-key``; prints the host) and ``llm`` (prints ``…/v1``; answers at once
  with :func:`bench.fake_llm.support_responder`).

Running each fake in its own process keeps its work off the measured process's interpreter lock.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from typing import Any

from bench.fake_llm import support_responder
from tests.fakes.mem0_platform import FakeMem0Platform
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.server import LoopbackServer
from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.telegram_api import DEFAULT_TOKEN as TELEGRAM_TOKEN
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.twilio_api import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, FakeTwilioAPI

SLACK_TOKEN = "xoxb-fake-token"  # noqa: S105 - the fake's own token
MEM0_KEY = "m0-bench-key"


class TimedTelegramAPI(FakeTelegramAPI):
    """``FakeTelegramAPI`` that prints the monotonic time at which each ``sendMessage`` arrives."""

    def _send_message(self, params: dict[str, Any]) -> tuple[int, Any]:
        arrived = time.monotonic()
        status, result = super()._send_message(params)
        if status == 200:
            line = json.dumps({"chat_id": params.get("chat_id"), "t": arrived})
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        return status, result


def _build(args: argparse.Namespace) -> tuple[LoopbackServer, str]:
    """The fake named by ``args.kind`` and the suffix that turns its URL into the one to configure."""
    if args.kind == "telegram":
        cls = TimedTelegramAPI if args.arrivals else FakeTelegramAPI
        return cls(port=args.port, token=args.token or TELEGRAM_TOKEN), "/bot"
    if args.kind == "slack":
        return FakeSlackAPI(port=args.port, token=args.token or SLACK_TOKEN), "/api/"
    if args.kind == "twilio":
        return FakeTwilioAPI(port=args.port, account_sid=args.account_sid, auth_token=args.auth_token), ""
    if args.kind == "mem0":
        return FakeMem0Platform(port=args.port, api_key=args.api_key), ""
    return FakeOpenAI(port=args.port, responder=support_responder), "/v1"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake platform, LLM or hosted Mem0 on 127.0.0.1.")
    parser.add_argument("kind", choices=["telegram", "slack", "twilio", "mem0", "llm"])
    parser.add_argument("--port", type=int, default=0, help="port to bind (0 = a free port)")
    parser.add_argument("--token", default=None, help="bot token (telegram, slack)")
    parser.add_argument("--arrivals", action="store_true", help="telegram: print each sendMessage arrival")
    parser.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID, help="twilio account SID")
    parser.add_argument("--auth-token", default=DEFAULT_AUTH_TOKEN, help="twilio auth token")
    parser.add_argument("--api-key", default=MEM0_KEY, help="hosted Mem0 API key")
    args = parser.parse_args(argv)
    fake, suffix = _build(args)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises SIGINT after a clean shutdown
        fake.serve_forever(on_ready=lambda url: print(url + suffix, flush=True))


if __name__ == "__main__":
    main()
