"""Shared by the route-evidence benchmarks: the suites, their LLM-written example fixtures, and
the embedded router's decisions on them.

Each fixture in examples/ is the reply an LLM gave to turnout's bootstrap prompt for the suite's
routes (it saw the route names and descriptions only), parsed as `turnout routes bootstrap`
parses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from turnout.routing.bootstrap import parse_examples
from turnout.routing.decision import RouteSet
from turnout.routing.embedded import Classification, EmbeddedRouter
from turnout.routing.embedder import Embedder
from turnout.routing.evaluation import Case, Suite, load_suite

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared" / "data" / "routing"
SUITES = {
    "general-dev": SHARED / "general-dev",
    "clinc-dev": SHARED / "clinc-dev",
    "llm-tasks": HERE / "llm-tasks",
    "support-desk": HERE / "support-desk",
}
PER_ROUTE = 25
NO_ROUTE = 40


def with_examples(suite: Suite) -> RouteSet:
    reply = (HERE / "examples" / f"{suite.name}.reply.json").read_text("utf-8")
    names = [route.name for route in suite.routes]
    return RouteSet(suite.routes).with_examples(parse_examples(reply, names, PER_ROUTE, NO_ROUTE))


@dataclass(frozen=True, slots=True)
class Decided:
    case: Case
    result: Classification

    @property
    def right(self) -> bool:
        return self.result.route == self.case.expected


def decide_all(router: EmbeddedRouter, suite: Suite, route_set: RouteSet) -> list[Decided]:
    routes, no_route = route_set.routes, route_set.no_route_examples
    router.prepare(routes, no_route)
    return [Decided(case, router.classify(case.turns, routes, no_route)) for case in suite.cases]


def load(name: str) -> Suite:
    return load_suite(SUITES[name])


def new_router() -> EmbeddedRouter:
    return EmbeddedRouter(Embedder())
