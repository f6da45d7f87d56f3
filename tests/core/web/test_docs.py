"""The API documentation works offline (``core.web.docs``): ``/docs`` and ``/redoc`` name no URL outside the
app, and every script, style sheet and icon they load is served by the app itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.apphost import app_settings, serving

TOKEN = "docs-admin-token-0123456789abcdef"
AUTH = {"authorization": f"Bearer {TOKEN}"}
# every URL an HTML page makes the browser load or a script fetch: attributes and quoted strings
REFERENCES = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|url:\s*["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_documentation_page_loads_nothing_from_outside_the_app(tmp_path: Path, page: str) -> None:
    settings = app_settings(tmp_path / "data", admin_token=SecretStr(TOKEN))
    async with serving(settings) as served:
        html = await served.client.get(page, headers=AUTH)
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", html.text, re.IGNORECASE), html.text
        references = [a or b for a, b in REFERENCES.findall(html.text)]
        assert "/openapi.json" in references
        assets = [ref for ref in references if ref != "/openapi.json"]
        assert any(ref.endswith(".js") for ref in assets), assets
        for ref in assets:
            assert ref.startswith("/"), ref
            # the assets are Swagger UI's and ReDoc's own code: public, so a browser can load them
            answer = await served.client.get(ref)
            assert answer.status_code == 200, ref
            assert len(answer.content) > 1000, ref
        # the page itself and the schema stay behind the admin token (THREADLINE_DOCS_PUBLIC is off)
        assert (await served.client.get(page)).status_code == 401
        assert (await served.client.get("/openapi.json")).status_code == 401


async def test_the_swagger_oauth2_redirect_is_served_and_private_like_the_docs(tmp_path: Path) -> None:
    settings = app_settings(tmp_path / "data", admin_token=SecretStr(TOKEN))
    async with serving(settings) as served:
        assert (await served.client.get("/docs/oauth2-redirect")).status_code == 401
        assert (await served.client.get("/docs/oauth2-redirect", headers=AUTH)).status_code == 200
