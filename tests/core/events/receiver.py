"""``Receiver``: the business's side of event webhooks, a real HTTP server on 127.0.0.1.

It checks every delivery's Standard Webhooks signature with the endpoint's secret (the ``standardwebhooks``
package's ``Webhook.verify``, as a receiver would), records what came, and answers as told per path: ``ok``
(204), ``fail`` (500), ``fail_once`` (500 to the first delivery of each ``webhook-id``, then 204, as a
receiver that restarted), ``slow`` (204 after holding the request ``hold`` seconds), ``redirect`` (302 to
``/moved``, which records a hit if ever followed). A delivery whose signature does not verify is answered
401 and recorded as forged.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes.server import LoopbackServer


@dataclass(frozen=True)
class Received:
    path: str
    webhook_id: str
    body: bytes
    verified: bool
    answered: int

    @property
    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


class Receiver(LoopbackServer):
    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[str, str] = {}
        self.modes: dict[str, str] = {}
        self.received: list[Received] = []
        self.moved_hits = 0
        self.arrived = 0  # requests that reached the handler (counted before any answer)
        self.hold = 0.5
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/{path:path}", self._hook, methods=["POST"])])

    def url_for(self, path: str) -> str:
        return f"{self.url}{path}"

    def at(self, path: str, event_type: str | None = None) -> list[Received]:
        with self._lock:
            return [
                r
                for r in self.received
                if r.path == path and (event_type is None or (r.verified and r.payload["type"] == event_type))
            ]

    async def _hook(self, request: Request) -> Response:
        path = request.url.path
        body = await request.body()
        with self._lock:
            self.arrived += 1
            mode = self.modes.get(path, "ok")
        if mode == "slow":
            await asyncio.sleep(self.hold)
        if path == "/moved":
            with self._lock:
                self.moved_hits += 1
            return Response(status_code=204)
        secret = self.secrets.get(path)
        try:
            if secret is None:
                raise WebhookVerificationError("no secret for this path")
            Webhook(secret).verify(body, dict(request.headers))
            verified = True
        except WebhookVerificationError:
            verified = False
        msg_id = request.headers.get("webhook-id", "")
        with self._lock:
            mode = self.modes.get(path, "ok")
            seen = any(r.webhook_id == msg_id and r.path == path for r in self.received)
            if not verified:
                code = 401
            elif mode == "fail" or (mode == "fail_once" and not seen):
                code = 500
            elif mode == "redirect":
                code = 302
            else:
                code = 204
            self.received.append(Received(path, msg_id, body, verified, code))
        headers = {"location": "/moved"} if code == 302 else None
        return Response(status_code=code, headers=headers)
