"""bench/locomo.py end to end on a tiny LoCoMo-format conversation: 2 sessions, 3 questions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import locomo

CONVERSATION = {
    "speaker_a": "Ana",
    "speaker_b": "Ben",
    "session_1_date_time": "1:56 pm on 8 May, 2023",
    "session_1": [
        {
            "speaker": "Ana",
            "dia_id": "D1:1",
            "text": "Hi Ben! My router keeps dropping the wifi.",
        },
        {"speaker": "Ben", "dia_id": "D1:2", "text": "Sorry to hear that. Did you try restarting it?"},
        {"speaker": "Ana", "dia_id": "D1:3", "text": "Yes, twice. I also adopted a puppy called Biscuit!"},
    ],
    "session_2_date_time": "10:37 am on 27 June, 2023",
    "session_2": [
        {
            "speaker": "Ana",
            "dia_id": "D2:1",
            "text": "Look at this, we went hiking in the Alps last week.",
            "blip_caption": "a photo of a dog on a mountain trail",
        },
        {"speaker": "Ben", "dia_id": "D2:2", "text": "Beautiful! How is the wifi now?"},
    ],
    "qa": [
        {
            "question": "What is the problem with Ana's router?",
            "answer": "wifi drops",
            "evidence": ["D1:1"],
            "category": 4,
        },
        {"question": "When did Ana go hiking?", "answer": "June 2023", "evidence": ["D2:1"], "category": 2},
        {
            "question": "What pet does Ana have?",
            "answer": "a puppy",
            "evidence": ["D1:3", "D2:1"],
            "category": 1,
        },
        {"question": "Would Ben like Biscuit?", "answer": "-", "evidence": [], "category": 3},
        {
            "question": "What is Ana's cat called?",
            "adversarial_answer": "Biscuit",
            "evidence": ["D1:3"],
            "category": 5,
        },
    ],
}


@pytest.mark.slow
def test_locomo_main_on_a_tiny_conversation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "tiny.json"
    data.write_text(json.dumps(CONVERSATION))
    out = tmp_path / "results" / "locomo.json"
    assert locomo.main([str(data), "--budgets", "100", "500", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    recall = float(lines[-1])
    assert 0.0 <= recall <= 1.0
    assert lines[0].startswith("machine: ") and "cores" in lines[0]
    result = json.loads(out.read_text())
    assert result["recall_at_1000"] == pytest.approx(recall, abs=1e-4)
    assert result["questions"] == {"multi-hop": 1, "temporal": 1, "single-hop": 1}
    for method in ("product", "bm25", "dense"):
        assert set(result["results"][method]) == {"100", "500", "1000"}
        for budget in ("100", "500", "1000"):
            row = result["results"][method][budget]
            assert set(row["categories"]) == {"multi-hop", "temporal", "single-hop"}
            assert 0.0 <= row["overall"] <= 1.0 and row["avg_tokens"] <= int(budget)
    # five turns went through the hub, one memory each, and no template reply became a memory
    [conversation] = result["conversations"]
    assert conversation["turns"] == 5 and conversation["questions"] == 3
    assert conversation["stored"] == {"memories": 5, "turns": 5, "customer_words": 5, "template_replies": 0}
    # a budget of 1,000 tokens holds all five memories: every question is answered
    assert result["results"]["product"]["1000"]["overall"] == 1.0
    assert result["machine"]["cores"] and result["machine"]["versions"]["mem0ai"]
