"""From a client's request to the ordered list of models it should try."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from turnout.apis.errors import RequestError
from turnout.config import Config, ConfigError, RoutingPreference, parse_routing_preferences
from turnout.routing.conversation import RoutingRequest
from turnout.routing.embedded import Classification, EmbeddedRouter


@dataclass(frozen=True, slots=True)
class Decision:
    """`models[0]` is the model to call, the rest are fallbacks in order."""

    models: list[str]
    route: str | None
    reason: str
    router: str
    scores: dict[str, float] = field(default_factory=dict)
    latency_ms: float = 0.0


MAX_INLINE_ROUTES = 64
MAX_INLINE_EXAMPLES = 1000


def _check_inline_size(routes: list[RoutingPreference]) -> None:
    """Inline routes are embedded on first use: bound that work so one body cannot stall the router."""
    if len(routes) > MAX_INLINE_ROUTES:
        raise RequestError(
            f"routing_preferences: at most {MAX_INLINE_ROUTES} routes per request, got {len(routes)}",
            param="routing_preferences",
        )
    examples = sum(len(route.examples) for route in routes)
    if examples > MAX_INLINE_EXAMPLES:
        raise RequestError(
            f"routing_preferences: at most {MAX_INLINE_EXAMPLES} examples in all, got {examples}",
            param="routing_preferences",
        )


class RoutingService:
    """Applies the router to a request and turns its classification into candidate models."""

    def __init__(self, config: Config, router: EmbeddedRouter) -> None:
        self.config = config
        self.router = router

    @property
    def router_kind(self) -> str:
        return self.router.kind

    def prepare(self) -> None:
        """Index the configured routes now, so the first request pays no start-up cost."""
        self.router.prepare(self.config.routing_preferences)

    def routes_for(self, request: RoutingRequest) -> list[RoutingPreference]:
        if request.routing_preferences is None:
            return self.config.routing_preferences
        try:
            routes = parse_routing_preferences(request.routing_preferences)
        except ConfigError as exc:
            first = exc.problems[0]
            raise RequestError(
                "invalid routing_preferences: " + "; ".join(exc.problems),
                param=first.split(":", 1)[0],
            ) from exc
        _check_inline_size(routes)
        return routes

    def decide(self, request: RoutingRequest) -> Decision:
        return self.decide_among(request, self.routes_for(request))

    def decide_among(self, request: RoutingRequest, routes: list[RoutingPreference]) -> Decision:
        """The decision over `routes` (from `routes_for`), for callers that looked at them first."""
        started = time.perf_counter()
        classification = self.router.classify(request.turns, routes)
        latency_ms = (time.perf_counter() - started) * 1000
        return Decision(
            models=self._candidates(classification, routes, request.model),
            route=classification.route,
            reason=classification.reason,
            router=self.router.kind,
            scores=classification.scores,
            latency_ms=latency_ms,
        )

    def _candidates(
        self, classification: Classification, routes: Sequence[RoutingPreference], model: str | None
    ) -> list[str]:
        if classification.route is not None:
            route = next(r for r in routes if r.name == classification.route)
            return [self.config.resolve_model(m) or m for m in route.models]
        own = self.config.resolve_model(model) if model else None
        fallback = own or self.config.default_model
        return [fallback] if fallback else []
