"""The load generator of the webhook benchmark: a separate process that POSTs signed deliveries.

``python -m bench.loadgen --url http://127.0.0.1:PORT --requests N --concurrency C --id-base B`` sends
``N`` distinct deliveries (Telegram, Slack and Twilio in turn, see ``bench.signing``) from ``C``
concurrent workers over keep-alive connections, and prints one JSON line: throughput, latency summary
overall and per channel, and the HTTP statuses seen. Secrets come from the environment
(``BENCH_TELEGRAM_SECRET``, ``BENCH_SLACK_SECRET``, ``BENCH_TWILIO_TOKEN``, ``BENCH_PUBLIC_BASE_URL``).

Bounded: at most ``N`` requests and ``--max-seconds`` of sending; each request times out after 30 s.
Only loopback URLs are accepted. The client is aiohttp (it costs less CPU per request than httpx, and
the load generator shares the machine with the server it measures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp

from bench.common import summary_ms
from bench.corpus import Corpus
from bench.signing import Delivery, Secrets, delivery

REQUEST_TIMEOUT = 30.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    sent: int = 0


def secrets_from_env() -> Secrets:
    return Secrets(
        telegram_secret=os.environ["BENCH_TELEGRAM_SECRET"],
        slack_signing_secret=os.environ["BENCH_SLACK_SECRET"],
        twilio_auth_token=os.environ["BENCH_TWILIO_TOKEN"],
        public_base_url=os.environ["BENCH_PUBLIC_BASE_URL"],
    )


async def _worker(
    session: aiohttp.ClientSession,
    url: str,
    deliveries: list[Delivery],
    cursor: list[int],
    deadline: float,
    tally: Tally,
) -> None:
    while cursor[0] < len(deliveries) and time.monotonic() < deadline:
        item = deliveries[cursor[0]]
        cursor[0] += 1
        headers = item.headers_at(int(time.time()))
        started = time.perf_counter()
        try:
            async with session.post(url + item.path, data=item.body, headers=headers) as response:
                await response.read()
                status = str(response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            status = type(exc).__name__
        elapsed = time.perf_counter() - started
        tally.sent += 1
        tally.statuses[status] += 1
        if status == "200":
            tally.latencies.setdefault(item.channel, []).append(elapsed)


async def run(
    url: str, deliveries: list[Delivery], concurrency: int, max_seconds: float
) -> dict[str, object]:
    tally = Tally()
    cursor = [0]
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        deadline = time.monotonic() + max_seconds
        await asyncio.gather(
            *(_worker(session, url, deliveries, cursor, deadline, tally) for _ in range(concurrency))
        )
        wall = time.perf_counter() - started
    ok = [x for values in tally.latencies.values() for x in values]
    return {
        "concurrency": concurrency,
        "requests": tally.sent,
        "ok": len(ok),
        "wall_s": round(wall, 3),
        "throughput_rps": round(len(ok) / wall, 1) if wall > 0 else 0.0,
        "latency": summary_ms(ok),
        "by_channel": {name: summary_ms(values) for name, values in sorted(tally.latencies.items())},
        "statuses": dict(tally.statuses),
        "stopped_by_time": tally.sent < len(deliveries),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="POST signed webhook deliveries at a server on loopback.")
    parser.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--id-base", type=int, default=0, help="first serial of the provider message ids")
    parser.add_argument("--salt", default="b", help="mixed into Slack and Twilio ids (unique per run)")
    parser.add_argument("--senders", type=int, default=1000, help="distinct customers per channel")
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    host = urlsplit(args.url).hostname
    if host not in LOOPBACK:
        parser.error(f"only loopback targets are allowed, not {host!r}")
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be at least 1")
    secrets = secrets_from_env()
    corpus = Corpus(args.seed + args.id_base)
    deliveries = [
        delivery(
            i,
            id_base=args.id_base,
            salt=args.salt,
            senders=args.senders,
            text=corpus.message(),
            secrets=secrets,
        )
        for i in range(args.requests)
    ]
    result = asyncio.run(run(args.url.rstrip("/"), deliveries, args.concurrency, args.max_seconds))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
