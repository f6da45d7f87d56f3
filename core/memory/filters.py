"""Mem0's filter dictionaries, evaluated against a stored payload.

Mem0 hands a vector store filters such as ``{"user_id": "c1"}``, ``{"category": "profile"}``,
``{"score": {"gte": 3}}``, ``{"tag": "*"}`` and, after its own rewriting, ``{"$or": [...]}`` /
``{"$not": [...]}``. Equality against a list-valued payload field (our ``message_ids``, ``turn_ids``)
matches when the list contains the value. Anything unknown matches nothing: a filter we do not
understand must never widen a result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SCOPE_KEYS = ("user_id", "agent_id", "run_id")


def _equals(actual: Any, expected: Any) -> bool:
    if isinstance(actual, list) and not isinstance(expected, list):
        return expected in actual
    return bool(actual == expected)


def _compare(actual: Any, op: str, expected: Any) -> bool:
    try:
        if op == "eq":
            return _equals(actual, expected)
        if op == "ne":
            return not _equals(actual, expected)
        if op == "in":
            return isinstance(expected, list) and any(_equals(actual, e) for e in expected)
        if op == "nin":
            return isinstance(expected, list) and not any(_equals(actual, e) for e in expected)
        if op == "gt":
            return actual is not None and bool(actual > expected)
        if op == "gte":
            return actual is not None and bool(actual >= expected)
        if op == "lt":
            return actual is not None and bool(actual < expected)
        if op == "lte":
            return actual is not None and bool(actual <= expected)
        if op == "contains":
            return isinstance(actual, str) and str(expected) in actual
        if op == "icontains":
            return isinstance(actual, str) and str(expected).lower() in actual.lower()
    except TypeError:
        return False
    return False


def _condition(payload: Mapping[str, Any], key: str, expected: Any) -> bool:
    if key == "$or":
        return isinstance(expected, list) and any(
            matches(payload, f) for f in expected if isinstance(f, dict)
        )
    if key == "$not":
        return isinstance(expected, list) and not any(
            matches(payload, f) for f in expected if isinstance(f, dict)
        )
    if key == "$and" or key == "AND":
        return isinstance(expected, list) and all(
            matches(payload, f) for f in expected if isinstance(f, dict)
        )
    if expected == "*":
        return key in payload
    actual = payload.get(key)
    if isinstance(expected, dict):
        return all(_compare(actual, op, value) for op, value in expected.items())
    return _equals(actual, expected)


def matches(payload: Mapping[str, Any], filters: Mapping[str, Any] | None) -> bool:
    """True when ``payload`` satisfies every condition in ``filters`` (no filters: everything)."""
    if not filters:
        return True
    return all(_condition(payload, key, expected) for key, expected in filters.items())


def scope_of(filters: Mapping[str, Any] | None) -> dict[str, str]:
    """The plain ``user_id`` / ``agent_id`` / ``run_id`` equalities in ``filters`` (what the index serves)."""
    if not filters:
        return {}
    scope: dict[str, str] = {}
    for key in SCOPE_KEYS:
        value = filters.get(key)
        if isinstance(value, str) and value and value != "*":
            scope[key] = value
    return scope


def beyond_scope(filters: Mapping[str, Any] | None) -> dict[str, Any]:
    """The conditions of ``filters`` that are not its scope (``scope_of``): checked against each payload."""
    scope = scope_of(filters)
    return {k: v for k, v in (filters or {}).items() if k not in scope}
