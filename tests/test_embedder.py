"""The embedding model loads offline, is verified, and gives sentence-transformers' vectors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from turnout.routing import embedder as embedder_module
from turnout.routing.embedder import Embedder, EmbedderError


def test_vectors_are_normalised_and_similar_texts_are_close(embedder: Embedder) -> None:
    vectors = embedder.embed(
        ["Write a Python function", "Write a function in Python", "I love pizza"]
    )
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > 0.8 > vectors[0] @ vectors[2]


def test_batching_and_padding_do_not_change_vectors(embedder: Embedder) -> None:
    texts = ["short", "a much longer sentence with many more tokens than the first one"]
    together = embedder.embed(texts)
    alone = np.vstack([embedder.embed([t]) for t in texts])
    assert np.allclose(together, alone, atol=1e-4)


def test_empty_input_gives_an_empty_matrix(embedder: Embedder) -> None:
    assert embedder.embed([]).shape == (0, 384)


def test_a_model_file_with_the_wrong_checksum_is_refused(tmp_path: Path, monkeypatch) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not a model")
    monkeypatch.setattr(embedder_module, "model_path", lambda: fake)
    with pytest.raises(EmbedderError, match="sha256"):
        Embedder()


def test_text_past_the_token_window_does_not_change_the_vector(embedder: Embedder) -> None:
    """Only the first 256 tokens count; the embedder clips the text before tokenising it."""
    head = "please summarise the following report about quarterly revenue. " * 40
    vectors = embedder.embed([head, head + "completely unrelated tail words " * 10_000])
    assert np.allclose(vectors[0], vectors[1], atol=1e-5)


def test_loading_and_embedding_write_nothing_to_home(tmp_path: Path) -> None:
    """onnxruntime keeps a telemetry database in $HOME/.cache unless told not to at import."""
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env["HOME"] = str(tmp_path)
    code = "from turnout.routing.embedder import Embedder; Embedder().embed(['hello'])"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    assert list(tmp_path.rglob("*")) == []


def test_small_calls_are_remembered_so_a_request_text_is_embedded_once(
    embedder: Embedder, monkeypatch
) -> None:
    text = "a request text the guard and the router both embed 7f3a"
    first = embedder.embed([text])
    calls: list[list[str]] = []
    original = embedder._embed_batch
    monkeypatch.setattr(
        embedder, "_embed_batch", lambda texts: calls.append(texts) or original(texts)
    )
    again = embedder.embed([text, "and a new one 7f3a"])
    assert np.array_equal(again[0], first[0])
    assert calls == [["and a new one 7f3a"]]


def test_bulk_calls_are_not_remembered(embedder: Embedder) -> None:
    texts = [f"bulk text number {i} 9c2e" for i in range(embedder_module.CACHED_CALL_SIZE + 1)]
    embedder.embed(texts)
    assert not any(text in embedder._cache for text in texts)
