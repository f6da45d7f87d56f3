"""The email webhook checks its signature before it decodes the form, and never stalls the event loop.

A 10 MiB form of 200,000 tiny fields takes python-multipart seconds to decode in full; the old webhook
decoded it all, on the event loop, before looking at the signature. Here the app is served by uvicorn in
the test's own event loop, so a ticker task in the test measures the loop's longest stall while such a
form is posted: wrongly signed (refused 403 from the signature fields alone), with the signature fields
after the flood (refused 401 after a bounded scan), and correctly signed (decoded in a thread: 422, no
``body-mime``). The bound is relative: the longest stall stays far below the time one full decode of
the same body takes in this process.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from channels.email_webhook import read_form
from core.settings import EmailSettings
from tests.apphost import Served, app_settings, serving
from tests.core.web.test_app_email import INBOUND_PATH, KEY, MAX_BODY_BYTES, OURS, signature_fields

BOUNDARY = "threadline-flood-boundary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def part(name: str, value: str) -> bytes:
    return f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()


def flood_form(signature: dict[str, str], *, signature_first: bool) -> bytes:
    """Just under the webhook's 10 MiB limit: the signature fields and a flood of one-byte fields."""
    signed = b"".join(part(name, value) for name, value in signature.items())
    tiny = part("x", "y")
    room = MAX_BODY_BYTES - len(signed) - 4096
    flood = tiny * (room // len(tiny))
    end = f"--{BOUNDARY}--\r\n".encode()
    body = signed + flood + end if signature_first else flood + signed + end
    assert len(body) <= MAX_BODY_BYTES
    return body


async def longest_stall(work: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    """Run ``work`` while a ticker wakes every 5 ms; the answer and the longest gap between wake-ups."""
    loop = asyncio.get_running_loop()
    gaps: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        last = loop.time()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = loop.time()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        response = await work
    finally:
        done.set()
        await ticker
    return response, max(gaps)


@pytest.fixture(autouse=True)
def frozen_heap() -> Iterator[None]:
    """The test process carries the objects of every test before this one; a full garbage collection
    over them, triggered while the form is decoded, is a stall of the test process, not of the app (it
    failed a CI run late in the suite, never alone). Frozen, they are not scanned."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    email = EmailSettings(
        address=f"Threadline Support <{OURS}>",
        smtp_host="127.0.0.1",
        smtp_port=9,  # nothing is sent in these tests
        inbound_signing_key=SecretStr(KEY),
    )
    async with serving(app_settings(tmp_path / "data", email=email)) as app:
        yield app


async def test_a_10_mib_form_is_refused_or_decoded_without_stalling_the_event_loop(served: Served) -> None:
    wrong = signature_fields(key="not-the-key")
    bodies = {
        "wrong signature first": (flood_form(wrong, signature_first=True), 403),
        "wrong signature after the flood": (flood_form(wrong, signature_first=False), 401),
        "right signature, no body-mime": (flood_form(signature_fields(), signature_first=True), 422),
    }
    # what the old webhook did on the event loop before it looked at the signature, once per body
    started = time.perf_counter()
    read_form(bodies["wrong signature first"][0], CONTENT_TYPE)
    full_decode = time.perf_counter() - started

    stalls: dict[str, float] = {}
    answers: dict[str, int] = {}
    for label, (body, _) in bodies.items():
        post = served.client.post(INBOUND_PATH, content=body, headers={"content-type": CONTENT_TYPE})
        response, stalls[label] = await longest_stall(post)
        answers[label] = response.status_code
        assert (await served.client.get("/healthz")).status_code == 200

    # generous: a stall of a quarter of one full decode would already be a loop blocked by the form
    assert max(stalls.values()) < full_decode / 4, (stalls, full_decode)
    assert statistics.median(stalls.values()) < full_decode / 8, (stalls, full_decode)
    assert answers == {label: expected for label, (_, expected) in bodies.items()}
    assert await served.inbox_rows() == 0
