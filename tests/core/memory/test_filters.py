"""Mem0's filter dictionaries against payloads: what matches, and that the unknown never widens."""

from __future__ import annotations

from core.memory.filters import matches, scope_of

PAYLOAD = {"user_id": "c1", "category": "profile", "turn_ids": [3, 4], "score": 5, "data": "Likes Tea"}


def test_equality_and_list_membership() -> None:
    assert matches(PAYLOAD, {"user_id": "c1", "category": "profile"})
    assert matches(PAYLOAD, {"turn_ids": 4})
    assert not matches(PAYLOAD, {"turn_ids": 5})
    assert not matches(PAYLOAD, {"user_id": "c2"})


def test_operators() -> None:
    assert matches(PAYLOAD, {"score": {"gte": 5, "lt": 6}})
    assert not matches(PAYLOAD, {"score": {"gt": 5}})
    assert matches(PAYLOAD, {"category": {"in": ["profile", "x"]}, "data": {"icontains": "tea"}})
    assert matches(PAYLOAD, {"category": {"nin": ["x"]}, "user_id": {"ne": "c2"}})
    assert matches(PAYLOAD, {"category": "*"})
    assert not matches(PAYLOAD, {"missing": "*"})


def test_logic_and_unknown_operators() -> None:
    assert matches(PAYLOAD, {"$or": [{"category": "x"}, {"category": "profile"}]})
    assert not matches(PAYLOAD, {"$not": [{"category": "profile"}]})
    assert not matches(PAYLOAD, {"score": {"between": [1, 9]}})
    assert not matches(PAYLOAD, {"score": {"gt": "text"}})


def test_scope_is_the_plain_scope_equalities_only() -> None:
    assert scope_of({"user_id": "c1", "category": "profile"}) == {"user_id": "c1"}
    assert scope_of({"user_id": "*", "agent_id": {"in": ["a"]}, "run_id": "r"}) == {"run_id": "r"}
    assert scope_of(None) == {}
