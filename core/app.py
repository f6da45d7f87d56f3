"""The public entry point of the web app: ``create_app(settings=None) -> FastAPI``.

The factory lives in ``core.web.app``; this name is part of the public contract (tools outside the code
base build the app in-process with ``core.app.create_app``), so it stays here.
"""

from core.web.app import create_app

__all__ = ["create_app"]
