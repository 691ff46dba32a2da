"""From a client's request to the ordered list of models it should try."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from turnout.apis.errors import RequestError
from turnout.config import Config, ConfigError, RoutingPreference, parse_routing_preferences
from turnout.routing.conversation import RoutingRequest, Turn
from turnout.routing.embedded import Classification, EmbeddedRouter
from turnout.routing.llm import LlmRouter, RouterUnavailable


@dataclass(frozen=True, slots=True)
class Decision:
    """`models[0]` is the model to call, the rest are fallbacks in order."""

    models: list[str]
    route: str | None
    reason: str
    router: str  # the router that decided: "embedded" or "llm"
    scores: dict[str, float] = field(default_factory=dict)
    latency_ms: float = 0.0
    router_fallback: str | None = None  # why the LLM router did not decide, when it was asked


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
    """Applies the routers to a request and turns their classification into candidate models.

    With an LLM router configured it is asked first; the embedded router decides whenever it
    cannot (down, slow, unreadable, its circuit open), so a decision is always made.
    """

    def __init__(
        self, config: Config, router: EmbeddedRouter, llm_router: LlmRouter | None = None
    ) -> None:
        self.config = config
        self.router = router
        self.llm_router = llm_router
        self.prepared = False

    @property
    def router_kind(self) -> str:
        return self.router.kind if self.llm_router is None else self.llm_router.kind

    def prepare(self) -> None:
        """Index the configured routes now, so the first request pays no start-up cost."""
        self.router.prepare(self.config.routing_preferences)
        self.prepared = True

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

    async def decide(self, request: RoutingRequest) -> Decision:
        routes = self.routes_for(request)
        started = time.perf_counter()
        fallback = None
        if routes and self.llm_router is not None:
            try:
                classification = await self.llm_router.classify(request.turns, routes)
                return self._decision(classification, routes, request, "llm", started)
            except RouterUnavailable as exc:
                fallback = exc.reason
        classification = await self._classify_embedded(request.turns, routes)
        return self._decision(classification, routes, request, "embedded", started, fallback)

    async def _classify_embedded(
        self, turns: Sequence[Turn], routes: list[RoutingPreference]
    ) -> Classification:
        """Embedding is CPU work, so it runs off the event loop; with no routes there is none."""
        if not routes:
            return self.router.classify(turns, routes)
        return await asyncio.to_thread(self.router.classify, turns, routes)

    def _decision(
        self,
        classification: Classification,
        routes: list[RoutingPreference],
        request: RoutingRequest,
        router: str,
        started: float,
        fallback: str | None = None,
    ) -> Decision:
        return Decision(
            models=self._candidates(classification, routes, request.model),
            route=classification.route,
            reason=classification.reason,
            router=router,
            scores=classification.scores,
            latency_ms=(time.perf_counter() - started) * 1000,
            router_fallback=fallback,
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
