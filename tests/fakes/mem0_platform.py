"""A fake hosted-Mem0 REST API: a real HTTP server on 127.0.0.1, for tests.

::

    with FakeMem0Platform(api_key="m0-test") as fake:
        memory = PlatformMemory(api_key=SecretStr("m0-test"), host=fake.url, data_dir=tmp_path)
        ...
        assert fake.requests[-1]["path"] == "/v3/memories/search/"
        fake.push(500, path="/v3/memories/add/")   # the next add fails

It serves what ``mem0.AsyncMemoryClient`` (mem0ai 2.2) calls: ``GET /v1/ping/`` (its constructor),
``POST /v3/memories/add/``, ``POST /v3/memories/search/``, ``POST /v3/memories/`` (get_all, paginated
with ``page`` / ``page_size``), ``DELETE /v1/memories/`` (delete_all, scope in the query string),
``GET`` / ``DELETE /v1/memories/{id}/``. Every route wants ``Authorization: Token <api_key>`` (401
otherwise). Memories live in a dict; every read and delete needs a ``user_id`` / ``agent_id`` /
``run_id`` / ``app_id`` and only ever sees that scope.

Like the real service, ``add`` queues: it answers ``{"status": "PENDING", "event_id": ...}`` (set
``sync_add = True`` for the older ``{"results": [...]}`` answer). An add's ``timestamp`` (unix
seconds) becomes the memory's ``created_at``. The fake "extracts" synchronously:
with ``infer`` each user message becomes one memory (assistant lines are context only); without it,
each user and assistant message is stored as it is.
"""

from __future__ import annotations

import collections
import re
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.server import LoopbackServer

SCOPE_KEYS = ("user_id", "agent_id", "run_id", "app_id")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True, kw_only=True)
class _Forced:
    status: int
    body: Any
    path: str | None


@dataclass(slots=True, kw_only=True)
class StoredMemory:
    id: str
    memory: str
    scope: dict[str, str]
    metadata: dict[str, Any] = field(default_factory=dict)
    role: str = "user"
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def as_json(self, score: float | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": self.id,
            "memory": self.memory,
            **self.scope,
            "metadata": dict(self.metadata),
            "categories": [],
            "created_at": self.created_at,
            "updated_at": self.created_at,
        }
        if score is not None:
            item["score"] = score
        return item


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def _matches(memory: StoredMemory, condition: Mapping[str, Any]) -> bool:
    """The subset of Mem0's v2/v3 filter language the fake understands; anything else matches nothing."""
    for key, expected in condition.items():
        if key in ("AND", "OR"):
            if not isinstance(expected, list):
                return False
            parts = [_matches(memory, c) for c in expected if isinstance(c, dict)]
            if not (all(parts) if key == "AND" else any(parts)):
                return False
        elif key in SCOPE_KEYS:
            if expected == "*":
                if key not in memory.scope:
                    return False
            elif memory.scope.get(key) != str(expected):
                return False
        elif key == "metadata":
            if not isinstance(expected, dict):
                return False
            for meta_key, value in expected.items():
                actual = memory.metadata.get(meta_key)
                if not (actual == value or (isinstance(actual, list) and value in actual)):
                    return False
        else:
            return False
    return True


def _scoped(condition: Mapping[str, Any]) -> bool:
    """True when the filters pin at least one scope key to a value at their top level (or under AND)."""
    if any(isinstance(condition.get(k), str) and condition.get(k) != "*" for k in SCOPE_KEYS):
        return True
    parts = condition.get("AND")
    return isinstance(parts, list) and any(isinstance(p, dict) and _scoped(p) for p in parts)


class FakeMem0Platform(LoopbackServer):
    """Hosted Mem0 on ``127.0.0.1:port`` (0 = a free port). ``url`` is what ``MemorySettings.host`` takes.

    Observations: ``requests`` (method, path, query, json and auth of every call), ``memories``.
    Knobs: ``push(status, body, path=...)`` queues one forced answer, ``sync_add``, ``hold_adds`` (adds
    stay queued, invisible, until ``release_adds()``).
    """

    def __init__(self, *, api_key: str = "m0-test-key", port: int = 0) -> None:
        super().__init__(port=port)
        self.api_key = api_key
        self.sync_add = False
        self.hold_adds = False
        self._held: list[StoredMemory] = []
        self._lock = threading.Lock()
        self._memories: dict[str, StoredMemory] = {}
        self._requests: list[dict[str, Any]] = []
        self._forced: collections.deque[_Forced] = collections.deque()
        self.app = Starlette(
            routes=[
                Route("/v1/ping/", self._ping, methods=["GET"]),
                Route("/v3/memories/add/", self._add, methods=["POST"]),
                Route("/v3/memories/search/", self._search, methods=["POST"]),
                Route("/v3/memories/", self._get_all, methods=["POST"]),
                Route("/v1/memories/", self._delete_all, methods=["DELETE"]),
                Route("/v1/memories/{memory_id}/", self._one, methods=["GET", "DELETE"]),
            ]
        )

    # ----- knobs and observations ------------------------------------------------------------

    def push(self, status: int = 500, body: Any = None, *, path: str | None = None, times: int = 1) -> None:
        """Queue ``times`` forced answers, for the next calls to ``path`` (any path when None)."""
        with self._lock:
            self._forced.extend([_Forced(status=status, body=body, path=path)] * times)

    def release_adds(self) -> None:
        """Store the memories of the adds held while ``hold_adds`` was set (the platform's queue ran)."""
        with self._lock:
            for memory in self._held:
                self._memories[memory.id] = memory
            self._held.clear()

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._requests)

    @property
    def memories(self) -> list[StoredMemory]:
        with self._lock:
            return list(self._memories.values())

    # ----- plumbing --------------------------------------------------------------------------

    async def _enter(self, request: Request) -> tuple[Response | None, dict[str, Any]]:
        """Record the call, check the key, serve a forced answer; returns (early response, JSON body)."""
        raw = await request.body()
        try:
            body = await request.json() if raw else {}
        except ValueError:
            body = None
        with self._lock:
            self._requests.append(
                {
                    "method": request.method,
                    "path": request.url.path,
                    "query": dict(request.query_params),
                    "json": body,
                    "authorization": request.headers.get("authorization"),
                }
            )
            if request.headers.get("authorization") != f"Token {self.api_key}":
                return JSONResponse({"detail": "Invalid API key"}, status_code=401), {}
            forced = next((f for f in self._forced if f.path in (None, request.url.path)), None)
            if forced is not None:
                self._forced.remove(forced)
        if forced is not None:
            content = forced.body if forced.body is not None else {"detail": f"forced {forced.status}"}
            if isinstance(content, str | bytes):
                return Response(content, status_code=forced.status, media_type="application/json"), {}
            return JSONResponse(content, status_code=forced.status), {}
        if not isinstance(body, dict):
            return JSONResponse({"detail": "body must be a JSON object"}, status_code=400), {}
        return None, body

    @staticmethod
    def _unscoped() -> Response:
        return JSONResponse(
            {"detail": "filters must contain at least one of user_id, agent_id, app_id, run_id"},
            status_code=400,
        )

    # ----- routes ----------------------------------------------------------------------------

    async def _ping(self, request: Request) -> Response:
        early, _ = await self._enter(request)
        if early is not None:
            return early
        return JSONResponse(
            {"status": "ok", "org_id": "org-fake", "project_id": "proj-fake", "user_email": None}
        )

    async def _add(self, request: Request) -> Response:
        early, body = await self._enter(request)
        if early is not None:
            return early
        raw_filters = body.get("filters")
        filters: dict[str, Any] = raw_filters if isinstance(raw_filters, dict) else {}
        scope = {k: str(body.get(k) or filters.get(k)) for k in SCOPE_KEYS if body.get(k) or filters.get(k)}
        messages = body.get("messages")
        if not scope:
            return self._unscoped()
        if not isinstance(messages, list):
            return JSONResponse({"detail": "messages must be a list"}, status_code=400)
        raw_metadata = body.get("metadata")
        metadata: dict[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
        infer = body.get("infer", True) is not False
        timestamp = body.get("timestamp")
        created = (
            {"created_at": datetime.fromtimestamp(timestamp, UTC).isoformat()}
            if isinstance(timestamp, int | float) and not isinstance(timestamp, bool)
            else {}
        )
        added: list[StoredMemory] = []
        for message in messages:
            if not isinstance(message, dict) or not isinstance(message.get("content"), str):
                continue
            role = str(message.get("role", "user"))
            if role == "system" or (infer and role != "user"):
                continue
            added.append(
                StoredMemory(
                    id=str(uuid.uuid4()),
                    memory=message["content"],
                    scope=scope,
                    metadata=dict(metadata),
                    role=role,
                    **created,
                )
            )
        with self._lock:
            if self.hold_adds:
                self._held.extend(added)
            else:
                for memory in added:
                    self._memories[memory.id] = memory
        if self.sync_add:
            return JSONResponse(
                {"results": [{"id": m.id, "memory": m.memory, "event": "ADD"} for m in added]}
            )
        return JSONResponse(
            {
                "message": "Memory processing has been queued for background execution",
                "status": "PENDING",
                "event_id": str(uuid.uuid4()),
            }
        )

    async def _search(self, request: Request) -> Response:
        early, body = await self._enter(request)
        if early is not None:
            return early
        filters = body.get("filters")
        query = body.get("query")
        if not isinstance(filters, dict) or not _scoped(filters):
            return self._unscoped()
        if not isinstance(query, str) or not query.strip():
            return JSONResponse({"detail": "query is required"}, status_code=400)
        top_k = body.get("top_k") if isinstance(body.get("top_k"), int) else 10
        wanted = _words(query)
        with self._lock:
            scoped = [m for m in self._memories.values() if _matches(m, filters)]
        scored = []
        for memory in scoped:
            words = _words(memory.memory)
            union = wanted | words
            scored.append((len(wanted & words) / len(union) if union else 0.0, memory))
        scored.sort(key=lambda pair: pair[0], reverse=True)
        return JSONResponse({"results": [m.as_json(score) for score, m in scored[:top_k]]})

    async def _get_all(self, request: Request) -> Response:
        early, body = await self._enter(request)
        if early is not None:
            return early
        filters = body.get("filters")
        if not isinstance(filters, dict) or not _scoped(filters):
            return self._unscoped()
        try:
            page = max(int(request.query_params.get("page", "1")), 1)
            page_size = max(int(request.query_params.get("page_size", "100")), 1)
        except ValueError:
            return JSONResponse({"detail": "page and page_size must be integers"}, status_code=400)
        with self._lock:
            scoped = [m for m in self._memories.values() if _matches(m, filters)]
        scoped.sort(key=lambda m: m.created_at, reverse=True)
        chunk = scoped[(page - 1) * page_size : page * page_size]
        more = page * page_size < len(scoped)
        return JSONResponse(
            {
                "count": len(scoped),
                "next": f"{self.url}/v3/memories/?page={page + 1}&page_size={page_size}" if more else None,
                "previous": f"{self.url}/v3/memories/?page={page - 1}&page_size={page_size}"
                if page > 1
                else None,
                "results": [m.as_json() for m in chunk],
            }
        )

    async def _delete_all(self, request: Request) -> Response:
        early, _ = await self._enter(request)
        if early is not None:
            return early
        scope = {k: v for k, v in request.query_params.items() if k in SCOPE_KEYS and v}
        if not scope:
            return self._unscoped()
        with self._lock:
            doomed = [
                i for i, m in self._memories.items() if all(m.scope.get(k) == v for k, v in scope.items())
            ]
            for memory_id in doomed:
                del self._memories[memory_id]
        return JSONResponse({"message": "Memories deleted successfully!"})

    async def _one(self, request: Request) -> Response:
        early, _ = await self._enter(request)
        if early is not None:
            return early
        memory_id = request.path_params["memory_id"]
        with self._lock:
            memory = self._memories.get(memory_id)
            if memory is not None and request.method == "DELETE":
                del self._memories[memory_id]
        if memory is None:
            return JSONResponse({"detail": "Memory not found"}, status_code=404)
        if request.method == "DELETE":
            return JSONResponse({"message": "Memory deleted successfully!"})
        return JSONResponse(memory.as_json())
