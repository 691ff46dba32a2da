"""The request library: shipped vectors that match the model, and what routes borrow from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from turnout.routing import library
from turnout.routing.conversation import Turn
from turnout.routing.embedded import EmbeddedRouter
from turnout.routing.embedder import Embedder
from turnout.routing.evidence import route_texts


@dataclass
class Route:
    name: str
    description: str
    examples: list[str] = field(default_factory=list)


def test_the_shipped_vectors_are_current_and_match_the_model(embedder: Embedder) -> None:
    topics, requests = library.library_text()
    flat = [r for group in requests for r in group]
    with np.load(library.vectors_path()) as stored:
        assert str(stored["key"]) == library.library_key(topics, requests)
        sample = stored["requests"][:: len(flat) // 20].astype(np.float32)
        assert stored["topics"].shape == (len(topics), 384)
    fresh = embedder.embed(flat[:: len(flat) // 20])
    assert np.allclose(sample, fresh, atol=2e-3)


def test_stale_vectors_are_recomputed(embedder: Embedder, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(
        library, "library_text", lambda: (["travel"], [["book a flight", "find a hotel"]])
    )
    monkeypatch.setattr(library, "vectors_path", lambda: tmp_path / "missing.npz")
    loaded = library.load_library(embedder)
    assert loaded.topic_vectors.shape == (1, 384)
    assert loaded.request_vectors.shape == (2, 384)
    assert list(loaded.owner) == [0, 0]


def test_a_route_borrows_the_requests_of_its_topic(router: EmbeddedRouter) -> None:
    routes = [
        Route("translation", "translating text between languages"),
        Route("poetry", "poems and poetry"),
    ]
    index = router._index(routes, ())
    own = [len(route_texts(r.name, r.description, [])) for r in routes]
    assert all(count > own_count for count, own_count in zip(index.counts, own))
    topics, _ = library.library_text()
    translation_topic = next(
        i for i, topic in enumerate(topics) if topic.lower().startswith("translat")
    )
    lent = router._library.request_vectors[router._library.owner == translation_topic]
    translation_rows = index.evidence[: index.counts[0]]
    assert all((translation_rows @ vector).max() > 0.999 for vector in lent)


def test_an_out_of_scope_near_copy_gets_no_route(router: EmbeddedRouter) -> None:
    routes = [Route("code", "generating new code, writing functions, or creating boilerplate")]
    topics, requests = library.library_text()
    travel = next(group for topic, group in zip(topics, requests) if "flight" in topic.lower())
    result = router.classify([Turn("user", travel[0])], routes)
    assert result.route is None
