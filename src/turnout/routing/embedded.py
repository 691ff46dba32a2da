"""The embedded router: classifies the latest user intent against route descriptions on the CPU.

How it decides (see docs/routing.md for the measurements behind each step):
1. Each route becomes a set of texts (evidence.py) embedded once; a request's score for a route is
   a soft maximum of its cosine to those texts.
2. A short follow-up ("now in French") is blended with the previous user turn, so it inherits the
   conversation's task unless it names a new one strongly.
3. No route when the latest turn is closer to generic chit-chat than to the best route, or when the
   best route does not clear its own mean score over generic background requests by a margin.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Protocol

import numpy as np
import yaml

from turnout.routing.conversation import Turn
from turnout.routing.embedder import Embedder
from turnout.routing.evidence import route_texts
from turnout.routing.intent import instruction, is_follow_up

SOFTMAX_TEMPERATURE = 0.05
FOLLOW_UP_CONTEXT_WEIGHT = 0.6
CHIT_CHAT_CLAIM_SCORE = 0.45
CHIT_CHAT_MARGIN = 0.1
CHIT_CHAT_MIN_SCORE = 0.5
BACKGROUND_MARGIN = 0.03
INLINE_CACHE_SIZE = 64


class RouteSpec(Protocol):
    """What the router needs of a route (config's RoutingPreference satisfies it)."""

    name: str
    description: str
    examples: list[str]


@dataclass(frozen=True, slots=True)
class Classification:
    route: str | None
    scores: dict[str, float]
    reason: str


@dataclass(frozen=True, slots=True)
class _RouteIndex:
    names: tuple[str, ...]
    evidence: np.ndarray  # (texts, dim), rows grouped by route
    starts: np.ndarray  # first evidence row of each route
    counts: np.ndarray
    chit_chat: np.ndarray  # (lines, dim), the lines no route claimed
    background_mean: np.ndarray  # (routes,)


def _load_no_route_texts() -> tuple[list[str], list[str]]:
    data = yaml.safe_load(files("turnout.routing").joinpath("data/no_route.yaml").read_text("utf-8"))
    return list(data["chit_chat"]), list(data["background"])


def _route_key(routes: Sequence[RouteSpec]) -> tuple:
    return tuple((r.name, r.description, tuple(r.examples)) for r in routes)


class EmbeddedRouter:
    """Thread-safe; route sets are indexed once and cached by content (inline routes included)."""

    kind = "embedded"

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder
        chit_chat, background = _load_no_route_texts()
        self._chit_chat_texts = chit_chat
        self._chit_chat = embedder.embed(chit_chat)
        self._background = embedder.embed(background)
        self._indexes: OrderedDict[tuple, _RouteIndex] = OrderedDict()
        self._lock = threading.Lock()

    def prepare(self, routes: Sequence[RouteSpec]) -> None:
        """Index a route set ahead of the first request that needs it."""
        self._index(routes)

    def classify(self, turns: Sequence[Turn], routes: Sequence[RouteSpec]) -> Classification:
        if not routes:
            return Classification(None, {}, "no routes configured")
        user_texts = [t.text for t in turns if t.role == "user" and t.text.strip()]
        if not user_texts:
            return Classification(None, {}, "no user text to classify")
        index = self._index(routes)
        latest, blended = self._query(user_texts)
        scores = _pooled_scores(index, blended)
        best = int(np.argmax(scores))
        by_name = {name: round(float(s), 4) for name, s in zip(index.names, scores)}
        chit_chat = float(np.max(index.chit_chat @ latest)) if len(index.chit_chat) else -1.0
        if chit_chat >= CHIT_CHAT_MIN_SCORE and chit_chat >= float(
            _pooled_scores(index, latest)[best]
        ) + CHIT_CHAT_MARGIN:
            return Classification(None, by_name, f"closer to chit-chat ({chit_chat:.3f}) than to any route")
        lift = float(scores[best] - index.background_mean[best])
        if lift < BACKGROUND_MARGIN:
            return Classification(
                None,
                by_name,
                f"best route {index.names[best]!r} is only {lift:.3f} above its background score",
            )
        return Classification(index.names[best], by_name, f"best route by {lift:.3f} over background")

    def _query(self, user_texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The latest turn's vector, and that vector blended with context when it is a follow-up."""
        latest_text = user_texts[-1]
        texts = [latest_text]
        ask = instruction(latest_text)
        if ask:
            texts.append(ask)
        follow_up = is_follow_up(user_texts)
        if follow_up:
            texts.append(user_texts[-2])
        vectors = self._embedder.embed(texts)
        latest = _normalised(vectors[0] + vectors[1]) if ask else vectors[0]
        if not follow_up:
            return latest, latest
        return latest, _normalised(latest + FOLLOW_UP_CONTEXT_WEIGHT * vectors[-1])

    def _index(self, routes: Sequence[RouteSpec]) -> _RouteIndex:
        key = _route_key(routes)
        with self._lock:
            if key in self._indexes:
                self._indexes.move_to_end(key)
                return self._indexes[key]
        index = self._build_index(routes)
        with self._lock:
            self._indexes[key] = index
            while len(self._indexes) > INLINE_CACHE_SIZE:
                self._indexes.popitem(last=False)
        return index

    def _build_index(self, routes: Sequence[RouteSpec]) -> _RouteIndex:
        names = tuple(r.name for r in routes)
        texts = [route_texts(r.name, r.description, list(r.examples)) for r in routes]
        vectors = self._embedder.embed([text for group in texts for text in group])
        bounds = np.cumsum([0, *(len(group) for group in texts)])
        groups = [vectors[bounds[i] : bounds[i + 1]] for i in range(len(routes))]
        claimed = self._claim_chit_chat(groups)
        for route, lines in claimed.items():
            groups[route] = np.vstack([groups[route], self._chit_chat[lines]])
        taken = {line for lines in claimed.values() for line in lines}
        unclaimed = [i for i in range(len(self._chit_chat)) if i not in taken]
        index = _make_index(names, groups, self._chit_chat[unclaimed])
        index.background_mean[:] = np.mean(
            [_pooled_scores(index, vector) for vector in self._background], axis=0
        )
        return index

    def _claim_chit_chat(self, groups: list[np.ndarray]) -> dict[int, list[int]]:
        """Chit-chat lines a route itself covers (a small-talk route's, say), grown to a fixed point.

        A line is claimed when its best route's evidence, including lines already claimed, is
        as close to it as CHIT_CHAT_CLAIM_SCORE; so "hello" claimed through "greetings" brings
        "good morning" along, while routes about tasks claim nothing.
        """
        claimed: dict[int, list[int]] = {}
        while True:
            grown = [
                np.vstack([group, self._chit_chat[claimed.get(route, [])]])
                for route, group in enumerate(groups)
            ]
            index = _make_index(("",) * len(groups), grown, self._chit_chat)
            taken = {line for lines in claimed.values() for line in lines}
            new = False
            for line, vector in enumerate(self._chit_chat):
                if line in taken:
                    continue
                scores = _pooled_scores(index, vector)
                best = int(np.argmax(scores))
                if scores[best] >= CHIT_CHAT_CLAIM_SCORE:
                    claimed.setdefault(best, []).append(line)
                    new = True
            if not new:
                return claimed


def _make_index(names: tuple[str, ...], groups: list[np.ndarray], chit_chat: np.ndarray) -> _RouteIndex:
    counts = np.array([len(group) for group in groups])
    return _RouteIndex(
        names=names,
        evidence=np.vstack(groups),
        starts=np.concatenate([[0], np.cumsum(counts)[:-1]]),
        counts=counts,
        chit_chat=chit_chat,
        background_mean=np.zeros(len(names)),
    )


def _normalised(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def _pooled_scores(index: _RouteIndex, query: np.ndarray) -> np.ndarray:
    """Per-route soft maximum of the query's cosine to the route's evidence."""
    sims = index.evidence @ query
    peak = float(sims.max())
    weights = np.exp((sims - peak) / SOFTMAX_TEMPERATURE)
    sums = np.add.reduceat(weights, index.starts)
    return peak + SOFTMAX_TEMPERATURE * np.log(sums / index.counts)
