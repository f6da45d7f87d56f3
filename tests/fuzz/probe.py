"""One fuzz request through the real app, and the two properties every answer must keep.

- never a 5xx;
- a refused request (4xx) leaves the inbox exactly as it was, and an unauthenticated one is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.apphost import Served
from tests.fuzz.conftest import record

FIXTURES = Path(__file__).resolve().parent.parent / "channels" / "fixtures"
REFUSED_UNAUTHENTICATED = frozenset({401, 403, 413})  # 413: the size limit is checked before anything


async def probe(
    served: Served,
    target: str,
    path: str,
    *,
    content: bytes,
    headers: dict[str, Any],
    authentic: bool | None,
) -> httpx.Response:
    """POST ``content`` to ``path``; assert the properties; count the example under ``target``.

    ``authentic=None``: the signature may or may not have survived the mutation; only the first two
    properties are checked.
    """
    before = await served.inbox_rows()
    response = await served.client.post(path, content=content, headers=headers)
    status = response.status_code
    record(target, status)
    assert status < 500, f"{target}: {status} for {content[:300]!r} with {headers!r}"
    if status >= 400:
        assert await served.inbox_rows() == before, f"{target}: a refused ({status}) request stored a row"
    if authentic is False:
        assert status in REFUSED_UNAUTHENTICATED, f"{target}: unauthenticated request answered {status}"
    return response
