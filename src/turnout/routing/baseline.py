"""The reference point every router is measured against: cosine to the bare route description."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from turnout.routing.conversation import Turn
from turnout.routing.embedded import Classification, RouteSpec
from turnout.routing.embedder import Embedder


class DescriptionCosineRouter:
    """Latest user turn against each description; no route below `threshold`.

    Evaluation sweeps the threshold over the suite (an oracle choice), so the baseline is shown
    at its best, which is what a fair comparison needs.
    """

    kind = "description-cosine"

    def __init__(self, embedder: Embedder, threshold: float = -1.0) -> None:
        self._embedder = embedder
        self.threshold = threshold
        self._cache: dict[tuple[str, ...], np.ndarray] = {}

    def prepare(self, routes: Sequence[RouteSpec]) -> None:
        self._vectors(routes)

    def _vectors(self, routes: Sequence[RouteSpec]) -> np.ndarray:
        key = tuple(r.description for r in routes)
        if key not in self._cache:
            self._cache[key] = self._embedder.embed(list(key))
        return self._cache[key]

    def classify(self, turns: Sequence[Turn], routes: Sequence[RouteSpec]) -> Classification:
        user = [t.text for t in turns if t.role == "user" and t.text.strip()]
        if not routes or not user:
            return Classification(None, {}, "nothing to classify")
        scores = self._vectors(routes) @ self._embedder.embed([user[-1]])[0]
        best = int(np.argmax(scores))
        by_name = {r.name: round(float(s), 4) for r, s in zip(routes, scores)}
        if scores[best] < self.threshold:
            return Classification(None, by_name, "below threshold")
        return Classification(routes[best].name, by_name, "highest cosine")
