"""Built-in evidence for "no route": generic texts the embedded router compares requests against.

- chit-chat lines: things said to an assistant that ask for no task;
- background requests: generic asks across unrelated domains, whose mean score per route is the
  bar a request must clear to belong to that route at all;
- the request library: ~1,000 realistic requests over ~120 topics; the ones no configured route
  claims are known out-of-scope requests, so a near-copy of one gets no route.

The library's vectors ship precomputed (embedding it takes seconds) and are recomputed when the
library text or the model changes, which the stored key detects.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
import yaml

from turnout.routing.embedder import MODEL_SHA256, Embedder

logger = logging.getLogger(__name__)

_DATA = files("turnout.routing").joinpath("data")


@dataclass(frozen=True, slots=True)
class NoRouteEvidence:
    chit_chat_texts: list[str]
    chit_chat: np.ndarray
    background: np.ndarray
    library: np.ndarray


def _yaml(name: str) -> dict:
    return yaml.safe_load(_DATA.joinpath(name).read_text("utf-8"))


def library_requests() -> list[str]:
    return [request for topic in _yaml("request_library.yaml")["topics"] for request in topic["requests"]]


def library_key(requests: list[str]) -> str:
    """Identifies the vectors: the same library text embedded by the same model file."""
    digest = hashlib.sha256(MODEL_SHA256.encode())
    for request in requests:
        digest.update(b"\0" + request.encode("utf-8"))
    return digest.hexdigest()


def library_vectors_path() -> Path:
    return Path(str(_DATA.joinpath("request_library.npz")))


def save_library_vectors(embedder: Embedder, path: Path | None = None) -> Path:
    """Regenerate the shipped vectors (run after editing request_library.yaml)."""
    requests = library_requests()
    target = path or library_vectors_path()
    vectors = embedder.embed(requests).astype(np.float16)
    np.savez_compressed(target, vectors=vectors, key=np.array(library_key(requests)))
    return target


def _library_vectors(embedder: Embedder) -> np.ndarray:
    requests = library_requests()
    try:
        with np.load(library_vectors_path()) as stored:
            if str(stored["key"]) == library_key(requests):
                return stored["vectors"].astype(np.float32)
    except (OSError, KeyError, ValueError):
        pass
    logger.warning("request library vectors are stale or missing; embedding %d requests", len(requests))
    return embedder.embed(requests)


def load_no_route_evidence(embedder: Embedder) -> NoRouteEvidence:
    lines = _yaml("no_route.yaml")
    return NoRouteEvidence(
        chit_chat_texts=list(lines["chit_chat"]),
        chit_chat=embedder.embed(lines["chit_chat"]),
        background=embedder.embed(lines["background"]),
        library=_library_vectors(embedder),
    )


if __name__ == "__main__":
    print(save_library_vectors(Embedder()))
