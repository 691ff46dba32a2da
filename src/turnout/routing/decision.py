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
from turnout.routing.examples import RouteExamples, unique
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
    confidence: float | None = None  # the embedded router's calibrated confidence, when it ran
    escalated: bool = False  # the cascade asked the LLM router because confidence was low


@dataclass(frozen=True, slots=True)
class RouteSet:
    """The routes decisions are made against, with every example that backs them."""

    routes: list[RoutingPreference]
    no_route_examples: tuple[str, ...] = ()

    def with_examples(self, examples: RouteExamples) -> RouteSet:
        """These routes with `examples` added after their own (examples of unknown routes are dropped)."""
        return RouteSet(
            routes=[
                route.model_copy(
                    update={
                        "examples": list(
                            unique([*route.examples, *examples.routes.get(route.name, ())])
                        )
                    }
                )
                for route in self.routes
            ],
            no_route_examples=unique([*self.no_route_examples, *examples.no_route]),
        )


MAX_INLINE_ROUTES = 64
MAX_INLINE_EXAMPLES = 1000


def _check_inline_size(routes: list[RoutingPreference], no_route_examples: int) -> None:
    """Inline routes are embedded on first use: bound that work so one body cannot stall the router."""
    if len(routes) > MAX_INLINE_ROUTES:
        raise RequestError(
            f"routing_preferences: at most {MAX_INLINE_ROUTES} routes per request, got {len(routes)}",
            param="routing_preferences",
        )
    examples = sum(len(route.examples) for route in routes) + no_route_examples
    if examples > MAX_INLINE_EXAMPLES:
        field = "routing_preferences" if routes else "no_route_examples"
        raise RequestError(
            f"{field}: at most {MAX_INLINE_EXAMPLES} examples in all, got {examples}", param=field
        )


class RoutingService:
    """Applies the routers to a request and turns their classification into candidate models.

    With an LLM router configured it is asked first, or with a cascade only when the embedded
    router's confidence is low; the embedded router decides whenever the LLM router cannot
    (down, slow, unreadable, its circuit open), so a decision is always made.
    """

    def __init__(
        self, config: Config, router: EmbeddedRouter, llm_router: LlmRouter | None = None
    ) -> None:
        self.config = config
        self.router = router
        self.llm_router = llm_router
        self.configured = RouteSet(
            config.routing_preferences, unique(config.routing.no_route_examples)
        )
        self.route_set = self.configured
        cascade = config.routing.cascade
        self.min_confidence = cascade.min_confidence if cascade and llm_router else None
        self.prepared = False

    @property
    def router_kind(self) -> str:
        return self.router.kind if self.llm_router is None else self.llm_router.kind

    def prepare(self) -> None:
        """Index the configured routes now, so the first request pays no start-up cost."""
        self._prepare(self.route_set)
        self.prepared = True

    def use_examples(self, examples: RouteExamples) -> None:
        """Index the configured routes with `examples` added, then swap them in at once.

        CPU-bound (the new examples are embedded); decisions made meanwhile use the old set.
        """
        route_set = self.configured.with_examples(examples)
        self._prepare(route_set)
        self.route_set = route_set

    def _prepare(self, route_set: RouteSet) -> None:
        self.router.prepare(route_set.routes, route_set.no_route_examples)

    def routes_for(self, request: RoutingRequest) -> RouteSet:
        """The configured routes, or the request's inline ones; inline no-route examples add to either."""
        no_route = RouteExamples(no_route=unique(request.no_route_examples or ()))
        if request.routing_preferences is None:
            if not no_route.no_route:
                return self.route_set
            _check_inline_size([], len(no_route))
            return self.route_set.with_examples(no_route)
        try:
            routes = parse_routing_preferences(request.routing_preferences)
        except ConfigError as exc:
            first = exc.problems[0]
            raise RequestError(
                "invalid routing_preferences: " + "; ".join(exc.problems),
                param=first.split(":", 1)[0],
            ) from exc
        _check_inline_size(routes, len(no_route))
        return RouteSet(routes).with_examples(no_route)

    async def decide(self, request: RoutingRequest) -> Decision:
        route_set = self.routes_for(request)
        started = time.perf_counter()
        if not route_set.routes or self.llm_router is None:
            embedded = await self._classify_embedded(request.turns, route_set)
            return self._decision(embedded, route_set, request, started)
        if self.min_confidence is None:
            return await self._ask_llm(request, route_set, started)
        embedded = await self._classify_embedded(request.turns, route_set)
        if (embedded.confidence or 0.0) >= self.min_confidence:
            return self._decision(embedded, route_set, request, started)
        return await self._ask_llm(request, route_set, started, embedded)

    async def _ask_llm(
        self,
        request: RoutingRequest,
        route_set: RouteSet,
        started: float,
        embedded: Classification | None = None,
    ) -> Decision:
        """The LLM router's decision; when it gives none, the embedded router's."""
        assert self.llm_router is not None
        escalated = embedded is not None
        try:
            classification = await self.llm_router.classify(request.turns, route_set.routes)
        except RouterUnavailable as exc:
            if embedded is None:
                embedded = await self._classify_embedded(request.turns, route_set)
            return self._decision(
                embedded, route_set, request, started, fallback=exc.reason, escalated=escalated
            )
        return self._decision(
            classification,
            route_set,
            request,
            started,
            router="llm",
            escalated=escalated,
            confidence=embedded.confidence if embedded else None,
        )

    async def _classify_embedded(
        self, turns: Sequence[Turn], route_set: RouteSet
    ) -> Classification:
        """Embedding is CPU work, so it runs off the event loop; with no routes there is none."""
        if not route_set.routes:
            return self.router.classify(turns, route_set.routes)
        return await asyncio.to_thread(
            self.router.classify, turns, route_set.routes, route_set.no_route_examples
        )

    def _decision(
        self,
        classification: Classification,
        route_set: RouteSet,
        request: RoutingRequest,
        started: float,
        *,
        router: str = "embedded",
        fallback: str | None = None,
        escalated: bool = False,
        confidence: float | None = None,
    ) -> Decision:
        return Decision(
            models=self._candidates(classification, route_set.routes, request.model),
            route=classification.route,
            reason=classification.reason,
            router=router,
            scores=classification.scores,
            latency_ms=(time.perf_counter() - started) * 1000,
            router_fallback=fallback,
            confidence=classification.confidence if confidence is None else confidence,
            escalated=escalated,
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
