"""Offline mode: plain template replies when no LLM is configured.

They cannot understand the message, but they show what memory recalled, so anyone can see the hub
remember a customer across sessions and channels without an account anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.agent.prompt import CaseNote, history_mark
from core.messages import MemoryRecord

MAX_SHOWN = 3
_PREAMBLE = "(Offline mode: no language model is configured, so this is a template reply.)"


def offline_reply(memories: Sequence[MemoryRecord], cases: Sequence[CaseNote] = ()) -> str:
    """The template reply; a memory of a resolved case says so (it is history, not a current problem)."""
    if not memories:
        return f"{_PREAMBLE} Thanks, I have noted your message. I don't remember anything else about you yet."
    lines = [f"{_PREAMBLE} Thanks, I have noted your message. Here is what I remember from before:"]
    for memory in memories[:MAX_SHOWN]:
        when = memory.when.date().isoformat() if memory.when else "earlier"
        via = memory.channel or "another channel"
        text = " ".join(memory.text.split())
        if len(text) > 200:
            text = text[:199] + "…"
        mark = history_mark(memory, cases)
        lines.append(f"- {mark + ' ' if mark else ''}{text} ({via}, {when})")
    return "\n".join(lines)
