"""The benchmarks' fake LLM: answers at once, like a support agent for replies and like Mem0's extractor.

``support_responder`` plugs into ``tests.fakes.openai_server.FakeOpenAI(responder=...)``:

- a chat call (the agent's reply) gets :func:`bench.corpus.reply_to` of the customer's last message;
- an extraction call (``response_format={"type": "json_object"}``, Mem0's ``add`` with ``infer=True``)
  gets ``{"memory": [...]}`` with one memory per ``user:`` line of the "New Messages" section, so that
  Mem0 stores a fact as it would with a real model (instead of failing over to storing the turn as is).
"""

from __future__ import annotations

import json
from typing import Any

from bench.corpus import reply_to

_NEW_MESSAGES = "## New Messages"
MAX_FACT_CHARS = 200


def _contents(request_json: dict[str, Any], role: str) -> list[str]:
    messages = request_json.get("messages")
    if not isinstance(messages, list):
        return []
    return [
        m["content"]
        for m in messages
        if isinstance(m, dict) and m.get("role") == role and isinstance(m.get("content"), str)
    ]


def extracted_facts(prompt: str) -> list[str]:
    """The customer's lines of the "New Messages" section of Mem0's extraction prompt."""
    _, found, rest = prompt.partition(_NEW_MESSAGES)
    if not found:
        return []
    section = rest.split("\n## ", 1)[0]
    facts = []
    for line in section.splitlines():
        if line.startswith("user: "):
            text = " ".join(line[len("user: ") :].split())
            if text:
                facts.append(text[:MAX_FACT_CHARS])
    return facts


def support_responder(request_json: dict[str, Any]) -> str:
    response_format = request_json.get("response_format")
    users = _contents(request_json, "user")
    if isinstance(response_format, dict) and response_format.get("type") == "json_object":
        facts = extracted_facts(users[-1]) if users else []
        memories = [{"id": str(i), "text": fact, "attributed_to": "user"} for i, fact in enumerate(facts)]
        return json.dumps({"memory": memories})
    last = users[-1] if users else ""
    if last.startswith("[via ") and "] " in last:
        last = last.split("] ", 1)[1]
    return reply_to(last)
