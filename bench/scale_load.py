"""The load generator of the scale benchmark: signed Slack Events API deliveries only.

``bench.loadgen`` rotates Telegram, Slack and Twilio; the peer of this benchmark (a slack-bolt app) only
speaks Slack, so every server here gets the same Slack deliveries: ``message.im`` events, each with its
own ``event_id``, signed ``v0=`` at the moment they are sent (``bench.signing.slack``). The sending loop
and the JSON line it prints are ``bench.loadgen``'s.

``python -m bench.scale_load --url http://127.0.0.1:PORT --requests N --concurrency C --id-base B``
(the signing secret in ``BENCH_SLACK_SECRET``). Only loopback URLs; bounded by ``--requests`` and
``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from urllib.parse import urlsplit

from bench.corpus import Corpus
from bench.loadgen import LOOPBACK, run
from bench.signing import Delivery, Secrets, slack


def slack_deliveries(
    count: int, *, id_base: int, salt: str, senders: int, secret: str, corpus: Corpus
) -> list[Delivery]:
    """``count`` distinct Slack DM events from ``senders`` customers in turn; ids unique per
    ``(id_base, salt, index)``."""
    secrets = Secrets(
        telegram_secret="", slack_signing_secret=secret, twilio_auth_token="", public_base_url=""
    )
    made = []
    for index in range(count):
        serial = id_base + index
        ts = f"{1_700_000_000 + serial // 1_000_000}.{serial % 1_000_000:06d}"
        user = index % max(1, senders)
        made.append(slack(f"Ev{salt}{serial:012d}", user, corpus.message(), ts, secrets))
    return made


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="POST signed Slack events at a server on loopback.")
    parser.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--id-base", type=int, default=0, help="first serial of the event ids")
    parser.add_argument("--salt", default="s", help="mixed into the event ids (unique per run)")
    parser.add_argument("--senders", type=int, default=10_000, help="distinct customers")
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    host = urlsplit(args.url).hostname
    if host not in LOOPBACK:
        parser.error(f"only loopback targets are allowed, not {host!r}")
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be at least 1")
    deliveries = slack_deliveries(
        args.requests,
        id_base=args.id_base,
        salt=args.salt,
        senders=args.senders,
        secret=os.environ["BENCH_SLACK_SECRET"],
        corpus=Corpus(args.seed + args.id_base),
    )
    result = asyncio.run(run(args.url.rstrip("/"), deliveries, args.concurrency, args.max_seconds))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
