"""The API documentation pages, served offline: ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc).

FastAPI's own pages load their JavaScript, CSS, favicon and fonts from CDNs, so a hub without internet
access (or behind a strict proxy) shows a blank page. Here the assets come from the ``fastapi-offline``
wheel (Swagger UI 5, ReDoc 2) and are served by the app at ``ASSETS_URL``, with FastAPI's self-hosting
recipe (``get_swagger_ui_html`` / ``get_redoc_html`` with local URLs, no Google fonts): the pages name no
URL outside the app.

The pages and ``/openapi.json`` keep their paths (``PAGES``), which ``core.web.app`` keeps behind the admin
token unless ``THREADLINE_DOCS_PUBLIC``; the assets are Swagger UI's and ReDoc's own code, nothing of
ours, and stay public so that a browser can load them for the page.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
ASSETS_URL = "/docs-assets"


def _assets_dir() -> Path:
    return Path(str(files("fastapi_offline") / "static"))  # an installed wheel is a folder on disk


def add_docs(app: FastAPI) -> tuple[str, ...]:
    """Serve ``/docs`` and ``/redoc`` from local assets on ``app`` (made with ``docs_url=None`` and
    ``redoc_url=None``). Returns the documentation paths: the pages, the OAuth2 redirect, the schema."""
    assert app.openapi_url is not None and app.swagger_ui_oauth2_redirect_url is not None
    openapi_url, oauth2_url = app.openapi_url, app.swagger_ui_oauth2_redirect_url
    app.mount(ASSETS_URL, StaticFiles(directory=_assets_dir()), name="docs-assets")

    def asset(request: Request, name: str) -> str:
        return f"{request.scope.get('root_path', '')}{ASSETS_URL}/{name}"

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=f"{request.scope.get('root_path', '')}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=oauth2_url,
            swagger_js_url=asset(request, "swagger-ui-bundle.js"),
            swagger_css_url=asset(request, "swagger-ui.css"),
            swagger_favicon_url=asset(request, "favicon.png"),
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    @app.get(oauth2_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=f"{request.scope.get('root_path', '')}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=asset(request, "redoc.standalone.js"),
            redoc_favicon_url=asset(request, "favicon.png"),
            with_google_fonts=False,
        )

    return (openapi_url, DOCS_URL, oauth2_url, REDOC_URL)
