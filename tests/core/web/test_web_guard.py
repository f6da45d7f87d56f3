"""No work before authentication, and a body limit on every route (``core.web.guard``), through the real app.

The app is served by uvicorn on loopback. The big requests are written by hand on a raw socket while the
answer is read at the same time, so a test sees how much of the body had been sent when the answer
came: a server that reads the whole body before refusing answers only after all of it.
Also: ``THREADLINE_DOCS_PUBLIC`` and ``THREADLINE_METRICS_PUBLIC``, each both ways.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.routing import APIRoute
from pydantic import SecretStr

from core.settings import Settings
from core.web.app import WEBHOOKS, create_app
from core.web.guard import ADMIN_BODY_LIMIT, DEFAULT_BODY_LIMIT
from tests.apphost import Served, app_settings, serving

TOKEN = "guard-admin-token-0123456789abcdef"
AUTH = {"authorization": f"Bearer {TOKEN}"}
HUGE = 200 * 1024 * 1024  # what the issue sent: 200 MB
CHUNK = 64 * 1024
# a server that answers from the headers has taken at most its socket buffers' worth when it answers
# (a few MiB on loopback); one that reads the body first has taken all of it
BOUNDED = HUGE // 10


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent_before_answer: int  # body bytes the client had written when the status line arrived

    def json(self) -> Any:
        return json.loads(self.body)


async def upload(
    served: Served, path: str, *, size: int, headers: dict[str, str] | None = None, chunked: bool = False
) -> Answer:
    """POST ``size`` bytes to ``path`` from a generator, reading the answer while the body is still going.

    The body is never built: 64 KiB blocks are written one after another until the answer arrives (or all
    were written); then the connection is dropped.
    """
    port = urlsplit(served.url).port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    head += [f"{name}: {value}" for name, value in (headers or {}).items()]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    sent = 0

    async def pump() -> None:
        nonlocal sent
        block = b"7" * CHUNK
        while sent < size:
            writer.write(f"{len(block):x}\r\n".encode() + block + b"\r\n" if chunked else block)
            sent += len(block)
            await writer.drain()
            await asyncio.sleep(0)  # let the server (same event loop) run between blocks
        if chunked:
            writer.write(b"0\r\n\r\n")

    pumping = asyncio.create_task(pump())
    try:
        status_line = await asyncio.wait_for(reader.readline(), timeout=120)
        sent_before_answer = sent
        fields: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            fields[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(fields.get("content-length", "0")))
    finally:
        pumping.cancel()
        writer.close()
    await asyncio.gather(pumping, return_exceptions=True)
    return Answer(int(status_line.split()[1]), fields, body, sent_before_answer)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(app_settings(tmp_path / "data", admin_token=SecretStr(TOKEN))) as app:
        yield app


# ----- authentication before the body ----------------------------------------------------------------


async def test_a_200_mb_body_without_the_token_is_refused_401_before_it_is_read(served: Served) -> None:
    for headers in ({}, {"authorization": "Bearer not-the-token"}):
        for chunked in (False, True):
            answer = await upload(
                served, "/admin/identities/link", size=HUGE, headers=headers, chunked=chunked
            )
            assert answer.status == 401, (headers, chunked, answer)
            assert answer.json() == {"detail": "a valid admin bearer token is required"}
            assert answer.headers["www-authenticate"] == "Bearer"
            assert answer.sent_before_answer < BOUNDED, (headers, chunked, answer.sent_before_answer)
    assert (await served.client.get("/healthz")).status_code == 200


async def test_with_no_token_configured_a_200_mb_body_is_refused_403_before_it_is_read(
    tmp_path: Path,
) -> None:
    async with serving(app_settings(tmp_path / "data")) as served:
        answer = await upload(served, "/admin/identities/link", size=HUGE, headers=AUTH)
    assert answer.status == 403
    assert "THREADLINE_ADMIN_TOKEN" in answer.json()["detail"]
    assert answer.sent_before_answer < BOUNDED


async def test_with_the_token_a_body_over_the_admin_limit_is_413_declared_or_streamed(served: Served) -> None:
    declared = await upload(served, "/admin/identities/link", size=HUGE, headers=AUTH)
    streamed = await upload(served, "/admin/identities/link", size=HUGE, headers=AUTH, chunked=True)
    for answer in (declared, streamed):
        assert answer.status == 413, answer
        assert "larger than" in answer.json()["detail"]
        assert answer.sent_before_answer < BOUNDED
    # just over the limit, streamed: cut off once the app has read past the limit
    just_over = await upload(
        served, "/admin/identities/link", size=ADMIN_BODY_LIMIT + CHUNK, headers=AUTH, chunked=True
    )
    assert just_over.status == 413
    # an ordinary admin call still goes through
    assert (await served.client.get("/admin/customers", headers=AUTH)).status_code == 200


async def test_every_other_path_has_a_body_limit_too(served: Served) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/no/such/path"):
        answer = await upload(served, path, size=HUGE, headers=AUTH)
        assert answer.status == 413, (path, answer)
        assert answer.sent_before_answer < BOUNDED
    small = await served.client.post("/no/such/path", content=b"x" * (DEFAULT_BODY_LIMIT // 2))
    assert small.status_code == 404  # under the limit: the app's own answer


def test_every_webhook_route_has_its_channels_limit(tmp_path: Path) -> None:
    app = create_app(app_settings(tmp_path / "data"))
    webhook_routes = {
        route.path for route in app.routes if isinstance(route, APIRoute) and "webhooks" in route.tags
    }
    assert webhook_routes == set(WEBHOOKS)


# ----- docs and metrics --------------------------------------------------------------------------------

DOCS = ("/docs", "/redoc", "/openapi.json")


@pytest.mark.parametrize("docs_public", [False, True])
@pytest.mark.parametrize("metrics_public", [False, True])
async def test_docs_and_metrics_are_private_or_public_as_set(
    tmp_path: Path, docs_public: bool, metrics_public: bool
) -> None:
    settings = app_settings(
        tmp_path / "data",
        admin_token=SecretStr(TOKEN),
        docs_public=docs_public,
        metrics_public=metrics_public,
    )
    async with serving(settings) as served:
        for path, public in [*((p, docs_public) for p in DOCS), ("/metrics", metrics_public)]:
            anonymous = await served.client.get(path)
            wrong = await served.client.get(path, headers={"authorization": "Bearer nope"})
            with_token = await served.client.get(path, headers=AUTH)
            assert with_token.status_code == 200, path
            if public:
                assert (anonymous.status_code, wrong.status_code) == (200, 200), path
            else:
                assert (anonymous.status_code, wrong.status_code) == (401, 401), path
                assert anonymous.json() == {"detail": "a valid admin bearer token is required"}
                assert anonymous.headers["www-authenticate"] == "Bearer"
        assert (await served.client.get("/healthz")).status_code == 200  # never private


async def test_private_docs_and_metrics_without_an_admin_token_are_403(tmp_path: Path) -> None:
    async with serving(app_settings(tmp_path / "data", metrics_public=False)) as served:
        for path in (*DOCS, "/metrics"):
            answer = await served.client.get(path, headers=AUTH)
            assert answer.status_code == 403, path
            assert "THREADLINE_ADMIN_TOKEN" in answer.json()["detail"]


def test_docs_are_private_and_metrics_public_by_default_and_both_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defaults = Settings(_env_file=None)
    assert (defaults.docs_public, defaults.metrics_public) == (False, True)
    monkeypatch.setenv("THREADLINE_DOCS_PUBLIC", "true")
    monkeypatch.setenv("THREADLINE_METRICS_PUBLIC", "false")
    chosen = Settings(_env_file=None)
    assert (chosen.docs_public, chosen.metrics_public) == (True, False)
    for name in ("docs_public", "metrics_public"):
        description = Settings.model_fields[name].description
        assert description and f"THREADLINE_{name.upper()}" in description
