"""Files each memory under one category by simple keyword rules.

Categories: ``special_handling`` (how to treat the customer), ``operational_state`` (orders, tickets,
appointments in flight), ``profile`` (who they are), ``support_history`` (problems they reported,
the default). A rule-based first cut: cheap, deterministic and explainable.
"""

from __future__ import annotations

import re

from core.messages import MemoryCategory

_RULES: tuple[tuple[MemoryCategory, re.Pattern[str]], ...] = (
    (
        "special_handling",
        re.compile(
            r"\b(prefer|please (don't|do not)|never (call|email|text)|only (contact|call|email|text)|"
            r"accessib\w*|deaf|blind|wheelchair|interpreter|speak (spanish|french|german|\w+ish)|vip|"
            r"lawyer|legal|complain\w* to|do not contact)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "operational_state",
        re.compile(
            r"\b(order|tracking|shipped|shipment|delivery|appointment|booking|ticket|case number|"
            r"return label|rma|pending|scheduled|reservation)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "profile",
        re.compile(
            r"\b(my name is|i am called|call me|i live|i moved|my address|my birthday|"
            r"my (email|phone|number) is|i work (at|for)|i'm a|i am a)\b",
            re.IGNORECASE,
        ),
    ),
)


def categorize(text: str) -> MemoryCategory:
    for category, pattern in _RULES:
        if pattern.search(text):
            return category
    return "support_history"
