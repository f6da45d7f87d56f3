"""The scale benchmark's fake LLM: ``bench.fake_llm``'s support agent, holding every call a fixed time.

``python -m bench.scale_llm --delay 0.5`` prints the ``base_url`` (``…/v1``) on its first line and serves
on 127.0.0.1 until SIGTERM. Each chat call (the reply and Mem0's extraction alike) is held ``--delay``
seconds with ``asyncio.sleep``, so calls overlap as they would at a real endpoint: a worker's turns per
second are then bounded by how many it keeps in flight, not by the fake.
"""

from __future__ import annotations

import argparse
import contextlib

from bench.fake_llm import support_responder
from tests.fakes.openai_server import FakeOpenAI


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible LLM with a fixed delay.")
    parser.add_argument("--delay", type=float, default=0.5, help="seconds each chat call is held")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    fake = FakeOpenAI(port=args.port, delay=args.delay, responder=support_responder)
    with contextlib.suppress(KeyboardInterrupt):
        fake.serve_forever(on_ready=lambda url: print(url + "/v1", flush=True))


if __name__ == "__main__":
    main()
