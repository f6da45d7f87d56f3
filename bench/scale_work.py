"""What parts 2 and 3 of ``bench.scale`` share: worker processes, the backlog in the database, messages
made by the real Telegram adapter, and the Prometheus histogram of a worker's ``/metrics``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from bench import scale_pg
from bench.procs import HOST, Child, free_port, python_cmd, started, threadline_cmd, wait_http
from bench.signing import TELEGRAM_PATH, Secrets, telegram
from channels.base import ChannelAdapter, WebhookRequest
from core.compose import build_adapters
from core.messages import InboundMessage
from core.settings import Settings, TelegramSettings
from core.store.db import Database
from tests.fakes.telegram_api import DEFAULT_TOKEN as TELEGRAM_TOKEN

SECRETS = Secrets(
    telegram_secret=scale_pg.TELEGRAM_SECRET,
    slack_signing_secret="",
    twilio_auth_token="",
    public_base_url="",
)
PENDING_SQL = {
    table: text(f"SELECT count(*) FROM {table} WHERE status = 'pending'")  # noqa: S608 - fixed names
    for table in ("inbox", "outbox", "memory_jobs")
}

Buckets = list[tuple[float, float]]


# ----- /metrics ------------------------------------------------------------------------------------


def histogram(metrics_text: str, name: str) -> Buckets:
    """The cumulative buckets ``(le, count)`` of histogram ``name``, summed over its label sets, ``+Inf``
    last."""
    found: dict[float, float] = {}
    prefix = f"{name}_bucket{{"
    for line in metrics_text.splitlines():
        if not line.startswith(prefix):
            continue
        labels, _, value = line.rpartition(" ")
        le = labels.split('le="', 1)[1].split('"', 1)[0]
        bound = math.inf if le == "+Inf" else float(le)
        found[bound] = found.get(bound, 0.0) + float(value)
    return sorted(found.items())


def minus(after: Buckets, before: Buckets) -> Buckets:
    """The observations between two scrapes of the same histogram."""
    earlier = dict(before)
    return [(le, count - earlier.get(le, 0.0)) for le, count in after]


def quantile(buckets: Buckets, q: float) -> float | None:
    """The ``q`` quantile (0-1) as Prometheus's ``histogram_quantile`` estimates it: linear within the
    bucket it falls in; the highest finite bound if it falls in ``+Inf``; None without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def scrape(url: str) -> str:
    return httpx.get(url + "/metrics", timeout=10).text


def counter_sum(metrics_text: str, name: str) -> float:
    """The sum of every series of counter ``name`` (``name_total{…} v`` lines)."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith((f"{name}_total{{", f"{name}_total ")):
            total += float(line.rpartition(" ")[2])
    return total


# ----- processes -----------------------------------------------------------------------------------


def start_fakes(
    stack: ExitStack, work: Path, llm_delay: float, *, arrivals: bool = False
) -> dict[str, Child]:
    """The fake Slack and Telegram APIs and the fake LLM, each its own process; name → process (its
    first line, the URL to configure, is read into ``urls``)."""
    telegram_cmd = python_cmd("bench.fake_servers", "telegram", *(["--arrivals"] if arrivals else []))
    return {
        "slack": stack.enter_context(
            started("fake-slack", python_cmd("bench.fake_servers", "slack"), log_dir=work)
        ),
        "telegram": stack.enter_context(started("fake-telegram", telegram_cmd, log_dir=work)),
        "llm": stack.enter_context(
            started("fake-llm", python_cmd("bench.scale_llm", "--delay", str(llm_delay)), log_dir=work)
        ),
    }


def serve(
    stack: ExitStack,
    work: Path,
    name: str,
    role: str,
    env: dict[str, str],
    *,
    module: str | None = None,
) -> tuple[str, Child]:
    """``threadline serve --role ROLE`` (or ``python -m module serve …``) up and ready; its base URL and
    its process."""
    port = free_port()
    args = ("serve", "--role", role, "--host", HOST, "--port", str(port))
    cmd = python_cmd(module, *args) if module else threadline_cmd(*args)
    child = stack.enter_context(started(name, cmd, log_dir=work, env=env))
    url = f"http://{HOST}:{port}"
    wait_http(url + "/readyz", child)
    return url, child


# ----- the database --------------------------------------------------------------------------------


async def pending(db: Database) -> dict[str, int]:
    async with db.read() as session:
        return {table: int(await session.scalar(sql) or 0) for table, sql in PENDING_SQL.items()}


async def wait_idle(db: Database, bound_s: float) -> tuple[float, dict[str, int]]:
    """Wait (bounded) until no inbox row, reply or memory job is pending; seconds taken and what is left."""
    import asyncio

    started_at = time.monotonic()
    left = await pending(db)
    while any(left.values()) and time.monotonic() - started_at < bound_s:
        await asyncio.sleep(0.25)
        left = await pending(db)
    return round(time.monotonic() - started_at, 2), left


def telegram_settings(database_url: str, data_dir: Path) -> Settings:
    return Settings(
        _env_file=None,  # read no .env: the settings are all given here
        data_dir=data_dir,
        database_url=database_url,
        telegram=TelegramSettings(
            bot_token=TELEGRAM_TOKEN, secret_token=scale_pg.TELEGRAM_SECRET, api_base_url="http://127.0.0.1:9"
        ),
    )


async def messages(
    settings: Settings, chats: Sequence[int], texts: Sequence[str], first_update: int
) -> list[InboundMessage]:
    """One Telegram message per chat (in order), verified and parsed by the product's adapter as the
    webhook route would hand it to the inbox."""
    adapter = build_adapters(settings)["telegram"]
    assert isinstance(adapter, ChannelAdapter)
    made = []
    for i, (chat, said) in enumerate(zip(chats, texts, strict=True)):
        delivery = telegram(first_update + i, chat, said, SECRETS)
        request = WebhookRequest(
            method="POST",
            path=TELEGRAM_PATH,
            query_string="",
            headers=delivery.headers_at(int(time.time())),
            body=delivery.body,
        )
        await adapter.verify(request)
        made.extend((await adapter.parse(request)).messages)
    return made


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Median and p95 (and count) of seconds, in milliseconds."""
    from bench.common import percentile

    if not values:
        return {"n": 0}
    ms = [v * 1000 for v in values]
    return {"n": len(ms), "p50_ms": round(percentile(ms, 50), 2), "p95_ms": round(percentile(ms, 95), 2)}
