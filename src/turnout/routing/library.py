"""The request library: ~1,000 realistic requests people send to assistants, over ~120 topics.

The embedded router uses it twice when it indexes a route set: topics that clearly belong to one
route lend that route their requests as examples (a description is a few phrases; requests
are what users write), and requests that no route claims become known out-of-scope requests.

Embedding the library takes seconds, so its vectors ship precomputed, keyed by the library
text and the model checksum; a stale file is detected and the vectors recomputed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256
from importlib.resources import files
from pathlib import Path

import numpy as np
import yaml

from turnout.routing.embedder import MODEL_SHA256, Embedder

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RequestLibrary:
    topics: list[str]
    topic_vectors: np.ndarray  # (topics, dim)
    request_vectors: np.ndarray  # (requests, dim)
    owner: np.ndarray  # topic index of each request

    def requests_of(self, topics: Sequence[int] | np.ndarray) -> np.ndarray:
        """Boolean mask of the requests that belong to any of `topics`."""
        return np.isin(self.owner, topics)


def library_text() -> tuple[list[str], list[list[str]]]:
    raw = yaml.safe_load(
        files("turnout.routing").joinpath("data/request_library.yaml").read_text("utf-8")
    )
    return [t["topic"] for t in raw["topics"]], [list(t["requests"]) for t in raw["topics"]]


def library_key(topics: list[str], requests: list[list[str]]) -> str:
    """Identifies the vectors: this library text embedded by this model file."""
    digest = sha256(MODEL_SHA256.encode())
    for topic, group in zip(topics, requests):
        for text in (topic, *group):
            digest.update(b"\0" + text.encode("utf-8"))
    return digest.hexdigest()


def vectors_path() -> Path:
    return Path(str(files("turnout.routing").joinpath("data/request_library.npz")))


def _embed(
    embedder: Embedder, topics: list[str], requests: list[list[str]]
) -> tuple[np.ndarray, np.ndarray]:
    flat = [request for group in requests for request in group]
    return embedder.embed(topics), embedder.embed(flat)


def save_vectors(embedder: Embedder, path: Path | None = None) -> Path:
    """Regenerate the shipped vectors (run after editing request_library.yaml)."""
    topics, requests = library_text()
    topic_vectors, request_vectors = _embed(embedder, topics, requests)
    target = path or vectors_path()
    np.savez_compressed(
        target,
        topics=topic_vectors.astype(np.float16),
        requests=request_vectors.astype(np.float16),
        key=np.array(library_key(topics, requests)),
    )
    return target


def _stored_vectors(key: str) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.load(vectors_path()) as stored:
            if str(stored["key"]) == key:
                return stored["topics"].astype(np.float32), stored["requests"].astype(np.float32)
    except (OSError, KeyError, ValueError):
        pass
    return None


def load_library(embedder: Embedder) -> RequestLibrary:
    topics, requests = library_text()
    vectors = _stored_vectors(library_key(topics, requests))
    if vectors is None:
        logger.warning("request library vectors are stale or missing; embedding the library")
        vectors = _embed(embedder, topics, requests)
    owner = np.repeat(np.arange(len(topics)), [len(group) for group in requests])
    return RequestLibrary(topics, vectors[0], vectors[1], owner)


if __name__ == "__main__":
    print(save_vectors(Embedder()))
