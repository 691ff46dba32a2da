"""The embedded router: classifies the latest user intent against route descriptions on the CPU.

How it decides (docs/routing.md has the measurements behind each step):
1. Each route becomes a set of texts (evidence.py) embedded once, plus the requests of library
   topics that clearly belong to it (library.py); a request's score for a route is a soft
   maximum of its cosine to that evidence.
2. The query is the latest user turn, plus the ask around any pasted material, blended with the
   previous user turn when it is a short follow-up (intent.py).
3. No route when the latest turn is closer to chit-chat than to the best route, when the best
   route does not clear its mean score over generic background requests, or when the request is a
   near-copy of a library request that no route claims.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from turnout.routing.confidence import Evidence, Kind, confidence
from turnout.routing.conversation import Turn
from turnout.routing.embedder import Embedder
from turnout.routing.evidence import route_texts
from turnout.routing.intent import instruction, is_follow_up
from turnout.routing.library import load_library
from turnout.routing.no_route import load_no_route_evidence

SOFTMAX_TEMPERATURE = 0.05
FOLLOW_UP_CONTEXT_WEIGHT = 1.0
FOLLOW_UP_OWN_LIFT = 0.25
CHIT_CHAT_CLAIM_SCORE = 0.45
CHIT_CHAT_MIN_SCORE = 0.4
CHIT_CHAT_MARGIN = 0.2
BACKGROUND_MARGIN = 0.03
LIBRARY_CLAIM_LIFT = 0.07
TOPIC_MIN_LIFT = 0.15
TOPIC_MARGIN = 0.05
TOPIC_REQUEST_LIFT = 0.05
LIBRARY_MARGIN = 0.4
INDEX_CACHE_SIZE = 64


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
    confidence: float | None = None  # the embedded router's calibrated chance of being right
    evidence: Evidence | None = None  # what the confidence was read from


@dataclass(frozen=True, slots=True)
class _RouteIndex:
    names: tuple[str, ...]
    evidence: np.ndarray  # (texts, dim), rows grouped by route
    starts: np.ndarray  # first evidence row of each route
    counts: np.ndarray
    chit_chat: np.ndarray  # the chit-chat lines no route claimed
    background_mean: np.ndarray  # (routes,)
    out_of_scope: np.ndarray  # the library requests no route claimed
    no_route: np.ndarray  # the operator's requests that must get no route


def _route_key(routes: Sequence[RouteSpec], no_route: Sequence[str]) -> tuple:
    return (tuple((r.name, r.description, tuple(r.examples)) for r in routes), tuple(no_route))


class EmbeddedRouter:
    """Thread-safe; route sets are indexed once and cached by content (inline routes included)."""

    kind = "embedded"

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._no_route = load_no_route_evidence(embedder)
        self._library = load_library(embedder)
        self._indexes: OrderedDict[tuple, _RouteIndex] = OrderedDict()
        self._lock = threading.Lock()

    def prepare(self, routes: Sequence[RouteSpec], no_route: Sequence[str] = ()) -> None:
        """Index a route set ahead of the first request that needs it (none: nothing to do)."""
        if routes:
            self._index(routes, no_route)

    def classify(
        self, turns: Sequence[Turn], routes: Sequence[RouteSpec], no_route: Sequence[str] = ()
    ) -> Classification:
        """`no_route`: example requests that must get no route."""
        if not routes:
            return Classification(None, {}, "no routes configured")
        user_texts = [t.text for t in turns if t.role == "user" and t.text.strip()]
        if not user_texts:
            return Classification(None, {}, "no user text to classify")
        index = self._index(routes, no_route)
        latest, blended = self._query(user_texts)
        latest_scores = scores = _pooled_scores(index, latest)
        own_lift = float(np.max(latest_scores - index.background_mean))
        if blended is not None and own_lift < FOLLOW_UP_OWN_LIFT:
            scores = _pooled_scores(index, blended)
        best = int(np.argmax(scores))
        by_name = {name: round(float(s), 4) for name, s in zip(index.names, scores)}
        reason, evidence = _verdict(index, best, scores, float(latest_scores[best]), latest)
        route = index.names[best] if reason is None else None
        if reason is None:
            reason = f"best route, {evidence.lift:.3f} over its background"
        return Classification(route, by_name, reason, confidence(evidence), evidence)

    def _query(self, user_texts: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """The latest turn's vector, and for a follow-up that vector blended with the previous turn."""
        latest_text = user_texts[-1]
        texts = [latest_text]
        ask = instruction(latest_text)
        if ask:
            texts.append(ask)
        follow_up = is_follow_up(user_texts)
        if follow_up:
            texts.append(user_texts[-2])
        vectors = self.embedder.embed(texts)
        latest = _normalised(vectors[0] + vectors[1]) if ask else vectors[0]
        if not follow_up:
            return latest, None
        return latest, _normalised(latest + FOLLOW_UP_CONTEXT_WEIGHT * vectors[-1])

    def _index(self, routes: Sequence[RouteSpec], no_route: Sequence[str]) -> _RouteIndex:
        key = _route_key(routes, no_route)
        with self._lock:
            if key in self._indexes:
                self._indexes.move_to_end(key)
                return self._indexes[key]
        index = self._build_index(routes, no_route)
        with self._lock:
            self._indexes[key] = index
            while len(self._indexes) > INDEX_CACHE_SIZE:
                self._indexes.popitem(last=False)
        return index

    def _build_index(self, routes: Sequence[RouteSpec], no_route: Sequence[str]) -> _RouteIndex:
        names = tuple(r.name for r in routes)
        texts = [route_texts(r.name, r.description, list(r.examples)) for r in routes]
        vectors = self.embedder.embed([text for group in texts for text in group])
        bounds = np.cumsum([0, *(len(group) for group in texts)])
        groups = [vectors[bounds[i] : bounds[i + 1]] for i in range(len(routes))]
        chit_chat = self._no_route.chit_chat
        claimed = self._claim_chit_chat(groups)
        groups = [np.vstack([group, chit_chat[claimed == r]]) for r, group in enumerate(groups)]
        chit_chat = chit_chat[claimed < 0]

        zero_shot = _make_index(names, groups, chit_chat)
        background = _pooled_scores(zero_shot, self._no_route.background).mean(axis=0)
        lifts = self._library_lifts(zero_shot, background)
        borrowed = _borrowed_topics(lifts)
        library = self._library
        for route, topics in borrowed.items():
            groups[route] = np.vstack(
                [groups[route], library.request_vectors[library.requests_of(topics)]]
            )
        lent = library.requests_of([t for topics in borrowed.values() for t in topics])
        return replace(
            _make_index(names, groups, chit_chat),
            background_mean=background,
            out_of_scope=library.request_vectors[_out_of_scope(lifts, lent)],
            no_route=self.embedder.embed(list(no_route)) if no_route else _no_vectors(chit_chat),
        )

    def _library_lifts(self, index: _RouteIndex, background: np.ndarray) -> _LibraryLifts:
        library = self._library
        requests = _pooled_scores(index, library.request_vectors) - background
        return _LibraryLifts(
            requests=requests,
            topics=_pooled_scores(index, library.topic_vectors) - background,
            topic_requests=np.array(
                [requests[library.owner == t].mean(axis=0) for t in range(len(library.topics))]
            ),
        )

    def _claim_chit_chat(self, groups: list[np.ndarray]) -> np.ndarray:
        """The route that claims each chit-chat line (-1: none), grown to a fixed point.

        A line is claimed when its best route's evidence, including lines already claimed, is
        as close to it as CHIT_CHAT_CLAIM_SCORE; so "hello" claimed through "greetings" brings
        "good morning" along, while routes about tasks claim nothing.
        """
        chit_chat = self._no_route.chit_chat
        claimed = np.full(len(chit_chat), -1)
        while True:
            grown = [np.vstack([g, chit_chat[claimed == r]]) for r, g in enumerate(groups)]
            scores = _pooled_scores(_make_index(("",) * len(groups), grown, chit_chat), chit_chat)
            new = (claimed < 0) & (scores.max(axis=1) >= CHIT_CHAT_CLAIM_SCORE)
            if not new.any():
                return claimed
            claimed[new] = scores[new].argmax(axis=1)


@dataclass(frozen=True, slots=True)
class _LibraryLifts:
    """Library scores per route above each route's background: (items, routes) each."""

    requests: np.ndarray
    topics: np.ndarray  # the topic lines
    topic_requests: np.ndarray  # each topic's mean over its requests


def _borrowed_topics(lifts: _LibraryLifts) -> dict[int, list[int]]:
    """Library topics that clearly belong to one route, by their topic line and by their requests.

    The topic line must beat the route's background by TOPIC_MIN_LIFT and the runner-up route
    (or the background level) by TOPIC_MARGIN, and the topic's requests must agree on average:
    one noisy signal alone lends requests to the wrong route too often.
    """
    topic_lift = lifts.topics
    ranked = np.sort(np.hstack([topic_lift, np.zeros((len(topic_lift), 1))]), axis=1)
    best = np.argmax(topic_lift, axis=1)
    per_topic = lifts.topic_requests
    clear = (ranked[:, -1] >= TOPIC_MIN_LIFT) & (ranked[:, -1] - ranked[:, -2] >= TOPIC_MARGIN)
    agree = (np.argmax(per_topic, axis=1) == best) & (per_topic.max(axis=1) >= TOPIC_REQUEST_LIFT)
    borrowed: dict[int, list[int]] = {}
    for topic in np.flatnonzero(clear & agree):
        borrowed.setdefault(int(best[topic]), []).append(int(topic))
    return borrowed


def _out_of_scope(lifts: _LibraryLifts, lent: np.ndarray) -> np.ndarray:
    """Requests that no route claims: not lent to a route, and below every route's claim lift."""
    return (lifts.requests.max(axis=1) < LIBRARY_CLAIM_LIFT) & ~lent


def _verdict(
    index: _RouteIndex, best: int, scores: np.ndarray, latest_score: float, latest: np.ndarray
) -> tuple[str | None, Evidence]:
    """Why the request gets no route (None: it gets the best route), and the evidence for the
    decision's confidence."""
    lift = round(float(scores[best] - index.background_mean[best]), 4)
    reason = _no_route_reason(index, best, float(scores[best]), latest_score, latest)
    declined, nearest = _declined(index, best, latest)
    if declined > nearest:
        closer = f"closer to a no-route example ({declined:.3f}) than to any route ({nearest:.3f})"
        return reason or closer, Evidence("declined", round(declined - nearest, 4), lift)
    kind: Kind = "route" if reason is None else "no_route"
    return reason, Evidence(kind, round(_margin(scores, best), 4), lift)


def _no_route_reason(
    index: _RouteIndex, best: int, score: float, latest_score: float, latest: np.ndarray
) -> str | None:
    chit_chat = float(np.max(index.chit_chat @ latest)) if len(index.chit_chat) else -1.0
    if chit_chat >= CHIT_CHAT_MIN_SCORE and chit_chat >= latest_score + CHIT_CHAT_MARGIN:
        return f"closer to chit-chat ({chit_chat:.3f}) than to any route ({latest_score:.3f})"
    lift = score - float(index.background_mean[best])
    if lift < BACKGROUND_MARGIN:
        return f"best route {index.names[best]!r} is only {lift:.3f} above its background score"
    known = float(np.max(index.out_of_scope @ latest)) if len(index.out_of_scope) else -1.0
    if known >= max(score, latest_score) + LIBRARY_MARGIN:
        return f"near-copy ({known:.3f}) of a known request that no route covers"
    return None


def _make_index(
    names: tuple[str, ...], groups: list[np.ndarray], chit_chat: np.ndarray
) -> _RouteIndex:
    counts = np.array([len(group) for group in groups])
    return _RouteIndex(
        names=names,
        evidence=np.vstack(groups),
        starts=np.concatenate([[0], np.cumsum(counts)[:-1]]),
        counts=counts,
        chit_chat=chit_chat,
        background_mean=np.zeros(len(names)),
        out_of_scope=_no_vectors(chit_chat),
        no_route=_no_vectors(chit_chat),
    )


def _no_vectors(like: np.ndarray) -> np.ndarray:
    return np.zeros((0, like.shape[1]), dtype=like.dtype)


def _declined(index: _RouteIndex, best: int, query: np.ndarray) -> tuple[float, float]:
    """The query's nearest no-route example and its nearest evidence of the best route.

    Nearest against nearest: pooled scores would not compare, since a route's pool of a hundred
    texts is pulled down by its many weak matches and an operator's one no-route example is not.
    """
    if not len(index.no_route):
        return -1.0, 0.0
    start = index.starts[best]
    nearest = float(np.max(index.evidence[start : start + index.counts[best]] @ query))
    return float(np.max(index.no_route @ query)), nearest


def _margin(scores: np.ndarray, best: int) -> float:
    """How far the best route is ahead of the runner-up (a lone route is ahead of nothing)."""
    if len(scores) < 2:
        return float(scores[best])
    return float(scores[best] - np.partition(scores, -2)[-2])


def _normalised(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def _soft_max(sims: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-group log-mean-exp along the last axis: near the group's best match, but steadier.

    Works on one query's similarities (texts,) or on many at once (queries, texts).
    """
    peak = sims.max(axis=-1, keepdims=True)
    weights = np.exp((sims - peak) / SOFTMAX_TEMPERATURE)
    return peak + SOFTMAX_TEMPERATURE * np.log(np.add.reduceat(weights, starts, axis=-1) / counts)


def _pooled_scores(index: _RouteIndex, queries: np.ndarray) -> np.ndarray:
    """Each route's score for one query (routes,) or for many (queries, routes)."""
    return _soft_max(queries @ index.evidence.T, index.starts, index.counts)
